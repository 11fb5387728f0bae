"""Money as integer minor units plus an ISO 4217 currency; formatting with Babel."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from babel.numbers import format_currency, get_currency_name, get_currency_precision

from chassis.errors import Invalid


def minor_digits(currency: str) -> int:
    return get_currency_precision(currency)


@dataclass(frozen=True, order=True)
class Money:
    amount: int  # minor units, e.g. cents
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int):
            raise TypeError("Money.amount must be an int of minor units")
        if len(self.currency) != 3 or not self.currency.isupper():
            raise ValueError(f"not an ISO 4217 code: {self.currency!r}")

    def _check(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot mix {self.currency} and {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @classmethod
    def from_decimal(cls, value: Decimal | str, currency: str) -> Money:
        """Round a major-unit decimal to minor units, half-even."""
        scaled = Decimal(value).scaleb(minor_digits(currency))
        return cls(int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)), currency)

    def to_decimal(self) -> Decimal:
        return Decimal(self.amount).scaleb(-minor_digits(self.currency))

    def format(self, locale: str = "en_US") -> str:
        return format_currency(self.to_decimal(), self.currency, locale=locale)

    def as_dict(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency}


def check_currency(code: str) -> str:
    """The code, if it is an ISO 4217 currency Babel knows; Invalid otherwise."""
    try:
        Money(0, code)
    except (ValueError, TypeError):
        raise Invalid("Currencies are ISO 4217 codes like USD or EUR.", currency="unknown") from None
    if get_currency_name(code, locale="en") == code:
        raise Invalid("Currencies are ISO 4217 codes like USD or EUR.", currency="unknown")
    return code

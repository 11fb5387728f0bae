"""Billing rules in plain Python: money in integer minor units, no database, no broker.

Presentation, the same on every document, page and API:
- a line's amount is quantity x unit price - its discount, net of tax (`Line.subtotal`);
- the subtotal is the sum of the line amounts;
- then one row per tax rate: the net base (sum of that rate's line amounts) and its tax;
- the total is the subtotal plus those taxes.

Rounding: a line's amount and discount are rounded half-even to minor units; tax is computed per
rate, on the rate's net base, and rounded once (EN 16931: VAT per category = the category's net
total x its rate). A line's own `tax` is shown for reference and is not added up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from dateutil.relativedelta import relativedelta

from chassis.errors import Conflict, Invalid

OPEN_STATUSES = {"sent", "viewed", "partially_paid"}
INVOICE_STATUSES = {"draft", "sent", "viewed", "partially_paid", "paid", "void"}
QUOTE_STATUSES = {"draft", "sent", "accepted", "rejected", "expired"}
HUNDRED = Decimal(100)
# Who in a client's organisation may write to the business from the portal (comments, disputes, bookings,
# reviews): every role but the viewer, who reads and downloads only (roles: chassis/scope.py).
ACTING_ROLES = ("owner", "payer", "approver")
ACTING_DETAIL = "Your role in your organisation lets you read and download only."
# Who may pay and plan payments (payments refuses the charge itself for the same roles).
PAYING_ROLES = ("owner", "payer")
PAYING_DETAIL = "Only an owner or a payer of your organisation can pay or change its cards."
# Who may change the company's own details (its name, address and phone on future invoices).
COMPANY_ROLES = ("owner",)
COMPANY_DETAIL = "Only an owner of your organisation can change the company's details."
MAX_UNIT_PRICE = 1_000_000_000


def round_minor(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def to_decimal(value: object, name: str) -> Decimal:
    """A number with at most 4 decimal places (what is stored), so totals computed now match the
    lines read back later to the cent."""
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Invalid(f"{name} must be a number.", fields={name: "not a number"}) from None
    if not result.is_finite() or abs(result) >= 10_000_000:
        raise Invalid(f"{name} must be a number below 10,000,000.", fields={name: "out of range"})
    if _exponent(result) < -4 and result != result.quantize(Decimal("0.0001")):
        raise Invalid(f"{name} has at most 4 decimal places.", fields={name: "too many decimals"})
    return result


def _exponent(value: Decimal) -> int:
    """The exponent of a finite number (NaN and infinities have none, and are refused where they come in)."""
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise TypeError(f"{value} is not a finite number")
    return exponent


# VAT categories (EN 16931, UNTDID 5305): S standard rate, Z zero rated, E exempt, AE reverse charge.
TAX_CATEGORIES = ("S", "Z", "E", "AE")


def default_category(rate: Decimal) -> str:
    return "S" if rate > 0 else "Z"


@dataclass(frozen=True)
class Line:
    description: str
    quantity: Decimal
    unit_price: int  # minor units
    tax_rate: Decimal = Decimal(0)  # percent
    discount_percent: Decimal = Decimal(0)
    tax_category: str = ""  # "" takes the rate's default: S when taxed, Z at 0%

    def __post_init__(self) -> None:
        if not self.tax_category:
            object.__setattr__(self, "tax_category", default_category(self.tax_rate))
        if self.tax_category not in TAX_CATEGORIES:
            raise Invalid("tax_category is S, Z, E or AE.", tax_category="unknown")
        if (self.tax_category == "S") != (self.tax_rate > 0):
            raise Invalid(
                "Standard-rated lines (S) have a tax rate above 0; zero-rated, exempt and reverse-charge lines have 0.",
                tax_category="does not match the tax rate",
            )
        if not self.description.strip():
            raise Invalid("Each line needs a description.", description="required")
        if self.quantity <= 0:
            raise Invalid("Quantities must be positive.", quantity="must be positive")
        if self.unit_price < 0:
            raise Invalid("Unit prices cannot be negative.", unit_price="must not be negative")
        if self.unit_price > MAX_UNIT_PRICE:  # 200 lines of the largest quantity still total within 64 bits
            raise Invalid("Unit prices are at most 1,000,000,000 minor units.", unit_price="too large")
        if not (0 <= self.tax_rate <= 100):
            raise Invalid("Tax rates are percentages from 0 to 100.", tax_rate="out of range")
        if not (0 <= self.discount_percent <= 100):
            raise Invalid("Discounts are percentages from 0 to 100.", discount_percent="out of range")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Line:
        try:
            unit_price = data["unit_price"]
            if isinstance(unit_price, bool) or not isinstance(unit_price, int):
                raise Invalid("Unit prices are integers in minor units (cents).", unit_price="not an integer")
            return cls(
                str(data["description"]),
                to_decimal(data.get("quantity", 1), "quantity"),
                unit_price,
                to_decimal(data.get("tax_rate", 0), "tax_rate"),
                to_decimal(data.get("discount_percent", 0), "discount_percent"),
                _category(data.get("tax_category")),
            )
        except KeyError as exc:
            missing = str(exc.args[0])
            raise Invalid(f"Each line needs {missing}.", fields={missing: "required"}) from None

    @property
    def gross(self) -> int:
        return round_minor(self.quantity * self.unit_price)

    @property
    def discount(self) -> int:
        return round_minor(self.gross * self.discount_percent / HUNDRED)

    @property
    def subtotal(self) -> int:
        return self.gross - self.discount

    @property
    def tax(self) -> int:
        return round_minor(self.subtotal * self.tax_rate / HUNDRED)

    @property
    def total(self) -> int:
        return self.subtotal + self.tax

    def as_dict(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "quantity": str(self.quantity),
            "unit_price": self.unit_price,
            "tax_rate": str(self.tax_rate),
            "discount_percent": str(self.discount_percent),
            "tax_category": self.tax_category,
            "discount": self.discount,
            "subtotal": self.subtotal,
            "tax": self.tax,
            "total": self.total,
        }


def _category(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or value not in TAX_CATEGORIES:
        raise Invalid("tax_category is S, Z, E or AE.", tax_category="unknown")
    return value


@dataclass(frozen=True)
class TaxBand:
    """One row of a document's tax breakdown: the net amount taxed at `rate` (percent) in a VAT
    category, and its tax."""

    category: str
    rate: Decimal
    base: int
    tax: int

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "rate": str(self.rate), "base": self.base, "tax": self.tax}


def _rate_key(rate: Decimal | int | str) -> Decimal:
    """20, 20.0 and 20.0000 are one rate, written 20 (never 2E+1)."""
    normal = Decimal(rate).normalize()
    return normal.quantize(Decimal(1)) if _exponent(normal) > 0 else normal


def _band_order(band: TaxBand) -> tuple[Decimal, int]:
    return (-band.rate, TAX_CATEGORIES.index(band.category))


def tax_breakdown(lines: list[Line]) -> list[TaxBand]:
    """Net base per category and rate, highest rate first, each band's tax rounded once on its base."""
    bases: dict[tuple[str, Decimal], int] = {}
    for line in lines:
        key = (line.tax_category, _rate_key(line.tax_rate))
        bases[key] = bases.get(key, 0) + line.subtotal
    bands = [TaxBand(cat, rate, base, round_minor(base * rate / HUNDRED)) for (cat, rate), base in bases.items()]
    return sorted(bands, key=_band_order)


def stored_tax_breakdown(lines: list[dict[str, Any]], tax_total: int) -> list[dict[str, Any]]:
    """The breakdown of a stored document, from its stored line amounts. Documents totalled before tax
    was rounded per rate summed each line's rounded tax instead; for those (the bands then miss the
    stored tax by a cent or so) each band shows the sum of its lines' stored tax, so the printed rows
    still add up to the total the document was issued with."""
    bases: dict[tuple[str, Decimal], list[int]] = {}
    for line in lines:
        rate = _rate_key(line["tax_rate"])
        key = (line.get("tax_category") or default_category(rate), rate)
        base_and_tax = bases.setdefault(key, [0, 0])
        base_and_tax[0] += line["subtotal"]
        base_and_tax[1] += line["tax"]
    bands = [TaxBand(cat, rate, base, round_minor(base * rate / HUNDRED)) for (cat, rate), (base, _) in bases.items()]
    if sum(band.tax for band in bands) != tax_total:
        bands = [TaxBand(cat, rate, base, tax) for (cat, rate), (base, tax) in bases.items()]
    return [band.as_dict() for band in sorted(bands, key=_band_order)]


@dataclass(frozen=True)
class Totals:
    subtotal: int
    discount: int
    tax: int
    total: int
    breakdown: tuple[TaxBand, ...] = field(default=())

    @classmethod
    def of(cls, lines: list[Line]) -> Totals:
        if not lines:
            raise Invalid("A document needs at least one line.", lines="empty")
        subtotal = sum(line.subtotal for line in lines)
        bands = tax_breakdown(lines)
        tax = sum(band.tax for band in bands)
        return cls(subtotal, sum(line.discount for line in lines), tax, subtotal + tax, tuple(bands))


def balance(total: int, paid: int, credited: int) -> int:
    """What is still owed: never below zero."""
    return max(total - paid - credited, 0)


def status_after_settlement(status: str, total: int, paid: int, credited: int) -> str:
    if status in ("draft", "void"):
        return status
    if balance(total, paid, credited) == 0:
        return "paid"
    if paid + credited > 0:
        return "partially_paid"
    return status if status in ("sent", "viewed") else "sent"


def status_after_refund(status: str, total: int, paid: int, credited: int, viewed: bool) -> str:
    """An invoice's status once refunded money is taken off it: still paid if credits cover it, partly
    paid while anything is paid or credited, else back to sent (or viewed, if the client opened it)."""
    if status == "paid" or status == "partially_paid":  # back to what it was before any money came
        status = "viewed" if viewed else "sent"
    return status_after_settlement(status, total, paid, credited)


def check_settlement(status: str, amount: int, owed: int, what: str = "payment") -> None:
    if status not in OPEN_STATUSES:
        raise Conflict(f"A {status.replace('_', ' ')} invoice cannot take a {what}.", status=status)
    if amount <= 0:
        raise Invalid("The amount must be positive.", amount="must be positive")
    if amount > owed:
        raise Conflict("The amount is more than the invoice balance.", amount="more than the balance")


def is_overdue(status: str, due_date: date, owed: int, today: date) -> bool:
    return status in OPEN_STATUSES and owed > 0 and due_date < today


def display_status(status: str, due_date: date, owed: int, today: date) -> str:
    return "overdue" if is_overdue(status, due_date, owed, today) else status


def quote_display_status(status: str, expiry_date: date | None, today: date) -> str:
    if status == "sent" and expiry_date is not None and expiry_date < today:
        return "expired"
    return status


NUMBER_TOKEN = re.compile(r"\{(YYYY|YY|MM|seq(?::0?(\d+))?)\}")


def validate_pattern(pattern: str) -> str:
    if "{seq" not in pattern or NUMBER_TOKEN.sub("", pattern).count("{"):
        raise Invalid("A number pattern needs {seq} and may use {YYYY}, {YY}, {MM}.", pattern="invalid")
    return pattern


def counter_period(pattern: str, on: date) -> str:
    """Which counter a pattern draws from: a yearly pattern restarts each year, and so on."""
    if "{MM}" in pattern:
        return on.strftime("%Y-%m")
    if "{YYYY}" in pattern or "{YY}" in pattern:
        return on.strftime("%Y")
    return ""


def format_number(pattern: str, seq: int, on: date) -> str:
    def sub(match: re.Match[str]) -> str:
        token = match.group(1)
        if token == "YYYY":
            return f"{on.year:04d}"
        if token == "YY":
            return f"{on.year % 100:02d}"
        if token == "MM":
            return f"{on.month:02d}"
        width = int(match.group(2) or 0)
        return f"{seq:0{width}d}"

    return NUMBER_TOKEN.sub(sub, pattern)


FREQUENCIES = {"weekly": "weeks", "monthly": "months", "yearly": "years"}


@dataclass(frozen=True)
class Schedule:
    frequency: str
    interval: int
    start_date: date
    end_date: date | None = None

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise Invalid("Frequency is weekly, monthly or yearly.", frequency="unknown")
        if not (1 <= self.interval <= 36):
            raise Invalid("The interval is from 1 to 36.", interval="out of range")
        if self.end_date is not None and self.end_date < self.start_date:
            raise Invalid("The end date cannot be before the start date.", end_date="before start")

    def occurrence(self, n: int) -> date | None:
        """The n-th run date (0-based), counted from the start so month ends do not drift; None past the end."""
        when = self.start_date + relativedelta(**{FREQUENCIES[self.frequency]: n * self.interval})
        return None if self.end_date is not None and when > self.end_date else when


@dataclass(frozen=True)
class ReminderPolicy:
    days_before: list[int] = field(default_factory=lambda: [3])
    on_due: bool = True
    days_after: list[int] = field(default_factory=lambda: [1, 7, 14])
    catch_up_days: int = 3  # after downtime, send what fell due lately, never a flood of old ones

    def due(self, due_date: date, today: date) -> list[str]:
        """Reminder kinds whose day has come (within the catch-up window), earliest first. A "due soon"
        or "due today" reminder is never due once the due date has passed."""
        candidates = [(f"before_{d}", due_date - timedelta(days=d)) for d in self.days_before]
        if self.on_due:
            candidates.append(("on_due", due_date))
        candidates += [(f"after_{d}", due_date + timedelta(days=d)) for d in self.days_after]
        return [
            kind
            for kind, day in sorted(candidates, key=lambda c: c[1])
            if day <= today < day + timedelta(days=self.catch_up_days)
            and (today <= due_date or kind.startswith("after_"))
        ]


def reminder_day(kind: str, due_date: date) -> date:
    """The day a reminder kind (`before_3`, `on_due`, `after_7`, `overdue`) falls on, for an invoice due
    on `due_date`."""
    if kind.startswith("before_"):
        return due_date - timedelta(days=int(kind.removeprefix("before_")))
    if kind.startswith("after_"):
        return due_date + timedelta(days=int(kind.removeprefix("after_")))
    if kind == "overdue":
        return due_date + timedelta(days=1)
    return due_date


@dataclass(frozen=True)
class StatementEntry:
    on: date
    kind: str  # invoice, payment, credit, refund
    reference: str
    amount: int  # positive: what it does to the balance is given by kind
    credit_note_id: str | None = None  # a credit note's own entry (not a refund's credit)
    # What a refund's entries are about, for a page to word in its own language (`reference` is the
    # English): "refund" (of the payment `payment`), "refund_credit" (the credit for that refund) or
    # "retainer_refund"; `payment` is the refunded payment's reference, or its method when it has none.
    about: str | None = None
    payment: str | None = None

    @property
    def effect(self) -> int:
        return self.amount if self.kind in ("invoice", "refund") else -self.amount


# Within a day, in the order things happen: a charge, what paid it, a refund of that payment, and the
# credit that keeps a refunded invoice settled; so the running balance never shows a refund before
# the payment it gives back.
_DAY_ORDER = {"invoice": 0, "payment": 1, "refund": 2, "credit": 3}


def statement(opening: int, entries: list[StatementEntry]) -> dict[str, Any]:
    """Running balance over entries sorted by date; closing = opening + charges - payments - credits + refunds."""
    running = opening
    rows = []
    for entry in sorted(entries, key=lambda e: (e.on, _DAY_ORDER[e.kind], e.reference)):
        running += entry.effect
        rows.append(
            {
                "date": entry.on.isoformat(),
                "kind": entry.kind,
                "reference": entry.reference,
                "amount": entry.amount,
                "balance": running,
                "credit_note_id": entry.credit_note_id,
                "about": entry.about,
                "payment": entry.payment,
            }
        )
    return {"opening_balance": opening, "entries": rows, "closing_balance": running}

"""VAT ids, IBANs and BICs checked by their own check digits (python-stdnum, schwifty): a typo is
refused where it is typed, not found by a tax office. Each returns the compact form, or raises
ValueError with a reason a person can act on."""

from __future__ import annotations

from schwifty import BIC, IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import vatin
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, ValidationError


def vat_id(value: str) -> str:
    """An EU (or other) VAT id with its country prefix, e.g. DE136695976."""
    try:
        return vatin.validate(value)
    except ValidationError as exc:
        # stdnum raises these subclasses, each naming its reason in `message`; the base class has none
        reason = exc.message if isinstance(exc, (InvalidFormat, InvalidChecksum, InvalidComponent)) else str(exc)
        raise ValueError(f"not a valid VAT id ({reason})") from None


def iban(value: str) -> str:
    try:
        return IBAN(value).compact
    except SchwiftyException as exc:
        raise ValueError(f"not a valid IBAN ({exc})") from None


def bic(value: str) -> str:
    try:
        return BIC(value).compact
    except SchwiftyException as exc:
        raise ValueError(f"not a valid BIC ({exc})") from None

"""Input values checked for what they are, never converted: text is stored as the text that was sent or
refused with a field error, so nothing is ever stored as Python's spelling of another value ("None",
"True", "[...]", "{...}")."""

from __future__ import annotations

import enum
from typing import Final, overload
from zoneinfo import available_timezones

import phonenumbers
from babel import Locale, UnknownLocaleError

from chassis.errors import Invalid


class _Refuse(enum.Enum):
    REFUSE = "refuse"


REFUSE: Final = _Refuse.REFUSE  # `null=REFUSE`: null is not a value this field can hold


# Unless null may stand for None, the answer is text.
@overload
def text(value: object, name: str, limit: int, *, required: bool = False, null: str | _Refuse = REFUSE) -> str: ...
@overload
def text(value: object, name: str, limit: int, *, required: bool = False, null: str | None | _Refuse) -> str | None: ...


def text(
    value: object, name: str, limit: int, *, required: bool = False, null: str | None | _Refuse = REFUSE
) -> str | None:
    """`value` when it is text of at most `limit` characters (and not blank when `required`). A None is
    what `null` says it means ('' clears a text column, None a nullable one), or refused by default."""
    if value is None:
        if null is REFUSE:
            raise Invalid(f"{name} is text, not null.", fields={name: "null is not allowed"})
        return null
    if not isinstance(value, str):
        raise Invalid(f"{name} is text.", fields={name: "not text"})
    if "\x00" in value:
        raise Invalid(f"{name} contains a NUL character.", fields={name: "contains a NUL character"})
    if len(value) > limit:
        raise Invalid(f"{name} is at most {limit} characters.", fields={name: f"longer than {limit} characters"})
    if required and not value.strip():
        raise Invalid(f"{name} is required.", fields={name: "required"})
    return value


def flag(value: object, name: str) -> bool:
    """true or false, nothing that Python would call truthy."""
    if not isinstance(value, bool):
        raise Invalid(f"{name} is true or false.", fields={name: "not a boolean"})
    return value


def display_name(name: object, email: str | None) -> str:
    """How a person is shown: their name, or their email address when they have none."""
    return name if isinstance(name, str) and name.strip() else (email or "")


def one_line(text: object) -> str:
    """Multi-line text (an address) on one line, its lines joined by commas. Any line break ends a line:
    a browser's form sends a textarea's as CRLF, the JSON API's callers mostly LF."""
    lines = str(text or "").splitlines()
    return ", ".join(line.strip() for line in lines if line.strip())


PHONE_EXAMPLE = "+1 212 555 0100"
NOT_A_PHONE = "not a phone number"  # the field error check_phone gives


def check_phone(value: str, name: str, region: str | None) -> str:
    """`value` as typed when it could be a phone number (libphonenumber's `is_possible_number`: digits
    and their count, not whether the number is in service); '' clears it. Without a leading + the
    number is read as dialled in `region` (ISO 3166 alpha-2: the client's country or its language's);
    with no region it needs its country code."""
    if not value.strip():
        return ""
    try:
        possible = phonenumbers.is_possible_number(phonenumbers.parse(value, region or None))
    except phonenumbers.NumberParseException:
        possible = False
    if not possible:
        raise Invalid(
            f"{name} is not a phone number. Write it with its country code, such as {PHONE_EXAMPLE}.",
            fields={name: NOT_A_PHONE},
        )
    return value


def region_of(country: str | None, locale: str | None) -> str | None:
    """Where a number without its country code is dialled: the country, else the locale's (en_US: US)."""
    if country:
        return country
    try:
        return Locale.parse(locale).territory if locale else None
    except (ValueError, UnknownLocaleError, TypeError):
        return None


def check_locale(code: str) -> str:
    """The code, if Babel knows it as a locale (en_US, de_DE); Invalid otherwise."""
    try:
        Locale.parse(code)
    except (ValueError, UnknownLocaleError, TypeError):
        raise Invalid("Locales look like en_US or fr_FR.", locale="unknown") from None
    return code


# ISO 3166 alpha-2 codes as CLDR knows them, less CLDR's regions that are not a country
COUNTRIES = frozenset(c for c in Locale("en").territories if isinstance(c, str) and len(c) == 2 and c.isalpha()) - {
    "ZZ",
    "EU",
    "EZ",
    "UN",
    "QO",
    "XA",
    "XB",
}


def check_country(code: str) -> str:
    """The code, if it is an ISO 3166 alpha-2 country code (DE, FR); Invalid otherwise."""
    if code not in COUNTRIES:
        raise Invalid("Countries are ISO 3166 alpha-2 codes, such as DE.", country="unknown")
    return code


def check_timezone(name: str) -> str:
    """The name, if it is an IANA time zone (Europe/Paris); Invalid otherwise."""
    if name not in available_timezones():
        raise Invalid("Time zones are IANA names like Europe/Paris.", timezone="unknown")
    return name

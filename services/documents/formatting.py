"""Money, dates and times as an email reader in `locale` (and time zone) reads them (Babel)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, get_timezone_name

from chassis.dates import date_and_short_time
from chassis.money import Money


def money(amount: int, currency: str, locale: str) -> str:
    return Money(int(amount), currency).format(locale)


def day(iso: str | None, locale: str) -> str:
    return format_date(date.fromisoformat(iso), "medium", locale=locale) if iso else ""


def moment_in_zone(iso: str, tz: str, locale: str) -> str:
    """Any time of day an email gives (an appointment, a link's expiry, a payment), named in its zone
    since the reader may live elsewhere: "Tuesday, December 8, 2026, 3:00 PM (Central European Time)",
    no seconds."""
    zone = ZoneInfo(tz)
    at = datetime.fromisoformat(iso).astimezone(zone)
    return f"{date_and_short_time(at, 'full', locale)} ({get_timezone_name(zone, locale=locale)})"

"""Money, dates and times as an email reader in `locale` (and time zone) reads them (Babel)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime

from chassis.money import Money


def money(amount: int, currency: str, locale: str) -> str:
    return Money(int(amount), currency).format(locale)


def day(iso: str | None, locale: str) -> str:
    return format_date(date.fromisoformat(iso), "medium", locale=locale) if iso else ""


def moment(iso: str, tz: str, locale: str) -> str:
    return format_datetime(datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)), "medium", locale=locale)

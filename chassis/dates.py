"""Dates and times as a reader in a locale writes them (Babel), where Babel has no one format for it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from babel.dates import format_date, format_time, get_datetime_format

Style = Literal["full", "long", "medium", "short"]


def date_and_short_time(moment: datetime, date_style: Style, locale: str) -> str:
    """A day and its time to the minute ("08.12.2026, 15:00"), joined as the locale joins a date and a
    time of `date_style`: Babel's own format_datetime gives the time the same style, seconds and all."""
    joined = str(get_datetime_format(date_style, locale=locale)).replace("'", "")
    return joined.replace("{0}", format_time(moment, "short", locale=locale)).replace(
        "{1}", format_date(moment, date_style, locale=locale)
    )

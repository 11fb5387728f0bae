"""Booking slots from a business's weekly availability: plain Python, no database.

Time is cut into 5-minute cells. A booking holds every cell it covers, and the cells table has one
row per (workspace, cell), so two bookings can never overlap, even when they are made at the same
moment or have different lengths: the database refuses the second insert.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

CELL = timedelta(minutes=5)
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_window(text: str) -> tuple[time, time]:
    """'09:00-12:30' -> (09:00, 12:30); minutes on the 5-minute grid, start before end."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in text.split("-"))
    except ValueError:
        raise ValueError(f"{text!r} is not a window like 09:00-17:00") from None
    if start >= end or start.minute % 5 or end.minute % 5:
        raise ValueError(f"{text!r}: the start comes before the end, both on 5-minute marks")
    return start, end


def cells(start: datetime, end: datetime) -> list[datetime]:
    """The 5-minute cells [start, end) covers, in UTC."""
    out, at = [], start.astimezone(UTC)
    while at < end:
        out.append(at)
        at += CELL
    return out


def slots(
    weekly: Mapping[Weekday, list[str]],
    tz: str,
    duration: timedelta,
    step: timedelta,
    now: datetime,
    notice: timedelta,
    horizon_days: int,
    busy: set[datetime],
) -> list[datetime]:
    """Free start times (UTC) from the earliest allowed moment to the end of the horizon. Windows are
    wall-clock times in the business's zone, so 09:00 stays 09:00 across a DST change."""
    zone = ZoneInfo(tz)
    earliest = now + notice
    today = now.astimezone(zone).date()
    found = []
    for offset in range(horizon_days + 1):
        day = today + timedelta(days=offset)
        for window in weekly.get(WEEKDAYS[day.weekday()], []):
            start, end = (_at(day, t, zone) for t in parse_window(window))
            at = start
            while at + duration <= end:
                if at >= earliest and not any(cell in busy for cell in cells(at, at + duration)):
                    found.append(at)
                at += step
    return found


def _at(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, zone).astimezone(UTC)

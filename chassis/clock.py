"""The one place that reads the wall clock.

Everything that applies a rule in time (due dates, statement periods, session limits, retries) is
handed the time: handlers take `now`, services inject `ServiceBase.clock`, a unit of work stamps its
events with its own clock. Tests then fix the time by passing another clock, never by patching this
module. A test bans `datetime.now`, `datetime.utcnow` and `date.today` everywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The wall clock, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)

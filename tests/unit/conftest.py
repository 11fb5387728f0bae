import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
import time_machine

from chassis import db as dbmod

ROOT = Path(__file__).resolve().parents[2]

# The fixtures freeze the product's clock at 2026-11-23 (handlers take `now`); the wall clock is moved
# at least 60 days away from it for the whole unit tier. Anything that reads the wall clock where it
# should take the injected one then fails on every run, not only once the calendar has moved on.
# TEST_WALL_CLOCK (an ISO date) picks another day.
WALL_CLOCK = datetime.fromisoformat(os.environ.get("TEST_WALL_CLOCK") or "2027-03-01T09:00:00+00:00")
if WALL_CLOCK.tzinfo is None:
    WALL_CLOCK = WALL_CLOCK.replace(tzinfo=timezone.utc)


# package scope: the clock comes back when the unit tier ends, whatever tiers run after it
@pytest.fixture(scope="package", autouse=True)
def wall_clock_away_from_the_fixtures():
    with time_machine.travel(WALL_CLOCK, tick=True):
        yield


@pytest.fixture
def sqlite_engine(tmp_path):
    """A real, migrated SQLite database for one service: embedded, so no server is needed."""

    def make(service: str):
        url = f"sqlite:///{tmp_path / (service + '.sqlite3')}"
        dbmod.upgrade(url, ROOT / "services" / service / "migrations")
        return dbmod.make_engine(url)

    return make

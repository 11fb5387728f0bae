from pathlib import Path

import pytest

from chassis import db as dbmod

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sqlite_engine(tmp_path):
    """A real, migrated SQLite database for one service: embedded, so no server is needed."""

    def make(service: str):
        url = f"sqlite:///{tmp_path / (service + '.sqlite3')}"
        dbmod.upgrade(url, ROOT / "services" / service / "migrations")
        return dbmod.make_engine(url)

    return make

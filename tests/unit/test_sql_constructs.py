"""chassis/sql.py on SQLite (tests/integration/test_billing_read_model.py runs them on PostgreSQL): the
date at a moment in a time zone, and rows as JSON inside another statement's row, read back as the
values the columns give when selected directly."""

from datetime import date, datetime, timezone

import sqlalchemy as sa

from chassis import sqlite
from chassis.db import UtcDateTime
from chassis.sql import json_rows, local_date, rows_from_json

meta = sa.MetaData()
things = sa.Table(
    "things",
    meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(20)),
    sa.Column("amount", sa.BigInteger),
    sa.Column("due", sa.Date),
    sa.Column("at", UtcDateTime),
    sa.Column("done", sa.Boolean),
    sa.Column("data", sa.JSON),
)


def engine_at(tmp_path):
    engine = sqlite.make_engine(f"sqlite:///{tmp_path / 'sql.sqlite3'}")
    meta.create_all(engine)
    return engine


def test_local_date_is_the_calendar_date_in_the_zone(tmp_path):
    engine = engine_at(tmp_path)
    moment, zone = sa.bindparam("moment", type_=UtcDateTime), sa.bindparam("zone")
    cases = [
        (datetime(2026, 11, 23, 3, 30, tzinfo=timezone.utc), "America/New_York", date(2026, 11, 22)),
        (datetime(2026, 11, 23, 5, 0, tzinfo=timezone.utc), "America/New_York", date(2026, 11, 23)),
        (datetime(2026, 11, 22, 23, 0, tzinfo=timezone.utc), "Pacific/Auckland", date(2026, 11, 23)),
        (datetime(2027, 3, 14, 6, 59, tzinfo=timezone.utc), "America/New_York", date(2027, 3, 14)),  # DST day
        (datetime(2028, 2, 29, 23, 30, tzinfo=timezone.utc), "Europe/Berlin", date(2028, 3, 1)),
    ]
    with engine.connect() as conn:
        for at, name, expected in cases:
            assert conn.execute(sa.select(local_date(moment, zone)), {"moment": at, "zone": name}).scalar() == expected


def test_rows_as_json_come_back_as_the_columns_values_in_order(tmp_path):
    engine = engine_at(tmp_path)
    rows = [
        {
            "id": i,
            "name": f"n{i}",
            "amount": 10**12 + i,
            "due": date(2026, 1, i),
            "done": i % 2 == 0,
            "at": datetime(2026, 1, i, 12, 0, 0, 1000 * i, tzinfo=timezone.utc),
            "data": {"i": i, "nested": [i]},
        }
        for i in range(1, 8)
    ]
    rows[3].update(at=None, data=None, due=None)
    with engine.begin() as conn:
        conn.execute(things.insert(), rows)
    query = sa.select(things).where(things.c.amount > sa.bindparam("least"))
    statement = sa.select(
        json_rows(query, (things.c.due.desc(), things.c.id.desc()), 4).label("recent"),
        json_rows(query.where(things.c.id > 100), (things.c.id,), 4).label("none"),
    )
    with engine.connect() as conn:
        direct = conn.execute(query.order_by(things.c.due.desc(), things.c.id.desc()).limit(4), {"least": 0}).all()
        row = conn.execute(statement, {"least": 0}).one()
    got = rows_from_json(query, row.recent)
    assert [vars(r) for r in got] == [dict(r._mapping) for r in direct]
    assert [r.id for r in got] == [7, 6, 5, 3]  # a NULL date sorts last when descending on SQLite
    assert rows_from_json(query, row.none) == []

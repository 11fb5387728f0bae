"""A prepared statement's PREPARE and EXECUTE as sent to PostgreSQL, without a server: one numbered
parameter per value (the statement's own literals included), dates and times typed, and nothing that
would make its SQL differ from call to call."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from chassis.prepared import Prepared
from chassis.sqltypes import UtcDateTime

items = sa.table(
    "items",
    sa.column("id", sa.String),
    sa.column("owner", sa.String),
    sa.column("status", sa.String),
    sa.column("name", sa.String),
    sa.column("due", sa.Date),
    sa.column("at", UtcDateTime),
)


def compiled(prepared: Prepared):
    return prepared._compile(postgresql.psycopg2.dialect())


def test_each_value_is_a_numbered_parameter_and_the_statements_literals_are_sent_with_each_call():
    owner = sa.bindparam("owner")
    statement = sa.select(items.c.id, items.c.at.label("seen")).where(
        items.c.owner == owner,
        items.c.status.in_(["sent", "viewed"]),
        items.c.at < sa.bindparam("now", type_=UtcDateTime),
        items.c.name.like("%ltd%"),
        items.c.due > sa.bindparam("day", type_=sa.Date),
    )
    made = compiled(Prepared("items_owned", statement))
    types = "unknown, unknown, unknown, timestamptz, unknown, date"
    assert made.prepare.startswith(f"PREPARE items_owned ({types}) AS SELECT")
    assert "items.owner = $1" in made.prepare and "IN ($2, $3)" in made.prepare
    assert "LIKE $5" in made.prepare and "%(" not in made.prepare
    assert set(made.constants.values()) == {"sent", "viewed", "%ltd%"}  # the caller's values are not constants
    sql = str(made.execute.compile(dialect=postgresql.psycopg2.dialect()))
    assert sql.startswith("EXECUTE items_owned(%(owner)s, %(status_1_1)s, %(status_1_2)s, %(now)s,")
    assert [column.key for column in made.execute.selected_columns] == ["id", "seen"]
    assert isinstance(made.execute.selected_columns[1].type, UtcDateTime)  # read back as UTC-aware datetimes


def test_a_list_the_caller_passes_cannot_be_prepared():
    statement = sa.select(items.c.id).where(items.c.status.in_(sa.bindparam("statuses", expanding=True)))
    with pytest.raises(ValueError, match="list parameter"):
        compiled(Prepared("items_by_status", statement))


def test_a_name_must_be_an_sql_name():
    with pytest.raises(ValueError, match="SQL name"):
        Prepared("items; DROP TABLE items", sa.select(items.c.id))

"""A prepared statement's PREPARE and EXECUTE as sent to PostgreSQL, without a server: one numbered
parameter per value the caller gives, the statement's own values written into it, dates, times and
text typed, and nothing that would make its SQL differ from call to call."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from chassis.prepared import Prepared, bound
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

items_table = sa.Table(
    "items",
    sa.MetaData(),
    sa.Column("id", sa.String),
    sa.Column("owner", sa.String),
    sa.Column("at", UtcDateTime),
)


def compiled(prepared: Prepared):
    return prepared._compile(postgresql.psycopg2.dialect())


def test_each_value_given_is_a_numbered_parameter_and_the_statements_own_values_are_written_in():
    owner = sa.bindparam("owner")
    statement = sa.select(items.c.id, items.c.at.label("seen")).where(
        items.c.owner == owner,
        items.c.status.in_(["sent", "viewed"]),
        items.c.at < sa.bindparam("now", type_=UtcDateTime),
        items.c.name.like("%it's%"),
        items.c.due > sa.bindparam("day", type_=sa.Date),
        items.c.id != sa.bindparam("other", "none"),  # named: the caller's, even with a default
    )
    made = compiled(Prepared("items_owned", statement))
    assert made.prepare.startswith("PREPARE items_owned (text, timestamptz, date, text) AS SELECT")
    # what a generic plan must know to pick a partial index on them
    assert "items.owner = $1" in made.prepare and "items.status IN ('sent', 'viewed')" in made.prepare
    assert "LIKE '%it''s%'" in made.prepare and "%(" not in made.prepare and "%%" not in made.prepare
    assert "items.id != $4" in made.prepare and made.constants == {"other": "none"}
    sql = str(made.execute.compile(dialect=postgresql.psycopg2.dialect()))
    assert sql == "EXECUTE items_owned(%(owner)s, %(now)s, %(day)s, %(other)s)"
    assert [column.key for column in made.execute.selected_columns] == ["id", "seen"]
    assert isinstance(made.execute.selected_columns[1].type, UtcDateTime)  # read back as UTC-aware datetimes


def test_an_update_answers_what_it_returns():
    statement = items.update().where(items.c.id == sa.bindparam("of_item")).values(status="paid").returning(items.c.at)
    made = compiled(Prepared("item_paid", statement))
    assert (
        made.prepare
        == "PREPARE item_paid (text) AS UPDATE items SET status='paid' WHERE items.id = $1 RETURNING items.at"
    )
    assert [(column.key, type(column.type)) for column in made.columns] == [("at", UtcDateTime)]


def test_a_list_the_caller_passes_cannot_be_prepared():
    statement = sa.select(items.c.id).where(items.c.status.in_(sa.bindparam("statuses", expanding=True)))
    with pytest.raises(ValueError, match="list parameter"):
        compiled(Prepared("items_by_status", statement))


def test_a_name_must_be_an_sql_name():
    with pytest.raises(ValueError, match="SQL name"):
        Prepared("items; DROP TABLE items", sa.select(items.c.id))


def test_a_name_longer_than_postgresql_keeps_is_refused():
    """PostgreSQL cuts a name to 63 characters: two longer names alike up to there would be one."""
    Prepared("i" * 63, sa.select(items.c.id))
    with pytest.raises(ValueError, match="could clash"):
        Prepared("i" * 64, sa.select(items.c.id))


class _Cursor:
    """What first_row reads of a psycopg2 cursor after EXECUTE: its description and one row."""

    def __init__(self, row, type_codes):
        self.row = row
        self.description = [(None, code) for code in type_codes]

    def fetchone(self):
        return self.row


def test_a_one_row_read_is_sent_in_psycopg2s_own_terms_with_each_value_and_column_converted_by_its_type():
    from datetime import datetime, timedelta, timezone

    dialect = postgresql.psycopg2.dialect()
    statement = sa.select(items.c.id, items.c.at.label("seen")).where(
        items.c.owner == sa.bindparam("owner"),
        items.c.status == "sent",
        items.c.at < sa.bindparam("now", type_=UtcDateTime),
    )
    prepared = Prepared("items_owned", statement)
    made = compiled(prepared)
    read = prepared._read(made, dialect, "SELECT set_config('app.owner', %(scope_owner)s, true)")
    assert read.sql == (
        "SELECT set_config('app.owner', %(scope_owner)s, true); EXECUTE items_owned(%(owner)s, %(now)s)"
    )
    convert = dict(read.values)
    assert set(convert) == {"owner", "now", "scope_owner"}
    in_paris = datetime(2026, 12, 1, 12, 0, tzinfo=timezone(timedelta(hours=1)))
    assert convert["now"](in_paris) == datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)  # UtcDateTime's
    with pytest.raises(ValueError, match="naive"):
        convert["now"](datetime(2026, 12, 1, 12, 0))
    # the column typed UtcDateTime comes back UTC-aware, by name, as a Row's would
    row = read.first(_Cursor(("i-1", in_paris), (1043, 1184)), dialect, made.columns)
    assert row.id == "i-1" and row.seen == datetime(2026, 12, 1, 11, 0, tzinfo=timezone.utc)
    assert row.seen.tzinfo is timezone.utc
    assert read.first(_Cursor(None, ()), dialect, made.columns) is None


def test_a_write_built_once_binds_its_values_by_name_and_answers_only_what_it_returns():
    insert = items.insert().values(bound(items_table, "id", "owner", "at"))
    made = compiled(Prepared("item_new", insert))
    assert (
        made.prepare
        == "PREPARE item_new (text, text, timestamptz) AS INSERT INTO items (id, owner, at) VALUES ($1, $2, $3)"
    )
    assert made.columns == () and not hasattr(made.execute, "selected_columns")  # a write: its row count
    assert str(made.execute.compile(dialect=postgresql.psycopg2.dialect())) == (
        "EXECUTE item_new(%(id)s, %(owner)s, %(at)s)"
    )
    returning = items.insert().values(bound(items_table, "id")).returning(items.c.id)
    returned = compiled(Prepared("item_new_returning", returning))
    assert returned.prepare.endswith("RETURNING items.id") and [c.key for c in returned.columns] == ["id"]


def test_sql_text_is_prepared_as_written_with_its_typed_values_and_its_columns():
    claim = sa.text("INSERT INTO items (id, at) VALUES (:id, :at) ON CONFLICT (id) DO NOTHING").bindparams(
        sa.bindparam("id", type_=sa.String), sa.bindparam("at", type_=UtcDateTime)
    )
    made = compiled(Prepared("item_once", claim))
    assert made.prepare == (
        "PREPARE item_once (text, timestamptz) AS "
        "INSERT INTO items (id, at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING"
    )
    assert made.columns == ()
    answering = compiled(Prepared("item_at", sa.text("SELECT at FROM items WHERE id = :id").columns(items.c.at)))
    assert [(c.key, type(c.type)) for c in answering.columns] == [("at", UtcDateTime)]


def test_planner_settings_go_before_the_statement_in_its_round_trip_and_only_settings_are_taken():
    statement = sa.select(items.c.id).where(items.c.owner == sa.bindparam("owner")).order_by(items.c.due).limit(5)
    prepared = Prepared("items_newest", statement, planner={"enable_sort": "off", "jit": "off"})
    made = compiled(prepared)
    read = prepared._read(made, postgresql.psycopg2.dialect(), "SELECT set_config('app.x', %(x)s, true)")
    assert read.sql == (
        "SELECT set_config('app.x', %(x)s, true); "
        "SELECT set_config('enable_sort', 'off', true), set_config('jit', 'off', true); "  # for this transaction
        "EXECUTE items_newest(%(owner)s)"
    )
    assert "set_config" not in made.prepare  # planned with them, never part of the statement
    for planner in ({"enable_sort": "off'; DROP TABLE items; --"}, {"enable sort": "off"}, {"jit": ""}):
        with pytest.raises(ValueError, match="not a planner setting"):
            Prepared("items_newest", statement, planner=planner)

"""SQL that PostgreSQL and SQLite spell differently, as SQLAlchemy constructs: the date at a moment in
a time zone, and JSON built by the database, so that one statement can answer with lists inside its
row (`json_rows`, read back with `rows_from_json`); and the inserts both spell alike that keep a row
once (`insert_once`) or replace it (`upsert`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class local_date(FunctionElement[date]):  # noqa: N801 - used like an SQL function
    """local_date(moment, zone): the calendar date at `moment` (a timestamp with a time zone) in the
    IANA time zone `zone`, e.g. a business's today for due dates."""

    type = sa.Date()
    inherit_cache = True
    name = "local_date"


@compiles(local_date, "postgresql")
def _local_date_postgresql(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    moment, zone = element.clauses
    return f"CAST(timezone({compiler.process(zone, **kw)}, {compiler.process(moment, **kw)}) AS DATE)"


@compiles(local_date, "sqlite")
def _local_date_sqlite(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return f"portal_local_date({compiler.process(element.clauses, **kw)})"  # chassis/sqlite.py registers it


def sqlite_local_date(moment: str | None, zone: str | None) -> str | None:
    """portal_local_date for SQLite, which stores UTC timestamps as naive ISO text."""
    if moment is None or zone is None:
        return None
    at = datetime.fromisoformat(moment)
    at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
    return at.astimezone(ZoneInfo(zone)).date().isoformat()


class json_object(FunctionElement[Any]):  # noqa: N801
    """json_object(key, value, key, value, ...): one JSON object."""

    type = sa.JSON()
    inherit_cache = True
    name = "json_object"


@compiles(json_object, "postgresql")
def _json_object_postgresql(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_build_object({compiler.process(element.clauses, **kw)})"


@compiles(json_object)
def _json_object(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_object({compiler.process(element.clauses, **kw)})"


class json_array_agg(FunctionElement[Any]):  # noqa: N801
    """The aggregate of its argument over the rows, as one JSON array (NULL or [] for no rows)."""

    type = sa.JSON()
    inherit_cache = True
    name = "json_array_agg"


@compiles(json_array_agg, "postgresql")
def _json_array_agg_postgresql(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_agg({compiler.process(element.clauses, **kw)})"


@compiles(json_array_agg)
def _json_array_agg(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


class as_json(FunctionElement[Any]):  # noqa: N801
    """A JSON column's value as JSON inside json_object (SQLite keeps JSON as text, so without json()
    it would be embedded as a string)."""

    type = sa.JSON()
    inherit_cache = True
    name = "as_json"


@compiles(as_json, "sqlite")
def _as_json_sqlite(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return f"json({compiler.process(element.clauses, **kw)})"


@compiles(as_json)
def _as_json(element: FunctionElement[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


POSITION = "position_"


def json_rows(
    query: sa.Select[Any],
    order_by: Sequence[sa.ColumnElement[Any]],
    limit: int | sa.BindParameter[int] | None = None,
    offset: int | sa.BindParameter[int] = 0,
) -> sa.ScalarSelect[Any]:
    """`limit` rows (all, without one) of `query` in `order_by` order, after the first `offset`, as one
    JSON array of objects (column name: value), a scalar subquery for another statement's columns. Each object
    carries its position, since an aggregate's input order is not something either database promises."""
    rows = query.add_columns(sa.func.row_number().over(order_by=order_by).label(POSITION)).order_by(*order_by)
    if limit is not None:
        rows = rows.limit(limit)
    if isinstance(offset, sa.BindParameter) or offset:
        rows = rows.offset(offset)
    subquery = rows.subquery()
    pairs: list[sa.ColumnElement[Any]] = []
    for column in subquery.c:
        pairs += [sa.literal_column(f"'{column.name}'"), _in_json(column)]
    return sa.select(json_array_agg(json_object(*pairs))).select_from(subquery).scalar_subquery()


def _in_json(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    if isinstance(column.type, sa.JSON):
        return as_json(column)
    if _is_decimal(column.type):  # as text: a JSON number is read back as a float, which 0.1 is not
        return sa.cast(column, sa.Text)
    return column


def _is_decimal(type_: sa.types.TypeEngine[Any]) -> bool:
    return isinstance(type_, sa.Numeric) and not isinstance(type_, sa.Float) and bool(type_.asdecimal)


def rows_from_json(query: sa.Select[Any], value: str | list[dict[str, Any]] | None) -> list[SimpleNamespace]:
    """What json_rows(query, ...) answered, as rows with the Python values the columns of `query`
    would have had when selected directly (dates, UTC datetimes, exact decimals, JSON), in the query's order."""
    if value is None:  # PostgreSQL's json_agg of no rows
        return []
    items: list[dict[str, Any]] = json.loads(value) if isinstance(value, str) else value  # psycopg2 parses it
    names, converted = _columns_of(query)
    rows = []
    for item in sorted(items, key=lambda item: item[POSITION]):
        values = {name: item[name] for name in names}
        for name, decode in converted:
            values[name] = decode(values[name])
        rows.append(SimpleNamespace(**values))
    return rows


@functools.lru_cache(maxsize=512)  # a query is its own key (by identity): the callers' are built once
def _columns_of(query: sa.Select[Any]) -> tuple[tuple[str, ...], tuple[tuple[str, Callable[[Any], Any]], ...]]:
    """The names of `query`'s columns, and the columns whose JSON value needs converting, with how."""
    columns = [(column.name, _decoder(column.type)) for column in query.selected_columns]
    return tuple(name for name, _ in columns), tuple((name, decode) for name, decode in columns if decode is not _same)


def _decoder(type_: sa.types.TypeEngine[Any]) -> Callable[[Any], Any]:
    base = type_.impl_instance if isinstance(type_, sa.TypeDecorator) else type_
    if isinstance(base, sa.DateTime):
        return _utc_datetime
    if isinstance(base, sa.Date):
        return lambda v: None if v is None else date.fromisoformat(v)
    if isinstance(base, sa.Boolean):
        return lambda v: None if v is None else bool(v)
    if isinstance(base, sa.Numeric) and _is_decimal(base):
        return functools.partial(_decimal, Decimal(1).scaleb(-base.scale) if base.scale is not None else None)
    return _same


def _decimal(exponent: Decimal | None, value: str | None) -> Decimal | None:
    """PostgreSQL writes a numeric with its scale, SQLite as short as it goes: read at the column's scale,
    as a column selected directly is."""
    if value is None:
        return None
    return Decimal(value) if exponent is None else Decimal(value).quantize(exponent)


def _same(value: Any) -> Any:
    return value


def _utc_datetime(value: str | None) -> datetime | None:
    """PostgreSQL writes a timestamp with its offset, SQLite the naive UTC text it stores."""
    if value is None:
        return None
    at = datetime.fromisoformat(value)
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at.astimezone(timezone.utc)


def insert_once(table: sa.Table, columns: Sequence[str], key: str) -> sa.TextClause:
    """`INSERT ... ON CONFLICT (key) DO NOTHING` of `columns` (values bound by their names, typed as
    the columns): its row count says whether the row is new. Written out as SQL text, which PostgreSQL
    and SQLite both take, because SQLAlchemy compiles an ON CONFLICT insert anew on every use, which
    cost more than the round trip."""
    return sa.text(
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join(':' + name for name in columns)}) ON CONFLICT ({key}) DO NOTHING"
    ).bindparams(*(sa.bindparam(name, type_=table.c[name].type) for name in columns))


def upsert(table: sa.Table, key: Sequence[str], only_if_newer: str | None = None) -> sa.TextClause:
    """`INSERT` of a whole row (values bound by the columns' names), or `UPDATE` of the row with the
    same `key` (only when its `only_if_newer` column is later, when given): SQL text, as for
    `insert_once`."""
    names = [column.name for column in table.c]
    updates = ", ".join(f"{name} = excluded.{name}" for name in names if name not in key)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(':' + name for name in names)}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )
    if only_if_newer:
        sql += f" WHERE {table.name}.{only_if_newer} < excluded.{only_if_newer}"
    return sa.text(sql).bindparams(*(sa.bindparam(column.name, type_=column.type) for column in table.c))

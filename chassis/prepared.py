"""Statements that PostgreSQL parses, rewrites and plans once per connection instead of once per call.

psycopg2 sends each statement as text, so PostgreSQL parses it, expands every row-level-security
policy into it and plans it again on every call. For a page's one large statement (the dashboard's
reads six tables and four subqueries) that work costs several times the execution itself. A
`Prepared` statement is sent once per pooled connection as `PREPARE`, and each call then sends only
`EXECUTE name(values)`, which runs the generic plan made once (the engines' `plan_cache_mode`,
chassis/db.py). The policies still bind: they read the transaction's scope settings when the
plan runs, not when it is made.

Only a statement whose SQL is the same on every call can be prepared: the caller's values are bound
parameters, and no parameter may expand into a list. The statement's own values (a status it filters
on) are written into its SQL, so that its one plan knows them. SQLite runs the statement as it is.

A generic plan is made without the caller's values, and its estimates are the policies' as much as
the data's: the row-level-security conditions make every client look as if it held a handful of
rows. Where that lets the planner pick a plan that reads all of a large client's rows (sorting a
client's invoices to find the newest five, when the listing's index holds them in order), the
statement names `planner` settings that rule such plans out; they are set for that statement alone.
"""

from __future__ import annotations

import functools
import re
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql.compiler import ExpandedState, SQLCompiler
from sqlalchemy.sql.selectable import TextualSelect

__all__ = ["Prepared", "bound", "reset_planner_settings_first"]

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_SETTING = re.compile(r"[a-z_]+")
_VALUE_OR_PERCENT = re.compile(r"%\((\w+)\)s|%%")
_PREPARED_ON_CONNECTION = "portal_prepared_statements"
_SETTINGS_TO_RESET = "portal_planner_settings_to_reset"  # the connection's, until sent or its transaction ends
MAX_NAME = 63  # PostgreSQL cuts a longer name to this many characters
# A read, or a write with its values bound by name (an INSERT or UPDATE given `.values(...)` of bind
# parameters, or SQL text with them); RETURNING, or text's `.columns(...)`, says what it answers.
Preparable = sa.Select[Any] | sa.Update | sa.Insert | sa.TextClause | TextualSelect


@dataclass(frozen=True)
class _Compiled:
    prepare: str  # PREPARE name (types) AS the statement, with $n for its parameters
    execute_sql: str  # EXECUTE name(:p, ...)
    binds: tuple[sa.BindParameter[Any], ...]  # its values' types, the statement's parameters'
    columns: tuple[sa.ColumnClause[Any], ...]  # its result's types, the statement's columns'
    constants: dict[str, Any]  # defaults of named values, passed on every call the caller leaves them out
    reads: dict[str, _Read] = field(default_factory=dict)  # first_row's, by the SQL sent before it

    @functools.cached_property
    def execute(self) -> sa.TextClause | TextualSelect:
        statement = sa.text(self.execute_sql).bindparams(*self.binds)
        return statement.columns(*self.columns) if self.columns else statement  # a write without RETURNING


@dataclass
class _Read:
    """`first_row`'s statement in psycopg2's own terms, worked out once: its SQL, each value's
    conversion (the parameter's type's, as SQLAlchemy would apply it), and its row's shape."""

    sql: str
    values: tuple[tuple[str, Callable[[Any], Any] | None], ...]
    row: type
    results: tuple[Callable[[Any], Any] | None, ...] | None = None  # each column's, from the first answer

    def first(self, cursor: Any, dialect: Dialect, columns: tuple[sa.ColumnClause[Any], ...]) -> Any | None:
        raw = cursor.fetchone()
        if raw is None:
            return None
        if self.results is None:  # the server's type of each column, known once it has answered
            self.results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, described[1])
                for column, described in zip(columns, cursor.description)
            )
        return self.row(*(value if convert is None else convert(value) for convert, value in zip(self.results, raw)))


class Prepared:
    """`statement` under `name` (unique within the service): `uow.execute(prepared, params)` runs it."""

    def __init__(self, name: str, statement: Preparable, planner: Mapping[str, str] | None = None):
        """`planner`: PostgreSQL settings (`{"enable_sort": "off"}`) the statement is planned and run
        with, and no other statement of the transaction."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not an SQL name: {name!r}")
        if len(name) > MAX_NAME:
            raise ValueError(f"longer than PostgreSQL keeps a name ({MAX_NAME}), so it could clash: {name!r}")
        for setting, value in (planner or {}).items():
            if not (_SETTING.fullmatch(setting) and _SETTING.fullmatch(value)):
                raise ValueError(f"not a planner setting: {setting!r} = {value!r}")
        self.name = name
        self.statement = statement
        self.planner = dict(planner or {})
        self._compiled: _Compiled | None = None

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> CursorResult[Any]:
        """Run it on `conn`. With planner settings: set in the same round trip, before it, and set back
        to the connection's own values before the transaction's next statement, in that statement's
        round trip (`reset_planner_settings_first`), so its later statements are planned as usual."""
        if conn.dialect.name != "postgresql":
            return conn.execute(self.statement, dict(params))
        compiled = self._prepared_on(conn)
        if not self.planner:
            return conn.execute(compiled.execute, {**compiled.constants, **params})
        result = conn.execute(
            sa.text(f"{self._planner_sql()}; {compiled.execute_sql}")
            .bindparams(*compiled.binds)
            .columns(*compiled.columns),
            {**compiled.constants, **params},
        )
        # set back in the round trip of the transaction's next statement (reset_planner_settings_first),
        # not in one of their own: a summary refresh is mostly the last statement before COMMIT, which
        # ends them anyway
        conn.info[_SETTINGS_TO_RESET] = {**conn.info.get(_SETTINGS_TO_RESET, {}), **self._reset}
        return result

    @functools.cached_property
    def _reset(self) -> dict[str, str]:
        return {setting: f"SET LOCAL {setting} TO DEFAULT" for setting in self.planner}

    def _planner_sql(self) -> str:
        """The settings, for the transaction the statement runs in."""
        return "SELECT " + ", ".join(f"set_config('{name}', '{value}', true)" for name, value in self.planner.items())

    def first_row(self, conn: Connection, params: Mapping[str, Any], preceded_by: tuple[str, Mapping[str, Any]]) -> Any:
        """Its first row (a named tuple; None without one), on PostgreSQL with `preceded_by` (SQL with
        psycopg2's %(name)s placeholders, and their values) sent in the same round trip just before it.

        Sent on the DBAPI cursor itself: SQLAlchemy's execution (its context, result and row objects)
        cost this one-row read, every page's, more CPU than psycopg2 and the round trip together. What
        SQLAlchemy adds is kept: each value and column converted by its type, the engine's
        before/after_cursor_execute listeners told, and an error raised as SQLAlchemy's DBAPIError,
        whose `connection_invalidated` says the connection was found gone (and is discarded)."""
        dialect = conn.dialect
        if dialect.name != "postgresql":
            raise ValueError("only PostgreSQL runs two statements in one round trip")
        compiled = self._prepared_on(conn)
        sql, before = preceded_by
        read = compiled.reads.get(sql)
        if read is None:  # one preamble in practice (the scope), so worked out once
            read = compiled.reads.setdefault(sql, self._read(compiled, dialect, sql))
        given = {**compiled.constants, **params, **before}
        values = {name: given[name] if convert is None else convert(given[name]) for name, convert in read.values}
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None  # an open Connection holds one
        cursor = dbapi_connection.cursor()
        try:
            conn.dispatch.before_cursor_execute(conn, cursor, read.sql, values, None, False)
            cursor.execute(read.sql, values)
            conn.dispatch.after_cursor_execute(conn, cursor, read.sql, values, None, False)
            return read.first(cursor, dialect, compiled.columns)
        except dialect.loaded_dbapi.Error as exc:
            gone = dialect.is_disconnect(exc, dbapi_connection, cursor)
            if gone:
                conn.invalidate(exc)
            raise sa.exc.DBAPIError.instance(
                read.sql, values, exc, dialect.loaded_dbapi.Error, connection_invalidated=gone, dialect=dialect
            ) from exc
        finally:
            cursor.close()

    def _prepared_on(self, conn: Connection) -> _Compiled:
        """The statement compiled, and PREPAREd on `conn` unless it already is."""
        compiled = self._compiled or self._compile(conn.dialect)
        # the prepared set lives with the DBAPI connection (SQLAlchemy drops it with that connection);
        # PREPARE outlives a rollback, so a failed transaction does not leave it half made
        prepared = conn.connection.info.setdefault(_PREPARED_ON_CONNECTION, set())
        if self.name not in prepared:
            conn.exec_driver_sql(compiled.prepare)
            prepared.add(self.name)
        return compiled

    def _read(self, compiled: _Compiled, dialect: Dialect, before: str) -> _Read:
        names = [bind.key for bind in compiled.binds]
        before_names = list(dict.fromkeys(_PLACEHOLDER.findall(before)))
        planner = f"{self._planner_sql()}; " if self.planner else ""  # for the one implicit transaction
        return _Read(
            sql=f"{before}; {planner}EXECUTE {self.name}({', '.join(f'%({name})s' for name in names)})",
            values=tuple((bind.key, bind.type.dialect_impl(dialect).bind_processor(dialect)) for bind in compiled.binds)
            + tuple((name, None) for name in before_names if name not in names),
            row=namedtuple(f"{self.name}_row", [str(column.key) for column in compiled.columns]),
        )

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        binds = compiled.binds
        expanding = [name for name, bind in binds.items() if bind.expanding and bind.required]
        if expanding:
            raise ValueError(f"{self.name}: a list parameter cannot be prepared: {', '.join(expanding)}")
        # constant lists (`status IN (...)`) become one value per item, as SQLAlchemy sends them
        state = compiled.construct_expanded_state({name: None for name, bind in binds.items() if bind.required})
        expanded_from = {item: name for name, items in state.parameter_expansion.items() for item in items}
        types, literals, constants, order = {}, {}, {}, []
        for name in dict.fromkeys(_PLACEHOLDER.findall(state.statement)):
            bind = binds[expanded_from.get(name, name)]
            types[name] = bind.type
            # a value the statement's own code wrote (anonymous); a named bindparam is the caller's
            literal = _literal(compiled, state, name, bind.type) if bind.unique and not bind.required else None
            if literal is not None:
                literals[name] = literal
                continue
            order.append(name)
            if not bind.required:  # a named value with a default, sent with each call unless given
                constants[name] = state.parameters[name]
        number = {name: index for index, name in enumerate(order, 1)}

        def placed(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:  # %% in SQL written for psycopg2's %-formatting
                return "%"
            return literals[name] if name in literals else f"${number[name]}"

        body = _VALUE_OR_PERCENT.sub(placed, state.statement)
        declared = ", ".join(_declared_type(types[name]) for name in order)
        self._compiled = _Compiled(
            prepare=f"PREPARE {self.name} ({declared}) AS {body}",
            execute_sql=f"EXECUTE {self.name}({', '.join(f':{name}' for name in order)})",
            binds=tuple(sa.bindparam(name, type_=types[name]) for name in order),
            # what it answers: a SELECT's columns, an UPDATE's RETURNING
            columns=tuple(sa.column(str(column.key), column.type) for column in _answered(self.statement)),
            constants=constants,
        )
        return self._compiled


def _answered(statement: Preparable) -> Sequence[Any]:
    """The statement's columns, as it answers them: none for SQL text without `.columns(...)`."""
    return () if isinstance(statement, sa.TextClause) else list(statement.exported_columns)


def _literal(compiled: SQLCompiler, state: ExpandedState, name: str, type_: sa.types.TypeEngine[Any]) -> str | None:
    """A value the statement itself gives (a status it filters on), written into the SQL: a generic
    plan then knows it, as a plan for the values would, and can use a partial index that names it.
    None when the type cannot be written as SQL; the value is then sent with each call instead."""
    try:
        written = compiled.render_literal_value(state.parameters[name], type_)
    except (NotImplementedError, sa.exc.CompileError):
        return None
    return str(written).replace("%%", "%")  # written for psycopg2's %-formatting, which PREPARE skips


def _declared_type(type_: sa.types.TypeEngine[Any]) -> str:
    """The parameter's type as psycopg2 would send its value: dates, times and text typed, the rest
    (numbers, other quoted literals) inferred by PostgreSQL from where the parameter stands."""
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, sa.DateTime):
        return "timestamptz" if type_.timezone else "timestamp"
    if isinstance(type_, sa.Date):
        return "date"
    if isinstance(type_, sa.String):  # one value may stand beside columns of both text and varchar
        return "text"
    return "unknown"


def bound(table: sa.Table, *names: str) -> dict[str, sa.BindParameter[Any]]:
    """Each named column's value as a parameter of the same name and the column's type: the VALUES or
    SET of a write built once, whose SQL is then the same on every call."""
    return {name: sa.bindparam(name, type_=table.c[name].type) for name in names}


def reset_planner_settings_first(engine: sa.Engine) -> None:
    """Have `engine` send the planner settings a `Prepared` statement left set back before the next
    statement of the same transaction, in that statement's round trip. A transaction that ends first
    ends them itself (they are SET LOCAL), so then nothing is sent."""
    sa.event.listen(engine, "before_cursor_execute", _settings_back_first, retval=True)
    for ended in ("commit", "rollback"):
        sa.event.listen(engine, ended, _settings_ended)
    sa.event.listen(engine.pool, "checkin", _settings_gone)


def _settings_back_first(
    conn: Connection, _cursor: Any, statement: str, parameters: Any, _context: Any, _executemany: bool
) -> tuple[str, Any]:
    pending = conn.info.pop(_SETTINGS_TO_RESET, None)
    if pending:  # psycopg2 answers with the last statement's result: the caller's own
        statement = f"{'; '.join(pending.values())}; {statement}"
    return statement, parameters


def _settings_ended(conn: Connection) -> None:
    conn.info.pop(_SETTINGS_TO_RESET, None)


def _settings_gone(_dbapi_connection: Any, record: Any) -> None:
    record.info.pop(_SETTINGS_TO_RESET, None)

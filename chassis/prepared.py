"""Statements that PostgreSQL parses, rewrites and plans once per connection instead of once per call.

psycopg2 sends each statement as text, so PostgreSQL parses it, expands every row-level-security
policy into it and plans it again on every call. For a page's one large statement (the dashboard's
reads six tables and four subqueries) that work costs several times the execution itself. A
`Prepared` statement is sent once per pooled connection as `PREPARE`, and each call then sends only
`EXECUTE name(values)`. The policies still bind: they read the transaction's scope settings when the
plan runs, not when it is made.

Only a statement whose SQL is the same on every call can be prepared: its values are bound
parameters, and no parameter may expand into a list. SQLite runs the statement as it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.sql.selectable import TextualSelect

__all__ = ["Prepared"]

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_PREPARED_ON_CONNECTION = "portal_prepared_statements"


@dataclass(frozen=True)
class _Compiled:
    prepare: str  # PREPARE name (types) AS the statement, with $n for its parameters
    execute_sql: str  # EXECUTE name(:p, ...)
    binds: tuple[sa.BindParameter[Any], ...]  # its values' types, the statement's parameters'
    columns: tuple[sa.ColumnClause[Any], ...]  # its result's types, the statement's columns'
    constants: dict[str, Any]  # values the statement itself binds (its literals), passed on every call
    preceded: dict[str, TextualSelect] = field(default_factory=dict)  # EXECUTE after another statement

    def typed(self, sql: str) -> TextualSelect:
        return sa.text(sql).bindparams(*self.binds).columns(*self.columns)

    @functools.cached_property
    def execute(self) -> TextualSelect:
        return self.typed(self.execute_sql)


class Prepared:
    """`statement` under `name` (unique within the service): `uow.execute(prepared, params)` runs it."""

    def __init__(self, name: str, statement: sa.Select[Any]):
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"not an SQL name: {name!r}")
        self.name = name
        self.statement = statement
        self._compiled: _Compiled | None = None

    def execute(
        self, conn: Connection, params: Mapping[str, Any], preceded_by: tuple[str, Mapping[str, Any]] | None = None
    ) -> CursorResult[Any]:
        """Run it on `conn`; `preceded_by` (SQL with :named values, and the values) is sent in the same
        round trip just before it (one string: the result is the statement's)."""
        if conn.dialect.name != "postgresql":
            if preceded_by is not None:
                raise ValueError("only PostgreSQL runs two statements in one round trip")
            return conn.execute(self.statement, dict(params))
        compiled = self._compiled or self._compile(conn.dialect)
        # the prepared set lives with the DBAPI connection (SQLAlchemy drops it with that connection);
        # PREPARE outlives a rollback, so a failed transaction does not leave it half made
        prepared = conn.connection.info.setdefault(_PREPARED_ON_CONNECTION, set())
        if self.name not in prepared:
            conn.exec_driver_sql(compiled.prepare)
            prepared.add(self.name)
        values = {**compiled.constants, **params}
        if preceded_by is None:
            return conn.execute(compiled.execute, values)
        sql, before = preceded_by
        statement = compiled.preceded.get(sql)
        if statement is None:  # one preamble in practice (the scope), so built once
            statement = compiled.preceded.setdefault(sql, compiled.typed(f"{sql}; {compiled.execute_sql}"))
        return conn.execute(statement, {**values, **before})

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        binds = compiled.binds
        expanding = [name for name, bind in binds.items() if bind.expanding and bind.required]
        if expanding:
            raise ValueError(f"{self.name}: a list parameter cannot be prepared: {', '.join(expanding)}")
        # constant lists (`status IN (...)`) become one parameter per item, as SQLAlchemy sends them
        state = compiled.construct_expanded_state({name: None for name, bind in binds.items() if bind.required})
        order: list[str] = []
        for name in _PLACEHOLDER.findall(state.statement):
            if name not in order:
                order.append(name)
        number = {name: index for index, name in enumerate(order, 1)}
        body = _PLACEHOLDER.sub(lambda match: f"${number[match.group(1)]}", state.statement).replace("%%", "%")
        expanded_from = {item: name for name, items in state.parameter_expansion.items() for item in items}
        types = {name: binds[expanded_from.get(name, name)].type for name in order}
        declared = ", ".join(_declared_type(types[name]) for name in order)
        required = {name for name, bind in binds.items() if bind.required}
        self._compiled = _Compiled(
            prepare=f"PREPARE {self.name} ({declared}) AS {body}",
            execute_sql=f"EXECUTE {self.name}({', '.join(f':{name}' for name in order)})",
            binds=tuple(sa.bindparam(name, type_=types[name]) for name in order),
            columns=tuple(sa.column(str(column.key), column.type) for column in self.statement.selected_columns),
            constants={name: state.parameters[name] for name in order if name not in required},
        )
        return self._compiled


def _declared_type(type_: sa.types.TypeEngine[Any]) -> str:
    """The parameter's type as psycopg2 would send its value: dates and times typed, the rest (quoted
    literals, numbers) inferred by PostgreSQL from where the parameter stands."""
    if isinstance(type_, sa.types.TypeDecorator):
        type_ = type_.impl_instance
    if isinstance(type_, sa.DateTime):
        return "timestamptz" if type_.timezone else "timestamp"
    if isinstance(type_, sa.Date):
        return "date"
    return "unknown"

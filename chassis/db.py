"""SQLAlchemy 2 engine, unit of work and Alembic-at-start for one service's own database."""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, CursorResult, Engine
from sqlalchemy.pool import ConnectionPoolEntry

from chassis import json_text, sqlite
from chassis.clock import Clock, utcnow
from chassis.events import OUTBOX, mark_outbox_written, outbox_row, relay_if_written, wake_relays
from chassis.prepared import Prepared, reset_planner_settings_first
from chassis.scope import db_scope
from chassis.sql import insert_once
from chassis.sqltypes import UtcDateTime as UtcDateTime  # the tables' type, as services import it

log = logging.getLogger(__name__)


# A prepared statement (chassis/prepared.py) runs the plan PostgreSQL made once. Left to choose, the
# server plans it afresh on every EXECUTE whenever its estimate of the generic plan is higher than
# that of the plans made for the first five calls' values, which a new ANALYZE can flip at any time:
# the dashboard's statement then spent 0.4 ms planning a 0.15 ms read. Only PREPAREd statements are
# affected; everything else is sent as text and planned each time anyway.
GENERIC_PLANS = "-c plan_cache_mode=force_generic_plan"


def make_engine(url: str, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        return sqlite.make_engine(url)  # writers queue without freezing an eventlet process
    if url.startswith("postgresql"):
        _green_psycopg_if_eventlet()
        # Pool sized to the caller's worker count: nameko's 10 workers exceed the default 5. With
        # psycopg2 no pool_pre_ping: the scope statement each checkout runs anyway is the liveness
        # check, which saves a round trip on every call (see _scope_on_checkout).
        parsed = sa.engine.make_url(url)
        checkout_scope = parsed.get_driver_name() == "psycopg2"
        pooled: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 2, "json_deserializer": json_text.loads}
        if checkout_scope:  # libpq's options, after any the URL gives
            given = parsed.query.get("options")
            pooled["connect_args"] = {
                "options": f"{given} {GENERIC_PLANS}" if isinstance(given, str) else GENERIC_PLANS
            }
        engine = sa.create_engine(url, pool_pre_ping=not checkout_scope, **pooled)
        if checkout_scope:
            sa.event.listen(engine.pool, "checkout", _scope_on_checkout)
            sa.event.listen(engine.pool, "checkin", _forget_checkout_scope)
            reads = sa.create_engine(url, isolation_level="AUTOCOMMIT", **pooled)
            _ALONE[engine] = reads
            sa.event.listen(engine, "engine_disposed", lambda _engine: reads.dispose())
        sa.event.listen(engine, "begin", _scope_transaction)
        reset_planner_settings_first(engine)
        return engine
    return sa.create_engine(url, pool_size=pool_size, max_overflow=2, pool_pre_ping=True)


T = TypeVar("T")

# Transaction-local (is_local=true) settings: they end with the transaction, so a pooled connection
# never carries one worker's scope into the next worker's transaction.
_SCOPE_SETTINGS = {"workspace_id": "app.workspace_id", "client_id": "app.client_id", "bypass": "app.rls_bypass"}


def _scope_sql(placeholder: Callable[[str], str]) -> str:
    return "SELECT " + ", ".join(
        f"set_config('{setting}', {placeholder(name)}, true)" for name, setting in _SCOPE_SETTINGS.items()
    )


_SCOPE_SQL = _scope_sql(lambda name: f"%({name})s")  # psycopg2's own placeholders
_SCOPE_BEFORE_A_READ = _scope_sql(lambda name: f"%(scope_{name})s")  # beside the statement's own values
_SCOPED_AT_CHECKOUT = "portal_scoped_at_checkout"
# Each PostgreSQL engine's pool of connections for a statement that runs alone (UnitOfWork.read_row and
# publish_and_commit), in autocommit for their whole life: with psycopg2 under eventlet, switching one
# connection in and out of autocommit costs a round trip each way. No scope is set on them at checkout
# or per transaction: each read sends its own.
_ALONE: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def _scope_params() -> dict[str, str]:
    """The scope for the row-level security policies: none sees no rows (fails closed); only the
    allow-listed system scope bypasses them (chassis/scope.py)."""
    scope = db_scope.get()
    if scope is None:
        return {"workspace_id": "", "client_id": "", "bypass": ""}
    if scope.system:
        return {"workspace_id": "", "client_id": "", "bypass": "on"}
    return {"workspace_id": scope.workspace_id, "client_id": scope.client_id or "", "bypass": ""}


def _scope_on_checkout(dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: object) -> None:
    """As a connection leaves the pool: set the caller's scope. psycopg2 opens the transaction with
    this statement, so the first transaction needs no statement of its own (_scope_transaction). It
    is the pre-ping too: on a dead connection, DisconnectionError makes the pool replace it and try
    again, so no caller sees the error."""
    from psycopg2 import InterfaceError, OperationalError

    params = _scope_params()
    try:
        with dbapi_conn.cursor() as cur:
            cur.execute(_SCOPE_SQL, params)
    except (OperationalError, InterfaceError) as exc:
        raise sa.exc.DisconnectionError(f"pooled connection is gone: {exc}") from exc
    record.info[_SCOPED_AT_CHECKOUT] = params


def _forget_checkout_scope(_dbapi_conn: object, record: ConnectionPoolEntry) -> None:
    record.info.pop(_SCOPED_AT_CHECKOUT, None)


def _scope_transaction(conn: Connection) -> None:
    """At the start of every transaction: the caller's scope, unless the checkout set this same
    scope in the transaction still open (the first one after checkout; anything that ended it, such
    as an isolation-level change, makes this set the scope again)."""
    params = _scope_params()
    if conn.info.pop(_SCOPED_AT_CHECKOUT, None) == params and _transaction_open(conn):
        return
    conn.exec_driver_sql(_SCOPE_SQL, params)  # SQLAlchemy does not autobegin again inside its begin event


def _transaction_open(conn: Connection) -> bool:
    """psycopg2's own view (no round trip): is the DBAPI connection inside a transaction, idle?"""
    from psycopg2.extensions import TRANSACTION_STATUS_INTRANS

    dbapi_conn: Any = conn.connection.dbapi_connection  # psycopg2's, with its `info`
    return bool(dbapi_conn.info.transaction_status == TRANSACTION_STATUS_INTRANS)


def _green_psycopg_if_eventlet() -> None:
    try:
        import eventlet.patcher
    except ImportError:  # pragma: no cover - eventlet is always installed with nameko
        return
    if eventlet.patcher.is_monkey_patched("socket"):
        from psycogreen.eventlet import patch_psycopg

        patch_psycopg()


def upgrade(url: str, migrations_dir: Path) -> None:
    """Bring the database to the newest migration; serialised across replicas on PostgreSQL."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    lock_key = f"migrations:{migrations_dir.parent.name}"  # the service: the same wherever it is installed
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        is_pg = conn.dialect.name == "postgresql"
        if is_pg:  # two replicas starting at once must not both run the same migration
            conn.execute(sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": lock_key})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        finally:
            if is_pg:
                conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": lock_key})
                conn.commit()
    engine.dispose()


def run_migrations_env(target_metadata: sa.MetaData) -> None:
    """Body of each service's migrations/env.py (online mode only)."""
    from alembic import context

    connection = context.config.attributes.get("connection")
    if connection is None:  # plain `alembic upgrade head` from the CLI
        url = os.environ.get("DATABASE_URL") or context.config.get_main_option("sqlalchemy.url")
        if url is None:
            raise RuntimeError("no database to migrate: set DATABASE_URL or sqlalchemy.url")
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            _run(context, connection, target_metadata)
            connection.commit()
        return
    _run(context, connection, target_metadata)


def _run(context: Any, connection: Connection, target_metadata: sa.MetaData) -> None:
    if connection.dialect.name == "postgresql":  # a service migrating its own schema: data migrations see every row
        connection.execute(sa.text("SELECT set_config('app.rls_bypass', 'on', false)"))
        connection.commit()  # a session setting, kept for this connection's life
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


# Row-level security (PostgreSQL only), keyed on the settings _scope_on_checkout and
# _scope_transaction set: every transaction of a make_engine connection has them (the caller's scope,
# or the bypass). No settings at all (a connection outside make_engine, a transaction after the one a
# raw_connection() came with) compare NULL and see no rows. Migrations call these, so the SQL is
# history: change a policy with a new migration, not by editing this.
def _rls_expression(client_column: str | None) -> str:
    scoped = "workspace_id = current_setting('app.workspace_id', true)"
    if client_column:
        scoped += (
            f" AND (coalesce(current_setting('app.client_id', true), '') = ''"
            f" OR {client_column} = current_setting('app.client_id', true))"
        )
    return f"current_setting('app.rls_bypass', true) = 'on' OR ({scoped})"


def enable_row_level_security(op: Any, table: str, client_column: str | None = "client_id") -> None:
    """In a migration: rows of `table` visible and writable only within the transaction's workspace
    (and client, when one is set and `client_column` names the table's client). FORCE makes the
    policy bind the table's owner too, which is the service's own role."""
    if op.get_bind().dialect.name != "postgresql":  # SQLite (make dev) has no row-level security
        return
    expression = _rls_expression(client_column)
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY scoped ON {table} USING ({expression}) WITH CHECK ({expression})")


def disable_row_level_security(op: Any, table: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP POLICY IF EXISTS scoped ON {table}")
    op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


class UnitOfWork:
    """One transaction; events recorded through it land in the outbox atomically with the change.

    Use as `with uow: ...; uow.commit()`; leaving without commit rolls back.
    """

    def __init__(self, engine: Engine, clock: Clock = utcnow):
        self.engine = engine
        self.clock = clock  # dates the events this transaction records
        self._conn: Connection | None = None
        self._open = False  # inside `with uow:`; its connection is taken at the first statement
        self._before_commit: dict[tuple[str, ...], Callable[[UnitOfWork], object]] = {}
        self._outbox: list[dict[str, Any]] = []  # the events recorded, written as the transaction ends
        self._inserts: dict[str, _Rows] = {}  # insert_at_commit's rows, by table
        # read_once's answers and the rows read ahead, for this transaction only
        self._read: dict[tuple[str, ...], Any] = {}

    @property
    def conn(self) -> Connection:
        """The transaction's connection, while the unit of work is open (taken at its first use)."""
        if self._conn is None:
            if not self._open:
                raise RuntimeError("the unit of work is not open: use it as `with uow: ...`")
            self._conn = self.engine.connect()
            self._conn.begin()
        return self._conn

    def __enter__(self) -> UnitOfWork:
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._before_commit.clear()
        self._outbox.clear()
        self._inserts.clear()
        self._read.clear()
        conn, self._conn, self._open = self._conn, None, False
        if conn is None:
            return
        try:
            if conn.in_transaction():
                conn.rollback()
            relay_if_written(conn, committed=False)
        finally:
            conn.close()

    def before_commit(self, key: tuple[str, ...], work: Callable[[UnitOfWork], object]) -> None:
        """Have `work(uow)` run once before the transaction commits, however many times it is asked
        for under the same key: what must change in the same transaction as the data, once however
        many changes one transaction makes (a read model kept in step). The work runs in key order,
        so transactions take the locks it takes in one order; a rollback forgets it."""
        self._before_commit.setdefault(key, work)

    def gathered(self, key: tuple[str, ...], work: Callable[[UnitOfWork, list[Any]], object]) -> list[Any]:
        """A list kept until the transaction commits, the same for every call with `key`: before the
        commit, in before_commit's key order, `work(uow, items)` runs once with everything added to
        it. For work that many changes of one transaction ask for (each payment of a batch signals its
        client's rollup), done in one go; a rollback forgets it."""
        kept = self._before_commit.get(key)
        if kept is None:
            kept = self._before_commit[key] = _Gathered(work)
        if not isinstance(kept, _Gathered):
            raise ValueError(f"{key} is registered with before_commit, not gathered")
        return kept

    def read_once(self, key: tuple[str, ...], read: Callable[[], T]) -> T:
        """`read()`'s answer, read once in this transaction under `key`: for a read that many changes of
        one transaction make alike and none of them changes (each payment of a batch names its client's
        portal contacts)."""
        if key not in self._read:
            self._read[key] = read()
        answer: T = self._read[key]
        return answer

    def read_ahead(self, rows: Mapping[tuple[str, ...], Any]) -> None:
        """Rows that a batch's changes will each read first, read ahead in one statement for all of them
        (the invoices a batch's payments lock). Each is served once, by take_read_ahead, to the first
        change that asks for it; a later one reads the row itself, as the changes before it left it. So
        a row read ahead must be one that no change of the batch writes without taking it first.
        Forgotten as the transaction ends."""
        self._read.update({("read ahead", *key): row for key, row in rows.items()})

    def take_read_ahead(self, key: tuple[str, ...], default: Any = None) -> Any:
        """The row read ahead under `key`, which is forgotten; `default` when none was."""
        return self._read.pop(("read ahead", *key), default)

    def insert_at_commit(self, table: sa.Table, row: Mapping[str, Any], alone: Prepared) -> None:
        """Insert `row` into `table` as the transaction commits, after the work left for the commit,
        together with the other rows inserted so and the transaction's events: on PostgreSQL in one
        statement for all of them, elsewhere in one a table (`alone`, the prepared insert of one row,
        when it is the only one). For rows that nothing reads back in their own transaction and that
        a batch writes many of: each payment of a batch records an activity and its receipt's code.
        The table must hold no foreign key that this transaction has not locked already: the lock is
        taken late."""
        self._inserts.setdefault(table.name, _Rows(table, alone)).append(row)

    def finish(self) -> None:
        """Run the work registered with before_commit, then write insert_at_commit's rows and the events
        recorded to the outbox; the owner of a joined unit of work calls this before it commits."""
        while self._before_commit:
            self._before_commit.pop(min(self._before_commit))(self)
        written, events = [*self._inserts.values()], self._outbox
        if events:  # one statement for all of them (a card payment records three)
            written.append(_Rows(OUTBOX, None, events))
        self._inserts, self._outbox = {}, []
        if written:
            _insert_all(self.conn, written)
        if events:
            mark_outbox_written(self.conn)  # the relays are woken once it has committed

    def commit(self) -> None:
        """Commit; the next statement begins the next transaction (and sets its scope). Beginning it
        here would cost every call a scope statement and a rollback it never needs."""
        self.finish()
        self._read.clear()
        if self._conn is not None:  # nothing ran in a transaction: nothing to commit
            self._conn.commit()
            relay_if_written(self._conn)

    def rollback(self) -> None:
        self._before_commit.clear()
        self._outbox.clear()
        self._inserts.clear()
        self._read.clear()
        if self._conn is not None:
            self._conn.rollback()
            relay_if_written(self._conn, committed=False)

    def read_row(self, statement: Prepared, params: Mapping[str, Any]) -> Any:
        """The first row of a read (None without one; its columns by name, as a Row's) that is the unit
        of work's first statement and needs no transaction around it (one statement sees one snapshot):
        on PostgreSQL the scope and the statement go to the server in one round trip, on a connection
        in autocommit (_ALONE), so they run as one implicit transaction and the scope ends with it; no
        BEGIN, nothing to commit.
        Later statements of the unit of work open its transaction as usual; anywhere else (SQLite, a
        transaction already open) it is an ordinary statement of the transaction.

        The connection is not pinged first: the read itself is the check, and it is tried once more on
        a fresh connection when the first one turns out to be gone."""
        reads = None if self._conn is not None else _ALONE.get(self.engine)
        if reads is None:
            return self.execute(statement, params).first()
        if not self._open:
            raise RuntimeError("the unit of work is not open: use it as `with uow: ...`")
        scope = {f"scope_{name}": value for name, value in _scope_params().items()}
        return _twice_if_gone(reads, lambda: _read_alone(reads, statement, params, scope))

    def execute(
        self,
        statement: sa.Executable | Prepared,
        params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> CursorResult[Any]:
        if isinstance(statement, Prepared):
            if params is not None and not isinstance(params, Mapping):
                raise TypeError("a prepared statement runs with one set of values")
            return statement.execute(self.conn, params or {})
        return self.conn.execute(statement, params or {})

    def publish(
        self, event_type: str, workspace_id: str | None, data: dict[str, Any], version: int = 1
    ) -> dict[str, Any]:
        """Record an event, dated by the unit of work's clock: it reaches the outbox in the same
        transaction as the change, with the transaction's other events, as it commits (finish)."""
        event, row = outbox_row(event_type, workspace_id, data, version, now=self.clock())
        self._outbox.append(row)
        return event

    def publish_and_commit(
        self, event_type: str, workspace_id: str | None, data: dict[str, Any], version: int = 1
    ) -> dict[str, Any]:
        """Record an event and commit. When it is all the unit of work does, the row is written alone
        (`write_alone`): the outbox's unique event id makes a second insert of a row that did land
        change nothing. The outbox belongs to the service, not a workspace: no scope is needed."""
        if self._conn is not None or self._before_commit or self._outbox or self._inserts:
            event = self.publish(event_type, workspace_id, data, version)
            self.commit()
            return event
        event, row = outbox_row(event_type, workspace_id, data, version, now=self.clock())
        self.write_alone(_OUTBOX_ONCE, row)
        wake_relays()
        return event

    def write_alone(self, statement: sa.Executable, params: Mapping[str, Any]) -> int:
        """Run one write and commit; its row count. When it is all the unit of work does, on
        PostgreSQL, it goes to the server in one round trip on an autocommit connection (_ALONE): one
        statement is its own transaction, on disk before the answer, where BEGIN, the scope, the
        statement and COMMIT take four. For the service's own tables only, as it carries no scope:
        under row-level security it would see, and change, nothing.

        A connection found gone is replaced and the statement sent once more, so it must change nothing
        the second time (an insert of a row with a unique key); when the first one had landed and only
        its answer was lost, the count is the second one's."""
        alone = self._conn is None and not self._before_commit and not self._outbox
        writes = _ALONE.get(self.engine) if alone else None
        if writes is None:
            count = self.execute(statement, params).rowcount
            self.commit()
            return count
        if not self._open:
            raise RuntimeError("the unit of work is not open: use it as `with uow: ...`")
        return _twice_if_gone(writes, lambda: _run_alone(writes, statement, params))


class _Rows(list[Mapping[str, Any]]):
    """Rows a transaction inserts into `table` as it commits; `alone`, the prepared insert of one."""

    def __init__(self, table: sa.Table, alone: Prepared | None, rows: Sequence[Mapping[str, Any]] = ()):
        super().__init__(rows)
        self.table = table
        self.alone = alone


# At most this many rows left for the commit go in one statement: a lone write's (a payment's line of
# activity, receipt code and three events). A batch's many rows go in one statement a table: built
# anew for each count of rows, one statement of them all cost billing more CPU than it saved.
ROWS_IN_ONE_STATEMENT = 5


def _insert_all(conn: Connection, written: list[_Rows]) -> None:
    """Rows left for the commit. On PostgreSQL, a few rows of several tables in one statement: each
    table's but the last's a data-modifying WITH query of the last's insert, a round trip or two saved
    on most of billing's writes (a line of activity and an event). Otherwise one statement a table."""
    if (
        conn.dialect.name == "postgresql"
        and len(written) > 1
        and sum(len(rows) for rows in written) <= ROWS_IN_ONE_STATEMENT
    ):
        *before, last = written
        statement = last.table.insert().values(list(last))
        for rows in before:
            statement = statement.add_cte(rows.table.insert().values(list(rows)).cte(f"{rows.table.name}_rows"))
        conn.execute(statement)
        return
    for rows in written:
        if len(rows) == 1 and rows.alone is not None:
            rows.alone.execute(conn, rows[0])
        else:
            conn.execute(rows.table.insert(), list(rows))  # one statement of many rows (insertmanyvalues)


class _Gathered(list[Any]):
    """UnitOfWork.gathered's list, run before the commit as before_commit's work is."""

    def __init__(self, work: Callable[[UnitOfWork, list[Any]], object]):
        super().__init__()
        self.work = work

    def __call__(self, uow: UnitOfWork) -> object:
        return self.work(uow, list(self))


def _twice_if_gone(engine: Engine, work: Callable[[], T]) -> T:
    """`work()` on one of `engine`'s connections, done once more when the pooled connection it took
    turned out to be gone: such connections are not pinged before use. One seldom goes alone (a
    database restart or failover ends them all), so the pool's idle connections are let go first and
    the second try opens a fresh one instead of meeting the next dead one."""
    try:
        return work()
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    engine.dispose()  # a new pool; the connections other callers hold now go with the old one
    return work()


# Built once, the values given as parameters: SQLAlchemy derives a cache key for every statement it is given.
# An outbox row inserted at most once however often it is sent (the event id is unique).
_OUTBOX_ONCE = insert_once(OUTBOX, ("event_id", "event_type", "body", "created_at", "request_id"), "event_id")


def _run_alone(writes: Engine, statement: sa.Executable, params: Mapping[str, Any]) -> int:
    with writes.connect() as conn:
        return conn.execute(statement, params).rowcount


def _read_alone(reads: Engine, statement: Prepared, params: Mapping[str, Any], scope: dict[str, str]) -> Any:
    with reads.connect() as conn:  # the row is a plain named tuple: it outlives its connection
        return statement.first_row(conn, params, preceded_by=(_SCOPE_BEFORE_A_READ, scope))


@contextlib.contextmanager
def joined(conn: Connection, clock: Clock = utcnow) -> Iterator[JoinedUnitOfWork]:
    """A unit of work in `conn`'s open transaction; what it leaves for the commit (before_commit
    work, the events it recorded) is done as the block ends without an error."""
    uow = JoinedUnitOfWork(conn, clock)
    yield uow
    uow.finish()


class JoinedUnitOfWork(UnitOfWork):
    """A unit of work inside a transaction someone else commits (an event consumer commits the
    change together with its inbox row), so the same handlers serve RPC calls and events."""

    def __init__(self, conn: Connection, clock: Clock = utcnow):
        self._conn = conn
        self._open = True
        self.clock = clock
        self._before_commit = {}
        self._outbox = []
        self._inserts = {}
        self._read = {}

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        raise RuntimeError("a joined unit of work cannot roll back its owner's transaction")

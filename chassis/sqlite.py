"""SQLite, the embedded default (`make dev`), safe for concurrent writers under eventlet.

sqlite3 waits for a locked database inside C (its busy timeout). Under eventlet that freezes the
whole process, including the green thread that holds the write lock and would release it by
committing: two writers in one service deadlock until the timeout. So writers never wait in C:

- Within a process, a writer first takes the database file's write gate, a lock that green threads
  (or threads) wait for cooperatively. It is taken at a transaction's first write and released when
  the transaction ends, so writers queue while readers go on (WAL lets readers and one writer share
  the file).
- Holding the gate, the transaction starts with `BEGIN IMMEDIATE`. Another process (portalctl, the
  seed, a second replica) may hold the file's lock: then the C-level wait is at most BUSY_TIMEOUT
  and the retry sleeps cooperatively, until WRITE_TIMEOUT.

This works at the DB-API level (a sqlite3.Connection subclass), under SQLAlchemy's unit of work:
sqlite3 runs in autocommit mode and this module opens each write transaction itself, as pysqlite's
own legacy mode did (reads before the first write run outside a transaction).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar, cast, overload

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from chassis import sql

if TYPE_CHECKING:
    from sqlite3 import _Parameters  # typeshed's name for what execute() takes

_CursorT = TypeVar("_CursorT", bound=sqlite3.Cursor)

BUSY_TIMEOUT = 0.05  # seconds sqlite3 may block in C on another process's lock
WRITE_TIMEOUT = 30.0  # seconds a writer waits for the gate, then for the file's lock
RETRY_EVERY = 0.02  # seconds between BEGIN IMMEDIATE attempts (a cooperative sleep under eventlet)
# Statements that write (or open a savepoint, which starts a transaction); pysqlite's legacy mode
# opened its implicit transaction before the same ones.
_WRITE = re.compile(
    r"^\s*(?:INSERT|UPDATE|DELETE|REPLACE|SAVEPOINT|WITH\b[\s\S]*\b(?:INSERT|UPDATE|DELETE)\b)", re.IGNORECASE
)


class WriteGate:
    """One writing transaction at a time on one database file within this process. Created after
    eventlet's monkey patching (at engine creation), so its lock is green where the process is."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.holder: GatedConnection | None = None
        self.owner: int | None = None  # the thread (or green thread) whose transaction holds it

    def acquire(self, connection: GatedConnection, timeout: float) -> None:
        me = threading.get_ident()
        if self.owner == me and self.holder is not connection:
            raise sqlite3.OperationalError(
                "this thread already writes through another connection to the same database: a unit of work "
                "nested in another that writes would wait for itself"
            )
        if not self._lock.acquire(timeout=timeout):
            raise sqlite3.OperationalError(f"database is locked: waited {timeout:.0f} s for the write gate")
        self.holder, self.owner = connection, me

    def release(self, connection: GatedConnection) -> None:
        if self.holder is connection:
            self.holder = self.owner = None
            self._lock.release()


_gates: dict[str, WriteGate] = {}
_gates_lock = threading.Lock()


def gate_for(path: str) -> WriteGate:
    with _gates_lock:
        return _gates.setdefault(path, WriteGate())


class GatedConnection(sqlite3.Connection):
    """A sqlite3 connection whose write transactions pass the file's gate and begin immediately."""

    gate: WriteGate

    @overload
    def cursor(self, factory: None = None) -> sqlite3.Cursor: ...
    @overload
    def cursor(self, factory: Callable[[sqlite3.Connection], _CursorT]) -> _CursorT: ...

    def cursor(self, factory: Callable[[sqlite3.Connection], sqlite3.Cursor] | None = None) -> sqlite3.Cursor:
        return super().cursor(factory or GatedCursor)

    def execute(self, sql: str, parameters: _Parameters = (), /) -> sqlite3.Cursor:  # noqa: D102
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[_Parameters], /) -> sqlite3.Cursor:  # noqa: D102
        return self.cursor().executemany(sql, parameters)

    def begin_write(self, sql: str) -> None:
        """Before a statement: if it is the transaction's first write, take the gate and the file's lock."""
        if self.in_transaction or not _WRITE.match(sql):
            return
        self.gate.acquire(self, WRITE_TIMEOUT)
        try:
            self._begin_immediate()
        except BaseException:
            self.gate.release(self)
            raise

    def _begin_immediate(self) -> None:
        deadline = time.monotonic() + WRITE_TIMEOUT
        while True:
            try:
                sqlite3.Connection.execute(self, "BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise sqlite3.OperationalError(
                        f"database is locked: another process held it for {WRITE_TIMEOUT:.0f} s"
                    ) from exc
                time.sleep(RETRY_EVERY)  # eventlet's sleep where the process is monkey patched

    def commit(self) -> None:  # noqa: D102
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self.gate.release(self)

    def rollback(self) -> None:  # noqa: D102
        try:
            super().rollback()
        finally:
            self.gate.release(self)

    def close(self) -> None:  # noqa: D102
        try:
            super().close()
        finally:
            self.gate.release(self)


class GatedCursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: _Parameters = (), /) -> GatedCursor:  # noqa: D102
        cast(GatedConnection, self.connection).begin_write(sql)  # only GatedConnection.cursor makes these
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[_Parameters], /) -> GatedCursor:  # noqa: D102
        cast(GatedConnection, self.connection).begin_write(sql)
        return super().executemany(sql, parameters)


def make_engine(url: str) -> Engine:
    """An engine on a SQLite file whose writers queue in this process instead of freezing it."""
    path = sa.engine.make_url(url).database or ""
    gate = gate_for(path)

    def connect() -> GatedConnection:
        connection = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT, isolation_level=None, factory=GatedConnection, check_same_thread=False
        )
        connection.gate = gate
        # SQL the PostgreSQL side has built in (chassis/sql.py)
        connection.create_function("portal_local_date", 2, sql.sqlite_local_date, deterministic=True)
        return connection

    engine = sa.create_engine(url, creator=connect)

    @sa.event.listens_for(engine, "connect")
    def _pragmas(
        dbapi_conn: sqlite3.Connection, _record: object
    ) -> None:  # WAL lets readers and one writer share the file
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return engine

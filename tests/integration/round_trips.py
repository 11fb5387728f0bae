"""Counting what a unit of work sends to PostgreSQL and waits for."""

from __future__ import annotations

import sqlalchemy as sa
from psycopg2.extensions import TRANSACTION_STATUS_IDLE


class RoundTrips:
    """What goes to the server and waits for its answer, on every engine of the process (a service's
    reads have a pool of their own, chassis/db.py): each statement, the scope statement a checkout runs
    (none for UnitOfWork.read_row), and each commit or rollback of a transaction that is open (one of an
    idle connection is not sent)."""

    def __init__(self):
        self.count = 0
        self.statements: list[str] = []
        self.listeners = [
            (sa.engine.Engine, "before_cursor_execute", self._statement),
            (sa.pool.Pool, "checkout", self._checkout),
            (sa.engine.Engine, "commit", self._end),
            (sa.engine.Engine, "rollback", self._end),
            (sa.pool.Pool, "reset", self._reset),
        ]
        for target, name, listener in self.listeners:
            sa.event.listen(target, name, listener)

    def _statement(self, conn, cursor, statement, *_):
        self.count += 1
        self.statements.append(statement)

    def _checkout(self, _dbapi_connection, record, _proxy):
        if "portal_scoped_at_checkout" in record.info:  # chassis/db.py ran the scope statement
            self.count += 1
            self.statements.append("(the scope statement at checkout)")

    def _end(self, conn):
        if conn.connection.dbapi_connection.info.transaction_status != TRANSACTION_STATUS_IDLE:
            self.count += 1
            self.statements.append("COMMIT or ROLLBACK")

    def _reset(self, dbapi_connection, *_):
        if dbapi_connection.info.transaction_status != TRANSACTION_STATUS_IDLE:
            self.count += 1
            self.statements.append("ROLLBACK at checkin")

    def remove(self):
        for target, name, listener in self.listeners:
            sa.event.remove(target, name, listener)

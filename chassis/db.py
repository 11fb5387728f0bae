"""SQLAlchemy 2 engine, unit of work and Alembic-at-start for one service's own database."""
from __future__ import annotations

import logging
import os
from datetime import timezone
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)


def make_engine(url: str, pool_size: int = 5) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # WAL lets readers and one writer share the file
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("postgresql"):
        _green_psycopg_if_eventlet()
    # Pool sized to the caller's worker count: nameko's 10 workers exceed the default 5.
    return sa.create_engine(url, pool_size=pool_size, max_overflow=2, pool_pre_ping=True)


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
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as connection:
            _run(context, connection, target_metadata)
            connection.commit()
        return
    _run(context, connection, target_metadata)


def _run(context, connection: Connection, target_metadata: sa.MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


class UnitOfWork:
    """One transaction; events recorded through it land in the outbox atomically with the change.

    Use as `with uow: ...; uow.commit()`; leaving without commit rolls back.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.conn: Connection | None = None

    def __enter__(self) -> UnitOfWork:
        self.conn = self.engine.connect()
        self.conn.begin()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.conn.in_transaction():
                self.conn.rollback()
        finally:
            self.conn.close()
            self.conn = None

    def commit(self) -> None:
        self.conn.commit()
        self.conn.begin()

    def rollback(self) -> None:
        self.conn.rollback()
        self.conn.begin()

    def execute(self, statement, params=None):
        return self.conn.execute(statement, params or {})

    def publish(self, event_type: str, workspace_id: str | None, data: dict, version: int = 1) -> dict:
        from chassis.events import add_to_outbox

        return add_to_outbox(self.conn, event_type, workspace_id, data, version)


class UtcDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; store UTC-aware datetimes only")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class JoinedUnitOfWork(UnitOfWork):
    """A unit of work inside a transaction someone else commits (an event consumer commits the
    change together with its inbox row), so the same handlers serve RPC calls and events."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        raise RuntimeError("a joined unit of work cannot roll back its owner's transaction")

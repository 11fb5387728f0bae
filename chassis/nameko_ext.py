"""nameko glue shared by the services: database dependency, request-id propagation, the outbox
relay timer, idempotent event handlers with bounded retries, and a ping for health checks."""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import eventlet
import sqlalchemy as sa
from nameko.events import EventDispatcher, event_handler
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer

from chassis import db as dbmod
from chassis import events, settings
from chassis.errors import ServiceError
from chassis.logs import request_id_var

log = logging.getLogger(__name__)


class DatabaseHandle:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def uow(self) -> dbmod.UnitOfWork:
        return dbmod.UnitOfWork(self.engine)


class Database(DependencyProvider):
    """The service's own database: migrated to head when the container starts."""

    def __init__(self, service: str, migrations_dir: Path):
        self.service = service
        self.migrations_dir = migrations_dir
        self.engine = None

    def setup(self):
        url = self.container.config.get("DATABASE_URL") or settings.database_url(self.service)
        dbmod.upgrade(url, self.migrations_dir)
        workers = int(self.container.config.get("max_workers", 10))
        pool = self.container.config.get("DB_POOL_SIZE") or workers + 2  # a connection per worker by default
        self.engine = dbmod.make_engine(url, pool_size=int(pool))

    def stop(self):
        if self.engine is not None:
            self.engine.dispose()

    def get_dependency(self, worker_ctx):
        return DatabaseHandle(self.engine)


class RequestContext(DependencyProvider):
    """Binds the caller's request id (nameko context data) to this worker's log records."""

    def get_dependency(self, worker_ctx):
        return worker_ctx.data.get("request_id")

    def worker_setup(self, worker_ctx):
        request_id_var.set(worker_ctx.data.get("request_id"))

    def worker_teardown(self, worker_ctx):
        request_id_var.set(None)


class ServiceBase:
    """Every service: a database with an outbox, a relay that publishes it, and `ping`."""

    db: DatabaseHandle
    dispatch = EventDispatcher()
    request_id = RequestContext()

    @rpc
    def ping(self):
        with self.db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"service": self.name, "ok": True}

    def _tx(self, handler, *args, **kwargs):
        """Run `handler(uow, now, *args)` in one transaction, committed when it returns."""
        with self.db.uow() as uow:
            result = handler(uow, events.utcnow(), *args, **kwargs)
            uow.commit()
            return result

    @timer(interval=float(settings.env("OUTBOX_RELAY_INTERVAL", "0.2")))
    def relay_outbox(self):
        events.relay_outbox(self.db.engine, self.dispatch)


def consumes(source_service: str, event_type: str, max_attempts: int = 5, base_delay: float = 0.2):
    """Subscribe a method `fn(self, uow, event)` to an event, exactly once per event id. The unit of
    work joins the transaction that also records the event id, and commits with it.

    Failures are retried in place with exponential backoff; after `max_attempts` the event goes to
    the dead-letter table instead of being silently dropped. The message is acked only after this
    returns, so a crash mid-way gets it redelivered.
    """

    def decorator(fn):
        @event_handler(source_service, event_type)
        @functools.wraps(fn)
        def wrapper(self, event):
            consumer = f"{self.name}.{fn.__name__}"
            for attempt in range(1, max_attempts + 1):
                try:
                    return events.consume_once(self.db.engine, consumer, event,
                                               lambda conn, e: fn(self, dbmod.JoinedUnitOfWork(conn), e))
                except ServiceError as exc:  # a business rule said no: retrying cannot help, park it now
                    log.error("event refused by a business rule", extra={
                        "consumer": consumer, "event_id": event.get("id"), "error": repr(exc)})
                    events.dead_letter(self.db.engine, consumer, event, repr(exc))
                    return False
                except Exception as exc:  # noqa: BLE001 - anything may fail; we retry then park it
                    log.warning(
                        "event handler failed",
                        extra={"consumer": consumer, "event_id": event.get("id"), "attempt": attempt, "error": repr(exc)},
                    )
                    if attempt == max_attempts:
                        events.dead_letter(self.db.engine, consumer, event, repr(exc))
                        return False
                    eventlet.sleep(base_delay * 2 ** (attempt - 1))

        return wrapper

    return decorator

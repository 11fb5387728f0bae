"""One envelope for every domain event, a transactional outbox with a relay, and an inbox
that makes every consumer idempotent with bounded retries and a dead-letter table."""

from __future__ import annotations

import json
import logging
import threading
import uuid
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from chassis.clock import utcnow
from chassis.logs import current_request_id
from chassis.prepared import Prepared
from chassis.sql import insert_once
from chassis.sqltypes import UtcDateTime

log = logging.getLogger(__name__)


def envelope(
    event_type: str,
    workspace_id: str | None,
    data: dict[str, Any],
    version: int = 1,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": version,
        "occurred_at": (occurred_at or utcnow()).isoformat(),
        "workspace_id": workspace_id,
        "data": data,
    }


def define_tables(metadata: sa.MetaData) -> None:
    """Add the outbox, inbox and dead-letter tables to a service's metadata."""
    sa.Table(
        "outbox",
        metadata,
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("published_at", UtcDateTime, nullable=True, index=True),
        # The request that recorded the event: the relay publishes it as the message's request id.
        sa.Column("request_id", sa.String(64), nullable=True),
    )
    sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("processed_at", UtcDateTime, nullable=False),
    )
    sa.Table(
        "dead_letters",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", UtcDateTime, nullable=False),
    )
    sa.Table(
        "idempotency_keys",
        metadata,
        sa.Column("key", sa.String(250), primary_key=True),  # caller's namespace + method + key
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )


# Lightweight table handles (same definitions as define_tables) for use without a service's metadata.
_META = sa.MetaData()
define_tables(_META)
_TABLES = _META.tables
OUTBOX, INBOX, DEAD = _TABLES["outbox"], _TABLES["inbox"], _TABLES["dead_letters"]
IDEMPOTENCY = _TABLES["idempotency_keys"]


def outbox_row(
    event_type: str, workspace_id: str | None, data: dict[str, Any], version: int = 1, now: datetime | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An event dated `now` (the caller's clock) and the outbox row that records it."""
    now = now or utcnow()
    event = envelope(event_type, workspace_id, data, version, occurred_at=now)
    row = {
        "event_id": event["id"],
        "event_type": event_type,
        "body": json.dumps(event),
        "created_at": now,
        "request_id": current_request_id(),
    }
    return event, row


# What the relay hands its publisher: the batch's (event type, event, request id), in order.
Relayed = list[tuple[str, dict[str, Any], str | None]]


def relay_outbox(engine: Engine, publish: Callable[[Relayed], object], batch: int = 100) -> int:
    """Publish unpublished outbox rows in order, marking them once the broker confirmed them.

    `publish` takes the batch, (event type, event, request id) in order, and returns once the broker
    confirmed every message (chassis/confirmed_publish.py); if it raises, no row of the batch is marked.
    At-least-once: a crash between publish and mark re-publishes, and consumers dedupe by id.
    On PostgreSQL, SKIP LOCKED lets relays in several replicas share the work. Within a process one
    relay runs at a time, whoever calls it: a run that waited for another's publisher would hold a
    database connection all the while.
    """
    running = _relaying.setdefault(engine, threading.Lock())  # green under nameko, as it is made at first use
    if not running.acquire(blocking=False):
        return 0  # this process's relay is still at work; what is left is the next tick's
    try:
        return _relay_batch(engine, publish, batch)
    finally:
        running.release()


_relaying: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


# The relay's statements, built once: it runs on every commit that records an event, and on every tick.
_UNPUBLISHED = (
    sa.select(OUTBOX.c.seq, OUTBOX.c.event_type, OUTBOX.c.body, OUTBOX.c.request_id)
    .where(OUTBOX.c.published_at.is_(None))
    .order_by(OUTBOX.c.seq)
    .limit(sa.bindparam("batch"))
)
_UNPUBLISHED_UNLOCKED = _UNPUBLISHED.with_for_update(skip_locked=True)  # PostgreSQL: the rows no other relay holds
_MARK_PUBLISHED = OUTBOX.update().where(OUTBOX.c.seq.in_(sa.bindparam("seqs", expanding=True)))


def _relay_batch(engine: Engine, publish: Callable[[Relayed], object], batch: int) -> int:
    with engine.connect() as conn:
        with conn.begin():
            query = _UNPUBLISHED_UNLOCKED if conn.dialect.name == "postgresql" else _UNPUBLISHED
            rows = conn.execute(query, {"batch": batch}).all()
            if rows:  # one statement for the batch: the marks commit together either way
                publish([(row.event_type, json.loads(row.body), row.request_id) for row in rows])
                conn.execute(_MARK_PUBLISHED, {"seqs": [row.seq for row in rows], "published_at": utcnow()})
            return len(rows)


# A relay runs as soon as a transaction that recorded events has committed, so that they go out at once
# and its timer is only the safety net (a publish that failed, rows another process wrote). The
# transaction marks its connection as it writes outbox rows (`mark_outbox_written`); whoever commits it
# calls `relay_if_written`, which wakes every relay of this process (`on_outbox_commit`).
_OUTBOX_WRITTEN = "portal.outbox_written"  # in the DBAPI connection's info, until its transaction ends
_relay_wakers: list[Callable[[], None]] = []


def on_outbox_commit(wake: Callable[[], None]) -> Callable[[], None]:
    """Have `wake()` called, in the committing thread, after each commit that wrote outbox rows; it
    must only signal, not relay. Returns what undoes it."""
    _relay_wakers.append(wake)
    return lambda: _relay_wakers.remove(wake)


def wake_relays() -> None:
    """Outbox rows were committed just now: wake this process's relays (none outside a service)."""
    for wake in list(_relay_wakers):
        wake()


def mark_outbox_written(conn: Connection) -> None:
    conn.info[_OUTBOX_WRITTEN] = True


def relay_if_written(conn: Connection, committed: bool = True) -> None:
    """`conn`'s transaction has ended (committed, or not): wake the relays if it committed outbox rows."""
    try:
        written = conn.info.pop(_OUTBOX_WRITTEN, False)
    except sa.exc.SQLAlchemyError:  # the connection was lost on the way: nothing of it committed
        return
    if written and committed:
        wake_relays()


# Built once, the values given as parameters: SQLAlchemy derives a cache key for every statement it is
# given, and for a statement built anew with its values in it that walk cost more than running it.
_INBOX_ROW = INBOX.insert()
# PostgreSQL: the inbox row claims the event as the transaction starts, in one statement. A replica
# handling the same event meanwhile holds that key: this insert waits for its transaction, then
# finds the row (a duplicate) or, if it rolled back, claims the event itself.
# Prepared (chassis/prepared.py): every event any consumer handles sends it.
_CLAIM = Prepared("inbox_claim", insert_once(INBOX, ("consumer", "event_id", "processed_at"), "consumer, event_id"))


# The same for several events at once, in one statement whatever their number: the ids those it
# claimed (an id given twice is claimed once).
_CLAIM_SEVERAL = Prepared(
    "inbox_claim_several",
    sa.text(
        "INSERT INTO inbox (consumer, event_id, processed_at) SELECT :consumer, claimed, :processed_at "
        "FROM unnest(:event_ids) AS claimed ORDER BY claimed "  # in one order: overlapping claims never cross
        "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id"
    )
    .bindparams(
        sa.bindparam("consumer", type_=INBOX.c.consumer.type),
        sa.bindparam("processed_at", type_=INBOX.c.processed_at.type),
        sa.bindparam("event_ids", type_=postgresql.ARRAY(sa.String)),  # unbounded: a cast would cut a long id
    )
    .columns(INBOX.c.event_id),
)


class Duplicate(Exception):
    pass


def consume_once(
    engine: Engine, consumer: str, event: dict[str, Any], handle: Callable[[Connection, dict[str, Any]], object]
) -> bool:
    """Run `handle(conn, event)` exactly once per (consumer, event id), in one transaction with the
    inbox row; only that row's unique key means "duplicate" (also for a replica racing us). Any
    other error, the handler's own integrity errors included, is the caller's to retry.

    On PostgreSQL the inbox row is written first, with the check (_CLAIM): one statement, and a
    duplicate waits for the transaction that holds the event instead of doing its work again. On
    SQLite, where any write locks the whole database, it is checked first and written last, so the
    transaction holds no write lock while the handler may still be waiting on something."""
    return consume_together(engine, consumer, [event], lambda conn, fresh: handle(conn, fresh[0]))[0]


def consume_together(
    engine: Engine,
    consumer: str,
    batch: list[dict[str, Any]],
    handle_all: Callable[[Connection, list[dict[str, Any]]], object],
) -> list[bool]:
    """consume_once for several events in one transaction: `handle_all(conn, fresh)` gets those not
    handled before, in order, and is not called when there are none; answers, for each event of
    `batch`, whether it was handled now. One event given twice is handled once.

    On SQLite a replica that wrote one of several fresh events' inbox rows meanwhile fails the whole
    transaction (IntegrityError): which one is unknown, so the caller handles each alone."""
    fresh: list[dict[str, Any]] = []
    with engine.connect() as conn:
        committed = False
        try:
            with conn.begin():
                on_postgresql = conn.dialect.name == "postgresql"
                fresh = _claimed(conn, consumer, batch) if on_postgresql else _unseen(conn, consumer, batch)
                if not fresh:
                    raise Duplicate()
                handle_all(conn, fresh)
                if not on_postgresql:
                    _write_inbox_rows(conn, consumer, fresh, alone=len(fresh) == 1)
            committed = True
        except Duplicate:
            fresh = []
        finally:
            relay_if_written(conn, committed)
    handled, answers = {event["id"] for event in fresh}, []
    for event in batch:
        answers.append(event["id"] in handled)
        handled.discard(event["id"])  # the same event given twice was handled once
        if not answers[-1]:
            log.info("duplicate event ignored", extra={"event_id": event["id"], "consumer": consumer})
    return answers


def _inbox_row(consumer: str, event: dict[str, Any]) -> dict[str, Any]:
    return {"consumer": consumer, "event_id": event["id"], "processed_at": utcnow()}


def _claimed(conn: Connection, consumer: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """PostgreSQL: the events of `batch` whose inbox rows this transaction wrote, each once."""
    if len(batch) == 1:
        return batch if _CLAIM.execute(conn, _inbox_row(consumer, batch[0])).rowcount == 1 else []
    values = {"consumer": consumer, "processed_at": utcnow(), "event_ids": [event["id"] for event in batch]}
    claimed, fresh = set(_CLAIM_SEVERAL.execute(conn, values).scalars()), []
    for event in batch:
        if event["id"] in claimed:
            claimed.discard(event["id"])  # an id given twice is handled once
            fresh.append(event)
    return fresh


def _unseen(conn: Connection, consumer: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SQLite: the events of `batch` its inbox has no row for, each once (consume_once says why the
    rows are written last there)."""
    unseen: dict[str, dict[str, Any]] = {}
    for event in batch:
        query = sa.select(INBOX.c.event_id).where(INBOX.c.consumer == consumer, INBOX.c.event_id == event["id"])
        if event["id"] not in unseen and conn.execute(query).first() is None:
            unseen[event["id"]] = event
    return list(unseen.values())


def _write_inbox_rows(conn: Connection, consumer: str, fresh: list[dict[str, Any]], alone: bool) -> None:
    """SQLite's inbox rows, written last. A replica that handled the event meanwhile wrote its row
    first: for one event that makes it a duplicate (everything here rolls back)."""
    try:
        conn.execute(_INBOX_ROW, [_inbox_row(consumer, event) for event in fresh])
    except IntegrityError:
        if alone:
            raise Duplicate() from None
        raise


def add_request_id_column(op: Any) -> None:
    """Alembic step shared by every service's migration that adds `outbox.request_id`."""
    op.add_column("outbox", sa.Column("request_id", sa.String(64), nullable=True))


def outbox_lag(engine: Engine, now: datetime | None = None) -> tuple[int, float]:
    """(unpublished outbox rows, age in seconds of the oldest of them; 0 when none)."""
    with engine.connect() as conn:
        count, oldest = conn.execute(
            sa.select(sa.func.count(), sa.func.min(OUTBOX.c.created_at)).where(OUTBOX.c.published_at.is_(None))
        ).one()
    if not count or oldest is None:
        return 0, 0.0
    return int(count), max(((now or utcnow()) - oldest).total_seconds(), 0.0)


def count_dead_letters(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(DEAD)).scalar_one())


def dead_letter(engine: Engine, consumer: str, event: dict[str, Any], error: str) -> None:
    with engine.begin() as conn:
        add_dead_letter(conn, consumer, event, error)


def add_dead_letter(conn: Connection, consumer: str, event: dict[str, Any], error: str) -> None:
    conn.execute(
        DEAD.insert().values(
            consumer=consumer,
            event_id=str(event.get("id", "?")),
            body=json.dumps(event, default=str),
            error=error[:2000],
            failed_at=utcnow(),
        )
    )


def list_dead_letters(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(DEAD).order_by(DEAD.c.id).limit(limit)).all()
    return [_letter(row, with_body=False) for row in rows]


def get_dead_letter(engine: Engine, letter_id: int) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(DEAD).where(DEAD.c.id == letter_id)).first()
    return _letter(row, with_body=True) if row else None


def claim_dead_letter(engine: Engine, letter_id: int) -> dict[str, Any] | None:
    """Take a letter off the dead-letter table for a replay; None if gone (another replay took it).
    If the replay fails again, the consumer parks the event anew, so nothing is lost either way."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(DEAD).where(DEAD.c.id == letter_id)).first()
        if row is None or conn.execute(DEAD.delete().where(DEAD.c.id == letter_id)).rowcount != 1:
            return None
    return _letter(row, with_body=True)


def _letter(row: sa.Row[Any], with_body: bool) -> dict[str, Any]:
    letter: dict[str, Any] = {
        "id": row.id,
        "consumer": row.consumer,
        "event_id": row.event_id,
        "error": row.error,
        "failed_at": row.failed_at.isoformat(),
    }
    if with_body:
        letter["event"] = json.loads(row.body)
    else:
        letter["event_type"] = json.loads(row.body).get("type")
    return letter

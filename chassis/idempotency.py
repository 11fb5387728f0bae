"""Idempotency keys for state-changing RPCs: the first call with a key runs and its answer is kept
in the same transaction; a repeat (a retried request, a double submit) gets that answer back and
changes nothing. The same key with a different request is refused, as Stripe does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chassis.clock import utcnow
from chassis.errors import Conflict, Invalid
from chassis.events import IDEMPOTENCY
from chassis.sqltypes import UtcDateTime

if TYPE_CHECKING:
    from chassis.db import UnitOfWork

MISSING = object()


def _stable(value: object) -> str:
    """RPC arguments arrive as JSON; anything else in a call is a dependency the service passed in (a
    Stripe client, an RPC proxy), whose repr differs per worker. It counts by its type alone."""
    if isinstance(value, (datetime, date, Decimal, UUID)):
        return str(value)
    return f"<{type(value).__name__}>"


def request_hash(method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps([method, args, kwargs], sort_keys=True, default=_stable).encode()).hexdigest()


def claim(uow: UnitOfWork, key: str, fingerprint: str) -> Any:
    """Reserve `key` in this transaction, or return the answer kept for it (MISSING if it is ours now).

    The row is written first, so a concurrent call with the same key waits on its unique index until
    this transaction ends, then finds the kept answer (or, after a rollback, runs itself). ON CONFLICT
    DO NOTHING instead of a savepoint: pysqlite would commit a savepoint opened before any write."""
    if not key or len(key) > 250:
        raise Invalid("An idempotency key is 1 to 200 characters.", idempotency_key="1-200 characters")
    dialect = postgresql if uow.conn.dialect.name == "postgresql" else sqlite
    inserted = uow.execute(
        dialect.insert(IDEMPOTENCY)
        .values(key=key, request_hash=fingerprint, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["key"])
    ).rowcount
    if inserted == 1:
        return MISSING
    row = uow.execute(sa.select(IDEMPOTENCY).where(IDEMPOTENCY.c.key == key)).one()  # the row we conflicted with
    if row.request_hash != fingerprint:
        raise Conflict("This idempotency key was used for a different request.", idempotency_key="reused")
    return json.loads(row.result) if row.result is not None else None


def keep(uow: UnitOfWork, key: str, result: Any) -> None:
    uow.execute(IDEMPOTENCY.update().where(IDEMPOTENCY.c.key == key).values(result=json.dumps(result, default=str)))


def create_table(op: Any) -> None:
    """The migration step every service shares (the same table as chassis.events.define_tables)."""

    op.create_table(
        "idempotency_keys",
        sa.Column("key", sa.String(length=250), primary_key=True),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
    )

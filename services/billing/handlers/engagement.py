"""Collection signals: the per-client rollup the events maintain, and the engagement summaries the
admin API reads (the rule itself is plain Python in services/billing/engagement.py)."""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa

from chassis.errors import Invalid
from chassis.prepared import Prepared, bound
from chassis.sqltypes import UtcDateTime
from services.billing import domain, engagement
from services.billing.handlers.common import client_row, page_bounds, workspace_row, workspace_today
from services.billing.tables import client_engagement as rollups_table
from services.billing.tables import clients, invoices

__all__ = ["record_signal", "client_engagement", "list_engagement"]

log = logging.getLogger(__name__)


_of_workspace = sa.bindparam("of_workspace", type_=sa.String)
_of_client = sa.bindparam("of_client", type_=sa.String)
ROLLUP_FIELDS = tuple(field.name for field in dataclasses.fields(engagement.Rollup))  # what a signal may change
_rollup_key = (rollups_table.c.workspace_id == _of_workspace, rollups_table.c.client_id == _of_client)
# Prepared (chassis/prepared.py), as is the statement below: every payment, view and reminder sends both.
_SAVE_ROLLUP = Prepared(
    "billing_engagement_save",
    rollups_table.update().where(*_rollup_key).values(bound(rollups_table, *ROLLUP_FIELDS, "updated_at")),
)
# The client's rollup, locked, made first when it is the client's first signal, only for a client of
# the workspace: one statement. The no-op update of a row that exists is what locks it (as FOR UPDATE
# would), and it answers the row as the last transaction to change it committed it. Text, because
# SQLAlchemy compiles an ON CONFLICT insert anew on every use; both databases read it the same.
_ADD_OR_LOCK_ROLLUP = Prepared(
    "billing_engagement_add_or_lock",
    sa.text(
        "INSERT INTO client_engagement (workspace_id, client_id, updated_at) "
        "SELECT workspace_id, id, :now FROM clients WHERE id = :of_client AND workspace_id = :of_workspace "
        "ON CONFLICT (workspace_id, client_id) DO UPDATE SET updated_at = client_engagement.updated_at "
        f"RETURNING {', '.join(column.name for column in rollups_table.c)}"
    )
    .bindparams(sa.bindparam("now", type_=UtcDateTime), _of_workspace, _of_client)
    .columns(*rollups_table.c),
)


def record_signal(
    uow, now: datetime, workspace_id: str, client_id: str, signal: str, at: datetime | None = None
) -> bool:
    """Fold one signal into the client's rollup, in the caller's transaction: an event consumer's (so
    the inbox makes a redelivered event count once) or the one that publishes billing's own event.
    The row is locked while it changes, so concurrent signals for one client queue up rather than
    lose an increment; a client's first signal creates it. A client outside the workspace is logged
    and skipped: the event's other effects (its timeline entry) still happen."""
    return record_signals(uow, now, workspace_id, client_id, signal, [at or now])


def record_signals(uow, now: datetime, workspace_id: str, client_id: str, signal: str, moments: list[datetime]) -> bool:
    """record_signal for several signals of one kind, each at its moment, with one lock and one write."""
    key = {"of_workspace": workspace_id, "of_client": client_id}
    # A write, even when the row exists: on SQLite, which has no FOR UPDATE, a write is what takes
    # the database's write lock, so the row read is never a stale one.
    row = uow.execute(_ADD_OR_LOCK_ROLLUP, {**key, "now": now}).first()
    if row is None:
        log.warning(
            "signal for a client not in the workspace",
            extra={"workspace_id": workspace_id, "client_id": client_id, "signal": signal},
        )
        return False
    rollup = engagement.Rollup.from_row(row)
    for at in moments:
        rollup = engagement.apply_signal(rollup, signal, at)
    uow.execute(_SAVE_ROLLUP, {**key, **rollup.as_values(), "updated_at": now})
    return True


def _open_invoices(uow, workspace_id: str, client_id: str | None = None) -> dict[str, list]:
    """Standard invoices still owed, per client: what the client sees as owed (archived ones are not)."""
    query = sa.select(
        invoices.c.client_id,
        invoices.c.due_date,
        invoices.c.total,
        invoices.c.amount_paid,
        invoices.c.amount_credited,
        invoices.c.currency,
    ).where(
        invoices.c.workspace_id == workspace_id,
        invoices.c.kind == "standard",
        invoices.c.archived_at.is_(None),
        invoices.c.status.in_(sorted(domain.OPEN_STATUSES)),
    )
    if client_id is not None:
        query = query.where(invoices.c.client_id == client_id)
    found: dict[str, list] = defaultdict(list)
    for r in uow.execute(query).all():
        owed = domain.balance(r.total, r.amount_paid, r.amount_credited)
        if owed > 0:
            found[r.client_id].append(engagement.OpenInvoice(r.due_date, owed, r.currency))
    return found


def _rollups(uow, workspace_id: str, client_id: str | None = None) -> dict[str, engagement.Rollup]:
    query = sa.select(rollups_table).where(rollups_table.c.workspace_id == workspace_id)
    if client_id is not None:
        query = query.where(rollups_table.c.client_id == client_id)
    return {r.client_id: engagement.Rollup.from_row(r) for r in uow.execute(query).all()}


def _summary(client, rollup, open_invoices, today, now) -> dict:
    return {
        "client_id": client.id,
        "client_name": client.name,
        **engagement.summarize(rollup or engagement.Rollup(), open_invoices, today, now),
    }


def client_engagement(uow, now: datetime, workspace_id: str, client_id: str) -> dict:
    """One client's collection signals and late-payment risk; NotFound outside the workspace."""
    client = client_row(uow, workspace_id, client_id)
    today = workspace_today(workspace_row(uow, workspace_id), now)
    return _summary(
        client,
        _rollups(uow, workspace_id, client.id).get(client.id),
        _open_invoices(uow, workspace_id, client.id)[client.id],
        today,
        now,
    )


def list_engagement(
    uow, now: datetime, workspace_id: str, risk: str | None = None, limit: int = 100, offset: int = 0
) -> dict:
    """Every client of the workspace, riskiest first (then longest overdue), optionally one risk level.
    The risk depends on today's date, so it is computed on read, for all clients, then paged."""
    if risk not in (None, "") and risk not in engagement.RISKS:
        raise Invalid("Unknown risk level.", risk=f"one of {', '.join(engagement.RISKS)}")
    limit, offset = page_bounds(limit, offset, 500)
    today = workspace_today(workspace_row(uow, workspace_id), now)
    rollups, owed = _rollups(uow, workspace_id), _open_invoices(uow, workspace_id)
    rows = uow.execute(sa.select(clients.c.id, clients.c.name).where(clients.c.workspace_id == workspace_id)).all()
    summaries = [_summary(c, rollups.get(c.id), owed[c.id], today, now) for c in rows]
    if risk:
        summaries = [s for s in summaries if s["risk"] == risk]
    summaries.sort(key=engagement.sort_key)
    return {"items": summaries[offset : offset + limit], "total": len(summaries), "limit": limit, "offset": offset}

"""A client's activity timeline: what happened to its money and documents, newest first, as
`record_activity` (common.py) wrote it. The dashboard shows the latest entries the same way."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from services.billing.handlers.common import client_row, iso, page_bounds
from services.billing.tables import activities

__all__ = ["list_activity"]


def _activity(uow, workspace_id: str, client_id: str, limit) -> list[dict]:
    rows = uow.execute(
        sa.select(activities)
        .where(activities.c.workspace_id == workspace_id, activities.c.client_id == client_id)
        .order_by(activities.c.occurred_at.desc(), activities.c.id.desc())
        .limit(page_bounds(limit, 0, 200)[0])
    ).all()
    return [_activity_view(r) for r in rows]


def _activity_view(row) -> dict:
    return {"kind": row.kind, "summary": row.summary, "data": row.data, "occurred_at": iso(row.occurred_at)}


def list_activity(uow, now: datetime, workspace_id: str, client_id: str, limit: int = 50) -> list[dict]:
    client_row(uow, workspace_id, client_id)
    return _activity(uow, workspace_id, client_id, limit)

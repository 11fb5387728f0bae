"""A client's cached PDFs, fetched without asking billing: the read model that says which of them are
current.

The long way to a client's PDF is the gateway asking billing for the document (which checks that it
is the client's, issued and not archived), then documents rendering it, or finding the render in its
cache. Each such render for a client is recorded here with the moment the gateway asked billing.
Every event billing or payments publishes about a client (any type: a payment, a credit, a dispute,
an edit, a bank debit with the bank, a changed contact; `client.*` name the client by its id) records
that the client changed; one that names no client (the workspace's branding) records that the whole
workspace changed. A recorded render is current while:

- no change came after billing was asked, less a margin for the clocks of two machines (a render of
  data read before a change is never served once the change's event has arrived here);
- it is younger than a time limit, which bounds how long a change that published no event could go
  unseen;
- it is the same day in the business's time zone (an invoice turns overdue with the date).

A current render is served straight from this process's cache; anything else (never rendered for the
client, changed, too old, rendered by another replica) is answered "not current" and the gateway goes
the long way, which records the render afresh. Until a change's event arrives here (normally well under
a second after billing commits it), the previous render can still be served: the page itself, which
always asks billing, shows the change first.

The long way announces the download (document.downloaded, for the business's timeline); a render
served from here is not announced again, as the download that recorded it was, at most CURRENT_FOR
ago, of the same unchanged document.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from chassis.db import upsert
from chassis.prepared import Prepared
from services.documents.tables import client_changes, client_renders, workspace_changes

CURRENT_FOR = timedelta(minutes=10)
CLOCK_MARGIN = timedelta(seconds=5)  # the gateway's clock against this service's
CHANGE_SOURCES = ("billing", "payments")  # what a client's documents are made of


_RECORD = upsert(client_renders, ("workspace_id", "client_id", "kind", "document_id"))
# a change's time only moves forward, even when events arrive out of order
_CLIENT_CHANGED = upsert(client_changes, ("workspace_id", "client_id"), only_if_newer="changed_at")
_WORKSPACE_CHANGED = upsert(workspace_changes, ("workspace_id",), only_if_newer="changed_at")

_client_changed_since = (
    sa.select(client_changes.c.client_id)
    .where(
        client_changes.c.workspace_id == client_renders.c.workspace_id,
        client_changes.c.client_id == client_renders.c.client_id,
        client_changes.c.changed_at > client_renders.c.read_after,
    )
    .exists()
)
_workspace_changed_since = (
    sa.select(workspace_changes.c.workspace_id)
    .where(
        workspace_changes.c.workspace_id == client_renders.c.workspace_id,
        workspace_changes.c.changed_at > client_renders.c.read_after,
    )
    .exists()
)
CURRENT = Prepared(
    "current_client_render",
    sa.select(client_renders.c.cache_key, client_renders.c.filename).where(
        client_renders.c.workspace_id == sa.bindparam("workspace_id", type_=sa.String),
        client_renders.c.client_id == sa.bindparam("client_id", type_=sa.String),
        client_renders.c.kind == sa.bindparam("kind", type_=sa.String),
        client_renders.c.document_id == sa.bindparam("document_id", type_=sa.String),
        client_renders.c.valid_until > sa.bindparam("now", type_=client_renders.c.valid_until.type),
        ~_client_changed_since,
        ~_workspace_changed_since,
    ),
)


def valid_until(read_at: datetime, timezone: str | None) -> datetime:
    """The time limit, or the business's next midnight if that comes first."""
    zone = ZoneInfo(timezone or "UTC")
    local = read_at.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone)
    return min(read_at + CURRENT_FOR, midnight)


def record(
    uow,
    *,
    workspace_id: str,
    client_id: str,
    kind: str,
    data: dict,
    rendered: dict,
    read_at: datetime,
    timezone: str | None,
) -> None:
    """Remember that `rendered` (render_document's answer, with its cache key) is `data` as billing gave
    it to the client at `read_at`."""
    uow.execute(
        _RECORD,
        {
            "workspace_id": workspace_id,
            "client_id": client_id,
            "kind": kind,
            "document_id": str(data["id"]),
            "cache_key": rendered["cache_key"],
            "filename": rendered["filename"],
            "read_after": read_at - CLOCK_MARGIN,
            "valid_until": valid_until(read_at, timezone),
        },
    )


def changed(uow, now: datetime, workspace_id: str | None, data: dict, event_type: str = "") -> None:
    """An event about a client (or, naming none, about the whole workspace) has come."""
    if not workspace_id:
        return
    client_id = data.get("client_id") if isinstance(data, dict) else None
    if event_type.startswith("client.") and isinstance(data, dict):
        client_id = data.get("id")  # a client's own events name it by its id
    if client_id:
        uow.execute(_CLIENT_CHANGED, {"workspace_id": workspace_id, "client_id": str(client_id), "changed_at": now})
    else:
        uow.execute(_WORKSPACE_CHANGED, {"workspace_id": workspace_id, "changed_at": now})


def current(uow, now: datetime, workspace_id: str, client_id: str, kind: str, document_id: str):
    """(cache_key, filename) of the client's current render of the document, or None."""
    return uow.read_row(
        CURRENT,
        {
            "workspace_id": workspace_id,
            "client_id": client_id,
            "kind": kind,
            "document_id": document_id,
            "now": now,
        },
    )

"""A client's cached PDFs, fetched without asking billing: the read model, kept in this process's memory,
that says which of them are current.

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

Why memory, and each process its own: the rendered files are this process's cache, so a render another
replica recorded could not be served here anyway, and the check then costs the fetch no database round
trip. Every replica hears every change through a queue of its own bound to billing's and payments'
events (services/documents/service.py, `ChangesFeed`). Only renders of data read while that queue was
there are served: none before it is first bound, none while the connection is broken, and after a
break only those read once the queue is back, so a change lost in the break cannot leave one stale.
A replica that starts knows no render, so it serves none until the long way records one.

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

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from chassis.sql import upsert
from services.documents.tables import client_changes, workspace_changes

CURRENT_FOR = timedelta(minutes=10)
CLOCK_MARGIN = timedelta(seconds=5)  # the gateway's clock against this service's
CHANGE_SOURCES = ("billing", "payments")  # what a client's documents are made of
PRUNE_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Render:
    cache_key: str
    filename: str
    read_after: datetime  # when billing was asked, less the clocks' margin
    valid_until: datetime


def valid_until(read_at: datetime, timezone: str | None) -> datetime:
    """The time limit, or the business's next midnight if that comes first."""
    zone = ZoneInfo(timezone or "UTC")
    local = read_at.astimezone(zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=zone)
    return min(read_at + CURRENT_FOR, midnight)


def changed_client(event_type: str, data: object) -> str | None:
    """The client an event is about, or None when it names none (then: the whole workspace)."""
    if not isinstance(data, dict):
        return None
    client_id = data.get("id") if event_type.startswith("client.") else data.get("client_id")
    return str(client_id) if client_id else None  # a client's own events name it by its id


class CurrentRenders:
    """The renders this process recorded for clients, and when each client (or workspace) last changed.
    Used from the green threads of one process: each method runs without yielding, so no lock."""

    def __init__(self) -> None:
        self._renders: dict[tuple[str, str, str, str], Render] = {}
        self._clients_changed: dict[tuple[str, str], datetime] = {}
        self._workspaces_changed: dict[str, datetime] = {}
        self._next_prune: datetime | None = None
        self._hearing_since: datetime | None = None  # None: no change can be heard now

    def listening(self, since: datetime) -> None:
        """The queue of changes is bound and read: every change from `since` on will be heard."""
        self._hearing_since = since

    def deaf(self) -> None:
        """The queue of changes is gone with its connection: nothing is served until it is back."""
        self._hearing_since = None

    def record(
        self,
        *,
        workspace_id: str,
        client_id: str,
        kind: str,
        document_id: str,
        cache_key: str,
        filename: str,
        read_at: datetime,
        timezone: str | None,
    ) -> None:
        """Remember that the render `cache_key` is the document as billing gave it to the client at
        `read_at` (the caller's clock, taken before it asked billing, and not after this process's)."""
        self._prune(read_at)
        self._renders[(workspace_id, client_id, kind, document_id)] = Render(
            cache_key, filename, read_at - CLOCK_MARGIN, valid_until(read_at, timezone)
        )

    def changed(self, at: datetime, workspace_id: str | None, client_id: str | None = None) -> None:
        """Something about the client (or, naming none, about the whole workspace) changed at `at`; a
        change's time only moves forward, even when events arrive out of order."""
        if not workspace_id:
            return
        times: dict = self._clients_changed if client_id else self._workspaces_changed
        key = (workspace_id, client_id) if client_id else workspace_id
        known = times.get(key)
        if known is None or at > known:
            times[key] = at

    def heard(self, event: object, now: datetime, offset: timedelta = timedelta(0)) -> None:
        """An event of billing's or payments' as it arrived (the envelope of chassis/events.py)."""
        self._prune(now)
        if isinstance(event, dict):
            workspace_id = event.get("workspace_id")
            client_id = changed_client(str(event.get("type") or ""), event.get("data"))
            self.changed(now + offset, str(workspace_id) if workspace_id else None, client_id)

    def current(self, now: datetime, workspace_id: str, client_id: str, kind: str, document_id: str) -> Render | None:
        """The client's current render of the document, or None."""
        render = self._renders.get((workspace_id, client_id, kind, document_id))
        if render is None or render.valid_until <= now:
            return None
        if self._hearing_since is None or render.read_after < self._hearing_since:
            return None  # a change to that data could have come while no queue was there to hear it
        for changed_at in (
            self._clients_changed.get((workspace_id, client_id)),
            self._workspaces_changed.get(workspace_id),
        ):
            if changed_at is not None and changed_at > render.read_after:
                return None
        return render

    def _prune(self, now: datetime) -> None:
        """Forget what can no longer matter, once a minute: renders past their limit, and changes older
        than any render still current could have been read (CURRENT_FOR and the margin before now)."""
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + PRUNE_EVERY
        oldest_read = now - CURRENT_FOR - CLOCK_MARGIN - PRUNE_EVERY
        self._renders = {key: r for key, r in self._renders.items() if r.valid_until > now}
        self._clients_changed = {key: at for key, at in self._clients_changed.items() if at > oldest_read}
        self._workspaces_changed = {key: at for key, at in self._workspaces_changed.items() if at > oldest_read}


# ---- What documents processes of the previous release read, while an upgrade rolls out. They kept this
# read model in tables (client_renders, written only by them now, and the change times below), so each
# event about a client still updates its row: an older process never serves a render a change has
# made stale. The release after this one, once no older process is left, drops the tables and this.
_CLIENT_CHANGED = upsert(client_changes, ("workspace_id", "client_id"), only_if_newer="changed_at")
_WORKSPACE_CHANGED = upsert(workspace_changes, ("workspace_id",), only_if_newer="changed_at")


def changed_for_older_processes(uow, at: datetime, workspace_id: str | None, client_id: str | None) -> None:
    if not workspace_id:
        return
    if client_id:
        uow.execute(_CLIENT_CHANGED, {"workspace_id": workspace_id, "client_id": client_id, "changed_at": at})
    else:
        uow.execute(_WORKSPACE_CHANGED, {"workspace_id": workspace_id, "changed_at": at})

"""The workspace and client a service worker acts for, so the database can enforce it too.

The gateway knows who is calling (a portal session: a workspace and a client; an admin API key: a
workspace) and sends that scope in nameko's context data, which nameko carries as message headers
to the service and on to every RPC the service makes in turn. `ScopeContext` (chassis/nameko_ext.py)
binds it to `db_scope` for the worker; chassis/db.py sets it on each PostgreSQL transaction, where
the row-level security policies read it. No scope means the service works for itself (timers, event
consumers, sign-in before anyone is known): its transactions bypass the policies.

Under eventlet each green thread has its own contextvars, so concurrent workers never see each
other's scope.
"""
from __future__ import annotations

import contextvars
from dataclasses import dataclass

CONTEXT_KEY = "scope"  # the nameko context-data key (sent as the `nameko.scope` header)


@dataclass(frozen=True)
class Scope:
    workspace_id: str
    client_id: str | None = None  # None: the whole workspace (admin API)

    def to_context(self) -> dict:
        data = {"workspace_id": self.workspace_id}
        if self.client_id:
            data["client_id"] = self.client_id
        return data


def from_context(value) -> Scope | None:
    """The scope a caller sent, or None when it sent none. Anything malformed fails closed: a scope
    whose workspace matches no row."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return Scope("")
    workspace_id, client_id = value.get("workspace_id"), value.get("client_id")
    if not isinstance(workspace_id, str) or not workspace_id:
        return Scope("")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        return Scope("")
    return Scope(workspace_id, client_id)


db_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("db_scope", default=None)

"""The workspace and client a service worker acts for, so the database can enforce it too.

The gateway knows who is calling (a portal session: a workspace and a client; an admin API key: a
workspace) and sends that scope in nameko's context data, which nameko carries as message headers
to the service and on to every RPC the service makes in turn. `ScopeContext` (chassis/nameko_ext.py)
binds it to `db_scope` for the worker; chassis/db.py sets it on each PostgreSQL transaction, where
the row-level security policies read it.

No scope sees nothing: a path that forgets its scope fails closed. Every entrypoint declares where
its scope comes from (`runs_in`): the caller's message, the event's workspace, or, for its own work
(timers), scopes it enters as it goes. Only work that really spans workspaces acts as `SYSTEM`, which
bypasses the policies: the entrypoints and code paths that may are an allow-list a test checks.

A portal scope also carries the signed-in contact's role in its organisation (owner, payer, approver,
viewer): the service that owns an action checks it (`require_role`), so hiding a button is never the
only guard. A client scope without a role (a one-document link) may only read.

Under eventlet each green thread has its own contextvars, so concurrent workers never see each
other's scope.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from chassis.errors import Forbidden

CONTEXT_KEY = "scope"  # the nameko context-data key (sent as the `nameko.scope` header)

# Where an entrypoint's scope comes from.
CALLER = "caller"  # the caller's scope, from the message; a call without one sees nothing
EVENT = "event"  # the workspace the event belongs to (its envelope's workspace_id)
OWN = "own"  # nothing at first: the entrypoint enters the scopes it works in (timers)
SYSTEM_WIDE = "system"  # every workspace (allow-listed: lookups that precede knowing the workspace)
KINDS = (CALLER, EVENT, OWN, SYSTEM_WIDE)

# A contact's role inside its client's organisation, most powerful first.
ROLES = ("owner", "payer", "approver", "viewer")


@dataclass(frozen=True)
class Scope:
    workspace_id: str
    client_id: str | None = None  # None: the whole workspace (admin API)
    system: bool = False  # every workspace: only for the allow-listed paths
    role: str | None = None  # the signed-in contact's role (portal scopes only)
    # when the contact last proved presence (passkey or magic link), ISO UTC: payments' step-up check
    proved_at: str | None = None

    def to_context(self) -> dict[str, str]:
        if self.system:
            raise ValueError("the system scope never travels to another service")
        data = {"workspace_id": self.workspace_id}
        if self.client_id:
            data["client_id"] = self.client_id
            if self.role:
                data["role"] = self.role
            if self.proved_at:
                data["proved_at"] = self.proved_at
        return data

    def allows(self, roles: Collection[str]) -> bool:
        """Whether the caller may do what `roles` may: the business (no client) always; a client's
        contact only with one of `roles`; anything else (no role, an unknown one) fails closed."""
        if self.system or not self.client_id:
            return True
        return self.role in roles and self.role in ROLES


SYSTEM = Scope("", system=True)


def from_context(value: object) -> Scope | None:
    """The scope a caller sent, or None when it sent none. Anything malformed fails closed: a scope
    whose workspace matches no row. A message can never carry the system scope."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"workspace_id", "client_id", "role", "proved_at"}:
        return Scope("")
    workspace_id, client_id, role = value.get("workspace_id"), value.get("client_id"), value.get("role")
    if not isinstance(workspace_id, str) or not workspace_id:
        return Scope("")
    if client_id is not None and (not isinstance(client_id, str) or not client_id):
        return Scope("")
    if role is not None and (client_id is None or role not in ROLES):
        return Scope("")
    proved_at = value.get("proved_at")
    if proved_at is not None and (client_id is None or not isinstance(proved_at, str)):
        return Scope("")
    return Scope(workspace_id, client_id, role=role, proved_at=proved_at)


def of_event(event: object) -> Scope:
    """The scope an event's consumer acts in: its workspace (an event without one sees nothing)."""
    workspace_id = event.get("workspace_id") if isinstance(event, dict) else None
    return Scope(workspace_id if isinstance(workspace_id, str) else "")


F = TypeVar("F", bound=Callable[..., Any])


def runs_in(kind: str) -> Callable[[F], F]:
    """Declare where an entrypoint's scope comes from (one of KINDS); every entrypoint declares one."""
    if kind not in KINDS:
        raise ValueError(f"unknown scope kind {kind!r}")

    def declare(fn: F) -> F:
        setattr(fn, "scope_kind", kind)  # read by ScopeContext (chassis/nameko_ext.py)
        return fn

    return declare


def require_role(roles: Collection[str], detail: str) -> None:
    """Refuse (Forbidden, a 403 with `detail`) unless the current scope allows one of `roles`. Code run
    in-process with no scope bound (the CLI's seed, tests of handlers) is not a portal caller; over RPC
    every entrypoint binds one, and a call that sent none sees no rows at all."""
    scope = db_scope.get()
    if scope is not None and not scope.allows(roles):
        raise Forbidden(detail, role="not allowed")


@contextmanager
def acting_for(scope: Scope | None) -> Iterator[Scope | None]:
    """The database sees `scope` inside the block (its transactions begun there), then the previous one."""
    token = db_scope.set(scope)
    try:
        yield scope
    finally:
        db_scope.reset(token)


db_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("db_scope", default=None)

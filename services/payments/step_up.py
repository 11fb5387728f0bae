"""Step-up for money: with the workspace's `step_up_for_payments` on, a contact must have proved
presence (a passkey, or a sign-in link) in the last 10 minutes before paying or changing payment
methods. The time travels from the session credential in the caller's scope (chassis/scope.py); the
business itself (the admin API, a scope with no client) and payments' own work (autopay) are not
asked. Anything missing or malformed fails closed."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from chassis.errors import Unauthorized
from chassis.scope import Scope, db_scope

WINDOW = timedelta(minutes=10)
SKEW = timedelta(seconds=30)  # the gateways' clocks may run this much ahead
REFUSAL = "Confirm it is you before paying or changing payment methods: use your passkey or a new sign-in link."


def check(now: datetime, workspace_settings: dict, scope: Scope | None) -> None:
    """Unauthorized(step_up=required) unless the caller needs no step-up or proved presence recently."""
    if scope is None or scope.system or not scope.client_id:
        return
    if not workspace_settings.get("step_up_for_payments"):
        return
    try:
        proved = datetime.fromisoformat(scope.proved_at) if scope.proved_at else None
    except (TypeError, ValueError):
        proved = None
    if proved is None or proved.tzinfo is None or proved > now + SKEW or now - proved > WINDOW:
        raise Unauthorized(REFUSAL, step_up="required")


def required(entrypoint):
    """On a payments RPC whose first argument is the workspace: refuse unless `check` passes."""

    @functools.wraps(entrypoint)
    def checked(self, workspace_id, *args, **kwargs):
        scope = db_scope.get()
        if scope is not None and scope.client_id:  # only a contact's call needs the workspace's setting
            workspace = self.billing.get_workspace(workspace_id)
            check(self.clock(), workspace.get("settings") or {}, scope)
        return entrypoint(self, workspace_id, *args, **kwargs)

    # A test checks every money-moving entrypoint carries it; setattr, as functools.wraps's type has no such field.
    setattr(checked, "asks_for_step_up", True)
    return checked

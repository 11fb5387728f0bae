"""The caller's scope, from the gateway to the services' database transactions (no broker, no
PostgreSQL: tests/integration/test_row_level_security.py runs the policies themselves)."""

from types import SimpleNamespace

import eventlet
import falcon.testing
import pytest

from chassis.nameko_ext import ScopeContext
from chassis.scope import CALLER, EVENT, OWN, SYSTEM, SYSTEM_WIDE, Scope, acting_for, db_scope, from_context, runs_in
from services.gateway.app import GatewayConfig, create_app
from services.gateway.revocations import RevocationList
from services.gateway.rpc import RpcPool
from tests.unit.test_gateway import NOW, credential

SESSION = {
    "contact_id": "c1",
    "client_id": "cl1",
    "workspace_id": "ws1",
    "email": "demo@example.com",
    "name": "Dana",
    "expires_at": "2026-11-23T12:30:00+00:00",
}


def test_a_scope_travels_as_context_data_and_anything_malformed_fails_closed():
    assert from_context(Scope("ws1", "cl1").to_context()) == Scope("ws1", "cl1")
    assert from_context(Scope("ws1").to_context()) == Scope("ws1") and Scope("ws1").to_context() == {
        "workspace_id": "ws1"
    }
    assert from_context(None) is None  # no scope at all: sees nothing (chassis/db.py)
    for bad in (
        "ws1",
        {},
        {"workspace_id": ""},
        {"workspace_id": 5},
        {"workspace_id": "ws1", "client_id": ""},
        {"workspace_id": "ws1", "client_id": ["cl1"]},
        {"workspace_id": "ws1", "system": True},
    ):
        assert from_context(bad) == Scope("")  # a workspace no row has: nothing visible
    with pytest.raises(ValueError):
        SYSTEM.to_context()  # the system scope never travels to another service


def test_no_scope_sees_nothing_and_only_the_system_scope_bypasses():
    from chassis.db import _scope_params

    assert _scope_params() == {"workspace_id": "", "client_id": "", "bypass": ""}
    with acting_for(SYSTEM):
        assert _scope_params()["bypass"] == "on"
    with acting_for(Scope("ws1", "cl1")):
        assert _scope_params() == {"workspace_id": "ws1", "client_id": "cl1", "bypass": ""}
    assert db_scope.get() is None


class Declared:
    """Entrypoints of every kind, as a service declares them."""

    @runs_in(CALLER)
    def portal_call(self): ...

    @runs_in(EVENT)
    def on_event(self, event): ...

    @runs_in(SYSTEM_WIDE)
    def look_up_by_email(self): ...

    @runs_in(OWN)
    def timer(self): ...

    def undeclared(self): ...


def worker(method: str, data: dict, *args) -> SimpleNamespace:
    return SimpleNamespace(service=Declared(), entrypoint=SimpleNamespace(method_name=method), data=data, args=args)


def bound(method: str, data: dict, *args) -> tuple:
    """(the scope the worker's database sees, the scope its RPCs carry) for one worker."""
    provider, ctx = ScopeContext(), worker(method, data, *args)
    provider.worker_setup(ctx)
    try:
        return db_scope.get(), ctx.data.get("scope")
    finally:
        provider.worker_teardown(ctx)


def test_each_entrypoint_is_bound_to_the_scope_it_declares():
    sent = {"workspace_id": "ws1", "client_id": "cl1"}
    assert bound("portal_call", {"scope": sent}) == (Scope("ws1", "cl1"), sent)
    assert bound("portal_call", {}) == (None, None)  # a call without a scope sees nothing
    assert bound("on_event", {}, {"workspace_id": "ws2", "data": {}}) == (Scope("ws2"), {"workspace_id": "ws2"})
    assert bound("on_event", {}, {"data": {}}) == (Scope(""), {"workspace_id": ""})
    assert bound("look_up_by_email", {"scope": sent}) == (SYSTEM, None)  # and never passed on
    assert bound("timer", {}) == (None, None)
    assert bound("undeclared", {"scope": sent}) == (None, None)
    assert db_scope.get() is None


def test_a_handle_acts_for_a_workspace_then_restores_what_the_worker_had():
    ctx = worker("timer", {"request_id": "r1"})
    handle = ScopeContext().get_dependency(ctx)
    with handle.system():
        assert handle.current == SYSTEM and "scope" not in ctx.data
        with handle.workspace("ws1", "cl1"):
            assert handle.current == Scope("ws1", "cl1")
            assert ctx.data["scope"] == {"workspace_id": "ws1", "client_id": "cl1"}  # its RPCs carry it
        assert handle.current == SYSTEM and "scope" not in ctx.data
    assert handle.current is None and ctx.data == {"request_id": "r1"}


def test_each_green_thread_has_its_own_scope():
    def worker(name):
        db_scope.set(Scope("ws", name))
        eventlet.sleep(0)  # every other worker sets its own meanwhile
        return db_scope.get()

    threads = {name: eventlet.spawn(worker, name) for name in ("a", "b", "c")}
    assert {name: t.wait() for name, t in threads.items()} == {n: Scope("ws", n) for n in threads}
    assert db_scope.get() is None


class FakeClient:
    """A connected RpcClient as far as RpcPool uses it: the context data each call sends."""

    def __init__(self):
        self.sent = []

    def usable(self):
        return True

    def call(self, service, method, args, kwargs, context=None):
        self.sent.append(dict(context))


def test_the_rpc_pool_sends_the_scope_and_forgets_it_on_the_next_call():
    pool = RpcPool({}, timeout=1, size=1)
    client = FakeClient()
    pool._new_client = lambda: client
    pool.call("billing", "ping", request_id="r1", scope=Scope("ws1", "cl1"))
    pool.call("billing", "ping", request_id="r2")
    assert client.sent == [
        {"request_id": "r1", "scope": {"workspace_id": "ws1", "client_id": "cl1"}},
        {"request_id": "r2"},
    ]


class RecordingRpc:
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def call(self, service, method, *args, request_id=None, scope=None, **kwargs):
        self.calls.append((service, method, scope))
        return self.answers.get((service, method))


def test_the_gateway_scopes_portal_calls_to_the_session_and_admin_calls_to_the_key():
    rpc = RecordingRpc(
        {
            ("auth", "check_session"): "active",
            ("billing", "get_workspace"): {
                "id": "ws1",
                "name": "Acme",
                "logo_url": "",
                "brand_color": "#1d4ed8",
                "accent_color": "#0f766e",
            },
            ("billing", "client_dashboard"): None,
            ("billing", "authenticate_api_key"): "ws9",
            ("billing", "list_clients"): [],
        }
    )
    revocations = RevocationList()  # not fed yet: each session is checked with auth, in its own scope
    app = falcon.testing.TestClient(
        create_app(rpc, rpc, GatewayConfig(portal_url="http://portal.test", dev=True), revocations, clock=lambda: NOW)
    )
    app.simulate_get("/api/portal/v1/dashboard", headers={"Authorization": f"Bearer {credential()}"})
    assert rpc.calls == [
        ("auth", "check_session", Scope("ws1", "cl1")),
        ("billing", "client_dashboard", Scope("ws1", "cl1", role="owner")),  # the session's role travels
    ]
    rpc.calls.clear()
    revocations.ready = True  # fed: no call to auth at all
    app.simulate_get("/api/portal/v1/dashboard", headers={"Authorization": f"Bearer {credential()}"})
    assert rpc.calls == [("billing", "client_dashboard", Scope("ws1", "cl1", role="owner"))]
    rpc.calls.clear()
    page = app.simulate_get("/api/admin/v1/clients", headers={"Authorization": "Bearer key"})
    assert page.status_code == 200
    assert rpc.calls == [("billing", "authenticate_api_key", None), ("billing", "list_clients", Scope("ws9"))]

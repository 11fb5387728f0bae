"""Row-level security fails closed, structurally: every entrypoint of every service declares where its
scope comes from, only an allow-list acts for the whole system, and every gateway route that is not
on the public list needs a signed-in client before its responder runs."""

import ast
from pathlib import Path

import falcon
import falcon.testing

from chassis.scope import KINDS, SYSTEM_WIDE
from services.auth.service import AuthService
from services.billing.service import BillingService
from services.documents.service import DocumentsService
from services.gateway.app import GatewayConfig, create_app
from services.gateway.sessions import is_public
from services.payments.service import PaymentsService

ROOT = Path(__file__).resolve().parents[2]
SERVICES = (AuthService, BillingService, PaymentsService, DocumentsService)

# Entrypoints that act for every workspace: lookups that come before anyone is known.
SYSTEM_ENTRYPOINTS = {
    ("auth", "request_link"),  # sign-in: a contact is found by email in every workspace
    ("auth", "link_state"),  # a sign-in link's token
    ("auth", "consume_link"),
    ("auth", "revocations"),  # what every gateway refuses, in every workspace
    ("auth", "resolve_document_link"),  # an emailed document link's token
    ("auth", "passwords_offered"),  # whether the sign-in page shows the password form
    ("auth", "sign_in_with_password"),  # password sign-in: a contact is found by email in every workspace
    ("auth", "request_password_reset"),  # "Forgot your password?", likewise
    ("auth", "password_reset_state"),  # a password link's token
    ("auth", "reset_password"),
    ("auth", "passkey_sign_in_options"),  # passkey sign-in: nobody is known until the passkey answers
    ("auth", "passkey_sign_in"),
    ("auth", "report_state"),  # a sign-in email's "this wasn't me" token
    ("auth", "report_not_me"),
    ("billing", "authenticate_api_key"),  # which workspace an API key belongs to
    ("billing", "verify_document"),  # a printed document's code: its holder is nobody the portal knows
    ("documents", "recent_emails"),  # the development mail page
}
# Code that enters the system scope itself: each the step that finds which workspaces have work.
SYSTEM_BLOCKS = {
    ("services/billing/service.py", "sweep"),  # which workspaces have recurring invoices or reminders due
    ("services/payments/service.py", "_process_stripe_event"),  # whose a Stripe event is
    ("services/payments/service.py", "run_autopay"),  # which autopay attempts are due
    ("services/documents/service.py", "deliver_mail"),  # which workspaces have mail due
    ("services/documents/service.py", "deliver_webhooks"),  # which workspaces have deliveries due
    ("services/billing/seed.py", "seed"),  # the demo seed creates a workspace and fills it in one go
}
# Routes a client may use without signing in (path, method).
PUBLIC_ROUTES = {
    ("/", "GET"),
    ("/login", "GET"),
    ("/login", "POST"),
    ("/login/verify", "GET"),
    ("/login/verify", "POST"),
    ("/login/password", "POST"),  # password sign-in: the password is the credential
    ("/password/forgot", "GET"),  # "Forgot your password?" and its emailed link, by the token
    ("/password/forgot", "POST"),
    ("/password/reset", "GET"),
    ("/password/reset", "POST"),
    ("/login/passkey", "POST"),  # passkey sign-in: the passkey's answer is the credential
    ("/login/passkey/options", "POST"),
    ("/healthz", "GET"),
    ("/dev/mail", "GET"),
    ("/livez", "GET"),
    ("/readyz", "GET"),
    ("/metrics", "GET"),
    ("/i/{token}", "GET"),
    ("/i/{token}/pdf", "GET"),  # one document, by the emailed link's token
    ("/verify/{code}", "GET"),  # what proves a printed document, by its code: no client's name or lines
    ("/brand/{workspace_id}.css", "GET"),
    ("/brand/{workspace_id}/logo", "GET"),
    ("/favicon.ico", "GET"),  # browsers ask for it on the sign-in page too
    ("/webhooks/stripe", "POST"),  # signed by Stripe
    ("/unsubscribe", "GET"),  # an email's one-click unsubscribe link, by its signed token
    ("/not-me", "GET"),  # a sign-in email's "this wasn't me" link: shows what it would do
    ("/not-me", "POST"),  # ...and ends every session and link of the contact, by the token
    ("/unsubscribe", "POST"),
    ("/api/portal/v1/session", "POST"),  # signing in
    ("/api/portal/v1/session/passkey", "POST"),  # signing in with a passkey
    ("/api/portal/v1/session/passkey/options", "POST"),
    ("/api/portal/v1/session/password", "POST"),  # signing in with a password
    ("/api/portal/v1/password/forgot", "POST"),
    ("/api/portal/v1/password/reset", "POST"),
    ("/api/portal/v1/openapi.json", "GET"),
    ("/api/admin/v1/openapi.json", "GET"),
}
ADMIN_API = "/api/admin/v1/"  # the business's API: its callers authenticate with an API key instead


def entrypoints(service):
    for name in dir(service):
        method = getattr(service, name, None)
        if getattr(method, "nameko_entrypoints", None):
            yield name, getattr(method, "scope_kind", None)


def test_every_entrypoint_of_every_service_declares_its_scope():
    undeclared = [f"{s.name}.{name}" for s in SERVICES for name, kind in entrypoints(s) if kind not in KINDS]
    assert undeclared == []
    assert sum(1 for s in SERVICES for _ in entrypoints(s)) > 100  # consumers, RPCs, timers and HTTP alike


def test_only_the_allow_listed_entrypoints_act_for_every_workspace():
    system = {(s.name, name) for s in SERVICES for name, kind in entrypoints(s) if kind == SYSTEM_WIDE}
    assert system == SYSTEM_ENTRYPOINTS


def test_only_the_allow_listed_code_enters_the_system_scope():
    found = set()
    for top in ("chassis", "services", "deploy"):
        for path in (ROOT / top).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for function in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
                for node in ast.walk(function):
                    enters = (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "system"
                        and not node.args
                    ) or (isinstance(node, ast.Name) and node.id == "SYSTEM")
                    if enters:
                        found.add((path.relative_to(ROOT).as_posix(), function.name))
    found -= {("chassis/nameko_ext.py", name) for name in ("system", "worker_setup")}  # the mechanism itself
    assert found == SYSTEM_BLOCKS


class NoRpc:
    """Any call reaching the services from a route that should have stopped at the session check fails."""

    def __init__(self):
        self.calls = []

    def call(self, service, method, *args, **kwargs):
        self.calls.append((service, method))
        raise falcon.HTTPServiceUnavailable()  # so that a public page's call does not pass for a refusal


def routes(app):
    """(path template, resource) for every route of the app's router."""

    def walk(nodes):
        for node in nodes:
            if node.resource is not None:
                yield node.uri_template, node.resource
            yield from walk(node.children)

    return list(walk(app._router._roots))


def test_every_client_route_needs_a_session_before_its_responder_runs():
    rpc = NoRpc()
    app = create_app(rpc, rpc, GatewayConfig(portal_url="http://portal.test", dev=True))
    client = falcon.testing.TestClient(app)
    public, checked = set(), 0
    for path, resource in routes(app):
        if hasattr(resource, "routes"):  # the JSON APIs: one resource serves the methods of one path
            methods = list(resource.routes)
        else:
            methods = [
                m
                for m in falcon.constants.COMBINED_METHODS
                if any(name == f"on_{m.lower()}" or name.startswith(f"on_{m.lower()}_") for name in dir(resource))
            ]
        for method in methods:
            url = path.replace("{", "").replace("}", "")
            request = falcon.testing.create_req(path=url, method=method)
            rpc.calls.clear()
            answer = client.simulate_request(method, url, headers={"Origin": "http://portal.test"})
            if path.startswith(ADMIN_API) and path != ADMIN_API + "openapi.json":
                assert is_public(resource, request) and answer.status_code == 401, (method, path)  # no key
                continue
            if is_public(resource, request):
                public.add((path, method))
                continue
            assert answer.status_code in (303, 401, 403), (method, path, answer.status_code)
            if answer.status_code == 303:
                assert answer.headers["Location"].startswith("/login"), (method, path)
            assert rpc.calls == [], (method, path)  # refused before anything reached a service
            checked += 1
    assert public == PUBLIC_ROUTES
    assert checked > 40

"""Each demo client, signed in, requests every portal route (HTML and JSON) with the other client's ids:
always 404, never their data, nothing changed. The routes come from the gateway's own router, so a new
route is covered (or must be listed below with the reason it is not) without editing this test."""
import re

import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.gateway.admin import PREFIX as ADMIN
from services.gateway.app import GatewayConfig, create_app
from services.gateway.portal_api import PortalApiResource
from tests.conftest import sign_in
from tests.e2e.payments_support import CARD_OK, confirm_setup
from tests.integration.test_admin_api import snapshot

pytestmark = pytest.mark.e2e

# Templated routes that are not one client's objects, and where their isolation is tested instead.
NOT_CLIENT_SCOPED = {
    "/i/{token}": "a document link is its own scope (tests/integration/test_services.py)",
    "/i/{token}/pdf": "as above",
    "/brand/{workspace_id}.css": "the business's public colours",
    "/brand/{workspace_id}/logo": "the business's public logo",
    "/bookings/new/{link_id}": "booking links belong to the workspace, shared by its clients",
    "/bookings/new/{link_id}/confirm": "as above",
    "/api/portal/v1/booking-links/{id}/slots": "as above",
}
SEGMENT_KIND = {"invoices": "invoice", "quotes": "quote", "payments": "payment", "bookings": "booking",
                "pay": "attempt", "payment-methods": "card"}
FORM = {"signature_name": "Mallory", "confirmed": "yes", "reason": "x", "body": "x", "to": "m@example.org",
        "note": "x"}
JSON_BODIES = {"CommentIn": {"body": "x"}, "ForwardIn": {"to": "m@example.org"},
               "AcceptIn": {"signature_name": "Mallory"}, "RejectIn": {"reason": "x"}}


def templated_routes() -> list[tuple[str, str, object]]:
    """(method, uri template, resource) for every route with a parameter, outside the admin API."""
    app = create_app(rpc=None, health_rpc=None, config=GatewayConfig())
    found = []

    def walk(nodes):
        for node in nodes:
            template = node.uri_template
            if node.resource is not None and "{" in template and not template.startswith(ADMIN):
                if isinstance(node.resource, PortalApiResource):
                    methods = list(node.resource.routes)
                else:  # the responders this route really has (suffixed ones too, like on_post_confirm)
                    methods = [m for m, responder in node.method_map.items()
                               if m in ("GET", "POST", "PATCH", "DELETE") and responder.__name__.startswith("on_")]
                found.extend((method, template, node.resource) for method in methods)
            walk(node.children)

    walk(app._router._roots)
    return found


def unchanged_state(stack) -> dict:
    """Billing's and payments' tables, except where signing in is recorded in the background (its event's
    inbox row and the activity timeline) and Stripe's own notifications arrive (customer.created...)."""
    return {f"{service}.{table}": digest for service in ("billing", "payments")
            for table, digest in snapshot(stack.databases[service]).items() if table not in ("activities", "inbox", "stripe_events")}


def kind_of(template: str) -> str:
    segment = template.removeprefix("/api/portal/v1").split("/")[1]
    return SEGMENT_KIND[segment]


@pytest.fixture(scope="module")
def accounts(stack):
    """Both demo clients' object ids: the seed's, plus a booking each (and a payment for Other Corp)."""
    import psycopg2

    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT c.name, c.id, c.workspace_id, ct.id FROM clients c JOIN contacts ct ON ct.client_id = c.id "
                    "WHERE ct.email IN ('demo@example.com', 'other@example.com')")
        rows = {name: (client, ws, contact) for name, client, ws, contact in cur.fetchall()}
    accounts = {}
    with ClusterRpcProxy({"AMQP_URI": stack.amqp_uri}, timeout=30) as rpc:
        for name, email in (("Demo Client Ltd", "demo@example.com"), ("Other Corp", "other@example.com")):
            client, ws, contact = rows[name]
            invoices = rpc.billing.list_invoices(ws, {"client_id": client, "portal": True})["items"]
            payments = rpc.billing.list_payments(ws, client)
            if not payments:  # Other Corp has none: a paid extra invoice adds one without changing what it owes
                extra = rpc.billing.create_invoice(ws, {"client_id": client, "send": True, "lines": [
                    {"description": "Isolation check", "quantity": 1, "unit_price": 1234}]})
                payments = [rpc.billing.record_payment(ws, {"invoice_id": extra["id"], "amount": 1234,
                                                            "method": "cash"})]
            slots = rpc.billing.booking_options(ws, "consultation-30")["slots"]
            booking = rpc.billing.book_slot(ws, client, contact, "consultation-30", slots[-1 if "Demo" in name else -2])
            quotes = rpc.billing.list_quotes(ws, {"client_id": client, "portal": True})["items"]
            unpaid = next(i for i in invoices if i["status"] in ("sent", "viewed", "partially_paid"))
            attempt = rpc.payments.start_payment(ws, client, {"invoice_ids": [unpaid["id"]]}, "isolation")
            setup = rpc.payments.card_setup(ws, client)
            confirm_setup(stack, setup["client_secret"], CARD_OK)
            card = rpc.payments.save_card(ws, client, setup["setup_intent"])
            accounts[email] = {"name": name, "ids": {"invoice": invoices[0]["id"], "quote": quotes[0]["id"],
                                                     "payment": payments[0]["id"], "booking": booking["id"],
                                                     "attempt": attempt["id"], "card": card["id"]},
                               "numbers": [invoices[0]["number"], quotes[0]["number"]]}
    return accounts


@pytest.mark.parametrize("me,them", [("demo@example.com", "other@example.com"),
                                     ("other@example.com", "demo@example.com")])
def test_every_route_with_the_other_clients_ids_is_404(stack, accounts, me, them):
    browser = sign_in(stack, me)
    api_token = browser.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
    theirs = accounts[them]
    secrets = [theirs["name"], *theirs["numbers"]]
    before = unchanged_state(stack)
    tried = []
    for method, template, resource in templated_routes():
        if template in NOT_CLIENT_SCOPED:
            continue
        object_id = theirs["ids"][kind_of(template)]
        url = stack.url + re.sub(r"\{\w+\}", object_id, template)
        if template.startswith("/api/"):
            route = resource.routes[method]
            body = JSON_BODIES[route.body.__name__] if route.body else None
            answer = browser.request(method, url, json=body, headers={"X-CSRF-Token": api_token})
        else:
            answer = browser.request(method, url, data=FORM if method == "POST" else None)
        tried.append((method, template))
        assert answer.status_code == 404, (method, template, answer.status_code, answer.text[:300])
        assert not [s for s in secrets if s in answer.text], (method, template)
    assert unchanged_state(stack) == before
    # the router really was walked: HTML and JSON routes of invoices, quotes, payments, bookings, pay pages, cards
    assert {kind_of(template) for _, template in tried} == set(SEGMENT_KIND.values())
    assert {t.startswith("/api/") for _, t in tried} == {True, False} and len(tried) >= 20, tried


@pytest.mark.parametrize("me,them", [("demo@example.com", "other@example.com"),
                                     ("other@example.com", "demo@example.com")])
def test_no_listing_or_page_shows_the_other_client(stack, accounts, me, them):
    browser = sign_in(stack, me)
    secrets = [accounts[them]["name"], *accounts[them]["numbers"]]
    pages = ["/dashboard", "/invoices", "/quotes", "/quotes?status=all", "/payments", "/statement", "/profile",
             "/bookings", "/contact", "/review", "/statement.pdf"]
    api = ["/dashboard", "/invoices", "/quotes", "/payments", "/statement", "/profile", "/bookings", "/me"]
    for path in pages + [f"/api/portal/v1{p}" for p in api]:
        answer = browser.get(stack.url + path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert not [s for s in secrets if s in answer.text], path
    mine = browser.get(f"{stack.url}/api/portal/v1/invoices", params={"limit": 100}).json()["items"]
    assert accounts[me]["ids"]["invoice"] in {i["id"] for i in mine}  # the listing works, and is mine
    assert accounts[them]["ids"]["invoice"] not in {i["id"] for i in mine}

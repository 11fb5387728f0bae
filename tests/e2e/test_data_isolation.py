"""Data isolation, walked from the gateway's own route tables so a new route is covered (or must be listed
below with the reason it is not) without editing this test:

- portal: a signed-in client requests every templated route (HTML and JSON) with another client's ids, of
  its own workspace (Demo Client Ltd / Other Corp) or of a second workspace (Beta Works): always 404, never
  their data, nothing changed; and no listing or page shows them;
- admin API: each workspace's key requests every {id} route with the other workspace's ids: always 404,
  nothing changed; and no listing shows the other workspace's objects.
"""

import re
import time
from datetime import date, timedelta

import psycopg2
import pytest

from services.gateway.admin import PREFIX as ADMIN
from services.gateway.admin import ROUTES as ADMIN_ROUTES
from services.gateway.app import GatewayConfig, create_app
from services.gateway.portal_api import PortalApiResource
from tests.conftest import services_rpc, sign_in
from tests.e2e.payments_support import CARD_OK, confirm_setup
from tests.integration.test_admin_api import VALID_BODIES, Api, portalctl, snapshot
from tests.integration.test_services import wait_until

pytestmark = pytest.mark.e2e

# Templated routes that are no client's objects, and where their isolation is tested instead.
PUBLIC = {
    "/i/{token}": "a document link is its own scope (tests/integration/test_services.py)",
    "/i/{token}/pdf": "as above",
    "/verify/{code}": "a printed document's code; shows no client's data (tests/e2e/test_verify_documents.py)",
    "/brand/{workspace_id}.css": "the business's public colours",
    "/brand/{workspace_id}/logo": "the business's public logo",
}
# Booking links belong to the workspace, shared by its clients: walked only with another workspace's.
WORKSPACE_SCOPED = {
    "/bookings/new/{link_id}",
    "/bookings/new/{link_id}/confirm",
    "/api/portal/v1/booking-links/{id}/slots",
}
SEGMENT_KIND = {
    "invoices": "invoice",
    "quotes": "quote",
    "payments": "payment",
    "bookings": "booking",
    "pay": "attempt",
    "payment-methods": "card",
    "booking-links": "link",
}
FORM = {
    "signature_name": "Mallory",
    "confirmed": "yes",
    "version": "1",
    "reason": "x",
    "body": "x",
    "message": "x",
    "to": "m@example.org",
    "note": "x",
}
JSON_BODIES = {
    "CommentIn": {"body": "x"},
    "ForwardIn": {"to": "m@example.org"},
    "AcceptIn": {"signature_name": "Mallory", "version": 1},
    "RejectIn": {"reason": "x", "version": 1},
    "ChangesIn": {"message": "x", "version": 1},
    "DisputeIn": {"reason": "x"},
}
LOCAL_HOOK = "http://127.0.0.1:9/isolation-hook"  # webhook deliveries stay on this machine (nothing listens)
BETA = "beta-client@example.org"


def templated_routes() -> list[tuple[str, str, object]]:
    """(method, uri template, resource) for every route with a parameter, outside the admin API."""
    return [route for route in portal_routes() if "{" in route[1]]


def portal_routes() -> list[tuple[str, str, object]]:
    """(method, uri template, resource) for every route of the gateway's router, outside the admin API."""
    app = create_app(rpc=None, health_rpc=None, config=GatewayConfig())
    found = []

    def walk(nodes):
        for node in nodes:
            template = node.uri_template
            if node.resource is not None and not template.startswith(ADMIN):
                if isinstance(node.resource, PortalApiResource):
                    methods = list(node.resource.routes)
                else:  # the responders this route really has (suffixed ones too, like on_post_confirm)
                    methods = [
                        m
                        for m, responder in node.method_map.items()
                        if m in ("GET", "POST", "PATCH", "DELETE") and responder.__name__.startswith("on_")
                    ]
                found.extend((method, template, node.resource) for method in methods)
            walk(node.children)

    walk(app._router._roots)
    return found


def admin_id_routes() -> list:
    return [route for route in ADMIN_ROUTES if "{id}" in route.path]


def unchanged_state(stack, signed_in: str | None = None) -> dict:
    """Billing's and payments' tables, except where signing in is recorded in the background (its event's
    inbox row, the activity timeline and the signed-in client's engagement row) and Stripe's own
    notifications arrive (customer.created...); and documents' webhook subscriptions (their deliveries
    are retried in the background)."""
    state = {
        f"{service}.{table}": digest
        for service in ("billing", "payments")
        for table, digest in snapshot(stack.databases[service]).items()
        if table not in ("activities", "inbox", "stripe_events", "client_engagement")
    }
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('client_engagement') IS NOT NULL")
        if cur.fetchone()[0]:  # every other client's signals: a refused request records none on them
            cur.execute(
                "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM client_engagement t "
                "WHERE client_id IS DISTINCT FROM %s",
                (signed_in,),
            )
            state["billing.client_engagement"] = cur.fetchone()
    with psycopg2.connect(stack.databases["documents"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('webhook_subscriptions') IS NOT NULL")
        if cur.fetchone()[0]:
            cur.execute(
                "SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM webhook_subscriptions t"
            )
            state["documents.webhook_subscriptions"] = cur.fetchone()
    return state


def kind_of(template: str) -> str:
    segment = template.removeprefix("/api/portal/v1").split("/")[1]
    return SEGMENT_KIND[segment]


def portal_ids(stack, rpc, ws: str, client: str, contact: str, link: str, slot: int) -> dict:
    """One object of every kind the portal's routes take an id for, of this client: the seed's or new ones
    (a paid extra invoice gives a payment without changing what the client owes), a booking, a payment
    attempt and a saved card."""
    invoices = rpc.billing.list_invoices(ws, {"client_id": client, "portal": True})["items"]
    payments = rpc.billing.list_payments(ws, client)
    if not payments:
        extra = rpc.billing.create_invoice(
            ws,
            {
                "client_id": client,
                "send": True,
                "lines": [{"description": "Isolation check", "quantity": 1, "unit_price": 1234}],
            },
        )
        payments = [rpc.billing.record_payment(ws, {"invoice_id": extra["id"], "amount": 1234, "method": "cash"})]
    slots = rpc.billing.booking_options(ws, link)["slots"]
    booking = rpc.billing.book_slot(ws, client, contact, link, slots[slot])
    quotes = rpc.billing.list_quotes(ws, {"client_id": client, "portal": True})["items"]
    unpaid = next(i for i in invoices if i["status"] in ("sent", "viewed", "partially_paid"))
    attempt = rpc.payments.start_payment(ws, client, {"invoice_ids": [unpaid["id"]]}, "isolation")
    setup = rpc.payments.card_setup(ws, client)
    confirm_setup(stack, setup["client_secret"], CARD_OK)
    card = rpc.payments.save_card(ws, client, setup["setup_intent"])
    return {
        "invoice": invoices[0]["id"],
        "quote": quotes[0]["id"],
        "payment": payments[0]["id"],
        "booking": booking["id"],
        "attempt": attempt["id"],
        "card": card["id"],
        "link": link,
    }


def make_beta_workspace(stack) -> dict:
    """A second business, made as an operator makes one (portalctl), with its own numbering and booking
    link, and a client with a portal contact, invoices (one part paid), a quote and a recurring invoice."""
    ws = portalctl(
        stack, "workspace", "create", "--name", "Beta Works", "--email", "books@beta.example.org", "--currency", "EUR"
    )["id"]
    with services_rpc(stack, ws) as rpc:
        rpc.billing.update_workspace(
            ws,
            {
                "settings": {
                    "invoice_number_pattern": "BETA-{YYYY}-{seq:05}",
                    "quote_number_pattern": "BQ-{YYYY}-{seq:05}",
                    "booking_links": [{"id": "beta-call", "name": "Beta call", "duration_minutes": 20}],
                }
            },
        )
        client = rpc.billing.create_client(
            ws,
            {
                "name": "Beta Buyer GmbH",
                "contacts": [{"email": BETA, "name": "Bea", "is_primary": True, "portal_access": True}],
            },
        )
        for i in range(2):
            invoice = rpc.billing.create_invoice(
                ws,
                {
                    "client_id": client["id"],
                    "send": True,
                    "lines": [{"description": f"Beta secret work {i}", "quantity": 1, "unit_price": 40000 + i}],
                },
            )
        rpc.billing.record_payment(ws, {"invoice_id": invoice["id"], "amount": 1000, "method": "cash"})
        rpc.billing.create_quote(
            ws,
            {
                "client_id": client["id"],
                "send": True,
                "lines": [{"description": "Beta secret plan", "quantity": 1, "unit_price": 9000}],
            },
        )
        rpc.billing.create_recurring(
            ws,
            {
                "client_id": client["id"],
                "frequency": "monthly",
                "start_date": (date.today() + timedelta(days=30)).isoformat(),
                "lines": [{"description": "Beta care", "unit_price": 100}],
            },
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # auth learns the contact from billing's events
        with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM contacts WHERE email = %s AND portal_access", (BETA,))
            if cur.fetchone()[0]:
                return {"workspace_id": ws, "client": client}
        time.sleep(0.2)
    raise AssertionError(f"auth never learned {BETA} from billing's events")


@pytest.fixture(scope="module")
def accounts(stack):
    """Three clients' object ids: the seed's two of Acme Studio and one of a second workspace."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT c.name, c.id, c.workspace_id, ct.id FROM clients c JOIN contacts ct ON ct.client_id = c.id "
            "WHERE ct.email IN ('demo@example.com', 'other@example.com')"
        )
        rows = {name: (client, ws, contact) for name, client, ws, contact in cur.fetchall()}
    accounts = {}
    beta = make_beta_workspace(stack)
    rows["Beta Buyer GmbH"] = (beta["client"]["id"], beta["workspace_id"], beta["client"]["contacts"][0]["id"])
    for name, email, link, slot in (
        ("Demo Client Ltd", "demo@example.com", "consultation-30", -1),
        ("Other Corp", "other@example.com", "consultation-30", -2),
        ("Beta Buyer GmbH", BETA, "beta-call", -1),
    ):
        client, ws, contact = rows[name]
        with services_rpc(stack, ws) as rpc:
            ids = portal_ids(stack, rpc, ws, client, contact, link, slot)
            numbers = [
                rpc.billing.get_invoice(ws, ids["invoice"])["number"],
                rpc.billing.get_quote(ws, ids["quote"])["number"],
            ]
            accounts[email] = {
                "name": name,
                "workspace_id": ws,
                "client_id": client,
                "contact_id": contact,
                "ids": ids,
                "numbers": numbers,
            }
    return accounts


def walk_portal_routes(stack, browser, theirs: dict, workspace_scoped: bool) -> list[tuple[str, str]]:
    """Every templated portal route, HTML and JSON, with `theirs` ids: 404, and none of their data."""
    api_token = browser.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
    secrets = [theirs["name"], *theirs["numbers"]]
    tried = []
    for method, template, resource in templated_routes():
        if template in PUBLIC or (template in WORKSPACE_SCOPED and not workspace_scoped):
            continue
        url = stack.url + re.sub(r"\{\w+\}", theirs["ids"][kind_of(template)], template)
        if template.startswith("/api/"):
            route = resource.routes[method]
            body = JSON_BODIES[route.body.__name__] if route.body else None
            answer = browser.request(method, url, json=body, headers={"X-CSRF-Token": api_token})
        else:
            answer = browser.request(method, url, data=FORM if method == "POST" else None)
        tried.append((method, template))
        assert answer.status_code == 404, (method, template, answer.status_code, answer.text[:300])
        assert not [s for s in secrets if s in answer.text], (method, template)
    # the router really was walked: HTML and JSON routes of invoices, quotes, payments, bookings, pay pages, cards
    kinds = set(SEGMENT_KIND.values()) - (set() if workspace_scoped else {"link"})
    assert {kind_of(template) for _, template in tried} == kinds
    assert {t.startswith("/api/") for _, t in tried} == {True, False} and len(tried) >= 20, tried
    return tried


def assert_pages_hide(stack, browser, mine: dict, theirs: dict) -> None:
    """No page or listing, HTML or JSON, shows their name or numbers; the listing does show mine."""
    secrets = [theirs["name"], *theirs["numbers"]]
    pages = [
        "/dashboard",
        "/invoices",
        "/quotes",
        "/quotes?status=all",
        "/payments",
        "/statement",
        "/profile",
        "/bookings",
        "/contact",
        "/review",
        "/statement.pdf",
        "/payment-methods",
    ]
    api = ["/dashboard", "/invoices", "/quotes", "/payments", "/statement", "/profile", "/bookings", "/me"]
    for path in pages + [f"/api/portal/v1{p}" for p in api]:
        answer = browser.get(stack.url + path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert not [s for s in secrets if s in answer.text], path
    listed = {
        i["id"] for i in browser.get(f"{stack.url}/api/portal/v1/invoices", params={"limit": 100}).json()["items"]
    }
    assert mine["ids"]["invoice"] in listed and theirs["ids"]["invoice"] not in listed
    bookings = browser.get(f"{stack.url}/api/portal/v1/bookings").json()
    assert mine["ids"]["booking"] in {b["id"] for b in bookings["upcoming"]}
    assert theirs["ids"]["booking"] not in str(bookings)


PAIRS = [
    ("demo@example.com", "other@example.com"),
    ("other@example.com", "demo@example.com"),
    ("demo@example.com", BETA),
    (BETA, "demo@example.com"),
]


@pytest.mark.parametrize("me,them", PAIRS)
def test_every_route_with_another_clients_ids_is_404(stack, accounts, me, them):
    browser = sign_in(stack, me)
    before = unchanged_state(stack, accounts[me]["client_id"])
    other_workspace = accounts[me]["workspace_id"] != accounts[them]["workspace_id"]
    walk_portal_routes(stack, browser, accounts[them], workspace_scoped=other_workspace)
    if other_workspace:  # ids in a query or a body are refused too
        theirs = accounts[them]["ids"]
        csrf = browser.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
        booked = browser.post(
            f"{stack.url}/api/portal/v1/bookings",
            headers={"X-CSRF-Token": csrf},
            json={"link_id": theirs["link"], "start": "2030-01-07T15:00:00+00:00"},
        )
        assert booked.status_code == 404, booked.text
        review = browser.get(f"{stack.url}/pay", params={"invoice": theirs["invoice"]})
        assert review.status_code in (404, 422) and accounts[them]["numbers"][0] not in review.text, review.text[:300]
    assert unchanged_state(stack, accounts[me]["client_id"]) == before


@pytest.mark.parametrize("me,them", PAIRS)
def test_no_listing_or_page_shows_another_client(stack, accounts, me, them):
    assert_pages_hide(stack, sign_in(stack, me), accounts[me], accounts[them])


# --- the admin API, one key per workspace ------------------------------------------------------------------


@pytest.fixture(scope="module")
def workspaces(stack, accounts):
    """Each workspace's API key and one object of every kind the admin API's {id} routes take."""
    keyed = {}
    for name, email in (("acme", "demo@example.com"), ("beta", BETA)):
        account = accounts[email]
        ws, client = account["workspace_id"], account["client_id"]
        with services_rpc(stack, ws) as rpc:
            key = portalctl(stack, "key", "create", "--workspace", ws, "--name", "isolation")["key"]
            api = Api(stack.url, key)
            ids = {
                "clients": client,
                "contacts": account["contact_id"],
                "invoices": account["ids"]["invoice"],
                "quotes": account["ids"]["quote"],
                "bookings": account["ids"]["booking"],
                "payments": account["ids"]["attempt"],
                "recurring-invoices": rpc.billing.list_recurring(ws, client)[0]["id"],
                "invoice-disputes": rpc.billing.raise_invoice_dispute(
                    ws, client, account["contact_id"], "Isolation", account["ids"]["invoice"], "For the walk"
                )["id"],
            }
            if any(route.path.startswith("/webhooks") for route in ADMIN_ROUTES):
                hook = api(
                    "POST", "/webhooks", {"url": LOCAL_HOOK, "event_types": ["comment.added"]}, expect=201
                ).json()
                api("POST", f"/invoices/{ids['invoices']}/comments", {"body": "For the webhook"}, expect=201)
                ids["webhooks"] = hook["id"]
                ids["webhook-deliveries"] = wait_until(
                    lambda: api("GET", f"/webhooks/{hook['id']}/deliveries", expect=200).json()
                )[0]["id"]
            keyed[name] = {"api": api, "ids": ids, "name": account["name"], "numbers": account["numbers"]}
    yield keyed
    for workspace in keyed.values():  # its deliveries stop being retried
        if "webhooks" in workspace["ids"]:
            workspace["api"]("DELETE", f"/webhooks/{workspace['ids']['webhooks']}")


@pytest.mark.parametrize("me,them", [("acme", "beta"), ("beta", "acme")])
def test_every_admin_route_with_the_other_workspaces_ids_is_404(stack, workspaces, me, them):
    api, theirs = workspaces[me]["api"], workspaces[them]
    secrets = [theirs["name"], *theirs["numbers"]]
    before = unchanged_state(stack)
    for route in admin_id_routes():
        kind = route.path.split("/")[1]
        assert kind in theirs["ids"], f"no object of kind {kind!r} to try {route.method} {route.path} with"
        body = VALID_BODIES[route.body.__name__] if route.body else None
        if route.body is not None and route.body.__name__ == "WebhookUpdate":
            body = {"description": "x"}
        answer = api(route.method, route.path.replace("{id}", theirs["ids"][kind]), body)
        assert answer.status_code == 404, (route.method, route.path, answer.status_code, answer.text[:300])
        assert not [s for s in secrets if s in answer.text], route.path
    assert unchanged_state(stack) == before
    # and the owner does see each object, so the 404s are about scope
    owner = workspaces[them]["api"]
    for route in admin_id_routes():
        if route.method == "GET":
            path = route.path.replace("{id}", theirs["ids"][route.path.split("/")[1]])
            # an e-invoice is refused (409) to a workspace without a VAT id, after the lookup found it
            assert owner("GET", path).status_code in ((200, 409) if route.einvoice else (200,)), path


@pytest.mark.parametrize("me,them", [("acme", "beta"), ("beta", "acme")])
def test_no_admin_listing_shows_the_other_workspace(stack, workspaces, me, them):
    api, theirs = workspaces[me]["api"], workspaces[them]
    secrets = [theirs["name"], *theirs["numbers"], *theirs["ids"].values()]
    listings = [route.path for route in ADMIN_ROUTES if route.method == "GET" and "{" not in route.path]
    assert {"/clients", "/invoices", "/quotes", "/payments", "/bookings", "/reviews"} <= set(listings)
    for path in listings:
        answer = api("GET", path)
        assert answer.status_code == 200, (path, answer.text[:300])
        assert not [s for s in secrets if s in answer.text], path
    # a filter naming the other workspace's client finds nothing either
    for path in ("/invoices", "/quotes", "/payments", "/bookings", "/reviews", "/credit-notes"):
        answer = api("GET", path, params={"client_id": theirs["ids"]["clients"]})
        assert answer.status_code in (200, 404) and not [s for s in secrets if s in answer.text], path
    mine = {c["id"] for c in api("GET", "/clients", expect=200).json()}
    assert workspaces[me]["ids"]["clients"] in mine and theirs["ids"]["clients"] not in mine

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
from urllib.parse import urlparse

import psycopg2
import pytest

from services.gateway.admin import PREFIX as ADMIN
from services.gateway.admin import ROUTES as ADMIN_ROUTES
from services.gateway.app import GatewayConfig, create_app
from services.gateway.portal_api import PortalApiResource
from tests.conftest import SIGN_IN, Browser, services_rpc, sign_in
from tests.e2e.payments_support import CARD_OK, confirm_setup
from tests.integration.test_admin_api import VALID_BODIES, Api, portalctl, snapshot
from tests.integration.test_services import wait_until
from tests.passkey_authenticator import SoftAuthenticator

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
    "credit-notes": "credit_note",
    "payments": "payment",
    "bookings": "booking",
    "pay": "attempt",
    "payment-methods": "card",
    "booking-links": "link",
    "team": "contact",  # the organisation's contacts, managed by its owners (the page, and its JSON routes)
    "contacts": "contact",
    # the contact's sessions and links (the sessions and devices page, and its JSON routes)
    "sessions": "session",
    "sign-in-links": "sign_in_link",
    "document-links": "document_link",
    "passkeys": "passkey",  # /profile/passkeys/..., /api/portal/v1/me/passkeys/...
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
    "role": "viewer",
}
JSON_BODIES = {
    "RoleIn": {"role": "viewer"},
    "PasskeyNameIn": {"name": "Mallory"},
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
    segments = template.removeprefix("/api/portal/v1").split("/")
    return SEGMENT_KIND[segments[2] if segments[1] in ("profile", "me") else segments[1]]  # /profile/sessions/...


def auth_ids(stack, rpc, ws: str, client: str, email: str, contact: str, invoice: str) -> dict:
    """The contact's own session, unused sign-in link and emailed one-document link, as auth holds them."""
    rpc.auth.issue_document_link(ws, client, "invoice", invoice, contact_id=contact)  # as an invoice email does
    sign_in(stack, email)
    Browser(stack.url).post(f"{stack.url}/login", data={"email": email})  # asked for, left unused
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT max(id) FROM sessions WHERE contact_id = %s AND revoked_at IS NULL", (contact,))
        session = cur.fetchone()[0]
        cur.execute("SELECT max(id) FROM link_tokens WHERE contact_id = %s AND used_at IS NULL", (contact,))
        link = cur.fetchone()[0]
        cur.execute("SELECT max(id) FROM document_links WHERE contact_id = %s AND revoked_at IS NULL", (contact,))
        document = cur.fetchone()[0]
    assert session and link and document, (email, session, link, document)
    return {"session": str(session), "sign_in_link": str(link), "document_link": str(document)}


def auth_state(stack, contact: str) -> list:
    """What ending a contact's sessions or links would change, in auth's tables."""
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT 's', id, revoked_at FROM sessions WHERE contact_id = %s UNION ALL "
            "SELECT 'l', id, expires_at FROM link_tokens WHERE contact_id = %s UNION ALL "
            "SELECT 'd', id, revoked_at FROM document_links WHERE contact_id = %s ORDER BY 1, 2",
            (contact, contact, contact),
        )
        return cur.fetchall()


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
    credit_notes = rpc.billing.list_credit_notes(ws, client) or [
        rpc.billing.issue_credit_note(ws, {"client_id": client, "amount": 321, "reason": "Isolation check"})
    ]
    unpaid = next(i for i in invoices if i["status"] in ("sent", "viewed", "partially_paid"))
    attempt = rpc.payments.start_payment(ws, client, {"invoice_ids": [unpaid["id"]]}, "isolation")
    setup = rpc.payments.card_setup(ws, client)
    confirm_setup(stack, setup["client_secret"], CARD_OK)
    card = rpc.payments.save_card(ws, client, setup["setup_intent"])
    key = SoftAuthenticator(stack.url, urlparse(stack.url).hostname)  # a passkey, added as the profile adds one
    options = rpc.auth.passkey_registration_options(contact, stack.url)
    passkey = rpc.auth.register_passkey(contact, key.create(options), "Isolation key", stack.url)
    return {
        "invoice": invoices[0]["id"],
        "quote": quotes[0]["id"],
        "credit_note": credit_notes[0]["id"],
        "payment": payments[0]["id"],
        "booking": booking["id"],
        "attempt": attempt["id"],
        "card": card["id"],
        "link": link,
        "passkey": passkey["id"],
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
                    "credit_number_pattern": "GUT-{YYYY}-{seq:05}",
                    "booking_links": [{"id": "beta-call", "name": "Beta call", "duration_minutes": 20}],
                }
            },
        )
        client = rpc.billing.create_client(
            ws,
            {
                "name": "Beta Buyer GmbH",
                "contacts": [
                    {"email": BETA, "name": "Bea", "is_primary": True, "portal_access": True, "role": "owner"}
                ],
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
            ids["contact"] = contact
            ids.update(auth_ids(stack, rpc, ws, client, email, contact, ids["invoice"]))
            numbers = [
                rpc.billing.get_invoice(ws, ids["invoice"])["number"],
                rpc.billing.get_quote(ws, ids["quote"])["number"],
                rpc.billing.get_credit_note(ws, ids["credit_note"])["number"],
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
        "/credit-notes",
        "/profile",
        "/bookings",
        "/contact",
        "/review",
        "/statement.pdf",
        "/payment-methods",
        "/team",
        "/profile/sessions",
    ]
    api = ["/dashboard", "/invoices", "/quotes", "/credit-notes", "/payments", "/statement", "/profile", "/bookings"]
    api += ["/me", "/sessions"]
    api.append("/contacts")  # the organisation's contacts: every account walked here is an owner
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
    their_auth = auth_state(stack, accounts[them]["contact_id"])
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
    # none of their sessions or links ended (new ones may come: a reminder's email brings a document link)
    assert set(their_auth) <= set(auth_state(stack, accounts[them]["contact_id"]))


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


# --- the role matrix: every client route, as each role of one organisation ---------------------------------

MATRIX = "Matrix Org Ltd"
ROLE_EMAILS = {role: f"{role}@matrix-org.example.org" for role in ("owner", "payer", "approver", "viewer")}
# Routes with no session to check, or that end the walking session itself (every role may end its own).
NOT_WALKED = re.compile(
    r"^(/api/portal/v1)?/(login|logout|not-me|password|unsubscribe|healthz|livez|readyz|metrics|dev/|i/|brand/|verify|"
    r"session|openapi\.json|sessions/\{|profile/sessions/\{)"
)
MATRIX_FORM = {
    **FORM,
    "email": "matrix-invitee@example.org",
    "name": "Mia",
    "rating": "5",
    "subject": "x",
    "all": "1",  # pay everything owed
    "key": "matrix-pay",
}
MATRIX_BODIES = {
    **JSON_BODIES,
    "InviteIn": {"email": "matrix-invitee@example.org", "role": "viewer"},
    "BookingIn": {"link_id": "consultation-30", "start": "2030-01-07T15:00:00+00:00"},
    "ReviewIn": {"rating": 5},
    "MessageIn": {"subject": "x", "message": "x"},
    "ProfileIn": {"name": "Matrix"},
}
MATRIX_AUTH_KINDS = {"session", "sign_in_link", "document_link", "passkey"}  # the contact's own; "0": none


def refused_for(role: str, method: str, template: str) -> bool:
    """What the role may not do, by the portal's routes: the contacts page is the owners'; paying and
    cards the owners' and payers'; deciding on quotes the owners' and approvers'; a viewer reads only."""
    path = template.removeprefix("/api/portal/v1")
    if re.match(r"^/(team|contacts)(/|$)", path):
        return role != "owner"
    paying = path == "/pay" or (method != "GET" and re.match(r"^/(pay|payment-methods)(/|$)", path))
    if paying:
        return role not in ("owner", "payer")
    if method == "POST" and re.match(r"^/quotes/\{\w+\}/(accept|reject|changes|request-changes)$", path):
        return role not in ("owner", "approver")
    writes = r"^/(invoices/\{\w+\}/(comments|dispute)|quotes/\{\w+\}/comments|bookings.*|reviews?)$"
    return role == "viewer" and method != "GET" and bool(re.match(writes, path))


@pytest.fixture(scope="module")
def matrix(stack):
    """A client of Acme Studio with one contact of each role and an object of every kind, its own so that
    what the roles may do changes no other test's data."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM workspaces WHERE name = 'Acme Studio'")
        ws = cur.fetchone()[0]
    with services_rpc(stack, ws) as rpc:
        client = rpc.billing.create_client(
            ws,
            {
                "name": MATRIX,
                "contacts": [
                    {"email": email, "name": role.title(), "portal_access": True, "role": role}
                    for role, email in ROLE_EMAILS.items()
                ]
                + [{"email": "spare@matrix-org.example.org", "portal_access": True, "role": "viewer"}],
            },
        )
        contacts = {c["email"]: c["id"] for c in client["contacts"]}
        for i in range(2):
            rpc.billing.create_invoice(
                ws,
                {
                    "client_id": client["id"],
                    "send": True,
                    "lines": [{"description": f"Matrix work {i}", "quantity": 1, "unit_price": 20000 + i}],
                },
            )
        rpc.billing.create_quote(
            ws, {"client_id": client["id"], "send": True, "lines": [{"description": "Matrix plan", "unit_price": 900}]}
        )
        wait_until(lambda: _auth_knows(stack, [*ROLE_EMAILS.values()]), 30, "auth to learn the matrix contacts")
        ids = portal_ids(stack, rpc, ws, client["id"], contacts[ROLE_EMAILS["owner"]], "consultation-30", -3)
    ids.update({kind: "0" for kind in MATRIX_AUTH_KINDS}, contact=contacts["spare@matrix-org.example.org"])
    owner = sign_in(stack, ROLE_EMAILS["owner"])
    for kind in ("invoice", "quote"):  # rendered once before the walk, as forwarding attaches them
        assert owner.get(f"{stack.url}/{kind}s/{ids[kind]}/pdf", timeout=60).status_code == 200
    return {"workspace_id": ws, "client_id": client["id"], "contacts": contacts, "ids": ids}


def _auth_knows(stack, emails: list[str]) -> bool:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM contacts WHERE email = ANY(%s) AND portal_access", (emails,))
        return cur.fetchone()[0] == len(emails)


def matrix_request(stack, browser, csrf: str, ids: dict, method: str, template: str, resource):
    url = stack.url + re.sub(r"\{\w+\}", lambda m: ids[kind_of(template)], template)
    if template == "/pay":
        url += "?all=1"  # everything the client owes, as the dashboard's button asks
    if template.startswith("/api/"):
        route = resource.routes[method]
        body = MATRIX_BODIES.get(route.body.__name__, {}) if route.body else None
        return browser.request(method, url, json=body, headers={"X-CSRF-Token": csrf})
    return browser.request(method, url, data=MATRIX_FORM if method == "POST" else None)


@pytest.mark.parametrize("role", ["viewer", "approver", "payer", "owner"])  # the owner last: it changes most
def test_every_client_route_as_each_role_does_what_the_role_may(stack, matrix, role):
    browser = sign_in(stack, ROLE_EMAILS[role])
    assert browser.get(f"{stack.url}/api/portal/v1/me").json()["role"] == role  # the session carries it
    csrf = browser.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
    routes = [r for r in portal_routes() if not NOT_WALKED.match(r[1])]
    refused = [r for r in routes if refused_for(role, r[0], r[1])]
    allowed = [r for r in routes if not refused_for(role, r[0], r[1])]
    before, problems = unchanged_state(stack, matrix["client_id"]), []
    for method, template, resource in refused:  # 403 with a clear page or problem, and nothing changes
        answer = matrix_request(stack, browser, csrf, matrix["ids"], method, template, resource)
        if template.startswith("/api/"):
            clear = answer.headers.get("Content-Type", "").startswith("application/problem+json") and (
                "your organisation" in answer.json().get("detail", "")
                and answer.json().get("errors") == {"role": "not allowed"}
            )
        else:
            clear = "your organisation" in answer.text and "<h1>Not allowed for your role</h1>" in answer.text
        if answer.status_code != 403 or not clear:
            problems.append(("should refuse", method, template, answer.status_code, answer.text[:200]))
    assert unchanged_state(stack, matrix["client_id"]) == before, role
    for method, template, resource in allowed:  # what the role may do is never refused for its role
        answer = matrix_request(stack, browser, csrf, matrix["ids"], method, template, resource)
        for _ in range(2):  # a first PDF rendered on a busy machine times out; the next finds it cached
            if answer.status_code != 504:
                break
            time.sleep(2)
            answer = matrix_request(stack, browser, csrf, matrix["ids"], method, template, resource)
        expected = answer.status_code == 200 if method == "GET" and "{" not in template else answer.status_code < 500
        if answer.status_code == 403 or not expected:
            problems.append(("should allow", method, template, answer.status_code, answer.text[:200]))
    assert not problems, "\n".join(map(str, problems))
    # every role met both kinds of route, and every kind of refusal is someone's
    assert allowed and (refused or role == "owner")
    if role == "owner":
        assert not refused


def test_an_invited_contact_signs_in_and_a_new_role_ends_its_sessions(stack, matrix):
    spare = "spare@matrix-org.example.org"  # the owner's walk above took its access away
    owner = sign_in(stack, ROLE_EMAILS["owner"])
    csrf = owner.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
    before = stack.outbox.count(spare, SIGN_IN)
    invited = owner.post(
        f"{stack.url}/api/portal/v1/contacts", json={"email": spare, "role": "viewer"}, headers={"X-CSRF-Token": csrf}
    )
    assert invited.status_code == 201 and invited.json()["role"] == "viewer", invited.text
    stack.outbox.wait_for(spare, before + 1, subject=SIGN_IN)  # the invitation: a sign-in link, by email
    browser = sign_in(stack, spare)
    assert browser.get(f"{stack.url}/api/portal/v1/me").json()["role"] == "viewer"
    assert browser.get(f"{stack.url}/team").status_code == 403
    changed = owner.patch(
        f"{stack.url}/api/portal/v1/contacts/{invited.json()['id']}",
        json={"role": "approver"},
        headers={"X-CSRF-Token": csrf},
    )
    assert changed.status_code == 200 and changed.json()["role"] == "approver", changed.text
    wait_until(lambda: browser.get(f"{stack.url}/api/portal/v1/me").status_code == 401, 15, "the session to end")
    assert sign_in(stack, spare).get(f"{stack.url}/api/portal/v1/me").json()["role"] == "approver"
    # the last owner stays, whoever asks, and the contacts page says why
    last = owner.patch(
        f"{stack.url}/api/portal/v1/contacts/{matrix['contacts'][ROLE_EMAILS['owner']]}",
        json={"role": "payer"},
        headers={"X-CSRF-Token": csrf},
    )
    assert last.status_code == 409 and last.json()["errors"] == {"role": "last owner"}, last.text
    page = owner.post(f"{stack.url}/team/{matrix['contacts'][ROLE_EMAILS['owner']]}/role", data={"role": "viewer"})
    assert page.status_code == 409 and "last owner" in page.text

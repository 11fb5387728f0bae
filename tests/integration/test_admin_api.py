"""The admin API through the real gateway and billing service: every route, bad input, and another
workspace's key. Workspaces and keys are made with the portalctl CLI, as an operator would."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import date, timedelta

import psycopg2
import pytest
import requests

from services.gateway.admin import PREFIX, ROUTES
from tests.conftest import ROOT, services_rpc
from tests.integration.test_services import wait_until

pytestmark = pytest.mark.integration
HIT: set[tuple[str, str]] = set()


def portalctl(stack, *args) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "services.billing.cli", *args],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def portalctl_fails(stack, *args) -> str:
    """What portalctl says (on stderr, as JSON) when the services refuse the command."""
    result = subprocess.run(
        [sys.executable, "-m", "services.billing.cli", *args],
        cwd=ROOT,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result.stdout
    return result.stderr


class Api:
    def __init__(self, base: str, key: str | None):
        self.base = base
        self.key = key

    def __call__(self, method: str, path: str, body=None, params=None, expect: int | None = None):
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        response = requests.request(
            method, f"{self.base}{PREFIX}{path}", json=body, params=params, headers=headers, timeout=20
        )
        HIT.add((method, re.sub(r"/[0-9a-f-]{36}(?=/|$)", "/{id}", path)))
        if expect is not None:
            assert response.status_code == expect, (method, path, response.status_code, response.text)
        return response


def snapshot(url: str) -> dict:
    """A digest of every billing table: proves a rejected request changed nothing at all. The relay
    stamps outbox rows as it publishes and consumers fill the inbox in the background, so those two
    are compared by row count (no new event) rather than content."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        tables = [row[0] for row in cur.fetchall()]
        digest = {}
        for table in tables:
            if table in ("outbox", "inbox"):
                cur.execute(f'SELECT count(*) FROM "{table}"')
                digest[table] = cur.fetchone()
                continue
            cur.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM \"{table}\" t"
            )
            digest[table] = cur.fetchone()
        return digest


@pytest.fixture(scope="module")
def admin(stack):
    ws_a = portalctl(stack, "workspace", "create", "--name", "Admin A", "--email", "a@admin.example.org")["id"]
    ws_b = portalctl(
        stack, "workspace", "create", "--name", "Admin B", "--email", "b@admin.example.org", "--currency", "EUR"
    )["id"]
    key_a = portalctl(stack, "key", "create", "--workspace", ws_a, "--name", "tests")["key"]
    key_b = portalctl(stack, "key", "create", "--workspace", ws_b, "--name", "tests")["key"]
    client = portalctl(
        stack,
        "client",
        "create",
        "--workspace",
        ws_a,
        "--name",
        "CLI Client",
        "--contact-email",
        "cli@client.example.org",
        "--contact-name",
        "Cli",
        "--portal",
    )
    invoice = portalctl(
        stack,
        "invoice",
        "create",
        "--workspace",
        ws_a,
        "--client",
        client["id"],
        "--line",
        "Design:2:5000:20",
        "--due-in",
        "14",
        "--send",
    )
    assert invoice["total"] == 12000 and invoice["status"] == "sent"
    api_a = Api(stack.url, key_a)
    quote = api_a(
        "POST",
        "/quotes",
        {"client_id": client["id"], "send": True, "lines": [{"description": "Idea", "unit_price": 100}]},
        expect=201,
    ).json()
    recurring = api_a(
        "POST",
        "/recurring-invoices",
        {
            "client_id": client["id"],
            "frequency": "yearly",
            "start_date": (date.today() + timedelta(days=30)).isoformat(),
            "lines": [{"description": "Licence", "unit_price": 100}],
        },
        expect=201,
    ).json()
    api_a(
        "PATCH",
        "/workspace",
        {
            "address": "Friedrichstraße 10\n10117 Berlin",
            "settings": {
                "booking_links": [{"id": "intro", "name": "Intro call", "duration_minutes": 20}],
                "legal": {"country": "DE", "vat_id": "DE 136 695 976", "iban": "DE89 3704 0044 0532 0130 00"},
            },
        },
        expect=200,
    )
    api_a("PATCH", f"/clients/{client['id']}", {"country": "DE", "vat_id": "DE129273398"}, expect=200)
    with services_rpc(stack, ws_a, timeout=20) as rpc:  # as the portal books and reviews
        contact_id = client["contacts"][0]["id"]
        slot = rpc.billing.booking_options(ws_a, "intro")["slots"][0]
        booking = rpc.billing.book_slot(ws_a, client["id"], contact_id, "intro", slot)
        rpc.billing.add_review(ws_a, client["id"], contact_id, "Cli", 4, "Good")
    return {
        "a": api_a,
        "b": Api(stack.url, key_b),
        "ws_a": ws_a,
        "client": client,
        "invoice": invoice,
        "quote": quote,
        "recurring": recurring,
        "booking": booking,
        "db": stack.databases["billing"],
        "stack": stack,
    }


def card_payment(admin) -> dict:
    """A card payment of a new invoice, paid through localstripe as the portal does it; made once, when
    first needed (after the tests that check invoice numbers)."""
    if "card_payment" not in admin:
        with services_rpc(admin["stack"], admin["ws_a"], timeout=20) as rpc:
            admin["card_payment"] = _card_payment(admin["stack"], rpc, admin["ws_a"], admin["client"]["id"])
    return admin["card_payment"]


def invoice_dispute(admin) -> dict:
    """An open dispute of a new invoice of workspace A, raised as the portal raises it; made when first needed."""
    if "invoice_dispute" not in admin:
        invoice = admin["a"](
            "POST",
            "/invoices",
            {
                "client_id": admin["client"]["id"],
                "send": True,
                "lines": [{"description": "Disputed", "unit_price": 900}],
            },
            expect=201,
        ).json()
        with services_rpc(admin["stack"], admin["ws_a"], timeout=20) as rpc:
            admin["invoice_dispute"] = rpc.billing.raise_invoice_dispute(
                admin["ws_a"],
                admin["client"]["id"],
                admin["client"]["contacts"][0]["id"],
                "Cli",
                invoice["id"],
                "Not ordered",
            )
    return admin["invoice_dispute"]


def webhook(admin) -> dict:
    """A webhook subscription of workspace A with one delivery (to a closed port), made when first
    needed, then paused so it stops retrying. Its own tests: tests/e2e/test_outbound_webhooks.py."""
    if "webhook" not in admin:
        api = admin["a"]
        made = api(
            "POST",
            "/webhooks",
            {"url": "http://127.0.0.1:9/admin-tests", "event_types": ["client.updated"]},
            expect=201,
        ).json()
        assert made["id"] in [w["id"] for w in api("GET", "/webhooks", expect=200).json()]
        api("PATCH", f"/clients/{admin['client']['id']}", {"phone": "+1 555 0100"}, expect=200)
        [delivery] = wait_until(
            lambda: api("GET", f"/webhooks/{made['id']}/deliveries", expect=200).json(),
            what="the client.updated event to reach the webhook",
        )
        api("PATCH", f"/webhooks/{made['id']}", {"active": False}, expect=200)
        admin["webhook"] = {"id": made["id"], "delivery_id": delivery["id"]}
    return admin["webhook"]


def _billing_has_refund(url: str, refund_id: str) -> bool:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM refunds WHERE id = %s", (refund_id,))
        return cur.fetchone() is not None


def _card_payment(stack, rpc, workspace_id: str, client_id: str) -> dict:
    from tests.e2e.payments_support import CARD_OK, confirm_setup

    invoice = rpc.billing.create_invoice(
        workspace_id,
        {
            "client_id": client_id,
            "send": True,
            "lines": [{"description": "Paid by card", "quantity": 1, "unit_price": 5000}],
        },
    )
    attempt = rpc.payments.start_payment(workspace_id, client_id, {"invoice_ids": [invoice["id"]]}, "admin-tests")
    setup = rpc.payments.card_setup(workspace_id, client_id, attempt["id"])
    confirm_setup(stack, setup["client_secret"], CARD_OK)
    rpc.payments.confirm_attempt(workspace_id, client_id, attempt["id"], setup["setup_intent"])
    return wait_until(
        lambda: (lambda a: a if a["status"] == "succeeded" else None)(
            rpc.payments.get_attempt(workspace_id, attempt["id"])
        ),
        what="the card payment's webhook",
    )


def test_cli_contact_and_portal_commands(admin):
    stack = admin["stack"]
    contact = portalctl(
        stack,
        "contact",
        "add",
        "--workspace",
        admin["ws_a"],
        "--client",
        admin["client"]["id"],
        "--email",
        "second@client.example.org",
    )
    assert contact["portal_access"] is False and contact["role"] == "payer"  # the business's default
    enabled = portalctl(stack, "portal", "enable", "--workspace", admin["ws_a"], "--contact", contact["id"])
    assert enabled["portal_access"] is True
    # the business sets the client's first owner; the last owner cannot be made anything else
    owner = portalctl(
        stack, "contact", "role", "--workspace", admin["ws_a"], "--contact", contact["id"], "--role", "owner"
    )
    assert owner["role"] == "owner"
    refused = portalctl_fails(
        stack, "contact", "role", "--workspace", admin["ws_a"], "--contact", contact["id"], "--role", "viewer"
    )
    assert "last owner" in refused
    assert (
        portalctl(stack, "invoice", "send", "--workspace", admin["ws_a"], "--invoice", admin["invoice"]["id"])["status"]
        == "sent"
    )
    keys = portalctl(stack, "key", "list", "--workspace", admin["ws_a"])
    assert [k["name"] for k in keys] == ["tests"] and "key" not in keys[0]


def test_every_route_works_for_its_own_workspace(admin):
    api, client_id = admin["a"], admin["client"]["id"]
    today = date.today()
    assert api("GET", "/workspace", expect=200).json()["name"] == "Admin A"
    settings = api(
        "PATCH",
        "/workspace",
        {
            "brand_color": "#112233",
            "settings": {"invoice_number_pattern": "A-{YYYY}-{seq:04}", "auto_convert_accepted_quotes": True},
        },
        expect=200,
    ).json()
    assert settings["brand_color"] == "#112233" and settings["settings"]["invoice_number_pattern"].startswith("A-")
    assert settings["settings"]["legal"] == {  # stored compact, checked by their check digits
        "country": "DE",
        "vat_id": "DE136695976",
        "iban": "DE89370400440532013000",
        "bic": "",
        "einvoice_profile": "en16931",
    }
    refused = api("PATCH", "/workspace", {"settings": {"legal": {"vat_id": "DE136695977"}}}, expect=422).json()
    assert "vat_id" in json.dumps(refused["errors"])
    xml = wait_until(  # documents learns the VAT id from billing's workspace.updated event
        lambda: (answer := api("GET", f"/invoices/{admin['invoice']['id']}/xml")).status_code == 200 and answer,
        what="documents to issue e-invoices for the workspace",
    )
    assert xml.headers["content-type"] == "application/xml"
    assert admin["invoice"]["number"] in xml.text and "CrossIndustryInvoice" in xml.text
    assert admin["b"]("GET", f"/invoices/{admin['invoice']['id']}/xml").status_code == 404
    created = api(
        "POST",
        "/clients",
        {"name": "Beta LLC", "contacts": [{"email": "beta@client.example.org", "portal_access": True}]},
        expect=201,
    ).json()
    beta = created["id"]
    assert [c["name"] for c in api("GET", "/clients", expect=200).json()] == ["Beta LLC", "CLI Client"]
    assert api("GET", f"/clients/{beta}", expect=200).json()["contacts"][0]["is_primary"] is True
    api("PATCH", f"/clients/{beta}", {"phone": "+1 555 0199"}, expect=200)
    contact = api(
        "POST", f"/clients/{beta}/contacts", {"email": "ap@beta.example.org", "name": "AP"}, expect=201
    ).json()
    assert api("PATCH", f"/contacts/{contact['id']}", {"portal_access": True}, expect=200).json()["portal_access"]
    assert contact["role"] == "payer"  # the admin API's default role
    assert api("PATCH", f"/contacts/{contact['id']}", {"role": "owner"}, expect=200).json()["role"] == "owner"
    last = api("PATCH", f"/contacts/{contact['id']}", {"role": "approver"}, expect=409).json()
    assert last["errors"] == {"role": "last owner"}
    api("PATCH", f"/contacts/{contact['id']}", {"role": "boss"}, expect=422)

    invoice = api(
        "POST",
        "/invoices",
        {"client_id": beta, "lines": [{"description": "Build", "quantity": 3, "unit_price": 10000, "tax_rate": 10}]},
        expect=201,
    ).json()
    # the sequence carries on under the new pattern: the CLI's invoice was number 1 this year
    assert invoice["number"] == f"A-{today.year}-0002" and invoice["status"] == "draft" and invoice["total"] == 33000
    api("PATCH", f"/invoices/{invoice['id']}", {"notes": "Thanks!", "payment_terms_days": 7}, expect=200)
    sent = api("POST", f"/invoices/{invoice['id']}/send", expect=200).json()
    assert sent["status"] == "sent" and sent["client"]["name"] == "Beta LLC"
    api("PATCH", f"/clients/{beta}", {"name": "Beta Renamed"}, expect=200)
    assert api("GET", f"/invoices/{invoice['id']}", expect=200).json()["client"]["name"] == "Beta LLC"
    paid = api(
        "POST",
        f"/invoices/{invoice['id']}/payments",
        {"amount": 3000, "method": "cash", "payment_id": "offline-1"},
        expect=201,
    ).json()
    again = api(
        "POST",
        f"/invoices/{invoice['id']}/payments",
        {"amount": 3000, "method": "cash", "payment_id": "offline-1"},
        expect=201,
    ).json()
    assert paid == again
    api("POST", "/credit-notes", {"client_id": beta, "amount": 5000, "reason": "Sorry"}, expect=201)
    assert api("GET", "/credit-notes", params={"client_id": beta}, expect=200).json()[0]["total"] == 5000
    after_credit = api("POST", f"/invoices/{invoice['id']}/apply-credit", {"amount": 5000}, expect=200).json()
    assert after_credit["balance"] == 33000 - 3000 - 5000
    retainer = api(
        "POST",
        "/invoices",
        {
            "client_id": beta,
            "kind": "retainer",
            "send": True,
            "lines": [{"description": "Retainer", "unit_price": 20000}],
        },
        expect=201,
    ).json()
    api("POST", "/payments", {"allocations": [{"invoice_id": retainer["id"], "amount": 20000}]}, expect=201)
    api("POST", f"/invoices/{invoice['id']}/apply-retainer", {"amount": 10000}, expect=200)
    refund = api("POST", f"/clients/{beta}/retainer-refunds", {"amount": 4000}, expect=201).json()
    assert refund["retainer_available"] == 6000
    balances = api("GET", f"/clients/{beta}", expect=200).json()["balances"]
    assert balances == {"currency": "USD", "outstanding": 15000, "credit_available": 0, "retainer_available": 6000}
    assert {p["kind"] for p in api("GET", "/payments", params={"client_id": beta}, expect=200).json()} == {
        "invoice",
        "retainer",
    }

    reply = api("POST", f"/invoices/{invoice['id']}/comments", {"body": "Paid the rest soon?"}, expect=201).json()
    assert reply["author_name"] == api("GET", "/workspace", expect=200).json()["name"]  # no author_name: the business's
    [listed_reply] = api("GET", f"/invoices/{invoice['id']}/comments", expect=200).json()
    assert (listed_reply["author_kind"], listed_reply["author_name"]) == ("business", reply["author_name"])
    listed = api(
        "GET", "/invoices", params={"client_id": beta, "status": "unpaid", "sort": "amount"}, expect=200
    ).json()
    assert [i["number"] for i in listed["items"]] == [invoice["number"]]

    draft = api(
        "POST", "/invoices", {"client_id": beta, "lines": [{"description": "Oops", "unit_price": 1}]}, expect=201
    ).json()
    assert api("POST", f"/invoices/{draft['id']}/void", expect=200).json()["status"] == "void"
    assert api("POST", f"/invoices/{draft['id']}/archive", {"archived": True}, expect=200).json()["archived"]

    quote = api(
        "POST",
        "/quotes",
        {
            "client_id": beta,
            "expiry_date": (today + timedelta(days=10)).isoformat(),
            "lines": [{"description": "Plan", "unit_price": 90000}],
        },
        expect=201,
    ).json()
    api("PATCH", f"/quotes/{quote['id']}", {"notes": "Valid ten days"}, expect=200)
    assert api("POST", f"/quotes/{quote['id']}/send", expect=200).json()["status"] == "sent"
    assert api("GET", f"/quotes/{quote['id']}", expect=200).json()["display_status"] == "sent"
    assert api("GET", "/quotes", params={"status": "pending"}, expect=200).json()["items"][0]["id"] == quote["id"]
    api("POST", f"/quotes/{quote['id']}/comments", {"body": "Any questions?"}, expect=201)
    assert len(api("GET", f"/quotes/{quote['id']}/comments", expect=200).json()) == 1
    assert api("POST", f"/quotes/{quote['id']}/convert", expect=409).json()["title"] == "Conflict"

    schedule = api(
        "POST",
        "/recurring-invoices",
        {
            "client_id": beta,
            "frequency": "monthly",
            "start_date": (today + timedelta(days=40)).isoformat(),
            "lines": [{"description": "Care plan", "unit_price": 9900}],
            "autopay": True,
        },
        expect=201,
    ).json()
    assert api("GET", f"/recurring-invoices/{schedule['id']}", expect=200).json()["autopay"] is True
    assert (
        api("PATCH", f"/recurring-invoices/{schedule['id']}", {"active": False}, expect=200).json()["active"] is False
    )
    assert [r["id"] for r in api("GET", "/recurring-invoices", params={"client_id": beta}, expect=200).json()] == [
        schedule["id"]
    ]

    statement = api(
        "GET",
        f"/clients/{beta}/statement",
        params={"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()},
        expect=200,
    ).json()
    # charge 33000 (a retainer invoice is not a charge); payments 3000 + 20000; credit 5000; refund 4000
    assert statement["closing_balance"] == statement["opening_balance"] + 33000 - 23000 - 5000 + 4000
    [review] = api("GET", "/reviews", params={"client_id": client_id}, expect=200).json()["items"]
    assert (review["rating"], review["message"]) == (4, "Good")
    [booking] = api("GET", "/bookings", params={"client_id": client_id}, expect=200).json()
    assert booking["id"] == admin["booking"]["id"] and booking["title"] == "Intro call"
    assert api("POST", f"/bookings/{booking['id']}/cancel", expect=200).json()["status"] == "cancelled"
    assert api("GET", "/bookings", params={"client_id": client_id}, expect=200).json() == []
    kinds = [a["kind"] for a in api("GET", f"/clients/{beta}/activity", expect=200).json()]
    assert {"invoice.sent", "payment.recorded", "credit.applied", "retainer.applied", "comment.added"} <= set(kinds)
    signals = api("GET", f"/clients/{beta}/engagement", expect=200).json()
    assert (signals["client_id"], signals["outstanding"]) == (beta, [{"amount": 15000, "currency": "USD"}])
    assert beta in [
        s["client_id"] for s in api("GET", "/engagement", params={"risk": signals["risk"]}, expect=200).json()["items"]
    ]
    card = card_payment(admin)
    assert api("GET", f"/payments/{card['id']}/refunds", expect=200).json() == []
    refund = api(
        "POST", f"/payments/{card['id']}/refunds", {"amount": 1500, "idempotency_key": "admin-1"}, expect=201
    ).json()
    assert (refund["amount"], refund["status"]) == (1500, "succeeded")
    wait_until(
        lambda: _billing_has_refund(admin["db"], refund["stripe_refund_id"]),  # before the next snapshots
        what="billing to record the refund from payments' event",
    )
    assert [r["id"] for r in api("GET", f"/payments/{card['id']}/refunds", expect=200).json()] == [refund["id"]]
    assert api("GET", "/disputes", expect=200).json() == []


def test_the_openapi_document_is_served_and_lists_every_route(admin):
    document = requests.get(f"{admin['stack'].url}{PREFIX}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    listed = {(method.upper(), path[len(PREFIX) :]) for path, ops in document["paths"].items() for method in ops}
    assert listed == {(r.method, r.path) for r in ROUTES}


BODY_ROUTES = [r for r in ROUTES if r.body is not None]
ID_ROUTES = [r for r in ROUTES if "{id}" in r.path]


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_invalid_input_is_a_422_with_field_errors_and_changes_nothing(admin, route):
    before = snapshot(admin["db"])
    path = route.path.replace("{id}", admin["invoice"]["id"] if "invoices" in route.path else admin["client"]["id"])
    response = admin["a"](route.method, path, {"no_such_field": 1, "amount": "lots"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"]
    malformed = requests.request(
        route.method,
        f"{admin['a'].base}{PREFIX}{path}",
        data="{not json",
        headers={"Authorization": f"Bearer {admin['a'].key}", "Content-Type": "application/json"},
    )
    assert malformed.status_code in (400, 422)
    assert snapshot(admin["db"]) == before


VALID_BODIES = {
    "ClientUpdate": {"phone": "+1 212 555 0100"},
    "ContactIn": {"email": "x@example.org"},
    "ContactUpdate": {"name": "x"},
    "RefundIn": {"amount": 100},
    "CardRefundIn": {"amount": 100, "idempotency_key": "other-workspace"},
    "InvoiceUpdate": {"notes": "x"},
    "ArchiveIn": {"archived": True},
    "OfflinePayment": {"amount": 100},
    "AmountIn": {"amount": 100},
    "CommentIn": {"body": "hi"},
    "QuoteUpdate": {"notes": "x"},
    "QuoteRevisionIn": {"lines": [{"description": "x", "unit_price": 100}]},
    "RecurringUpdate": {"active": False},
    "DisputeAdjustIn": {"amount": 100},
    "DisputeRejectIn": {"message": "x"},
    "WebhookUpdate": {"active": True},
}


@pytest.mark.parametrize("route", ID_ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_another_workspaces_key_gets_404_and_changes_nothing(admin, route):
    targets = {
        "payments": card_payment(admin)["id"],
        "clients": admin["client"]["id"],
        "contacts": admin["client"]["contacts"][0]["id"],
        "invoices": admin["invoice"]["id"],
        "quotes": admin["quote"]["id"],
        "recurring-invoices": admin["recurring"]["id"],
        "bookings": admin["booking"]["id"],
        "webhooks": webhook(admin)["id"],
        "webhook-deliveries": webhook(admin)["delivery_id"],
        "invoice-disputes": invoice_dispute(admin)["id"],
    }
    target = targets[route.path.split("/")[1]]
    body = VALID_BODIES[route.body.__name__] if route.body else None
    before = snapshot(admin["db"])
    response = admin["b"](route.method, route.path.replace("{id}", target), body)
    assert response.status_code == 404, (route.path, response.text)
    assert snapshot(admin["db"]) == before
    if route.method == "GET":  # and the owner does see it, so the 404 is about scope
        assert admin["a"](route.method, route.path.replace("{id}", target)).status_code == 200


@pytest.mark.parametrize("key", [None, "bp_nope_forged", "x" * 500])
def test_missing_or_forged_keys_are_401(admin, key):
    response = Api(admin["stack"].url, key)("GET", "/workspace")
    assert response.status_code == 401 and response.headers["content-type"] == "application/problem+json"


def test_a_revoked_key_stops_working(admin):
    stack = admin["stack"]
    created = portalctl(stack, "key", "create", "--workspace", admin["ws_a"], "--name", "temporary")
    Api(stack.url, created["key"])("GET", "/workspace", expect=200)
    portalctl(stack, "key", "revoke", "--workspace", admin["ws_a"], "--key-id", created["id"])
    Api(stack.url, created["key"])("GET", "/workspace", expect=401)


def test_invoice_disputes_are_listed_and_answered_by_the_workspace(admin):
    api, dispute = admin["a"], invoice_dispute(admin)
    listed = api("GET", "/invoice-disputes", params={"status": "open"}, expect=200).json()["items"]
    assert dispute["id"] in [d["id"] for d in listed]
    assert admin["b"]("GET", "/invoice-disputes", expect=200).json()["items"] == []
    api("POST", f"/invoice-disputes/{dispute['id']}/reject", {"message": ""}, expect=422)
    rejected = api("POST", f"/invoice-disputes/{dispute['id']}/reject", {"message": "Ordered by phone."}, expect=200)
    assert rejected.json()["status"] == "rejected"
    api("POST", f"/invoice-disputes/{dispute['id']}/adjust", {"amount": 100}, expect=409)  # resolved already
    assert api("GET", f"/invoice-disputes/{dispute['id']}", expect=200).json()["resolution_message"] == (
        "Ordered by phone."
    )


def test_every_route_was_exercised():
    """Runs last in this module: each route in the table was called at least once above."""
    assert {(r.method, r.path) for r in ROUTES} <= HIT | {("GET", "/openapi.json")}


def test_invoices_page_by_cursor_and_the_cli_repairs_summaries(admin):
    api, stack = admin["a"], admin["stack"]
    api(
        "POST",
        "/invoices",
        {"client_id": admin["client"]["id"], "send": True, "lines": [{"description": "More", "unit_price": 700}]},
        expect=201,
    )
    first = api("GET", "/invoices", params={"limit": 1, "sort": "number"}, expect=200).json()
    second = api(
        "GET", "/invoices", params={"limit": 1, "sort": "number", "after": first["next_cursor"]}, expect=200
    ).json()
    assert first["total"] >= 2 and second["total"] is None
    assert second["items"][0]["number"] > first["items"][0]["number"]
    assert api("GET", "/invoices", params={"after": "nonsense"}).status_code == 404  # no such page
    with psycopg2.connect(admin["db"]) as conn, conn.cursor() as cur:  # behind billing's back
        cur.execute(
            "UPDATE client_summaries SET outstanding = outstanding + 1 WHERE client_id = %s", (admin["client"]["id"],)
        )
    report = portalctl(stack, "summaries", "repair", "--workspace", admin["ws_a"])
    assert [(d["client_id"], list(d["figures"])) for d in report["drifted"]] == [
        (admin["client"]["id"], ["outstanding"])
    ]
    assert portalctl(stack, "summaries", "repair", "--workspace", admin["ws_a"])["drifted"] == []

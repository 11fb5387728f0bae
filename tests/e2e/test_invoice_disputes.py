"""Invoice disputes through the running system: a client disputes an invoice from its page and through
the portal API, the step shows in the thread and the timeline and leaves billing as `invoice.disputed`;
reminders stop for it while it is open; the business adjusts one with a credit note and rejects
another through the admin API; a second open dispute is refused; and nobody else can dispute or see it."""

import json
import re
import time
from datetime import timedelta

import psycopg2
import pytest
import requests

from tests.conftest import business_today, new_portal_client, services_rpc, sign_in
from tests.e2e.test_portal_api import bearer_token

pytestmark = pytest.mark.e2e
ADMIN = "/api/admin/v1"
PORTAL = "/api/portal/v1"


def query(stack, sql: str, *args) -> list[tuple]:
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def events(stack, event_type: str, invoice_id: str) -> list[dict]:
    rows = query(stack, "SELECT body FROM outbox WHERE event_type = %s", event_type)
    found = [json.loads(body)["data"] for (body,) in rows]
    return [e for e in found if e.get("invoice_id", e.get("id")) == invoice_id]


def eventually(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


@pytest.fixture(scope="module")
def business(stack):
    workspace_id = query(stack, "SELECT id FROM workspaces WHERE name = 'Acme Studio'")[0][0]
    with services_rpc(stack, workspace_id) as rpc:
        key = rpc.billing.create_api_key(workspace_id, "invoice dispute tests")["key"]
        other_ws = rpc.billing.create_workspace({"name": "Disputes Elsewhere", "email": "else@example.org"})["id"]
    with services_rpc(stack, other_ws) as rpc:
        other_key = rpc.billing.create_api_key(other_ws, "invoice dispute tests")["key"]
    return {"workspace_id": workspace_id, "key": key, "other_key": other_key}


def admin(stack, key, method, path, expect, **kwargs):
    answer = requests.request(
        method, f"{stack.url}{ADMIN}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=20, **kwargs
    )
    assert answer.status_code == expect, answer.text
    return answer.json() if answer.content else None


def two_line_invoice(stack, workspace_id, client_id, due):
    with services_rpc(stack, workspace_id) as rpc:
        return rpc.billing.create_invoice(
            workspace_id,
            {
                "client_id": client_id,
                "send": True,
                "issue_date": (due - timedelta(days=30)).isoformat(),
                "due_date": due.isoformat(),
                "lines": [
                    {"description": "Logo design", "quantity": 1, "unit_price": 60000},
                    {"description": "Print run", "quantity": 1, "unit_price": 40000},
                ],
            },
        )


def test_a_dispute_from_the_page_pauses_reminders_and_is_adjusted_with_a_credit_note(stack, business):
    made = new_portal_client(stack, "Disputing Dora Ltd", "dora@example.org", invoices=0)
    ws, client_id = business["workspace_id"], made["client"]["id"]
    far = business_today() + timedelta(days=60)  # no reminder is due for either yet
    disputed, control = (two_line_invoice(stack, ws, client_id, far) for _ in range(2))
    dora = sign_in(stack, "dora@example.org")

    page = dora.get(f"{stack.url}/invoices/{disputed['id']}")
    assert page.status_code == 200 and 'action="/invoices/' + disputed["id"] + '/dispute"' in page.text
    nonce = re.search(r'/dispute">.*?name="nonce" value="([0-9a-f]{32})"', page.text, re.S).group(1)
    blank = dora.post(f"{stack.url}/invoices/{disputed['id']}/dispute", data={"reason": "  ", "nonce": nonce})
    # the invoice page again, the form saying what to fix beside the reason
    assert blank.status_code == 400 and disputed["number"] in blank.text
    assert '<p id="dispute-error" class="error" role="alert">A reason is 1 to 2000 characters.' in blank.text
    bad_line = dora.post(
        f"{stack.url}/invoices/{disputed['id']}/dispute", data={"reason": "x", "line": "9", "nonce": nonce}
    )
    assert bad_line.status_code == 409 and "The invoice has lines 1 to 2." in bad_line.text
    assert events(stack, "invoice.disputed", disputed["id"]) == []  # refused: nothing changed
    for _ in range(2):  # a double submit raises it once
        posted = dora.post(
            f"{stack.url}/invoices/{disputed['id']}/dispute",
            data={"reason": "The print run was never delivered.", "line": ["2"], "nonce": nonce},
        )
    assert posted.status_code == 200 and "You disputed this invoice on" in posted.text
    assert "Disputed line 2: The print run was never delivered." in posted.text  # the thread
    [event] = events(stack, "invoice.disputed", disputed["id"])
    assert event["lines"] == [2] and event["balance"] == 100000 and event["raised_by"] == "Disputing"

    again = dora.post(
        f"{stack.url}/invoices/{disputed['id']}/dispute",
        data={"reason": "Again", "nonce": "f" * 32},
    )
    assert again.status_code == 409 and "already has an open dispute" in again.text

    # both invoices fall overdue (their due date moved into the past): only the undisputed one is reminded
    past = business_today() - timedelta(days=2)
    query_update = "UPDATE invoices SET due_date = %s, issue_date = %s WHERE id IN (%s, %s) RETURNING id"
    assert len(query(stack, query_update, past, past - timedelta(days=30), disputed["id"], control["id"])) == 2
    reminded = "SELECT count(*) FROM reminders_sent WHERE invoice_id = %s"
    assert eventually(lambda: query(stack, reminded, control["id"])[0][0] > 0)
    time.sleep(2.5)  # two more sweeps (BILLING_SWEEP_INTERVAL=1)
    assert query(stack, reminded, disputed["id"])[0][0] == 0

    [dispute] = admin(stack, business["key"], "GET", "/invoice-disputes", 200, params={"client_id": client_id})["items"]
    assert dispute["status"] == "open" and dispute["invoice_number"] == disputed["number"]
    admin(stack, business["key"], "POST", f"/invoice-disputes/{dispute['id']}/adjust", 422, json={"amount": 0})
    admin(stack, business["other_key"], "POST", f"/invoice-disputes/{dispute['id']}/adjust", 404, json={"amount": 1})
    adjusted = admin(
        stack,
        business["key"],
        "POST",
        f"/invoice-disputes/{dispute['id']}/adjust",
        200,
        json={"amount": 40000, "message": "Sorry, we credit the print run."},
    )
    assert adjusted["status"] == "adjusted" and adjusted["credit_amount"] == 40000
    [(linked,)] = query(stack, "SELECT invoice_id FROM credit_notes WHERE id = %s", adjusted["credit_note_id"])
    assert linked == disputed["id"]
    invoice = admin(stack, business["key"], "GET", f"/invoices/{disputed['id']}", 200)
    assert invoice["balance"] == 60000 and invoice["dispute"]["status"] == "adjusted"
    [resolved] = events(stack, "invoice.dispute_resolved", disputed["id"])
    assert resolved["outcome"] == "adjusted" and resolved["credit_note_id"] == adjusted["credit_note_id"]
    admin(stack, business["key"], "POST", f"/invoice-disputes/{dispute['id']}/reject", 409, json={"message": "No"})

    kinds = [a["kind"] for a in admin(stack, business["key"], "GET", f"/clients/{client_id}/activity", 200)]
    assert "invoice.disputed" in kinds and "invoice.dispute_resolved" in kinds
    thread = dora.get(f"{stack.url}/invoices/{disputed['id']}").text
    assert (
        "Your last dispute was adjusted with a credit note." in thread and "Sorry, we credit the print run." in thread
    )
    # resolved: the reminders resume
    assert eventually(lambda: query(stack, reminded, disputed["id"])[0][0] > 0)


def test_a_dispute_through_the_api_is_rejected_and_nobody_else_can_touch_it(stack, business):
    made = new_portal_client(stack, "Api Disputer GmbH", "api-disputer@example.org", invoices=1)
    [invoice] = made["invoices"]
    auth = {"Authorization": f"Bearer {bearer_token(stack, 'api-disputer@example.org')}"}

    def portal(method, path, expect, **kwargs):
        answer = requests.request(method, f"{stack.url}{PORTAL}{path}", headers=auth, timeout=20, **kwargs)
        assert answer.status_code == expect, answer.text
        return answer

    refused = portal("POST", f"/invoices/{invoice['id']}/dispute", 422, json={"reason": ""})
    assert (
        refused.headers["Content-Type"].startswith("application/problem+json") and "reason" in refused.json()["errors"]
    )
    raised = portal("POST", f"/invoices/{invoice['id']}/dispute", 201, json={"reason": "Not what we agreed."}).json()
    assert raised["status"] == "open" and raised["lines"] == []
    second = portal("POST", f"/invoices/{invoice['id']}/dispute", 409, json={"reason": "Still not."})
    assert "already has an open dispute" in second.json()["detail"]
    assert portal("GET", f"/invoices/{invoice['id']}", 200).json()["dispute"]["id"] == raised["id"]

    # another client's contact: the invoice and its dispute do not exist for it
    demo = sign_in(stack, "demo@example.com")
    assert demo.get(f"{stack.url}/invoices/{invoice['id']}").status_code == 404
    assert demo.post(f"{stack.url}/invoices/{invoice['id']}/dispute", data={"reason": "Mine?"}).status_code == 404
    demo_api = demo.post(
        f"{stack.url}{PORTAL}/invoices/{invoice['id']}/dispute",
        json={"reason": "Mine?"},
        headers={"X-CSRF-Token": demo.get(f"{stack.url}{PORTAL}/me").json()["csrf_token"]},
    )
    assert demo_api.status_code == 404
    assert len(events(stack, "invoice.disputed", invoice["id"])) == 1
    # another workspace's key sees no such dispute
    admin(stack, business["other_key"], "GET", f"/invoice-disputes/{raised['id']}", 404)
    others = admin(stack, business["other_key"], "GET", "/invoice-disputes", 200)["items"]
    assert all(d["id"] != raised["id"] for d in others)

    admin(stack, business["key"], "POST", f"/invoice-disputes/{raised['id']}/reject", 422, json={})
    rejected = admin(
        stack,
        business["key"],
        "POST",
        f"/invoice-disputes/{raised['id']}/reject",
        200,
        json={"message": "The quote you accepted lists this price."},
    )
    assert rejected["status"] == "rejected"
    [resolved] = events(stack, "invoice.dispute_resolved", invoice["id"])
    assert resolved["outcome"] == "rejected" and resolved["balance"] == invoice["total"]
    thread = portal("GET", f"/invoices/{invoice['id']}/comments", 200).json()
    assert [c["author_kind"] for c in thread] == ["client", "business"]
    assert thread[-1]["body"] == "Dispute rejected: The quote you accepted lists this price."
    # resolved, so the client may raise a new one
    portal("POST", f"/invoices/{invoice['id']}/dispute", 201, json={"reason": "Then line 1 only.", "lines": [1]})


def test_the_dashboard_and_statement_show_aging_buckets(stack):
    made = new_portal_client(stack, "Aging Albert Inc", "albert@example.org", invoices=0)
    ws, client_id = made["workspace_id"], made["client"]["id"]
    today = business_today()
    with services_rpc(stack, ws) as rpc:
        for days_past, amount in ((-5, 1000), (10, 2000), (45, 3000), (75, 4000), (120, 5000)):
            due = today - timedelta(days=days_past)
            rpc.billing.create_invoice(
                ws,
                {
                    "client_id": client_id,
                    "send": True,
                    "issue_date": min(due, today).isoformat(),
                    "due_date": due.isoformat(),
                    "lines": [{"description": "Work", "quantity": 1, "unit_price": amount}],
                },
            )
    albert = sign_in(stack, "albert@example.org")
    csrf = albert.get(f"{stack.url}{PORTAL}/me").json()["csrf_token"]
    [usd] = albert.get(f"{stack.url}{PORTAL}/dashboard", headers={"X-CSRF-Token": csrf}).json()["aging"]
    expected = {"current": 1000, "days_1_30": 2000, "days_31_60": 3000, "days_61_90": 4000, "days_over_90": 5000}
    assert {k: usd[k] for k in expected} == expected and usd["total"] == 15000
    page = albert.get(f"{stack.url}/dashboard").text
    assert 'data-testid="aging-USD-days_over_90">$50.00<' in page
    statement = albert.get(f"{stack.url}{PORTAL}/statement").json()
    assert statement["aging"] == usd
    assert 'data-testid="aging-USD-total">$150.00<' in albert.get(f"{stack.url}/statement").text

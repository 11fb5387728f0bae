"""Credit notes through the running system: the business issues one through the admin API for a client's
invoice; the client finds it from its dashboard, opens its page and its PDF (whose QR code proves it),
reads it through the portal API, follows it from the statement, the invoice and the /verify page, and
sees what of its credit is still available once some is applied. Another client of the same business
gets the same 404 for it as for an id that does not exist, and sees none of it anywhere."""

import re
import time

import psycopg2
import pytest
import requests

from tests.conftest import new_portal_client, services_rpc, sign_in
from tests.e2e.test_portal_api import bearer_token
from tests.e2e.test_verify_documents import pdf_of, pdf_text, qr_url

pytestmark = pytest.mark.e2e
ADMIN = "/api/admin/v1"
PORTAL = "/api/portal/v1"
CARLA, OTTO = "carla-credit@example.org", "otto-credit@example.org"


def query(stack, sql: str, *args) -> list[tuple]:
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def eventually(check, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


@pytest.fixture(scope="module")
def credited(stack):
    """Two new clients of the seeded business, each with an invoice, and the business's API key; the first
    client is credited for its invoice through the admin API."""
    carla = new_portal_client(stack, "Credited Carla Ltd", CARLA, invoices=1)
    otto = new_portal_client(stack, "Uncredited Otto Ltd", OTTO, invoices=1)
    workspace_id = carla["workspace_id"]
    with services_rpc(stack, workspace_id) as rpc:
        key = rpc.billing.create_api_key(workspace_id, "credit note tests")["key"]

    def admin(method, path, expect=200, **kwargs):
        answer = requests.request(
            method, f"{stack.url}{ADMIN}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=20, **kwargs
        )
        assert answer.status_code == expect, answer.text
        return answer.json()

    invoice = carla["invoices"][0]  # $100.00
    note = admin(
        "POST",
        "/credit-notes",
        201,
        json={
            "client_id": carla["client"]["id"],
            "invoice_id": invoice["id"],
            "reason": "Two chairs came back broken",
            "lines": [{"description": "Broken chair", "quantity": 2, "unit_price": 1500, "tax_rate": 10}],
        },
    )
    assert (note["total"], note["invoice_id"]) == (3300, invoice["id"])  # 2 x $15.00 and 10% tax
    return {"carla": carla, "otto": otto, "invoice": invoice, "note": note, "admin": admin}


def test_the_client_finds_opens_and_downloads_its_credit_note(stack, credited):
    note, invoice = credited["note"], credited["invoice"]
    browser = sign_in(stack, CARLA)

    dashboard = browser.get(f"{stack.url}/dashboard").text
    assert 'data-testid="credits">$33.00<' in dashboard and 'href="/credit-notes"' in dashboard
    assert 'href="/credit-notes"' in browser.get(f"{stack.url}/payments").text

    listing = browser.get(f"{stack.url}/credit-notes")
    assert listing.status_code == 200
    assert f'<a href="/credit-notes/{note["id"]}">{note["number"]}</a>' in listing.text
    assert f'<a href="/invoices/{invoice["id"]}">{invoice["number"]}</a>' in listing.text
    assert 'data-testid="credit-available">$33.00<' in listing.text and "Two chairs came back broken" in listing.text

    page = browser.get(f"{stack.url}/credit-notes/{note['id']}")
    assert page.status_code == 200
    assert f"Credit note {note['number']}" in page.text and "Broken chair" in page.text
    assert 'data-testid="total">$33.00<' in page.text and "Tax 10% on $30.00" in page.text
    assert f'data-testid="invoice"><a href="/invoices/{invoice["id"]}">{invoice["number"]}</a>' in page.text
    code = note["verification_code"]
    assert f"<code>{code}</code>" in page.text

    pdf = pdf_of(browser, f"{stack.url}/credit-notes/{note['id']}/pdf")
    text = "".join(pdf_text(pdf).split())  # without spaces: extraction splits some kerned pairs ("T wo")
    for printed in (note["number"], "Two chairs came back broken", f"Invoice {invoice['number']}", "$33.00", code):
        assert "".join(printed.split()) in text, printed
    assert qr_url(pdf).endswith(f"/verify/{code}")
    summary = f"Credit note PDF downloaded ({note['number']})"
    downloaded = eventually(
        lambda: query(
            stack, "SELECT client_id FROM activities WHERE kind = 'document.downloaded' AND summary = %s", summary
        )
    )
    assert downloaded == [(credited["carla"]["client"]["id"],)]  # the business sees it, as the client's

    # the pages that name it link to it: the statement, the invoice, and /verify for its own client
    statement = browser.get(f"{stack.url}/statement").text
    assert f'<a href="/credit-notes/{note["id"]}">{note["number"]}</a>' in statement
    shown = browser.get(f"{stack.url}/invoices/{invoice['id']}").text
    assert f'<a href="/credit-notes/{note["id"]}">{note["number"]}</a> ($33.00)' in shown
    verify = f"{stack.url}/verify/{code}"
    assert f'href="/credit-notes/{note["id"]}"' in browser.get(verify).text
    anonymous = requests.get(verify, timeout=20)
    assert anonymous.status_code == 200 and note["number"] in anonymous.text and "/credit-notes/" not in anonymous.text


def test_the_portal_api_lists_and_answers_it_and_says_what_credit_is_left(stack, credited):
    note, invoice = credited["note"], credited["invoice"]
    auth = {"Authorization": f"Bearer {bearer_token(stack, CARLA)}"}

    def api(path, expect=200, **params):
        answer = requests.get(f"{stack.url}{PORTAL}{path}", headers=auth, params=params, timeout=20)
        assert answer.status_code == expect, (path, answer.text)
        return answer

    listed = api("/credit-notes").json()
    assert [n["id"] for n in listed["items"]] == [note["id"]] and listed["total"] == 1
    assert listed["items"][0]["verify_url"] == f"{stack.url}/verify/{note['verification_code']}"
    assert api("/credit-notes", invoice_id=invoice["id"]).json()["total"] == 1
    assert api("/credit-notes", invoice_id=credited["otto"]["invoices"][0]["id"]).json()["items"] == []
    one = api(f"/credit-notes/{note['id']}").json()
    assert (one["number"], one["total"], one["reason"]) == (note["number"], 3300, "Two chairs came back broken")
    assert [line["description"] for line in one["lines"]] == ["Broken chair"]
    assert api(f"/credit-notes/{note['id']}/pdf").content.startswith(b"%PDF-")

    # the business applies some of the credit: the listing says what is left, as the dashboard does
    before = listed["credit_available"]
    assert before == {"amount": 3300, "currency": "USD"}
    credited["admin"]("POST", f"/invoices/{invoice['id']}/apply-credit", json={"amount": 1000})
    after = api("/credit-notes").json()["credit_available"]
    assert after == {"amount": 2300, "currency": "USD"} == api("/dashboard").json()["credit_available"]


def test_another_client_gets_the_same_404_as_for_nothing_and_sees_it_nowhere(stack, credited):
    note = credited["note"]
    browser = sign_in(stack, OTTO)
    unknown = "00000000-0000-4000-8000-000000000000"

    def answers(credit_id: str) -> list:
        found = []
        for path in (f"/credit-notes/{credit_id}", f"/credit-notes/{credit_id}/pdf"):
            page = browser.get(f"{stack.url}{path}")
            found.append((page.status_code, re.search(r"<h1>(.*?)</h1>", page.text).group(1)))
        api = browser.get(f"{stack.url}{PORTAL}/credit-notes/{credit_id}")
        found.append((api.status_code, api.json()["detail"]))
        pdf = browser.get(f"{stack.url}{PORTAL}/credit-notes/{credit_id}/pdf")
        found.append((pdf.status_code, pdf.json()["detail"]))
        return found

    expected = [(404, "Not found")] * 2 + [(404, "No such credit note.")] * 2
    assert answers(note["id"]) == answers(unknown) == expected
    for path in ("/credit-notes", "/statement", f"{PORTAL}/credit-notes", f"/verify/{note['verification_code']}"):
        page = browser.get(f"{stack.url}{path}")
        assert page.status_code == 200 and f"/credit-notes/{note['id']}" not in page.text, path
        if path != f"/verify/{note['verification_code']}":  # the paper's page shows its number to anyone
            assert note["number"] not in page.text, path
    assert browser.get(f"{stack.url}{PORTAL}/credit-notes").json()["credit_available"]["amount"] == 0

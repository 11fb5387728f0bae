"""Verifiable documents through the running stack: each invoice, quote, credit note and receipt PDF is
rendered to an image, its QR code read back, and the address it holds opened without signing in; the
page answers the document's number, total, status and the business's IBAN and BIC, never the client's
name or lines. A tampered copy of the paper (another amount) still points at the true record, which
is what gives it away; unknown and malformed codes are a 404 page that says what to do."""

import base64
import io
import json
import re
import time

import psycopg2
import pytest
import requests
from pypdf import PdfReader

from tests.conftest import Browser, link_token, services_rpc
from tests.qr_codes import qr_codes

pytestmark = pytest.mark.e2e

EMAIL = "pruefung@kunde-verify.example"
CLIENT_NAME = "Prüfkunde Verify GmbH"
IBAN = "DE89 3704 0044 0532 0130 00"  # the seeded German seller's, as the page groups it
BIC = "COBADEFFXXX"
CODE_URL = re.compile(r"^http://localhost:\d+/verify/[A-Z2-7]{4}(-[A-Z2-7]{4}){6}$")


def qr_url(pdf: bytes) -> str:
    """The one QR code on the PDF's first page, read from the page rendered at 150 dpi."""
    found = qr_codes(pdf)
    assert len(found) == 1, found
    return found[0]


def pdf_text(pdf: bytes) -> str:
    return " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())


def pdf_of(browser, url: str) -> bytes:
    """A PDF from the portal. On this shared two-core machine documents may still be rendering the
    documents' emails when the test asks: a 503 or 504 is asked again, as a person would reload."""
    deadline = time.monotonic() + 90
    while True:
        answer = browser.get(url)
        if answer.status_code not in (503, 504) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/pdf", answer.text[:300]
    return answer.content


def check(url: str) -> requests.Response:
    """The page as someone holding the paper opens it: no cookie, no session."""
    return requests.get(url, timeout=20)


def facts(html: str) -> dict:
    return {
        key: re.sub(r"[ \t\n]+", " ", value).strip()
        for key, value in re.findall(r'data-testid="(\w+)">(.*?)</dd>', html)
    }


@pytest.fixture(scope="module")
def seller(stack):
    """A client of the seeded German seller (IBAN and BIC on record) with one document of each kind."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM workspaces WHERE name = 'Muster Design GmbH'")
        workspace_id = cur.fetchone()[0]
    with services_rpc(stack, workspace_id) as rpc:
        client = rpc.billing.create_client(
            workspace_id,
            {
                "name": CLIENT_NAME,
                "country": "DE",
                "contacts": [{"email": EMAIL, "name": "Petra Prüf", "is_primary": True, "portal_access": True}],
            },
        )
    deadline = time.monotonic() + 30
    while True:  # auth learns the contact from billing's events
        with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM contacts WHERE email = %s AND portal_access", (EMAIL,))
            if cur.fetchone()[0]:
                break
        assert time.monotonic() < deadline, "auth never learned the contact"
        time.sleep(0.2)
    browser = signed_in_in_german(stack)  # before the documents' emails keep the mail queue busy
    with services_rpc(stack, workspace_id) as rpc:
        lines = [{"description": "Geheime Leistung Alpha", "quantity": 3, "unit_price": 10000, "tax_rate": 19}]
        invoice = rpc.billing.create_invoice(workspace_id, {"client_id": client["id"], "lines": lines, "send": True})
        paid = rpc.billing.create_invoice(workspace_id, {"client_id": client["id"], "lines": lines, "send": True})
        payment = rpc.billing.record_payment(
            workspace_id, {"invoice_id": paid["id"], "amount": paid["total"], "method": "bank_transfer"}
        )
        quote = rpc.billing.create_quote(workspace_id, {"client_id": client["id"], "lines": lines, "send": True})
        credit = rpc.billing.issue_credit_note(
            workspace_id, {"client_id": client["id"], "amount": 2500, "reason": "Kulanz"}
        )
        key = rpc.billing.create_api_key(workspace_id, "verification tests")["key"]
    return {
        "workspace_id": workspace_id,
        "client": client,
        "invoice": invoice,
        "paid": paid,
        "payment": payment,
        "quote": quote,
        "credit": credit,
        "key": key,
        "browser": browser,
    }


def signed_in_in_german(stack) -> Browser:
    """The client's contact signs in; its sign-in email is German, like the business."""
    browser = Browser(stack.url)
    before = stack.outbox.count(EMAIL, "Anmeldelink")
    assert browser.post(f"{stack.url}/login", data={"email": EMAIL}).status_code == 200
    token = link_token(stack.outbox.wait_for(EMAIL, before + 1, timeout=60, subject="Anmeldelink")[-1])
    assert browser.post(f"{stack.url}/login/verify", data={"token": token}, allow_redirects=False).status_code == 303
    return browser


def assert_proves(page: requests.Response, number: str, total: str, status: str) -> dict:
    assert page.status_code == 200, page.text[:500]
    shown = facts(page.text)
    assert number in shown["document"], shown
    assert shown["total"] == total, shown
    assert shown["status"] == status, shown
    assert shown["business"] == "Muster Design GmbH"
    assert (shown["iban"], shown["bic"]) == (IBAN, BIC)
    assert CLIENT_NAME not in page.text and "Petra" not in page.text  # nobody's name
    assert "Geheime Leistung Alpha" not in page.text  # nor the lines
    assert "zahlen Sie nicht" in page.text  # how to check, in the paper's language (the client's: German)
    return shown


def test_an_invoice_pdf_leads_by_its_qr_code_to_the_page_that_proves_it(stack, seller):
    browser, invoice = seller["browser"], seller["invoice"]
    pdf = pdf_of(browser, f"{stack.url}/invoices/{invoice['id']}/pdf")
    url = qr_url(pdf)
    assert CODE_URL.match(url), url
    assert url.rsplit("/", 1)[1] in pdf_text(pdf)  # the code is printed for typing too
    shown = assert_proves(check(url), invoice["number"], "357,00\xa0€", "Unbezahlt")
    assert shown["balance"] == "357,00\xa0€"
    assert facts(check(url).text)["document"] == f"Rechnung {invoice['number']}"
    # the portal API and the admin API say the same address, and so does the invoice.sent event
    api = browser.get(f"{stack.url}/api/portal/v1/invoices/{invoice['id']}").json()
    listed = browser.get(f"{stack.url}/api/portal/v1/invoices").json()["items"]
    admin = requests.get(
        f"{stack.url}/api/admin/v1/invoices/{invoice['id']}",
        headers={"Authorization": f"Bearer {seller['key']}"},
        timeout=20,
    ).json()
    assert api["verify_url"] == admin["verify_url"] == url
    assert [i["verify_url"] for i in listed if i["id"] == invoice["id"]] == [url]
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM outbox WHERE event_type = 'invoice.sent'")
        sent = [json.loads(body)["data"] for (body,) in cur.fetchall()]
    assert [e["links"]["verify"] for e in sent if e["id"] == invoice["id"]] == ["/verify/" + url.rsplit("/", 1)[1]]


def test_a_quote_a_receipt_and_a_credit_note_each_carry_their_own_code(stack, seller):
    browser = seller["browser"]
    quote_pdf = pdf_of(browser, f"{stack.url}/quotes/{seller['quote']['id']}/pdf")
    receipt_pdf = pdf_of(browser, f"{stack.url}/payments/{seller['payment']['id']}/receipt.pdf")
    credit_pdf = pdf_of(browser, f"{stack.url}/credit-notes/{seller['credit']['id']}/pdf")
    urls = [qr_url(quote_pdf), qr_url(receipt_pdf), qr_url(credit_pdf)]
    assert all(CODE_URL.match(u) for u in urls) and len(set(urls)) == 3
    assert_proves(check(urls[0]), seller["quote"]["number"], "357,00\xa0€", "Wartet auf Antwort")
    receipt = assert_proves(check(urls[1]), seller["payment"]["id"][:8].upper(), "357,00\xa0€", "Zahlung erhalten")
    assert receipt["document"].startswith("Quittung ")
    assert_proves(check(urls[2]), seller["credit"]["number"], "25,00\xa0€", "Ausgestellt")
    paid = pdf_of(browser, f"{stack.url}/invoices/{seller['paid']['id']}/pdf")
    assert_proves(check(qr_url(paid)), seller["paid"]["number"], "357,00\xa0€", "Bezahlt")


def test_a_tampered_copy_still_points_at_the_true_record(stack, seller):
    """Someone alters the paper (a higher amount) but keeps its QR code: the page shows what was really
    issued, so the two differ and the reader is told not to pay."""
    invoice = seller["invoice"]
    with services_rpc(stack, seller["workspace_id"]) as rpc:
        real = rpc.billing.get_invoice(seller["workspace_id"], invoice["id"])
        forged = {
            **real,
            "total": 999900,
            "balance": 999900,
            "notes": "Neue Bankverbindung: DE02 1203 0000 0000 2020 51",
        }
        rendered = rpc.documents.render_document(
            "invoice", seller["workspace_id"], forged, "de_DE", "Europe/Berlin", purpose="fallback"
        )
    forged_pdf = base64.b64decode(rendered["pdf"])
    assert "9.999,00" in pdf_text(forged_pdf)
    page = check(qr_url(forged_pdf))
    shown = assert_proves(page, invoice["number"], "357,00\xa0€", "Unbezahlt")
    assert "9.999,00" not in page.text and "DE02 1203" not in page.text
    assert shown["iban"] == IBAN


@pytest.mark.parametrize(
    "code",
    ["AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA", "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ29", "not-a-code", "A" * 200],
)
def test_an_unknown_or_malformed_code_is_a_404_page_that_says_what_to_do(stack, code):
    page = check(f"{stack.url}/verify/{code}")
    assert page.status_code == 404
    assert "This document could not be verified" in page.text
    assert "do not pay" in page.text and "channel you already know" in page.text
    problem = requests.get(f"{stack.url}/verify/{code}", headers={"Accept": "application/json"}, timeout=20)
    assert problem.status_code == 404  # a script gets the same answer


def test_a_typed_code_in_lower_case_without_dashes_finds_the_same_document(stack, seller):
    url = seller["browser"].get(f"{stack.url}/api/portal/v1/invoices/{seller['invoice']['id']}").json()["verify_url"]
    typed = url.rsplit("/", 1)[1].replace("-", "").lower()
    assert_proves(check(f"{stack.url}/verify/{typed}"), seller["invoice"]["number"], "357,00\xa0€", "Unbezahlt")

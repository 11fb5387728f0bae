"""The client's credit notes in the portal, with billing replaced by a fake RPC: the list (with the credit
not yet applied) and one credit note's page, its PDF and the JSON API, each asked for within the
session's client only; every role reads them; and the pages that name a credit note (the dashboard's
credit, the payments page, the statement, an invoice, the /verify page) link to it."""

import base64
import re

import pytest

from chassis.errors import NotFound
from services.gateway.app import GatewayConfig
from services.gateway.portal_api import portal_openapi
from tests.unit.test_gateway import DASHBOARD, SESSION, WORKSPACE, client, credential

CODE = "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23"
READER = {"name": "Demo Client Ltd", "currency": "USD", "locale": "en_US", "timezone": "America/New_York"}
NOTE = {
    "id": "cn1",
    "number": "CN-2026-00003",
    "client_id": "cl1",
    "currency": "USD",
    "issue_date": "2026-11-20",
    "subtotal": 11000,
    "tax_total": 1900,
    "total": 12900,
    "reason": "Chairs returned",
    "client": {"name": "Demo Client Ltd"},
    "invoice_id": "i7",
    "invoice_number": "INV-2026-00007",
    "verification_code": CODE,
    "created_at": "2026-11-20T15:00:00+00:00",
    "lines": [
        {
            "description": "Returned chairs",
            "quantity": "2",
            "unit_price": 5000,
            "tax_rate": "19",
            "discount_percent": "0",
            "discount": 0,
            "subtotal": 10000,
            "tax": 1900,
            "total": 11900,
        },
        {
            "description": "Late delivery",
            "quantity": "1",
            "unit_price": 1000,
            "tax_rate": "0",
            "discount_percent": "0",
            "discount": 0,
            "subtotal": 1000,
            "tax": 0,
            "total": 1000,
        },
    ],
    "tax_breakdown": [
        {"category": "S", "rate": "19", "base": 10000, "tax": 1900},
        {"category": "Z", "rate": "0", "base": 1000, "tax": 0},
    ],
    "locale": "en_US",
    "timezone": "America/New_York",
    "business_name": "Acme",
}
LISTED = {
    "items": [
        {k: NOTE[k] for k in ("id", "number", "currency", "issue_date", "subtotal", "tax_total", "total", "reason")}
        | {"invoice_id": "i7", "invoice_number": "INV-2026-00007", "verification_code": CODE, "created_at": "x"},
        {
            "id": "cn0",
            "number": "CN-2026-00001",
            "currency": "USD",
            "issue_date": "2026-11-01",
            "subtotal": 2500,
            "tax_total": 0,
            "total": 2500,
            "reason": "",
            "invoice_id": None,
            "invoice_number": "INV-2026-00002",  # an archived invoice: named, not linked
            "verification_code": None,
            "created_at": "x",
        },
    ],
    "total": 2,
    "limit": 20,
    "offset": 0,
    "credit_available": {"amount": 11400, "currency": "USD"},
    "client": READER,
}
UNKNOWN = NotFound("No such credit note.")


def portal(answers=None, session=SESSION):
    return client({("billing", "get_workspace"): WORKSPACE, **(answers or {})}, session=session)


def same_but_for_this_request(html: str) -> str:
    """A page without what differs from one request to the next: its CSRF token and its reference."""
    return re.sub(r'name="csrf_token" value="\w+"|Reference: \w+', "", html)


def billing_calls(rpc, method):
    """(args, keyword arguments) of each call of a billing RPC; each acted in the session's scope."""
    calls = [
        (args, dict(kwargs))
        for service, name, args, _rid, kwargs in rpc.calls
        if (service, name) == ("billing", method)
    ]
    for _, kwargs in calls:
        scope = kwargs.pop("scope")
        assert (scope.workspace_id, scope.client_id) == (SESSION["workspace_id"], SESSION["client_id"])
    return calls


# --- the list --------------------------------------------------------------------------------------------


def test_the_list_shows_the_clients_credit_notes_and_its_available_credit():
    c, rpc = portal({("billing", "list_client_credit_notes"): LISTED})
    page = c.simulate_get("/credit-notes", cookies=c.session_cookie)
    assert page.status_code == 200
    assert billing_calls(rpc, "list_client_credit_notes") == [(("ws1", "cl1"), {"filters": {"limit": 20, "offset": 0}})]
    # one call: the listing says how its reader formats (no get_client); the brand is cached apart
    assert [call[1] for call in rpc.calls if call[:2] != ("billing", "get_workspace")] == ["list_client_credit_notes"]
    text = page.text
    assert 'data-testid="credit-available">$114.00<' in text
    assert '<a href="/credit-notes/cn1">CN-2026-00003</a>' in text and "$129.00" in text and "Chairs returned" in text
    assert '<a href="/invoices/i7">INV-2026-00007</a>' in text
    assert "INV-2026-00002" in text and 'href="/invoices/None"' not in text  # named, not linked
    assert "Nov 20, 2026" in text and '<a href="/payments" aria-current="page">Payments</a>' in text


def test_the_list_pages_twenty_at_a_time():
    c, rpc = portal({("billing", "list_client_credit_notes"): {**LISTED, "total": 45, "offset": 20}})
    page = c.simulate_get("/credit-notes", params={"page": "2"}, cookies=c.session_cookie)
    assert page.status_code == 200 and "Page 2 of 3" in page.text
    assert 'href="?page=1"' in page.text and 'href="?page=3"' in page.text
    assert billing_calls(rpc, "list_client_credit_notes")[0][1]["filters"] == {"limit": 20, "offset": 20}
    bad = c.simulate_get("/credit-notes", params={"page": "x"}, cookies=c.session_cookie)
    assert bad.status_code == 400


def test_an_empty_list_says_what_will_appear_there_in_german():
    empty = {**LISTED, "items": [], "total": 0, "credit_available": {"amount": 0, "currency": "USD"}}
    c, _ = portal({("billing", "list_client_credit_notes"): empty}, session={**SESSION, "locale": "de_DE"})
    page = c.simulate_get("/credit-notes", cookies=c.session_cookie)
    assert page.status_code == 200 and '<html lang="de">' in page.text
    assert "<h1>Gutschriften</h1>" in page.text and "Verfügbares Guthaben" in page.text
    assert "Hier sind keine Gutschriften." in page.text and "0,00\xa0$" in page.text


def test_signed_out_the_list_sends_to_sign_in_and_asks_billing_nothing():
    c, rpc = portal({("billing", "list_client_credit_notes"): LISTED})
    page = c.simulate_get("/credit-notes")
    assert page.status_code == 303 and page.headers["location"] == "/login" and rpc.calls == []


# --- one credit note -------------------------------------------------------------------------------------


def test_the_page_shows_number_date_lines_totals_reason_invoice_and_verification_code():
    c, rpc = portal({("billing", "get_credit_note"): NOTE})
    page = c.simulate_get("/credit-notes/cn1", cookies=c.session_cookie)
    assert page.status_code == 200
    assert billing_calls(rpc, "get_credit_note") == [(("ws1", "cn1"), {"client_id": "cl1"})]  # within the client
    text = page.text
    assert "<h1>Credit note CN-2026-00003</h1>" in text and 'data-testid="issued">Nov 20, 2026<' in text
    assert "Returned chairs" in text and "Late delivery" in text
    assert 'data-testid="subtotal">$110.00<' in text and 'data-testid="total">$129.00<' in text
    assert "Tax 19% on $100.00" in text and 'data-testid="reason">Chairs returned<' in text
    assert 'data-testid="invoice"><a href="/invoices/i7">INV-2026-00007</a>' in text
    assert f"<code>{CODE}</code>" in text and f'href="http://portal.test/verify/{CODE}"' in text
    assert 'href="/credit-notes/cn1/pdf"' in text


def test_a_credit_note_of_an_invoice_the_client_cannot_open_names_it_without_a_link():
    c, _ = portal({("billing", "get_credit_note"): {**NOTE, "invoice_id": None}})
    page = c.simulate_get("/credit-notes/cn1", cookies=c.session_cookie)
    assert page.status_code == 200 and 'data-testid="invoice">INV-2026-00007</dd>' in page.text


def test_the_page_reads_in_german():
    c, _ = portal({("billing", "get_credit_note"): NOTE}, session={**SESSION, "locale": "de_DE"})
    text = c.simulate_get("/credit-notes/cn1", cookies=c.session_cookie).text
    assert "<h1>Gutschrift CN-2026-00003</h1>" in text and "20.11.2026" in text and "129,00\xa0$" in text
    assert "Prüfcode" in text and "Zur Rechnung" in text and "Alle Gutschriften" in text


def test_another_clients_credit_note_is_the_same_404_as_an_unknown_one():
    pages = []
    for credit_id in ("their-credit-note", "no-such-thing"):
        c, rpc = portal({("billing", "get_credit_note"): UNKNOWN, ("documents", "render_document"): AssertionError()})
        for path in (f"/credit-notes/{credit_id}", f"/credit-notes/{credit_id}/pdf"):
            page = c.simulate_get(path, cookies=c.session_cookie)
            pages.append((page.status_code, same_but_for_this_request(page.text.replace(credit_id, "ID"))))
        api = c.simulate_get(f"/api/portal/v1/credit-notes/{credit_id}", cookies=c.session_cookie)
        pages.append((api.status_code, api.json["detail"]))
        assert all(kwargs == {"client_id": "cl1"} for _, kwargs in billing_calls(rpc, "get_credit_note"))
        assert not [call for call in rpc.calls if call[0] == "documents"]  # nothing rendered
    assert [status for status, _ in pages] == [404] * 6
    assert pages[:3] == pages[3:]  # word for word
    assert "No such credit note." in pages[0][1]


@pytest.mark.parametrize("role", ["owner", "payer", "approver", "viewer"])
def test_every_role_reads_credit_notes_as_every_role_reads_invoices(role):
    c, _ = portal(
        {("billing", "get_credit_note"): NOTE, ("billing", "list_client_credit_notes"): LISTED},
        session={**SESSION, "role": role},
    )
    for path in (
        "/credit-notes",
        "/credit-notes/cn1",
        "/api/portal/v1/credit-notes",
        "/api/portal/v1/credit-notes/cn1",
    ):
        assert c.simulate_get(path, cookies=c.session_cookie).status_code == 200, (role, path)


def test_the_pdf_is_the_clients_own_rendered_by_documents_and_served_like_an_invoices():
    pdf = {"filename": "CN-2026-00003.pdf", "etag": "e1", "pdf": base64.b64encode(b"%PDF-1.7 cn").decode()}
    c, rpc = portal({("billing", "get_credit_note"): NOTE, ("documents", "render_document"): pdf})
    for path in ("/credit-notes/cn1/pdf", "/api/portal/v1/credit-notes/cn1/pdf"):
        page = c.simulate_get(path, cookies=c.session_cookie)
        assert page.status_code == 200 and page.content == b"%PDF-1.7 cn", path
        assert page.headers["content-type"] == "application/pdf"
        assert page.headers["content-disposition"] == 'attachment; filename="CN-2026-00003.pdf"'
        assert page.headers["cache-control"] == "private, max-age=0, must-revalidate"
    assert {kwargs["client_id"] for _, kwargs in billing_calls(rpc, "get_credit_note")} == {"cl1"}
    rendered = [call for call in rpc.calls if call[:2] == ("documents", "render_document")]
    assert [call[2][:3] for call in rendered] == [("credit_note", "ws1", NOTE)] * 2
    assert rendered[0][2][3:] == ("en_US", "America/New_York")  # the client's language and time zone
    again = c.simulate_get("/credit-notes/cn1/pdf", cookies=c.session_cookie, headers={"If-None-Match": '"e1"'})
    assert again.status_code == 304 and not again.content


# --- the JSON API ----------------------------------------------------------------------------------------


def test_the_api_lists_the_clients_credit_notes_with_verify_urls():
    c, rpc = portal({("billing", "list_client_credit_notes"): LISTED})
    answer = c.simulate_get("/api/portal/v1/credit-notes", cookies=c.session_cookie)
    assert answer.status_code == 200
    assert billing_calls(rpc, "list_client_credit_notes") == [(("ws1", "cl1"), {"filters": {"limit": 50, "offset": 0}})]
    body = answer.json
    assert [n["number"] for n in body["items"]] == ["CN-2026-00003", "CN-2026-00001"]
    assert [n["verify_url"] for n in body["items"]] == [f"http://portal.test/verify/{CODE}", None]
    assert body["credit_available"] == {"amount": 11400, "currency": "USD"} and body["total"] == 2
    c.simulate_get(
        "/api/portal/v1/credit-notes",
        params={"invoice_id": "i7", "limit": "5", "offset": "10"},
        headers=c.bearer,
    )
    assert billing_calls(rpc, "list_client_credit_notes")[-1] == (
        ("ws1", "cl1"),
        {"filters": {"limit": 5, "offset": 10, "invoice_id": "i7"}},
    )


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "101"}, {"offset": "-1"}, {"limit": "x"}, {"invoice_id": "i" * 65}, {"invoice_id": ""}],
)
def test_a_bad_query_is_a_400_that_asks_billing_nothing(params):
    c, rpc = portal({("billing", "list_client_credit_notes"): LISTED})
    answer = c.simulate_get("/api/portal/v1/credit-notes", params=params, cookies=c.session_cookie)
    assert answer.status_code == 400 and answer.headers["content-type"] == "application/problem+json"
    assert billing_calls(rpc, "list_client_credit_notes") == []


def test_the_api_answers_one_credit_note_within_the_client():
    c, rpc = portal({("billing", "get_credit_note"): NOTE})
    answer = c.simulate_get("/api/portal/v1/credit-notes/cn1", headers=c.bearer)
    assert answer.status_code == 200 and answer.json["number"] == "CN-2026-00003"
    assert answer.json["verify_url"] == f"http://portal.test/verify/{CODE}"
    assert answer.json["lines"][0]["description"] == "Returned chairs"
    assert billing_calls(rpc, "get_credit_note") == [(("ws1", "cn1"), {"client_id": "cl1"})]


def test_the_openapi_document_has_the_list_the_item_and_the_pdf():
    paths = portal_openapi()["paths"]
    listing = paths["/api/portal/v1/credit-notes"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"invoice_id", "limit", "offset"}
    assert "credit_available" in listing["summary"]
    assert "verify_url" in paths["/api/portal/v1/credit-notes/{id}"]["get"]["summary"]
    assert "application/pdf" in paths["/api/portal/v1/credit-notes/{id}/pdf"]["get"]["responses"]["200"]["content"]
    for operation in (listing, paths["/api/portal/v1/credit-notes/{id}"]["get"]):
        assert {"401", "404"} <= set(operation["responses"])


# --- where the portal names a credit note ----------------------------------------------------------------


def test_the_dashboards_credit_figure_and_the_payments_page_lead_to_the_credit_notes():
    c, _ = portal({("billing", "client_dashboard"): DASHBOARD})
    dashboard = c.simulate_get("/dashboard", cookies=c.session_cookie).text
    tile = dashboard.split("Available credits")[1].split("</div>")[0]
    assert '<a href="/credit-notes">Your credit notes</a>' in tile
    c, _ = portal(
        {
            ("billing", "list_payments"): [],
            ("billing", "list_processing_payments"): [],
            ("billing", "get_client"): {**READER, "id": "cl1"},
        }
    )
    assert '<a href="/credit-notes">Credit notes</a>' in c.simulate_get("/payments", cookies=c.session_cookie).text


def test_the_statement_links_each_credit_note_entry_and_nothing_else():
    statement = {
        **READER,
        "client": READER,
        "currency": "USD",
        "from": "2026-08-23",
        "to": "2026-11-23",
        "today": "2026-11-23",
        "opening_balance": 0,
        "closing_balance": 0,
        "entries": [
            {"date": "2026-11-01", "kind": "invoice", "reference": "INV-2026-00002", "amount": 2500, "balance": 2500},
            {
                "date": "2026-11-01",
                "kind": "credit",
                "reference": "CN-2026-00001",
                "amount": 2500,
                "balance": 0,
                "credit_note_id": "cn0",
            },
            {
                "date": "2026-11-02",
                "kind": "credit",
                "reference": "Credit for refund of visa 4242",
                "amount": 100,
                "balance": -100,
                "credit_note_id": None,
            },
        ],
        "aging": None,
    }
    c, _ = portal({("billing", "statement"): statement})
    text = c.simulate_get("/statement", cookies=c.session_cookie).text
    assert '<a href="/credit-notes/cn0">CN-2026-00001</a>' in text
    assert text.count('href="/credit-notes/') == 1 and ">Credit for refund of visa 4242</td>" in text
    assert ">INV-2026-00002</td>" in text


def invoice_page(dispute=None, credit_notes=None):
    from tests.unit.test_invoice_pages import invoice

    shown = {"invoice": invoice(dispute=dispute), "comments": []}
    if credit_notes is not None:
        shown["credit_notes"] = credit_notes
    c, _ = portal({("billing", "view_invoice"): shown})
    page = c.simulate_get("/invoices/i2", cookies=c.session_cookie)
    assert page.status_code == 200
    return page.text


def test_an_invoice_links_the_credit_notes_issued_for_it():
    crediting = [
        {"id": "cn1", "number": "CN-2026-00003", "issue_date": "2026-11-20", "total": 12900, "currency": "USD"}
    ]
    text = invoice_page(credit_notes=crediting)
    found = text.split('data-testid="credit-notes">')[1].split("</p>")[0]
    assert '<a href="/credit-notes/cn1">CN-2026-00003</a> ($129.00)' in found
    assert 'data-testid="credit-notes"' not in invoice_page(credit_notes=[])
    assert 'data-testid="credit-notes"' not in invoice_page()  # from a billing older than this gateway


def test_an_invoice_whose_dispute_was_adjusted_links_the_credit_note():
    dispute = {
        "id": "d1",
        "invoice_id": "i2",
        "status": "adjusted",
        "resolution_message": "Line 2 credited.",
        "credit_note_id": "cn9",
        "credit_amount": 9500,
        "raised_at": "2026-11-10T10:00:00+00:00",
    }
    status = invoice_page(dispute=dispute).split('data-testid="dispute-status">')[1].split("</p>")[0]
    assert "adjusted with a credit note." in status and '<a href="/credit-notes/cn9">See the credit note</a>' in status


RECORD = {
    "code": CODE,
    "kind": "credit_note",
    "workspace_id": "ws1",
    "client_id": "cl1",
    "document_id": "cn1",
    "business_name": "Acme",
    "iban": "",
    "bic": "",
    "locale": "en_US",
    "timezone": "America/New_York",
    "number": "CN-2026-00003",
    "date": "2026-11-20",
    "currency": "USD",
    "total": 12900,
    "status": "issued",
}


@pytest.mark.parametrize(
    "record, session, linked",
    [
        (RECORD, SESSION, True),  # the credit note's own client, signed in
        (RECORD, None, False),  # nobody signed in: the page anyone holding the paper sees
        (RECORD, {**SESSION, "client_id": "cl2"}, False),  # another client of the business
        (RECORD, {**SESSION, "workspace_id": "ws2"}, False),  # a client of another business
        ({**RECORD, "kind": "invoice", "document_id": "i1", "balance": 0}, SESSION, False),  # only credit notes
    ],
)
def test_the_verify_page_links_a_signed_in_client_to_its_own_credit_note_only(record, session, linked):
    c, _ = portal({("billing", "verify_document"): record})
    cookies = {GatewayConfig().cookie_name: credential(session)} if session else None
    page = c.simulate_get(f"/verify/{CODE}", cookies=cookies)
    assert page.status_code == 200 and "CN-2026-00003" in page.text
    assert ('<a href="/credit-notes/cn1" data-testid="own-document">' in page.text) is linked
    assert "/credit-notes/" in page.text if linked else "/credit-notes/" not in page.text
    assert "Demo Client Ltd" not in page.text and "cl1" not in page.text  # whose it is shows nowhere

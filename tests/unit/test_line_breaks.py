"""Text typed on several lines (an address, a comment) keeps its lines: a browser's CRLF is saved as the
LF the JSON API's callers send, an address reads as one line of commas wherever it is shown on one, and
a comment shows its own line breaks."""

from urllib.parse import urlencode

import pytest

from chassis.fields import one_line
from services.documents import pdf as pdfmod
from tests.unit.test_documents_pdf import context
from tests.unit.test_gateway import DASHBOARD, FORM, WORKSPACE, client
from tests.unit.test_gateway_usecases import PROFILE_CLIENT
from tests.unit.test_invoice_pages import invoice


@pytest.mark.parametrize(
    "text, line",
    [
        ("42 Demo Road\r\nGotham, NJ 07001", "42 Demo Road, Gotham, NJ 07001"),
        ("42 Demo Road\nGotham, NJ 07001", "42 Demo Road, Gotham, NJ 07001"),
        ("  42 Demo Road \r\n\r\n Gotham \r\n", "42 Demo Road, Gotham"),
        ("Hauptstr. 5\u2028Berlin", "Hauptstr. 5, Berlin"),
        ("", ""),
        (None, ""),
    ],
)
def test_an_address_on_one_line_joins_its_lines_with_commas_whatever_ends_them(text, line):
    assert one_line(text) == line


def profile_client(saved: dict):
    """The gateway, with billing saving the profile and answering `saved` as its contact."""
    return client(
        {
            ("billing", "get_client"): PROFILE_CLIENT,
            ("billing", "get_workspace"): {"id": "ws1", "name": "Acme"},
            ("billing", "get_notification_preferences"): {},
            ("auth", "password_status"): {},
            ("billing", "update_profile"): {"contact": saved, "client": PROFILE_CLIENT},
        }
    )


def test_an_address_typed_in_the_browser_is_saved_with_the_line_breaks_the_api_uses():
    c, rpc = profile_client({"id": "c1", "name": "Dana Demo"})
    typed = {"name": "Dana Demo", "company": "Demo Client Ltd", "address": "42 Demo Road\r\nGotham, NJ 07001"}
    page = c.simulate_post("/profile", body=urlencode(typed), headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 303
    saved = [call[2] for call in rpc.calls if call[1] == "update_profile"]
    assert saved[0][3]["address"] == "42 Demo Road\nGotham, NJ 07001"


def test_the_dashboard_shows_an_address_saved_from_a_browser_on_one_line():
    crlf = {**DASHBOARD, "client": {**DASHBOARD["client"], "address": "42 Demo Road\r\nGotham, NJ 07001"}}
    c, _ = client({("billing", "client_dashboard"): crlf, ("billing", "get_workspace"): WORKSPACE})
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200
    assert "42 Demo Road, Gotham, NJ 07001" in page.text and "42 Demo Road\r" not in page.text


@pytest.mark.parametrize("kind", ["invoice", "statement"])
def test_a_pdf_prints_an_address_saved_from_a_browser_on_one_line(kind):
    document = context(kind)
    client_saved = {**document["client"], "address": "42 Demo Road\r\nGotham, NJ 07001"}
    document["business"] = {**document["business"], "address": "1 Market Street\r\nSpringfield"}
    # the client as the document holds it (an invoice froze it when it was sent)
    document = {**document, "doc": {**document["doc"], "client": client_saved}}
    html = pdfmod.render_html(kind, document)
    assert "42 Demo Road, Gotham, NJ 07001" in html and "1 Market Street, Springfield" in html
    assert "\r" not in html


def test_a_comment_shows_its_own_line_breaks_and_escapes_each_line():
    comment = {
        "id": "m1",
        "author_kind": "client",
        "author_name": "Dana Demo",
        "created_at": "2026-11-20T15:00:00+00:00",
        "body": "We are a UK company.\r\n<b>Second</b> line.",
    }
    document = invoice()
    c, _ = client(
        {
            ("billing", "view_invoice"): {"invoice": document, "comments": [comment]},
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_get(f"/invoices/{document['id']}", cookies=c.session_cookie)
    assert page.status_code == 200
    assert "We are a UK company.<br>&lt;b&gt;Second&lt;/b&gt; line." in page.text

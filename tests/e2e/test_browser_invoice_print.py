"""Printing an invoice in a real browser (Playwright driving Debian's chromium): the invoice page on paper
is the document without the menu, forms, buttons and the forward and comment sections; its printable
view is that document alone on screen too; and the paper chromium prints from it says what the invoice's
PDF says (the business with its address and tax ID, the client, number, dates, amounts, the verification
code). Both files are kept in test-artifacts/print/ for a person to compare."""

import io
import re
import unicodedata
import uuid

import pytest
from pypdf import PdfReader

from tests.conftest import ARTIFACTS, new_portal_client, sign_in
from tests.e2e.test_browser import browser, check  # noqa: F401 - the chromium fixture and axe check

pytestmark = pytest.mark.e2e
PRINTS = ARTIFACTS / "print"

# How many of the elements a selector finds the page draws (under the media it emulates).
DRAWN = "els => els.filter(el => el.getClientRects().length > 0).length"


def drawn(page, selector: str) -> int:
    return page.locator(selector).evaluate_all(DRAWN)


def pdf_text(pdf: bytes) -> str:
    """A PDF's text without spaces (extraction splits some kerned pairs and joins some words) and with
    its ligatures as letters ("ﬁ" as "fi")."""
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return "".join(unicodedata.normalize("NFKC", text).split())


def test_an_invoice_prints_without_what_a_client_acts_with_and_says_what_its_pdf_says(stack, browser):  # noqa: F811
    email = f"print-{uuid.uuid4().hex[:6]}@example.org"
    made = new_portal_client(stack, "Printed Ltd", email)
    [invoice] = made["invoices"]
    session = sign_in(stack, email)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.add_cookies([{"name": c.name, "value": c.value, "url": stack.url} for c in session.cookies])
    page = context.new_page()
    page.goto(f"{stack.url}/invoices/{invoice['id']}")

    # on screen: the document with the seller's details, and the sections to act in
    seller = page.locator("[data-testid=seller]").inner_text()
    assert "Acme Studio" in seller and "1 Market Street" in seller and "Tax ID: US-12-3456789" in seller
    assert "Printed Ltd" in page.locator("[data-testid=buyer]").inner_text()
    assert drawn(page, "#forward") == 1 and drawn(page, "#comments") == 1 and drawn(page, "form") >= 2
    assert drawn(page, "[data-testid=verify]") == 0

    # the same page on paper: none of them, nor the menu; the way to check the paper instead
    page.emulate_media(media="print")
    for selector in ("header.top", "nav", "form", "button", "#forward", "#comments", ".actions", "a.skip"):
        assert drawn(page, selector) == 0, selector
    assert drawn(page, "[data-testid=invoice-document]") == 1 and drawn(page, "[data-testid=verify]") == 1
    assert "Acme Studio" in page.locator("[data-testid=seller]").inner_text()

    # the printable view: the document alone, on screen as on paper
    page.emulate_media(media="screen")
    page.click("text=Printable view")
    page.wait_for_url(f"{stack.url}/invoices/{invoice['id']}?print=1")
    assert page.locator("form, button, nav, textarea, input").count() == 0
    assert drawn(page, "header.top") == 0 and drawn(page, "[data-testid=verify]") == 1
    headings = page.locator("main h1, main h2").all_inner_texts()
    assert all(text.strip() for text in headings) and "Comments" not in headings
    code = re.search(r"Verification code: (\S+)", page.locator("[data-testid=verify]").inner_text()).group(1)
    check(page, "invoice-print-view")

    page.emulate_media(media="print")  # what chromium prints (the view's own link back is left out)
    assert drawn(page, "main a") == 0
    printed = page.pdf(format="A4")
    issued = session.get(f"{stack.url}/invoices/{invoice['id']}/pdf")
    assert issued.status_code == 200 and issued.headers["Content-Type"] == "application/pdf"
    PRINTS.mkdir(parents=True, exist_ok=True)
    (PRINTS / "invoice-printed-from-the-portal.pdf").write_bytes(printed)
    (PRINTS / "invoice-pdf.pdf").write_bytes(issued.content)
    paper, pdf = pdf_text(printed), pdf_text(issued.content)
    assert "Backtotheinvoice" not in paper
    for fact in (
        invoice["number"],
        "Acme Studio",
        "1 Market Street",
        "Springfield, IL 62701",
        "billing@acme.example",
        "US-12-3456789",
        "Printed Ltd",
        "Printed Ltd work 0",
        "$100.00",
        "Please pay $100.00 by",
        code,
        f"/verify/{code}",
    ):
        squeezed = "".join(fact.split())
        assert squeezed in paper, f"{fact} is not on the printed page"
        assert squeezed in pdf, f"{fact} is not in the PDF"
    context.close()

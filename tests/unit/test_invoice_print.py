"""The invoice's printable view (`/invoices/<id>?print=1`): the invoice as a document to print and file.
It states what the invoice's PDF states (the business's name, address, contact, tax and VAT ids and bank
account; the client's name, contact, address and ids; the number, dates, lines, totals, how to pay and
how to check the paper), with the totals as the signed-in page shows them, and nothing else: no menu,
forms, buttons, or forward, dispute and comment sections, and no heading without content."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from html import unescape
from html.parser import HTMLParser

import pytest
from babel.dates import format_date
from cachetools import TTLCache

from chassis.db import UnitOfWork
from chassis.money import Money
from services.billing import domain
from services.documents import handlers as doc_handlers
from services.documents import pdf as pdfmod
from services.gateway import branding
from tests.unit.test_gateway import SESSION, WORKSPACE, client
from tests.unit.test_invoice_pages import invoice, totals

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
PORTAL = "http://portal.test"  # the gateway's PORTAL_URL in tests/unit/test_gateway.client

# A US business (no VAT id, no bank account on its invoices) and a German one (both).
ACME = {
    **WORKSPACE,
    "name": "Acme Studio",
    "email": "billing@acme.example",
    "phone": "+1 555 0100",
    "address": "1 Market Street\nSpringfield, IL 62701",
    "tax_id": "US-12-3456789",
    "currency": "USD",
    "locale": "en_US",
    "timezone": "America/New_York",
    "settings": {"legal": {"country": "US", "vat_id": "", "iban": "", "bic": "", "einvoice_profile": "en16931"}},
}
MUSTER = {
    **WORKSPACE,
    "name": "Muster Design GmbH",
    "email": "rechnung@muster-design.example",
    "phone": "+49 30 1234567",
    "address": "Friedrichstraße 10\n10117 Berlin",
    "tax_id": "29/123/45678",
    "currency": "EUR",
    "locale": "de_DE",
    "timezone": "Europe/Berlin",
    "settings": {
        "legal": {
            "country": "DE",
            "vat_id": "DE136695976",
            "iban": "DE89370400440532013000",
            "bic": "COBADEFFXXX",
            "einvoice_profile": "en16931",
        }
    },
}

US_INVOICE = invoice(
    business_name="Acme Studio",
    amount_paid=0,
    amount_credited=60000,  # the credit note and the retainer the page lists one by one
    verification_code="7KQ2-M9XD-4HTR-Z8WB-3NPC-6VJF-2GLA",
    client={
        "name": "Demo Client Ltd",
        "address": "42 Demo Road\nDemo City, NY 10001",
        "contact_name": "Dana Demo",
        "contact_email": "demo@example.com",
        "tax_id": "",
        "vat_id": "",
        "buyer_reference": "",
    },
    service_period_start="2026-10-01",
    service_period_end="2026-10-31",
    notes="Thank you for your business.",
    terms="Payable within 30 days.",
)


def german_invoice() -> dict:
    """A German seller's invoice: a 19% line and an exempt one with its reason, part paid."""
    lines = [
        domain.Line("Beratung", Decimal(2), 50000, Decimal(19), Decimal(0)),
        domain.Line("Schulung", Decimal(1), 30000, Decimal(0), Decimal(0), "E"),
    ]
    total = domain.Totals.of(lines)
    stored = [line.as_dict() for line in lines]
    breakdown = domain.stored_tax_breakdown(stored, total.tax)
    reason = "Steuerbefreit nach § 4 Nr. 21 UStG"
    return invoice(
        number="RE-2026-0042",
        currency="EUR",
        business_name="Muster Design GmbH",
        verification_code="4HTR-7KQ2-Z8WB-M9XD-6VJF-3NPC-2GLA",
        lines=stored,
        subtotal=total.subtotal,
        tax_total=total.tax,
        total=total.total,
        tax_breakdown=[{**band, "exemption_reason": reason if band["category"] == "E" else ""} for band in breakdown],
        credits=[],
        payments=[{"payment_id": "p1", "amount": 50000, "currency": "EUR", "received_at": "2026-11-20T15:00:00+00:00"}],
        amount_paid=50000,
        amount_credited=0,
        balance=total.total - 50000,
        supply_date="2026-10-15",
        client={
            "name": "Kunde AG",
            "address": "Hauptstraße 5\n80331 München",
            "contact_name": "Klara Kunde",
            "contact_email": "kunde@example.com",
            "tax_id": "",
            "vat_id": "DE811569869",
            "buyer_reference": "BESTELLUNG-7781",
        },
        notes="Vielen Dank für Ihren Auftrag.",
        terms="Zahlbar ohne Abzug.",
        locale="de_DE",
        timezone="Europe/Berlin",
    )


@pytest.fixture(autouse=True)
def fresh_branding(monkeypatch):
    """Each test's workspace answer, not one another test left in the gateway's one-minute cache."""
    monkeypatch.setattr(branding, "_cache", TTLCache(maxsize=256, ttl=60))


def invoice_page(document: dict, workspace: dict, printable: bool = True, locale: str | None = None):
    session = {**SESSION, "role": "owner", **({"locale": locale} if locale else {})}
    c, rpc = client(
        {("billing", "view_invoice"): {"invoice": document, "comments": []}, ("billing", "get_workspace"): workspace},
        session=session,
    )
    page = c.simulate_get(
        f"/invoices/{document['id']}", params={"print": "1"} if printable else {}, cookies=c.session_cookie
    )
    assert page.status_code == 200, page.text
    return page.text


class Outline(HTMLParser):
    """What a page shows: its text (not its head, scripts or styles), its elements, and for each
    heading and section the text inside it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.open: list[tuple[str, dict, list[str]]] = []  # sections and headings being read
        self.closed: list[tuple[str, dict, str]] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in ("head", "script", "style"):
            self.hidden += 1
        if tag in ("section", "h1", "h2", "h3"):
            self.open.append((tag, attributes, []))

    def handle_endtag(self, tag):
        if tag in ("head", "script", "style"):
            self.hidden -= 1
        if tag in ("section", "h1", "h2", "h3") and self.open and self.open[-1][0] == tag:
            name, attributes, words = self.open.pop()
            self.closed.append((name, attributes, " ".join(words).strip()))

    def handle_data(self, data):
        if self.hidden or not data.strip():
            return
        self.text.append(data)
        for _, _, words in self.open:
            words.append(data.strip())


def outline(html: str) -> Outline:
    parser = Outline()
    parser.feed(html)
    return parser


def flat(text: str) -> str:
    """Text as read: entities resolved, any run of spaces (no-break ones too) one space."""
    return re.sub(r"\s+", " ", unescape(text).replace("\xa0", " ")).strip()


def shown_text(html: str) -> str:
    return flat(" ".join(outline(html).text))


def test_the_printable_view_has_the_business_and_the_client_with_their_addresses_and_ids():
    text = shown_text(invoice_page(US_INVOICE, ACME))
    for fact in (
        "Billed by Acme Studio 1 Market Street Springfield, IL 62701",
        "billing@acme.example · +1 555 0100",
        "Tax ID: US-12-3456789",
        "Billed to Demo Client Ltd Dana Demo 42 Demo Road Demo City, NY 10001",
        "Invoice INV-2026-00002",
        "Issued Nov 1, 2026 Due Dec 1, 2026 Service period Oct 1, 2026 – Oct 31, 2026",
        "Design work",
        "Please pay $285.00 by Dec 1, 2026.",
        "Notes: Thank you for your business.",
        "Terms: Payable within 30 days.",
        f"To check it, open {PORTAL}/verify/7KQ2-M9XD-4HTR-Z8WB-3NPC-6VJF-2GLA",
        "Verification code: 7KQ2-M9XD-4HTR-Z8WB-3NPC-6VJF-2GLA",
    ):
        assert fact in text, fact
    assert "VAT ID" not in text and "IBAN" not in text  # a business without them states none


def test_the_printable_view_shows_the_totals_as_the_signed_in_page_does():
    printed = totals(invoice_page(US_INVOICE, ACME), r"(−?)\$([\d,]+)\.(\d\d)")
    assert printed == totals(invoice_page(US_INVOICE, ACME, printable=False), r"(−?)\$([\d,]+)\.(\d\d)")
    assert printed == [
        ("Subtotal", 88500),
        ("Tax 0% (zero-rated) on $885.00", 0),
        ("Total", 88500),
        ("Credit applied", -50000),
        ("Retainer applied", -10000),
        ("Balance due", 28500),
    ]


def test_the_printable_view_has_no_menu_forms_buttons_or_sections_to_act_in_and_no_empty_heading():
    document = invoice(
        comments=[], dispute={"id": "d1", "status": "open", "raised_at": "2026-11-10T09:00:00+00:00"}
    )  # an open dispute: the signed-in page shows its section
    html = invoice_page(document, ACME)
    page = outline(html)
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"form", "button", "input", "textarea", "select", "nav", "details"}
    text = shown_text(html)
    for absent in ("Forward by email", "Dispute this invoice", "Comments", "Pay now", "Download PDF", "Sign out"):
        assert absent not in text
    assert 'class="printable"' in html  # the header and the development note are left out on screen too
    assert [href for tag, a in page.tags if tag == "a" for href in [a.get("href")]] == ["#main", "/invoices/i2"]
    for name, attributes, words in page.closed:
        if name.startswith("h"):
            assert words, f"an empty {name}"
        else:  # a section says more than its heading
            headings = [w for n, _, w in page.closed if n.startswith("h") and w and w in words]
            assert words and words not in headings, f"section {attributes} holds only its heading"

    screen = invoice_page(document, ACME, printable=False)
    assert "Dispute this invoice" in screen and "Forward by email" in screen and "<form" in screen
    # on paper the signed-in page leaves out the same parts (portal.css hides .screen-only when printing)
    for section in ("forward", "dispute", "comments"):
        assert re.search(rf'<section class="card screen-only" aria-labelledby="{section}">', screen), section
    assert '<p class="actions screen-only">' in screen


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_print_value_is_a_clear_400_that_records_no_view(value):
    c, rpc = client({("billing", "get_workspace"): ACME})
    page = c.simulate_get("/invoices/i2", params={"print": value}, cookies=c.session_cookie)
    assert page.status_code == 400 and "The printable view is not valid." in page.text
    assert "view_invoice" not in [call[1] for call in rpc.calls]


def test_a_german_reader_gets_the_printable_view_in_german_with_the_bank_details_and_tax_notes():
    text = shown_text(invoice_page(german_invoice(), MUSTER, locale="de_DE"))
    for fact in (
        "Rechnung RE-2026-0042",
        "Rechnungssteller Muster Design GmbH Friedrichstraße 10 10117 Berlin",
        "Steuernummer: 29/123/45678 USt-IdNr.: DE136695976",
        "Rechnungsempfänger Kunde AG Klara Kunde Hauptstraße 5 80331 München",
        "USt-IdNr.: DE811569869 Ihre Referenz: BESTELLUNG-7781",
        "Leistungsdatum 15.10.2026",
        "Steuerfrei: Steuerbefreit nach § 4 Nr. 21 UStG",
        "Bitte zahlen Sie 990,00 € bis zum 01.12.2026.",
        "Überweisung an Muster Design GmbH, IBAN DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX, "
        "Verwendungszweck RE-2026-0042.",
        "Prüfcode: 4HTR-7KQ2-Z8WB-M9XD-6VJF-3NPC-2GLA",
    ):
        assert fact in text, fact
    assert "Billed" not in text and "Please pay" not in text


@pytest.mark.parametrize(
    "changes,says,bank",
    [
        ({"status": "paid", "display_status": "paid", "balance": 0}, "Paid in full. Thank you.", False),
        ({"status": "void", "display_status": "void"}, "This invoice is void: nothing is owed.", False),
        ({}, "Please pay", True),
    ],
)
def test_the_bank_details_are_there_only_while_something_is_owed(changes, says, bank):
    text = shown_text(invoice_page(invoice(**changes), MUSTER))
    assert says in text
    assert ("IBAN DE89 3704 0044 0532 0130 00" in text) is bank


class Captured:
    """documents' renderer, keeping the context it would render the PDF from."""

    def get(self, kind, context):
        self.kind, self.context = kind, context
        return b"%PDF", "0" * 64, False


def pdf_text(sqlite_engine, monkeypatch, workspace: dict, document: dict, locale: str) -> str:
    """The text of the invoice's PDF: the business as documents keeps it from billing's workspace event,
    the invoice as billing answers it, rendered by documents' own template."""
    monkeypatch.setenv("PORTAL_URL", PORTAL)
    engine = sqlite_engine("documents")
    with UnitOfWork(engine) as uow:
        doc_handlers.apply_workspace(uow, {**workspace, "version": 1}, NOW)
        uow.commit()
    with UnitOfWork(engine) as uow:
        brand = doc_handlers.branding(uow, workspace["id"])
    renderer = Captured()
    doc_handlers.render_document(renderer, brand, "invoice", document, locale=locale, timezone=document["timezone"])
    return shown_text(pdfmod.render_html(renderer.kind, renderer.context))


@pytest.mark.parametrize(
    "document,workspace,locale",
    [(US_INVOICE, ACME, "en_US"), (german_invoice(), MUSTER, "de_DE")],
    ids=["us", "german"],
)
def test_the_printable_view_and_the_pdf_agree_on_their_face(sqlite_engine, monkeypatch, document, workspace, locale):
    printed = shown_text(invoice_page(document, workspace, locale=locale))
    pdf = pdf_text(sqlite_engine, monkeypatch, workspace, document, locale)
    legal = workspace["settings"]["legal"]
    buyer = document["client"]
    money = lambda amount: flat(Money(amount, document["currency"]).format(locale))  # noqa: E731
    day = lambda iso: format_date(datetime.fromisoformat(iso).date(), "medium", locale=locale)  # noqa: E731
    grouped_iban = " ".join(legal["iban"][i : i + 4] for i in range(0, len(legal["iban"]), 4))
    facts = [
        workspace["name"],
        *workspace["address"].splitlines(),
        workspace["email"],
        workspace["phone"],
        workspace["tax_id"],
        *[value for value in (legal["vat_id"], grouped_iban, legal["bic"]) if value],
        buyer["name"],
        buyer["contact_name"],
        *buyer["address"].splitlines(),
        *[buyer[key] for key in ("tax_id", "vat_id", "buyer_reference") if buyer[key]],
        document["number"],
        day(document["issue_date"]),
        day(document["due_date"]),
        *[
            day(document[key])
            for key in ("supply_date", "service_period_start", "service_period_end")
            if document.get(key)
        ],
        *[line["description"] for line in document["lines"]],
        *[money(line["subtotal"]) for line in document["lines"]],
        money(document["subtotal"]),
        *[money(band["tax"]) for band in document["tax_breakdown"]],
        money(document["total"]),
        money(document["balance"]),
        *[band["exemption_reason"] for band in document["tax_breakdown"] if band.get("exemption_reason")],
        document["notes"],
        document["terms"],
        document["verification_code"],
        f"{PORTAL}/verify/{document['verification_code']}",
    ]
    missing = [
        (fact, "page" if fact not in printed else "pdf") for fact in facts if fact not in printed or fact not in pdf
    ]
    assert not missing
    # the sentences that say how to pay are the same words on both
    number = re.escape(document["number"])
    pay = re.search(r"(Please pay|Bitte zahlen Sie) .+? (by|bis zum) .+?\d{4}\.", printed)
    assert pay and pay.group(0) in pdf
    transfer = re.search(rf"(Bank transfer to|Überweisung an) .+? {number}\.", printed)
    assert (transfer.group(0) in pdf) if legal["iban"] else transfer is None

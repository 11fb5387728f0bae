"""PDF documents: real WeasyPrint renders read back with pypdf, page images kept for review, the
content-hash cache, and the locked-down resource fetcher."""

import base64
import io
import logging
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pypdf import PdfReader

from chassis import signing
from services.documents import handlers as doc_handlers
from services.documents import pdf as pdfmod
from services.documents.storage import FileStorage

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pdf"
BUSINESS = {
    "name": "Acme Studio",
    "address": "1 Market Street\nSpringfield",
    "email": "billing@acme.example",
    "phone": "+1 555 0100",
    "tax_id": "US-1",
    "logo_url": "",
    "brand_color": "#1d4ed8",
    "paper": "A4",
}
CLIENT = {"name": "Demo Client Ltd", "address": "42 Demo Road", "contact_name": "Dana Demo", "tax_id": ""}
LINES = [
    {
        "description": "Website design (hours)",
        "quantity": "10",
        "unit_price": 9500,
        "tax_rate": "0",
        "discount_percent": "10",
        "discount": 9500,
        "subtotal": 85500,
        "tax": 0,
        "total": 85500,
    },
    {
        "description": "Hosting, first month",
        "quantity": "1",
        "unit_price": 2500,
        "tax_rate": "20",
        "discount_percent": "0",
        "discount": 0,
        "subtotal": 2500,
        "tax": 500,
        "total": 3000,
    },
]
INVOICE = {
    "id": "i1",
    "number": "INV-2026-00042",
    "kind": "standard",
    "display_status": "partially_paid",
    "currency": "USD",
    "issue_date": "2026-11-18",
    "due_date": "2026-12-18",
    "lines": LINES,
    "subtotal": 88000,
    "discount_total": 9500,
    "tax_total": 500,
    "tax_breakdown": [
        {"category": "S", "rate": "20", "base": 2500, "tax": 500},
        {"category": "Z", "rate": "0", "base": 85500, "tax": 0},
    ],
    "total": 88500,
    "amount_paid": 25000,
    "amount_credited": 0,
    "balance": 63500,
    "notes": "PO 4471",
    "terms": "",
    "client": CLIENT,
}
DOCUMENTS = {
    "invoice": INVOICE,
    "quote": {
        **INVOICE,
        "number": "QUO-2026-00007",
        "display_status": "accepted",
        "expiry_date": "2026-12-31",
        "accepted_at": "2026-11-20T15:00:00+00:00",
        "accepted_by": "demo@example.com",
        "signature_name": "Dana Demo",
    },
    "credit_note": {
        "id": "c1",
        "number": "CN-2026-00003",
        "currency": "USD",
        "issue_date": "2026-11-11",
        "lines": [{**LINES[1], "description": "Goodwill credit"}],
        "subtotal": 2500,
        "discount_total": 0,
        "tax_total": 500,
        "tax_breakdown": [{"category": "S", "rate": "20", "base": 2500, "tax": 500}],
        "total": 3000,
        "reason": "Late delivery",
        "client": CLIENT,
    },
    "receipt": {
        "id": "pay_1234567890",
        "amount": 25000,
        "currency": "USD",
        "method": "card",
        "reference": "Card ending 4242",
        "received_at": "2026-11-20T15:00:00+00:00",
        "allocations": [{"invoice_id": "i1", "number": "INV-2026-00042", "amount": 25000}],
    },
    "statement": {
        "from": "2026-11-01",
        "to": "2026-11-30",
        "currency": "USD",
        "client": CLIENT,
        "opening_balance": 12000,
        "closing_balance": 75500,
        "entries": [
            {
                "date": "2026-11-18",
                "kind": "invoice",
                "reference": "INV-2026-00042",
                "amount": 88500,
                "balance": 100500,
            },
            {
                "date": "2026-11-20",
                "kind": "payment",
                "reference": "Card ending 4242",
                "amount": 25000,
                "balance": 75500,
            },
        ],
    },
}
EXPECTED_TEXT = {
    "invoice": [
        "INV-2026-00042",
        "Demo Client Ltd",
        "Website design (hours)",
        "$855.00",
        "$885.00",
        "$635.00",
        "Partially paid",
        "Nov 18, 2026",
    ],
    "quote": ["QUO-2026-00007", "Accepted by Dana Demo", "$885.00", "Dec 31, 2026"],
    "credit_note": ["CN-2026-00003", "Goodwill credit", "$30.00", "Late delivery"],
    "receipt": ["$250.00", "INV-2026-00042", "Card ending 4242", "Thank you for your payment."],
    "statement": ["STATEMENT OF ACCOUNT", "$120.00", "$1,005.00", "$755.00", "INV-2026-00042"],
}


def context(kind, locale="en_US", **business):
    return {
        "doc": DOCUMENTS[kind],
        "business": {**BUSINESS, **business},
        "client": CLIENT,
        "locale": locale,
        "timezone": "America/New_York",
        "paper": business.get("paper", "A4"),
    }


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def squeezed(text: str) -> str:
    """Text extraction splits some kerned pairs ("T ax"); compare without spaces."""
    return "".join(text.split()).replace("\xa0", "")


def keep_page_images(name: str, pdf: bytes) -> None:
    """First-page PNGs under test-artifacts/pdf/ for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.pdf").write_bytes(pdf)
    if shutil.which("pdftoppm"):
        subprocess.run(
            [
                "pdftoppm",
                "-r",
                "70",
                "-png",
                "-f",
                "1",
                "-l",
                "1",
                str(ARTIFACTS / f"{name}.pdf"),
                str(ARTIFACTS / name),
            ],
            check=True,
        )


@pytest.mark.parametrize("kind", sorted(DOCUMENTS))
def test_each_document_shows_its_content_formatted_for_the_locale(kind):
    pdf = pdfmod.render_pdf(kind, context(kind))
    assert pdf.startswith(b"%PDF-")
    text = squeezed(text_of(pdf))
    for expected in EXPECTED_TEXT[kind]:
        assert squeezed(expected) in text, (kind, expected)
    keep_page_images(kind, pdf)


def test_german_client_gets_german_labels_dates_and_money():
    pdf = pdfmod.render_pdf("invoice", context("invoice", locale="de_DE"))
    text = squeezed(text_of(pdf))
    for expected in ("RECHNUNG", "Offener Betrag", "885,00", "18.11.2026", "Teilweise bezahlt"):
        assert squeezed(expected) in text, expected
    keep_page_images("invoice-de", pdf)


@pytest.mark.parametrize("locale, label", [("en_US", "Invoice"), ("de_DE", "Rechnung")])
def test_a_credit_note_names_the_invoice_it_credits_and_one_for_none_names_none(locale, label):
    credited = {**DOCUMENTS["credit_note"], "invoice_number": "INV-2026-00042"}
    text = squeezed(text_of(pdfmod.render_pdf("credit_note", {**context("credit_note", locale), "doc": credited})))
    assert squeezed(f"{label} INV-2026-00042") in text
    alone = squeezed(text_of(pdfmod.render_pdf("credit_note", context("credit_note", locale))))
    assert "INV-" not in alone and squeezed("CN-2026-00003") in alone


def test_the_statement_shows_what_is_owed_by_days_past_due_in_the_readers_language():
    aging = {"currency": "EUR", "current": 10000, "days_1_30": 0, "days_31_60": 2550, "days_61_90": 0}
    aging |= {"days_over_90": 70000, "total": 82550}
    statement = {**DOCUMENTS["statement"], "currency": "EUR", "today": "2026-12-01", "aging": aging}
    pdf = pdfmod.render_pdf("statement", {**context("statement", locale="de_DE"), "doc": statement})
    text = squeezed(text_of(pdf))
    for expected in ("Stand 01.12.2026", "Noch nicht fällig", "100,00 €", "25,50 €", "Über 90 Tage", "825,50 €"):
        assert squeezed(expected) in text, expected
    assert squeezed("Owed by days") not in squeezed(text_of(pdfmod.render_pdf("statement", context("statement"))))


@pytest.mark.parametrize(
    "locale, heading, row",
    [("en_US", "Currency Not yet due", "EUR €100.00"), ("de_DE", "Währung Noch nicht fällig", "EUR 100,00 €")],
)
def test_the_statement_s_aging_table_names_its_currency_as_the_statement_page_does(locale, heading, row):
    """A client billed in two currencies gets a statement in each: its owed amounts say which one."""
    aging = {"currency": "EUR", "current": 10000, "days_1_30": 0, "days_31_60": 0, "days_61_90": 0}
    aging |= {"days_over_90": 0, "total": 10000}
    statement = {**DOCUMENTS["statement"], "currency": "EUR", "today": "2026-12-01", "aging": aging}
    text = squeezed(text_of(pdfmod.render_pdf("statement", {**context("statement", locale=locale), "doc": statement})))
    assert squeezed(heading) in text and squeezed(row) in text


def test_letter_paper_by_setting():
    a4 = PdfReader(io.BytesIO(pdfmod.render_pdf("invoice", context("invoice")))).pages[0].mediabox
    letter = PdfReader(io.BytesIO(pdfmod.render_pdf("invoice", context("invoice", paper="Letter")))).pages[0].mediabox
    assert (round(float(a4.width)), round(float(a4.height))) == (595, 842)
    assert (round(float(letter.width)), round(float(letter.height))) == (612, 792)


def test_the_same_data_gives_the_same_document_and_cache_key():
    """The cache and ETag are keyed on the input, not the bytes: WeasyPrint's font subsetting (fontTools)
    may vary a byte between renders in one process, so the pages are compared by their text."""
    first, second = (pdfmod.render_pdf("receipt", context("receipt")) for _ in range(2))
    assert text_of(first) == text_of(second) and text_of(first)
    assert pdfmod.cache_key("receipt", context("receipt")) == pdfmod.cache_key("receipt", context("receipt"))
    assert pdfmod.cache_key("receipt", context("receipt")) != pdfmod.cache_key(
        "receipt", context("receipt", locale="de_DE")
    )


def test_the_second_request_is_served_from_the_cache_and_a_change_renders_again(tmp_path):
    renderer = pdfmod.Renderer(FileStorage(tmp_path), concurrency=1)
    try:
        first, key, rendered = renderer.get("invoice", context("invoice"))
        assert rendered and renderer.renders == 1
        again, same_key, rendered_again = renderer.get("invoice", context("invoice"))
        assert (again, same_key, rendered_again, renderer.renders) == (first, key, False, 1)
        changed = context("invoice")
        changed["doc"] = {**INVOICE, "notes": "PO 4472"}
        _, new_key, rendered_changed = renderer.get("invoice", changed)
        assert rendered_changed and new_key != key and renderer.renders == 2
    finally:
        renderer.close()


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://127.0.0.1:9/logo.png",
        "https://example.com/x.css",
        "file://" + str(pdfmod.ASSETS / ".." / "pdf.py"),
        "ftp://example.com/x",
    ],
)
def test_the_fetcher_refuses_the_network_and_files_outside_the_assets(url):
    with pytest.raises((pdfmod.BlockedResource, ValueError)):
        pdfmod.locked_fetcher().fetch(url)


def test_the_fetcher_serves_the_templates_own_assets_and_data_uris():
    assert b"font-family" in pdfmod.locked_fetcher().fetch((pdfmod.ASSETS / "document.css").as_uri()).read()
    assert pdfmod.locked_fetcher().fetch("data:text/plain;base64,aGk=").read() == b"hi"


def test_a_hostile_template_renders_without_reaching_files_or_network(caplog):
    from weasyprint import HTML

    hostile = """<html><head><link rel="stylesheet" href="http://127.0.0.1:9/evil.css"></head><body>
      <p>Hostile</p><img src="file:///etc/passwd"><img src="http://127.0.0.1:9/track.png">
      <object data="file:///etc/passwd"></object><iframe src="file:///etc/hostname"></iframe></body></html>"""
    with caplog.at_level(logging.WARNING):
        pdf = HTML(
            string=hostile, base_url=pdfmod.ASSETS.as_uri() + "/", url_fetcher=pdfmod.locked_fetcher()
        ).write_pdf()
    text = text_of(pdf)
    assert "Hostile" in text and "root:" not in text
    blocked = [r for r in caplog.records if r.getMessage() == "blocked resource in a document template"]
    assert {r.url for r in blocked} >= {
        "file:///etc/passwd",
        "http://127.0.0.1:9/track.png",
        "http://127.0.0.1:9/evil.css",
    }


# --- cached PDFs fetched by a signed reference (documents' GET /pdf/<reference>) ---

SECRET = b"test-pdf-fetch-secret"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def test_a_reference_round_trips_and_a_forged_or_expired_one_is_refused():
    reference = signing.issue(SECRET, {"k": "ab" * 32, "u": "http://10.0.0.7:9100"}, NOW, timedelta(minutes=1))
    assert signing.check(SECRET, reference, NOW + timedelta(seconds=59)) == {
        "k": "ab" * 32,
        "u": "http://10.0.0.7:9100",
        "exp": int((NOW + timedelta(minutes=1)).timestamp()),
    }
    with pytest.raises(signing.Refused, match="expired"):
        signing.check(SECRET, reference, NOW + timedelta(minutes=1))
    assert signing.read(SECRET, reference)["k"] == "ab" * 32  # the signature alone, whatever the age
    body, signature = reference.split(".")
    other_key = signing.issue(SECRET, {"k": "cd" * 32, "u": "http://10.0.0.7:9100"}, NOW, timedelta(minutes=1))
    for forged in (
        signing.issue(b"another secret", {"k": "ab" * 32}, NOW, timedelta(minutes=1)),
        f"{other_key.split('.')[0]}.{signature}",  # another file under this signature
        f"{body}.{signature[:-2]}AA",
        f"{body}x.{signature}",
    ):
        with pytest.raises(signing.Refused) as refused:
            signing.check(SECRET, forged, NOW)
        assert refused.value.reason in ("forged", "malformed")
    for junk in ("", "no-dot", "a.b.c", None, "x" * 3000):
        with pytest.raises(signing.Refused, match="malformed"):
            signing.check(SECRET, junk, NOW)
    with pytest.raises(signing.Refused):
        signing.check(b"", reference, NOW)  # no secret configured: nothing is accepted


def test_by_reference_the_answer_carries_no_bytes_and_a_cached_pdf_is_not_read(tmp_path):
    storage = FileStorage(tmp_path)
    renderer = pdfmod.Renderer(storage, concurrency=1)
    brand = {**BUSINESS, "locale": "en_US", "timezone": "America/New_York"}
    key = pdfmod.cache_key(
        "invoice",
        {
            "doc": INVOICE,
            "business": brand,
            "client": CLIENT,
            "locale": "en_US",
            "timezone": "America/New_York",
            "paper": "A4",
        },
    )
    storage.put(key, b"%PDF-1.7 cached")
    answer = doc_handlers.render_document(renderer, brand, "invoice", INVOICE, reference=lambda k: f"ref:{k}")
    assert answer == {
        "filename": answer["filename"],
        "content_type": "application/pdf",
        "etag": key[:32],
        "rendered": False,
        "size": len(b"%PDF-1.7 cached"),
        "reference": f"ref:{key}",
        "cache_key": key,  # for documents to record the client's render (popped before the RPC answers)
    }
    assert renderer.renders == 0 and "pdf" not in answer
    inline = doc_handlers.render_document(renderer, brand, "invoice", INVOICE)  # as before: the bytes, base64
    assert base64.b64decode(inline["pdf"]) == b"%PDF-1.7 cached" and inline["etag"] == key[:32]


def test_documents_serves_a_cached_pdf_only_for_a_fresh_reference_it_signed(tmp_path):
    from nameko.testing.services import worker_factory
    from werkzeug.test import EnvironBuilder

    from services.documents.service import DocumentsService, PdfFetch

    storage = FileStorage(tmp_path)
    storage.put("ab" * 32, b"%PDF-1.7 cached")
    fetch = PdfFetch()
    fetch.secret, fetch.base_url = SECRET, "http://127.0.0.1:9104"
    renderer = pdfmod.Renderer(storage, concurrency=1)
    now = [NOW]
    service = worker_factory(DocumentsService, pdf_fetch=fetch, renderer=renderer, clock=lambda: now[0])

    def get(reference):
        request = EnvironBuilder(path=f"/pdf/{reference}").get_request()
        answer = service.http_pdf(request, reference)
        if isinstance(answer, tuple):
            return answer[0], answer[2].encode()
        return answer.status_code, b"".join(answer.response)

    good = fetch.reference("ab" * 32, NOW)
    assert signing.read(SECRET, good)["u"] == "http://127.0.0.1:9104"  # where the gateway fetches it
    assert get(good) == (200, b"%PDF-1.7 cached")
    assert get(fetch.reference("cd" * 32, NOW))[0] == 404  # signed, but not in this process's cache
    assert get(signing.issue(b"guessed", {"k": "ab" * 32}, NOW, timedelta(minutes=1)))[0] == 403
    assert get(good.replace(".", "x.", 1))[0] == 403
    assert get(signing.issue(SECRET, {"k": "../../etc/passwd"}, NOW, timedelta(minutes=1)))[0] == 403
    now[0] = NOW + timedelta(minutes=1)  # a minute later the reference is worth nothing
    assert get(good) == (403, b"refused: expired\n")
    fetch.secret = None  # no secret configured: every reference is refused
    assert get(good)[0] == 403


@pytest.mark.parametrize(
    "status, balance, says, never",
    [
        ("partially_paid", 63500, "Please pay $635.00 by Dec 18, 2026.", "Paid in full"),
        ("paid", 0, "Paid in full. Thank you.", "Please pay"),
        ("void", 0, "This invoice is void: nothing is owed.", "Paid in full"),
    ],
)
def test_the_payment_terms_say_what_is_owed_and_the_bank_details_only_while_it_is(status, balance, says, never):
    ctx = context("invoice", iban="DE89370400440532013000", bic="COBADEFFXXX")
    ctx["doc"] = {**INVOICE, "status": status, "balance": balance}
    text = squeezed(text_of(pdfmod.render_pdf("invoice", ctx)))
    assert squeezed(says) in text and squeezed(never) not in text
    assert (squeezed("IBAN DE89 3704 0044 0532 0130 00") in text) == (balance > 0)


@pytest.mark.parametrize(
    "locale, says",
    [
        ("en_US", "$635.00 was due on Dec 18, 2026. Please pay it now."),
        ("de_DE", "Der Betrag von 635,00 $ war am 18.12.2026 fällig. Bitte zahlen Sie ihn jetzt."),
    ],
)
def test_an_overdue_invoice_says_when_it_was_due_not_to_pay_by_a_day_gone_by(locale, says):
    ctx = context("invoice", locale)
    ctx["doc"] = {**INVOICE, "status": "sent", "display_status": "overdue", "balance": 63500}
    text = squeezed(text_of(pdfmod.render_pdf("invoice", ctx)))
    assert squeezed(says) in text and "Please pay $635.00 by" not in text and "bis zum" not in text


@pytest.mark.parametrize("locale, notes, terms", [("en_US", "Notes", "Terms"), ("de_DE", "Hinweise", "Bedingungen")])
def test_a_quote_prints_its_notes_and_its_terms(locale, notes, terms):
    quote = {**DOCUMENTS["quote"], "terms": "Work starts on acceptance."}
    text = squeezed(text_of(pdfmod.render_pdf("quote", {**context("quote", locale), "doc": quote})))
    assert squeezed(f"{notes.upper()} PO 4471 {terms.upper()} Work starts on acceptance.") in text  # labels in capitals
    bare = squeezed(text_of(pdfmod.render_pdf("quote", context("quote", locale))))
    assert squeezed(f"{notes.upper()} PO 4471") in bare and terms.upper() not in bare


@pytest.mark.parametrize(
    "kind, locale, says, never",
    [
        ("invoice", "de_DE", ["RECHNUNG AN", "Rechnungsdatum"], ["ANGEBOT AN"]),
        ("quote", "de_DE", ["ANGEBOT AN", "Angebotsdatum"], ["RECHNUNG AN", "Rechnungsdatum"]),
        ("credit_note", "de_DE", ["GUTSCHRIFT FÜR", "Datum der Gutschrift"], ["RECHNUNG AN", "Rechnungsdatum"]),
        ("receipt", "de_DE", ["EMPFANGEN VON"], ["RECHNUNG AN", "Rechnungsdatum"]),
        ("statement", "de_DE", ["KONTOAUSZUG FÜR"], ["RECHNUNG AN", "Rechnungsdatum"]),
        ("invoice", "en_US", ["BILL TO", "Issue date"], ["QUOTE FOR"]),
        ("quote", "en_US", ["QUOTE FOR", "Quote date"], ["BILL TO", "Issue date"]),
        ("credit_note", "en_US", ["CREDITED TO", "Credit note date"], ["BILL TO", "Issue date"]),
        ("receipt", "en_US", ["RECEIVED FROM"], ["BILL TO"]),
        ("statement", "en_US", ["STATEMENT FOR"], ["BILL TO"]),
    ],
)
def test_each_document_names_its_client_and_its_date_in_its_own_words(kind, locale, says, never):
    text = squeezed(text_of(pdfmod.render_pdf(kind, context(kind, locale))))
    for label in says:
        assert squeezed(label) in text, (kind, label)
    for label in never:
        assert squeezed(label) not in text, (kind, label)


def test_each_receipt_downloads_under_a_name_of_its_own():
    """Named by the day received, in the client's time zone, and the receipt number it prints."""
    card = "Visa ending 4242"
    first = {
        **DOCUMENTS["receipt"],
        "id": "0a1b2c3d-1111",
        "reference": card,
        "received_at": "2026-12-04T03:30:00+00:00",
    }
    second = {**first, "id": "9f8e7d6c-2222", "received_at": "2026-12-07T16:35:21+00:00"}
    names = [doc_handlers.document_filename("receipt", r, "America/New_York") for r in (first, second)]
    assert names == ["receipt-2026-12-03-0A1B2C3D.pdf", "receipt-2026-12-07-9F8E7D6C.pdf"]
    assert squeezed("Receipt 0A1B2C3D") in squeezed(
        text_of(pdfmod.render_pdf("receipt", {**context("receipt"), "doc": first}))
    )
    assert doc_handlers.document_filename("receipt", first) == "receipt-2026-12-04-0A1B2C3D.pdf"  # UTC without one


def test_the_receipt_email_and_download_carry_that_name_in_the_documents_language(tmp_path):
    renderer = pdfmod.Renderer(FileStorage(tmp_path), concurrency=1)
    receipt = {**DOCUMENTS["receipt"], "id": "5e6f7a8b-3333"}
    try:
        german = doc_handlers.render_document(renderer, BUSINESS, "receipt", receipt, "de_DE", "Europe/Berlin")
        english = doc_handlers.render_document(renderer, BUSINESS, "receipt", receipt, "en_US", "Europe/Berlin")
    finally:
        renderer.close()
    assert german["filename"] == "Quittung-2026-11-20-5E6F7A8B.pdf"
    assert english["filename"] == "receipt-2026-11-20-5E6F7A8B.pdf"


def test_a_statement_downloads_under_a_name_in_its_language():
    period = {"from": "2026-09-07", "to": "2026-12-07"}
    assert doc_handlers.document_filename("statement", period, locale="de_DE") == (
        "Kontoauszug-2026-09-07-bis-2026-12-07.pdf"
    )
    assert doc_handlers.document_filename("statement", period, locale="en_US") == (
        "statement-2026-09-07-to-2026-12-07.pdf"
    )
    assert doc_handlers.document_filename("statement", period) == "statement-2026-09-07-to-2026-12-07.pdf"


@pytest.mark.parametrize(
    "locale, rows",
    [
        ("en_US", ["Tax 20% on $25.00", "Tax 0% (zero-rated) on $15.00", "Exempt from tax on $600.00"]),
        (
            "de_DE",
            ["Umsatzsteuer 20% auf 25,00 $", "Umsatzsteuer 0% (Nullsatz) auf 15,00 $", "Umsatzsteuerfrei auf 600,00 $"],
        ),
    ],
)
def test_a_zero_rated_and_an_exempt_tax_row_read_differently(locale, rows):
    bands = [
        {"category": "S", "rate": "20", "base": 2500, "tax": 500},
        {"category": "Z", "rate": "0", "base": 1500, "tax": 0},
        {"category": "E", "rate": "0", "base": 60000, "tax": 0},
    ]
    invoice = {**INVOICE, "tax_breakdown": bands}
    text = squeezed(text_of(pdfmod.render_pdf("invoice", {**context("invoice", locale), "doc": invoice})))
    for row in rows:
        assert squeezed(row) in text, row
    reverse = {**INVOICE, "tax_breakdown": [{"category": "AE", "rate": "0", "base": 60000, "tax": 0}]}
    text = squeezed(text_of(pdfmod.render_pdf("invoice", {**context("invoice", "en_US"), "doc": reverse})))
    assert squeezed("Reverse charge on $600.00") in text and squeezed("Tax 0%") not in text


PAID_TWICE = {
    **INVOICE,
    "amount_paid": 65000,
    "amount_credited": 0,
    "balance": -1500,
    "payments": [
        {"payment_id": "p1", "amount": 25000, "currency": "USD", "received_at": "2026-12-04T15:00:00+00:00"},
        {"payment_id": "p2", "amount": 40000, "currency": "USD", "received_at": "2026-12-07T15:35:21+00:00"},
    ],
    "credits": [
        {"id": "ca1", "source": "credit_note", "amount": 10000, "currency": "USD"},
        {"id": "ca2", "source": "retainer", "amount": 15000, "currency": "USD"},
    ],
}


@pytest.mark.parametrize(
    "locale, rows",
    [
        (
            "en_US",
            [
                "Paid Dec 4, 2026 −$250.00",
                "Paid Dec 7, 2026 −$400.00",
                "Credit applied −$100.00",
                "Retainer applied −$150.00",
            ],
        ),
        (
            "de_DE",
            [
                "Bezahlt am 04.12.2026 −250,00 $",
                "Bezahlt am 07.12.2026 −400,00 $",
                "Gutschrift verrechnet −100,00 $",
                "Vorschuss verrechnet −150,00 $",
            ],
        ),
    ],
)
def test_the_invoice_pdf_lists_each_payment_with_its_day_and_each_credit_as_the_page_does(locale, rows):
    pdf = pdfmod.render_pdf("invoice", {**context("invoice", locale), "timezone": "Europe/Berlin", "doc": PAID_TWICE})
    text = squeezed(text_of(pdf))
    for row in rows:
        assert squeezed(row) in text, row
    assert "16:35" not in text and "4:35" not in text  # the day only, no time of day on paper
    assert squeezed(rows[-1]) in text[: text.index(squeezed("Balance due" if locale == "en_US" else "Offener Betrag"))]


@pytest.mark.parametrize(
    "locale, expected",
    [
        (
            "en_US",
            [
                "Amount received: $500.00",
                "INV-2026-00004 $400.00",
                "Refunded on Dec 8, 2026, 9:15:00 AM $100.00",
                "Amount received $500.00",
                "Kept after refunds: $400.00",
            ],
        ),
        (
            "de_DE",
            [
                "Erhaltener Betrag: 500,00 $",
                "INV-2026-00004 400,00 $",
                "Erstattet am 08.12.2026, 09:15:00 100,00 $",
                "Nach Erstattungen behalten: 400,00 $",
            ],
        ),
    ],
)
def test_a_receipt_lists_each_refund_and_what_was_kept_so_it_adds_up(locale, expected):
    refunded = {
        **DOCUMENTS["receipt"],
        "amount": 50000,
        "allocations": [{"invoice_id": "i4", "number": "INV-2026-00004", "amount": 40000}],
        "unapplied": 0,
        "refunded": 10000,
        "refunds": [{"id": "re_1", "amount": 10000, "created_at": "2026-12-08T14:15:00+00:00"}],
    }
    pdf = pdfmod.render_pdf("receipt", {**context("receipt", locale), "doc": refunded})
    text = squeezed(text_of(pdf))
    for line in expected:
        assert squeezed(line) in text, line
    keep_page_images(f"receipt-refunded-{locale}", pdf)


def test_a_receipt_without_refunds_says_nothing_of_them_and_shows_money_kept_as_credit():
    overpaid = {**DOCUMENTS["receipt"], "amount": 30000, "unapplied": 5000, "refunds": []}
    text = squeezed(text_of(pdfmod.render_pdf("receipt", {**context("receipt"), "doc": overpaid})))
    assert squeezed("Kept as credit $50.00") in text and squeezed("INV-2026-00042 $250.00") in text
    assert "Refunded" not in text and "Keptafterrefunds" not in text


def test_a_german_statement_words_a_card_refund_and_its_credit_in_german():
    refunds = [
        {"date": "2026-11-21", "kind": "refund", "reference": "Refund of card", "amount": 5000, "balance": 80500}
        | {"about": "refund", "payment": "card"},
        {"date": "2026-11-21", "kind": "credit", "reference": "Credit for refund of card", "amount": 5000}
        | {"balance": 75500, "about": "refund_credit", "payment": "card"},
    ]
    statement = {**DOCUMENTS["statement"], "entries": DOCUMENTS["statement"]["entries"] + refunds}
    text = squeezed(text_of(pdfmod.render_pdf("statement", {**context("statement", "de_DE"), "doc": statement})))
    assert squeezed("Erstattung der Zahlung per Karte") in text
    assert squeezed("Gutschrift für die Erstattung der Zahlung per Karte") in text and "Refund" not in text


@pytest.mark.parametrize(
    "locale, paid, refunded, balance",
    [
        ("en_US", "Paid −$500.00", "Refunded +$100.00", "$100.00"),
        ("de_DE", "Bezahlt −500,00 $", "Erstattet +100,00 $", "100,00 $"),
    ],
)
def test_an_invoice_pdf_shows_a_refunded_payment_as_paid_and_its_refund_apart(locale, paid, refunded, balance):
    invoice = {
        **DOCUMENTS["invoice"],
        "total": 50000,
        "amount_paid": 40000,
        "amount_credited": 0,
        "balance": 10000,
        "refunds": [{"refund_id": "re_1", "payment_id": "pi_1", "amount": 10000, "currency": "USD"}],
    }
    text = squeezed(text_of(pdfmod.render_pdf("invoice", {**context("invoice", locale), "doc": invoice})))
    assert squeezed(paid) in text and squeezed(refunded) in text and squeezed(balance) in text
    assert squeezed("−$400.00") not in text and squeezed("−400,00") not in text


def test_an_invoice_pdf_listing_its_payments_shows_each_as_paid_and_each_refund_on_its_day():
    invoice = {
        **PAID_TWICE,
        "amount_paid": 55000,
        "balance": 8500,
        "payments": [
            PAID_TWICE["payments"][0],
            {**PAID_TWICE["payments"][1], "amount": 30000, "refunded": 10000},
        ],
        "refunds": [
            {
                "refund_id": "re_1",
                "payment_id": "p2",
                "amount": 10000,
                "currency": "USD",
                "refunded_at": "2026-12-08T14:15:00+00:00",
            }
        ],
    }
    pdf = pdfmod.render_pdf("invoice", {**context("invoice", "de_DE"), "timezone": "Europe/Berlin", "doc": invoice})
    text = squeezed(text_of(pdf))
    for row in (
        "Bezahlt am 07.12.2026 −400,00 $",
        "Erstattet am 08.12.2026 +100,00 $",
        "Gutschrift verrechnet −100,00 $",
    ):
        assert squeezed(row) in text, row
    assert squeezed("−300,00 $") not in text  # the payment as the client paid it, not net of its refund


# A card payment of $250.00 and a refund of $50.00 of it that a credit kept the invoice settled by,
# as billing's statement lists them (its references in billing's English).
REFUNDED_STATEMENT = {
    **DOCUMENTS["statement"],
    "closing_balance": 75500,
    "entries": [
        *DOCUMENTS["statement"]["entries"],
        {
            "date": "2026-11-21",
            "kind": "refund",
            "reference": "Refund of Visa ending 4242",
            "amount": 5000,
            "balance": 80500,
            "about": "refund",
            "payment": "Visa ending 4242",
        },
        {
            "date": "2026-11-21",
            "kind": "credit",
            "reference": "Credit for refund of visa ending 4242",
            "amount": 5000,
            "balance": 75500,
            "about": "refund_credit",
            "payment": "Visa ending 4242",
        },
    ],
}


@pytest.mark.parametrize(
    "locale, receipt, statement",
    [
        (
            "en_US",
            ["Reference Card ending 4242"],
            ["Card ending 4242", "Refund of Visa ending 4242", "Credit for the refund of Visa ending 4242"],
        ),
        (
            "de_DE",
            ["Referenz Karte mit Endziffern 4242"],
            [
                "Karte mit Endziffern 4242",
                "Erstattung der Zahlung per Visa mit Endziffern 4242",
                "Gutschrift für die Erstattung der Zahlung per Visa mit Endziffern 4242",
            ],
        ),
    ],
)
def test_the_receipt_and_the_statement_name_the_card_paid_with_in_the_readers_language(locale, receipt, statement):
    receipt_text = squeezed(text_of(pdfmod.render_pdf("receipt", context("receipt", locale))))
    statement_pdf = pdfmod.render_pdf("statement", {**context("statement", locale), "doc": REFUNDED_STATEMENT})
    statement_text = squeezed(text_of(statement_pdf))
    for says in receipt:
        assert squeezed(says) in receipt_text, says
    for says in statement:
        assert squeezed(says) in statement_text, says
    if locale == "de_DE":  # no English wording of billing's left on German paper
        assert "ending" not in receipt_text and "ending" not in statement_text
        assert "Card" not in receipt_text and "Card" not in statement_text
        keep_page_images("statement-refund-de", statement_pdf)


@pytest.mark.parametrize(
    "locale, says",
    [
        ("en_US", ["Method Direct debit", "Reference SEPA Direct Debit ending 3000"]),
        ("de_DE", ["Zahlungsart Lastschrift", "Referenz SEPA-Lastschrift mit Endziffern 3000"]),
    ],
)
def test_a_bank_debit_receipt_names_its_method_in_words_never_by_its_key(locale, says):
    receipt = {**DOCUMENTS["receipt"], "method": "sepa_debit", "reference": "SEPA Direct Debit ending 3000"}
    text = squeezed(text_of(pdfmod.render_pdf("receipt", {**context("receipt", locale), "doc": receipt})))
    for row in says:
        assert squeezed(row) in text, row
    assert "sepa_debit" not in text

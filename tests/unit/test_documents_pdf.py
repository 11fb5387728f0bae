"""PDF documents: real WeasyPrint renders read back with pypdf, page images kept for review, the
content-hash cache, and the locked-down resource fetcher."""
import io
import logging
import shutil
import subprocess
from pathlib import Path

import pytest
from pypdf import PdfReader

from services.documents import pdf as pdfmod
from services.documents.storage import FileStorage

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pdf"
BUSINESS = {"name": "Acme Studio", "address": "1 Market Street\nSpringfield", "email": "billing@acme.example",
            "phone": "+1 555 0100", "tax_id": "US-1", "logo_url": "", "brand_color": "#1d4ed8", "paper": "A4"}
CLIENT = {"name": "Demo Client Ltd", "address": "42 Demo Road", "contact_name": "Dana Demo", "tax_id": ""}
LINES = [
    {"description": "Website design (hours)", "quantity": "10", "unit_price": 9500, "tax_rate": "0",
     "discount_percent": "10", "discount": 9500, "subtotal": 85500, "tax": 0, "total": 85500},
    {"description": "Hosting, first month", "quantity": "1", "unit_price": 2500, "tax_rate": "20",
     "discount_percent": "0", "discount": 0, "subtotal": 2500, "tax": 500, "total": 3000},
]
INVOICE = {"id": "i1", "number": "INV-2026-00042", "kind": "standard", "display_status": "partially_paid",
           "currency": "USD", "issue_date": "2026-11-18", "due_date": "2026-12-18", "lines": LINES,
           "subtotal": 88000, "discount_total": 9500, "tax_total": 500, "total": 88500, "amount_paid": 25000,
           "amount_credited": 0, "balance": 63500, "notes": "PO 4471", "terms": "", "client": CLIENT}
DOCUMENTS = {
    "invoice": INVOICE,
    "quote": {**INVOICE, "number": "QUO-2026-00007", "display_status": "accepted", "expiry_date": "2026-12-31",
              "accepted_at": "2026-11-20T15:00:00+00:00", "accepted_by": "demo@example.com",
              "signature_name": "Dana Demo"},
    "credit_note": {"id": "c1", "number": "CN-2026-00003", "currency": "USD", "issue_date": "2026-11-11",
                    "lines": [{**LINES[1], "description": "Goodwill credit"}], "subtotal": 2500, "discount_total": 0,
                    "tax_total": 500, "total": 3000, "reason": "Late delivery", "client": CLIENT},
    "receipt": {"id": "pay_1234567890", "amount": 25000, "currency": "USD", "method": "card",
                "reference": "Card ending 4242", "received_at": "2026-11-20T15:00:00+00:00",
                "allocations": [{"invoice_id": "i1", "number": "INV-2026-00042", "amount": 25000}]},
    "statement": {"from": "2026-11-01", "to": "2026-11-30", "currency": "USD", "client": CLIENT,
                  "opening_balance": 12000, "closing_balance": 75500, "entries": [
                      {"date": "2026-11-18", "kind": "invoice", "reference": "INV-2026-00042", "amount": 88500,
                       "balance": 100500},
                      {"date": "2026-11-20", "kind": "payment", "reference": "Card ending 4242", "amount": 25000,
                       "balance": 75500}]},
}
EXPECTED_TEXT = {
    "invoice": ["INV-2026-00042", "Demo Client Ltd", "Website design (hours)", "$855.00", "$885.00", "$635.00",
                "Partially paid", "Nov 18, 2026"],
    "quote": ["QUO-2026-00007", "Accepted by Dana Demo", "$885.00", "Dec 31, 2026"],
    "credit_note": ["CN-2026-00003", "Goodwill credit", "$30.00", "Late delivery"],
    "receipt": ["$250.00", "INV-2026-00042", "Card ending 4242", "Thank you for your payment."],
    "statement": ["STATEMENT OF ACCOUNT", "$120.00", "$1,005.00", "$755.00", "INV-2026-00042"],
}


def context(kind, locale="en_US", **business):
    return {"doc": DOCUMENTS[kind], "business": {**BUSINESS, **business}, "client": CLIENT, "locale": locale,
            "timezone": "America/New_York", "paper": business.get("paper", "A4")}


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
        subprocess.run(["pdftoppm", "-r", "70", "-png", "-f", "1", "-l", "1", str(ARTIFACTS / f"{name}.pdf"),
                        str(ARTIFACTS / name)], check=True)


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
    assert pdfmod.cache_key("receipt", context("receipt")) != pdfmod.cache_key("receipt", context("receipt", locale="de_DE"))


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


@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://127.0.0.1:9/logo.png", "https://example.com/x.css",
                                 "file://" + str(pdfmod.ASSETS / ".." / "pdf.py"), "ftp://example.com/x"])
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
        pdf = HTML(string=hostile, base_url=pdfmod.ASSETS.as_uri() + "/", url_fetcher=pdfmod.locked_fetcher()).write_pdf()
    text = text_of(pdf)
    assert "Hostile" in text and "root:" not in text
    blocked = [r for r in caplog.records if r.getMessage() == "blocked resource in a document template"]
    assert {r.url for r in blocked} >= {"file:///etc/passwd", "http://127.0.0.1:9/track.png",
                                        "http://127.0.0.1:9/evil.css"}

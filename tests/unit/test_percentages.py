"""A rate reads as its reader writes one, on the pages and the PDFs alike: 19% in English, 19 % in German
(CLDR's pattern, with a no-break space), every decimal kept."""

import pytest

from chassis.i18n import percent
from services.documents import pdf as pdfmod
from tests.unit.test_documents_pdf import context
from tests.unit.test_gateway import SESSION, WORKSPACE, client
from tests.unit.test_invoice_pages import invoice


@pytest.mark.parametrize(
    "rate, locale, written",
    [
        ("19", "en_US", "19%"),
        ("19", "de_DE", "19\xa0%"),
        ("7.5", "de_DE", "7,5\xa0%"),
        ("12.345", "en_US", "12.345%"),
        ("19.00", "en_US", "19%"),
        (0, "de_DE", "0\xa0%"),
    ],
)
def test_a_rate_is_written_the_readers_way(rate, locale, written):
    assert percent(rate, locale) == written


@pytest.mark.parametrize("locale, discount, tax", [("en_US", "−10%", "20%"), ("de_DE", "−10\xa0%", "20\xa0%")])
def test_the_invoice_pdf_and_page_write_a_discount_and_a_tax_rate_alike(locale, discount, tax):
    document = context("invoice", locale)  # its lines: a 10% discount, a 20% tax rate
    html = pdfmod.render_html("invoice", document)
    assert discount in html and tax in html
    lines = {"lines": document["doc"]["lines"], "tax_breakdown": [{"rate": "20", "base": 2500, "tax": 500}]}
    c, _ = client(
        {
            ("billing", "view_invoice"): {"invoice": invoice(locale=locale, **lines), "comments": []},
            ("billing", "get_workspace"): WORKSPACE,
        },
        session={**SESSION, "locale": locale},
    )
    page = c.simulate_get("/invoices/i2", cookies=c.session_cookie)
    assert page.status_code == 200
    assert f">{discount}</td>" in page.text and f">{tax}</td>" in page.text

"""EN 16931 e-invoices: CII XML checked by the Factur-X EN 16931 XSD and the official Schematron
rules (CEN's EN 16931 rules, and KoSIT's for XRechnung) run with Saxon, invoices generated from
billing's own arithmetic, and Factur-X PDF/A-3 files read back with pypdf."""

import io
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal

import facturx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pypdf import PdfReader

from services.billing import domain
from services.documents import pdf as pdfmod
from services.documents.einvoice import cii_xml
from services.documents.einvoice.cii import NS, split_address
from services.documents.einvoice.pdfa import check_pdfa3, embedded_files
from services.documents.einvoice.validate import validate, validate_report

PROFILES = ("en16931", "xrechnung")
BUSINESS = {
    "name": "Muster Design GmbH",
    "address": "Friedrichstraße 100\nDE-10117 Berlin",
    "country": "DE",
    "email": "rechnung@muster-design.example",
    "phone": "+49 30 1234567",
    "vat_id": "DE136695976",
    "tax_id": "30/123/45678",
    "iban": "DE89370400440532013000",
    "bic": "COBADEFFXXX",
    "einvoice_profile": "en16931",
}
CLIENT_DE = {
    "name": "Kunde AG",
    "address": "Kundenweg 5\n80331 München",
    "country": "DE",
    "vat_id": "DE123456789",
    "tax_id": "",
    "contact_name": "Eva Einkauf",
    "email": "eingangsrechnungen@kunde.example",
}
CLIENT_FR = {
    "name": "Client SARL",
    "address": "12 rue de la Paix\nFR-75002 Paris",
    "country": "FR",
    "vat_id": "FR40303265045",
    "tax_id": "",
    "contact_name": "Claire Compta",
    "email": "factures@client.example",
}
EXEMPTION = "Steuerfrei nach § 4 Nr. 21 UStG"
REVERSE_CHARGE = "Steuerschuldnerschaft des Leistungsempfängers (Reverse charge)"


def line(description, quantity, unit_price, rate="0", category=None, discount_percent="0"):
    return domain.Line(
        description, Decimal(quantity), unit_price, Decimal(rate), Decimal(discount_percent), category or ""
    ).as_dict()


def breakdown(lines, reasons=None):
    """One row per (category, rate): base = the lines' net amounts, tax rounded once (half even)."""
    bases = defaultdict(int)
    for item in lines:
        bases[(item["tax_category"], Decimal(item["tax_rate"]).normalize())] += item["subtotal"]
    return [
        {
            "category": category,
            "rate": format(rate, "f"),
            "base": base,
            "tax": int((base * rate / 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)),
            "exemption_reason": (reasons or {}).get(category, ""),
        }
        for (category, rate), base in sorted(bases.items(), key=lambda item: (-item[0][1], item[0][0]))
    ]


def invoice(lines, client=CLIENT_DE, paid=0, credited=0, reasons=None, **extra):
    rows = breakdown(lines, reasons)
    subtotal = sum(item["subtotal"] for item in lines)
    tax = sum(row["tax"] for row in rows)
    total = subtotal + tax
    return {
        "id": "i1",
        "number": "RE-2026-00042",
        "kind": "standard",
        "display_status": "partially_paid" if paid or credited else "sent",
        "currency": "EUR",
        "issue_date": "2026-11-30",
        "due_date": "2026-12-14",
        "payment_terms_days": 14,
        "service_period": {"start": "2026-11-01", "end": "2026-11-30"},
        "supply_date": None,
        "buyer_reference": "04011000-12345-03",
        "tax_exemption_reason": "",
        "lines": lines,
        "subtotal": subtotal,
        "discount_total": sum(item["discount"] for item in lines),
        "tax_total": tax,
        "tax_breakdown": rows,
        "total": total,
        "amount_paid": paid,
        "amount_credited": credited,
        "balance": domain.balance(total, paid, credited),
        "notes": "Vielen Dank für Ihren Auftrag.",
        "terms": "",
        "client": client,
        **extra,
    }


MIXED = invoice(
    [
        line("Webdesign (Stunden)", "10", 9500, "19", "S", discount_percent="10"),
        line("Fachbuch", "2", 2490, "7", "S"),
        line("Hosting 1/3", "1.5", 3333, "19", "S"),
        line("Ausfuhrlieferung", "1", 12000, "0", "Z"),
        line("Schulung", "3", 4000, "0", "E"),
    ],
    paid=10000,
    credited=2500,
    reasons={"E": EXEMPTION},
)
REVERSE = invoice(
    [line("Consulting (days)", "4", 80000, "0", "AE"), line("Travel costs", "1", 35050, "0", "AE")],
    client=CLIENT_FR,
    reasons={"AE": REVERSE_CHARGE},
    number="RE-2026-00043",
    service_period=None,
    supply_date="2026-11-15",
)
CREDIT_NOTE = {
    "id": "c1",
    "number": "GS-2026-00003",
    "currency": "EUR",
    "issue_date": "2026-12-02",
    "lines": [line("Gutschrift Webdesign", "2", 9500, "19", "S")],
    "subtotal": 19000,
    "discount_total": 0,
    "tax_total": 3610,
    "tax_breakdown": [{"category": "S", "rate": "19", "base": 19000, "tax": 3610, "exemption_reason": ""}],
    "total": 22610,
    "reason": "Zwei Stunden zu viel berechnet",
    "notes": "",
    "invoice_number": "RE-2026-00042",
    "buyer_reference": "04011000-12345-03",
    "service_period": None,
    "supply_date": None,
    "tax_exemption_reason": "",
    "client": CLIENT_DE,
}


def business(profile):
    return {**BUSINESS, "einvoice_profile": profile}


def amount(xml: bytes, name: str) -> str:
    return etree.fromstring(xml).findtext(
        f".//ram:SpecifiedTradeSettlementHeaderMonetarySummation/ram:{name}", namespaces=NS
    )


def major(minor: int) -> str:
    return f"{Decimal(minor) / 100:.2f}"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("doc", [MIXED, REVERSE], ids=["S19-S7-Z-E", "reverse-charge-AE"])
def test_invoices_pass_the_xsd_and_the_official_rules_without_warnings(doc, profile):
    xml = cii_xml("invoice", doc, business(profile))
    report = validate_report(xml, profile)
    assert report.fatal == []
    assert report.warnings == []


@pytest.mark.parametrize("profile", PROFILES)
def test_a_credit_note_is_type_381_and_refers_to_the_invoice(profile):
    xml = cii_xml("credit_note", CREDIT_NOTE, business(profile))
    assert validate(xml, profile) == []
    root = etree.fromstring(xml)
    assert root.findtext("rsm:ExchangedDocument/ram:TypeCode", namespaces=NS) == "381"
    assert root.findtext(".//ram:InvoiceReferencedDocument/ram:IssuerAssignedID", namespaces=NS) == "RE-2026-00042"
    assert amount(xml, "DuePayableAmount") == "226.10"


def test_characters_xml_cannot_hold_are_left_out_not_a_failure():
    typed = {**MIXED, "client": {**MIXED["client"], "name": "Kunde\x00 AG\x1b"}, "notes": "Bitte\x0b zahlen"}
    xml = cii_xml("invoice", typed, BUSINESS)
    root = etree.fromstring(xml)
    assert root.findtext(".//ram:BuyerTradeParty/ram:Name", namespaces=NS) == "Kunde AG"
    assert validate(xml, "en16931") == []


def test_the_xml_totals_are_the_documents_totals():
    xml = cii_xml("invoice", MIXED, BUSINESS)
    assert amount(xml, "LineTotalAmount") == major(MIXED["subtotal"])
    assert amount(xml, "TaxBasisTotalAmount") == major(MIXED["subtotal"])
    assert amount(xml, "TaxTotalAmount") == major(MIXED["tax_total"])
    assert amount(xml, "GrandTotalAmount") == major(MIXED["total"])
    assert amount(xml, "TotalPrepaidAmount") == major(12500)
    assert amount(xml, "DuePayableAmount") == major(MIXED["balance"])
    root = etree.fromstring(xml)
    rows = [
        (
            tax.findtext("ram:CategoryCode", namespaces=NS),
            tax.findtext("ram:RateApplicablePercent", namespaces=NS),
            tax.findtext("ram:BasisAmount", namespaces=NS),
            tax.findtext("ram:CalculatedAmount", namespaces=NS),
            tax.findtext("ram:ExemptionReason", namespaces=NS),
        )
        for tax in root.iterfind(".//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=NS)
    ]
    assert rows == [
        (row["category"], row["rate"], major(row["base"]), major(row["tax"]), row["exemption_reason"] or None)
        for row in MIXED["tax_breakdown"]
    ]
    assert root.findtext(".//ram:PayeePartyCreditorFinancialAccount/ram:IBANID", namespaces=NS) == BUSINESS["iban"]
    guideline = root.findtext(".//ram:GuidelineSpecifiedDocumentContextParameter/ram:ID", namespaces=NS)
    assert guideline == "urn:cen.eu:en16931:2017"


def test_a_wrong_tax_total_is_fatal():
    xml = cii_xml("invoice", MIXED, BUSINESS)
    right = f'<ram:TaxTotalAmount currencyID="EUR">{major(MIXED["tax_total"])}</ram:TaxTotalAmount>'.encode()
    wrong = f'<ram:TaxTotalAmount currencyID="EUR">{major(MIXED["tax_total"] + 1)}</ram:TaxTotalAmount>'.encode()
    assert right in xml
    failures = validate(xml.replace(right, wrong), "en16931")
    assert any("[BR-CO-14]" in failure for failure in failures)
    assert any("[BR-CO-15]" in failure for failure in failures)


def test_xrechnung_rules_run_only_for_the_xrechnung_profile():
    xml = cii_xml("invoice", {**MIXED, "buyer_reference": ""}, business("xrechnung"))
    assert any("[BR-DE-15]" in failure for failure in validate(xml, "xrechnung"))
    plain = cii_xml("invoice", {**MIXED, "buyer_reference": ""}, BUSINESS)
    assert validate(plain, "en16931") == []


def test_reverse_charge_without_the_buyers_vat_id_is_fatal():
    xml = cii_xml("invoice", {**REVERSE, "client": {**CLIENT_FR, "vat_id": ""}}, BUSINESS)
    assert any("[BR-AE-" in failure for failure in validate(xml, "en16931"))


def test_schema_errors_are_reported_before_the_rules():
    xml = cii_xml("invoice", MIXED, BUSINESS).replace(b"<ram:TypeCode>380</ram:TypeCode>", b"")
    failures = validate(xml, "en16931")
    assert failures and all(failure.startswith("XSD") for failure in failures)


def test_addresses_split_into_postcode_city_and_country():
    assert split_address("Kundenweg 5\n80331 München", "") == {
        "lines": ["Kundenweg 5"],
        "postcode": "80331",
        "city": "München",
        "country": "",
    }
    assert split_address("A\nB\nC\nD\nDE-10115 Berlin", "")["lines"] == ["A", "B", "C, D"]
    assert split_address("A\nDE-10115 Berlin", "")["country"] == "DE"
    assert split_address("1 Market Street\nSpringfield", "US")["city"] == "Springfield"


DOMESTIC = [("19", "S"), ("7", "S"), ("0", "Z"), ("0", "E")]
REVERSE_CHARGE_ONLY = [("0", "AE")]


@st.composite
def documents(draw):
    """A domestic invoice mixing S 19 %, S 7 %, Z and E lines, or a reverse-charge one to an EU
    buyer; or a credit note. Totalled by billing's own rules; payments may exceed the total."""
    kind = draw(st.sampled_from(["invoice", "invoice", "credit_note"]))
    kinds, client = draw(st.sampled_from([(DOMESTIC, CLIENT_DE), (REVERSE_CHARGE_ONLY, CLIENT_FR)]))
    lines = []
    for index in range(draw(st.integers(1, 6))):
        rate, category = draw(st.sampled_from(kinds))
        lines.append(
            domain.Line(
                f"Item {index + 1}",
                draw(st.decimals(min_value="0.0001", max_value="1000", places=4)),
                draw(st.integers(0, 2_500_000)),
                Decimal(rate),
                draw(st.sampled_from([Decimal(0), Decimal(5), Decimal("12.5"), Decimal("33.3333"), Decimal(100)])),
                category,
            )
        )
    totals = domain.Totals.of(lines)
    paid = draw(st.integers(0, totals.total + 5000))
    credited = draw(st.integers(0, max(totals.total - paid, 0)))
    reasons = {"E": EXEMPTION, "AE": REVERSE_CHARGE}
    doc = invoice([item.as_dict() for item in lines], client, paid=paid, credited=credited, reasons=reasons)
    if kind == "credit_note":
        for key in ("due_date", "payment_terms_days", "amount_paid", "amount_credited", "balance"):
            doc.pop(key)
        doc["invoice_number"] = draw(st.sampled_from(["", "RE-2026-00041"]))
    return kind, doc, totals, draw(st.sampled_from(PROFILES))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_documents_totalled_by_billing_pass_the_official_rules(case):
    kind, doc, totals, profile = case
    assert (doc["subtotal"], doc["tax_total"], doc["total"]) == (totals.subtotal, totals.tax, totals.total)
    xml = cii_xml(kind, doc, business(profile))
    assert validate(xml, profile) == []
    assert amount(xml, "LineTotalAmount") == major(totals.subtotal)
    assert amount(xml, "TaxTotalAmount") == major(totals.tax)
    assert amount(xml, "GrandTotalAmount") == major(totals.total)
    assert amount(xml, "DuePayableAmount") == major(doc.get("balance", totals.total))


def pdf_context(doc, profile="en16931"):
    return {
        "doc": doc,
        "business": {**business(profile), "logo_url": "", "brand_color": "#1d4ed8", "paper": "A4"},
        "client": doc["client"],
        "locale": "en_US",
        "timezone": "Europe/Berlin",
        "paper": "A4",
    }


def squeezed(pdf: bytes) -> str:
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return "".join(text.split()).replace("\xa0", "")


def test_a_factur_x_pdf_is_pdfa3_with_the_xml_embedded_and_still_shows_the_invoice():
    xml = cii_xml("invoice", MIXED, BUSINESS)
    pdf = pdfmod.render_pdf("invoice", pdf_context(MIXED), einvoice_xml=xml)
    assert check_pdfa3(pdf, xml) == []
    filename, read_back = facturx.get_xml_from_pdf(pdf, check_xsd=True)
    assert (filename, read_back) == ("factur-x.xml", xml)
    text = squeezed(pdf)
    assert MIXED["number"] in text
    assert f"€{Decimal(MIXED['balance']) / 100:,.2f}" in text
    # The same XML gives the same bytes: the PDF cache can key on the content.
    assert pdfmod.render_pdf("invoice", pdf_context(MIXED), einvoice_xml=xml) == pdf


def test_the_xml_can_travel_in_the_context_to_a_render_worker():
    xml = cii_xml("invoice", REVERSE, business("xrechnung"))
    pdf = pdfmod.render_pdf("invoice", {**pdf_context(REVERSE, "xrechnung"), "einvoice_xml": xml.decode()})
    assert check_pdfa3(pdf, xml) == []
    assert embedded_files(pdf) == {"xrechnung.xml": xml}


def test_plain_pdfs_are_unchanged_and_the_cache_key_follows_the_xml():
    context = pdf_context(MIXED)
    plain = PdfReader(io.BytesIO(pdfmod.render_pdf("invoice", context)))
    assert "/AF" not in plain.trailer["/Root"] and not plain.attachments
    xml = cii_xml("invoice", MIXED, BUSINESS)
    other = cii_xml("invoice", {**MIXED, "notes": "changed"}, BUSINESS)
    keys = {
        pdfmod.cache_key("invoice", context),
        pdfmod.cache_key("invoice", context, xml),
        pdfmod.cache_key("invoice", context, other),
        pdfmod.cache_key("invoice", {**context, "einvoice_xml": xml.decode()}),
    }
    assert len(keys) == 4
    assert pdfmod.cache_key("invoice", context, None) == pdfmod.cache_key("invoice", context)

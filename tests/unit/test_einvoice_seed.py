"""Every invoice of the demo seed's German seller, as billing gives it and documents writes it: an
EN 16931 e-invoice with no fatal rule failure (XSD, CEN's Schematron and, for XRechnung, KoSIT's),
a PDF/A-3 carrying that XML, and the same totals in the API, the XML and on the PDF's face."""

import base64
import io
import re

import pytest
import sqlalchemy as sa
from lxml import etree
from pypdf import PdfReader

from chassis.clock import utcnow
from chassis.db import UnitOfWork
from chassis.scope import SYSTEM, Scope, acting_for
from services.billing import handlers as billing
from services.billing.seed import seed
from services.billing.tables import invoices, workspaces
from services.documents import handlers as documents
from services.documents import pdf as pdfmod
from services.documents.einvoice import pdfa
from services.documents.einvoice.validate import validate

NS = {"ram": "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    from chassis import db as dbmod
    from tests.conftest import ROOT

    folder = tmp_path_factory.mktemp("seed")
    engines = {}
    for service in ("billing", "documents"):
        url = f"sqlite:///{folder / (service + '.sqlite3')}"
        dbmod.upgrade(url, ROOT / "services" / service / "migrations")
        engines[service] = dbmod.make_engine(url)
    assert seed(engines["billing"])
    with acting_for(SYSTEM), UnitOfWork(engines["billing"]) as uow:
        sellers = [
            row.id
            for row in uow.execute(sa.select(workspaces)).all()
            if (row.settings or {}).get("legal", {}).get("vat_id")
        ]
        numbers = {
            ws: uow.execute(sa.select(invoices.c.id).where(invoices.c.workspace_id == ws)).scalars().all()
            for ws in sellers
        }
    documents_of = {}
    for ws, ids in numbers.items():
        with acting_for(Scope(ws)), UnitOfWork(engines["billing"]) as uow:
            now = utcnow()
            view = billing.get_workspace(uow, now, ws)
            docs = [billing.get_invoice(uow, now, ws, invoice_id) for invoice_id in ids]
        with acting_for(Scope(ws)), UnitOfWork(engines["documents"]) as uow:
            documents.apply_workspace(uow, view, now)
            uow.commit()
            brand = documents.branding(uow, ws)
        documents_of[ws] = (brand, docs)
    return documents_of


def amounts(xml: bytes) -> dict:
    root = etree.fromstring(xml)
    summation = root.find(".//ram:SpecifiedTradeSettlementHeaderMonetarySummation", NS)

    def minor(tag: str) -> int:
        return round(float(summation.find(f"ram:{tag}", NS).text) * 100)

    return {
        "subtotal": minor("LineTotalAmount"),
        "tax_total": minor("TaxTotalAmount"),
        "total": minor("GrandTotalAmount"),
        "balance": minor("DuePayableAmount"),
    }


def test_the_seed_has_a_german_seller_with_every_vat_category(seeded):
    [(brand, docs)] = seeded.values()
    assert (brand["country"], brand["vat_id"], brand["iban"]) == ("DE", "DE136695976", "DE89370400440532013000")
    categories = {line["tax_category"] for doc in docs for line in doc["lines"]}
    assert categories == {"S", "Z", "E", "AE"}


def test_every_invoice_of_the_seed_is_a_valid_einvoice_with_the_apis_totals(seeded):
    for brand, docs in seeded.values():
        for doc in docs:
            xml = documents.einvoice(brand, "invoice", doc)["xml"].encode()
            assert validate(xml, brand["einvoice_profile"]) == [], doc["number"]
            assert amounts(xml) == {k: doc[k] for k in ("subtotal", "tax_total", "total", "balance")}


def test_the_pdf_carries_the_same_xml_and_prints_the_same_totals(seeded, tmp_path):
    from services.documents.storage import FileStorage

    renderer = pdfmod.Renderer(FileStorage(tmp_path), concurrency=1)
    try:
        for brand, docs in seeded.values():
            for doc in docs:
                answer = documents.render_document(renderer, brand, "invoice", doc, "de_DE", "Europe/Berlin")
                pdf = base64.b64decode(answer["pdf"])
                xml = documents.einvoice(brand, "invoice", doc)["xml"].encode()
                assert pdfa.check_pdfa3(pdf, xml) == [], doc["number"]
                text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
                printed = {re.sub(r"\s", "", m) for m in re.findall(r"[\d.]+,\d\d\s?€", text)}
                for key in ("subtotal", "total", "balance"):
                    euros = f"{doc[key] // 100:,}".replace(",", ".") + f",{doc[key] % 100:02d}€"
                    assert euros in printed, (doc["number"], key, euros, printed)
                assert amounts(xml)["total"] == doc["total"]
    finally:
        renderer.close()

"""What invoice law asks of the data, in billing: VAT categories that agree with their rate, reverse
charge only between two VAT ids, checked VAT ids and IBANs stored compact, service periods in order,
and the legal details on the invoice the documents print."""

import pytest
import sqlalchemy as sa

from chassis.errors import Invalid
from services.billing import handlers as h
from services.billing.tables import invoices, quotes, recurring_invoices
from tests.unit.test_billing_handlers import db, ws  # noqa: F401 (fixtures)

AE = [{"description": "Workshop", "quantity": 1, "unit_price": 120000, "tax_category": "AE"}]
LEGAL = {"country": "DE", "vat_id": "de 136 695 976", "iban": "de89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"}


def count(db, table) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.mark.parametrize(
    "line, field",
    [
        ({"tax_rate": 19, "tax_category": "Z"}, "lines.0.tax_category"),
        ({"tax_rate": 0, "tax_category": "S"}, "lines.0.tax_category"),
        ({"tax_rate": 7, "tax_category": "E"}, "lines.0.tax_category"),
        ({"tax_category": "O"}, "lines.0.tax_category"),
        ({"tax_category": 1}, "lines.0.tax_category"),
    ],
)
def test_a_vat_category_must_agree_with_its_rate(db, ws, line, field):
    ws_id, client = ws
    with pytest.raises(Invalid) as refused:
        db(h.create_invoice, ws_id, {"client_id": client, "lines": [{"description": "x", "unit_price": 100, **line}]})
    assert field in refused.value.fields
    assert count(db, invoices) == 0


def test_reverse_charge_needs_both_vat_ids_on_every_kind_of_document(db, ws):
    ws_id, client = ws
    writes = [
        (h.create_invoice, {"client_id": client, "lines": AE}),
        (h.create_quote, {"client_id": client, "lines": AE}),
        (h.issue_credit_note, {"client_id": client, "lines": AE}),
        (h.create_recurring, {"client_id": client, "frequency": "monthly", "start_date": "2026-12-01", "lines": AE}),
    ]
    for write, data in writes:  # the client has no VAT id
        with pytest.raises(Invalid, match="client's VAT id"):
            db(write, ws_id, data)
    db(h.update_client, ws_id, client, {"country": "FR", "vat_id": "FR 40 303265045"})
    for write, data in writes:  # nor has the workspace
        with pytest.raises(Invalid, match="workspace's VAT id"):
            db(write, ws_id, data)
    assert [count(db, t) for t in (invoices, quotes, recurring_invoices)] == [0, 0, 0]
    db(h.update_workspace, ws_id, {"settings": {"legal": LEGAL}})
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": AE, "send": True})
    assert invoice["tax_breakdown"] == [
        {"category": "AE", "rate": "0", "base": 120000, "tax": 0, "exemption_reason": "Reverse charge"}
    ]
    assert (invoice["client"]["country"], invoice["client"]["vat_id"]) == ("FR", "FR40303265045")
    assert invoice["einvoice"] is True
    recurring = db(writes[3][0], ws_id, writes[3][1])
    assert recurring["lines"][0]["tax_category"] == "AE"  # kept for the invoices it will make


def test_vat_ids_and_bank_details_are_checked_and_stored_compact(db, ws):
    ws_id, client = ws
    saved = db(h.update_workspace, ws_id, {"settings": {"legal": LEGAL}})["settings"]["legal"]
    assert saved == {
        "country": "DE",
        "vat_id": "DE136695976",
        "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX",
        "einvoice_profile": "en16931",
    }
    changed = db(h.update_workspace, ws_id, {"settings": {"legal": {"einvoice_profile": "xrechnung"}}})
    assert changed["settings"]["legal"] == {**saved, "einvoice_profile": "xrechnung"}  # the rest stays
    for wrong in ({"vat_id": "DE136695977"}, {"iban": "DE89370400440532013001"}, {"bic": "COBA"}):
        with pytest.raises(Invalid):
            db(h.update_workspace, ws_id, {"settings": {"legal": wrong}})
    for wrong in ({"vat_id": "DE136695977"}, {"country": "XX"}, {"country": "Germany"}, {"country": "de"}):
        with pytest.raises(Invalid):
            db(h.update_client, ws_id, client, wrong)
    assert db(h.get_workspace, ws_id)["settings"]["legal"] == changed["settings"]["legal"]


def test_the_date_of_supply_or_service_period_and_the_exemption_reason_travel_with_the_invoice(db, ws):
    ws_id, client = ws
    lines = [{"description": "Course", "unit_price": 60000, "tax_category": "E"}]
    with pytest.raises(Invalid):
        db(h.create_invoice, ws_id, {"client_id": client, "lines": lines, "service_period_start": "2026-11-01"})
    with pytest.raises(Invalid):
        db(
            h.create_invoice,
            ws_id,
            {
                "client_id": client,
                "lines": lines,
                "service_period_start": "2026-11-30",
                "service_period_end": "2026-11-01",
            },
        )
    invoice = db(
        h.create_invoice,
        ws_id,
        {
            "client_id": client,
            "lines": lines,
            "service_period_start": "2026-11-01",
            "service_period_end": "2026-11-30",
            "tax_exemption_reason": "§ 4 Nr. 21 UStG",
        },
    )
    assert (invoice["service_period_start"], invoice["service_period_end"]) == ("2026-11-01", "2026-11-30")
    assert invoice["tax_breakdown"] == [
        {"category": "E", "rate": "0", "base": 60000, "tax": 0, "exemption_reason": "§ 4 Nr. 21 UStG"}
    ]
    assert invoice["einvoice"] is False  # this workspace has no VAT id
    edited = db(h.update_invoice, ws_id, invoice["id"], {"supply_date": "2026-11-15", "tax_exemption_reason": None})
    assert (edited["supply_date"], edited["tax_exemption_reason"]) == ("2026-11-15", "")
    assert edited["tax_breakdown"][0]["exemption_reason"] == ""  # the documents print "Exempt from VAT."


def test_a_credit_note_of_a_vat_registered_seller_is_a_valid_einvoice_naming_its_invoice(db, ws, sqlite_engine):
    from chassis.db import UnitOfWork
    from services.documents import handlers as documents
    from services.documents.einvoice.validate import validate
    from tests.unit.test_billing_handlers import NOW

    ws_id, client = ws
    db(h.update_workspace, ws_id, {"address": "Friedrichstraße 10\n10117 Berlin", "settings": {"legal": LEGAL}})
    db(
        h.update_client,
        ws_id,
        client,
        {"country": "DE", "vat_id": "DE129273398", "address": "Hauptstraße 5\n80331 München"},
    )
    taxed = [{"description": "Design", "quantity": 2, "unit_price": 9000, "tax_rate": 19}]
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": taxed, "send": True})
    note = db(h.issue_credit_note, ws_id, {"client_id": client, "invoice_id": invoice["id"], "lines": taxed[:1]})
    assert (note["client"]["vat_id"], note["invoice_number"]) == ("DE129273398", invoice["number"])
    with UnitOfWork(sqlite_engine("documents")) as uow:  # documents' copy of the seller, as its events keep it
        documents.apply_workspace(uow, db(h.get_workspace, ws_id), NOW)
        brand = documents.branding(uow, ws_id)
    xml = documents.einvoice(brand, "credit_note", note)["xml"]
    assert validate(xml.encode(), "en16931") == []
    assert ">381<" in xml and invoice["number"] in xml  # a credit note, referring to the invoice it credits

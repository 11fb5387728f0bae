"""Billing's credit notes as the portal reads them: one credit note whole (what its page and its PDF show),
a client's own credit notes with the credit it has not used yet, both strictly within the client; and
the places the portal names a credit note (an invoice's page, the statement, the verification lookup)
carrying its id so that they can link to it."""

import pytest
import sqlalchemy as sa

from chassis.errors import Invalid, NotFound
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing.tables import credit_notes
from tests.unit.test_billing_handlers import LINE, db, ws  # noqa: F401 (fixtures)

TAXED = [
    {"description": "Returned chairs", "quantity": 2, "unit_price": 5000, "tax_rate": 19},
    {"description": "Late delivery", "quantity": 1, "unit_price": 1000},
]


@pytest.fixture
def two(db, ws):  # noqa: F811
    """The workspace's client with an invoice and two credit notes (one for the invoice), and a second
    client of the same workspace with one of its own."""
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    goodwill = db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 2500, "issue_date": "2026-11-01"})
    returned = db(
        h.issue_credit_note,
        ws_id,
        {"client_id": client, "lines": TAXED, "reason": "Chairs returned", "invoice_id": invoice["id"]},
    )
    other = db(h.create_client, ws_id, {"name": "Client Two"})["id"]
    theirs = db(h.issue_credit_note, ws_id, {"client_id": other, "amount": 700, "reason": "Theirs"})
    return {
        "ws": ws_id,
        "client": client,
        "invoice": invoice,
        "goodwill": goodwill,
        "returned": returned,
        "other": other,
        "theirs": theirs,
    }


def outbox_count(db) -> int:  # noqa: F811
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one()


def test_a_credit_note_read_back_is_what_was_issued_with_its_lines_invoice_and_code(db, two):  # noqa: F811
    note = db(h.get_credit_note, two["ws"], two["returned"]["id"], client_id=two["client"])
    issued = two["returned"]
    # what its PDF is rendered from is the same whether just issued or read back in the portal
    assert {k: v for k, v in note.items() if k not in ("locale", "timezone", "business_name")} == issued
    assert (note["number"], note["reason"], note["currency"]) == (issued["number"], "Chairs returned", "USD")
    assert (note["subtotal"], note["tax_total"], note["total"]) == (11000, 1900, 12900)
    assert [line["description"] for line in note["lines"]] == ["Returned chairs", "Late delivery"]
    assert [(band["rate"], band["base"], band["tax"]) for band in note["tax_breakdown"]] == [
        ("19", 10000, 1900),
        ("0", 1000, 0),
    ]
    assert (note["invoice_id"], note["invoice_number"]) == (two["invoice"]["id"], two["invoice"]["number"])
    assert note["client"]["name"] == "Client One" and note["verification_code"] == issued["verification_code"]
    assert (note["locale"], note["timezone"], note["business_name"]) == ("en_US", "America/New_York", "Acme")
    assert note["created_at"].startswith("2026-11-23T15:00:00")  # UTC


def test_another_clients_credit_note_is_not_found_exactly_as_an_unknown_one(db, two):  # noqa: F811
    answers = []
    for credit_id, client_id in (
        (two["theirs"]["id"], two["client"]),  # the other client's, asked for by this one
        ("00000000-0000-0000-0000-000000000000", two["client"]),  # nobody's
        (two["returned"]["id"], ""),  # a client scope that names no client sees nothing
    ):
        with pytest.raises(NotFound) as refused:
            db(h.get_credit_note, two["ws"], credit_id, client_id=client_id)
        answers.append((refused.value.detail, refused.value.fields))
    assert answers == [("No such credit note.", {})] * 3
    other_ws = db(h.create_workspace, {"name": "Elsewhere", "email": "e@example.com"})["id"]
    with pytest.raises(NotFound):
        db(h.get_credit_note, other_ws, two["returned"]["id"])
    # the business (no client) reads any of its workspace's
    assert db(h.get_credit_note, two["ws"], two["theirs"]["id"])["client_id"] == two["other"]


def test_the_client_is_given_the_credited_invoices_id_only_while_it_can_open_that_invoice(db, two):  # noqa: F811
    db(h.archive_invoice, two["ws"], two["invoice"]["id"])
    mine = db(h.get_credit_note, two["ws"], two["returned"]["id"], client_id=two["client"])
    assert (mine["invoice_id"], mine["invoice_number"]) == (None, two["invoice"]["number"])  # printed, not linked
    listed = db(h.list_client_credit_notes, two["ws"], two["client"])["items"]
    assert [(n["invoice_id"], n["invoice_number"]) for n in listed] == [(None, two["invoice"]["number"]), (None, None)]
    business = db(h.get_credit_note, two["ws"], two["returned"]["id"])
    assert business["invoice_id"] == two["invoice"]["id"]


def test_the_client_lists_its_own_credit_notes_newest_first_with_its_credit_available(db, two):  # noqa: F811
    listed = db(h.list_client_credit_notes, two["ws"], two["client"])
    assert [n["number"] for n in listed["items"]] == [two["returned"]["number"], two["goodwill"]["number"]]
    assert two["theirs"]["number"] not in repr(listed) and "Theirs" not in repr(listed)
    first = listed["items"][0]
    assert first == {
        "id": two["returned"]["id"],
        "number": two["returned"]["number"],
        "currency": "USD",
        "issue_date": "2026-11-23",
        "subtotal": 11000,
        "tax_total": 1900,
        "total": 12900,
        "reason": "Chairs returned",
        "invoice_id": two["invoice"]["id"],
        "invoice_number": two["invoice"]["number"],
        "verification_code": two["returned"]["verification_code"],
        "created_at": first["created_at"],
    }
    assert (listed["total"], listed["limit"], listed["offset"]) == (2, 50, 0)
    assert listed["credit_available"] == {"amount": 12900 + 2500, "currency": "USD"}
    assert listed["client"] == {
        "name": "Client One",
        "currency": "USD",
        "locale": "en_US",
        "timezone": "America/New_York",
    }
    # credit applied to an invoice is taken from the one balance, as the dashboard counts it
    db(h.apply_credit, two["ws"], two["invoice"]["id"], 4000)
    after = db(h.list_client_credit_notes, two["ws"], two["client"])["credit_available"]
    assert after == {"amount": 12900 + 2500 - 4000, "currency": "USD"}
    assert after == db(h.client_dashboard, two["ws"], two["client"])["credit_available"]


def test_the_listing_pages_and_filters_by_invoice(db, two):  # noqa: F811
    page = db(h.list_client_credit_notes, two["ws"], two["client"], {"limit": 1, "offset": 1})
    assert [n["number"] for n in page["items"]] == [two["goodwill"]["number"]] and page["total"] == 2
    for_invoice = db(h.list_client_credit_notes, two["ws"], two["client"], {"invoice_id": two["invoice"]["id"]})
    assert [n["id"] for n in for_invoice["items"]] == [two["returned"]["id"]] and for_invoice["total"] == 1
    # another client's invoice finds none of its credit notes
    their_invoice = db(h.create_invoice, two["ws"], {"client_id": two["other"], "lines": LINE, "send": True})
    db(h.issue_credit_note, two["ws"], {"client_id": two["other"], "amount": 100, "invoice_id": their_invoice["id"]})
    assert db(h.list_client_credit_notes, two["ws"], two["client"], {"invoice_id": their_invoice["id"]})["items"] == []


@pytest.mark.parametrize(
    "client_id, filters, error",
    [
        ("", None, NotFound),  # no client: nothing, never the workspace's credit notes
        ("no-such-client", None, NotFound),
        (None, {"client_id": "x"}, Invalid),  # only the listing's own filters
        (None, {"invoice_id": 5}, Invalid),
        (None, {"invoice_id": ""}, Invalid),
        (None, {"limit": "many"}, Invalid),
        (None, [], Invalid),
    ],
)
def test_a_listing_without_a_client_or_with_bad_filters_is_refused_and_changes_nothing(
    db,  # noqa: F811
    two,
    client_id,
    filters,
    error,
):
    before = outbox_count(db)
    with pytest.raises(error):
        db(h.list_client_credit_notes, two["ws"], two["client"] if client_id is None else client_id, filters)
    assert outbox_count(db) == before


def test_a_client_of_another_workspace_lists_nothing_here(db, two):  # noqa: F811
    other_ws = db(h.create_workspace, {"name": "Elsewhere", "email": "e@example.com"})["id"]
    with pytest.raises(NotFound):
        db(h.list_client_credit_notes, other_ws, two["client"])


def test_the_invoice_page_names_the_credit_notes_issued_for_the_invoice(db, two):  # noqa: F811
    shown = db(h.view_invoice, two["ws"], two["client"], two["invoice"]["id"])
    assert shown["credit_notes"] == [
        {
            "id": two["returned"]["id"],
            "number": two["returned"]["number"],
            "issue_date": "2026-11-23",
            "total": 12900,
            "currency": "USD",
        }
    ]


def test_a_dispute_adjusted_by_a_credit_note_names_it_on_the_invoice(db, ws):  # noqa: F811
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    contact = db(h.get_client, ws_id, client)["contacts"][0]["id"]
    dispute = db(h.raise_invoice_dispute, ws_id, client, contact, "One", invoice["id"], "Too much")
    resolved = db(h.resolve_invoice_dispute, ws_id, dispute["id"], "adjust", {"amount": 3000, "message": "Sorry"})
    shown = db(h.view_invoice, ws_id, client, invoice["id"])
    assert shown["invoice"]["dispute"]["credit_note_id"] == resolved["credit_note_id"]
    assert [n["id"] for n in shown["credit_notes"]] == [resolved["credit_note_id"]]
    note = db(h.get_credit_note, ws_id, resolved["credit_note_id"], client_id=client)
    assert (note["total"], note["reason"], note["invoice_id"]) == (3000, "Sorry", invoice["id"])


def test_the_statement_entry_of_a_credit_note_carries_its_id(db, two):  # noqa: F811
    entries = db(h.statement, two["ws"], two["client"], None, None)["entries"]
    credits = {e["reference"]: e["credit_note_id"] for e in entries if e["kind"] == "credit"}
    assert credits == {
        two["goodwill"]["number"]: two["goodwill"]["id"],
        two["returned"]["number"]: two["returned"]["id"],
    }
    assert {e["credit_note_id"] for e in entries if e["kind"] != "credit"} == {None}


def test_the_verification_lookup_says_whose_document_it_is_for_the_gateway(db, two):  # noqa: F811
    record = db(h.verify_document, two["returned"]["verification_code"])
    assert (record["kind"], record["document_id"], record["client_id"]) == (
        "credit_note",
        two["returned"]["id"],
        two["client"],
    )
    assert "Client One" not in repr(record) and "lines" not in record


def test_reading_a_credit_note_changes_nothing(db, two):  # noqa: F811
    def state():
        with db.engine.connect() as conn:
            return (
                conn.execute(sa.select(credit_notes).order_by(credit_notes.c.id)).all(),
                conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one(),
            )

    before = state()
    db(h.get_credit_note, two["ws"], two["returned"]["id"], client_id=two["client"])
    db(h.list_client_credit_notes, two["ws"], two["client"])
    assert state() == before

"""Verifiable documents: the codes (format, randomness, typing), billing issuing one per document and
answering what proves it, the migration's backfill, the QR code on every kind of PDF read back from a
rendered page image, and the gateway's /verify page and verify_url fields."""

import importlib.util
import io
import re
from collections import Counter

import falcon.testing
import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import Operations
from pypdf import PdfReader

from chassis.errors import NotFound
from clients import verification
from services.billing import handlers as h
from services.billing.tables import verification_codes
from services.documents import handlers as doc_handlers
from services.documents import pdf as pdfmod
from services.gateway.app import GatewayConfig, create_app
from services.gateway.downloads import with_verify_urls
from services.gateway.pages.document_check import Budget
from services.gateway.views import browser_locale
from tests.qr_codes import qr_codes
from tests.unit.conftest import ROOT
from tests.unit.test_billing_handlers import LINE, NOW, db, ws  # noqa: F401 (fixtures)
from tests.unit.test_documents_pdf import BUSINESS, DOCUMENTS
from tests.unit.test_legal_fields import LEGAL

MIGRATION = ROOT / "services" / "billing" / "migrations" / "versions" / "0013_verification_codes.py"
GROUPED = re.compile(r"^[A-Z2-7]{4}(-[A-Z2-7]{4}){6}$")
PORTAL = "https://portal.example.com"


# ---------------------------------------------------------------- the code


def test_a_new_code_is_28_base32_characters_and_140_random_bits():
    codes = [verification.new_code() for _ in range(2000)]
    assert all(len(c) == 28 and set(c) <= set(verification.ALPHABET) for c in codes)
    assert len(set(codes)) == len(codes)
    assert verification.LENGTH * 5 >= 128
    # every position draws from the whole alphabet, about evenly (2000 draws of 32 symbols: ~62 each)
    for position in range(28):
        counts = Counter(c[position] for c in codes)
        assert set(counts) == set(verification.ALPHABET), position
        assert max(counts.values()) < 130, (position, counts.most_common(1))


def test_a_code_is_shown_in_seven_groups_of_four_and_grouping_twice_changes_nothing():
    code = "ABCDEFGHIJKLMNOPQRSTUVWXYZ23"
    assert verification.grouped(code) == "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23"
    assert verification.grouped(verification.grouped(code)) == "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23"
    assert GROUPED.match(verification.grouped(verification.new_code()))
    assert verification.url(PORTAL + "/", code) == PORTAL + "/verify/ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23"


@pytest.mark.parametrize(
    "typed",
    [
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23",
        "abcd-efgh-ijkl-mnop-qrst-uvwx-yz23",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ23",
        " abcd efgh ijkl mnop qrst uvwx yz23 ",
        "A8CD-EFGH-1JKL-MN0P-QRST-UVWX-YZ23",  # 8, 1 and 0 typed for B, I and O
    ],
)
def test_a_typed_code_reads_the_same_in_any_case_spacing_and_lookalike_digits(typed):
    assert verification.parse(typed) == "ABCDEFGHIJKLMNOPQRSTUVWXYZ23"


@pytest.mark.parametrize(
    "typed",
    [
        "",
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ2",  # one short
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ234",  # one too many
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ29",  # 9 is in no code
        "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ2!",
        "ABCD/EFGH-IJKL-MNOP-QRST-UVWX-YZ23",
        "A" * 65,
        None,
        12345,
    ],
)
def test_anything_else_is_no_code(typed):
    assert verification.parse(typed) is None


# ---------------------------------------------------------------- billing


def code_of(db, kind: str, document_id: str) -> str:
    return db(lambda uow, now: h.code_of(uow, kind, document_id))


def codes_in(db):
    with db.engine.connect() as conn:
        return conn.execute(sa.select(verification_codes)).all()


def test_every_invoice_quote_credit_note_and_receipt_gets_its_own_code_when_it_is_created(db, ws):  # noqa: F811
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    quote = db(h.create_quote, ws_id, {"client_id": client, "lines": LINE})
    credit = db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 500, "reason": "Goodwill"})
    payment = db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 4000})
    shown = {
        "invoice": db(h.get_invoice, ws_id, invoice["id"])["verification_code"],
        "quote": db(h.get_quote, ws_id, quote["id"])["verification_code"],
        "credit_note": credit["verification_code"],
        "receipt": db(h.get_payment, ws_id, payment["id"])["verification_code"],
    }
    assert all(GROUPED.match(code) for code in shown.values()), shown
    stored = {(row.document_kind, row.document_id): row for row in codes_in(db)}
    for kind, document_id in (
        ("invoice", invoice["id"]),
        ("quote", quote["id"]),
        ("credit_note", credit["id"]),
        ("receipt", payment["id"]),
    ):
        row = stored[(kind, document_id)]
        assert verification.grouped(row.code) == shown[kind]
        assert (row.workspace_id, row.client_id) == (ws_id, client)
    # listings carry them too, looked up for the whole page
    assert db(h.list_invoices, ws_id, {})["items"][0]["verification_code"] == shown["invoice"]
    assert db(h.list_quotes, ws_id, {})["items"][0]["verification_code"] == shown["quote"]
    assert db(h.list_credit_notes, ws_id)[0]["verification_code"] == shown["credit_note"]
    # a document's code stays what it was: reading or sending again issues none
    db(h.send_invoice, ws_id, invoice["id"])
    assert len(codes_in(db)) == 4


def test_the_lookup_answers_what_proves_the_document_and_nothing_of_the_client(db, ws):  # noqa: F811
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"legal": LEGAL}})
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 4000})
    code = db(h.get_invoice, ws_id, invoice["id"])["verification_code"]

    record = db(h.verify_document, code.lower().replace("-", " "))  # as typed, however typed
    assert record == {
        "code": code,
        "kind": "invoice",
        "workspace_id": ws_id,
        "client_id": client,
        "document_id": invoice["id"],
        "business_name": "Acme",
        "iban": "DE89370400440532013000",
        "bic": "COBADEFFXXX",
        "locale": "en_US",
        "timezone": "America/New_York",
        "number": invoice["number"],
        "date": invoice["issue_date"],
        "due_date": invoice["due_date"],
        "currency": "USD",
        "total": 10000,
        "balance": 6000,
        "status": "partially_paid",
    }
    assert "Client One" not in repr(record) and "lines" not in record


def test_each_kind_answers_its_own_status(db, ws):  # noqa: F811
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    quote = db(h.create_quote, ws_id, {"client_id": client, "lines": LINE, "send": True})
    credit = db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 500})
    draft = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE})

    def status(kind, document_id):
        return db(h.verify_document, code_of(db, kind, document_id))["status"]

    assert status("invoice", invoice["id"]) == "unpaid"
    assert status("invoice", draft["id"]) == "draft"
    assert status("quote", quote["id"]) == "awaiting_answer"
    assert status("credit_note", credit["id"]) == "issued"
    payment = db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 10000})
    assert status("invoice", invoice["id"]) == "paid"
    receipt = db(h.verify_document, code_of(db, "receipt", payment["id"]))
    assert (receipt["status"], receipt["total"], receipt["number"]) == ("received", 10000, payment["id"][:8].upper())
    db(h.accept_quote, ws_id, quote["id"], "one@example.com", signature_name="One")
    assert status("quote", quote["id"]) == "accepted"
    void = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    db(h.void_invoice, ws_id, void["id"])
    assert db(h.verify_document, code_of(db, "invoice", void["id"]))["balance"] == 0


@pytest.mark.parametrize("code", ["AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA", "not a code", "", "9" * 28])
def test_an_unknown_or_malformed_code_is_not_found_and_changes_nothing(db, ws, code):  # noqa: F811
    ws_id, client = ws
    db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    before = codes_in(db)
    with pytest.raises(NotFound):
        db(h.verify_document, code)
    assert codes_in(db) == before


def test_the_migration_gives_every_existing_document_a_code(db, ws):  # noqa: F811
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    quote = db(h.create_quote, ws_id, {"client_id": client, "lines": LINE})
    credit = db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 500})
    payment = db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 4000})
    spec = importlib.util.spec_from_file_location("migration_0013", MIGRATION)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    with db.engine.begin() as conn:  # the database as it was before 0013
        conn.execute(sa.text("DROP TABLE verification_codes"))
        with Operations.context(MigrationContext.configure(conn)):
            migration.upgrade()
    rows = codes_in(db)
    assert sorted((r.document_kind, r.document_id) for r in rows) == sorted(
        [("invoice", invoice["id"]), ("quote", quote["id"]), ("credit_note", credit["id"]), ("receipt", payment["id"])]
    )
    assert all(re.fullmatch("[A-Z2-7]{28}", r.code) and r.client_id == client for r in rows)
    assert len({r.code for r in rows}) == 4
    assert db(h.verify_document, code_of(db, "invoice", invoice["id"]))["number"] == invoice["number"]


# ---------------------------------------------------------------- the PDF


@pytest.mark.parametrize("kind", ["invoice", "quote", "credit_note", "receipt"])
@pytest.mark.parametrize("locale", ["en_US", "de_DE"])
def test_every_kind_of_pdf_carries_its_code_as_text_and_as_a_qr_code_that_opens_the_page(kind, locale, monkeypatch):
    monkeypatch.setenv("PORTAL_URL", PORTAL)
    code = verification.grouped(verification.new_code())
    data = {**DOCUMENTS[kind], "verification_code": code}
    context = verification_context(kind, data, locale)
    pdf = pdfmod.render_pdf(kind, context)
    assert qr_codes(pdf) == [f"{PORTAL}/verify/{code}"]
    text = " ".join(PdfReader(io.BytesIO(pdf)).pages[0].extract_text().split())
    assert code in text
    if locale == "de_DE":
        assert "Prüfcode" in text and "zahlen Sie nicht" in text
    else:
        assert "Verification code" in text and "do not pay" in text


def test_a_code_whose_corner_a_reader_can_take_for_a_micro_qr_code_reads_back_as_its_one_qr_code(monkeypatch):
    """This code's QR code, printed on a quote, holds a corner that zxing-cpp asked for every format
    also reads as a Micro QR code ("9058"): what the tests read back is the document's one code."""
    monkeypatch.setenv("PORTAL_URL", PORTAL)
    code = "SVZ5-WJJ7-EOWS-ZWBA-LUGG-6WHH-K2M4"
    pdf = pdfmod.render_pdf(
        "quote", verification_context("quote", {**DOCUMENTS["quote"], "verification_code": code}, "en_US")
    )
    assert qr_codes(pdf) == [f"{PORTAL}/verify/{code}"]


def verification_context(kind: str, data: dict, locale: str) -> dict:
    """The context documents' render_document builds, taken from it (no renderer is needed for that)."""
    captured = {}

    class Capture:
        def get(self, kind, context):
            captured.update(context)
            return b"%PDF", "0" * 64, True

    doc_handlers.render_document(Capture(), BUSINESS, kind, data, locale, "UTC")
    return captured


def test_a_statement_or_a_document_without_a_code_carries_no_qr_code():
    for kind in ("statement", "invoice"):
        context = verification_context(kind, dict(DOCUMENTS[kind]), "en_US")
        assert "verify" not in context
        assert qr_codes(pdfmod.render_pdf(kind, context)) == []


# ---------------------------------------------------------------- the gateway


class FakeBilling:
    """billing's verify_document over RPC, as the gateway sees it."""

    def __init__(self, records: dict):
        self.records, self.calls = records, []

    def call(self, service, method, *args, **kwargs):
        self.calls.append((service, method, args))
        if (service, method) == ("billing", "verify_document"):
            record = self.records.get(args[0])
            if record is None:
                raise NotFound("No document has this verification code.")
            return record
        if (service, method) == ("billing", "get_workspace"):
            return {"id": args[0], "name": "Muster Design GmbH", "logo_url": "", "version": 1}
        raise AssertionError(f"unexpected call {service}.{method}")


RECORD = {
    "code": "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23",
    "kind": "invoice",
    "workspace_id": "ws-1",
    "business_name": "Muster Design GmbH",
    "iban": "DE89370400440532013000",
    "bic": "COBADEFFXXX",
    "locale": "de_DE",
    "timezone": "Europe/Berlin",
    "number": "RE-2026-00007",
    "date": "2026-11-18",
    "due_date": "2026-12-02",
    "currency": "EUR",
    "total": 107398,
    "balance": 107398,
    "status": "unpaid",
}


@pytest.fixture
def gateway():
    billing = FakeBilling({"ABCDEFGHIJKLMNOPQRSTUVWXYZ23": RECORD})
    app = create_app(billing, billing, GatewayConfig(portal_url=PORTAL, dev=True))
    client = falcon.testing.TestClient(app)
    client.billing = billing
    return client


def test_the_page_shows_the_record_in_the_documents_language_without_signing_in(gateway):
    page = gateway.simulate_get("/verify/abcd-efgh-ijkl-mnop-qrst-uvwx-yz23")
    assert page.status_code == 200
    text = page.text
    for shown in ("Muster Design GmbH", "Rechnung RE-2026-00007", "18.11.2026", "1.073,98\xa0€", "Unbezahlt"):
        assert shown in text, shown
    assert "DE89 3704 0044 0532 0130 00" in text and "COBADEFFXXX" in text
    assert "zahlen Sie nicht" in text  # how to check, and what to do if the paper differs
    assert page.headers["X-Robots-Tag"] == "noindex"
    assert gateway.billing.calls[0] == ("billing", "verify_document", ("ABCDEFGHIJKLMNOPQRSTUVWXYZ23",))


@pytest.mark.parametrize(
    "code, looked_up",
    [("AAAA-AAAA-AAAA-AAAA-AAAA-AAAA-AAAA", True), ("not-a-code", False), ("ABCD" * 20, False)],
)
def test_an_unknown_or_malformed_code_is_a_404_page_that_says_what_to_do(gateway, code, looked_up):
    page = gateway.simulate_get(f"/verify/{code}")
    assert page.status_code == 404
    assert "This document could not be verified" in page.text
    assert "do not pay" in page.text and "channel you already know" in page.text
    assert [c[1] for c in gateway.billing.calls] == (["verify_document"] if looked_up else [])
    german = gateway.simulate_get(f"/verify/{code}", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert german.status_code == 404 and "Dieses Dokument konnte nicht bestätigt werden" in german.text


def test_each_address_may_check_only_so_many_codes_a_minute():
    moments = iter(float(t) for t in range(0, 1000, 1))
    budget = Budget(3, window=60, clock=lambda: next(moments))
    assert [budget.spend("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert budget.spend("10.0.0.2")  # another address has its own
    billing = FakeBilling({})
    app = create_app(billing, billing, GatewayConfig(portal_url=PORTAL, dev=True))
    client = falcon.testing.TestClient(app)
    answers = [client.simulate_get("/verify/not-a-code").status_code for _ in range(31)]
    assert answers == [404] * 30 + [429]


@pytest.mark.parametrize(
    "header, locale",
    [
        ("", "en_US"),
        ("de", "de_DE"),
        ("en-US,en;q=0.9,de;q=0.8", "en_US"),
        ("fr,de;q=0.7", "de_DE"),
        ("de;q=x", "en_US"),
    ],
)
def test_the_404_page_speaks_the_browsers_language(header, locale):
    assert browser_locale(header) == locale


def test_the_apis_put_the_verify_url_beside_each_code():
    one = {"id": "i1", "verification_code": "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23"}
    page = {"items": [dict(one), {"id": "i2", "verification_code": None}], "total": 2}
    assert with_verify_urls(PORTAL, dict(one))["verify_url"] == f"{PORTAL}/verify/ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23"
    assert [i["verify_url"] for i in with_verify_urls(PORTAL, page)["items"]] == [
        f"{PORTAL}/verify/ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23",
        None,
    ]
    assert with_verify_urls(PORTAL, [dict(one)])[0]["verify_url"].endswith("YZ23")
    assert with_verify_urls(PORTAL, {"id": "w1"}) == {"id": "w1"}  # nothing to verify: unchanged


@pytest.mark.parametrize("kind", ["invoice", "quote", "credit_note", "receipt"])
@pytest.mark.parametrize("locale", ["en_US", "de_DE"])
def test_the_address_to_type_and_the_business_phone_are_never_broken_across_lines(kind, locale, monkeypatch):
    monkeypatch.setenv("PORTAL_URL", PORTAL)
    code = verification.grouped(verification.new_code())
    context = verification_context(kind, {**DOCUMENTS[kind], "verification_code": code}, locale)
    context["business"] = {**context["business"], "phone": "+49 30 1234567"}
    lines = PdfReader(io.BytesIO(pdfmod.render_pdf(kind, context))).pages[0].extract_text().splitlines()
    assert any(f"{PORTAL}/verify/{code}" in line for line in lines), lines
    assert any(code in line for line in lines if "/verify/" not in line), lines  # the code alone, whole
    assert any("+49 30 1234567" in line for line in lines), lines

"""No input is ever stored as something else: a null, a boolean, a number, a list or an object sent where
text belongs is refused with a field error (or, where null is documented, clears the field), and never
reaches a column as Python's spelling of it ("None", "True", "[...]", "{...}"). The migrations repair what
was stored that way before."""

from datetime import datetime

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from chassis import db as dbmod
from chassis.errors import Conflict, Invalid
from chassis.fields import display_name
from services.billing import handlers as h
from services.documents import handlers as documents
from tests.unit.conftest import ROOT
from tests.unit.test_billing_handlers import LINE, db, ws  # noqa: F401 - the same fixtures

NOT_TEXT = [None, True, False, 0, 1.5, [], ["a"], {}, {"a": 1}]


def contact(db, ws_id, client_id):
    return db(h.get_client, ws_id, client_id)["contacts"][0]


def test_a_null_phone_from_the_portal_clears_it_and_never_stores_none(db, ws):
    ws_id, client = ws
    me = contact(db, ws_id, client)
    db(h.update_profile, ws_id, client, me["id"], {"name": "Jana", "phone": "+49 30 1234"})
    db(h.update_profile, ws_id, client, me["id"], {"phone": None, "address": None, "company_phone": None})
    stored = db(h.get_client, ws_id, client)
    assert (stored["contacts"][0]["name"], stored["contacts"][0]["phone"]) == ("Jana", "")
    assert (stored["address"], stored["phone"], stored["name"]) == ("", "", "Client One")
    with pytest.raises(Invalid) as refused:
        db(h.update_profile, ws_id, client, me["id"], {"company": None})
    assert refused.value.fields == {"company": "null is not allowed"}


@pytest.mark.parametrize("name", [None, "", "   ", "\t\n"])
def test_the_profile_refuses_an_empty_contact_name_and_changes_nothing(db, ws, name):
    ws_id, client = ws
    me = contact(db, ws_id, client)
    db(h.update_profile, ws_id, client, me["id"], {"name": "Jana"})
    before = db(h.get_client, ws_id, client)
    with pytest.raises(Invalid) as refused:
        db(h.update_profile, ws_id, client, me["id"], {"name": name, "phone": "+49 30 9999"})
    assert (refused.value.detail, refused.value.fields) == ("Enter your name.", {"name": "required"})
    assert db(h.get_client, ws_id, client) == before


@pytest.mark.parametrize("value", [v for v in NOT_TEXT if v is not None])
@pytest.mark.parametrize("field", ["name", "phone", "company", "address", "company_phone"])
def test_the_profile_refuses_what_is_not_text_by_name(db, ws, field, value):
    ws_id, client = ws
    me = contact(db, ws_id, client)
    before = db(h.get_client, ws_id, client)
    with pytest.raises(Invalid) as refused:
        db(h.update_profile, ws_id, client, me["id"], {field: value})
    assert field in refused.value.fields
    assert db(h.get_client, ws_id, client) == before


@pytest.mark.parametrize("value", NOT_TEXT)
def test_contacts_and_clients_refuse_values_that_are_not_text(db, ws, value):
    ws_id, client = ws
    for field in ("name", "phone", "email"):
        with pytest.raises(Invalid) as refused:
            db(h.add_contact, ws_id, client, {"email": "new@example.com", field: value})
        assert list(refused.value.fields) == [field]
    for field in ("is_primary", "portal_access"):
        if not isinstance(value, bool):
            with pytest.raises(Invalid):
                db(h.update_contact, ws_id, contact(db, ws_id, client)["id"], {field: value})
    for field in ("name", "address", "phone", "tax_id", "currency", "locale", "timezone"):
        with pytest.raises(Invalid):
            db(h.create_client, ws_id, {"name": "New", field: value} if field != "name" else {"name": value})
        if value is not None or field in ("name", "currency", "locale", "timezone"):
            with pytest.raises(Invalid):
                db(h.update_client, ws_id, client, {field: value})
    for field in ("name", "email", "phone", "address", "tax_id", "logo_url", "brand_color"):
        if value is not None or field in ("name", "email", "brand_color"):
            with pytest.raises(Invalid):
                db(h.update_workspace, ws_id, {field: value})


def test_null_clears_a_contacts_locale_and_text_but_nothing_else(db, ws):
    ws_id, client = ws
    me = contact(db, ws_id, client)
    db(h.update_contact, ws_id, me["id"], {"locale": "de_DE", "name": "Jana", "phone": "+1 212 555 0100"})
    changed = db(h.update_contact, ws_id, me["id"], {"locale": None, "name": None, "phone": None})
    assert (changed["locale"], changed["name"], changed["phone"]) == (None, "", "")
    for field in ("email", "is_primary", "portal_access"):
        with pytest.raises(Invalid):
            db(h.update_contact, ws_id, me["id"], {field: None})
    ws_row = db(h.update_workspace, ws_id, {"phone": "1", "tax_id": "X"})
    ws_row = db(h.update_workspace, ws_id, {"phone": None, "tax_id": None})
    assert (ws_row["phone"], ws_row["tax_id"]) == ("", "")


def test_documents_and_schedules_store_text_as_sent(db, ws):
    ws_id, client = ws
    for field in ("notes", "terms"):
        for value in NOT_TEXT:
            with pytest.raises(Invalid):
                db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, field: value})
    draft = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "notes": "n", "terms": "t"})
    cleared = db(h.update_invoice, ws_id, draft["id"], {"notes": None, "terms": None})
    assert (cleared["notes"], cleared["terms"]) == ("", "")
    with pytest.raises(Invalid):
        db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": "yes"})
    recurring = {"client_id": client, "frequency": "monthly", "start_date": "2026-12-01", "lines": LINE}
    for field, value in (
        ("notes", None),
        ("notes", 5),
        ("autopay", "false"),
        ("active", 1),
        ("interval", 0),
        ("frequency", None),
    ):
        with pytest.raises(Invalid):
            db(h.create_recurring, ws_id, {**recurring, field: value})
    made = db(h.create_recurring, ws_id, {**recurring, "notes": "monthly care"})
    assert db(h.update_recurring, ws_id, made["id"], {"notes": None})["notes"] == ""
    with pytest.raises(Conflict):  # the schedule's stored start is not the caller's to contradict
        db(h.update_recurring, ws_id, made["id"], {"end_date": "2026-11-01"})


def test_comments_reviews_and_quotes_refuse_what_is_not_text(db, ws):
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    for value in NOT_TEXT:
        with pytest.raises(Invalid):
            db(h.add_comment, ws_id, "invoice", invoice["id"], "business", "Acme", value)
        with pytest.raises(Invalid):
            db(h.add_comment, ws_id, "invoice", invoice["id"], "business", value, "a comment")
    quote = db(h.create_quote, ws_id, {"client_id": client, "lines": LINE, "send": True})
    for value in [v for v in NOT_TEXT if v is not None]:
        with pytest.raises(Invalid):
            db(h.accept_quote, ws_id, quote["id"], "one@example.com", "", value)
        with pytest.raises(Invalid):
            db(h.reject_quote, ws_id, quote["id"], "one@example.com", value)
    accepted = db(h.accept_quote, ws_id, quote["id"], "one@example.com", "", "Jana Novak")
    assert accepted["status"] == "accepted"


def test_payments_and_credit_notes_keep_references_as_sent(db, ws):
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    for field, value in (("reference", None), ("reference", 7), ("payment_id", ["x"]), ("payment_id", 12)):
        with pytest.raises(Invalid):
            db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 100, field: value})
    with pytest.raises(Conflict):  # a well-formed amount the invoice cannot take
        db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 10_001})
    with pytest.raises(Invalid):
        db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 100, "lines": LINE})


def test_a_contact_without_a_name_is_shown_and_greeted_by_its_email(tmp_path):
    assert display_name("", "jana@example.org") == "jana@example.org"
    assert display_name(None, "jana@example.org") == "jana@example.org"
    assert display_name("Jana", "jana@example.org") == "Jana"
    _, text, html = documents.render_email(
        "invoice_reminder",
        {
            "name": display_name("", "jana@example.org"),
            "number": "INV-1",
            "kind": "on_due",
            "due_date": "today",
            "balance": "$1",
            "portal_url": "http://x",
            "business_name": "Acme",
            "brand_color": "#000000",
            "logo_url": "",
            "button": "",
        },
        "de_DE",
    )
    assert "jana@example.org" in text and "None" not in text and "None" not in html


def migrated_to(service: str, revision: str, tmp_path):
    url = f"sqlite:///{tmp_path / (service + '.sqlite3')}"
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / service / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    engine = dbmod.make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return url, engine


def test_billing_0008_repairs_none_stored_as_text(tmp_path):
    url, engine = migrated_to("billing", "0007", tmp_path)
    t = datetime(2026, 11, 1).replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO workspaces (id, name, email, phone, address, currency, locale, timezone, "
                "created_at) VALUES ('w', 'W', 'w@example.com', 'None', '', 'EUR', 'de_DE', 'UTC', :t)"
            ),
            {"t": t},
        )
        conn.execute(
            sa.text(
                "INSERT INTO clients (id, workspace_id, name, address, phone, currency, locale, timezone, "
                "created_at) VALUES ('c', 'w', 'None GmbH', 'None', 'None', 'EUR', 'de_DE', 'UTC', :t)"
            ),
            {"t": t},
        )
        conn.execute(
            sa.text(
                "INSERT INTO contacts (id, workspace_id, client_id, email, name, phone, locale, is_primary, "
                "portal_access, version, created_at) VALUES ('k', 'w', 'c', 'jana@example.de', 'None', "
                "'None', 'None', 1, 1, 1, :t), ('l', 'w', 'c', 'max@example.de', 'Max', '', NULL, 0, 1, "
                "1, :t)"
            ),
            {"t": t},
        )
        conn.execute(
            sa.text(
                "INSERT INTO quotes (id, workspace_id, client_id, number, status, currency, issue_date, "
                "notes, terms, signature_name, created_at) VALUES ('q', 'w', 'c', 'Q-1', 'accepted', "
                "'EUR', '2026-11-01', 'None', '', 'None', :t)"
            ),
            {"t": t},
        )
    dbmod.upgrade(url, ROOT / "services" / "billing" / "migrations")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, phone, locale FROM contacts ORDER BY id")).all() == [
            ("", "", None),
            ("Max", "", None),
        ]
        assert conn.execute(sa.text("SELECT name, address, phone FROM clients")).one() == ("None GmbH", "", "")
        assert conn.execute(sa.text("SELECT phone FROM workspaces")).scalar_one() == ""
        assert conn.execute(sa.text("SELECT notes, signature_name FROM quotes")).one() == ("", None)


def test_auth_0005_repairs_the_names_it_copied(tmp_path):
    url, engine = migrated_to("auth", "0004", tmp_path)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO contacts (id, workspace_id, client_id, email, name, locale, portal_access, "
                "version, updated_at) VALUES ('k', 'w', 'c', 'jana@example.de', 'None', 'de_DE', 1, 1, "
                ":t), ('l', 'w', 'c', 'max@example.de', 'Max', 'None', 1, 1, :t)"
            ),
            {"t": datetime(2026, 11, 1)},
        )
    dbmod.upgrade(url, ROOT / "services" / "auth" / "migrations")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name, locale FROM contacts ORDER BY id")).all() == [
            ("", "de_DE"),
            ("Max", None),
        ]


@pytest.mark.parametrize(
    ("start", "end", "detail", "field"),
    [
        ("soon", None, "The start date must be a date like 2026-11-23.", "from"),
        ("2026-01-01", "2026-13-01", "The end date must be a date like 2026-11-23.", "to"),
    ],
)
def test_a_statement_names_a_bad_date_as_the_page_labels_it(db, ws, start, end, detail, field):
    ws_id, client = ws
    with pytest.raises(Invalid) as refused:
        db(h.statement, ws_id, client, start, end)
    assert (refused.value.detail, refused.value.fields) == (detail, {field: "not a date"})

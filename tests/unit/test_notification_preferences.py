"""Notification preferences: which categories a contact may turn off and which emails are essential,
what each kind of email maps to, the unsubscribe token, and billing's rules on an embedded database
(the choices, their event, and the monthly statement announced once per contact and month)."""

import json
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from chassis import unsubscribe
from chassis.db import UnitOfWork
from chassis.errors import Invalid, NotFound
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing import notifications as rules
from services.billing.handlers import notifications as n
from services.documents import preferences

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
KEY = b"k" * 32


# ---------------------------------------------------------------- the rules


def test_every_category_is_on_by_default_except_the_monthly_statement():
    assert rules.DEFAULTS == {
        "invoices": True,
        "quotes": True,
        "reminders": True,
        "receipts": True,
        "monthly_statement": False,
        "comment_replies": True,
        "bookings": True,
    }
    assert preferences.DEFAULTS == rules.DEFAULTS  # documents' copy of the defaults is billing's


@pytest.mark.parametrize(
    "kind",
    [
        "magic_link",
        "new_device",
        "payment_failed",
        "mandate_copy",
        "debit_notice",
        "business_message",
        "some_future_kind",
    ],
)
def test_sign_in_security_and_unlisted_emails_are_essential(kind):
    assert preferences.category(kind, "contact-1") is None


def test_each_kind_of_email_maps_to_its_category():
    assert {kind: preferences.category(kind, "c1") for kind in preferences.CATEGORY_OF_KIND} == {
        "magic_link": None,
        "password_reset": None,
        "new_device": None,
        "payment_failed": None,
        "mandate_copy": None,
        "debit_notice": None,
        "invoice_sent": "invoices",
        "dispute_resolved": "invoices",
        "quote_sent": "quotes",
        "invoice_reminder": "reminders",
        "payment_receipt": "receipts",
        "refund_notice": "receipts",
        "booking": "bookings",
        "monthly_statement": "monthly_statement",
        "comment_reply": "comment_replies",
    }
    assert set(preferences.CATEGORY_OF_KIND.values()) - {None} == set(rules.CATEGORIES)  # none is left out


def test_a_receipt_is_essential_for_the_contact_who_paid_and_a_choice_for_the_others():
    assert preferences.category("payment_receipt", "payer", paid_by="payer") is None
    assert preferences.category("payment_receipt", "colleague", paid_by="payer") == "receipts"
    assert preferences.category("payment_receipt", "colleague", paid_by=None) == "receipts"  # the business recorded it
    assert preferences.category("refund_notice", "payer", paid_by="payer") is None  # the refund of your own payment
    assert preferences.category("refund_notice", "colleague", paid_by="payer") == "receipts"


def test_mail_that_is_not_to_a_contact_is_nobodys_choice():
    assert preferences.category("invoice_sent", None) is None  # a forward to another address


def test_changes_are_known_categories_as_booleans():
    assert rules.clean({"reminders": False, "email_locale": None}) == {"reminders": False, "email_locale": None}
    with pytest.raises(Invalid) as unknown:
        rules.clean({"sign_in": False})
    assert unknown.value.fields == {"sign_in": "unknown field"}  # sign-in links cannot be turned off
    with pytest.raises(Invalid) as not_bool:
        rules.clean({"reminders": "off", "quotes": 0})
    assert not_bool.value.fields == {"quotes": "not a boolean", "reminders": "not a boolean"}


@pytest.mark.parametrize(
    "today,period",
    [
        (date(2026, 12, 1), (date(2026, 11, 1), date(2026, 11, 30), "2026-11")),
        (date(2027, 1, 15), (date(2026, 12, 1), date(2026, 12, 31), "2026-12")),
        (date(2028, 3, 1), (date(2028, 2, 1), date(2028, 2, 29), "2028-02")),
    ],
)
def test_the_monthly_statement_covers_the_month_before(today, period):
    assert rules.statement_period(today) == period


def test_the_unsubscribe_link_names_one_contact_and_category_and_refuses_anything_altered():
    token = unsubscribe.issue(KEY, "ws", "cl", "ct", "reminders", NOW)
    assert unsubscribe.check(KEY, token, NOW + timedelta(days=300)) == {
        "workspace_id": "ws",
        "client_id": "cl",
        "contact_id": "ct",
        "category": "reminders",
    }
    body, signature = token.split(".")
    other = unsubscribe.issue(KEY, "ws", "cl", "ct", "invoices", NOW).split(".")[0]
    for bad, reason in (
        (f"{other}.{signature}", "forged"),  # another category under this signature
        (token, "forged"),  # checked with another secret, below
        ("not-a-token", "malformed"),
    ):
        with pytest.raises(unsubscribe.Refused) as refused:
            unsubscribe.check(b"x" * 32 if bad == token else KEY, bad, NOW)
        assert refused.value.reason == reason


def test_the_one_click_headers_are_rfc_8058s():
    assert preferences.unsubscribe_headers("https://portal.example/unsubscribe?token=t") == {
        "List-Unsubscribe": "<https://portal.example/unsubscribe?token=t>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


# ---------------------------------------------------------------- billing, on an embedded database


@pytest.fixture
def db(sqlite_engine):
    engine = sqlite_engine("billing")

    def run(fn, *args, now=NOW, **kwargs):
        with UnitOfWork(engine, lambda: now) as uow:
            result = fn(uow, now, *args, **kwargs)
            uow.commit()
            return result

    run.engine = engine
    return run


@pytest.fixture
def ws(db):
    # Auckland: its 1 December begins while it is still 30 November in UTC
    workspace = db(h.create_workspace, {"name": "Acme", "email": "acme@example.com", "timezone": "Pacific/Auckland"})
    client = db(
        h.create_client,
        workspace["id"],
        {
            "name": "Client One",
            "contacts": [
                {"email": "one@example.com", "portal_access": True},
                {"email": "two@example.com", "portal_access": True},
            ],
        },
    )
    return workspace["id"], client["id"], [c["id"] for c in client["contacts"]]


def events(db, event_type):
    with db.engine.connect() as conn:
        bodies = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).scalars().all()
    return [json.loads(b) if isinstance(b, str) else b for b in bodies]


def test_a_contact_without_choices_has_the_defaults(db, ws):
    ws_id, client, (one, _) = ws
    view = db(n.get_notification_preferences, ws_id, one, client_id=client)
    assert {k: view[k] for k in rules.CATEGORIES} == rules.DEFAULTS and view["version"] == 0


def test_a_change_is_stored_published_whole_and_recorded(db, ws):
    ws_id, client, (one, _) = ws
    view = db(n.update_notification_preferences, ws_id, one, {"reminders": False, "email_locale": "de_DE"}, client)
    assert view["reminders"] is False and view["invoices"] is True and view["email_locale"] == "de_DE"
    published = events(db, "contact.notification_preferences_changed")[-1]["data"]
    assert published["reminders"] is False and published["version"] == 1 and published["changed"] == ["reminders"]
    assert published["email_locale"] == "de_DE"
    again = db(n.update_notification_preferences, ws_id, one, {"reminders": True}, client, "unsubscribe")
    assert again["version"] == 2 and events(db, "contact.notification_preferences_changed")[-1]["data"]["via"] == (
        "unsubscribe"
    )
    listed = db(n.list_notification_preferences, ws_id, client)
    assert [(c["contact_id"], c["reminders"]) for c in listed] == [(one, True), (ws[2][1], True)]


def test_bad_input_and_another_clients_contact_change_nothing(db, ws):
    ws_id, client, (one, _) = ws
    other = db(h.create_client, ws_id, {"name": "Other", "contacts": [{"email": "x@example.com"}]})
    with pytest.raises(Invalid):
        db(n.update_notification_preferences, ws_id, one, {"reminders": "no"}, client)
    with pytest.raises(NotFound):
        db(n.update_notification_preferences, ws_id, one, {"reminders": False}, other["id"])
    assert db(n.get_notification_preferences, ws_id, one)["version"] == 0
    assert events(db, "contact.notification_preferences_changed") == []


def test_the_monthly_statement_is_announced_once_per_month_to_who_asked(db, ws):
    ws_id, client, (one, two) = ws
    db(n.update_notification_preferences, ws_id, one, {"monthly_statement": True}, client)
    first_in_auckland = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)  # 1 December, 01:00 there
    assert db(n.workspaces_with_statements_wanted) == [ws_id]
    assert db(n.run_monthly_statements, ws_id, now=first_in_auckland) == 1
    assert db(n.run_monthly_statements, ws_id, now=first_in_auckland + timedelta(hours=1)) == 0  # a retry
    announced = [e["data"] for e in events(db, "statement.monthly")]
    assert announced == [
        {
            "client_id": client,
            "period": "2026-11",
            "from": "2026-11-01",
            "to": "2026-11-30",
            "recipient": {"contact_id": one, "email": "one@example.com", "name": "", "locale": "en_US"},
        }
    ]  # and none to the contact who did not ask
    assert db(n.run_monthly_statements, ws_id, now=first_in_auckland + timedelta(days=31)) == 1  # next month


def test_the_payer_of_a_card_payment_is_noted_once(db, ws):
    ws_id, client, (one, two) = ws
    assert db(n.note_payment_payer, ws_id, client, "pay-1", one) == {"payment_id": "pay-1", "contact_id": one}
    assert db(n.note_payment_payer, ws_id, client, "pay-1", two)["contact_id"] == one  # the first note stands
    with pytest.raises(NotFound):
        db(n.note_payment_payer, ws_id, "another-client", "pay-2", one)


def test_a_recorded_payment_names_the_contact_who_started_it(db, ws):
    ws_id, client, (one, _) = ws
    lines = [{"description": "Work", "quantity": 1, "unit_price": 5000}]
    first, second = (db(h.create_invoice, ws_id, {"client_id": client, "lines": lines, "send": True}) for _ in "12")
    db(n.note_payment_payer, ws_id, client, "pi_started_in_portal", one)
    for payment_id, invoice in (("pi_started_in_portal", first), ("pi_from_elsewhere", second)):
        db(h.record_payment, ws_id, {"payment_id": payment_id, "invoice_id": invoice["id"], "amount": 5000})
    recorded = {e["data"]["id"]: e["data"] for e in events(db, "payment.recorded")}
    assert recorded["pi_started_in_portal"]["paid_by_contact_id"] == one  # the receipt goes to that contact
    assert recorded["pi_from_elsewhere"]["paid_by_contact_id"] is None

"""The recipients billing names in the events that email a client's contacts: each contact's own
locale beside its client's locale and time zone, the language and zone of the email; and a client's
new locale announced for its contacts that speak it."""

import json
from datetime import datetime, timezone

import pytest

from chassis import event_contract
from chassis.errors import Invalid
from services.billing import handlers as h
from tests.unit.test_billing_handlers import LINE, db, events  # noqa: F401 - fixtures


@pytest.fixture
def kunde(db):
    """A German client of a New York business: one contact without a locale of its own, one with."""
    ws_id = db(h.create_workspace, {"name": "Acme", "email": "acme@example.com", "timezone": "America/New_York"})["id"]
    client = db(h.create_client, ws_id, {"name": "Kunde GmbH", "locale": "de_DE", "timezone": "Europe/Berlin"})["id"]
    db(h.add_contact, ws_id, client, {"email": "ohne@kunde.example", "portal_access": True})
    db(h.add_contact, ws_id, client, {"email": "eigen@kunde.example", "locale": "en_GB", "portal_access": True})
    db(h.add_contact, ws_id, client, {"email": "kein-zugang@kunde.example"})  # no portal access: never emailed
    return ws_id, client


def published(db, event_type: str) -> list[dict]:
    return [json.loads(body) for body in events(db, event_type)]


def test_every_event_that_emails_a_client_names_its_locale_and_zone_beside_the_contact_s_own(db, kunde):
    ws_id, client = kunde
    invoice = db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-11-01", "due_date": "2026-11-24"},
        now=datetime(2026, 11, 1, 15, 0, tzinfo=timezone.utc),
    )
    db(h.run_reminders, now=datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc))  # 3 days before
    db(h.add_comment, ws_id, "invoice", invoice["id"], "business", "Sam at Acme", "Thanks, we got it.")
    db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 4000})
    announced = [
        published(db, kind)[-1] for kind in ("invoice.sent", "invoice.reminder", "comment.added", "payment.recorded")
    ]
    for event in announced:
        recipients = sorted(event["data"]["recipients"], key=lambda r: r["email"])
        assert [(r["email"], r["locale"], r["client_locale"], r["timezone"]) for r in recipients] == [
            ("eigen@kunde.example", "en_GB", "de_DE", "Europe/Berlin"),
            ("ohne@kunde.example", None, "de_DE", "Europe/Berlin"),  # the email's language: the client's
        ], event["type"]
    assert [event_contract.validate(e) for e in announced] == [[], [], [], []]  # as documented


def test_a_new_locale_of_the_client_is_announced_for_its_contacts_without_one_of_their_own(db, kunde):
    ws_id, client = kunde
    before = {e["data"]["email"]: e["data"]["version"] for e in published(db, "contact.created")}
    db(h.update_client, ws_id, client, {"name": "Kunde AG"})  # no new language: nobody announced again
    assert published(db, "contact.updated") == []

    db(h.update_client, ws_id, client, {"locale": "fr_FR"})
    [again] = published(db, "contact.updated")  # neither the contact with its own locale nor one without access
    assert again["data"]["email"] == "ohne@kunde.example" and again["data"]["locale"] == "fr_FR"
    assert again["data"]["version"] == before["ohne@kunde.example"] + 1  # newer: auth's copy takes it
    assert event_contract.validate(again) == []
    with pytest.raises(Invalid):
        db(h.update_client, ws_id, client, {"locale": "xx_NOPE"})
    assert len(published(db, "contact.updated")) == 1  # refused: nothing announced

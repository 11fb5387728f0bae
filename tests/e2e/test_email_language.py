"""The language of the emails a contact without a locale of its own gets, through the running stack:
its client's. A German client's contact is reminded of an invoice and told of the business's reply in
German; a client whose locale changes has its contacts' sign-in emails follow it."""

from __future__ import annotations

from datetime import timedelta

import psycopg2
import pytest

from tests.conftest import Browser, business_today, new_portal_client, sent_days_ago, services_rpc
from tests.e2e.payments_support import wait_until

pytestmark = pytest.mark.e2e

KUNDE = "ohne-sprache@kunde.example.org"
WECHSEL = "wechsel@kunde.example.org"


def _text(message) -> str:
    return message.get_body(("plain",)).get_content()


def test_a_german_client_s_contact_without_a_locale_is_reminded_and_answered_in_german(stack):
    made = new_portal_client(
        stack, "Kunde Ohne Sprache GmbH", KUNDE, invoices=0, client_fields={"locale": "de_DE", "currency": "EUR"}
    )
    ws, client_id = made["workspace_id"], made["client"]["id"]
    assert made["client"]["contacts"][0]["locale"] is None  # it speaks its client's language
    today = business_today()
    with services_rpc(stack, ws) as rpc:
        # due in 3 days and sent two days ago: the default "3 days before" reminder, sent by the next sweep
        invoice = rpc.billing.create_invoice(
            ws,
            {
                "client_id": client_id,
                "send": True,
                "issue_date": (today - timedelta(days=2)).isoformat(),
                "due_date": (today + timedelta(days=3)).isoformat(),
                "lines": [{"description": "Beratung", "quantity": 1, "unit_price": 12000}],
            },
        )
    sent_days_ago(stack, invoice["id"], 2)
    number = invoice["number"]

    [reminder] = stack.outbox.wait_for(KUNDE, subject=f"Rechnung {number} ist am", timeout=30)
    text = _text(reminder)
    assert "Hallo Kunde," in text and "Offener Betrag: 120,00\xa0€" in text
    assert stack.outbox.count(KUNDE, f"Invoice {number} is due") == 0

    with services_rpc(stack, ws) as rpc:
        rpc.billing.add_comment(ws, "invoice", invoice["id"], "business", "Sam at Acme", "Danke, ist angekommen.")
    [reply] = stack.outbox.wait_for(KUNDE, subject=f"Eine Antwort zur Rechnung {number}", timeout=30)
    text = _text(reply)
    assert f"Sam at Acme hat zur Rechnung {number} geantwortet:" in text and "Danke, ist angekommen." in text
    assert stack.outbox.count(KUNDE, f"A reply on invoice {number}") == 0


def _auth_locale(stack, email: str) -> str | None:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT locale FROM contacts WHERE email = %s", (email,))
        return cur.fetchone()[0]


def test_a_client_s_new_locale_reaches_the_sign_in_email_of_its_contact_without_one(stack):
    made = new_portal_client(stack, "Wechsel Ltd", WECHSEL, invoices=0, client_fields={"locale": "en_US"})
    ws, client_id = made["workspace_id"], made["client"]["id"]
    assert _auth_locale(stack, WECHSEL) == "en_US"
    with services_rpc(stack, ws) as rpc:
        rpc.billing.update_client(ws, client_id, {"locale": "de_DE"})
    wait_until(lambda: _auth_locale(stack, WECHSEL) == "de_DE", timeout=30, what="auth to learn the new language")

    page = Browser(stack.url).post(f"{stack.url}/login", data={"email": WECHSEL})
    assert page.status_code == 200
    [link] = stack.outbox.wait_for(WECHSEL, subject="Anmeldelink", timeout=30)
    assert link["Subject"] == "Ihr Anmeldelink für Acme Studio" and "Hallo Wechsel," in _text(link)

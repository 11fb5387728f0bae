"""Notification preferences through the running stack: a contact turns reminders (and others' receipts)
off and gets no reminder but still the receipt for its own card payment; emails that may be turned off
carry RFC 8058 one-click unsubscribe headers and sign-in emails do not; the one-click POST works with
the link's token alone, a GET changes nothing and a forged token is refused; the monthly statement
goes once to the contact who asked for it and to nobody else; the business reads every choice."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import psycopg2
import pytest
import requests

from tests.conftest import SIGN_IN, business_today, new_portal_client, sent_days_ago, services_rpc, sign_in
from tests.e2e.payments_support import paid_by_card, wait_until
from tests.integration.test_admin_api import Api, portalctl

pytestmark = pytest.mark.e2e

PAYER, COLLEAGUE = "payer@prefs.example.org", "colleague@prefs.example.org"
ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture(scope="module")
def account(stack):
    """A client with two portal contacts: the one who pays, and a colleague with the defaults."""
    made = new_portal_client(stack, "Prefs Ltd", PAYER, invoices=1)
    ws, client_id = made["workspace_id"], made["client"]["id"]
    with services_rpc(stack, ws) as rpc:
        colleague = rpc.billing.add_contact(ws, client_id, {"email": COLLEAGUE, "name": "Cole", "portal_access": True})
    wait_until(lambda: _auth_knows(stack, COLLEAGUE), timeout=30, what="auth to learn the colleague")
    return {**made, "colleague_id": colleague["id"]}


def _auth_knows(stack, email: str) -> bool:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM contacts WHERE email = %s AND portal_access", (email,))
        return cur.fetchone()[0] > 0


def _rows(stack, service: str, sql: str, *args) -> list:
    with psycopg2.connect(stack.databases[service]) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def _copied(stack, contact_id: str, category: str, value: bool) -> bool:
    """Documents' copy of the contact's choices has caught up with billing's event."""
    rows = _rows(stack, "documents", "SELECT choices FROM notification_preferences WHERE contact_id = %s", contact_id)
    return bool(rows) and rows[0][0].get(category) is value


def _choices(stack, account, contact_id: str) -> dict:
    with services_rpc(stack, account["workspace_id"]) as rpc:
        return rpc.billing.get_notification_preferences(account["workspace_id"], contact_id)


def _unsubscribe_url(message) -> str:
    return re.fullmatch(r"<(.+)>", message["List-Unsubscribe"]).group(1)


def test_the_profile_form_turns_reminders_off_and_only_the_essential_emails_still_come(stack, account):
    browser = sign_in(stack, PAYER)
    [sign_in_email] = stack.outbox.matching(PAYER, SIGN_IN)[-1:]
    assert sign_in_email["List-Unsubscribe"] is None and sign_in_email["List-Unsubscribe-Post"] is None

    page = browser.get(f"{stack.url}/profile")
    assert page.status_code == 200 and 'action="/profile/notifications"' in page.text
    assert 'name="monthly_statement" value="on">' in page.text  # off by default: not checked
    # every box ticked but reminders and others' receipts; a box left unticked is off (no script needed)
    form = {name: "on" for name in ("invoices", "quotes", "comment_replies", "bookings")} | {"email_locale": ""}
    saved = browser.post(f"{stack.url}/profile/notifications", data=form, allow_redirects=False)
    assert saved.status_code == 303 and saved.headers["Location"].startswith("/profile?notifications=saved")
    mine = browser.get(f"{stack.url}/api/portal/v1/notification-preferences").json()
    assert (mine["reminders"], mine["receipts"], mine["invoices"], mine["monthly_statement"]) == (
        False,
        False,
        True,
        False,
    )
    wait_until(lambda: _copied(stack, account["contact_id"], "reminders", False), what="documents' copy")

    bad = browser.post(f"{stack.url}/profile/notifications", data={**form, "email_locale": "xx_YY"})
    assert bad.status_code == 400 and "Choose a language from the list." in bad.text
    assert _choices(stack, account, account["contact_id"])["version"] == mine["version"]  # nothing changed

    # A reminder (due in 3 days, sent two days ago: the default "3 days before" one): the colleague
    # gets it, the payer not.
    today = business_today()
    ws = account["workspace_id"]
    with services_rpc(stack, ws) as rpc:
        soon = rpc.billing.create_invoice(
            ws,
            {
                "client_id": account["client"]["id"],
                "send": True,
                "issue_date": (today - timedelta(days=2)).isoformat(),
                "due_date": (today + timedelta(days=3)).isoformat(),
                "lines": [{"description": "Due soon", "quantity": 1, "unit_price": 2500}],
            },
        )
    sent_days_ago(stack, soon["id"], 2)
    [reminder] = stack.outbox.wait_for(COLLEAGUE, subject=f"Invoice {soon['number']} is due on", timeout=30)
    assert reminder["List-Unsubscribe-Post"] == ONE_CLICK
    assert _unsubscribe_url(reminder).startswith(f"{stack.env['PORTAL_URL']}/unsubscribe?token=")
    time.sleep(1)  # the same event queued both contacts' emails; give the file outbox a moment
    assert stack.outbox.count(PAYER, f"Invoice {soon['number']} is due on") == 0
    keys = _rows(stack, "documents", "SELECT idempotency_key FROM emails WHERE idempotency_key LIKE %s", "reminder:%")
    assert not [k for (k,) in keys if k.endswith(account["contact_id"])]  # not even queued

    # The payer pays by card: its own receipt comes (essential, no unsubscribe link) though it turned
    # others' receipts off; the colleague's receipt is one it may turn off.
    paid_by_card(browser, stack, soon["id"])
    [own] = stack.outbox.wait_for(PAYER, subject="Payment received", timeout=30)
    assert own["List-Unsubscribe"] is None
    [others] = stack.outbox.wait_for(COLLEAGUE, subject="Payment received", timeout=30)
    assert others["List-Unsubscribe-Post"] == ONE_CLICK and "List-Unsubscribe" in others


def test_one_click_unsubscribe_needs_only_the_token_and_a_get_changes_nothing(stack, account):
    colleague = account["colleague_id"]
    invoice = account["invoices"][0]  # sent before the colleague was added: re-sent, it goes to both
    with services_rpc(stack, account["workspace_id"]) as rpc:
        rpc.billing.send_invoice(account["workspace_id"], invoice["id"])
    [invoice_email] = stack.outbox.wait_for(COLLEAGUE, subject=invoice["number"], timeout=30)
    assert invoice_email["List-Unsubscribe-Post"] == ONE_CLICK
    url = _unsubscribe_url(invoice_email)
    before = _choices(stack, account, colleague)
    assert before["invoices"] is True

    shown = requests.get(url, timeout=10)  # what a mail scanner does
    assert shown.status_code == 200 and "Unsubscribe" in shown.text and COLLEAGUE in shown.text
    assert _choices(stack, account, colleague) == before

    token = parse_qs(urlparse(url).query)["token"][0]
    body, signature = token.split(".")
    forged = f"{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    for bad in (forged, "not-a-token", ""):
        refused = requests.post(f"{stack.url}/unsubscribe", params={"token": bad}, data=ONE_CLICK, timeout=10)
        assert refused.status_code == 400 and "This unsubscribe link is not valid" in refused.text
    assert _choices(stack, account, colleague) == before

    # RFC 8058: a POST of "List-Unsubscribe=One-Click", no cookie, no CSRF token, from anywhere
    done = requests.post(
        url,
        data=ONE_CLICK,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Origin": "https://mail.example.net"},
        timeout=10,
    )
    assert done.status_code == 200, done.text
    after = _choices(stack, account, colleague)
    assert after["invoices"] is False and after["version"] == before["version"] + 1
    assert {k: v for k, v in after.items() if k not in ("invoices", "version", "updated_at")} == {
        k: v for k, v in before.items() if k not in ("invoices", "version", "updated_at")
    }  # that one category only
    wait_until(lambda: _copied(stack, colleague, "invoices", False), what="documents' copy")
    activity = _rows(
        stack,
        "billing",
        "SELECT data FROM activities WHERE kind = 'notifications.changed' AND client_id = %s",
        account["client"]["id"],
    )
    assert any(d["via"] == "unsubscribe" and d["contact_id"] == colleague for (d,) in activity)


def test_the_monthly_statement_goes_once_to_the_contact_who_asked_and_the_business_sees_the_choices(stack, account):
    browser = sign_in(stack, PAYER)
    csrf = browser.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
    refused = browser.patch(
        f"{stack.url}/api/portal/v1/notification-preferences",
        json={"monthly_statement": "yes"},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status_code == 422 and refused.headers["Content-Type"].startswith("application/problem+json")
    turned_on = browser.patch(
        f"{stack.url}/api/portal/v1/notification-preferences",
        json={"monthly_statement": True},
        headers={"X-CSRF-Token": csrf},
    )
    assert turned_on.status_code == 200 and turned_on.json()["monthly_statement"] is True

    # billing's sweep (every second here) announces last month's statement; documents emails it
    [statement] = stack.outbox.wait_for(PAYER, subject="Statement of account", timeout=30)
    assert statement["List-Unsubscribe-Post"] == ONE_CLICK
    assert any(part.get_filename() for part in statement.iter_attachments())  # the statement PDF
    time.sleep(4)  # several more sweeps, on every consumer: still once
    assert stack.outbox.count(PAYER, "Statement of account") == 1
    assert stack.outbox.count(COLLEAGUE, "Statement of account") == 0
    announced = _rows(
        stack, "billing", "SELECT contact_id FROM monthly_statements WHERE client_id = %s", account["client"]["id"]
    )
    assert announced == [(account["contact_id"],)]

    key = portalctl(stack, "key", "create", "--workspace", account["workspace_id"], "--name", "prefs")["key"]
    listed = Api(stack.url, key)(
        "GET", f"/clients/{account['client']['id']}/notification-preferences", expect=200
    ).json()
    by_email = {c["email"]: c for c in listed}
    assert by_email[PAYER]["monthly_statement"] is True and by_email[PAYER]["reminders"] is False
    assert by_email[COLLEAGUE]["monthly_statement"] is False and by_email[COLLEAGUE]["reminders"] is True


def test_a_reply_from_the_business_is_emailed_to_the_contacts_who_keep_comment_replies_on(stack, account):
    ws, client_id, invoice = account["workspace_id"], account["client"]["id"], account["invoices"][0]
    colleague = account["colleague_id"]
    with services_rpc(stack, ws) as rpc:
        rpc.billing.update_notification_preferences(ws, colleague, {"comment_replies": False}, client_id)
    wait_until(lambda: _copied(stack, colleague, "comment_replies", False), timeout=30, what="documents' copy")

    with services_rpc(stack, ws) as rpc:
        rpc.billing.add_comment(ws, "invoice", invoice["id"], "client", "Payer", "Could you split the second line?")
        rpc.billing.add_comment(ws, "invoice", invoice["id"], "business", "Sam", "Done: see the new lines.")
    [reply] = stack.outbox.wait_for(PAYER, subject=f"A reply on invoice {invoice['number']}", timeout=30)
    text = reply.get_body(("plain",)).get_content()
    assert "Sam replied on invoice" in text and "Done: see the new lines." in text
    assert f"{stack.env['PORTAL_URL']}/invoices/{invoice['id']}#comments" in text  # the page with the thread
    assert reply["List-Unsubscribe-Post"] == ONE_CLICK
    # the reply went out for both contacts at once: the colleague's choice kept it away, and the
    # client's own comment emailed nobody
    assert stack.outbox.count(COLLEAGUE, "A reply on") == 0
    assert stack.outbox.count(PAYER, "A reply on") == 1

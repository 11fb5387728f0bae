"""Passkeys in a real browser: chromium's virtual authenticator (the CDP WebAuthn domain) stands in for
a phone or laptop. A contact signed in by email adds a passkey, signs in with it without an email,
renames it, confirms it is them before paying (step-up for money), has a replayed answer refused,
and removes it, after which it signs nobody in."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest

from chassis import credentials
from chassis.clock import utcnow
from tests.conftest import SIGN_IN, new_portal_client, services_rpc
from tests.e2e.payments_support import CARD_OK, assert_ledger_matches_stripe, query
from tests.e2e.test_browser import browser, check  # noqa: F401 - the browser fixture, shared
from tests.e2e.test_browser_payments import enter_card, sign_in, thank_you

pytestmark = pytest.mark.e2e
EMAIL = "passkeys@example.com"


@pytest.fixture
def context(stack, browser):  # noqa: F811 - the fixture imported above
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    yield context
    context.close()


def virtual_authenticator(page) -> tuple:
    """A platform authenticator that holds discoverable credentials and verifies its user."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return cdp, added["authenticatorId"]


def sessions_of(stack, contact_id: str) -> int:
    return query(stack, "auth", "SELECT count(*) FROM sessions WHERE contact_id = %s", contact_id)[0][0]


def sign_out(page, stack) -> None:
    page.goto(f"{stack.url}/profile")
    page.locator("header form[action='/logout'] button").click(force=True)  # in the menu on narrow screens
    page.wait_for_url(re.compile("/login"))


def age_the_proof(page, stack, minutes: int) -> None:
    """As if `minutes` had passed since the contact last proved presence: the session's credential,
    re-signed with the stack's (development) keys, says so."""
    keys = credentials.Keys.parse(credentials.DEV_KEYS)
    [cookie] = [c for c in page.context.cookies() if c["name"] == "portal_session"]
    session = credentials.read(cookie["value"], keys)
    aged = replace(session, proved_at=utcnow().replace(microsecond=0) - timedelta(minutes=minutes))
    page.context.add_cookies([{**cookie, "value": credentials.issue(aged, keys)}])


def test_passkeys_from_adding_to_step_up_to_removal(stack, context):
    made = new_portal_client(stack, "Passkey Payer", EMAIL, invoices=1)
    invoice, workspace_id = made["invoices"][0], made["workspace_id"]
    page = context.new_page()
    cdp, authenticator = virtual_authenticator(page)

    # Signed in by email, the contact adds a passkey from the profile.
    sign_in(page, stack, EMAIL)
    page.goto(f"{stack.url}/profile")
    page.click("text=Manage your passkeys")
    page.wait_for_selector("h1:has-text('Passkeys')")
    page.fill("#passkey-name", "Work laptop")
    page.click("form[data-passkey=register] button")
    page.wait_for_selector("text=Your passkey is saved")
    assert page.locator("[data-testid=passkey] input[name=name]").input_value() == "Work laptop"
    check(page, "60-passkeys")
    [stored] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert stored["isResidentCredential"]

    # Signing in with it needs no email: the sign-in page offers it, and the browser picks the passkey.
    sign_out(page, stack)
    emails = stack.outbox.count(EMAIL, SIGN_IN)
    sessions = sessions_of(stack, made["contact_id"])
    answers = []
    page.on("request", lambda r: answers.append(r) if r.url.endswith("/login/passkey") else None)
    check(page, "61-login-with-passkey")
    page.click("text=Sign in with a passkey")
    page.wait_for_url(f"{stack.url}/dashboard")
    assert stack.outbox.count(EMAIL, SIGN_IN) == emails
    assert sessions_of(stack, made["contact_id"]) == sessions + 1

    # The same answer sent again (a replay) is refused: its challenge was used. Nothing opens.
    [used] = answers
    replayed = page.request.post(
        f"{stack.url}/login/passkey",
        data=used.post_data,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-CSRF-Token": used.headers["x-csrf-token"],
            "Origin": stack.url,
        },
    )
    assert replayed.status == 401 and "expired or was already used" in replayed.json()["detail"]
    assert sessions_of(stack, made["contact_id"]) == sessions + 1

    # It can be renamed.
    page.goto(f"{stack.url}/profile/passkeys")
    page.fill("[data-testid=passkey] input[name=name]", "Home laptop")
    page.click("text=Save name")
    page.wait_for_selector("text=The passkey's name is saved")
    assert page.locator("[data-testid=passkey] input[name=name]").input_value() == "Home laptop"

    # Step-up for money: the workspace asks for a proof from the last 10 minutes before paying.
    with services_rpc(stack, workspace_id) as rpc:
        rpc.billing.update_workspace(workspace_id, {"settings": {"step_up_for_payments": True}})
    try:
        age_the_proof(page, stack, minutes=11)
        card_change = page.request.post(
            f"{stack.url}/payment-methods/setup",
            headers={"Accept": "application/json", "X-CSRF-Token": used.headers["x-csrf-token"], "Origin": stack.url},
        )
        assert card_change.status == 401 and card_change.json()["errors"] == {"step_up": "required"}
        page.goto(f"{stack.url}/invoices/{invoice['id']}")
        page.get_by_role("link", name="Pay now", exact=True).click()
        page.wait_for_selector("h1:has-text('Review your payment')")
        page.click("button:has-text('Proceed to payment')")
        page.wait_for_selector("h1:has-text('Confirm it is you')")
        assert "/step-up?next=%2Fpay" in page.url
        assert query(stack, "payments", "SELECT count(*) FROM attempts WHERE client_id = %s", made["client"]["id"]) == [
            (0,)
        ]  # refused before anything was started
        check(page, "62-step-up")
        page.click("text=Confirm with your passkey")
        page.wait_for_url(re.compile(r"/pay\?invoice="))
        # The card page is left open past the 10 minutes: paying sends the contact to confirm again,
        # then back to the same payment.
        page.click("button:has-text('Proceed to payment')")
        page.wait_for_url(re.compile(r"/pay/[0-9a-f-]+$"))
        card_page = page.url
        age_the_proof(page, stack, minutes=11)
        page.wait_for_selector("#card-element input", state="attached")
        enter_card(page, CARD_OK)
        page.click("#pay-form button[type=submit]")
        page.wait_for_selector("h1:has-text('Confirm it is you')")
        page.click("text=Confirm with your passkey")
        page.wait_for_url(card_page)
        page.wait_for_selector("#card-element input", state="attached")
        enter_card(page, CARD_OK)
        page.click("#pay-form button[type=submit]")
        thank_you(page)
    finally:
        with services_rpc(stack, workspace_id) as rpc:
            rpc.billing.update_workspace(workspace_id, {"settings": {"step_up_for_payments": False}})
    assert_ledger_matches_stripe(stack)

    # Removed, the passkey signs nobody in; the emailed link still does.
    page.goto(f"{stack.url}/profile/passkeys")
    page.click("text=Remove Home laptop")
    page.wait_for_selector("text=The passkey is removed")
    assert page.locator("[data-testid=passkey]").count() == 0
    sign_out(page, stack)
    page.click("text=Sign in with a passkey")
    page.wait_for_selector("text=This passkey was not recognised here")
    assert "/login" in page.url
    sign_in(page, stack, EMAIL)
    assert [e["type"] for e in events(stack, made["contact_id"])] == ["passkey.added", "passkey.removed"]


def events(stack, contact_id: str) -> list[dict]:
    rows = query(
        stack,
        "auth",
        "SELECT event_type FROM outbox WHERE event_type LIKE 'passkey.%%' AND body LIKE %s ORDER BY seq",
        f"%{contact_id}%",
    )
    return [{"type": row[0]} for row in rows]

"""The sessions and devices page in a real browser (Playwright driving Debian's chromium): a contact
signed in on a laptop and a phone finds the page from the profile, sees both with the laptop marked,
ends the phone's session (the phone is sent to sign in again), then follows a sign-in email's "this
wasn't me" link, confirms, and is signed out everywhere. Each page is checked with axe-core."""

import re
import uuid

import pytest

from tests.conftest import SIGN_IN, link_token, new_portal_client, refused_within
from tests.e2e.test_browser import browser, check  # noqa: F401 - the chromium fixture and axe check

pytestmark = pytest.mark.e2e
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)


def sign_in_page(stack, context, email: str):
    page = context.new_page()
    before = stack.outbox.count(email, SIGN_IN)
    page.goto(f"{stack.url}/login")
    page.fill("#email", email)
    page.click("text=Send magic link")
    page.wait_for_selector("text=Check your email")
    message = stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1]
    page.goto(f"{stack.url}/login/verify?token={link_token(message)}")
    page.click("button:has-text('Continue to your portal')")
    page.wait_for_url(f"{stack.url}/dashboard")
    return page, message


def test_a_contact_sees_and_ends_its_sessions_in_a_browser(stack, browser):  # noqa: F811
    email = f"browser-devices-{uuid.uuid4().hex[:6]}@example.org"
    new_portal_client(stack, "Browser Devices Ltd", email)
    laptop_context = browser.new_context(viewport={"width": 1200, "height": 900})
    phone_context = browser.new_context(viewport={"width": 390, "height": 844}, user_agent=PHONE)
    laptop, _ = sign_in_page(stack, laptop_context, email)
    phone, _ = sign_in_page(stack, phone_context, email)

    laptop.goto(f"{stack.url}/profile")
    laptop.click("a[href='/profile/sessions']")
    laptop.wait_for_url(f"{stack.url}/profile/sessions")
    rows = laptop.locator("[data-testid=sessions] tbody tr")
    assert rows.count() == 2
    current = laptop.locator("[data-testid=sessions] tr[data-current=true]")
    assert "this browser" in current.inner_text().lower() and "Chrome" in current.inner_text()
    other = laptop.locator("[data-testid=sessions] tbody tr:not([data-current])")
    assert "Mobile Safari on iOS" in other.inner_text()
    check(laptop, "sessions-01-two-devices")
    phone.goto(f"{stack.url}/profile/sessions")
    check(phone, "sessions-02-phone")

    other.locator("button:has-text('End session')").click()
    laptop.wait_for_url(re.compile(r"/profile/sessions\?done=session$"))
    assert laptop.locator("[data-testid=sessions] tbody tr").count() == 1
    assert "That device must sign in again" in laptop.inner_text("main")
    # refused, and sent to sign in again, once the revocation has reached the gateway's workers (within
    # a second, as for the other session tests): a page asked sooner may still open

    def phone_dashboard():
        phone.goto(f"{stack.url}/dashboard")
        return phone

    refused_within(phone_dashboard, refused=lambda page: re.search(r"/login", page.url) is not None)

    before = stack.outbox.count(email, SIGN_IN)
    phone.fill("#email", email)
    phone.click("text=Send magic link")
    phone.wait_for_selector("text=Check your email")
    text = stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1].get_body(("plain",)).get_content()
    report = re.search(r"(/not-me\?token=[A-Za-z0-9_-]+)", text).group(1)
    phone.goto(f"{stack.url}{report}")
    check(phone, "sessions-03-not-me")
    laptop.goto(f"{stack.url}/dashboard")
    assert laptop.url.endswith("/dashboard")  # opening the link changed nothing
    phone.click("button:has-text('End all my sessions and links')")
    phone.wait_for_selector("[data-testid=not-me-done]")
    check(phone, "sessions-04-not-me-done")
    laptop.goto(f"{stack.url}/dashboard")
    laptop.wait_for_url(re.compile(r"/login"))
    laptop_context.close()
    phone_context.close()

"""Optional passwords in a real browser (Playwright driving Debian's chromium): set one from the profile,
sign out, be refused with a wrong one, sign in with the right one, then "Forgot your password?" and its
emailed link. Each page is checked with axe-core; screenshots go to test-artifacts/screenshots/."""

import re

import pytest

from tests.conftest import SIGN_IN, link_token
from tests.e2e.test_browser import browser, check  # noqa: F401 - the module's chromium fixture
from tests.e2e.test_passwords import RESET, email_for, forget_failures, new_contact, password_workspace, reset_token

pytestmark = pytest.mark.e2e


def test_a_contact_sets_a_password_signs_in_with_it_and_resets_it_in_a_browser(stack, browser):  # noqa: F811
    business = password_workspace(stack, "Passwords Browser Co")
    email = email_for("browser")
    new_contact(stack, business["workspace_id"], email)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    base = stack.url
    try:
        page.goto(f"{base}/login")
        assert page.is_visible("#password-sign-in")
        before = stack.outbox.count(email, SIGN_IN)
        page.fill("#email", email)
        page.click("text=Send magic link")
        page.wait_for_selector("text=Check your email")
        page.goto(
            f"{base}/login/verify?token={link_token(stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1])}"
        )
        page.click("button:has-text('Continue to your portal')")
        page.wait_for_url(f"{base}/dashboard")

        page.click("nav >> text=Profile")
        page.click("#password >> text=Set a password")
        page.wait_for_url(f"{base}/profile/password")
        check(page, "passwords-01-set")
        page.fill("#password", "qwerty123456")
        page.fill("#confirm", "qwerty123456")
        page.click("button:has-text('Save password')")
        assert "one of the most common" in page.inner_text("[role=alert]")
        check(page, "passwords-02-refused")
        page.fill("#password", "a browser passphrase")
        page.fill("#confirm", "a browser passphrase")
        page.click("button:has-text('Save password')")
        page.wait_for_selector("text=Your password is saved")

        page.click("text=Sign out")
        page.wait_for_url(re.compile("/login"))
        page.fill("#password-email", email)
        page.fill("#password", "not the passphrase")
        page.click("#password-sign-in >> button:has-text('Sign in')")
        assert "do not match an account" in page.inner_text("#password-error")
        check(page, "passwords-03-login-refused")
        page.fill("#password", "a browser passphrase")
        page.click("#password-sign-in >> button:has-text('Sign in')")
        page.wait_for_url(f"{base}/dashboard")

        page.click("text=Sign out")
        page.wait_for_url(re.compile("/login"))
        page.click("text=Forgot your password?")
        page.fill("#email", email)
        page.click("button:has-text('Email me a link')")
        page.wait_for_selector("text=a link to choose a new one is on its way")
        check(page, "passwords-04-forgot")
        page.goto(f"{base}/password/reset?token={reset_token(stack.outbox.wait_for(email, 1, subject=RESET)[-1])}")
        check(page, "passwords-05-reset")
        page.fill("#password", "reset in the browser")
        page.fill("#confirm", "reset in the browser")
        page.click("button:has-text('Save password')")
        page.wait_for_url(f"{base}/profile/password?saved=reset")
        assert "signed out everywhere else" in page.inner_text("[role=status]")
    finally:
        context.close()
        forget_failures(stack)

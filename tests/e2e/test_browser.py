"""The portal in a real browser (Playwright driving Debian's chromium): sign in from the email, visit
every page and filter, act on them, and check each page with axe-core. Screenshots of each page are
kept in test-artifacts/screenshots/ for review."""

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, SIGN_IN, link_token, new_portal_client

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = ARTIFACTS / "screenshots"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it.", pytrace=False
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


def check(page, name: str) -> None:
    """A screenshot, and no serious or critical accessibility violations."""
    from axe_playwright_python.sync_playwright import Axe

    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    result = Axe().run(page)
    serious = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert not serious, (name, serious)


def test_the_whole_portal_in_a_browser(stack, browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    base = stack.url

    page.goto(f"{base}/login")
    check(page, "01-login")
    before = stack.outbox.count("demo@example.com", SIGN_IN)
    page.fill("#email", "demo@example.com")
    page.click("text=Send magic link")
    page.wait_for_selector("text=Check your email")
    check(page, "02-check-email")
    token = link_token(stack.outbox.wait_for("demo@example.com", before + 1, subject=SIGN_IN)[-1])
    page.goto(f"{base}/login/verify?token={token}")
    check(page, "03-verify")
    page.click("button:has-text('Continue to your portal')")
    page.wait_for_url(f"{base}/dashboard")
    assert page.inner_text("[data-testid=outstanding]") == "$2,635.00"
    check(page, "04-dashboard")

    page.click("nav >> text=Invoices")
    for status, label in (("unpaid", "Unpaid"), ("overdue", "Overdue"), ("paid", "Paid"), ("all", "All")):
        page.click(f'.filters >> text="{label}"')
        page.wait_for_url(re.compile(f"status={status}"))
        check(page, f"05-invoices-{status}")
    page.select_option("#sort", "-amount")
    page.click("text=Apply")
    page.click(".filters >> text=Overdue")
    page.click("table >> a")
    page.wait_for_selector("[data-testid=balance]")
    check(page, "06-invoice")
    page.fill("#body", "Checking with accounts payable.")
    page.click("text=Post comment")
    page.wait_for_selector("text=Checking with accounts payable.")
    with page.expect_download() as download:
        page.click("text=Download PDF")
    assert download.value.suggested_filename.endswith(".pdf")

    page.click("nav >> text=Quotes")
    for label in ("Pending", "Accepted", "Declined", "Expired", "All"):
        page.click(f'.filters >> text="{label}"')
        check(page, f"07-quotes-{label.lower()}")
    page.click("nav >> text=Payments")
    check(page, "08-payments")
    page.click(".filters >> text=Retainer payments")
    check(page, "08-payments-retainer")
    page.click("main >> text=Credit notes")  # beside the saved cards
    page.wait_for_selector("[data-testid=credit-available]")
    check(page, "08-credit-notes")
    page.click("[data-testid=credit-notes] >> a >> nth=0")
    page.wait_for_selector("[data-testid=verification-code]")
    check(page, "08-credit-note")
    with page.expect_download() as download:
        page.click("text=Download PDF")
    assert download.value.suggested_filename.startswith("CN-") and download.value.suggested_filename.endswith(".pdf")
    page.click("nav >> text=Statement")
    page.fill("#from", "2020-01-01")
    page.click("text=Show")
    check(page, "09-statement")
    page.click("nav >> text=Profile")
    check(page, "10-profile")
    page.click("nav >> text=Contact us")
    check(page, "11-contact")
    page.fill("#subject", "Hello from the browser")
    page.fill("#message", "Just saying hi.")
    page.click("text=Send")
    page.wait_for_selector("text=Your message is on its way")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the links are in the menu
    page.click("summary:has-text('Menu')")
    page.click("nav >> text=Dashboard")
    check(page, "12-dashboard-phone")

    page.click("summary:has-text('Menu')")
    page.click("text=Sign out")
    page.wait_for_url(re.compile("/login"))
    page.goto(f"{base}/dashboard")
    assert "/login" in page.url
    page.goto(f"{base}/no/such/page")
    check(page, "13-not-found")
    context.close()


def test_a_client_acts_in_the_portal_then_opens_an_email_link(stack, browser):
    """Accept and decline quotes, edit the profile, book and cancel a slot, review, sign out; then the
    invoice email's one-document link, without signing in."""
    made = new_portal_client(stack, "Browser Buyer Ltd", "browser-buyer@example.org", invoices=1, quotes=2)
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    base = stack.url
    before = stack.outbox.count("browser-buyer@example.org", SIGN_IN)
    page.goto(f"{base}/login")
    page.fill("#email", "browser-buyer@example.org")
    page.click("text=Send magic link")
    page.wait_for_selector("text=Check your email")
    token = link_token(stack.outbox.wait_for("browser-buyer@example.org", before + 1, subject=SIGN_IN)[-1])
    page.goto(f"{base}/login/verify?token={token}")
    page.click("button:has-text('Continue to your portal')")
    page.wait_for_url(f"{base}/dashboard")

    first, second = (q["id"] for q in made["quotes"])
    page.goto(f"{base}/quotes/{first}")
    check(page, "20-quote-pending")
    page.fill("#signature_name", "Bea Buyer")
    page.click("button:has-text('Accept')")
    page.wait_for_selector("text=Confirm acceptance")
    check(page, "21-quote-confirm")
    page.click("button:has-text('Confirm acceptance')")
    page.wait_for_selector(".badge.accepted")
    page.goto(f"{base}/quotes/{second}")
    page.fill("#reason", "Not this year")
    page.click("button:has-text('Decline')")
    page.wait_for_selector(".badge.rejected")
    check(page, "22-quote-declined")

    page.click("nav >> text=Profile")
    page.fill("#phone", "+1 555 0123")
    page.click("button:has-text('Save')")
    page.wait_for_selector("[role=status]")
    assert page.input_value("#phone") == "+1 555 0123"

    page.click("nav >> text=Bookings")
    check(page, "23-bookings")
    page.click("text=Choose a time")
    check(page, "24-booking-slots")
    page.locator("input[name=start]").first.check()
    page.click("button:has-text('Continue')")
    check(page, "25-booking-confirm")
    page.click("button:has-text('Confirm booking')")
    page.wait_for_selector("text=Your booking is confirmed")
    assert page.locator("[data-testid=booking]").count() == 1
    check(page, "26-booked")
    page.click("[data-testid=booking] >> button:has-text('Cancel')")
    page.wait_for_selector("text=Your booking is cancelled")
    assert page.locator("[data-testid=booking]").count() == 0

    page.goto(f"{base}/review")
    check(page, "27-review")
    page.check("input[name=rating][value='5']")
    page.fill("#message", "Lovely to work with.")
    page.click("button:has-text('Send review')")
    page.wait_for_selector("text=Thank you")
    page.click("text=Sign out")
    page.wait_for_url(re.compile("/login"))
    context.close()

    invoice = made["invoices"][0]
    mail = stack.outbox.wait_for("browser-buyer@example.org", subject=invoice["number"])[-1]
    link = re.search(r"https?://\S+/i/[A-Za-z0-9_-]+", mail.get_body(("plain",)).get_content()).group(0)
    stranger = browser.new_context(viewport={"width": 390, "height": 844})
    page = stranger.new_page()
    page.goto(link.replace(link.split("/i/")[0], base))
    page.wait_for_selector("[data-testid=balance]")
    assert invoice["number"] in page.inner_text("h1")
    check(page, "28-token-invoice-phone")
    with page.expect_download() as download:
        page.click("text=Download PDF")
    assert download.value.suggested_filename == f"{invoice['number']}.pdf"
    page.goto(f"{base}/dashboard")
    assert "/login" in page.url  # the link opened one invoice, not the account
    stranger.close()

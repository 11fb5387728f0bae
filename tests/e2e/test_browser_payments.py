"""Paying in a real browser: Playwright drives Debian's chromium through the pay pages, with
localstripe's Stripe.js stand-in collecting the card. Every pay page is checked with axe-core, and
after every test what billing recorded equals what localstripe charged, per client."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SIGN_IN, link_token, new_portal_client
from tests.e2e.payments_support import CARD_DECLINED, CARD_OK, assert_ledger_matches_stripe, query
from tests.e2e.test_browser import browser, check  # noqa: F401 - the browser fixture, shared

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def ledger_check(stack):
    yield
    assert_ledger_matches_stripe(stack)


@pytest.fixture
def page(stack, browser):  # noqa: F811 - the fixture imported above
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    yield context.new_page()
    context.close()


def sign_in(page, stack, email: str) -> None:
    before = stack.outbox.count(email, SIGN_IN)
    page.goto(f"{stack.url}/login")
    page.fill("#email", email)
    page.click("text=Send magic link")
    page.wait_for_selector("text=Check your email")
    token = link_token(stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1])
    page.goto(f"{stack.url}/login/verify?token={token}")
    page.click("button:has-text('Continue to your portal')")
    page.wait_for_url(f"{stack.url}/dashboard")


def enter_card(page, number: str) -> None:
    """localstripe's card element: plain inputs named by their placeholders."""
    element = page.locator("#card-element")
    element.locator("input[placeholder=number]").fill(number)
    element.locator("input[placeholder=exp_month]").fill("12")
    element.locator("input[placeholder=exp_year]").fill("31")
    element.locator("input[placeholder=cvc]").fill("123")
    element.locator("input[placeholder=postal_code]").fill("10115")


def proceed_and_pay(page, number: str | None = CARD_OK, shots: str = "") -> None:
    page.click("button:has-text('Proceed to payment')")
    page.wait_for_url(re.compile(r"/pay/[0-9a-f-]+$"))
    page.wait_for_selector("#card-element input", state="attached")  # hidden when a saved card is chosen
    if shots:
        check(page, f"{shots}-card")
    if number:
        enter_card(page, number)
    page.click("#pay-form button[type=submit]")


def thank_you(page, shots: str = "") -> None:
    page.wait_for_selector("h1:has-text('Thank you')", timeout=20_000)
    if shots:
        check(page, f"{shots}-done")


def test_pay_one_invoice_with_a_new_card(stack, page):
    made = new_portal_client(stack, "Browser Payer", "browserpay@example.com", invoices=1)
    invoice = made["invoices"][0]
    sign_in(page, stack, "browserpay@example.com")
    page.goto(f"{stack.url}/invoices/{invoice['id']}")
    page.get_by_role("link", name="Pay now", exact=True).click()
    page.wait_for_selector("h1:has-text('Review your payment')")
    assert "$100.00" in page.inner_text("[data-testid=total-due]")
    check(page, "20-pay-review")
    proceed_and_pay(page, CARD_OK, shots="21-pay")
    thank_you(page, shots="22-pay")
    page.goto(f"{stack.url}/invoices/{invoice['id']}")
    page.wait_for_selector("text=Paid")
    assert page.locator("text=Pay now").count() == 0
    assert (
        query(
            stack,
            "payments",
            "SELECT count(*) FROM payment_methods WHERE client_id = %s AND saved",
            made["client"]["id"],
        )[0][0]
        == 0
    )  # not asked to keep the card
    page.goto(f"{stack.url}/payments")
    payments = page.inner_text("main")
    assert "Visa ending 4242" in payments and "pi_" not in payments  # the card paid with, not Stripe's id


def test_pay_all_outstanding_from_the_dashboard(stack, page):
    made = new_portal_client(stack, "Pay All Corp", "payall@example.com", invoices=2)
    sign_in(page, stack, "payall@example.com")
    assert "$300.00" in page.inner_text("[data-testid=outstanding]")
    page.get_by_role("link", name="Pay all", exact=True).click()
    page.wait_for_selector("h1:has-text('Review your payment')")
    assert "$300.00" in page.inner_text("[data-testid=total-due]")
    for inv in made["invoices"]:
        assert inv["number"] in page.inner_text("main")
    proceed_and_pay(page, CARD_OK)
    thank_you(page)
    page.goto(f"{stack.url}/dashboard")
    assert "$0.00" in page.inner_text("[data-testid=outstanding]")
    statuses = query(stack, "billing", "SELECT status FROM invoices WHERE client_id = %s", made["client"]["id"])
    assert sorted(s for (s,) in statuses) == ["paid", "paid"]


def test_pay_part_of_an_invoice(stack, page):
    made = new_portal_client(stack, "Partial Payer", "partial@example.com", invoices=1)
    invoice = made["invoices"][0]
    sign_in(page, stack, "partial@example.com")
    page.goto(f"{stack.url}/pay?invoice={invoice['id']}")
    page.fill("#amount", "40.00")
    proceed_and_pay(page, CARD_OK)
    thank_you(page)
    page.goto(f"{stack.url}/invoices/{invoice['id']}")
    assert "$60.00" in page.inner_text("[data-testid=balance]")
    assert "partially paid" in page.inner_text("main").lower()


def test_saved_cards_add_default_remove_and_pay_with_one(stack, page):
    made = new_portal_client(stack, "Card Keeper", "cards@example.com", invoices=1)
    sign_in(page, stack, "cards@example.com")
    page.goto(f"{stack.url}/payment-methods")
    check(page, "23-cards-empty")
    for number in (CARD_OK, "5555555555554444"):
        page.wait_for_selector("#card-element input")
        enter_card(page, number)
        page.click("#card-form button[type=submit]")
        page.wait_for_selector("text=Your card was saved.")
    first, second = page.locator("[data-testid=card-4242]"), page.locator("[data-testid=card-4444]")
    assert "Default" in first.inner_text() and "Default" not in second.inner_text()
    check(page, "24-cards")
    second.locator("button:has-text('Make default')").click()
    page.wait_for_selector("text=Your default card was changed.")
    assert "Default" in page.locator("[data-testid=card-4444]").inner_text()
    page.locator("[data-testid=card-4242] button:has-text('Remove')").click()
    page.wait_for_selector("text=The card was removed.")
    assert page.locator("[data-testid=card-4242]").count() == 0
    page.goto(f"{stack.url}/pay?invoice={made['invoices'][0]['id']}")
    proceed_and_pay(page, None)  # the saved default card is chosen already
    thank_you(page)
    [(card,)] = query(
        stack, "payments", "SELECT payment_method_id FROM attempts WHERE client_id = %s", made["client"]["id"]
    )
    assert query(stack, "payments", "SELECT last4 FROM payment_methods WHERE id = %s", card)[0][0] == "4444"


def test_a_declined_card_shows_a_clear_error_and_records_nothing(stack, page):
    made = new_portal_client(stack, "Declined Ltd", "declined@example.com", invoices=1)
    invoice = made["invoices"][0]
    sign_in(page, stack, "declined@example.com")
    page.goto(f"{stack.url}/pay?invoice={invoice['id']}")
    proceed_and_pay(page, CARD_DECLINED)
    page.wait_for_selector("#pay-message.error")
    assert "declined" in page.inner_text("#pay-message").lower()
    check(page, "25-pay-declined")
    assert page.locator("#pay-form button[type=submit]").is_enabled()  # can try another card
    assert (
        query(stack, "billing", "SELECT count(*) FROM payments WHERE client_id = %s", made["client"]["id"])[0][0] == 0
    )
    assert query(stack, "billing", "SELECT status FROM invoices WHERE id = %s", invoice["id"])[0][0] == "sent"

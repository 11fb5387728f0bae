"""Paying by bank in a real browser: Playwright drives Debian's chromium through the pay pages with an
IBAN. The bank's answer is held by localstripe's SEPA adapter until the test settles the debit, so
the page shows "Processing" for as long as the test says, then "Paid". Pages are checked with axe-core,
and billing's ledger equals what localstripe charged, per client, after the test."""

from __future__ import annotations

import re

import pytest
import requests

from tests.e2e.payments_support import assert_ledger_matches_stripe, query
from tests.e2e.test_bank_debit import euro_client, settle
from tests.e2e.test_browser import browser, check  # noqa: F401 - the browser fixture, shared
from tests.e2e.test_browser_payments import sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def held_debits(stack):
    requests.post(f"{stack.env['STRIPE_API_BASE']}/_config/sepa", json={"hold": True}, timeout=10).raise_for_status()
    yield
    requests.post(f"{stack.env['STRIPE_API_BASE']}/_config/sepa", json={"hold": False}, timeout=10)
    assert_ledger_matches_stripe(stack)


@pytest.fixture
def page(stack, browser):  # noqa: F811 - the fixture imported above
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    yield context.new_page()
    context.close()


def test_pay_an_invoice_with_an_iban_see_processing_then_paid(stack, page):
    made = euro_client(stack, "Browser Bank GmbH", "browserbank@example.com")
    invoice = made["invoices"][0]
    sign_in(page, stack, "browserbank@example.com")
    page.goto(f"{stack.url}/invoices/{invoice['id']}")
    page.get_by_role("link", name="Pay now", exact=True).click()
    page.click("button:has-text('Proceed to payment')")
    page.wait_for_url(re.compile(r"/pay/[0-9a-f-]+$"))
    attempt_id = page.url.rsplit("/", 1)[1]
    assert "Acme Studio and Stripe" in page.inner_text("[data-testid=mandate-text]")
    page.fill("#holder_name", "Bruno Browser")
    page.fill("#bank_email", "bruno@example.com")
    page.fill("#iban", "DE89 3704 0044 0532 0130 00")
    page.check("input[name=accept_mandate]")
    check(page, "60-pay-by-bank")
    page.click("button:has-text('by direct debit')")
    page.wait_for_url(f"{stack.url}/pay/{attempt_id}/done")
    page.wait_for_selector("h1:has-text('Processing your payment')")
    assert "few business days" in page.inner_text("[data-testid=pay-status]")
    check(page, "61-pay-by-bank-processing")
    status = page.locator(".badge").first
    page.goto(f"{stack.url}/invoices/{invoice['id']}")
    page.wait_for_selector("[data-testid=processing]")
    assert status.inner_text().lower() == "processing"
    assert page.get_by_role("link", name="Pay now", exact=True).count() == 0
    # The bank settles when the test says so; the confirmation page then shows the payment, by itself.
    page.goto(f"{stack.url}/pay/{attempt_id}/done")
    page.wait_for_selector("h1:has-text('Processing your payment')")
    settle(stack, attempt_id)
    page.wait_for_selector("h1:has-text('Thank you')", timeout=20_000)
    page.goto(f"{stack.url}/invoices/{invoice['id']}")
    assert page.locator(".badge").first.inner_text().lower() == "paid"
    assert query(stack, "billing", "SELECT status FROM invoices WHERE id = %s", invoice["id"]) == [("paid",)]

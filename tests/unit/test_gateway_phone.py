"""The portal's pages for phones: the menu that needs no script, and the dashboard's invoice links."""
from tests.unit.test_gateway import DASHBOARD, SESSION, WORKSPACE, client

COOKIES = {"portal_session": "sid"}
CLIENT = {**DASHBOARD["client"], "locale": "en_US", "timezone": "America/New_York"}


def statement_answer(today: str):
    """Billing's statement: without "from" the last three months (roughly), without "to" ending today."""
    def statement(_ws, _client, start, end):
        return {**CLIENT, "client": CLIENT, "currency": "USD", "from": start or "2000-01-01", "to": end or today,
                "opening_balance": 0, "closing_balance": 0, "entries": []}
    return statement


def portal(today: str = "2026-11-23", locale: str = "en_US"):
    return client({("auth", "validate_session"): {**SESSION, "locale": locale},
                   ("billing", "statement"): statement_answer(today),
                   ("billing", "client_dashboard"): {**DASHBOARD, "recent_invoices": [
                       {"id": "i1", "number": "INV-0042", "display_status": "sent", "issue_date": "2026-11-01",
                        "due_date": "2026-11-15", "total": 1000, "balance": 1000, "currency": "USD"}]},
                   ("billing", "get_workspace"): WORKSPACE})


def test_the_menu_is_a_details_element_that_marks_the_current_section():
    c, _ = portal()
    page = c.simulate_get("/statement", cookies=COOKIES)
    menu = page.text.split('<details class="menu">')[1].split("</details>")[0]
    assert "<summary>" in menu and "Menu</summary>" in menu and "<script" not in page.text
    assert '<a href="/statement" aria-current="page">Statement</a>' in menu
    assert '<a href="/invoices">Invoices</a>' in menu and "Sign out" in menu


def test_the_dashboards_recent_invoice_numbers_link_to_their_pages():
    c, _ = portal()
    page = c.simulate_get("/dashboard", cookies=COOKIES)
    assert '<a href="/invoices/i1">INV-0042</a>' in page.text
    assert 'data-label="Number"' in page.text and '<table class="stack">' in page.text

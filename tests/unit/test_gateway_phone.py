"""The portal's pages for phones: the menu that needs no script, the dashboard's invoice links, and the
statement's quick picks, dated from billing's today (the business's date), never the gateway's clock."""

from datetime import date

import pytest

from services.gateway.pages.statement import statement_periods
from tests.unit.test_gateway import DASHBOARD, SESSION, WORKSPACE, client

CLIENT = {**DASHBOARD["client"], "locale": "en_US", "timezone": "America/New_York"}


def statement_answer(today: str):
    """Billing's statement: without "from" the last three months (roughly), without "to" ending today,
    and always saying what day it is for the business."""

    def statement(_ws, _client, start, end):
        return {
            **CLIENT,
            "client": CLIENT,
            "currency": "USD",
            "from": start or "2000-01-01",
            "to": end or today,
            "today": today,
            "opening_balance": 0,
            "closing_balance": 0,
            "entries": [],
        }

    return statement


def portal(today: str = "2026-11-23", locale: str = "en_US"):
    return client(
        {
            ("billing", "statement"): statement_answer(today),
            ("billing", "client_dashboard"): {
                **DASHBOARD,
                "recent_invoices": [
                    {
                        "id": "i1",
                        "number": "INV-0042",
                        "display_status": "sent",
                        "issue_date": "2026-11-01",
                        "due_date": "2026-11-15",
                        "total": 1000,
                        "balance": 1000,
                        "currency": "USD",
                    }
                ],
            },
            ("billing", "get_workspace"): WORKSPACE,
        },
        session={**SESSION, "locale": locale},
    )


def statement_calls(rpc) -> list:
    return [call[2][2:] for call in rpc.calls if call[:2] == ("billing", "statement")]


QUICK_PICKS = {
    "This month": 'href="/statement?from=2026-11-01"',
    "Last month": 'href="/statement?from=2026-10-01&amp;to=2026-10-31"',
    "Last 3 months": 'href="/statement"',
    "This year": 'href="/statement?from=2026-01-01"',
    "All time": 'href="/statement?from=1900-01-01"',
}


def test_the_statement_offers_quick_picks_dated_from_billings_today():
    c, rpc = portal()
    page = c.simulate_get("/statement", cookies=c.session_cookie)
    assert page.status_code == 200
    for label, href in QUICK_PICKS.items():
        assert f"{href} " in page.text and f">{label}</a>" in page.text, label
    assert 'href="/statement" aria-current="page" class="active">Last 3 months</a>' in page.text
    assert statement_calls(rpc) == [(None, None)]  # billing's own today, one call


def test_a_statement_with_its_own_end_is_dated_from_billings_today_in_one_call():
    """A period that ends before today (last month, or dates typed in): billing still says what day it is."""
    c, rpc = portal()
    page = c.simulate_get("/statement", params={"from": "2026-10-01", "to": "2026-10-31"}, cookies=c.session_cookie)
    assert page.status_code == 200
    for label, href in QUICK_PICKS.items():
        assert href in page.text, label
    assert 'aria-current="page" class="active">Last month</a>' in page.text
    assert page.text.count('aria-current="page" class="active"') == 1
    assert statement_calls(rpc) == [("2026-10-01", "2026-10-31")]


def test_a_period_that_ends_today_is_billings_to_fill_in():
    c, rpc = portal()
    page = c.simulate_get("/statement", params={"from": "2026-01-01"}, cookies=c.session_cookie)
    assert 'aria-current="page" class="active">This year</a>' in page.text
    assert 'value="2026-11-23"' in page.text  # the "to" field shows billing's end
    assert statement_calls(rpc) == [("2026-01-01", None)]


@pytest.mark.parametrize(
    "today,this_month,last_month,this_year",
    [
        ("2027-01-01", "2027-01-01", ("2026-12-01", "2026-12-31"), "2027-01-01"),
        ("2028-03-31", "2028-03-01", ("2028-02-01", "2028-02-29"), "2028-01-01"),
        ("2026-03-01", "2026-03-01", ("2026-02-01", "2026-02-28"), "2026-01-01"),
    ],
)
def test_quick_picks_across_month_and_year_ends(today, this_month, last_month, this_year):
    periods = dict(statement_periods(date.fromisoformat(today)))
    assert periods["this_month"] == {"from": this_month}
    assert periods["last_month"] == {"from": last_month[0], "to": last_month[1]}
    assert periods["this_year"] == {"from": this_year}
    assert periods["last_3_months"] == {}


def test_in_january_this_month_and_this_year_are_both_shown_as_current():
    c, _ = portal(today="2027-01-15")
    page = c.simulate_get("/statement", params={"from": "2027-01-01"}, cookies=c.session_cookie)
    assert page.text.count('aria-current="page" class="active"') == 2


def test_quick_picks_and_the_menu_in_german():
    c, _ = portal(locale="de_DE")
    page = c.simulate_get("/statement", cookies=c.session_cookie)
    for text in (
        "Dieser Monat",
        "Letzter Monat",
        "Letzte 3 Monate",
        "Dieses Jahr",
        "Gesamter Zeitraum",
        'aria-label="Zeitraum"',
        "Menü",
        "In diesem Zeitraum gab es keine Kontobewegungen.",
    ):
        assert text in page.text, text


def test_the_menu_is_a_details_element_that_marks_the_current_section():
    c, _ = portal()
    page = c.simulate_get("/statement", cookies=c.session_cookie)
    menu = page.text.split('<details class="menu">')[1].split("</details>")[0]
    assert "<summary>" in menu and "Menu</summary>" in menu and "<script" not in page.text
    assert '<a href="/statement" aria-current="page">Statement</a>' in menu
    assert '<a href="/invoices">Invoices</a>' in menu and "Sign out" in menu


def test_the_dashboards_recent_invoice_numbers_link_to_their_pages():
    c, _ = portal()
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert '<a href="/invoices/i1">INV-0042</a>' in page.text
    assert 'data-label="Number"' in page.text and '<table class="stack">' in page.text

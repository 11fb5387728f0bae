"""The statement page reconciles its closing balance with its aging, from billing's figures: open
invoices less unapplied credit and retainer held, when billing says they add up; for a period that
ended before today, one sentence on the two dates instead; from an older billing, neither."""

import re
from pathlib import Path

from services.gateway import views
from tests.unit.test_gateway import SESSION, WORKSPACE, client
from tests.unit.test_gateway_phone import CLIENT

AGING = {"currency": "USD", "current": 113500, "days_1_30": 150000, "days_31_60": 0, "days_61_90": 0}
AGING["days_over_90"], AGING["total"] = 0, 263500


def page(locale="en_US", **statement):
    answer = {
        **CLIENT,
        "client": CLIENT,
        "currency": "USD",
        "from": "2026-08-23",
        "to": "2026-11-23",
        "today": "2026-11-23",
        "opening_balance": 0,
        "closing_balance": 203500,
        "entries": [],
        "aging": AGING,
        "unapplied_credit": 10000,
        "retainer_held": 50000,
        "reconciles": True,
        **statement,
    }
    c, _ = client(
        {("billing", "statement"): answer, ("billing", "get_workspace"): WORKSPACE},
        session={**SESSION, "locale": locale},
    )
    response = c.simulate_get("/statement", cookies=c.session_cookie)
    assert response.status_code == 200
    return response.text


def reconciliation(text: str) -> str | None:
    found = re.search(r'data-testid="reconciliation">(.*?)</p>', text, re.S)
    return found and re.sub(r"\s+", " ", found.group(1))


def dollars(text: str) -> list[int]:
    return [int(d.replace(",", "").replace(".", "")) for d in re.findall(r"\$([\d,]+\.\d\d)", text)]


def test_open_invoices_less_credit_and_retainer_make_the_closing_balance():
    line = reconciliation(page())
    assert line == (
        "Open invoices $2,635.00 − credit not yet applied $100.00 − retainer held $500.00 = closing balance $2,035.00"
    )
    open_total, credit, retainer, closing = dollars(line)
    assert open_total - credit - retainer == closing


def test_the_reconciliation_reads_in_german():
    line = reconciliation(page("de_DE"))
    assert line.startswith("Offene Rechnungen ") and "Vorschussguthaben" in line and "Endsaldo" in line


def test_a_period_that_ended_before_today_says_what_each_figure_is_as_of():
    line = reconciliation(page(to="2026-10-31", reconciles=False, closing_balance=150000))
    assert line.startswith("The amounts owed above are as of today; the closing balance is as of ")
    assert "2026" in line and "$" not in line


def test_figures_that_do_not_add_up_are_not_shown_as_if_they_did():
    assert reconciliation(page(reconciles=False, closing_balance=210500)) is None


def test_an_older_billing_without_the_figures_shows_the_page_as_before():
    older = page(unapplied_credit=None, retainer_held=None, reconciles=None)
    assert reconciliation(older) is None and "$2,035.00" in older


def print_heading(text: str) -> str:
    found = re.search(r'<div class="print-only print-heading" data-testid="print-heading">(.*?)</div>', text, re.S)
    assert found, "the statement has a heading for paper"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", found.group(1))).strip()


def test_the_printed_statement_names_the_business_the_client_and_the_period():
    text = page()
    assert print_heading(text) == f"Acme Statement for {CLIENT['name']} Period: Aug 23, 2026 to Nov 23, 2026"
    # shown on paper only: portal.css hides .print-only on screen and shows it when printing
    css = (Path(views.__file__).parent / "static" / "portal.css").read_text()
    assert re.search(r"^\.print-only \{ display: none; \}", css, re.M)
    assert re.search(r"@media print \{[^@]*\n  \.print-only \{ display: block; \}", css)


def test_the_printed_statement_heading_reads_in_german():
    heading = print_heading(page(locale="de_DE"))
    assert heading == f"Acme Kontoauszug für {CLIENT['name']} Zeitraum: 23.08.2026 bis 23.11.2026"


def test_a_payment_named_by_its_method_reads_as_the_payments_page_names_it():
    entries = [
        {"date": "2026-11-02", "kind": "payment", "reference": "cash", "amount": -5000, "balance": 5000},
        {"date": "2026-11-03", "kind": "payment", "reference": "Visa ending 4242", "amount": -7000, "balance": 0},
        {"date": "2026-11-04", "kind": "payment", "reference": "SEPA Direct Debit ending 3000", "amount": -9000},
    ]
    entries[2]["balance"] = -9000
    english, german = page(entries=entries), page("de_DE", entries=entries)
    assert ">Cash</td>" in english and ">cash</td>" not in english
    assert ">Visa ending 4242</td>" in english and ">SEPA Direct Debit ending 3000</td>" in english
    assert ">Bar</td>" in german

"""The statement of account reconciles its closing balance with its aging: open invoices less the
client's unapplied credit and retainer held make the closing balance, and it says so only when exact."""

import pytest

from services.billing import handlers as h
from tests.unit.test_billing_handlers import NOW, db, ws  # noqa: F401 - shared fixtures
from tests.unit.test_billing_refunds import _card, _invoice, _refund


def _seeded_like(db, ws_id, client):
    """As the demo client: open invoices, one paid, a paid retainer and a credit note not yet applied."""
    _invoice(db, ws_id, client, 150000, due="2026-11-10")
    _invoice(db, ws_id, client, 113500)
    paid = _invoice(db, ws_id, client, 80000)
    db(h.record_payment, ws_id, {"invoice_id": paid["id"], "amount": 80000})
    retainer = db(
        h.create_invoice,
        ws_id,
        {
            "client_id": client,
            "kind": "retainer",
            "send": True,
            "lines": [{"description": "Retainer", "unit_price": 50000}],
        },
    )
    db(h.record_payment, ws_id, {"invoice_id": retainer["id"], "amount": 50000, "reference": "TRX-90001"})
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 10000, "reason": "Goodwill"})


def test_open_invoices_less_credit_and_retainer_make_the_closing_balance(db, ws):
    ws_id, client = ws
    _seeded_like(db, ws_id, client)
    st = db(h.statement, ws_id, client, "2026-01-01", None)
    assert st["to"] == st["today"] == "2026-11-23"
    assert (st["aging"]["total"], st["unapplied_credit"], st["retainer_held"]) == (263500, 10000, 50000)
    assert st["closing_balance"] == 203500 == st["aging"]["total"] - st["unapplied_credit"] - st["retainer_held"]
    assert st["reconciles"] is True
    dashboard = db(h.client_dashboard, ws_id, client)
    assert dashboard["credit_available"]["amount"] == st["unapplied_credit"]
    assert dashboard["retainer_available"]["amount"] == st["retainer_held"]


def test_a_period_that_ended_before_today_is_not_reconciled_with_todays_aging(db, ws):
    ws_id, client = ws
    _seeded_like(db, ws_id, client)
    st = db(h.statement, ws_id, client, "2026-01-01", "2026-10-31")
    assert st["reconciles"] is False
    assert st["unapplied_credit"] == 10000  # the figures are still there, as of today


def test_it_is_not_reconciled_while_an_archived_invoice_is_still_owed(db, ws):
    ws_id, client = ws
    _seeded_like(db, ws_id, client)
    owed = _invoice(db, ws_id, client, 7000)
    db(h.archive_invoice, ws_id, owed["id"])  # still a charge on the statement, out of the aging
    st = db(h.statement, ws_id, client, "2026-01-01", None)
    assert st["closing_balance"] == 210500 == st["aging"]["total"] - st["unapplied_credit"] - st["retainer_held"] + 7000
    assert st["reconciles"] is False
    db(h.archive_invoice, ws_id, owed["id"], archived=False)
    assert db(h.statement, ws_id, client, "2026-01-01", None)["reconciles"] is True


def test_it_is_not_reconciled_while_an_entry_is_dated_after_the_period(db, ws):
    """An invoice sent today but dated next month is owed now (the aging counts it) and on the
    statement from its date: a period ending today leaves it out, one that takes it in reconciles."""
    ws_id, client = ws
    _seeded_like(db, ws_id, client)
    db(
        h.create_invoice,
        ws_id,
        {
            "client_id": client,
            "send": True,
            "issue_date": "2026-12-05",
            "due_date": "2026-12-20",
            "lines": [{"description": "Work", "unit_price": 9000}],
        },
    )
    to_today = db(h.statement, ws_id, client, "2026-01-01", None)
    assert (to_today["to"], to_today["aging"]["total"], to_today["closing_balance"]) == ("2026-11-23", 272500, 203500)
    assert to_today["reconciles"] is False
    through_it = db(h.statement, ws_id, client, "2026-01-01", "2026-12-31")
    assert through_it["closing_balance"] == 212500 == 272500 - 10000 - 50000
    assert through_it["reconciles"] is True


def test_card_refunds_and_unapplied_card_money_still_reconcile(db, ws):
    ws_id, client = ws
    _seeded_like(db, ws_id, client)
    invoice = _invoice(db, ws_id, client, 20000)
    _card(db, ws_id, "pi_1", [(invoice, 20000)], amount=25000)  # 50.00 left over: credit
    _refund(db, ws_id, "re_1", "pi_1", 8000)  # the left-over first, then owed again on the invoice
    st = db(h.statement, ws_id, client, "2026-01-01", None)
    assert st["unapplied_credit"] == 10000
    assert st["closing_balance"] == st["aging"]["total"] - st["unapplied_credit"] - st["retainer_held"]
    assert st["reconciles"] is True


def _retainer(db, ws_id, client, amount):
    return db(
        h.create_invoice,
        ws_id,
        {
            "client_id": client,
            "kind": "retainer",
            "send": True,
            "lines": [{"description": "Retainer", "unit_price": amount}],
        },
    )


@pytest.mark.parametrize("policy", ["reopen", "credit"])
def test_a_card_refund_of_retainer_money_leaves_the_retainer_and_is_not_credited(db, ws, policy):
    """A retainer invoice is no charge on the statement: a card refund of what paid it takes the money
    out of the retainer held, and its entry alone gives back what the payment's entry took off."""
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"refund_policy": policy}})
    retainer = _retainer(db, ws_id, client, 50000)
    _card(db, ws_id, "pi_ret", [(retainer, 50000)])
    _refund(db, ws_id, "re_1", "pi_ret", 20000)
    st = db(h.statement, ws_id, client, "2026-01-01", None)
    assert [(e["kind"], e["amount"]) for e in st["entries"] if e["kind"] != "payment"] == [("refund", 20000)]
    assert (st["aging"]["total"], st["unapplied_credit"], st["retainer_held"]) == (0, 0, 30000)
    assert st["closing_balance"] == -30000 and st["reconciles"] is True
    dashboard = db(h.client_dashboard, ws_id, client)
    assert [dashboard[k]["amount"] for k in ("outstanding", "credit_available", "retainer_available")] == [0, 0, 30000]

    _refund(db, ws_id, "re_2", "pi_ret", 30000)  # the rest: nothing held, nothing owed either way
    st = db(h.statement, ws_id, client, "2026-01-01", None)
    assert (st["retainer_held"], st["closing_balance"], st["reconciles"]) == (0, 0, True)
    assert "credit" not in {e["kind"] for e in st["entries"]}


def test_a_refund_of_a_payment_of_an_invoice_and_a_retainer_credits_only_the_invoice(db, ws):
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"refund_policy": "credit"}})
    invoice = _invoice(db, ws_id, client, 20000)
    retainer = _retainer(db, ws_id, client, 50000)
    _card(db, ws_id, "pi_both", [(invoice, 20000), (retainer, 50000)])
    _refund(db, ws_id, "re_all", "pi_both", 70000)
    st = db(h.statement, ws_id, client, "2026-01-01", None)
    assert sorted((e["kind"], e["amount"]) for e in st["entries"]) == [
        ("credit", 20000),  # the invoice stays settled by a credit; the retainer is simply given back
        ("invoice", 20000),
        ("payment", 70000),
        ("refund", 70000),
    ]
    assert (st["aging"]["total"], st["unapplied_credit"], st["retainer_held"]) == (0, 0, 0)
    assert (st["closing_balance"], st["reconciles"]) == (0, True)


def test_retainer_money_spent_and_then_refunded_by_card_is_owed_back(db, ws):
    """The retainer paid an invoice, then its card payment was refunded: the invoice stays settled,
    the retainer held goes below zero by what was spent, and the statement owes that back."""
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"refund_policy": "credit"}})
    retainer = _retainer(db, ws_id, client, 50000)
    _card(db, ws_id, "pi_ret", [(retainer, 50000)])
    invoice = _invoice(db, ws_id, client, 12000)
    db(h.apply_retainer, ws_id, invoice["id"], 12000)
    _refund(db, ws_id, "re_1", "pi_ret", 50000)
    st = db(h.statement, ws_id, client, "2026-01-01", None)
    assert (st["aging"]["total"], st["unapplied_credit"], st["retainer_held"]) == (0, 0, -12000)
    assert (st["closing_balance"], st["reconciles"]) == (12000, True)

"""The client dashboard's figures, worked out by hand from one client's mixed history: open, overdue,
partly paid, paid, void, draft and archived invoices, a retainer, a credit note, quotes."""

from datetime import timedelta

import pytest

from chassis.db import UnitOfWork
from chassis.errors import Invalid
from services.billing import handlers as h
from services.billing.tables import invoices
from tests.unit.test_billing_handlers import NOW, db, ws  # noqa: F401 - shared fixtures


def _invoice(db, ws_id, client, amount, issued, due, send=True, kind="standard"):
    return db(
        h.create_invoice,
        ws_id,
        {
            "client_id": client,
            "kind": kind,
            "send": send,
            "issue_date": issued,
            "due_date": due,
            "lines": [{"description": "Work", "unit_price": amount}],
        },
    )


def _history(db, ws_id, client):
    """NOW is 2026-11-23: a due date before it is past."""
    made = {
        "overdue": _invoice(db, ws_id, client, 10000, "2026-10-01", "2026-11-01"),
        "partly_paid": _invoice(db, ws_id, client, 5000, "2026-10-05", "2026-12-31"),
        "paid": _invoice(db, ws_id, client, 3000, "2026-10-10", "2026-11-10"),
        "void": _invoice(db, ws_id, client, 2500, "2026-10-12", "2026-11-12"),
        "archived": _invoice(db, ws_id, client, 4000, "2026-10-15", "2026-11-15"),
        "draft": _invoice(db, ws_id, client, 9999, "2026-11-20", "2026-11-21", send=False),
        "retainer": _invoice(db, ws_id, client, 6000, "2026-10-20", "2026-11-20", kind="retainer"),
    }
    db(h.void_invoice, ws_id, made["void"]["id"])
    db(h.archive_invoice, ws_id, made["archived"]["id"])
    db(h.record_payment, ws_id, {"invoice_id": made["partly_paid"]["id"], "amount": 2000}, now=NOW - timedelta(days=3))
    db(
        h.record_payment,
        ws_id,
        {"invoice_id": made["paid"]["id"], "amount": 3000, "reference": "latest"},
        now=NOW - timedelta(days=1),
    )
    db(h.record_payment, ws_id, {"invoice_id": made["retainer"]["id"], "amount": 6000}, now=NOW - timedelta(days=2))
    db(h.apply_retainer, ws_id, made["overdue"]["id"], 1000)
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 1500, "reason": "Goodwill"})
    db(h.apply_credit, ws_id, made["partly_paid"]["id"], 500)
    db(
        h.create_quote,
        ws_id,
        {
            "client_id": client,
            "send": True,
            "issue_date": "2026-11-01",
            "lines": [{"description": "Plan", "unit_price": 800}],
        },
    )
    db(h.create_quote, ws_id, {"client_id": client, "lines": [{"description": "Draft", "unit_price": 900}]})
    return made


def test_the_dashboard_adds_up_what_the_client_owes_and_holds(db, ws):
    ws_id, client = ws
    made = _history(db, ws_id, client)
    dash = db(h.client_dashboard, ws_id, client)

    # owed in the client's currency: 10000 - 1000 retainer, and 5000 - 2000 paid - 500 credit
    assert dash["outstanding"] == {"amount": 9000 + 2500, "currency": "USD"}
    # past due and still owed: the first invoice; the paid, void and archived ones do not count
    assert dash["overdue"] == {"count": 1, "amount": 9000, "currency": "USD"}
    assert dash["credit_available"] == {"amount": 1500 - 500, "currency": "USD"}
    assert dash["retainer_available"] == {"amount": 6000 - 1000, "currency": "USD"}
    assert dash["last_payment"]["amount"] == 3000
    assert dash["last_payment"]["received_at"] == (NOW - timedelta(days=1)).isoformat()
    # newest first; no draft and no archived invoice
    assert [i["number"] for i in dash["recent_invoices"]] == [
        made[k]["number"] for k in ("retainer", "void", "paid", "partly_paid", "overdue")
    ]
    assert [i["display_status"] for i in dash["recent_invoices"]] == [
        "paid",
        "void",
        "paid",
        "partially_paid",
        "overdue",
    ]
    assert [q["status"] for q in dash["recent_quotes"]] == ["sent"]
    assert dash["recent_activity"] == db(h.list_activity, ws_id, client, 10)
    assert dash["client"]["id"] == client and dash["business"]["name"] == "Acme"


def test_the_dashboard_balances_agree_with_client_balances(db, ws):
    ws_id, client = ws
    _history(db, ws_id, client)
    dash, balances = db(h.client_dashboard, ws_id, client), db(h.client_balances, ws_id, client)
    assert balances == {
        "currency": "USD",
        "outstanding": dash["outstanding"]["amount"],
        "credit_available": dash["credit_available"]["amount"],
        "retainer_available": dash["retainer_available"]["amount"],
    }


def test_a_new_client_has_an_empty_dashboard(db, ws):
    ws_id, client = ws
    dash = db(h.client_dashboard, ws_id, client)
    assert (
        dash["outstanding"]["amount"],
        dash["overdue"]["count"],
        dash["overdue"]["amount"],
        dash["credit_available"]["amount"],
        dash["retainer_available"]["amount"],
    ) == (0, 0, 0, 0, 0)
    assert (dash["last_payment"], dash["recent_invoices"], dash["recent_quotes"]) == (None, [], [])


def test_totals_never_mix_currencies(db, ws):
    """A client's currency is fixed once it has documents (update_client refuses), but an invoice in
    another currency (written straight to the database, say by an import) is still never added in.
    A write that bypasses the handlers bypasses the client's summary too: the repair rebuilds it."""
    ws_id, client = ws
    _invoice(db, ws_id, client, 10000, "2026-10-01", "2026-11-01")
    eur = _invoice(db, ws_id, client, 7000, "2026-10-02", "2026-11-02")
    with UnitOfWork(db.engine) as uow:
        uow.execute(invoices.update().where(invoices.c.id == eur["id"]).values(currency="EUR"))
        uow.commit()
    repaired = db(h.repair_client_summaries, ws_id)
    assert [(d["client_id"], d["figures"]) for d in repaired["drifted"]] == [
        (client, {"outstanding": {"was": 17000, "now": 10000}})
    ]
    dash = db(h.client_dashboard, ws_id, client)
    assert dash["outstanding"] == {"amount": 10000, "currency": "USD"}
    assert dash["overdue"] == {"count": 2, "amount": 10000, "currency": "USD"}  # both are late; USD is summed
    assert db(h.client_balances, ws_id, client)["outstanding"] == 10000


def test_the_brief_dashboard_is_the_whole_one_without_quotes_and_activity_and_its_invoices_as_listed(db, ws):
    """The portal's page asks for "brief": the same figures, the recent invoices as a list of them
    shows each (what the invoice listing's "listing" fields give), and no recent quotes or activity."""
    ws_id, client = ws
    _history(db, ws_id, client)
    whole, brief = db(h.client_dashboard, ws_id, client), db(h.client_dashboard, ws_id, client, "brief")
    listed = db(h.list_invoices, ws_id, {"client_id": client, "portal": True, "limit": 5, "fields": "listing"})
    assert whole["recent_quotes"] and whole["recent_activity"]  # there was something to leave out
    assert set(whole) - set(brief) == {"recent_quotes", "recent_activity"}
    assert {k: v for k, v in brief.items() if k != "recent_invoices"} == {
        k: v for k, v in whole.items() if k not in ("recent_invoices", "recent_quotes", "recent_activity")
    }
    assert brief["recent_invoices"] == listed["items"]
    assert brief["recent_invoices"] == [
        {k: item[k] for k in brief["recent_invoices"][0]} for item in whole["recent_invoices"]
    ]
    for unknown in ("everything", ["brief"], {"brief": True}):
        with pytest.raises(Invalid):
            db(h.client_dashboard, ws_id, client, unknown)

"""Payment plans: what a card payment pays, asked by the payments service before it charges."""

import pytest
import sqlalchemy as sa

from chassis.errors import Invalid, NotFound
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing.tables import credit_applications, invoices
from tests.unit.test_billing_handlers import db, ws  # noqa: F401 - shared fixtures


def _invoice(db, ws_id, client, amount=10000, due="2026-12-01", issue="2026-11-01", send=True, kind="standard"):
    return db(
        h.create_invoice,
        ws_id,
        {
            "client_id": client,
            "kind": kind,
            "send": send,
            "issue_date": issue,
            "due_date": due,
            "lines": [{"description": "Work", "unit_price": amount}],
        },
    )


def _counts(db):
    """Rows a preview must not add to."""
    with db.engine.connect() as conn:
        return tuple(
            conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in (OUTBOX, credit_applications)
        )


def _balances(db, ws_id, *invoice_ids):
    return [db(h.get_invoice, ws_id, i)["balance"] for i in invoice_ids]


def test_pay_all_takes_every_open_standard_invoice_oldest_first_and_writes_nothing(db, ws):
    ws_id, client = ws
    later = _invoice(db, ws_id, client, 5000, due="2026-12-20")
    older = _invoice(db, ws_id, client, 10000, due="2026-12-01")
    db(h.record_payment, ws_id, {"invoice_id": older["id"], "amount": 2500})
    _invoice(db, ws_id, client, 700, send=False)  # draft
    db(h.archive_invoice, ws_id, _invoice(db, ws_id, client, 800)["id"])
    db(h.void_invoice, ws_id, _invoice(db, ws_id, client, 900)["id"])
    paid = _invoice(db, ws_id, client, 1000)
    db(h.record_payment, ws_id, {"invoice_id": paid["id"], "amount": 1000})
    _invoice(db, ws_id, client, 50000, kind="retainer")  # paid by card only when chosen
    before = _counts(db)

    plan = db(h.plan_payment, ws_id, client, {})

    assert _counts(db) == before
    assert plan["amount"] == 12500 and plan["currency"] == "USD" and plan["partial"] is False
    assert plan["allocations"] == [
        {"invoice_id": older["id"], "number": older["number"], "amount": 7500},
        {"invoice_id": later["id"], "number": later["number"], "amount": 5000},
    ]
    assert plan["invoices"] == [
        {"id": older["id"], "number": older["number"], "due_date": "2026-12-01", "balance": 7500},
        {"id": later["id"], "number": later["number"], "due_date": "2026-12-20", "balance": 5000},
    ]
    assert plan["applied"] == {"credit": 0, "retainer": 0}
    assert plan["customer"] == {"name": "Client One", "email": "one@example.com"}
    assert plan["client_id"] == client and plan["stripe_account"] is None and plan["minimum"] == 0
    assert db(h.plan_payment, ws_id, client, None)["amount"] == 12500  # no request at all: pay all too


def test_a_partial_amount_pays_the_oldest_invoices_first(db, ws):
    ws_id, client = ws
    newer = _invoice(db, ws_id, client, 4000, due="2026-12-10", issue="2026-11-10")
    same_due_later_issue = _invoice(db, ws_id, client, 3000, due="2026-12-01", issue="2026-11-05")
    oldest = _invoice(db, ws_id, client, 2000, due="2026-12-01", issue="2026-11-01")
    plan = db(
        h.plan_payment,
        ws_id,
        client,
        {"invoice_ids": [newer["id"], oldest["id"], same_due_later_issue["id"]], "amount": 3500, "currency": "USD"},
    )
    assert plan["partial"] is True and plan["amount"] == 3500
    assert [(a["invoice_id"], a["amount"]) for a in plan["allocations"]] == [
        (oldest["id"], 2000),
        (same_due_later_issue["id"], 1500),
    ]
    assert [i["id"] for i in plan["invoices"]] == [oldest["id"], same_due_later_issue["id"], newer["id"]]


def test_amount_rules_follow_the_workspace_settings(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 10000)
    ids = [invoice["id"]]
    for bad in (0, -1, 1.5, True, "100", 10001):
        with pytest.raises(Invalid):
            db(h.plan_payment, ws_id, client, {"invoice_ids": ids, "amount": bad})
    db(h.update_workspace, ws_id, {"settings": {"partial_payment_minimum": 2000}})
    with pytest.raises(Invalid, match="at least"):
        db(h.plan_payment, ws_id, client, {"invoice_ids": ids, "amount": 1999})
    assert db(h.plan_payment, ws_id, client, {"invoice_ids": ids, "amount": 2000})["minimum"] == 2000
    db(h.update_workspace, ws_id, {"settings": {"allow_partial_payments": False}})
    with pytest.raises(Invalid, match="whole balance"):
        db(h.plan_payment, ws_id, client, {"invoice_ids": ids, "amount": 5000})
    assert db(h.plan_payment, ws_id, client, {"invoice_ids": ids, "amount": 10000})["partial"] is False
    db(h.update_workspace, ws_id, {"settings": {"payment_methods": ["bank_transfer"]}})
    with pytest.raises(Invalid, match="card"):
        db(h.plan_payment, ws_id, client, {"invoice_ids": ids})


def test_another_clients_invoice_looks_exactly_like_a_missing_one(db, ws):
    ws_id, client = ws
    other_client = db(h.create_client, ws_id, {"name": "Client Two"})["id"]
    theirs = _invoice(db, ws_id, other_client)
    mine = _invoice(db, ws_id, client)
    other_ws = db(h.create_workspace, {"name": "Other", "email": "o@example.com"})["id"]
    errors = []
    for invoice_id in (theirs["id"], "no-such-invoice"):
        with pytest.raises(NotFound) as caught:
            db(h.plan_payment, ws_id, client, {"invoice_ids": [mine["id"], invoice_id]})
        errors.append((str(caught.value), caught.value.fields))
    assert errors[0] == errors[1]
    with pytest.raises(NotFound):
        db(h.plan_payment, other_ws, client, {"invoice_ids": [mine["id"]]})


def test_unpayable_selections_are_refused_clearly(db, ws):
    ws_id, client = ws
    draft = _invoice(db, ws_id, client, send=False)
    void = _invoice(db, ws_id, client)
    db(h.void_invoice, ws_id, void["id"])
    paid = _invoice(db, ws_id, client)
    db(h.record_payment, ws_id, {"invoice_id": paid["id"], "amount": 10000})
    archived = _invoice(db, ws_id, client)
    db(h.archive_invoice, ws_id, archived["id"])
    for invoice, message in ((draft, "not issued"), (void, "void"), (paid, "already paid"), (archived, "archived")):
        with pytest.raises(Invalid, match=message):
            db(h.plan_payment, ws_id, client, {"invoice_ids": [invoice["id"]]})
    for request in ({"invoice_ids": []}, {}):  # nothing open is left to pay
        with pytest.raises(Invalid, match="Nothing to pay"):
            db(h.plan_payment, ws_id, client, request)
    for request in ({"invoice_ids": "x"}, {"bogus": 1}, {"apply_balance": "yes"}):
        with pytest.raises(Invalid):
            db(h.plan_payment, ws_id, client, request)


def test_currencies_are_never_mixed(db, ws):
    ws_id, client = ws
    usd = _invoice(db, ws_id, client)
    eur = _invoice(db, ws_id, client)
    with pytest.raises(Invalid, match="USD"):
        db(h.plan_payment, ws_id, client, {"invoice_ids": [usd["id"]], "currency": "EUR"})
    with db.engine.begin() as conn:  # a client's currency cannot change once invoiced: force it here
        conn.execute(invoices.update().where(invoices.c.id == eur["id"]).values(currency="EUR"))
    with pytest.raises(Invalid, match="currencies"):
        db(h.plan_payment, ws_id, client, {"invoice_ids": [usd["id"], eur["id"]]})


def test_balance_is_applied_first_and_only_the_rest_is_charged(db, ws):
    ws_id, client = ws
    older = _invoice(db, ws_id, client, 10000, due="2026-12-01")
    newer = _invoice(db, ws_id, client, 10000, due="2026-12-15")
    retainer = _invoice(db, ws_id, client, 5000, kind="retainer")
    db(h.record_payment, ws_id, {"invoice_id": retainer["id"], "amount": 5000})
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 3000})
    request = {"invoice_ids": [newer["id"], older["id"]], "apply_balance": True, "key": "pi_1"}
    before = _counts(db)
    offer = db(h.plan_payment, ws_id, client, {**request, "apply_balance": False})
    assert offer["balance_usable"] == 8000 and offer["balance_usable_by_source"] == {"credit": 3000, "retainer": 5000}

    preview = db(h.plan_payment, ws_id, client, request)
    assert preview["balance_usable_by_source"] == {"credit": 0, "retainer": 0}  # applied: nothing more to offer

    assert _counts(db) == before
    assert preview["applied"] == {"credit": 3000, "retainer": 5000} and preview["amount"] == 12000
    assert [a["amount"] for a in preview["allocations"]] == [2000, 10000]
    assert [i["balance"] for i in preview["invoices"]] == [10000, 10000]

    committed = db(h.plan_payment, ws_id, client, request, commit=True)

    assert committed == preview
    assert _balances(db, ws_id, older["id"], newer["id"]) == [2000, 10000]
    balances = db(h.client_balances, ws_id, client)
    assert (balances["credit_available"], balances["retainer_available"]) == (0, 0)
    with db.engine.connect() as conn:
        references = conn.execute(sa.select(credit_applications.c.reference)).scalars().all()
    assert references == ["pi_1", "pi_1"]
    # a retried checkout with the same key: the same plan, nothing applied twice
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 100})  # even if more credit turned up
    assert db(h.plan_payment, ws_id, client, request, commit=True)["applied"] == {"credit": 3100, "retainer": 5000}
    assert _balances(db, ws_id, older["id"]) == [1900]


def test_a_replay_is_the_same_plan_and_applies_nothing_twice(db, ws):
    ws_id, client = ws
    older = _invoice(db, ws_id, client, 10000, due="2026-12-01")
    newer = _invoice(db, ws_id, client, 10000, due="2026-12-15")
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 12000})
    request = {"apply_balance": True, "key": "checkout-7"}
    first = db(h.plan_payment, ws_id, client, request, commit=True)
    assert first["applied"]["credit"] == 12000 and first["amount"] == 8000
    assert db(h.get_invoice, ws_id, older["id"])["status"] == "paid"  # paid by the plan's own credit
    with db.engine.connect() as conn:
        applications = conn.execute(sa.select(sa.func.count()).select_from(credit_applications)).scalar_one()
    # pay all and the explicit ids both still see the invoice the first commit paid
    assert db(h.plan_payment, ws_id, client, request, commit=True) == first
    assert db(h.plan_payment, ws_id, client, {**request, "invoice_ids": [older["id"], newer["id"]]}) == first
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(credit_applications)).scalar_one() == applications
    with pytest.raises(Invalid, match="other invoices"):  # the key belongs to that selection
        db(h.plan_payment, ws_id, client, {**request, "invoice_ids": [newer["id"]]})
    with pytest.raises(Invalid, match="key"):
        db(h.plan_payment, ws_id, client, {"apply_balance": True}, commit=True)
    # the payments service passes the key as an argument: the same key, the same plan
    assert db(h.plan_payment, ws_id, client, {"apply_balance": True}, commit=True, key="checkout-7") == first
    with pytest.raises(Invalid, match="keys"):
        db(h.plan_payment, ws_id, client, request, commit=True, key="another")


def test_balance_covering_everything_leaves_nothing_to_charge(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 4000)
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 5000})
    plan = db(h.plan_payment, ws_id, client, {"apply_balance": True, "key": "k"}, commit=True)
    assert (plan["amount"], plan["allocations"], plan["applied"]["credit"]) == (0, [], 4000)
    assert db(h.get_invoice, ws_id, invoice["id"])["status"] == "paid"
    assert db(h.client_balances, ws_id, client)["credit_available"] == 1000


def test_a_card_amount_is_spread_over_what_balance_leaves(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 10000)
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 3000})
    request = {"invoice_ids": [invoice["id"]], "apply_balance": True}
    plan = db(h.plan_payment, ws_id, client, {**request, "amount": 5000})
    assert (plan["amount"], plan["partial"], plan["applied"]["credit"]) == (5000, True, 3000)
    assert db(h.plan_payment, ws_id, client, {**request, "amount": 7000})["partial"] is False
    with pytest.raises(Invalid, match="more than"):
        db(h.plan_payment, ws_id, client, {**request, "amount": 7001})


def test_retainer_invoices_are_paid_by_card_but_never_from_balance(db, ws):
    ws_id, client = ws
    retainer = _invoice(db, ws_id, client, 5000, kind="retainer", due="2026-11-30")
    standard = _invoice(db, ws_id, client, 2000)
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 10000})
    plan = db(h.plan_payment, ws_id, client, {"invoice_ids": [retainer["id"], standard["id"]], "apply_balance": True})
    assert plan["applied"] == {"credit": 2000, "retainer": 0}
    assert plan["allocations"] == [{"invoice_id": retainer["id"], "number": retainer["number"], "amount": 5000}]


def test_the_stripe_account_is_a_connect_account_id(db, ws):
    ws_id, client = ws
    _invoice(db, ws_id, client)
    with pytest.raises(Invalid):
        db(h.update_workspace, ws_id, {"settings": {"stripe_account": "sk_live_oops"}})
    db(h.update_workspace, ws_id, {"settings": {"stripe_account": "acct_1Abc"}})
    assert db(h.plan_payment, ws_id, client, {})["stripe_account"] == "acct_1Abc"

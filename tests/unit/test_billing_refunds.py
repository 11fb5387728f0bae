"""Card money after the charge: overpayments kept as credit, refunds and disputes."""

import json

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Conflict, Invalid, Unavailable
from services.billing import domain
from services.billing import handlers as h
from services.billing.service import BillingService
from services.billing.tables import credit_applications
from tests.unit.test_billing_handlers import NOW, db, events, ws  # noqa: F401 - shared fixtures


def _invoice(db, ws_id, client, amount, due="2026-12-01"):
    return db(
        h.create_invoice,
        ws_id,
        {
            "client_id": client,
            "send": True,
            "issue_date": "2026-11-01",
            "due_date": due,
            "lines": [{"description": "Work", "unit_price": amount}],
        },
    )


def _card(db, ws_id, payment_id, allocations, amount=None):
    """A card payment as on_payment_succeeded records it."""
    return db(
        h.record_payment,
        ws_id,
        {
            "payment_id": payment_id,
            "allocations": [{"invoice_id": i["id"], "amount": a} for i, a in allocations],
            "amount": sum(a for _, a in allocations) if amount is None else amount,
            "method": "card",
            "source": "stripe",
        },
        allow_unapplied=True,
    )


def _refund(db, ws_id, refund_id, payment_id, amount, reason="requested_by_customer"):
    return db(
        h.record_refund,
        ws_id,
        {"refund_id": refund_id, "payment_id": payment_id, "amount": amount, "currency": "USD", "reason": reason},
    )


def _consume(db, method, workspace_id, data):
    """Run a consumer's body in one transaction, as nameko's consumes() would."""
    with UnitOfWork(db.engine, lambda: NOW) as uow:
        getattr(BillingService, method).__wrapped__(None, uow, NOW, {"workspace_id": workspace_id, "data": data})
        uow.commit()


def _invoice_state(db, ws_id, invoice):
    view = db(h.get_invoice, ws_id, invoice["id"])
    return view["status"], view["amount_paid"], view["amount_credited"], view["balance"]


@pytest.mark.parametrize(
    "status, total, paid, credited, viewed, expected",
    [
        ("paid", 10000, 6000, 0, False, "partially_paid"),
        ("paid", 10000, 0, 0, False, "sent"),
        ("paid", 10000, 0, 0, True, "viewed"),
        ("partially_paid", 10000, 0, 2000, True, "partially_paid"),  # a credit still pays part of it
        ("paid", 10000, 0, 10000, False, "paid"),
        ("void", 10000, 0, 0, False, "void"),
    ],
)
def test_status_after_refund(status, total, paid, credited, viewed, expected):
    assert domain.status_after_refund(status, total, paid, credited, viewed) == expected


# ---------------------------------------------------------------- overpayments


def test_a_card_payment_for_an_invoice_paid_meanwhile_becomes_credit(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 10000)
    db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 4000})  # a bank transfer got there first
    _consume(
        db,
        "on_payment_succeeded",
        ws_id,
        {
            "payment_id": "pi_1",
            "client_id": client,
            "amount": 10000,
            "currency": "USD",
            "reference": "ch_1",
            "allocations": [{"invoice_id": invoice["id"], "amount": 10000}],
        },
    )
    payment = db(h.get_payment, ws_id, "pi_1")
    assert (payment["amount"], payment["unapplied"], payment["refunded"], payment["dispute_status"]) == (
        10000,
        4000,
        0,
        None,
    )
    assert payment["allocations"] == [{"invoice_id": invoice["id"], "number": invoice["number"], "amount": 6000}]
    assert _invoice_state(db, ws_id, invoice) == ("paid", 10000, 0, 0)
    assert db(h.client_balances, ws_id, client)["credit_available"] == 4000
    # the statement keeps what was charged: the balance below zero is the client's credit
    assert db(h.statement, ws_id, client, None, None)["closing_balance"] == -4000
    # a replayed event changes nothing
    _consume(
        db,
        "on_payment_succeeded",
        ws_id,
        {
            "payment_id": "pi_1",
            "client_id": client,
            "amount": 10000,
            "currency": "USD",
            "allocations": [{"invoice_id": invoice["id"], "amount": 10000}],
        },
    )
    assert db(h.client_balances, ws_id, client)["credit_available"] == 4000
    assert db(h.client_engagement, ws_id, client)["successful_payments"] == 1  # nor is it a second signal
    # the credit pays another invoice like credit-note credit does
    other = _invoice(db, ws_id, client, 5000)
    assert db(h.apply_credit, ws_id, other["id"], 4000)["balance"] == 1000
    assert db(h.client_balances, ws_id, client)["credit_available"] == 0


def test_paid_void_and_overcharged_allocations_are_clipped_only_for_card_payments(db, ws):
    ws_id, client = ws
    paid = _invoice(db, ws_id, client, 3000)
    db(h.record_payment, ws_id, {"invoice_id": paid["id"], "amount": 3000})
    void = _invoice(db, ws_id, client, 2000)
    db(h.void_invoice, ws_id, void["id"])
    open_ = _invoice(db, ws_id, client, 1000)
    with pytest.raises(Conflict):  # an offline payment still has to fit
        db(h.record_payment, ws_id, {"invoice_id": paid["id"], "amount": 3000})
    payment = _card(db, ws_id, "pi_2", [(paid, 3000), (void, 2000), (open_, 1500)], amount=7000)
    assert payment["amount"] == 7000 and payment["unapplied"] == 6000  # 1000 paid open_, and 500 beyond allocations
    assert [a["invoice_id"] for a in payment["allocations"]] == [open_["id"]]
    assert db(h.get_invoice, ws_id, void["id"])["status"] == "void"
    with pytest.raises(Invalid):  # less charged than allocated is a broken event, not credit
        _card(db, ws_id, "pi_3", [(open_, 500)], amount=400)
    assert "kept as credit" in db(h.list_activity, ws_id, client)[0]["summary"]


# ---------------------------------------------------------------- refunds


def test_a_refund_reopens_the_newest_invoices_first(db, ws):
    ws_id, client = ws
    older = _invoice(db, ws_id, client, 10000, due="2026-12-01")
    newer = _invoice(db, ws_id, client, 5000, due="2026-12-15")
    db(h.mark_invoice_viewed, ws_id, client, newer["id"])
    _card(db, ws_id, "pi_1", [(older, 10000), (newer, 5000)])

    refund = _refund(db, ws_id, "re_1", "pi_1", 7000)

    assert {k: refund[k] for k in ("id", "payment_id", "client_id", "amount", "currency", "policy", "reason")} == {
        "id": "re_1",
        "payment_id": "pi_1",
        "client_id": client,
        "amount": 7000,
        "currency": "USD",
        "policy": "reopen",
        "reason": "requested_by_customer",
    }
    assert _invoice_state(db, ws_id, newer) == ("viewed", 0, 0, 5000)  # nothing paid: back to viewed
    assert _invoice_state(db, ws_id, older) == ("partially_paid", 8000, 0, 2000)
    payment = db(h.get_payment, ws_id, "pi_1")
    assert (payment["refunded"], [a["amount"] for a in payment["allocations"]]) == (7000, [8000])
    recorded = json.loads(events(db, "refund.recorded")[0])["data"]
    assert [(r["invoice_id"], r["amount"]) for r in recorded["reversals"]] == [(newer["id"], 5000), (older["id"], 2000)]
    assert db(h.list_activity, ws_id, client)[0]["summary"] == "Refund of $70.00 recorded"
    # each invoice shows the payment as paid and what the refund took back of it, even the one it no longer pays
    for invoice, still_pays, took_back in ((newer, 0, 5000), (older, 8000, 2000)):
        view = db(h.get_invoice, ws_id, invoice["id"], client_id=client)
        assert [(p["payment_id"], p["amount"], p["refunded"]) for p in view["payments"]] == [
            ("pi_1", still_pays, took_back)
        ]
        assert [(r["refund_id"], r["payment_id"], r["amount"]) for r in view["refunds"]] == [
            ("re_1", "pi_1", took_back)
        ]
        assert view["refunds"][0]["refunded_at"].startswith("2026-11-23")
    # the same refund again (a replayed event) is recorded once
    assert _refund(db, ws_id, "re_1", "pi_1", 7000) == refund
    assert db(h.get_payment, ws_id, "pi_1")["refunded"] == 7000
    with pytest.raises(Invalid, match=r"\$80\.00"):  # only what is left of the payment
        _refund(db, ws_id, "re_2", "pi_1", 8001)
    _refund(db, ws_id, "re_2", "pi_1", 8000)
    assert _invoice_state(db, ws_id, older) == ("sent", 0, 0, 10000)
    assert [r["id"] for r in db(h.list_refunds, ws_id, payment_id="pi_1")] == ["re_1", "re_2"]
    # the receipt's data lists each refund with its date, and what was refunded adds up with what was kept
    receipt = db(h.get_payment, ws_id, "pi_1")
    assert [(r["id"], r["amount"], r["created_at"][:10]) for r in receipt["refunds"]] == [
        ("re_1", 7000, "2026-11-23"),
        ("re_2", 8000, "2026-11-23"),
    ]
    assert receipt["refunded"] + sum(a["amount"] for a in receipt["allocations"]) + receipt["unapplied"] == 15000
    assert receipt["paid_by_contact_id"] is None  # recorded by the business, not paid by a contact in the portal
    assert len(db(h.list_refunds, ws_id, client_id=client)) == 2
    assert db(h.list_refunds, ws_id, client_id="someone-else") == []


def test_the_payments_list_says_what_was_refunded_of_each_payment_in_one_statement(db, ws):
    ws_id, client = ws
    first = _invoice(db, ws_id, client, 50000)
    second = _invoice(db, ws_id, client, 2000)
    _card(db, ws_id, "pi_1", [(first, 50000)])
    _card(db, ws_id, "pi_2", [(second, 2000)])
    _refund(db, ws_id, "re_1", "pi_1", 6000)
    _refund(db, ws_id, "re_2", "pi_1", 4000)
    statements: list[str] = []

    def seen(conn, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", seen)
    try:
        listed = db(h.list_payments, ws_id, client, sort="amount")
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", seen)
    assert [(p["id"], p["amount"], p["refunded"]) for p in listed] == [("pi_2", 2000, 0), ("pi_1", 50000, 10000)]
    # summed in the list's own statement, not read again for each payment
    assert len([s for s in statements if "refunds" in s]) == 1


def test_a_refund_of_an_unknown_or_foreign_payment_waits_for_it(db, ws):
    """Unavailable, so the consumer retries: the refund may have overtaken payment.succeeded."""
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 1000)
    _card(db, ws_id, "pi_1", [(invoice, 1000)])
    other_ws = db(h.create_workspace, {"name": "Other", "email": "o@example.com"})["id"]
    for workspace_id, payment_id in ((ws_id, "pi_missing"), (other_ws, "pi_1")):
        with pytest.raises(Unavailable):
            _refund(db, workspace_id, "re_x", payment_id, 100)
    for bad in (
        {"amount": 0},
        {"amount": "5"},
        {"currency": "EUR"},
        {"client_id": "another"},
        {"refund_id": ""},
        {"extra": 1},
    ):
        with pytest.raises(Invalid):
            db(h.record_refund, ws_id, {"refund_id": "re_y", "payment_id": "pi_1", "amount": 100, **bad})
    assert db(h.list_refunds, ws_id) == []


def test_a_refund_takes_back_unapplied_money_first(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 6000)
    _card(db, ws_id, "pi_1", [(invoice, 6000)], amount=10000)  # 4000 beyond the invoice
    _refund(db, ws_id, "re_1", "pi_1", 5000)
    payment = db(h.get_payment, ws_id, "pi_1")
    assert (payment["unapplied"], payment["refunded"], payment["allocations"][0]["amount"]) == (0, 5000, 5000)
    assert _invoice_state(db, ws_id, invoice) == ("partially_paid", 5000, 0, 1000)
    assert db(h.client_balances, ws_id, client)["credit_available"] == 0


def test_under_the_credit_policy_refunded_invoices_stay_settled_by_a_credit(db, ws):
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"refund_policy": "credit"}})
    invoice = _invoice(db, ws_id, client, 10000)
    _card(db, ws_id, "pi_1", [(invoice, 10000)])
    _refund(db, ws_id, "re_1", "pi_1", 4000)
    assert _invoice_state(db, ws_id, invoice) == ("paid", 6000, 4000, 0)
    view = db(h.get_invoice, ws_id, invoice["id"])
    assert [(p["amount"], p["refunded"]) for p in view["payments"]] == [(6000, 4000)]
    assert [(r["amount"], c["source"], c["amount"]) for r, c in zip(view["refunds"], view["credits"])] == [
        (4000, "refund", 4000)
    ]
    with db.engine.connect() as conn:
        row = conn.execute(sa.select(credit_applications)).one()
    assert (row.source, row.kind, row.reference, row.amount, row.invoice_id) == (
        "refund",
        "applied",
        "re_1",
        4000,
        invoice["id"],
    )
    assert db(h.client_balances, ws_id, client)["credit_available"] == 0  # not credit the client can spend
    entries = db(h.statement, ws_id, client, None, None)["entries"]
    assert sorted((e["kind"], e["amount"], e["date"]) for e in entries if e["kind"] in ("refund", "credit")) == [
        ("credit", 4000, "2026-11-23"),
        ("refund", 4000, "2026-11-23"),
    ]
    assert sorted((e["about"], e["payment"]) for e in entries if e["kind"] in ("refund", "credit")) == [
        ("refund", "card"),
        ("refund_credit", "card"),
    ]


def test_a_refund_owes_again_on_the_statement(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 10000)
    _card(db, ws_id, "pi_1", [(invoice, 10000)])
    _refund(db, ws_id, "re_1", "pi_1", 2500)
    result = db(h.statement, ws_id, client, None, None)
    assert sorted((e["kind"], e["amount"]) for e in result["entries"]) == [
        ("invoice", 10000),
        ("payment", 10000),
        ("refund", 2500),
    ]
    assert result["closing_balance"] == 2500
    # what the refund is about, for a page to word in its own language; the English reference as before
    [refund] = [e for e in result["entries"] if e["kind"] == "refund"]
    assert (refund["about"], refund["payment"], refund["reference"]) == ("refund", "card", "Refund of card")
    assert {e["about"] for e in result["entries"] if e["kind"] != "refund"} == {None}


def test_the_refund_consumer_records_the_event(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 3000)
    _card(db, ws_id, "pi_1", [(invoice, 3000)])
    _consume(
        db,
        "on_payment_refunded",
        ws_id,
        {
            "refund_id": "re_9",
            "payment_id": "pi_1",
            "amount": 3000,
            "currency": "USD",
            "client_id": client,
            "reason": "duplicate",
        },
    )
    assert db(h.list_refunds, ws_id)[0]["reason"] == "duplicate"
    assert db(h.get_invoice, ws_id, invoice["id"])["status"] == "sent"


# ---------------------------------------------------------------- disputes


def test_disputes_record_their_latest_status_once_each(db, ws):
    ws_id, client = ws
    invoice = _invoice(db, ws_id, client, 3000)
    _card(db, ws_id, "pi_1", [(invoice, 3000)])
    dispute = {
        "dispute_id": "dp_1",
        "payment_id": "pi_1",
        "amount": 3000,
        "currency": "USD",
        "client_id": client,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    _consume(db, "on_payment_disputed", ws_id, dispute)
    _consume(db, "on_payment_disputed", ws_id, dispute)  # the same status again: nothing new
    assert db(h.get_payment, ws_id, "pi_1")["dispute_status"] == "needs_response"
    summaries = [a["summary"] for a in db(h.list_activity, ws_id, client) if a["kind"] == "payment.disputed"]
    assert summaries == ["Payment disputed: fraudulent"]
    assert len(events(db, "payment.dispute_recorded")) == 1
    _consume(db, "on_payment_disputed", ws_id, {**dispute, "status": "won"})
    assert db(h.list_payments, ws_id)[0]["dispute_status"] == "won"
    assert len(events(db, "payment.dispute_recorded")) == 2
    assert db(h.get_invoice, ws_id, invoice["id"])["status"] == "paid"  # a dispute alone moves no money
    with pytest.raises(Unavailable):
        db(h.record_dispute, ws_id, {**dispute, "payment_id": "pi_missing"})


def test_a_new_payment_answers_and_announces_what_reading_it_back_shows(db, ws):
    """record_payment builds a new payment's view from what it just stored; it is the view any later
    read gives (allocations in invoice order, nothing refunded, the overpayment kept as credit)."""
    ws_id, client = ws
    first, second = _invoice(db, ws_id, client, 3000), _invoice(db, ws_id, client, 5000)
    recorded = _card(db, ws_id, "pi_view", [(second, 5000), (first, 3000)], amount=9000)
    read_back = db(h.get_payment, ws_id, "pi_view")
    assert recorded == {k: v for k, v in read_back.items() if k in recorded}
    assert (recorded["unapplied"], recorded["refunded"], len(recorded["allocations"])) == (1000, 0, 2)
    [body] = events(db, "payment.recorded")
    announced = body if isinstance(body, dict) else json.loads(body)
    assert {k: announced["data"][k] for k in recorded} == recorded

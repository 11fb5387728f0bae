"""The payments core on a real (SQLite) database with a stateful Stripe fake: attempts, the claim,
idempotency keys, events in any order and number, refunds, disputes, cards and autopay."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Conflict, Invalid, NotFound
from chassis.events import DEAD, OUTBOX
from chassis.logs import request_context
from services.payments.handlers import (
    autopay,
    card_disputes,
    cards,
    charging,
    payment_attempts,
    payment_refunds,
    webhook_events,
)
from services.payments.stripe_api import CardDeclined, StripeUnavailable
from services.payments.tables import attempts, payment_methods, stripe_events

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WS, CLIENT, OTHER = "ws-1", "client-1", "client-2"


class FakeStripe:
    """Remembers what was created, and like Stripe returns the first result for a repeated key."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.by_key: dict[str, dict] = {}
        self.intents: dict[str, dict] = {}
        self.cards = {
            "pm_good": {
                "id": "pm_good",
                "customer": None,
                "brand": "visa",
                "last4": "4242",
                "exp_month": 12,
                "exp_year": 2030,
            }
        }
        self.setups: dict[str, dict] = {}
        self.decline_next = None
        self.unavailable = False
        self.refunds: list[dict] = []
        self.defaults: dict[str, str | None] = {}

    def _new(self, prefix):
        return f"{prefix}_{next(self.ids)}"

    def _once(self, key, make):
        if key not in self.by_key:
            self.by_key[key] = make()
        return self.by_key[key]

    def create_customer(self, *, name, email, metadata, key, account):
        return self._once(key, lambda: {"id": self._new("cus")})["id"]

    def create_setup_intent(self, *, customer, metadata, key, account):
        def make():
            seti = {
                "id": self._new("seti"),
                "client_secret": "secret",
                "status": "succeeded",
                "payment_method": "pm_good",
                "customer": customer,
                "metadata": metadata,
            }
            self.setups[seti["id"]] = seti
            return seti

        return self._once(key, make)

    def setup_intent(self, setup_intent_id, account):
        return self.setups[setup_intent_id]

    def payment_method(self, pm, account):
        return dict(self.cards[pm])

    def attach(self, pm, customer, account):
        self.cards[pm]["customer"] = customer
        return dict(self.cards[pm])

    def detach(self, pm, account):
        self.cards[pm]["customer"] = None

    def set_default(self, customer, pm, account):
        self.defaults[customer] = pm

    def create_payment_intent(self, *, amount, currency, customer, payment_method, metadata, off_session, key, account):
        if self.unavailable:
            raise StripeUnavailable("Stripe did not answer.")
        if self.decline_next:
            code, self.decline_next = self.decline_next, None
            raise CardDeclined("Your card was declined.", code)

        def make():
            pi = {
                "id": self._new("pi"),
                "status": "succeeded",
                "amount": amount,
                "currency": currency,
                "client_secret": "pi_secret",
                "payment_method": payment_method,
                "metadata": metadata,
                "error": "",
            }
            self.intents[pi["id"]] = pi
            return pi

        return dict(self._once(key, make))

    def payment_intent(self, pi, account):
        return dict(self.intents[pi])

    def create_refund(self, *, payment_intent, amount, metadata, key, account):
        def make():
            refund = {"id": self._new("re"), "status": "succeeded", "amount": amount}
            self.refunds.append(refund)
            return refund

        return self._once(key, make)


class FakeBilling:
    def __init__(self, balance=10_000):
        self.balance = balance
        self.plans = []

    def get_client(self, workspace_id, client_id):
        return {"name": "Demo", "contacts": [{"email": "demo@example.com", "is_primary": True}]}

    def get_workspace(self, workspace_id):
        return {"settings": {}}

    def plan_payment(self, workspace_id, client_id, request, commit=False):
        if client_id != CLIENT:
            raise NotFound("No such invoice.")
        self.plans.append((request, request.get("key")))
        amount = request.get("amount") or self.balance
        return {
            "client_id": client_id,
            "currency": "USD",
            "amount": amount,
            "applied": {"credit": 0, "retainer": 0},
            "allocations": [{"invoice_id": "inv-1", "number": "INV-1", "amount": amount}],
            "stripe_account": None,
        }


@pytest.fixture
def engine(sqlite_engine):
    return sqlite_engine("payments")


@pytest.fixture
def run(engine):
    def call(handler, *args, now=NOW, **kwargs):
        with UnitOfWork(engine) as uow:
            result = handler(uow, now, *args, **kwargs)
            uow.commit()
            return result

    return call


def published(engine, event_type):
    with engine.connect() as conn:
        rows = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).all()
    return [json.loads(r.body)["data"] for r in rows]


def stripe_event(event_id, kind, obj):
    return {"id": event_id, "type": kind, "data": {"object": obj}}


def intent_event(event_id, kind, pi, status=None):
    return stripe_event(
        event_id,
        kind,
        {
            **pi,
            "status": status or pi["status"],
            "latest_charge": "ch_1",
            "last_payment_error": {"message": "Your card was declined."} if kind.endswith("failed") else None,
        },
    )


@pytest.fixture
def stripe():
    return FakeStripe()


@pytest.fixture
def billing():
    return FakeBilling()


def paid_attempt(run, stripe, billing, key="k1"):
    attempt = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, key)
    setup = run(cards.card_setup, stripe, billing, WS, CLIENT, attempt["id"])
    return run(charging.confirm_attempt, stripe, WS, CLIENT, attempt["id"], setup["setup_intent"])


def test_a_double_submit_makes_one_attempt_and_another_client_cannot_see_it(run, billing):
    first = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "key-1")
    again = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "key-1")
    assert again["id"] == first["id"] and len(billing.plans) == 1
    assert billing.plans[0][1] == f"payment:{CLIENT}:key-1"  # credit applied once per form key
    with pytest.raises(NotFound):
        run(payment_attempts.get_attempt, WS, first["id"], OTHER)
    with pytest.raises(Invalid):
        run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "")


def test_confirming_charges_once_with_a_key_made_of_the_attempt_and_its_try(run, stripe, billing, engine):
    attempt = paid_attempt(run, stripe, billing)
    assert attempt["status"] == "processing"
    assert f"attempt:{attempt['id']}:0" in stripe.by_key
    again = run(charging.confirm_attempt, stripe, WS, CLIENT, attempt["id"], payment_method_id="pm_good")
    assert again["status"] == "processing" and len(stripe.intents) == 1
    assert len(published(engine, "payment.attempted")) == 1
    assert published(engine, "payment.succeeded") == []  # only the signed event settles it


def test_a_decline_is_shown_and_the_next_try_uses_a_new_key(run, stripe, billing, engine):
    attempt = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "k")
    setup = run(cards.card_setup, stripe, billing, WS, CLIENT, attempt["id"])
    stripe.decline_next = "card_declined"
    failed = run(charging.confirm_attempt, stripe, WS, CLIENT, attempt["id"], setup["setup_intent"], save=True)
    assert failed["status"] == "failed" and failed["failure_message"] == "Your card was declined."
    [event] = published(engine, "payment.failed")
    assert event["off_session"] is False  # on screen, so documents sends no email
    retried = run(charging.confirm_attempt, stripe, WS, CLIENT, attempt["id"], payment_method_id="pm_good")
    assert retried["status"] == "processing" and f"attempt:{attempt['id']}:1" in stripe.by_key


def test_stripe_unreachable_reopens_the_attempt_with_the_same_key(run, stripe, billing):
    attempt = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "k")
    setup = run(cards.card_setup, stripe, billing, WS, CLIENT, attempt["id"])
    stripe.unavailable = True
    with pytest.raises(StripeUnavailable):
        run(charging.confirm_attempt, stripe, WS, CLIENT, attempt["id"], setup["setup_intent"], save=True)
    assert run(payment_attempts.get_attempt, WS, attempt["id"])["status"] == "open"
    stripe.unavailable = False
    run(charging.confirm_attempt, stripe, WS, CLIENT, attempt["id"], payment_method_id="pm_good")
    assert f"attempt:{attempt['id']}:0" in stripe.by_key and f"attempt:{attempt['id']}:1" not in stripe.by_key


def test_a_claimed_attempt_is_not_charged_by_a_second_confirmation(run, stripe, billing, engine):
    attempt = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "k")
    run(cards.card_setup, stripe, billing, WS, CLIENT, attempt["id"])
    with engine.begin() as conn:  # another request holds the claim
        conn.execute(attempts.update().values(status="confirming", updated_at=NOW))
    assert run(charging.charge, stripe, attempt["id"], "pm_good")["status"] == "confirming"
    assert stripe.intents == {}
    later = NOW + charging.CLAIM_TIMEOUT + timedelta(seconds=1)  # the claimer crashed: taken over, same key
    assert run(charging.charge, stripe, attempt["id"], "pm_good", now=later)["status"] == "processing"


def test_events_three_times_and_out_of_order_give_one_payment(run, stripe, billing, engine):
    attempt = paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    succeeded = intent_event("evt_s", "payment_intent.succeeded", pi)
    processing = intent_event("evt_p", "payment_intent.processing", pi, "processing")
    for event in (succeeded, processing, succeeded, processing, succeeded):
        run(webhook_events.receive_event, event)
    outcomes = [run(webhook_events.process_event, stripe, e) for e in ("evt_s", "evt_p")]
    assert outcomes == ["paid", "ignored: attempt is succeeded"]
    assert run(webhook_events.process_event, stripe, "evt_s") is None  # processed already
    [payment] = published(engine, "payment.succeeded")
    assert payment["payment_id"] == attempt["id"] and payment["amount"] == 10_000
    assert payment["allocations"] == [{"invoice_id": "inv-1", "amount": 10_000}]
    # the card it was paid with, read with the attempt
    assert (payment["method"], payment["card"], payment["bank"]) == ("card", {"brand": "visa", "last4": "4242"}, None)
    assert run(payment_attempts.get_attempt, WS, attempt["id"])["status"] == "succeeded"


def test_a_delivery_is_processed_and_stored_in_one_transaction_and_a_redelivery_undoes_its_handling(
    run, stripe, billing, engine
):
    """The answer to Stripe comes after the commit that records the payment; the same event again,
    whether it came this way or was stored to be processed later, is rolled back whole."""
    attempt = paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    succeeded = intent_event("evt_once", "payment_intent.succeeded", pi)
    with request_context("req-webhook-9"):
        assert run(webhook_events.process_as_received, stripe, succeeded) == "paid"
    with engine.connect() as conn:
        [stored] = conn.execute(sa.select(stripe_events)).all()
    assert (stored.id, stored.processed_at, stored.outcome, stored.request_id) == (
        "evt_once",
        NOW,
        "paid",
        "req-webhook-9",
    )
    assert run(webhook_events.pending_events, now=NOW + timedelta(days=1)) == []  # nothing left to the timer
    assert run(payment_attempts.get_attempt, WS, attempt["id"])["status"] == "succeeded"
    [payment] = published(engine, "payment.succeeded")
    assert payment["payment_id"] == attempt["id"] and payment["amount"] == 10_000

    with pytest.raises(webhook_events.Redelivered):  # Stripe delivers it again
        run(webhook_events.process_as_received, stripe, succeeded, now=NOW + timedelta(minutes=1))
    with engine.connect() as conn:
        assert conn.execute(sa.select(stripe_events.c.outcome, stripe_events.c.processed_at)).all() == [("paid", NOW)]
    assert len(published(engine, "payment.succeeded")) == 1


def test_an_event_stored_to_be_processed_later_is_not_processed_again_as_received(run, stripe, billing, engine):
    paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    event = intent_event("evt_later", "payment_intent.succeeded", pi)
    assert run(webhook_events.receive_event, event) is True  # stored, its processing not yet done
    with pytest.raises(webhook_events.Redelivered):
        run(webhook_events.process_as_received, stripe, event)
    assert published(engine, "payment.succeeded") == []  # the redelivery's handling was rolled back
    assert run(webhook_events.process_event, stripe, "evt_later") == "paid"  # the stored one, once
    assert len(published(engine, "payment.succeeded")) == 1


def test_only_events_that_call_stripe_back_wait_for_the_answer():
    kinds = ("payment_intent.succeeded", "charge.refunded", "charge.dispute.created", "setup_intent.succeeded")
    as_received = {kind: webhook_events.processed_as_received(stripe_event("evt_k", kind, {})) for kind in kinds}
    assert as_received == {
        "payment_intent.succeeded": True,
        "charge.refunded": True,
        "charge.dispute.created": True,
        "setup_intent.succeeded": False,  # its card is read from Stripe
    }
    assert not webhook_events.processed_as_received(stripe_event("evt_d", "payment_method.detached", {}))
    assert webhook_events.processed_as_received(stripe_event("evt_l", ["a", "list"], {}))  # its handling fails
    with pytest.raises(Invalid):
        webhook_events.check_event({"id": "not-an-event", "type": "payment_intent.succeeded"})


def test_an_events_workspace_comes_from_our_rows_whether_read_back_or_in_hand(run, stripe, billing, engine):
    """The processing path passes the delivery it just stored; the timer reads the stored body back.
    Either way the workspace is the one our rows give, never one the event names."""
    paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    event = intent_event("evt_w", "payment_intent.succeeded", pi)
    assert run(webhook_events.receive_event, event) is True
    assert run(webhook_events.receive_event, event) is False  # a redelivery stores nothing

    def workspace(event=None, stored=None):
        with UnitOfWork(engine) as uow:
            return (
                webhook_events.workspace_of(uow, event)
                if stored is None
                else webhook_events.event_workspace(uow, stored)
            )

    assert workspace(event) == workspace(stored="evt_w") == WS
    by_intent = {**pi, "metadata": {}}  # an intent we did not tag: found by its id
    assert workspace(intent_event("evt_i", "payment_intent.succeeded", by_intent)) == WS
    refund = stripe_event("evt_r", "charge.refunded", {"id": "ch_1", "payment_intent": pi["id"]})
    assert workspace(refund) == WS
    named = {**pi, "id": "pi_not_ours", "metadata": {"attempt_id": "att-unknown", "workspace_id": WS}}
    assert workspace(intent_event("evt_n", "payment_intent.succeeded", named)) is None
    assert workspace(stripe_event("evt_c", "customer.created", {"id": "cus_1"})) is None
    assert workspace(stored="evt_never_stored") is None


def test_a_late_failure_of_an_earlier_try_does_not_fail_the_current_one(run, stripe, billing, engine):
    attempt = paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    stale = intent_event(
        "evt_f",
        "payment_intent.payment_failed",
        {**pi, "metadata": {**pi["metadata"], "try": "7"}},
        "requires_payment_method",
    )
    run(webhook_events.receive_event, stale)
    assert run(webhook_events.process_event, stripe, "evt_f").startswith("ignored")
    assert run(payment_attempts.get_attempt, WS, attempt["id"])["status"] == "processing"


def test_an_event_whose_amount_differs_fulfils_nothing(run, stripe, billing, engine):
    paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    run(webhook_events.receive_event, intent_event("evt_x", "payment_intent.succeeded", {**pi, "amount": 1}))
    assert run(webhook_events.process_event, stripe, "evt_x").startswith("rejected")
    assert published(engine, "payment.succeeded") == []


def test_a_failing_event_is_retried_later_with_growing_delays_then_parked_and_replayable(run, engine):
    run(webhook_events.receive_event, stripe_event("evt_bad", "payment_intent.succeeded", {"id": "pi_x"}))
    due_times = []
    for attempt in range(1, 4):
        now = NOW + timedelta(minutes=attempt)
        assert run(webhook_events.pending_events, now=now) == [("evt_bad", None)]  # no request: none to follow
        parked = run(webhook_events.event_failed, "evt_bad", "KeyError('metadata')", 4, 2.0, now=now)
        assert parked is False
        with engine.connect() as conn:
            due_times.append(conn.execute(sa.select(stripe_events.c.next_attempt_at)).scalar_one() - now)
        assert run(webhook_events.pending_events, now=now) == []  # not due again yet
    assert due_times == [timedelta(seconds=2), timedelta(seconds=4), timedelta(seconds=8)]
    assert run(webhook_events.event_failed, "evt_bad", "KeyError('metadata')", 4, 2.0, now=NOW + timedelta(hours=1))
    assert run(webhook_events.pending_events, now=NOW + timedelta(days=1)) == []  # parked: the timer stops
    with engine.connect() as conn:
        [letter] = conn.execute(sa.select(DEAD)).all()
    assert letter.consumer == webhook_events.STRIPE_EVENT_CONSUMER and letter.event_id == "evt_bad"
    assert "KeyError" in letter.error and json.loads(letter.body)["type"] == "payment_intent.succeeded"
    assert run(lambda uow, now: webhook_events.requeue_event(uow, "evt_bad"))
    assert run(webhook_events.pending_events, now=NOW) == [("evt_bad", None)]  # a replay starts afresh


def test_a_stored_event_is_processed_under_the_webhooks_request_id(run, stripe, billing, engine):
    """The timer processes it later, once the replica that stored it had its time to; pending_events
    hands back the webhook's request id, and under it the events the processing records carry that id
    to the services that consume them."""
    attempt = paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    with request_context("req-webhook-7"):
        run(webhook_events.receive_event, intent_event("evt_traced", "payment_intent.succeeded", pi, "succeeded"))
    left = webhook_events.LEFT_TO_STORING_REPLICA
    assert run(webhook_events.pending_events, now=NOW + left - timedelta(seconds=1)) == []  # being processed
    [(event_id, request_id)] = run(webhook_events.pending_events, now=NOW + left)
    assert (event_id, request_id) == ("evt_traced", "req-webhook-7")
    with request_context(request_id):
        assert run(webhook_events.process_event, stripe, event_id) == "paid"
    with engine.connect() as conn:
        [row] = conn.execute(
            sa.select(OUTBOX.c.body, OUTBOX.c.request_id).where(OUTBOX.c.event_type == "payment.succeeded")
        ).all()
    assert json.loads(row.body)["data"]["payment_id"] == attempt["id"] and row.request_id == "req-webhook-7"


def test_refunds_are_idempotent_by_key_and_bounded_by_the_payment(run, stripe, billing, engine):
    attempt = paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    run(webhook_events.receive_event, intent_event("evt_s", "payment_intent.succeeded", pi))
    run(webhook_events.process_event, stripe, "evt_s")
    with pytest.raises(Conflict):
        run(payment_refunds.refund_payment, stripe, WS, attempt["id"], 10_001, "", "r0")
    first = run(payment_refunds.refund_payment, stripe, WS, attempt["id"], 4_000, "damaged", "r1")
    again = run(payment_refunds.refund_payment, stripe, WS, attempt["id"], 4_000, "damaged", "r1")
    assert first["id"] == again["id"] and first["status"] == "succeeded" and len(stripe.refunds) == 1
    # Stripe's charge.refunded event reports the same refund: nothing more is published.
    charge = {
        "id": "ch_1",
        "payment_intent": pi["id"],
        "refunds": {
            "data": [
                {"id": first["stripe_refund_id"], "amount": 4_000, "status": "succeeded"},
                {"id": "re_dashboard", "amount": 1_000, "status": "succeeded"},
            ]
        },
    }
    run(webhook_events.receive_event, stripe_event("evt_r", "charge.refunded", charge))
    run(webhook_events.receive_event, stripe_event("evt_r2", "charge.refunded", charge))
    run(webhook_events.process_event, stripe, "evt_r")
    run(webhook_events.process_event, stripe, "evt_r2")
    assert [e["amount"] for e in published(engine, "payment.refunded")] == [4_000, 1_000]
    assert run(payment_attempts.get_attempt, WS, attempt["id"])["refunded"] == 5_000
    with pytest.raises(Conflict):  # 5,000 of 10,000 refunded: 6,000 more is too much
        run(payment_refunds.refund_payment, stripe, WS, attempt["id"], 6_000, "", "r2")
    with pytest.raises(NotFound):
        run(payment_refunds.refund_payment, stripe, "ws-other", attempt["id"], 100, "", "r3")


def test_disputes_are_recorded_once_per_status(run, stripe, billing, engine):
    attempt = paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    dispute = {
        "id": "dp_1",
        "payment_intent": pi["id"],
        "amount": 10_000,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    for n, (kind, status) in enumerate(
        [("created", "needs_response"), ("created", "needs_response"), ("closed", "lost")]
    ):
        run(
            webhook_events.receive_event,
            stripe_event(f"evt_d{n}", f"charge.dispute.{kind}", {**dispute, "status": status}),
        )
        run(webhook_events.process_event, stripe, f"evt_d{n}")
    assert [e["status"] for e in published(engine, "payment.disputed")] == ["needs_response", "lost"]
    [listed] = run(card_disputes.list_disputes, WS)
    assert listed["payment_id"] == attempt["id"] and listed["status"] == "lost"


def test_saved_cards_default_and_removal(run, stripe, billing):
    setup = run(cards.card_setup, stripe, billing, WS, CLIENT)
    card = run(cards.save_card, stripe, WS, CLIENT, setup["setup_intent"])
    assert card["last4"] == "4242" and card["default"] is True
    assert run(cards.save_card, stripe, WS, CLIENT, setup["setup_intent"])["id"] == card["id"]  # idempotent
    with pytest.raises(NotFound):  # another client cannot use or remove it
        run(cards.remove_card, stripe, WS, OTHER, card["id"])
    with pytest.raises(NotFound):
        run(cards.save_card, stripe, WS, OTHER, setup["setup_intent"])
    assert run(cards.remove_card, stripe, WS, CLIENT, card["id"]) == []
    assert stripe.cards["pm_good"]["customer"] is None


def test_autopay_charges_the_default_card_off_session_or_emails_a_pay_link(run, stripe, billing, engine):
    invoice = {"id": "inv-1", "client_id": CLIENT, "balance": 10_000, "currency": "USD"}
    assert run(autopay.queue_autopay, billing, WS, invoice) is None  # no card yet
    [no_card] = published(engine, "payment.failed")
    assert no_card["off_session"] is True and no_card["pay_url"].endswith("/pay?invoice=inv-1")
    setup = run(cards.card_setup, stripe, billing, WS, CLIENT)
    run(cards.save_card, stripe, WS, CLIENT, setup["setup_intent"])
    queued = run(autopay.queue_autopay, billing, WS, invoice)
    with UnitOfWork(engine) as uow:
        due = autopay.due_autopay(uow)
    assert due == [(queued["id"], "pm_good", WS, CLIENT)]
    stripe.decline_next = "authentication_required"
    assert run(charging.charge, stripe, queued["id"], "pm_good")["status"] == "failed"
    failure = published(engine, "payment.failed")[-1]
    assert failure["off_session"] is True and failure["code"] == "authentication_required"
    with UnitOfWork(engine) as uow:
        assert autopay.due_autopay(uow) == []  # not retried by itself: the client got a pay link
    with pytest.raises(Conflict):
        run(charging.confirm_attempt, stripe, WS, CLIENT, queued["id"], payment_method_id="pm_good")


def test_deliveries_handled_together_leave_what_each_alone_leaves(run, stripe, billing, engine):
    """A burst of deliveries in one transaction: each event handled and stored once, under its own
    request's id, its outcome as alone; one stored already, or twice in the batch, is a redelivery."""
    attempts = [paid_attempt(run, stripe, billing, key=f"k{i}") for i in range(3)]
    first, second, third = (
        intent_event(f"evt_b{i}", "payment_intent.succeeded", pi) for i, pi in enumerate(stripe.intents.values())
    )
    with request_context("req-alone"):
        assert run(webhook_events.process_as_received, stripe, first) == "paid"
    burst = [(third, "req-3"), (first, "req-1-again"), (second, "req-2"), (third, "req-3-again")]
    later = NOW + timedelta(minutes=1)
    assert run(webhook_events.process_together, stripe, burst, now=later) == ["paid", False, "paid", False]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(stripe_events.c.id, stripe_events.c.request_id, stripe_events.c.processed_at))
        assert sorted(stored) == [("evt_b0", "req-alone", NOW), ("evt_b1", "req-2", later), ("evt_b2", "req-3", later)]
    assert {run(payment_attempts.get_attempt, WS, a["id"])["status"] for a in attempts} == {"succeeded"}
    with engine.connect() as conn:  # each payment announced once, under its own delivery's request id
        announced = conn.execute(
            sa.select(OUTBOX.c.body, OUTBOX.c.request_id).where(OUTBOX.c.event_type == "payment.succeeded")
        )
        by_payment = {json.loads(body)["data"]["payment_id"]: request_id for body, request_id in announced}
    assert by_payment == {attempts[0]["id"]: "req-alone", attempts[1]["id"]: "req-2", attempts[2]["id"]: "req-3"}


def test_a_batch_handles_its_events_in_the_order_stripe_made_them(run, stripe, billing, engine):
    """A dispute opened then closed, delivered together, whose ids sort the other way round: the
    dispute ends as its last event left it, as it does when each is handled alone in turn."""
    paid_attempt(run, stripe, billing)
    [pi] = stripe.intents.values()
    dispute = {"id": "dp_b", "payment_intent": pi["id"], "amount": 10_000, "reason": "fraudulent"}
    opened = {
        **stripe_event("evt_z_opened", "charge.dispute.created", {**dispute, "status": "needs_response"}),
        "created": 100,
    }
    closed = {**stripe_event("evt_a_closed", "charge.dispute.closed", {**dispute, "status": "won"}), "created": 160}
    assert run(webhook_events.process_together, stripe, [(opened, "req-1"), (closed, "req-2")]) == [
        "dispute needs_response",
        "dispute won",
    ]
    [listed] = run(card_disputes.list_disputes, WS)
    assert listed["status"] == "won"
    assert [e["status"] for e in published(engine, "payment.disputed")] == ["needs_response", "won"]


def test_a_batch_whose_event_a_twin_stored_meanwhile_is_undone_whole(run, stripe, billing, engine):
    """Stored by another replica after the batch checked (here: a twin delivery, stored between the
    check and the insert), the batch's insert counts a row short: it raises, and its caller's
    rollback leaves nothing of it; each event is then handled alone."""
    paid_attempt(run, stripe, billing, key="k1")
    paid_attempt(run, stripe, billing, key="k2")
    one, two = (
        intent_event(f"evt_t{i}", "payment_intent.succeeded", pi) for i, pi in enumerate(stripe.intents.values())
    )
    twin_stored = []

    def store_twin(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO stripe_events") and not twin_stored:
            twin_stored.append(True)
            cursor.execute(
                "INSERT INTO stripe_events (id, type, body, received_at, outcome, attempts) VALUES (?, ?, ?, ?, '', 0)",
                ("evt_t1", "payment_intent.succeeded", "{}", NOW.isoformat()),
            )

    sa.event.listen(engine, "before_cursor_execute", store_twin)
    try:
        with pytest.raises(webhook_events.Redelivered):
            run(webhook_events.process_together, stripe, [(one, "req-1"), (two, "req-2")])
    finally:
        sa.event.remove(engine, "before_cursor_execute", store_twin)
    assert published(engine, "payment.succeeded") == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(stripe_events)).scalar_one() == 0


def test_an_attempt_tells_how_it_is_paid_a_card_or_a_bank_debit(run, stripe, billing, engine):
    opened = run(payment_attempts.start_payment, billing, WS, CLIENT, {"invoice_ids": ["inv-1"]}, "k-method")
    assert run(payment_attempts.get_attempt, WS, opened["id"], CLIENT)["method"] is None  # nothing chosen yet
    by_card = paid_attempt(run, stripe, billing)
    assert run(payment_attempts.get_attempt, WS, by_card["id"], CLIENT)["method"] == "card"
    with engine.begin() as conn:
        conn.execute(
            payment_methods.insert().values(
                id="pm_bank", workspace_id=WS, client_id=CLIENT, type="sepa_debit", saved=True, created_at=NOW
            )
        )
        conn.execute(attempts.update().where(attempts.c.id == opened["id"]).values(payment_method_id="pm_bank"))
    assert run(payment_attempts.get_attempt, WS, opened["id"], CLIENT)["method"] == "sepa_debit"

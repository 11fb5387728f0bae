"""Payments service entrypoints: card payments, saved cards, autopay, refunds and Stripe events.
Each RPC or event runs one handler. A Stripe event is processed as it is stored, in one transaction
(one whose handling calls Stripe back: stored, answered, then processed in the background); a timer
processes whatever that left (a stopped process, a retry that is due). Each event takes effect once
even with several replicas."""

from __future__ import annotations

import logging
from pathlib import Path

import eventlet.queue
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer

from chassis import metrics, nameko_patches, settings
from chassis.errors import EXPECTED, ServiceError
from chassis.group_commit import GroupCommit, Waiting
from chassis.logs import current_request_id, request_context
from chassis.nameko_ext import Database, ServiceBase, consumes
from chassis.rpc import TimedRpcProxy
from chassis.scope import CALLER, OWN, runs_in
from services.payments import bank_debit, step_up
from services.payments.handlers import (
    autopay,
    card_disputes,
    cards,
    charging,
    payment_attempts,
    payment_refunds,
    webhook_events,
)
from services.payments.stripe_api import StripeApi

# `nameko run` loads this module to start the service: nameko is patched before it builds the container.
nameko_patches.apply()


log = logging.getLogger(__name__)


class Stripe(DependencyProvider):
    """The Stripe client, configured once per container from the environment."""

    def setup(self):
        self.api = StripeApi.from_env()

    def get_dependency(self, worker_ctx):
        return self.api


class Background(DependencyProvider):
    """`self.background(fn, *args)`: queue fn to run after the worker has answered, in one of
    `concurrency` threads that the container manages (and stops with itself), so a burst of the
    webhooks processed after their answer takes no more database connections than that. The queue
    is in memory: what a stopped process leaves in it, the timers find. Errors are logged, never
    raised."""

    queue: eventlet.queue.LightQueue  # made by setup(), in the container that runs the threads

    def __init__(self, concurrency: int):
        self.concurrency = concurrency

    def setup(self):
        self.queue = eventlet.queue.LightQueue()

    def start(self):
        for _ in range(self.concurrency):
            self.container.spawn_managed_thread(self._run, identifier="background")

    def _run(self):
        while True:
            fn, args = self.queue.get()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - an error here must not stop the container
                log.exception("background work failed", extra={"work": getattr(fn, "__name__", "?")})

    def get_dependency(self, worker_ctx):
        return lambda fn, *args: self.queue.put((fn, args))


# Deliveries of Stripe's events that are handled together: one per process, as nameko's workers are
# green threads of one process.
_RECEIVED_TOGETHER = GroupCommit()


class PaymentsService(ServiceBase):
    name = "payments"
    db = Database("payments", Path(__file__).parent / "migrations")
    stripe = Stripe()
    background = Background(settings.env_int("STRIPE_EVENTS_CONCURRENCY", 4))
    billing = TimedRpcProxy("billing")

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    @step_up.required  # step-up for money (services/payments/step_up.py)
    def start_payment(self, workspace_id: str, client_id: str, request: dict, request_key: str) -> dict:
        return self._tx(payment_attempts.start_payment, self.billing, workspace_id, client_id, request, request_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_attempt(self, workspace_id: str, attempt_id: str, client_id: str | None = None) -> dict:
        return self._tx(payment_attempts.get_attempt, workspace_id, attempt_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    @step_up.required  # step-up for money (services/payments/step_up.py)
    def card_setup(
        self, workspace_id: str, client_id: str, attempt_id: str | None = None, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            cards.card_setup,
            self.stripe,
            self.billing,
            workspace_id,
            client_id,
            attempt_id,
            idempotency_key=idempotency_key,
        )

    # confirm_attempt and refresh_attempt take no idempotency key: a conditional UPDATE claims the
    # attempt row, so a repeat while the first runs, or after it, gets the attempt's real state, and
    # Stripe's own key (attempt:<id>:<try>) keeps the charge single. A kept answer would go stale.
    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    @step_up.required  # step-up for money (services/payments/step_up.py)
    def confirm_attempt(
        self,
        workspace_id: str,
        client_id: str,
        attempt_id: str,
        setup_intent_id: str | None = None,
        payment_method_id: str | None = None,
        save: bool = False,
    ) -> dict:
        return self._tx(
            charging.confirm_attempt,
            self.stripe,
            workspace_id,
            client_id,
            attempt_id,
            setup_intent_id,
            payment_method_id,
            save,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def refresh_attempt(self, workspace_id: str, client_id: str, attempt_id: str) -> dict:
        return self._tx(charging.refresh_attempt, self.stripe, workspace_id, client_id, attempt_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_cards(self, workspace_id: str, client_id: str) -> list[dict]:
        return self._tx(cards.list_cards, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    @step_up.required  # step-up for money (services/payments/step_up.py)
    def save_card(
        self, workspace_id: str, client_id: str, setup_intent_id: str, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            cards.save_card, self.stripe, workspace_id, client_id, setup_intent_id, idempotency_key=idempotency_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    @step_up.required  # step-up for money (services/payments/step_up.py)
    def set_default_card(
        self, workspace_id: str, client_id: str, payment_method_id: str, idempotency_key: str | None = None
    ) -> list[dict]:
        return self._tx(
            cards.set_default_card,
            self.stripe,
            workspace_id,
            client_id,
            payment_method_id,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    @step_up.required  # step-up for money (services/payments/step_up.py)
    def remove_card(
        self, workspace_id: str, client_id: str, payment_method_id: str, idempotency_key: str | None = None
    ) -> list[dict]:
        return self._tx(
            cards.remove_card,
            self.stripe,
            workspace_id,
            client_id,
            payment_method_id,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    @step_up.required  # a new mandate, and with attempt_id a debit: money moves
    def add_bank_account(
        self,
        workspace_id: str,
        client_id: str,
        details: dict,
        acceptance: dict,
        attempt_id: str | None = None,
        save: bool = True,
        idempotency_key: str | None = None,
    ) -> dict:
        """A bank account under a new SEPA mandate; with attempt_id, the debit of that payment too."""
        return self._tx(
            bank_debit.add_bank_account,
            self.stripe,
            self.billing,
            workspace_id,
            client_id,
            details,
            acceptance,
            attempt_id,
            save,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_mandates(self, workspace_id: str, client_id: str) -> list[dict]:
        return self._tx(bank_debit.list_mandates, workspace_id, client_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def refund_payment(
        self, workspace_id: str, payment_id: str, amount=None, reason: str = "", request_key: str = ""
    ) -> dict:
        return self._tx(
            payment_refunds.refund_payment, self.stripe, workspace_id, payment_id, amount, reason, request_key
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_refunds(self, workspace_id: str, payment_id: str) -> list[dict]:
        return self._tx(payment_refunds.list_refunds, workspace_id, payment_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_disputes(self, workspace_id: str) -> list[dict]:
        return self._tx(card_disputes.list_disputes, workspace_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def receive_stripe_event(self, event: dict) -> bool:
        """The gateway verified the signature. Most events are handled and stored in one transaction
        before the answer; one whose handling calls Stripe back is stored and answered at once, then
        processed right after the answer, as the timer would process it. False for a redelivery."""
        webhook_events.check_event(event)
        if webhook_events.processed_as_received(event):
            return self._process_stripe_event(event["id"], event, as_received=True)
        stored = self._tx(webhook_events.receive_event, event)
        if stored:  # the event in hand, so whose it is needs no read of what was just stored
            self.background(self._process_stored_event, event["id"], current_request_id(), event)
        return stored

    @runs_in(OWN)
    @timer(interval=float(settings.env("STRIPE_EVENTS_INTERVAL", "0.25")))
    def process_stripe_events(self):
        """The safety net: events left unprocessed (a replica stopped mid-way, a failure whose retry is
        due). An event being processed as it was stored is locked, and this skips it."""
        with self.db.uow() as uow:  # Stripe's events are the service's own: no workspace's rows
            pending = webhook_events.pending_events(uow, self.clock())
        for event_id, request_id in pending:
            self._process_stored_event(event_id, request_id)

    def _process_stored_event(self, event_id: str, request_id: str | None, event: dict | None = None) -> None:
        with request_context(request_id):  # the webhook's id, in this worker's logs and the events it records
            self._process_stripe_event(event_id, event)

    def _process_stripe_event(self, event_id: str, event: dict | None = None, as_received: bool = False) -> bool:
        """Whose event it is is looked up across workspaces (from `event`, the delivery in hand, when
        given; else from the stored body); it is handled in that workspace's scope (an event naming
        nothing of ours sees nothing, and is ignored). `as_received`: the delivery is not stored yet,
        and is stored with its handling (False when it was stored already, by this delivery's twin or
        an earlier one). A failure is retried later, the delivery stored for it first when it was not."""
        try:
            with self.scope.system(), self.db.uow() as uow:
                workspace_id = (
                    webhook_events.workspace_of(uow, event)
                    if event is not None
                    else webhook_events.event_workspace(uow, event_id)
                )
            with self.scope.workspace(workspace_id or ""):
                outcome = (
                    self._received_together(workspace_id, event)
                    if as_received and event is not None
                    else self._tx(webhook_events.process_event, self.stripe, event_id)
                )
            if outcome is False:
                return False
            if outcome is not None:
                log.info("stripe event processed", extra={"event_id": event_id, "outcome": outcome})
                metrics.EVENTS_HANDLED.labels(self.name, webhook_events.STRIPE_EVENT_CONSUMER, "processed").inc()
            return True
        except webhook_events.Redelivered:
            return False
        except Exception as exc:  # noqa: BLE001 - retried later with a growing delay, then parked
            # Handled as received, it is stored now, for the retries. Stored already, another delivery
            # of it committed meanwhile (a refund's or dispute's own key refused this one): that counts.
            if as_received and not self._tx(webhook_events.receive_event, event):
                log.info("stripe event delivered again while it was handled", extra={"event_id": event_id})
                return False
            log.exception("stripe event failed", extra={"event_id": event_id})
            parked = self._tx(
                webhook_events.event_failed,
                event_id,
                repr(exc),
                settings.env_int("EVENT_RETRY_ATTEMPTS", 5),
                float(settings.env("EVENT_RETRY_BASE_DELAY", "0.5")),
            )
            consumer = webhook_events.STRIPE_EVENT_CONSUMER  # counted as `consumes` counts broker events
            if parked:
                metrics.DEAD_LETTERED.labels(self.name, consumer).inc()
                metrics.EVENTS_HANDLED.labels(self.name, consumer, "dead_lettered").inc()
            else:
                metrics.EVENT_RETRIES.labels(self.name, consumer).inc()
            return True

    def _received_together(self, workspace_id: str | None, event: dict) -> str | bool:
        """The delivery handled and stored, with the workspace's deliveries that arrive while one is in
        its transaction (chassis/group_commit.py): a burst of Stripe's events (a client paying many
        invoices, Stripe catching up after an outage) then commits together instead of one at a time.
        Its outcome, or False for a redelivery (raised as Redelivered when it came alone). Alone after
        its batch failed, it is handled as it would have been without one."""

        def alone(delivery: dict) -> str:
            return self._tx(webhook_events.process_as_received, self.stripe, delivery)

        def run(batch: list[Waiting]) -> list[str | bool]:
            metrics.EVENT_BATCH_SIZE.labels(self.name, webhook_events.STRIPE_EVENT_CONSUMER).observe(len(batch))
            if len(batch) == 1:
                return [alone(batch[0].event)]
            received = [(waiting.event, waiting.request_id) for waiting in batch]
            return self._tx(webhook_events.process_together, self.stripe, received)

        outcome = _RECEIVED_TOGETHER.handle((self.db.engine, workspace_id), event, run)
        return alone(event) if outcome is None else outcome

    OUTCOMES = {
        "payment.succeeded": "succeeded",
        "payment.failed": "failed",
        "payment.refunded": "refunded",
        "payment.disputed": "disputed",
    }

    def published(self, event_type: str, event: dict) -> None:
        """portal_payments_total: an outcome counts once its event left the outbox, i.e. it was committed."""
        if event_type in self.OUTCOMES:
            metrics.PAYMENTS.labels(self.OUTCOMES[event_type]).inc()

    def replay_parked(self, consumer: str, event: dict):
        if consumer == webhook_events.STRIPE_EVENT_CONSUMER.split(".", 1)[1]:
            return self._tx(lambda uow, now: webhook_events.requeue_event(uow, event["id"]))
        return super().replay_parked(consumer, event)

    @consumes("billing", "invoice.sent")
    def on_invoice_sent(self, uow, now, event):
        """Recurring invoices with autopay are charged to the default card (by `run_autopay`)."""
        if event["data"].get("autopay") and event["data"].get("balance", 0) > 0:
            autopay.queue_autopay(uow, now, self.billing, event["workspace_id"], event["data"])

    @consumes("billing", "invoice.disputed")
    def on_invoice_disputed(self, uow, now, event):
        """An autopay charge still queued for the invoice is cancelled until the dispute is resolved."""
        autopay.pause_autopay(uow, now, event["workspace_id"], event["data"])

    @consumes("billing", "invoice.dispute_resolved")
    def on_invoice_dispute_resolved(self, uow, now, event):
        """Autopay resumes for what the invoice still owes after the dispute's outcome."""
        autopay.resume_autopay(uow, now, self.billing, event["workspace_id"], event["data"])

    @runs_in(OWN)
    @timer(interval=float(settings.env("AUTOPAY_INTERVAL", "1")))
    def run_autopay(self):
        """Which attempts are due is looked up across workspaces; each is charged in its client's scope."""
        with self.scope.system(), self.db.uow() as uow:
            due = autopay.due_autopay(uow, self.clock())
        for attempt_id, card_id, workspace_id, client_id in due:
            try:
                with self.scope.workspace(workspace_id, client_id):
                    self._tx(charging.charge, self.stripe, attempt_id, card_id)
            except ServiceError as exc:  # Stripe unreachable: the attempt is open again for the next tick
                log.warning("autopay charge postponed", extra={"attempt_id": attempt_id, "error": exc.detail})
            except Exception:  # noqa: BLE001
                log.exception("autopay charge failed", extra={"attempt_id": attempt_id})

"""The portal benchmark's monolith baseline: what the same portal would pay as one program.

It is the gateway's own Falcon app (services/gateway/app.py `create_app`: every middleware, the same
resources, the same templates), served by the gateway's gunicorn configuration, with one difference:
where the gateway makes an RPC through the broker to a service, this calls that service's handler in
process, on that service's database as its login role, in the scope the service would act in: the
session's credential is checked as the gateway checks it, and then, as a monolith would, against its
session row (auth's `check_session` on auth's database), the dashboard is read by billing's
`client_dashboard` on billing's database in the client's row-level-security scope (the same SQL), and
so on. No broker, no other process.

Only what /dashboard, /invoices and POST /webhooks/stripe need is in process; any other call fails
(503). A Stripe event (the benchmark sends `payment_intent.succeeded`) takes, in the request's thread,
the path a payment's outcome takes through the services: payments processes and stores it in one
transaction in its workspace's scope (its attempt succeeds, payment.succeeded is recorded), then
billing's consumer of payment.succeeded records the payment once (its inbox) on billing's database.
A handling that fails is not kept for retries, as the benchmark's events do not fail. The events
each records reach its outbox, as in the services; no relay reads them, as no subscriber runs.
`gunicorn -c services/gateway/gunicorn.conf.py 'bench.monolith:get_app()'` with
AUTH_DATABASE_URL, BILLING_DATABASE_URL and, for webhooks, PAYMENTS_DATABASE_URL set.
"""

from __future__ import annotations

import falcon

from chassis import db as dbmod
from chassis import events, settings
from chassis.clock import utcnow
from chassis.scope import SYSTEM, Scope, acting_for
from chassis.scope import of_event as scope_of_event
from services.auth import handlers as auth_handlers
from services.billing import handlers as billing_handlers
from services.gateway.app import GatewayConfig, create_app
from services.gateway.revocations import RevocationList
from services.gateway.rpc import ServiceUnavailable
from services.payments.handlers import webhook_events
from services.payments.stripe_api import StripeApi

BILLING_METHODS = {"client_dashboard", "get_workspace", "get_client", "list_invoices"}


class InProcess:
    """The gateway's RPC pool's `call`, answered by the services' handlers in this process."""

    def __init__(self, auth_url: str, billing_url: str, pool_size: int, payments_url: str | None = None):
        self.auth = dbmod.make_engine(auth_url, pool_size=pool_size)
        self.billing = dbmod.make_engine(billing_url, pool_size=pool_size)
        self.payments = dbmod.make_engine(payments_url, pool_size=pool_size) if payments_url else None
        self.stripe = StripeApi.from_env() if payments_url else None

    def call(
        self, service: str, method: str, *args, request_id: str | None = None, scope: Scope | None = None, **kwargs
    ):
        if (service, method) == ("auth", "check_session"):
            with acting_for(scope), dbmod.UnitOfWork(self.auth) as uow:
                return auth_handlers.check_session(uow, utcnow(), *args)
        if service == "billing" and method in BILLING_METHODS:
            with acting_for(scope), dbmod.UnitOfWork(self.billing) as uow:  # the caller's scope, as billing's CALLER
                result = getattr(billing_handlers, method)(uow, utcnow(), *args, **kwargs)
                uow.commit()
                return result
        if (service, method) == ("payments", "receive_stripe_event") and self.payments is not None:
            return self.receive_stripe_event(*args)
        raise ServiceUnavailable(f"{service}.{method} is not part of the monolith baseline", service)

    def receive_stripe_event(self, event: dict) -> bool:
        """The event processed and stored by payments, and its payment recorded by billing, before the
        answer."""
        assert self.payments is not None
        with acting_for(SYSTEM), dbmod.UnitOfWork(self.payments) as uow:  # whose event it is
            workspace_id = webhook_events.workspace_of(uow, event)
        try:
            with acting_for(Scope(workspace_id or "")), Recording(self.payments) as uow:
                webhook_events.process_as_received(uow, utcnow(), self.stripe, event)
                uow.commit()
        except webhook_events.Redelivered:
            return False
        for recorded in uow.recorded:
            if recorded["type"] == "payment.succeeded":
                now = utcnow()
                with acting_for(scope_of_event(recorded)):
                    events.consume_once(
                        self.billing, "billing.on_payment_succeeded", recorded, lambda conn, e: _paid(conn, now, e)
                    )
        return True


class Recording(dbmod.UnitOfWork):
    """A unit of work that also keeps the events it recorded, for the consumer in this process."""

    def __init__(self, engine, clock=utcnow):
        super().__init__(engine, clock)
        self.recorded: list[dict] = []

    def publish(self, event_type, workspace_id, data, version=1):
        event = super().publish(event_type, workspace_id, data, version)
        self.recorded.append(event)
        return event


def _paid(conn, now, event: dict) -> None:
    """billing's consumer of payment.succeeded, in the transaction of its inbox row."""
    with dbmod.joined(conn, lambda: now) as uow:
        billing_handlers.record_stripe_payment(uow, now, event)


def get_app() -> falcon.App:
    services = InProcess(
        settings.database_url("auth"),
        settings.database_url("billing"),
        pool_size=settings.env_int("GATEWAY_THREADS", 4),
        payments_url=settings.env("PAYMENTS_DATABASE_URL") or None,
    )
    # no revocation feed: every session is checked against its row, as one program with one database would
    return create_app(services, services, GatewayConfig.from_env(), RevocationList(ready=False), utcnow)

"""The portal benchmark's monolith baseline: what the same portal would pay as one program.

It is the gateway's own Falcon app (services/gateway/app.py `create_app`: every middleware, the same
resources, the same templates), served by the gateway's gunicorn configuration, with one difference:
where the gateway makes an RPC through the broker to a service, this calls that service's handler in
process, on that service's database as its login role, in the scope the service would act in: the
session's credential is checked as the gateway checks it, and then, as a monolith would, against its
session row (auth's `check_session` on auth's database), the dashboard is read by billing's
`client_dashboard` on billing's database in the client's row-level-security scope (the same SQL), and
so on. No broker, no other process.

Only what /dashboard and /invoices need is in process; any other call fails (503).
`gunicorn -c services/gateway/gunicorn.conf.py 'bench.monolith:get_app()'` with
AUTH_DATABASE_URL and BILLING_DATABASE_URL set.
"""

from __future__ import annotations

import falcon

from chassis import db as dbmod
from chassis import settings
from chassis.clock import utcnow
from chassis.scope import Scope, acting_for
from services.auth import handlers as auth_handlers
from services.billing import handlers as billing_handlers
from services.gateway.app import GatewayConfig, create_app
from services.gateway.revocations import RevocationList
from services.gateway.rpc import ServiceUnavailable

BILLING_METHODS = {"client_dashboard", "get_workspace", "get_client", "list_invoices"}


class InProcess:
    """The gateway's RPC pool's `call`, answered by the services' handlers in this process."""

    def __init__(self, auth_url: str, billing_url: str, pool_size: int):
        self.auth = dbmod.make_engine(auth_url, pool_size=pool_size)
        self.billing = dbmod.make_engine(billing_url, pool_size=pool_size)

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
        raise ServiceUnavailable(f"{service}.{method} is not part of the monolith baseline", service)


def get_app() -> falcon.App:
    services = InProcess(
        settings.database_url("auth"),
        settings.database_url("billing"),
        pool_size=settings.env_int("GATEWAY_THREADS", 4),
    )
    # no revocation feed: every session is checked against its row, as one program with one database would
    return create_app(services, services, GatewayConfig.from_env(), RevocationList(ready=False), utcnow)

"""The gateway's Prometheus metrics, /metrics, /livez and /readyz.

gunicorn runs several worker processes: gunicorn.conf.py sets PROMETHEUS_MULTIPROC_DIR, each worker
writes its values to files there, and /metrics (whichever worker answers) adds up all of them.
Without it (a test client, one process) the process's own registry is served.
"""

from __future__ import annotations

import hmac
import os
import socket
import time
from urllib.parse import urlparse

import falcon
import prometheus_client
from prometheus_client import REGISTRY, CollectorRegistry, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE  # what every Prometheus reads

from chassis.errors import ServiceError
from services.gateway.rpc import ServiceTimeout, ServiceUnavailable

prometheus_client.disable_created_metrics()  # no `*_created` series: no query uses them

BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
HTTP_DURATION = Histogram(
    "portal_http_request_duration_seconds",
    "Time the gateway took to answer an HTTP request, by route template.",
    ["method", "route", "status"],
    buckets=BUCKETS,
)
GATEWAY_RPC = Histogram(
    "portal_gateway_rpc_duration_seconds",
    "Time the gateway waited for a service's answer, pool checkout included.",
    ["service", "method", "outcome"],
    buckets=BUCKETS,
)

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def route_of(req: falcon.Request) -> str:
    """The route template (`/i/{token}`), never the path: paths hold ids and one-document tokens, which
    are credentials, and would make a series per document."""
    if req.uri_template:
        return req.uri_template
    if req.path.startswith("/static/"):
        return "/static/{path}"
    return "unmatched"


class MetricsMiddleware:
    """First in the chain, so it times the other middleware and the error handlers too."""

    def process_request(self, req, resp):
        req.context.metrics_started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded):
        started = req.context.get("metrics_started")
        if started is None:
            return
        method = req.method if req.method in METHODS else "other"
        HTTP_DURATION.labels(method, route_of(req), str(falcon.http_status_to_code(resp.status))).observe(
            time.perf_counter() - started
        )


def rpc_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, ServiceTimeout):
        return "timeout"
    if isinstance(exc, ServiceUnavailable):
        return "unavailable"
    if isinstance(exc, ServiceError):
        return "refused"  # the service answered with a business error (404, 409, 422 ...)
    return "error"  # ServiceCrashed: the service raised something unexpected


class MeteredRpc:
    """Wraps an RpcPool from outside: times every `call`; everything else passes through."""

    def __init__(self, pool):
        self._pool = pool

    def call(self, service: str, method: str, *args, **kwargs):
        started, error = time.perf_counter(), None
        try:
            return self._pool.call(service, method, *args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            GATEWAY_RPC.labels(service, method, rpc_outcome(error)).observe(time.perf_counter() - started)

    def __getattr__(self, name):
        return getattr(self._pool, name)


def exposition() -> tuple[bytes, str]:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(REGISTRY), CONTENT_TYPE
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return generate_latest(registry), CONTENT_TYPE


class Metrics:
    """`GET /metrics`, for Prometheus only: with METRICS_TOKEN set, only for `Authorization: Bearer
    <METRICS_TOKEN>`; without it, only in development (PORTAL_ENV=dev), else 404."""

    public = True  # for ops and probes, not clients

    def __init__(self, token: str | None, dev: bool):
        self.token = token
        self.dev = dev

    def on_get(self, req, resp):
        if self.token:
            scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
                raise falcon.HTTPUnauthorized(
                    title="Metrics need a token",
                    description="Send Authorization: Bearer <METRICS_TOKEN>.",
                    challenges=["Bearer"],
                )
        elif not self.dev:
            raise falcon.HTTPNotFound()
        body, content_type = exposition()
        resp.content_type = content_type
        resp.data = body


def broker_reachable(amqp_uri: str, timeout: float = 2.0) -> dict:
    url = urlparse(amqp_uri)
    try:
        with socket.create_connection((url.hostname or "localhost", url.port or 5672), timeout=timeout):
            return {"ok": True}
    except OSError as exc:
        return {"ok": False, "error": str(exc)}


class Live:
    """`GET /livez`: the process answers HTTP; asks nothing of anyone (a liveness probe must not fail
    because a service or the broker is down: restarting the gateway would not help)."""

    public = True  # for ops and probes, not clients

    def on_get(self, req, resp):
        resp.media = {"status": "ok"}


class Ready:
    """`GET /readyz`: the broker is reachable, so requests can be served; 503 otherwise."""

    public = True  # for ops and probes, not clients

    def __init__(self, amqp_uri: str):
        self.amqp_uri = amqp_uri

    def on_get(self, req, resp):
        broker = broker_reachable(self.amqp_uri)
        resp.status = 200 if broker["ok"] else 503
        resp.media = {"status": "ready" if broker["ok"] else "not ready", "checks": {"broker": broker}}


def add_ops_routes(app: falcon.App, config) -> None:
    app.add_route("/metrics", Metrics(config.metrics_token, config.dev))
    app.add_route("/livez", Live())
    app.add_route("/readyz", Ready(config.amqp_uri))

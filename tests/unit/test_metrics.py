"""Metrics, health and request-id plumbing, without a broker: the nameko pieces called directly, the
gateway through Falcon's test client, the outbox on SQLite."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import falcon.testing
import pytest
import sqlalchemy as sa
from nameko.rpc import Rpc
from nameko.testing.services import worker_factory
from prometheus_client import REGISTRY

from chassis import events, metrics
from chassis.clock import utcnow
from chassis.db import joined
from chassis.errors import EXPECTED, Conflict, NotFound
from chassis.logs import request_id_var
from chassis.nameko_ext import Database, DatabaseHandle, OutboxDispatcher, RpcMetrics, ServiceBase, consumes
from services.documents.pdf import Renderer
from services.gateway import metrics as gateway_metrics
from services.gateway.app import GatewayConfig, create_app
from services.gateway.rpc import ServiceTimeout, ServiceUnavailable
from services.payments.service import PaymentsService
from tests.unit.test_gateway import FakeRpc

ROOT = Path(__file__).resolve().parents[2]


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ services: RPC, events, outbox


class Worker:
    """Stands in for nameko's WorkerContext (hashable by identity, like it)."""

    def __init__(self, entrypoint, data=None):
        self.entrypoint = entrypoint
        self.data = data or {}


def worker(method: str, request_id: str | None = None):
    entrypoint = Rpc(expected_exceptions=EXPECTED)
    entrypoint.method_name = method
    return Worker(entrypoint, {"request_id": request_id})


def test_every_rpc_is_timed_by_method_and_outcome_and_logged_with_the_request_id(caplog):
    provider = RpcMetrics()
    provider.container = SimpleNamespace(service_name="unit-rpc")
    caplog.set_level(logging.INFO, logger="chassis.nameko_ext")
    outcomes = [(None, "ok"), (NotFound("no such invoice"), "refused"), (RuntimeError("bug"), "error")]
    for exc, _ in outcomes:
        ctx = worker("list_invoices", "rid-unit-1")
        request_id_var.set("rid-unit-1")  # what RequestContext.worker_setup does
        provider.worker_setup(ctx)
        time.sleep(0.01)
        provider.worker_result(ctx, None, (type(exc), exc, None) if exc else None)
        provider.worker_teardown(ctx)
    request_id_var.set(None)
    for _, outcome in outcomes:
        labels = {"service": "unit-rpc", "method": "list_invoices", "outcome": outcome}
        assert value("portal_rpc_duration_seconds_count", **labels) == 1
        assert value("portal_rpc_duration_seconds_sum", **labels) >= 0.01
    lines = [r for r in caplog.records if r.getMessage() == "rpc handled"]
    assert [(r.method, r.outcome) for r in lines] == [("list_invoices", o) for _, o in outcomes]
    assert all(r.ms >= 10 for r in lines)
    assert provider._started == {}  # nothing kept per worker


def test_fast_good_reads_are_logged_one_in_ten_everything_else_always(caplog, monkeypatch):
    monkeypatch.setenv("RPC_LOG_SLOW_MS", "200")  # far above a fast call, even on a busy machine
    provider = RpcMetrics()
    provider.container = SimpleNamespace(service_name="unit-rpc-sampled")
    caplog.set_level(logging.INFO, logger="chassis.nameko_ext")

    def call(method, exc=None, seconds=0.0):
        ctx = worker(method)
        provider.worker_setup(ctx)
        time.sleep(seconds)
        provider.worker_result(ctx, None, (type(exc), exc, None) if exc else None)

    for _ in range(20):
        call("client_dashboard")
    call("get_invoice", seconds=0.25)  # slow
    call("get_invoice", NotFound("no such invoice"))  # refused
    for _ in range(3):
        call("add_comment")  # changes something
    logged = [(r.method, r.outcome) for r in caplog.records if r.getMessage() == "rpc handled"]
    assert (
        logged
        == [("client_dashboard", "ok")] * 2
        + [("get_invoice", "ok"), ("get_invoice", "refused")]
        + [("add_comment", "ok")] * 3
    )
    assert (
        value("portal_rpc_duration_seconds_count", service="unit-rpc-sampled", method="client_dashboard", outcome="ok")
        == 20
    )  # every call is still counted


def test_timers_and_http_workers_are_not_counted_as_rpc():
    provider = RpcMetrics()
    provider.container = SimpleNamespace(service_name="unit-rpc-timer")
    ctx = Worker(SimpleNamespace(method_name="relay_outbox", expected_exceptions=()))
    provider.worker_setup(ctx)
    provider.worker_result(ctx, None, None)
    assert (
        value("portal_rpc_duration_seconds_count", service="unit-rpc-timer", method="relay_outbox", outcome="ok") == 0
    )


def test_outcome_of():
    assert metrics.outcome_of(None) == "ok"
    assert metrics.outcome_of(Conflict("taken"), EXPECTED) == "refused"
    assert metrics.outcome_of(Conflict("taken"), ()) == "error"
    assert metrics.outcome_of(KeyError("x"), EXPECTED) == "error"


class EventsService:
    name = "unit-events"
    clock = staticmethod(utcnow)

    def __init__(self, engine):
        self.db = DatabaseHandle(engine)
        self.seen = []

    @consumes("billing", "thing.happened", max_attempts=3, base_delay=0)
    def on_thing(self, uow, now, event):
        if event["data"].get("refuse"):
            raise Conflict("a business rule says no")
        if event["data"].get("fail_times", 0) > len(self.seen):
            self.seen.append(event["id"])
            raise RuntimeError("the database blinked")


def test_consumers_count_processed_duplicates_retries_and_dead_letters(sqlite_engine, caplog):
    engine = sqlite_engine("auth")
    service = EventsService(engine)
    consumer = "unit-events.on_thing"

    def handled(outcome):
        return value("portal_events_handled_total", service="unit-events", consumer=consumer, outcome=outcome)

    caplog.set_level(logging.INFO, logger="chassis.nameko_ext")

    ok = events.envelope("thing.happened", "ws1", {})
    assert service.on_thing(ok) is True
    assert service.on_thing(ok) is False  # redelivered: the inbox knows it
    flaky = events.envelope("thing.happened", "ws1", {"fail_times": 1})
    assert service.on_thing(flaky) is True  # second try works
    broken = events.envelope("thing.happened", "ws1", {"fail_times": 99})
    assert service.on_thing(broken) is False  # three tries, then parked
    refused = events.envelope("thing.happened", "ws1", {"refuse": True})
    assert service.on_thing(refused) is False  # parked at once

    assert (handled("processed"), handled("duplicate"), handled("dead_lettered")) == (2, 1, 2)
    assert value("portal_event_retries_total", service="unit-events", consumer=consumer) == 1 + 2
    assert value("portal_dead_letters_total", service="unit-events", consumer=consumer) == 2
    assert events.count_dead_letters(engine) == 2
    logged = [(r.event_id, r.outcome) for r in caplog.records if r.getMessage() == "event handled"]
    assert logged == [
        (ok["id"], "processed"),
        (ok["id"], "duplicate"),
        (flaky["id"], "processed"),
        (broken["id"], "dead_lettered"),
        (refused["id"], "dead_lettered"),
    ]


def test_the_relay_publishes_each_event_with_the_request_id_that_recorded_it(sqlite_engine):
    engine = sqlite_engine("billing")
    for request_id in ("rid-outbox-1", None, "x" * 100):
        request_id_var.set(request_id)
        with engine.begin() as conn, joined(conn) as uow:
            uow.publish("thing.happened", "ws1", {"n": request_id})
    request_id_var.set(None)
    sent = []
    assert events.relay_outbox(engine, lambda batch: sent.extend(request_id for _, _, request_id in batch)) == 3
    assert sent == ["rid-outbox-1", None, "x" * 64]  # cut to the column


def test_outbox_dispatcher_puts_the_events_request_id_in_the_message_headers():
    dispatcher = OutboxDispatcher()
    dispatcher.confirmed = mock.Mock()
    timer_worker = SimpleNamespace(context_data={"call_id_stack": ["unit.relay_outbox.1"]})
    publish_all = dispatcher.get_dependency(timer_worker)
    publish_all([("thing.happened", {"id": "e1"}, "rid-header"), ("thing.happened", {"id": "e2"}, None)])
    [(batch,), _] = dispatcher.confirmed.publish_all.call_args
    assert [(o.event_type, o.event["id"]) for o in batch] == [("thing.happened", "e1"), ("thing.happened", "e2")]
    first, second = (o.headers for o in batch)
    assert first == {"nameko.call_id_stack": ["unit.relay_outbox.1"], "nameko.request_id": "rid-header"}
    assert second == {"nameko.call_id_stack": ["unit.relay_outbox.1"]}


def test_outbox_lag_and_parked_letters_are_read_at_scrape_time(sqlite_engine):
    engine = sqlite_engine("documents")
    old = utcnow() - timedelta(seconds=90)
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(events.OUTBOX.insert().values(event_id=f"e{i}", event_type="x.y", body="{}", created_at=old))
        events.add_dead_letter(conn, "unit.consumer", {"id": "e9"}, "boom")
    metrics.refresh_database_gauges("unit-lag", engine)
    assert value("portal_outbox_pending", service="unit-lag") == 3
    assert 90 <= value("portal_outbox_oldest_seconds", service="unit-lag") < 120
    assert value("portal_dead_letters_parked", service="unit-lag") == 1
    events.relay_outbox(engine, lambda batch: None)
    metrics.refresh_database_gauges("unit-lag", engine)
    assert value("portal_outbox_pending", service="unit-lag") == 0
    assert value("portal_outbox_oldest_seconds", service="unit-lag") == 0


class ProbedService(ServiceBase):
    name = "unit-probed"
    db = Database("billing", ROOT / "services" / "billing" / "migrations")


def probed(engine, broker_up: bool = True):
    return worker_factory(
        ProbedService, db=DatabaseHandle(engine), probe=SimpleNamespace(broker_connected=lambda: broker_up)
    )


def test_service_readyz_asks_the_database_and_the_broker(sqlite_engine, tmp_path):
    engine = sqlite_engine("billing")
    status, headers, body = probed(engine).http_readyz(None)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "service": "unit-probed",
        "ready": True,
        "checks": {"database": {"ok": True}, "broker": {"ok": True}},
    }
    status, _, body = probed(engine, broker_up=False).http_readyz(None)
    assert status == 503 and json.loads(body)["checks"]["broker"] == {"ok": False}
    gone = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}")  # its directory does not exist
    status, _, body = probed(gone).http_readyz(None)
    assert status == 503 and json.loads(body)["checks"]["database"]["ok"] is False
    assert probed(gone).http_healthz(None)[0] == 200  # liveness asks nothing of the database


def test_service_metrics_endpoint_serves_prometheus_text_with_fresh_gauges(sqlite_engine, tmp_path):
    engine = sqlite_engine("billing")
    with engine.begin() as conn, joined(conn) as uow:
        uow.publish("thing.happened", "ws1", {})
    status, headers, body = probed(engine).http_metrics(None)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'portal_outbox_pending{service="unit-probed"} 1.0' in body
    gone = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}")
    assert probed(gone).http_metrics(None)[0] == 200  # the database is away: the rest is still served


def test_payments_counts_an_outcome_once_its_event_is_published():
    service = worker_factory(PaymentsService)
    before = {o: value("portal_payments_total", outcome=o) for o in ("succeeded", "failed", "refunded", "disputed")}
    for event_type in (
        "payment.succeeded",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "payment.disputed",
        "payment.attempted",
    ):
        service.published(event_type, {})
    after = {o: value("portal_payments_total", outcome=o) - before[o] for o in before}
    assert after == {"succeeded": 2, "failed": 1, "refunded": 1, "disputed": 1}


def test_pdf_render_time_is_observed_for_renders_not_cache_hits():
    class Storage(dict):
        def put(self, key, pdf):
            self[key] = pdf

    renderer = Renderer(Storage())
    renderer.pool = SimpleNamespace(render=lambda kind, context: time.sleep(0.02) or b"%PDF-1.7 fake")
    before = value("portal_pdf_render_seconds_count", kind="receipt")
    for _ in range(3):
        assert renderer.get("receipt", {"number": "R-1"})[0] == b"%PDF-1.7 fake"
    assert value("portal_pdf_render_seconds_count", kind="receipt") == before + 1
    assert value("portal_pdf_render_seconds_sum", kind="receipt") >= 0.02


# ------------------------------------------------------------------ gateway


def gateway(dev: bool = True, token: str | None = None, amqp_uri: str = "amqp://guest:guest@127.0.0.1:1/"):
    rpc = FakeRpc({("auth", "resolve_document_link"): NotFound("no such link")})
    config = GatewayConfig(portal_url="http://portal.test", dev=dev, metrics_token=token, amqp_uri=amqp_uri)
    return falcon.testing.TestClient(create_app(gateway_metrics.MeteredRpc(rpc), rpc, config))


def test_gateway_requests_are_timed_by_route_template_never_by_path():
    client = gateway()
    labels = {"method": "GET", "route": "/i/{token}", "status": "404"}
    before = value("portal_http_request_duration_seconds_count", **labels)
    for _ in range(2):
        assert client.simulate_get("/i/secret-one-document-token").status_code == 404
    assert value("portal_http_request_duration_seconds_count", **labels) == before + 2
    client.simulate_get("/no/such/page")
    client.simulate_get("/livez")
    exposed = client.simulate_get("/metrics").text
    assert "secret-one-document-token" not in exposed and "/no/such/page" not in exposed
    assert 'route="unmatched"' in exposed and 'route="/livez",status="200"' in exposed
    rpc = {"service": "auth", "method": "resolve_document_link", "outcome": "refused"}
    assert value("portal_gateway_rpc_duration_seconds_count", **rpc) >= 2


def test_gateway_rpc_outcomes():
    class Pool:
        def __init__(self, *answers):
            self.answers = list(answers)
            self.size = 8

        def call(self, service, method, *args, **kwargs):
            answer = self.answers.pop(0)
            if isinstance(answer, BaseException):
                raise answer
            return answer

    errors = [
        ServiceTimeout("slow", "billing"),
        ServiceUnavailable("down", "billing"),
        NotFound("nope"),
        RuntimeError("bug"),
    ]
    rpc = gateway_metrics.MeteredRpc(Pool("fine", *errors))
    before = {
        o: value("portal_gateway_rpc_duration_seconds_count", service="billing", method="unit_outcomes", outcome=o)
        for o in ("ok", "timeout", "unavailable", "refused", "error")
    }
    assert rpc.call("billing", "unit_outcomes") == "fine"
    for error in errors:
        with pytest.raises(type(error)):
            rpc.call("billing", "unit_outcomes")
    for outcome in before:
        assert (
            value(
                "portal_gateway_rpc_duration_seconds_count", service="billing", method="unit_outcomes", outcome=outcome
            )
            == before[outcome] + 1
        )
    assert rpc.size == 8  # everything else reaches the pool


def test_gateway_metrics_need_the_token_or_development():
    assert gateway(dev=True).simulate_get("/metrics").status_code == 200
    assert gateway(dev=False).simulate_get("/metrics").status_code == 404
    protected = gateway(dev=False, token="s3cret-metrics")
    assert protected.simulate_get("/metrics").status_code == 401
    assert protected.simulate_get("/metrics").headers["WWW-Authenticate"] == "Bearer"
    assert protected.simulate_get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = protected.simulate_get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
    assert ok.status_code == 200 and "portal_http_request_duration_seconds" in ok.text
    assert ok.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_gateway_livez_and_readyz():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        up = gateway(amqp_uri=f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}/")
        assert up.simulate_get("/readyz").status_code == 200
    down = gateway(amqp_uri="amqp://guest:guest@127.0.0.1:1/")
    answer = down.simulate_get("/readyz")
    assert answer.status_code == 503 and answer.json["checks"]["broker"]["ok"] is False
    assert down.simulate_get("/livez").status_code == 200  # no broker needed to be alive


WORKER = """
import sys
from services.gateway import metrics
for _ in range(int(sys.argv[1])):
    metrics.HTTP_DURATION.labels("GET", "/dashboard", "200").observe(0.01)
"""


def test_gateway_metrics_add_up_every_gunicorn_worker(tmp_path, monkeypatch):
    """What gunicorn.conf.py sets up: each worker process writes its own files, one scrape sums them."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", WORKER, str(count)], env=env, check=True, cwd=ROOT)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    body, _ = gateway_metrics.exposition()
    assert (
        'portal_http_request_duration_seconds_count{method="GET",route="/dashboard",status="200"} 7.0' in body.decode()
    )


def test_gunicorn_conf_gives_the_workers_a_metrics_directory_and_cleans_it(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    namespace: dict = {}
    try:
        exec((ROOT / "services" / "gateway" / "gunicorn.conf.py").read_text(), namespace)
        directory = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert directory.is_dir()
        (directory / "counter_123.db").write_bytes(b"stale")
        namespace["on_starting"](None)
        assert not (directory / "counter_123.db").exists()
        namespace["child_exit"](None, SimpleNamespace(pid=123))
        namespace["on_exit"](None)
        assert not directory.exists()
    finally:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the conf file sets it for real

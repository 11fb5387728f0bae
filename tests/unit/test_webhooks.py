"""Outbound webhooks on an embedded database, with a real HTTP receiver on a local port: signing,
the backoff schedule, fan-out and its idempotency, validation, workspace scope, and delivery runs
(claims, retries, replays, deletions while a POST is in flight)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Conflict, Invalid, NotFound
from chassis.events import envelope
from clients.documents import EVENT_TYPES, EVENTS
from services.documents import webhooks
from services.documents.tables import webhook_attempts, webhook_deliveries, webhook_subscriptions

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WS, OTHER = "ws-1", "ws-2"
SECRET = "s3cret-for-tests-0123456789"


class Receiver:
    """A real HTTP server on a free local port. It records every POST and checks the signature and
    timestamp itself, as a receiver following docs/admin-api.md would; `fail_first[path] = n` answers 500 to
    the first n requests of each event at that path. A request it cannot verify gets 400."""

    def __init__(self, tolerance: float = 300):
        self.secrets: dict[str, str] = {}
        self.fail_first: dict[str, int] = {}
        self.tolerance = tolerance
        self.received: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.answer(self, body)

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def verified(self, path: str, headers, body: bytes) -> bool:
        secret = self.secrets.get(path)
        fields = dict(part.split("=", 1) for part in headers.get("Portal-Signature", "").split(",") if "=" in part)
        timestamp = fields.get("t", "")
        if not secret or not timestamp.isdigit() or timestamp != headers.get("Portal-Timestamp"):
            return False
        if abs(time.time() - int(timestamp)) > self.tolerance:  # an old request: refuse it (replay attack)
            return False
        expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields.get("v1", ""))

    def answer(self, handler, body: bytes) -> None:
        path, headers = handler.path, handler.headers
        ok = self.verified(path, headers, body)
        with self.lock:
            earlier = sum(
                1
                for r in self.received
                if r["path"] == path and r["headers"].get("Portal-Event-Id") == headers.get("Portal-Event-Id")
            )
            status = 400 if not ok else 500 if earlier < self.fail_first.get(path, 0) else 200
            self.received.append(
                {
                    "path": path,
                    "headers": dict(headers),
                    "body": body,
                    "verified": ok,
                    "status": status,
                    "at": time.time(),
                }
            )
        handler.send_response(status)
        handler.send_header("Content-Type", "text/plain")
        handler.end_headers()
        handler.wfile.write(b"thanks" if status == 200 else b"try again later")

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.received if r["path"] == path]


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def engine(sqlite_engine):
    return sqlite_engine("documents")


def tx(engine, fn, *args, **kwargs):
    with UnitOfWork(engine) as uow:
        result = fn(uow, *args, **kwargs)
        uow.commit()
        return result


def subscribe(engine, workspace_id=WS, url="https://hooks.example.com/portal", **data):
    body = {"url": url, "event_types": ["*"], **data}
    return tx(engine, webhooks.create_subscription, NOW, workspace_id, body, allow_private=True)


def event(event_type="invoice.sent", workspace_id=WS, **data):
    return envelope(event_type, workspace_id, {"id": "inv-1", "number": "INV-2026-00001", **data})


def rows(engine, table) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.select(table)).all()


def state(engine) -> list:
    """Every webhook row: proves that a refused request changed nothing."""
    return [sorted(map(tuple, rows(engine, t))) for t in (webhook_subscriptions, webhook_deliveries, webhook_attempts)]


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def real_clock() -> Clock:
    """Where the receiver checks the timestamp against its own clock."""
    return Clock(datetime.now(timezone.utc))


def run(engine, clock, base=30.0, **kwargs):
    with requests.Session() as http:
        return webhooks.deliver_due(
            lambda: UnitOfWork(engine), http, clock, base=base, allow_private=True, rng=lambda: 1.0, **kwargs
        )


# --- the event catalogue ---------------------------------------------------------------------------

# Publish calls whose type is not a literal, and the types they can produce.
DYNAMIC = {
    'f"{source}.applied"': {"credit.applied", "retainer.applied"},
    "event_type": {"workspace.created", "workspace.updated"},
}
NOT_OFFERED = {"workspace.created"}  # no subscription can exist before its workspace


def published_types(service: str) -> set[str]:
    found = set()
    for path in (ROOT / "services" / service).rglob("*.py"):
        for call in re.findall(r"\.publish\(\s*([^\n]*)", path.read_text()):
            first = call.split(",", 1)[0].strip()
            if first in DYNAMIC:
                found |= DYNAMIC[first]
            else:
                literals = re.findall(r'"([a-z_]+\.[a-z_]+)"', call.split(", workspace_id")[0].split(", row")[0])
                assert literals, f"{path}: a publish call whose event type this test cannot read: {call}"
                found |= set(literals)
    return found


@pytest.mark.parametrize("service", ["billing", "payments"])
def test_every_event_billing_and_payments_publish_can_be_subscribed_to(service):
    assert published_types(service) - NOT_OFFERED == set(EVENTS[service])


def test_an_event_type_belongs_to_one_publisher():
    assert len(EVENT_TYPES) == sum(len(types) for types in EVENTS.values())


def test_every_offered_event_has_its_payload_documented_for_receivers():
    from chassis import event_contract

    documented = {(m.type, m.service) for m in event_contract.default().messages.values()}
    assert {(t, service) for service, types in EVENTS.items() for t in types} <= documented


# --- signing -------------------------------------------------------------------------------------


def test_the_signature_is_an_hmac_of_the_timestamp_and_the_raw_body():
    body = b'{"id":"e1","type":"invoice.paid"}'
    expected = hmac.new(b"whsec_abc", b"1790000000." + body, hashlib.sha256).hexdigest()
    assert webhooks.signature("whsec_abc", 1790000000, body) == f"t=1790000000,v1={expected}"
    assert webhooks.signature("whsec_abd", 1790000000, body) != webhooks.signature("whsec_abc", 1790000000, body)
    assert webhooks.signature("whsec_abc", 1790000001, body) != webhooks.signature("whsec_abc", 1790000000, body)


def test_a_delivery_reaches_a_real_server_signed_with_every_header(engine, receiver):
    created = subscribe(engine, url=receiver.url("/hook"), secret=SECRET)
    receiver.secrets["/hook"] = SECRET
    sent = event("invoice.paid", amount=12000, name="Zoë")
    clock = real_clock()
    assert tx(engine, webhooks.fan_out, clock.now, sent) == 1
    assert run(engine, clock) == 1

    [request] = receiver.at("/hook")
    assert request["verified"] and request["status"] == 200
    headers = request["headers"]
    [delivery] = rows(engine, webhook_deliveries)
    assert headers["Content-Type"] == "application/json"
    assert (headers["Portal-Webhook-Id"], headers["Portal-Event-Id"], headers["Portal-Event-Type"]) == (
        delivery.id,
        sent["id"],
        "invoice.paid",
    )
    assert abs(int(headers["Portal-Timestamp"]) - clock.now.timestamp()) < 1
    assert json.loads(request["body"]) == sent  # the whole envelope, unicode intact
    assert delivery.status == "succeeded" and delivery.attempts == 1 and delivery.last_status_code == 200
    log = tx(engine, webhooks.list_deliveries, WS, created["id"])
    assert log[0]["attempt_log"][0]["status_code"] == 200 and log[0]["delivered_at"] == clock.now.isoformat()


def test_a_receiver_with_another_secret_refuses_it(engine, receiver):
    subscribe(engine, url=receiver.url("/hook"), secret=SECRET)
    receiver.secrets["/hook"] = "not-the-secret-we-signed-with"
    clock = real_clock()
    tx(engine, webhooks.fan_out, clock.now, event())
    run(engine, clock)
    [request] = receiver.at("/hook")
    assert not request["verified"] and request["status"] == 400
    [delivery] = rows(engine, webhook_deliveries)
    assert delivery.status == "pending" and delivery.last_status_code == 400
    assert delivery.last_error.startswith("HTTP 400: try again later")


# --- backoff -------------------------------------------------------------------------------------


def schedule(base: float, rng) -> tuple[list[datetime], str]:
    """When each attempt of a delivery that always fails is made, and how it ends."""
    created = NOW
    retry_until, at, attempts, status = created + webhooks.RETRY_WINDOW, created, [], "pending"
    while status == "pending":
        attempts.append(at)
        status, at = webhooks.after_failure(at, len(attempts), retry_until, base, rng)
        assert len(attempts) < 1000
    return attempts, status


@pytest.mark.parametrize("jitter", [0.0, 0.5, 1.0])
def test_retries_back_off_exponentially_and_stop_after_24_hours(jitter):
    attempts, status = schedule(30.0, lambda: jitter)
    gaps = [(b - a).total_seconds() for a, b in zip(attempts, attempts[1:])]
    assert status == "failed"
    assert attempts[-1] == NOW + timedelta(hours=24)  # one last attempt at the deadline, none after
    factor = 0.5 + jitter / 2
    assert gaps[:4] == [30 * factor, 60 * factor, 120 * factor, 240 * factor]
    assert max(gaps) <= 3600 and gaps[10] == 3600 * factor  # capped at an hour
    assert 25 <= len(attempts) <= 60


def test_the_jitter_stays_within_the_upper_half_of_the_nominal_delay():
    import random

    rng = random.Random(7).random
    for failures in range(1, 15):
        nominal = min(30 * 2 ** (failures - 1), 3600)
        delay = webhooks.retry_delay(failures, 30, rng).total_seconds()
        assert nominal / 2 <= delay <= nominal


# --- fan-out -------------------------------------------------------------------------------------


def test_an_event_is_queued_once_for_each_matching_active_subscription(engine):
    everything = subscribe(engine, event_types=["*"])
    invoices = subscribe(engine, event_types=["invoice.*"])
    exact = subscribe(engine, event_types=["invoice.sent", "quote.sent"])
    subscribe(engine, event_types=["payment.*", "quote.*"])  # not interested
    subscribe(engine, event_types=["invoice.sent"], active=False)  # paused
    subscribe(engine, workspace_id=OTHER, event_types=["*"])  # another workspace's
    sent = event("invoice.sent")
    assert tx(engine, webhooks.fan_out, NOW, sent) == 3
    assert tx(engine, webhooks.fan_out, NOW, sent) == 0  # the same event again (a redelivery)
    deliveries = rows(engine, webhook_deliveries)
    assert sorted(d.subscription_id for d in deliveries) == sorted([everything["id"], invoices["id"], exact["id"]])
    assert {(d.status, d.attempts, d.next_attempt_at, d.retry_until, d.workspace_id) for d in deliveries} == {
        ("pending", 0, NOW, NOW + timedelta(hours=24), WS)
    }
    assert {json.loads(d.body)["id"] for d in deliveries} == {sent["id"]}


def test_the_database_refuses_a_second_delivery_of_one_event_to_one_subscription(engine):
    subscribe(engine)
    tx(engine, webhooks.fan_out, NOW, event())
    [row] = rows(engine, webhook_deliveries)
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(webhook_deliveries.insert().values(**{**row._mapping, "id": "another"}))


def test_patterns_match_families_and_everything():
    assert webhooks.matches("*", "payment.failed")
    assert webhooks.matches("invoice.*", "invoice.payment_applied")
    assert not webhooks.matches("invoice.*", "invoices.sent") and not webhooks.matches("invoice.*", "quote.sent")
    assert webhooks.matches("quote.sent", "quote.sent") and not webhooks.matches("quote.sent", "quote.sent2")


def test_events_without_subscribers_or_workspace_queue_nothing(engine):
    subscribe(engine, event_types=["quote.*"])
    assert tx(engine, webhooks.fan_out, NOW, event("invoice.sent")) == 0
    assert tx(engine, webhooks.fan_out, NOW, event("quote.sent", workspace_id=None)) == 0
    assert rows(engine, webhook_deliveries) == []


# --- subscriptions: validation and scope --------------------------------------------------------


def test_the_secret_is_generated_and_shown_only_at_creation(engine):
    created = subscribe(engine, description="ERP")
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", created["secret"])
    assert subscribe(engine)["secret"] != created["secret"]
    shown = tx(engine, webhooks.get_subscription, WS, created["id"])
    assert "secret" not in shown and shown == {k: v for k, v in created.items() if k != "secret"}
    assert all("secret" not in s for s in tx(engine, webhooks.list_subscriptions, WS))
    assert subscribe(engine, secret=SECRET)["secret"] == SECRET


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://hooks.example.com/x"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "hooks.example.com/x"}, "url"),
        ({"url": "https://hooks.example.com:99999/x"}, "url"),
        ({"url": "https://hooks.example.com/" + "x" * 2000}, "url"),
        ({"url": "http://10.0.0.8/hook"}, "url"),
        ({"url": "http://localhost:8000/hook"}, "url"),
        ({"url": "http://[::1]/hook"}, "url"),
        ({"url": "http://169.254.169.254/latest"}, "url"),
        ({"event_types": []}, "event_types"),
        ({"event_types": "invoice.sent"}, "event_types"),
        ({"event_types": ["invoice.exploded"]}, "event_types.0"),
        ({"event_types": ["invoice.sent", "nothing.*"]}, "event_types.1"),
        ({"event_types": ["invoice*"]}, "event_types.0"),
        ({"event_types": ["*.sent"]}, "event_types.0"),
        ({"event_types": ["invoice.sent"] * 51}, "event_types"),
        ({"secret": "short"}, "secret"),
        ({"secret": "x" * 201}, "secret"),
        ({"description": "x" * 501}, "description"),
        ({"active": "yes"}, "active"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_subscriptions_are_refused_with_the_field_and_change_nothing(engine, body, field):
    subscribe(engine)
    before = state(engine)
    data = {"url": "https://hooks.example.com/portal", "event_types": ["invoice.*"], **body}
    with pytest.raises(Invalid) as refused:
        tx(engine, webhooks.create_subscription, NOW, WS, data, allow_private=False)
    assert field in refused.value.fields, refused.value.fields
    update = {k: v for k, v in body.items() if k not in ("secret",)}
    if update:
        with pytest.raises(Invalid):
            tx(
                engine,
                webhooks.update_subscription,
                NOW,
                WS,
                rows(engine, webhook_subscriptions)[0].id,
                update,
                allow_private=False,
            )
    assert state(engine) == before


def test_development_may_use_local_urls_and_a_public_host_is_always_fine(engine):
    assert subscribe(engine, url="http://127.0.0.1:9999/hook")["url"] == "http://127.0.0.1:9999/hook"
    data = {"url": "https://hooks.example.com/portal", "event_types": ["invoice.*", "invoice.*", "payment.failed"]}
    created = tx(engine, webhooks.create_subscription, NOW, WS, data, allow_private=False)
    assert created["event_types"] == ["invoice.*", "payment.failed"]  # duplicates dropped, order kept


def test_a_workspace_has_at_most_twenty_subscriptions(engine):
    for _ in range(webhooks.MAX_SUBSCRIPTIONS):
        subscribe(engine)
    before = state(engine)
    with pytest.raises(Conflict):
        subscribe(engine)
    assert state(engine) == before
    assert subscribe(engine, workspace_id=OTHER)["id"]  # the limit is per workspace


def test_an_update_changes_only_what_it_names(engine):
    created = subscribe(engine, description="ERP", event_types=["invoice.*"])
    later = NOW + timedelta(minutes=5)
    updated = tx(
        engine,
        webhooks.update_subscription,
        later,
        WS,
        created["id"],
        {"url": "https://erp.example.com/in", "active": False},
        allow_private=False,
    )
    assert (updated["url"], updated["active"], updated["event_types"], updated["description"]) == (
        "https://erp.example.com/in",
        False,
        ["invoice.*"],
        "ERP",
    )
    assert updated["updated_at"] == later.isoformat() and updated["created_at"] == NOW.isoformat()


def test_another_workspace_cannot_see_change_delete_or_replay_anything(engine, receiver):
    mine = subscribe(engine, url=receiver.url("/hook"), secret=SECRET)
    tx(engine, webhooks.fan_out, NOW, event())
    [delivery] = rows(engine, webhook_deliveries)
    before = state(engine)
    for attempt in (
        lambda uow: webhooks.get_subscription(uow, OTHER, mine["id"]),
        lambda uow: webhooks.update_subscription(uow, NOW, OTHER, mine["id"], {"active": False}),
        lambda uow: webhooks.delete_subscription(uow, OTHER, mine["id"]),
        lambda uow: webhooks.list_deliveries(uow, OTHER, mine["id"]),
        lambda uow: webhooks.replay(uow, NOW, OTHER, delivery.id),
        lambda uow: webhooks.get_subscription(uow, WS, "no-such-id"),
    ):
        with pytest.raises(NotFound):
            tx(engine, attempt)
    assert tx(engine, webhooks.list_subscriptions, OTHER) == []
    assert state(engine) == before


def test_deleting_a_subscription_removes_its_deliveries_and_log(engine, receiver):
    gone = subscribe(engine, url=receiver.url("/hook"), secret=SECRET)
    kept = subscribe(engine, url=receiver.url("/other"), secret=SECRET)
    receiver.secrets.update({"/hook": SECRET, "/other": SECRET})
    clock = real_clock()
    tx(engine, webhooks.fan_out, clock.now, event())
    run(engine, clock)
    tx(engine, webhooks.delete_subscription, WS, gone["id"])
    assert [s["id"] for s in tx(engine, webhooks.list_subscriptions, WS)] == [kept["id"]]
    assert {d.subscription_id for d in rows(engine, webhook_deliveries)} == {kept["id"]}
    assert len(rows(engine, webhook_attempts)) == 1
    with pytest.raises(NotFound):
        tx(engine, webhooks.get_subscription, WS, gone["id"])


# --- delivery runs -------------------------------------------------------------------------------


def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(engine, receiver):
    created = subscribe(engine, url=receiver.url("/flaky"), secret=SECRET)
    receiver.secrets["/flaky"] = SECRET
    receiver.fail_first["/flaky"] = 2
    clock = real_clock()
    tx(engine, webhooks.fan_out, clock.now, event())
    assert run(engine, clock, base=10) == 1
    assert run(engine, clock, base=10) == 0  # not due yet: the first retry waits 10 s
    clock.advance(10)
    assert run(engine, clock, base=10) == 1
    clock.advance(19)
    assert run(engine, clock, base=10) == 0  # the second waits 20 s
    clock.advance(1)
    assert run(engine, clock, base=10) == 1
    assert [r["status"] for r in receiver.at("/flaky")] == [500, 500, 200]
    assert len({r["headers"]["Portal-Webhook-Id"] for r in receiver.at("/flaky")}) == 1
    [delivery] = tx(engine, webhooks.list_deliveries, WS, created["id"])
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("succeeded", 3, 200)
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert delivery["attempt_log"][0]["error"] == "HTTP 500: try again later"


def test_an_unreachable_receiver_fails_after_24_hours(engine):
    port = _closed_port()
    subscribe(engine, url=f"http://127.0.0.1:{port}/gone")
    tx(engine, webhooks.fan_out, NOW, event())
    clock = Clock()
    for _ in range(60):
        run(engine, clock)
        clock.advance(3600)
    [delivery] = rows(engine, webhook_deliveries)
    assert delivery.status == "failed" and delivery.last_status_code is None
    assert "ConnectionError" in delivery.last_error
    attempts = rows(engine, webhook_attempts)
    assert attempts[-1].at == NOW + timedelta(hours=24) and len(attempts) == delivery.attempts


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns: connections are refused


def test_a_redirect_is_not_followed_and_counts_as_a_failure(engine):
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        subscribe(engine, url=f"http://127.0.0.1:{server.server_address[1]}/r")
        tx(engine, webhooks.fan_out, NOW, event())
        run(engine, Clock())
    finally:
        server.shutdown()
        server.server_close()
    [delivery] = rows(engine, webhook_deliveries)
    assert (delivery.status, delivery.last_status_code, delivery.last_error) == ("pending", 302, "HTTP 302:")


def test_outside_development_a_name_resolving_to_a_private_address_is_not_contacted(engine, receiver):
    subscribe(engine, url=receiver.url("/hook").replace("127.0.0.1", "localhost"))
    receiver.secrets["/hook"] = SECRET
    tx(engine, webhooks.fan_out, NOW, event())
    with requests.Session() as http:
        webhooks.deliver_due(lambda: UnitOfWork(engine), http, Clock(), base=30, allow_private=False)
    assert receiver.at("/hook") == []
    [delivery] = rows(engine, webhook_deliveries)
    assert delivery.status == "pending" and "not a public address" in delivery.last_error


def test_a_claimed_delivery_is_not_sent_twice_until_its_lease_runs_out(engine):
    subscribe(engine)
    tx(engine, webhooks.fan_out, NOW, event())
    [claim] = tx(engine, webhooks.claim_due, NOW)
    assert tx(engine, webhooks.claim_due, NOW) == []  # another replica's run finds nothing
    assert tx(engine, webhooks.claim_due, NOW + webhooks.LEASE - timedelta(seconds=1)) == []
    [again] = tx(engine, webhooks.claim_due, NOW + webhooks.LEASE)  # its sender died: due again
    assert again.delivery_id == claim.delivery_id and again.token != claim.token
    ok = webhooks.Outcome(NOW, 200, None, 5)
    assert tx(engine, webhooks.record, NOW, claim, ok, 30) == "pending"  # the stale claim decides nothing
    assert tx(engine, webhooks.record, NOW, again, ok, 30) == "succeeded"
    assert [d.attempts for d in rows(engine, webhook_deliveries)] == [2]  # both requests were made, and logged


def test_a_paused_subscription_keeps_its_deliveries_waiting(engine):
    created = subscribe(engine)
    tx(engine, webhooks.fan_out, NOW, event())
    tx(engine, webhooks.update_subscription, NOW, WS, created["id"], {"active": False})
    assert tx(engine, webhooks.claim_due, NOW) == []
    [delivery] = rows(engine, webhook_deliveries)
    with pytest.raises(Conflict):
        tx(engine, webhooks.replay, NOW, WS, delivery.id)
    tx(engine, webhooks.update_subscription, NOW, WS, created["id"], {"active": True})
    assert len(tx(engine, webhooks.claim_due, NOW)) == 1


def test_a_replay_sends_a_delivered_or_failed_one_again_with_a_fresh_window(engine, receiver):
    created = subscribe(engine, url=receiver.url("/hook"), secret=SECRET)
    receiver.secrets["/hook"] = SECRET
    clock = real_clock()
    tx(engine, webhooks.fan_out, clock.now - timedelta(days=3), event())  # delivered three days ago
    run(engine, clock)
    [delivery] = rows(engine, webhook_deliveries)
    assert delivery.status == "succeeded"
    replayed = tx(engine, webhooks.replay, clock.now, WS, delivery.id)
    assert (replayed["status"], replayed["next_attempt_at"], replayed["delivered_at"]) == (
        "pending",
        clock.now.isoformat(),
        None,
    )
    assert replayed["retry_until"] == (clock.now + timedelta(hours=24)).isoformat()
    run(engine, clock)
    requests_made = receiver.at("/hook")
    assert len(requests_made) == 2 and all(r["verified"] for r in requests_made)
    assert requests_made[0]["body"] == requests_made[1]["body"]  # the same event, the same id
    [log] = tx(engine, webhooks.list_deliveries, WS, created["id"])
    assert (log["status"], log["attempts"], len(log["attempt_log"])) == ("succeeded", 2, 2)
    # a failed one too: its backoff restarts at the base delay
    with engine.begin() as conn:
        conn.execute(webhook_deliveries.update().values(status="failed"))
    clock.advance(60)
    tx(engine, webhooks.replay, clock.now, WS, delivery.id)
    [claim] = tx(engine, webhooks.claim_due, clock.now)
    tx(engine, webhooks.record, clock.now, claim, webhooks.Outcome(clock.now, 503, "HTTP 503:", 3), 30, rng=lambda: 1.0)
    [row] = rows(engine, webhook_deliveries)
    assert (row.status, row.next_attempt_at) == ("pending", clock.now + timedelta(seconds=30))


def test_a_replay_while_a_post_is_in_flight_is_not_undone_by_its_outcome(engine):
    subscribe(engine)
    tx(engine, webhooks.fan_out, NOW, event())
    [claim] = tx(engine, webhooks.claim_due, NOW)
    [delivery] = rows(engine, webhook_deliveries)
    tx(engine, webhooks.replay, NOW, WS, delivery.id)
    assert tx(engine, webhooks.record, NOW, claim, webhooks.Outcome(NOW, 200, None, 4), 30) == "pending"
    assert len(tx(engine, webhooks.claim_due, NOW)) == 1  # the replay still goes out


def test_an_outcome_for_a_deleted_subscription_is_dropped(engine):
    created = subscribe(engine)
    tx(engine, webhooks.fan_out, NOW, event())
    [claim] = tx(engine, webhooks.claim_due, NOW)
    tx(engine, webhooks.delete_subscription, WS, created["id"])
    assert tx(engine, webhooks.record, NOW, claim, webhooks.Outcome(NOW, 200, None, 4), 30) is None
    assert rows(engine, webhook_attempts) == []


def test_the_delivery_log_is_newest_first_and_limited(engine):
    created = subscribe(engine, event_types=["invoice.*"])
    for minute in range(3):
        tx(engine, webhooks.fan_out, NOW + timedelta(minutes=minute), event("invoice.viewed", n=minute))
    log = tx(engine, webhooks.list_deliveries, WS, created["id"], "2")
    assert [d["created_at"] for d in log] == [(NOW + timedelta(minutes=m)).isoformat() for m in (2, 1)]
    assert len(tx(engine, webhooks.list_deliveries, WS, created["id"])) == 3
    for bad in ("0", "201", "lots"):
        with pytest.raises(Invalid):
            tx(engine, webhooks.list_deliveries, WS, created["id"], bad)

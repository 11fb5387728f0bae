"""An outside system subscribes to the portal's events with plain kombu: docs/examples/kombu_consumer.py
runs as its own process (isolated: no project code on its path) against the test stack's broker,
on a durable queue it declares itself. Real events, made through billing's RPC, reach it; events
published while it is down wait in its queue; a redelivered event is acked but not handled twice;
and it reconnects when the broker drops its connection."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import psycopg2
import pytest
import requests
from kombu import Connection, Exchange, Queue

from tests.conftest import new_portal_client, services_rpc
from tests.integration.test_services import wait_until

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "kombu_consumer.py"
EVENT_LINE = re.compile(
    r"^event (?P<type>\S+) v(?P<version>\d+) id=(?P<id>\S+) workspace=(?P<workspace>\S+) "
    r"at=\S+(?: \| (?P<details>.*))?$"
)
BINDS = ["billing.events:invoice.created", "billing.events:invoice.sent", "billing.events:invoice.voided"]


class Example:
    """The example consumer as a subprocess; its stdout lines are collected as they come."""

    def __init__(self, tmp_path: Path, amqp_uri: str, queue: str, max_events: int):
        self.log = tmp_path / f"consumer-{uuid.uuid4().hex[:6]}.stderr"
        args = [
            sys.executable,
            "-I",
            str(EXAMPLE),
            "--amqp-uri",
            amqp_uri,
            "--queue",
            queue,
            "--max-events",
            str(max_events),
            "--seen-db",
            str(tmp_path / "seen.sqlite3"),
        ]
        for bind in BINDS:
            args += ["--bind", bind]
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, bufsize=1
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 30) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines if line.startswith(prefix)]
            if len(found) >= count:
                return found
            if self.process.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(
            f"no {count} x {prefix!r} from the consumer; stdout {self.lines}, stderr {self.log.read_text()[-2000:]}"
        )

    def wait_exit(self, timeout: float = 60) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the consumer did not stop; stdout {self.lines}, stderr {self.log.read_text()[-2000:]}"
            ) from None
        self.reader.join(5)
        return code

    def events(self) -> list[dict]:
        return [m.groupdict() for m in map(EVENT_LINE.match, self.lines) if m]

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def consumers(tmp_path):
    started = []

    def start(amqp_uri, queue, max_events):
        example = Example(tmp_path, amqp_uri, queue, max_events)
        started.append(example)
        return example

    yield start
    for example in started:
        example.kill()


@pytest.fixture
def queue_name(stack):
    name = f"crm.billing-events-{uuid.uuid4().hex[:8]}"
    yield name
    with Connection(stack.amqp_uri) as conn:
        Queue(name, channel=conn.default_channel).delete()


def outbox_events(stack, invoice_id: str) -> list[tuple[str, str]]:
    """(event id, type) of billing's events about one invoice that the consumer's bindings match, in
    publishing order."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT event_id, event_type FROM outbox WHERE body::json -> 'data' ->> 'id' = %s "
            "AND event_type = ANY(%s) ORDER BY seq",
            (invoice_id, [b.split(":")[1] for b in BINDS]),
        )
        return [tuple(row) for row in cur.fetchall()]


def billing_relayed_everything(stack) -> None:
    """Earlier events (of other tests, or of setting this one up) are on the broker before the
    consumer binds its queue, so it only sees what the test does next."""

    def drained():
        with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            return cur.fetchone()[0] == 0

    wait_until(drained, 30, what="billing's outbox to be relayed")


def waiting_in_queue(amqp_uri: str, queue: str) -> int:
    with Connection(amqp_uri) as conn:
        return Queue(queue, channel=conn.default_channel).queue_declare(passive=True).message_count


def test_an_outside_kombu_consumer_gets_real_events_on_its_own_durable_queue(stack, consumers, queue_name):
    # 1. It declares and binds its queue, then real invoice events reach it.
    billing_relayed_everything(stack)
    first = consumers(stack.amqp_uri, queue_name, max_events=2)
    first.wait_for("ready queue=" + queue_name)
    made = new_portal_client(stack, "Outside Consumer Ltd", f"outside-{uuid.uuid4().hex[:6]}@example.com")
    invoice = made["invoices"][0]
    assert first.wait_exit() == 0
    expected = outbox_events(stack, invoice["id"])
    assert [t for _, t in expected] == ["invoice.created", "invoice.sent"]
    got = first.events()
    assert [(e["id"], e["type"]) for e in got] == expected
    assert {e["workspace"] for e in got} == {made["workspace_id"]}
    assert all(f"number={invoice['number']}" in e["details"] for e in got)
    assert first.lines[-1] == "stopping after 2 events"

    # 2. While it is down, its durable queue keeps what is published: a redelivery of an event it
    # already handled (what the outbox relay does after a crash), then three new events.
    sent_event = next(json.loads(body) for (body,) in _bodies(stack, expected[1][0]))
    with Connection(stack.amqp_uri) as conn:
        conn.Producer().publish(
            sent_event,
            exchange=Exchange("billing.events", type="topic", durable=True),
            routing_key="invoice.sent",
            serializer="json",
            declare=[],
            retry=True,
        )
    with services_rpc(stack, made["workspace_id"]) as rpc:
        rpc.billing.void_invoice(made["workspace_id"], invoice["id"])
        second = rpc.billing.create_invoice(
            made["workspace_id"],
            {
                "client_id": made["client"]["id"],
                "send": True,
                "lines": [{"description": "Follow-up work", "quantity": 1, "unit_price": 4200}],
            },
        )
    wait_until(lambda: waiting_in_queue(stack.amqp_uri, queue_name) == 4, 30, what="4 messages waiting in the queue")
    later = outbox_events(stack, invoice["id"])[2:] + outbox_events(stack, second["id"])
    assert [t for _, t in later] == ["invoice.voided", "invoice.created", "invoice.sent"]

    # 3. Back up (same queue, same record of handled ids): the duplicate is acked, not handled again.
    back = consumers(stack.amqp_uri, queue_name, max_events=3)
    assert back.wait_exit() == 0
    assert [line for line in back.lines if line.startswith("duplicate")] == [
        f"duplicate id={expected[1][0]} type=invoice.sent (already handled; acked)"
    ]
    assert [(e["id"], e["type"]) for e in back.events()] == later
    assert waiting_in_queue(stack.amqp_uri, queue_name) == 0  # everything handled was acked


def test_the_outside_consumer_reconnects_when_the_broker_drops_its_connection(stack, consumers, queue_name):
    made = new_portal_client(stack, "Reconnecting Consumer Ltd", f"reconnect-{uuid.uuid4().hex[:6]}@example.com")
    billing_relayed_everything(stack)
    consumer = consumers(stack.amqp_uri, queue_name, max_events=1)
    consumer.wait_for("ready queue=" + queue_name)
    closed = _close_connections(stack.amqp_uri, f"kombu-consumer-example {queue_name}")
    assert closed == 1
    consumer.wait_for("ready queue=" + queue_name, count=2)  # connected, declared and consuming again
    with services_rpc(stack, made["workspace_id"]) as rpc:
        rpc.billing.void_invoice(made["workspace_id"], made["invoices"][0]["id"])
    assert consumer.wait_exit() == 0
    voided = [(i, t) for i, t in outbox_events(stack, made["invoices"][0]["id"]) if t == "invoice.voided"]
    assert [(e["id"], e["type"]) for e in consumer.events()] == voided
    assert "Connection to broker lost" in consumer.log.read_text()


def _bodies(stack, event_id: str):
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM outbox WHERE event_id = %s", (event_id,))
        return cur.fetchall()


def _close_connections(amqp_uri: str, connection_name: str) -> int:
    """Close the consumer's AMQP connection the way a broker restart or a network cut would (the
    RabbitMQ management API)."""
    parsed = urlparse(amqp_uri)
    api = os.environ.get("TEST_RABBIT_MANAGEMENT_URL", f"http://{parsed.hostname}:15672")
    auth = (unquote(parsed.username or "guest"), unquote(parsed.password or "guest"))
    vhost = unquote(parsed.path.lstrip("/")) or "/"

    def ours():
        found = requests.get(f"{api}/api/vhosts/{quote(vhost, safe='')}/connections", auth=auth, timeout=10)
        found.raise_for_status()
        return [
            c["name"]
            for c in found.json()
            if (c.get("client_properties") or {}).get("connection_name") == connection_name
        ]

    names = wait_until(ours, timeout=15, what="the consumer's connection in the management API")
    for name in names:
        requests.delete(
            f"{api}/api/connections/{quote(name, safe='')}",
            auth=auth,
            timeout=10,
            headers={"X-Reason": "test: simulated connection loss"},
        ).raise_for_status()
    return len(names)

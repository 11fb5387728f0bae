"""A service stopping while one of its consumers retries a failed event: the stop is not held up by
the retries (each of which may wait for a peer that is stopping too), and the event is neither lost
nor parked: it goes back to the broker, and the service started again handles it once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
import uuid

import kombu
import pytest

from deploy.devstack import BIN, create_vhost, delete_vhost
from tests.conftest import ARTIFACTS, ROOT, RUN_ID
from tests.integration.test_services import wait_until

pytestmark = pytest.mark.integration
QUEUE = "evt-probe_source-probe.happened--stopping_probe.on_probe"  # nameko's name for the consumer's queue


@pytest.fixture
def probe_uri(amqp_uri):
    uri = create_vhost(amqp_uri, f"portal-test-{RUN_ID}-stop")
    assert uri is not None, "the RabbitMQ management API is needed for a vhost of its own"
    yield uri
    delete_vhost(uri)


def start_probe(uri: str, tmp_path, fails: bool) -> subprocess.Popen:
    ARTIFACTS.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PROBE_DATABASE_URL": f"sqlite:///{tmp_path / 'probe.sqlite3'}",
        "PROBE_TRIES": str(tmp_path / "tries"),
        "PROBE_FAILS": "1" if fails else "0",
    }
    with open(ARTIFACTS / "stopping-probe.log", "ab") as log:
        return subprocess.Popen(
            [str(BIN / "nameko"), "run", "--broker", uri, "tests.integration.stopping_probe:StoppingProbe"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def waiting_in_queue(uri: str) -> int | None:
    """Messages ready in the consumer's queue; None before nameko has declared it."""
    with kombu.Connection(uri) as conn:
        try:
            return conn.default_channel.queue_declare(QUEUE, passive=True).message_count
        except Exception:  # noqa: BLE001 - not declared yet (the channel is closed by the broker)
            return None


def tries(tmp_path) -> list[str]:
    path = tmp_path / "tries"
    return path.read_text().split() if path.exists() else []


def rows(tmp_path, table: str) -> int:
    with sqlite3.connect(tmp_path / "probe.sqlite3") as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_stop_during_retries_hands_the_event_back_and_a_restart_handles_it_once(probe_uri, tmp_path):
    probe = start_probe(probe_uri, tmp_path, fails=True)
    try:
        wait_until(lambda: waiting_in_queue(probe_uri) is not None, 60, "the probe's queue")
        event = {"id": str(uuid.uuid4()), "type": "probe.happened", "workspace_id": "ws1", "data": {}}
        with kombu.Connection(probe_uri) as conn:
            exchange = kombu.Exchange("probe_source.events", type="topic", durable=True)
            conn.Producer().publish(event, exchange=exchange, routing_key="probe.happened", serializer="json")
        wait_until(lambda: len(tries(tmp_path)) == 1, 30, "the first try")
        # Retried in place, the tries would wait 3 + 6 + 12 + 24 s between them before parking the event.
        started = time.monotonic()
        probe.send_signal(signal.SIGTERM)
        probe.wait(30)
        stopped_in = time.monotonic() - started
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    assert stopped_in < 10, f"the stop waited {stopped_in:.1f} s for the retries"
    assert tries(tmp_path) == [event["id"]]  # not tried again once the stop had begun
    assert waiting_in_queue(probe_uri) == 1  # back with the broker, unacked
    assert rows(tmp_path, "dead_letters") == 0

    probe = start_probe(probe_uri, tmp_path, fails=False)
    try:
        wait_until(lambda: rows(tmp_path, "inbox") == 1, 60, "the event handled by the restarted service")
        time.sleep(1)  # a second delivery, were there one, would show as a third try
        assert tries(tmp_path) == [event["id"], event["id"]]
        assert waiting_in_queue(probe_uri) == 0
        assert rows(tmp_path, "dead_letters") == 0
    finally:
        probe.terminate()
        probe.wait(30)

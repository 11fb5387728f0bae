"""The gateway's RPC client (services/gateway/rpc.py) against a real broker and a real nameko service:
answers, context headers, and each failure mapped as the gateway shows it. A late reply is never
read as the next call's answer, and no reply queue is declared."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from bench.common import Management
from chassis.errors import NotFound
from chassis.scope import Scope
from deploy.devstack import BIN, create_vhost, delete_vhost
from services.gateway.rpc import ContractViolation, RpcPool, ServiceCrashed, ServiceTimeout, ServiceUnavailable
from tests.conftest import ARTIFACTS, RUN_ID
from tests.integration.test_services import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def probe_uri(amqp_uri):
    """A vhost of its own with the probe service running on it."""
    uri = create_vhost(amqp_uri, f"portal-test-{RUN_ID}-rpc") or amqp_uri
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "rpc-probe.log", "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "nameko"), "run", "--broker", uri, "tests.integration.rpc_probe:RpcProbe"],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        pool = RpcPool({"AMQP_URI": uri}, timeout=1, size=1)

        def answers():
            try:
                return pool.call("rpc_probe", "echo", 1) == 1
            except ServiceUnavailable:
                return False

        wait_until(answers, 60, "the probe service")
        yield uri
    finally:
        proc.terminate()
        proc.wait(30)
        if uri != amqp_uri:
            delete_vhost(uri)


def test_a_call_answers_and_carries_the_request_id_and_scope(probe_uri):
    pool = RpcPool({"AMQP_URI": probe_uri}, timeout=5, size=2)
    assert pool.call("rpc_probe", "echo", {"a": [1, "b"]}) == {"a": [1, "b"]}
    assert pool.call("rpc_probe", "context", request_id="r-1", scope=Scope("ws1", "cl1")) == {
        "request_id": "r-1",
        "scope": {"workspace_id": "ws1", "client_id": "cl1"},
    }
    assert pool.call("rpc_probe", "context", request_id="r-2") == {"request_id": "r-2", "scope": None}


def test_each_failure_is_mapped_as_the_gateway_shows_it(probe_uri):
    # A minute's timeout: the answer arriving well inside it shows the broker said so, not a timer.
    patient = RpcPool({"AMQP_URI": probe_uri}, timeout=60, size=1)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as unknown:
        patient.call("no_such_service", "echo", 1)
    assert not isinstance(unknown.value, ServiceTimeout) and unknown.value.service == "no_such_service"
    assert time.monotonic() - started < 30
    pool = RpcPool({"AMQP_URI": probe_uri}, timeout=1, size=1)
    with pytest.raises(ServiceTimeout):
        pool.call("rpc_probe", "slow", 1.5, "late")
    with pytest.raises(NotFound):
        pool.call("rpc_probe", "missing")
    with pytest.raises(ServiceCrashed):
        pool.call("rpc_probe", "crash")
    broker_down = RpcPool({"AMQP_URI": "amqp://guest:guest@127.0.0.1:1/"}, timeout=1)
    with pytest.raises(ServiceUnavailable) as down:
        broker_down.call("rpc_probe", "echo", 1)
    assert down.value.service is None and "broker" in str(down.value)


def test_a_call_with_a_wrong_signature_is_refused_before_the_handler_runs(probe_uri, caplog):
    """nameko checks the arguments against the method's signature; the gateway reports a contract bug
    (its own 500), not the service's crash."""
    pool = RpcPool({"AMQP_URI": probe_uri}, timeout=5, size=1)
    with caplog.at_level("ERROR", logger="services.gateway.rpc"):
        with pytest.raises(ContractViolation, match="rpc_probe.record"):
            pool.call("rpc_probe", "record", "a", "surplus")
        with pytest.raises(ContractViolation):
            pool.call("rpc_probe", "record", nothing="x")
    assert [r.message for r in caplog.records] == ["contract bug: call refused"] * 2
    assert pool.call("rpc_probe", "recorded") == []  # the handler never ran
    pool.call("rpc_probe", "record", "b")
    assert pool.call("rpc_probe", "recorded") == ["b"]


def test_a_late_reply_is_never_read_as_the_next_calls_answer(probe_uri):
    pool = RpcPool({"AMQP_URI": probe_uri}, timeout=0.5, size=1)
    with pytest.raises(ServiceTimeout):
        pool.call("rpc_probe", "slow", 0.8, "late answer")
    time.sleep(0.5)  # the late answer has been sent by now
    assert [pool.call("rpc_probe", "echo", i) for i in range(5)] == list(range(5))
    assert pool.call("rpc_probe", "slow", 0.1, "on time") == "on time"


def test_threads_share_the_pool_and_no_reply_queue_is_declared(probe_uri):
    management = Management(probe_uri)
    before = management.reply_queues()
    pool = RpcPool({"AMQP_URI": probe_uri}, timeout=5, size=4)
    with ThreadPoolExecutor(8) as executor:
        answers = list(executor.map(lambda i: pool.call("rpc_probe", "echo", i), range(400)))
    assert answers == list(range(400))
    assert pool._created <= 4
    assert management.reply_queues() == before


def test_a_pooled_connection_closed_by_the_broker_is_replaced(probe_uri):
    """As after a broker restart: the idle connection is gone; the next call makes a new one."""
    pool = RpcPool({"AMQP_URI": probe_uri}, timeout=5, size=1)
    assert pool.call("rpc_probe", "echo", 1) == 1
    management = Management(probe_uri)
    port = pool._idle.queue[0]._amqp.sock.getsockname()[1]

    def ours():
        connections = requests.get(f"{management.api}/api/connections", auth=management.auth, timeout=10).json()
        return next((c["name"] for c in connections if c.get("peer_port") == port), None)

    name = wait_until(ours, 30, "the management API to list the connection")
    requests.delete(
        f"{management.api}/api/connections/{requests.utils.quote(name, safe='')}", auth=management.auth, timeout=10
    ).raise_for_status()
    time.sleep(0.5)
    assert pool.call("rpc_probe", "echo", 2) == 2

"""The fault tests' own system: a private RabbitMQ node (so restarting it disturbs nothing else), fresh
databases, and the whole stack on them, with replicas started and processes killed at will.

`make chaos` runs them at full size (CHAOS_SCALE=full); `make test` runs the same tests smaller.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from deploy.devstack import Stack, port_open, register_stripe_webhook, wait_for
from tests.conftest import RUN_ID, databases_with_roles, free_port, running_stack, stack_env

FULL = os.environ.get("CHAOS_SCALE", "short") == "full"


def scale(full: int, short: int) -> int:
    return full if FULL else short


# Debian's /usr/sbin/rabbitmq-server wrapper switches user and drops our environment; the real script
# keeps it, so the node gets its own name, ports and data directory.
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class PrivateBroker:
    """A RabbitMQ node of the test's own, on free ports, that can be stopped and started again with
    its data (durable queues, persistent messages) kept on disk, as a restart in production would."""

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.node = f"chaos{RUN_ID}@localhost"
        self.uri = f"amqp://guest:guest@127.0.0.1:{self.port}/"
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(work / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(work / "pid"),
        }
        (work / "enabled_plugins").write_text("[].\n")

    def start(self) -> None:
        server = SERVER if Path(SERVER).exists() else shutil.which("rabbitmq-server")
        subprocess.run([server, "-detached"], env=self.env, check=True, cwd=self.work)
        wait_for(lambda: port_open("127.0.0.1", self.port), 90, f"the private RabbitMQ node on {self.port}")

    def stop(self) -> None:
        """SIGTERM: RabbitMQ shuts down cleanly, closing every client connection."""
        pid = int((self.work / "pid").read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def private_broker(tmp_path_factory):
    if not (shutil.which("rabbitmq-server") or Path("/usr/sbin/rabbitmq-server").exists()):
        pytest.fail("The fault tests start a RabbitMQ node of their own: install rabbitmq-server.", pytrace=False)
    broker = PrivateBroker(tmp_path_factory.mktemp("rabbit"))
    broker.start()
    yield broker
    try:
        broker.stop()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass


class ChaosStack(Stack):
    """The running stack plus what the fault tests do to it."""

    def start_replica(self, name: str, replica: str) -> None:
        """One more process of a service: it consumes from the same queues (competing consumers)."""
        replica_name = f"{name}-{replica}"
        self.start_service(name, replica_name, http_address=f"127.0.0.1:{free_port()}")  # its own /metrics port
        log = self.log_dir / f"{replica_name}.log"
        wait_for(lambda: "starting services" in log.read_text(errors="replace"), 60, f"{replica_name} to start")
        time.sleep(3)  # its migrations check and queue consumers come up right after

    def kill(self, name: str) -> None:
        """kill -9: no clean shutdown, unacked messages go back to the queue."""
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def wait_service(self, name: str, timeout: float = 60) -> None:
        def answering():
            try:
                checks = requests.get(f"{self.url}/healthz", timeout=5).json()["checks"]
                return checks[name]["ok"]
            except (requests.RequestException, ValueError, KeyError):
                return False

        wait_for(answering, timeout, f"{name} to answer again")


@pytest.fixture(scope="session")
def chaos_stack(private_broker, postgres_admin_url, tmp_path_factory):
    work = tmp_path_factory.mktemp("chaos")
    with databases_with_roles(postgres_admin_url, f"chaos_{RUN_ID}") as urls:
        # Longer waits and more retries than the main stack: these tests stop things on purpose.
        env = stack_env(
            work,
            private_broker.uri,
            urls["service"],
            RPC_TIMEOUT="10",
            BILLING_SWEEP_INTERVAL="5",
            AUTOPAY_INTERVAL="1",
            EVENT_RETRY_ATTEMPTS="8",
            EVENT_RETRY_BASE_DELAY="0.25",
        )
        with running_stack(env, work, private_broker.uri, urls, "chaos-logs", ChaosStack) as running:
            # The tests deliver Stripe's events themselves (signed, repeated, during faults): localstripe's
            # own one-shot deliveries are pointed at a closed port.
            register_stripe_webhook(
                env["STRIPE_API_BASE"], f"http://127.0.0.1:{free_port()}/closed", env["STRIPE_WEBHOOK_SECRET"]
            )
            running.broker = private_broker
            yield running

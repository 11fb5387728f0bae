"""The `make dev` configuration (every service on its own SQLite file under var/) under concurrent use:
writers queue instead of freezing a service, the timers keep running, and SIGTERM stops everything."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait

import pytest
import requests

from tests.conftest import (
    ROOT,
    RUN_ID,
    SERVICE_NAMES,
    SIGN_IN,
    Browser,
    Outbox,
    Stack,
    create_vhost,
    delete_vhost,
    link_token,
    stack_env,
)

pytestmark = pytest.mark.e2e
API = "/api/portal/v1"
CLIENTS = 16
WRITES = 60


@pytest.fixture(scope="module")
def embedded_vhost(amqp_uri):
    """A vhost of its own: the session's stack runs meanwhile, and its services would share our queues."""
    uri = create_vhost(amqp_uri, f"portal-embedded-{RUN_ID}")
    assert uri is not None, "the RabbitMQ management API is needed for a second stack's own vhost"
    yield uri
    delete_vhost(uri)


@pytest.fixture(scope="module")
def embedded(embedded_vhost, tmp_path_factory):
    """The whole stack on the embedded default: no database URLs, so each service makes its SQLite file."""
    work = tmp_path_factory.mktemp("embedded")
    env = stack_env(work, embedded_vhost, {}, BILLING_SWEEP_INTERVAL="0.2", RPC_TIMEOUT="10")
    for name in list(env):
        if name.endswith("_DATABASE_URL"):
            del env[name]
    logs = ROOT / "test-artifacts" / "embedded-logs"
    shutil.rmtree(logs, ignore_errors=True)
    stack = Stack(env, logs, env["GATEWAY_BIND"], localstripe_port=int(env["STRIPE_API_BASE"].rsplit(":", 1)[1]))
    stack.start()
    try:
        stack.wait_healthy(120)
        # the seed writes to billing's file from another process while billing runs
        subprocess.run([sys.executable, "-m", "services.billing.seed"], cwd=ROOT, env=env, check=True)
        auth_db = work / "var" / "auth.sqlite3"
        deadline = time.monotonic() + 60
        while _contacts(auth_db) < 3:
            assert time.monotonic() < deadline, "auth never learned the seeded contacts"
            time.sleep(0.2)
        stack.outbox = Outbox(work / "mail")
        stack.work = work
        yield stack
    finally:
        stack.stop()


def _contacts(path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT count(*) FROM contacts WHERE portal_access").fetchone()[0]
        except sqlite3.OperationalError:  # not migrated yet
            return 0


def _bearer(stack, email: str) -> dict:
    before = stack.outbox.count(email, SIGN_IN)
    assert Browser(stack.url).post(f"{stack.url}/login", data={"email": email}).status_code == 200
    token = link_token(stack.outbox.wait_for(email, before + 1, subject=SIGN_IN, timeout=30)[-1])
    answer = requests.post(f"{stack.url}{API}/session", json={"token": token}, timeout=15)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


@pytest.fixture(scope="module")
def clients(embedded):
    """16 API clients, each with its own session, alternating between two seeded contacts."""
    made = []
    for n in range(CLIENTS):
        auth = _bearer(embedded, ("demo@example.com", "other@example.com")[n % 2])
        invoices = requests.get(f"{embedded.url}{API}/invoices", headers=auth, timeout=15).json()["items"]
        made.append((auth, invoices[0]["id"]))
    return made


def _write(stack, clients, n: int, round_: int) -> int:
    auth, invoice_id = clients[n % CLIENTS]
    kind = n % 3
    if kind == 0:
        answer = requests.post(
            f"{stack.url}{API}/invoices/{invoice_id}/comments",
            headers=auth,
            timeout=10,
            json={"body": f"Comment {round_}-{n}", "idempotency_key": f"c-{round_}-{n}"},
        )
    elif kind == 1:
        answer = requests.patch(
            f"{stack.url}{API}/profile", headers=auth, timeout=10, json={"phone": f"+1 555 {round_:02d}{n:02d}"}
        )
    else:
        answer = requests.post(
            f"{stack.url}{API}/messages",
            headers=auth,
            timeout=10,
            json={"subject": f"Load {round_}-{n}", "message": "Hello", "idempotency_key": f"m-{n}"},
        )
    return answer.status_code


class HealthWatch(threading.Thread):
    """Asks billing's /healthz every 100 ms: a process frozen in C cannot answer at all."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.answers, self.stopped = url, [], threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.answers.append(requests.get(self.url, timeout=2).status_code)
            except requests.RequestException as exc:
                self.answers.append(repr(exc))
            self.stopped.wait(0.1)


def _sweeps(stack, outcome: str) -> float:
    text = requests.get(f"{stack.http_url('billing')}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("portal_timer_jobs_total{") and f'outcome="{outcome}"' in line
    )


def test_sixty_concurrent_writes_all_succeed_while_the_sweep_runs_and_health_answers(embedded, clients):
    billing_log = embedded.log_dir / "billing.log"
    log_before = billing_log.stat().st_size
    sweeps_before = _sweeps(embedded, "ok")
    watch = HealthWatch(f"{embedded.http_url('billing')}/healthz")
    watch.start()
    try:
        for round_ in range(3):
            with ThreadPoolExecutor(CLIENTS) as pool:
                futures = [pool.submit(_write, embedded, clients, n, round_) for n in range(WRITES)]
                done, not_done = wait(futures, timeout=10)
                assert not not_done, f"{len(not_done)} of {WRITES} writes still waiting after 10 s (round {round_})"
                statuses = sorted(f.result() for f in done)
            assert set(statuses) <= {200, 201, 202}, statuses
    finally:
        watch.stopped.set()
        watch.join(5)
    assert watch.answers and set(watch.answers) == {200}, watch.answers
    with billing_log.open("rb") as log:
        log.seek(log_before)
        written = log.read().decode(errors="replace")
    assert "sweep job failed" not in written and "database is locked" not in written
    assert _sweeps(embedded, "error") == 0
    assert _sweeps(embedded, "ok") > sweeps_before  # the sweep ran alongside the writes, without an error
    profile = requests.get(f"{embedded.url}{API}/profile", headers=clients[1][0], timeout=10).json()
    mine = next(c for c in profile["contacts"] if c["email"] == "other@example.com")
    assert mine["phone"].startswith("+1 555 02")  # the last round's profile writes landed


def test_sigterm_during_the_load_stops_every_service(embedded, clients):
    stop_load = threading.Event()

    def keep_writing(n):
        while not stop_load.is_set():
            try:
                _write(embedded, clients, n, 9)
            except requests.RequestException:
                return

    with ThreadPoolExecutor(CLIENTS) as pool:
        for n in range(CLIENTS):
            pool.submit(keep_writing, n)
        time.sleep(1)
        services = {name: embedded.procs[name] for name in SERVICE_NAMES}
        for proc in services.values():
            os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        still_running = []
        for name, proc in services.items():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                still_running.append(name)
        stop_load.set()
    assert still_running == [], f"still running 20 s after SIGTERM: {still_running}"

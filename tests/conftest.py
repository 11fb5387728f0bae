"""Shared fixtures for the integration and end-to-end tiers: real RabbitMQ, real PostgreSQL and the
real service processes. Unit tests never touch these.

Where the servers come from: TEST_AMQP_URI / TEST_DATABASE_URL when set; else testcontainers when a
Docker engine answers; else the local defaults. If a server cannot be reached the tests fail with a
message saying so: they never skip.
"""

from __future__ import annotations

import email
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import psycopg2
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from deploy.devstack import (  # noqa: E402 - after the path is set; F401 - shared with the tests
    Stack,
    create_vhost,
    databases_with_roles,
    delete_vhost,
    dev_env,
    ensure_management,
)

ARTIFACTS = ROOT / "test-artifacts"
RUN_ID = uuid.uuid4().hex[:8]
SERVICE_NAMES = ("auth", "billing", "payments", "documents")


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or default_port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def containers():
    """Started only when no URL is configured and a Docker engine exists."""
    started = {}
    wanted = {k: not os.environ.get(k) for k in ("TEST_AMQP_URI", "TEST_DATABASE_URL")}
    if any(wanted.values()) and _docker_available():
        if wanted["TEST_DATABASE_URL"]:
            from testcontainers.postgres import PostgresContainer

            pg = PostgresContainer("postgres:16", driver=None).start()
            started["TEST_DATABASE_URL"] = pg.get_connection_url()
            started["_pg"] = pg
        if wanted["TEST_AMQP_URI"]:
            from testcontainers.rabbitmq import RabbitMqContainer

            mq = RabbitMqContainer("rabbitmq:3.13-management").start()
            started["TEST_AMQP_URI"] = f"amqp://guest:guest@{mq.get_container_host_ip()}:{mq.get_exposed_port(5672)}/"
            started["_mq"] = mq
    yield started
    for key in ("_pg", "_mq"):
        if key in started:
            started[key].stop()


@pytest.fixture(scope="session")
def postgres_admin_url(containers) -> str:
    url = containers.get("TEST_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    try:
        psycopg2.connect(url, connect_timeout=5).close()
    except psycopg2.Error as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {url} ({exc}). Start it, or set TEST_DATABASE_URL. "
            "Integration tests need a real database and do not skip.",
            pytrace=False,
        )
    return url


@pytest.fixture(scope="session")
def amqp_uri(containers):
    """A throwaway vhost per run (management API) so stray consumers cannot steal test messages."""
    base = containers.get("TEST_AMQP_URI") or os.environ.get("TEST_AMQP_URI", "amqp://guest:guest@localhost:5672/")
    if not _reachable(base, 5672):
        pytest.fail(
            f"RabbitMQ is not reachable at {base}. Start it, or set TEST_AMQP_URI. "
            "Integration tests need a real broker and do not skip.",
            pytrace=False,
        )
    print(f"\n{ensure_management(base)}", file=sys.stderr)  # a throwaway vhost needs its API
    uri = create_vhost(base, f"portal-test-{RUN_ID}")
    if uri is None:
        print(f"\nRabbitMQ management API unavailable; tests share the vhost of {base}", file=sys.stderr)
        yield base
        return
    yield uri
    delete_vhost(uri)


@contextmanager
def checked_databases(admin_url: str, prefix: str):
    """Throwaway databases, one a service, each with its login role; dropped afterwards, once every
    event published into their outboxes was found to match docs/events.asyncapi.yaml."""
    with databases_with_roles(admin_url, prefix) as urls:
        yield urls
        from tests.event_contract_check import outbox_problems, report

        checked, problems = outbox_problems(urls["admin"])
        if problems:
            pytest.fail(report(checked, problems), pytrace=False)


@pytest.fixture(scope="session")
def database_urls(postgres_admin_url):
    """The session stack's databases (`stack`): seeded once, as `make dev` seeds, and the stack's alone."""
    with checked_databases(postgres_admin_url, f"portal_{RUN_ID}") as urls:
        yield urls


@pytest.fixture(scope="session")
def integration_database_urls(postgres_admin_url):
    """Databases of their own for the tests that call handlers straight on PostgreSQL: what they write
    never reaches the stack's seed (which does nothing once billing has a workspace), whichever runs first."""
    with checked_databases(postgres_admin_url, f"portal_{RUN_ID}_direct") as urls:
        yield urls


@pytest.fixture(scope="session")
def service_databases(integration_database_urls):
    """Each service's database as the service's own role (subject to row-level security)."""
    return integration_database_urls["service"]


@pytest.fixture(scope="session")
def admin_databases(integration_database_urls):
    """Each service's database as the admin role: sees every row, for checks and snapshots."""
    return integration_database_urls["admin"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Outbox:
    """The file mail outbox the running documents service writes to.

    Each file is read and parsed once: a session's stack writes hundreds of emails, and parsing all
    of them again on every poll of `wait_for` came to over a second a poll by the end of the suite,
    taken from the stack under test. A file appears whole (documents writes it under another name,
    then renames it); one rewritten in place is read again (its size or time changed)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._read: dict[str, _Mail] = {}  # by file name

    def _mails(self) -> list[_Mail]:
        """Every email so far, oldest first."""
        if not self.directory.exists():
            return []
        mails = []
        for entry in os.scandir(self.directory):
            if entry.name.endswith(".eml"):
                stat = entry.stat()
                version = (stat.st_mtime_ns, stat.st_size)
                mail = self._read.get(entry.name)
                if mail is None or mail.version != version:
                    mail = self._read[entry.name] = _Mail.read(entry.path, version)
                mails.append(mail)
        return sorted(mails, key=lambda mail: mail.version)

    def messages(self) -> list:
        return [mail.message for mail in self._mails()]

    def matching(self, to: str, subject: str = "") -> list:
        return [mail.message for mail in self._mails() if mail.to == to and subject in mail.subject]

    def count(self, to: str, subject: str = "") -> int:
        return len(self.matching(to, subject))

    def wait_for(self, to: str, count: int = 1, timeout: float = 15, subject: str = "") -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.matching(to, subject)
            if len(found) >= count:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no email #{count} to {to} within {timeout}s")


@dataclass(frozen=True)
class _Mail:
    """One .eml file of the outbox as read at `version` (its modification time and size), with the
    two headers the outbox matches on, parsed once too."""

    version: tuple[int, int]
    message: EmailMessage
    to: str
    subject: str

    @classmethod
    def read(cls, path: str, version: tuple[int, int]) -> _Mail:
        with open(path, "rb") as file:
            message = email.message_from_bytes(file.read(), policy=policy.default)
        return cls(version, message, str(message["To"]), str(message["Subject"]))


def stack_env(work: Path, amqp_uri: str, service_urls: dict, **overrides: str) -> dict:
    """The environment of a test stack: fast timers, its own ports, localstripe, the given databases."""
    port, localstripe_port = free_port(), free_port()
    env = dev_env()
    env.update(
        {
            "PORTAL_ENV": "dev",
            "PORTAL_VAR_DIR": str(work / "var"),
            "MAIL_OUTBOX_DIR": str(work / "mail"),
            "AMQP_URI": amqp_uri,
            "GATEWAY_BIND": f"127.0.0.1:{port}",
            "PORTAL_URL": f"http://localhost:{port}",
            "RPC_TIMEOUT": "6",
            "SERVICE_RPC_TIMEOUT": "8",
            "EVENT_RETRY_ATTEMPTS": "4",
            "EVENT_RETRY_BASE_DELAY": "0.5",
            "GATEWAY_WORKERS": "2",
            "MAIL_POLL_INTERVAL": "0.2",
            "WEBHOOK_RETRY_BASE_SECONDS": "0.2",
            "WEBHOOK_DELIVERY_INTERVAL": "0.2",
            "AUTH_LINKS_PER_EMAIL": "50",
            "AUTH_LINKS_PER_IP": "500",
            "BILLING_SWEEP_INTERVAL": "1",
            "AUTH_VERIFY_FAILURES_PER_IP": "100",  # every test runs from 127.0.0.1; the abuse test reaches it
            "STRIPE_API_BASE": f"http://localhost:{localstripe_port}",
            "LOCALSTRIPE_FROM_SCRATCH": "1",
            "STRIPE_WEBHOOK_SECRET": f"whsec_test_{uuid.uuid4().hex}",
            "AUTOPAY_INTERVAL": "0.3",
            # each service's /metrics, /healthz, /readyz (Stack.http_addresses; replicas get their own)
            **{f"{service.upper()}_HTTP_ADDRESS": f"127.0.0.1:{free_port()}" for service in SERVICE_NAMES},
            **overrides,
        }
    )
    env.pop("SMTP_URL", None)
    for service, url in service_urls.items():
        env[f"{service.upper()}_DATABASE_URL"] = url
    return env


@contextmanager
def running_stack(env: dict, work: Path, amqp_uri: str, database_urls: dict, logs_name: str, stack_class=Stack):
    """Start the stack in `env`, seed it, and stop it afterwards. The services log in with the `service`
    URLs; the tests inspect through the `admin` ones (they see every row)."""
    logs = ARTIFACTS / logs_name
    shutil.rmtree(logs, ignore_errors=True)
    running = stack_class(
        env, logs, env["GATEWAY_BIND"], localstripe_port=int(env["STRIPE_API_BASE"].rsplit(":", 1)[1])
    )
    running.start()
    try:
        running.wait_healthy(120)
        subprocess.run([sys.executable, "-m", "services.billing.seed"], cwd=ROOT, env=env, check=True)
        _wait_for_contacts(database_urls["admin"]["auth"], 4)
        running.outbox = Outbox(work / "mail")
        running.databases = database_urls["admin"]  # tests inspect as the admin: they see every row
        running.service_databases = database_urls["service"]  # what the services log in with (row-level security)
        running.amqp_uri = amqp_uri
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def stack(amqp_uri, database_urls, tmp_path_factory):
    """The four services and the gateway as real processes on PostgreSQL and RabbitMQ, seeded."""
    work = tmp_path_factory.mktemp("stack")
    env = stack_env(work, amqp_uri, database_urls["service"])
    with running_stack(env, work, amqp_uri, database_urls, "stack-logs") as running:
        yield running


def _wait_for_contacts(auth_url: str, count: int, timeout: float = 30) -> None:
    """Billing's contact events reach auth asynchronously, through the outbox and the broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg2.connect(auth_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM contacts")
            if cur.fetchone()[0] >= count:
                return
        time.sleep(0.2)
    raise AssertionError("auth never learned the seeded contacts from billing's events")


SIGN_IN = "sign-in link"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class Browser(requests.Session):
    """What a browser does on its own: form posts carry the CSRF token the portal's pages hold.
    Tests of the refusal itself post with plain `requests` or pass their own csrf_token."""

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url

    def csrf_token(self) -> str:
        page = self.get(f"{self.base_url}/login")
        return CSRF_INPUT.search(page.text).group(1)

    def request(self, method, url, *args, **kwargs):
        data = kwargs.get("data")
        if (
            method.upper() == "POST"
            and (data is None or (isinstance(data, dict) and "csrf_token" not in data))
            and kwargs.get("json") is None
            and url.startswith(self.base_url)
        ):
            kwargs["data"] = {**(data or {}), "csrf_token": self.csrf_token()}
        return super().request(method, url, *args, **kwargs)


def sign_in(stack, email_address: str, session: Browser | None = None) -> Browser:
    """The whole magic-link dance, as a browser would do it."""
    session = session or Browser(stack.url)
    before = stack.outbox.count(email_address, SIGN_IN)
    page = session.post(f"{stack.url}/login", data={"email": email_address})
    assert page.status_code == 200, page.text
    message = stack.outbox.wait_for(email_address, before + 1, subject=SIGN_IN)[-1]
    token = link_token(message)
    page = session.post(f"{stack.url}/login/verify", data={"token": token}, allow_redirects=False)
    assert page.status_code == 303, page.text
    return session


def refused_within(answer, seconds: float = 1.0, refused=(303, 401)):
    """An ended session is refused by every gateway worker within `seconds` (the revocation reaches
    them through the broker): `answer()` makes one request; this asks until it is refused, and fails
    if that takes longer. Returns the refusing answer. `refused`: the statuses that count as a
    refusal, or a test of the answer itself (a browser's page sent to sign in again)."""
    is_refused = refused if callable(refused) else lambda response: response.status_code in refused
    deadline = time.monotonic() + seconds
    while True:
        response = answer()
        if is_refused(response):
            return response
        shown = getattr(response, "status_code", None) or getattr(response, "url", response)
        assert time.monotonic() < deadline, f"still {shown} after {seconds} s"
        time.sleep(0.05)


def link_token(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"/login/verify\?token=([A-Za-z0-9_-]+)", text).group(1)


SEEDED_TIME_ZONE = ZoneInfo("America/New_York")  # the seeded business's (services/billing/seed.py)


def business_today() -> date:
    """Today by the seeded business's calendar, which due dates, reminders and recurring runs follow:
    from midnight UTC to midnight in New York it is still yesterday there."""
    return datetime.now(SEEDED_TIME_ZONE).date()


def sent_days_ago(stack, invoice_id: str, days: int) -> None:
    """Date an invoice's own email back: no reminder follows it within a day, nor on the day it went out,
    so a test that wants the next sweep's reminder for an invoice it just made says it went out earlier."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE invoices SET sent_at = sent_at - make_interval(days => %s) WHERE id = %s", (days, invoice_id)
        )


def services_rpc(stack, workspace_id: str | None = None, timeout: float = 30):
    """The services' RPC as the business reaches them (the admin API, portalctl): acting for one
    workspace, which the services' databases enforce. Without one, a call sees no workspace's rows."""
    from nameko.standalone.rpc import ClusterRpcProxy

    from chassis.scope import CONTEXT_KEY, Scope

    context = {CONTEXT_KEY: Scope(workspace_id).to_context()} if workspace_id else None
    return ClusterRpcProxy({"AMQP_URI": stack.amqp_uri}, context_data=context, timeout=timeout)


def new_portal_client(
    stack, name: str, email: str, invoices: int = 1, quotes: int = 0, client_fields: dict | None = None
) -> dict:
    """A client of the seeded workspace with its own portal contact, sent invoices and quotes, made the
    way the business makes them (billing RPC), and known to auth before this returns. `client_fields`:
    more of the client's details (its locale, its time zone...); the contact has no locale of its own."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM workspaces WHERE name = 'Acme Studio'")
        workspace_id = cur.fetchone()[0]
    with services_rpc(stack, workspace_id) as rpc:
        client = rpc.billing.create_client(
            workspace_id,
            {
                **(client_fields or {}),
                "name": name,
                "contacts": [
                    # an owner: everything, as every contact could before roles
                    {
                        "email": email,
                        "name": name.split()[0],
                        "is_primary": True,
                        "portal_access": True,
                        "role": "owner",
                    }
                ],
            },
        )
        made = {
            "workspace_id": workspace_id,
            "client": client,
            "contact_id": client["contacts"][0]["id"],
            "invoices": [
                rpc.billing.create_invoice(
                    workspace_id,
                    {
                        "client_id": client["id"],
                        "send": True,
                        "lines": [{"description": f"{name} work {i}", "quantity": 1, "unit_price": 10000 * (i + 1)}],
                    },
                )
                for i in range(invoices)
            ],
            "quotes": [
                rpc.billing.create_quote(
                    workspace_id,
                    {
                        "client_id": client["id"],
                        "send": True,
                        "lines": [{"description": f"{name} idea {i}", "quantity": 1, "unit_price": 5000 * (i + 1)}],
                    },
                )
                for i in range(quotes)
            ],
        }
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM contacts WHERE email = %s AND portal_access", (email,))
            if cur.fetchone()[0]:
                return made
        time.sleep(0.2)
    raise AssertionError(f"auth never learned {email} from billing's events")

"""The benchmark's own system: a throwaway RabbitMQ vhost, throwaway PostgreSQL databases (one per
service, each owned by a login role of its own, as in production and the tests), localstripe, the
four services and the gateway, seeded and signed in."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import urlparse

import psycopg2
import requests

from bench.common import HERE, Management
from deploy.devstack import (
    ROOT,
    Stack,
    create_vhost,
    databases_with_roles,
    delete_vhost,
    dev_env,
    ensure_broker,
    ensure_management,
    port_open,
    wait_for,
)

SQL_FIELDS = ("statements", "begins", "commits", "rollbacks", "checkouts")
RUN_ID = uuid.uuid4().hex[:8]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_sql_counter(env: dict) -> dict:
    """`env` with the SQL round-trip counter (hooks/sitecustomize.py) first on its PYTHONPATH."""
    return {**env, "PYTHONPATH": f"{HERE / 'hooks'}{os.pathsep}{env.get('PYTHONPATH', '')}"}


class BenchStack(Stack):
    """The dev stack, with the SQL round-trip counter (hooks/sitecustomize.py) in every nameko process."""

    def _spawn(self, name, argv, env=None):
        if Path(argv[0]).name == "nameko":
            env = with_sql_counter(env or self.env)
        super()._spawn(name, argv, env)

    def pid(self, name: str) -> int:
        return self.procs[name].pid


@dataclass
class Context:
    """What every benchmark gets: the running stack and how to reach and inspect it."""

    stack: BenchStack
    env: dict
    work: Path
    amqp_uri: str
    admin_url: str  # the PostgreSQL superuser URL (pgbench, throwaway databases)
    admin_db: dict  # service -> its database as the admin (sees every row)
    management: Management
    cookie: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)  # figures one benchmark measures for another

    def query(self, service: str, sql: str, *args) -> list:
        with psycopg2.connect(self.admin_db[service]) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def vacuum_analyze(self) -> None:
        """VACUUM ANALYZE every service's database once a benchmark's data is written, as autovacuum
        would have by then in production: a PostgreSQL run with autovacuum off (as on some development
        and CI machines) otherwise plans every page against tables it believes empty."""
        for url in self.admin_db.values():
            conn = psycopg2.connect(url)
            try:
                conn.autocommit = True  # VACUUM runs outside a transaction
                with conn.cursor() as cur:
                    cur.execute("VACUUM ANALYZE")
            finally:
                conn.close()

    def demo_client(self) -> tuple[str, str]:
        """(workspace id, client id) of the seeded demo@example.com."""
        [(workspace_id, client_id)] = self.query(
            "billing", "SELECT c.workspace_id, c.client_id FROM contacts c WHERE c.email = 'demo@example.com'"
        )
        return workspace_id, client_id

    def sql_counts(self) -> dict[str, int]:
        """SQL round trips made so far by every nameko process of this stack (hooks/sitecustomize.py)."""
        totals = dict.fromkeys(SQL_FIELDS, 0)
        for path in Path(self.env["BENCH_SQL_COUNTS"]).iterdir():
            data = path.read_bytes()
            if len(data) == 8 * len(SQL_FIELDS):
                for name, value in zip(SQL_FIELDS, struct.unpack(f"<{len(SQL_FIELDS)}Q", data)):
                    totals[name] += value
        return totals

    def gateway_rpc_count(self, service: str | None = None, method: str | None = None) -> float | None:
        """RPC calls the gateway has made (its portal_gateway_rpc_duration_seconds histogram), to one
        service or method when given, or None when the gateway serves no /metrics."""
        answer = requests.get(f"{self.stack.url}/metrics", timeout=10)
        if answer.status_code != 200:
            return None
        wanted = [f'{label}="{value}"' for label, value in (("service", service), ("method", method)) if value]
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in answer.text.splitlines()
            if line.startswith("portal_gateway_rpc_duration_seconds_count{") and all(w in line for w in wanted)
        )


def sign_in(url: str, mail_dir: Path, email: str = "demo@example.com") -> dict:
    """The magic-link sign-in, as a browser does it; the session cookies."""
    session = requests.Session()
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', session.get(f"{url}/login").text).group(1)
    session.post(f"{url}/login", data={"email": email, "csrf_token": csrf}).raise_for_status()

    def link():
        for path in mail_dir.glob("*.eml"):  # the seed's invoice emails are there too
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if "sign-in link" in message["Subject"] and message["To"] == email:
                return re.search(r"token=([A-Za-z0-9_-]+)", message.get_body(("plain",)).get_content()).group(1)
        return None

    wait_for(lambda: link() is not None, 60, "the sign-in email")
    session.post(f"{url}/login/verify", data={"token": link(), "csrf_token": csrf}).raise_for_status()
    assert session.get(f"{url}/dashboard", allow_redirects=False).status_code == 200, "sign-in failed"
    return session.cookies.get_dict()


@contextmanager
def running(admin_url: str):
    """Everything up, seeded and signed in; torn down (processes, databases, vhost) afterwards."""
    env = dev_env()
    print(ensure_broker(env["AMQP_URI"]), flush=True)
    print(ensure_management(env["AMQP_URI"]), flush=True)  # a throwaway vhost and the reply-queue counts need it
    try:
        psycopg2.connect(admin_url, connect_timeout=5).close()
    except psycopg2.Error as exc:
        raise SystemExit(
            f"PostgreSQL is not reachable at {admin_url} ({exc}); start it or set BENCH_DATABASE_URL "
            "to a superuser URL (the benchmark makes throwaway databases there)."
        )
    vhost_uri = create_vhost(env["AMQP_URI"], f"portal-bench-{RUN_ID}")
    amqp_uri = vhost_uri or env["AMQP_URI"]
    work = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    (work / "sql-counts").mkdir()
    port, stripe_port = free_port(), free_port()
    try:
        with databases_with_roles(admin_url, f"portal_bench_{RUN_ID}") as urls:
            service_urls, admin_urls = urls["service"], urls["admin"]
            env.update(
                {
                    "PORTAL_ENV": "dev",
                    # pages rendered as in production: no check of each template's file per page
                    "GATEWAY_TEMPLATE_RELOAD": "0",
                    "PORTAL_VAR_DIR": str(work / "var"),
                    "MAIL_OUTBOX_DIR": str(work / "mail"),
                    "AMQP_URI": amqp_uri,
                    "GATEWAY_BIND": f"127.0.0.1:{port}",
                    "PORTAL_URL": f"http://localhost:{port}",
                    # the portal benchmark signs 50 clients in from this one address
                    "AUTH_LINKS_PER_EMAIL": "1000",
                    "AUTH_LINKS_PER_IP": "10000",
                    "STRIPE_API_BASE": f"http://localhost:{stripe_port}",
                    "LOCALSTRIPE_FROM_SCRATCH": "1",
                    "STRIPE_WEBHOOK_SECRET": f"whsec_bench_{uuid.uuid4().hex}",
                    "BENCH_SQL_COUNTS": str(work / "sql-counts"),
                    **{f"{s.upper()}_DATABASE_URL": url for s, url in service_urls.items()},
                }
            )
            env.pop("SMTP_URL", None)
            stack = BenchStack(env, work / "logs", env["GATEWAY_BIND"], localstripe_port=stripe_port)
            stack.start()
            try:
                stack.wait_healthy(120)
                subprocess.run(
                    [sys.executable, "-m", "services.billing.seed"], cwd=ROOT, env=env, check=True, capture_output=True
                )
                ctx = Context(stack, env, work, amqp_uri, admin_url, admin_urls, Management(amqp_uri))
                wait_for(
                    lambda: ctx.query("auth", "SELECT count(*) FROM contacts")[0][0] >= 3,
                    60,
                    "auth to learn the seeded contacts",
                )
                ctx.cookie = sign_in(stack.url, work / "mail")
                yield ctx
            finally:
                stack.stop()
    finally:
        if vhost_uri:
            delete_vhost(vhost_uri)
        print(f"logs of this run: {work / 'logs'}", flush=True)


def spawn_and_wait(stack: Stack, name: str, argv: list[str], ready, timeout: float = 60, env: dict | None = None):
    """Start one more process under the stack (stopped with it) and wait until ready() is true."""
    stack._spawn(name, argv, env)

    def check():
        if stack.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited; see {stack.log_dir}/{name}.log")
        return ready()

    wait_for(check, timeout, name)


def http_ok(url: str) -> bool:
    host, port = urlparse(url).hostname, urlparse(url).port
    if not port_open(host, port):
        return False
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def wait_consumers(ctx: Context, queue: str, count: int, timeout: float = 60) -> None:
    wait_for(lambda: ctx.management.consumers(queue) == count, timeout, f"{count} consumer(s) on {queue}")
    time.sleep(1)

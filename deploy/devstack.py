"""`make dev`: the whole system on embedded defaults, in the foreground, stopped with Ctrl-C.

Also used by the integration and end-to-end tests, which start the same processes against
PostgreSQL and a throwaway RabbitMQ vhost.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

import psycopg2
import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SERVICES = {
    "auth": "AuthService",
    "billing": "BillingService",
    "payments": "PaymentsService",
    "documents": "DocumentsService",
}
# Each service process serves /metrics, /healthz and /readyz at <SERVICE>_HTTP_ADDRESS (config.yml).
HTTP_PORTS = {"auth": 9101, "billing": 9102, "payments": 9103, "documents": 9104}


def http_address_var(service: str) -> str:
    return f"{service.upper()}_HTTP_ADDRESS"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def databases_with_roles(admin_url: str, prefix: str, services=tuple(SERVICES)):
    """One fresh PostgreSQL database per service, owned by a login role of its own, both dropped
    afterwards. The role is neither superuser nor BYPASSRLS, as in production, so row-level security
    binds it. Yields `service` URLs logging in as that role (what the services use) and `admin` URLs
    reaching the same databases as the admin role, which sees every row (for tests to inspect)."""
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    names = {service: f"{prefix}_{service}" for service in services}
    passwords = {service: uuid.uuid4().hex for service in services}  # works on md5/scram clusters too
    base = urlparse(admin_url)
    host = f"[{base.hostname}]" if base.hostname and ":" in base.hostname else (base.hostname or "")
    port = f":{base.port}" if base.port else ""
    try:
        with admin.cursor() as cur:
            for service, name in names.items():
                cur.execute(
                    f'CREATE ROLE "{name}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %s',
                    (passwords[service],),
                )
                cur.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        yield {
            "admin": {service: urlunparse(base._replace(path="/" + name)) for service, name in names.items()},
            "service": {
                service: urlunparse(base._replace(path="/" + name, netloc=f"{name}:{passwords[service]}@{host}{port}"))
                for service, name in names.items()
            },
        }
    finally:
        with admin.cursor() as cur:
            for name in names.values():
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'DROP ROLE IF EXISTS "{name}"')
        admin.close()


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def create_vhost(amqp_uri: str, name: str) -> str | None:
    """A throwaway vhost through the management API, so a test or benchmark stack cannot share queues
    with another running stack. None when the API is not available."""
    parsed = urlparse(amqp_uri)
    api = management_url(amqp_uri)
    auth = (parsed.username or "guest", parsed.password or "guest")
    try:
        requests.put(f"{api}/api/vhosts/{name}", auth=auth, timeout=5).raise_for_status()
        requests.put(
            f"{api}/api/permissions/{name}/{auth[0]}",
            auth=auth,
            timeout=5,
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    except requests.RequestException:
        return None
    return urlunparse(parsed._replace(path="/" + quote(name, safe="")))


def management_url(amqp_uri: str) -> str:
    parsed = urlparse(amqp_uri)
    return os.environ.get("TEST_RABBIT_MANAGEMENT_URL", f"http://{parsed.hostname}:15672")


def ensure_management(amqp_uri: str) -> str:
    """Enable RabbitMQ's management plugin on a local broker when its API does not answer (as root, or
    with sudo that asks no password). A sentence saying what happened; never raises."""
    parsed = urlparse(amqp_uri)
    api = urlparse(management_url(amqp_uri))
    if port_open(api.hostname or "localhost", api.port or 15672):
        return f"RabbitMQ management API at {api.hostname}:{api.port}"
    if parsed.hostname not in ("localhost", "127.0.0.1", "::1"):
        return f"no RabbitMQ management API at {api.hostname}:{api.port} (a remote broker: not enabled from here)"
    plugins = shutil.which("rabbitmq-plugins") or next(
        (p for p in ("/usr/sbin/rabbitmq-plugins", "/usr/lib/rabbitmq/bin/rabbitmq-plugins") if os.access(p, os.X_OK)),
        None,
    )
    if plugins is None:
        return "no RabbitMQ management API, and no rabbitmq-plugins here to enable it"
    command = [plugins, "enable", "--quiet", "rabbitmq_management"]
    if os.geteuid() != 0:
        command = ["sudo", "-n", *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return f"no RabbitMQ management API ({' '.join(command)} failed: {done.stderr.strip()[:200]})"
    try:
        wait_for(lambda: port_open(api.hostname or "localhost", api.port or 15672), 60, "the management API")
    except TimeoutError:
        return "enabled RabbitMQ's management plugin, but its API did not answer within 60 s"
    return "enabled RabbitMQ's management plugin"


def delete_vhost(amqp_uri: str) -> None:
    parsed = urlparse(amqp_uri)
    api = management_url(amqp_uri)
    auth = (parsed.username or "guest", parsed.password or "guest")
    requests.delete(f"{api}/api/vhosts/{parsed.path.lstrip('/')}", auth=auth, timeout=10)


def ensure_broker(amqp_uri: str) -> str:
    """Reuse a listening broker, else start a local rabbitmq-server, else Docker; else explain."""
    url = urlparse(amqp_uri)
    host, port = url.hostname or "localhost", url.port or 5672
    if port_open(host, port):
        return f"reusing the RabbitMQ already listening on {host}:{port}"
    if host not in ("localhost", "127.0.0.1", "::1"):
        raise SystemExit(f"RabbitMQ at {host}:{port} (AMQP_URI) is not answering; start it or fix AMQP_URI.")
    server = shutil.which("rabbitmq-server") or next(
        (p for p in ("/usr/sbin/rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server") if os.access(p, os.X_OK)),
        None,
    )
    if server:
        subprocess.run([server, "-detached"], check=False)
        wait_for(lambda: port_open(host, port), 90, "rabbitmq-server to listen")
        return f"started the local rabbitmq-server ({server})"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        subprocess.run(["docker", "compose", "up", "-d", "rabbitmq"], cwd=ROOT, check=True)
        wait_for(lambda: port_open(host, port), 120, "the rabbitmq container to listen")
        return "started RabbitMQ with docker compose"
    raise SystemExit(
        "No RabbitMQ is listening on {0}:{1}, none is installed, and Docker is not available.\n"
        "Install one:  sudo apt-get install rabbitmq-server   (Debian/Ubuntu)\n"
        "         or:  brew install rabbitmq && brew services start rabbitmq   (macOS)\n"
        "         or:  set AMQP_URI to a broker you already run.".format(host, port)
    )


class Stack:
    """The four services, the gateway and (optionally) localstripe as child processes."""

    def __init__(
        self, env: dict, log_dir: Path, gateway_bind: str, with_localstripe: bool = True, localstripe_port: int = 8420
    ):
        self.env = env
        self.log_dir = log_dir
        self.gateway_bind = gateway_bind
        self.with_localstripe = with_localstripe
        self.localstripe_port = localstripe_port
        self.procs: dict[str, subprocess.Popen] = {}
        self.http_addresses: dict[str, str] = {}  # process name -> host:port of its /metrics, /healthz, /readyz

    @property
    def url(self) -> str:
        host, port = self.gateway_bind.rsplit(":", 1)
        return f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(
            argv, cwd=ROOT, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_service(
        self, name: str, process: str | None = None, http_address: str | None = None, env: dict | None = None
    ) -> None:
        """One process of a service, with `env` added to the stack's environment. Its HTTP address: the
        one given, else the environment's, else a free port, so stacks and replicas started side by
        side never fight over one."""
        var = http_address_var(name)
        address = http_address or self.env.get(var) or f"127.0.0.1:{free_port()}"
        self.http_addresses[process or name] = address
        self._spawn(
            process or name,
            [
                str(BIN / "nameko"),
                "run",
                "--config",
                f"services/{name}/config.yml",
                f"services.{name}.service:{SERVICES[name]}",
            ],
            {**self.env, **(env or {}), var: address},
        )

    def http_url(self, process: str) -> str:
        host, port = self.http_addresses[process].rsplit(":", 1)
        return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{port}"

    def start(self) -> None:
        if self.with_localstripe:
            self.start_localstripe()
        for name in SERVICES:
            self.start_service(name)
        self._spawn(
            "gateway",
            [str(BIN / "gunicorn"), "-c", "services/gateway/gunicorn.conf.py", "--bind", self.gateway_bind],
            # where the gateway fetches a client's current PDFs without an RPC: documents' HTTP port
            {"DOCUMENTS_URL": self.http_url("documents"), **self.env},
        )

    def start_localstripe(self) -> None:
        """localstripe (the stateful Stripe fake), told to send its signed webhooks to our gateway.
        Tests start theirs empty; `make dev` keeps its data between runs, like a Stripe test account."""
        if not port_open("127.0.0.1", self.localstripe_port):
            extra = ["--from-scratch"] if self.env.get("LOCALSTRIPE_FROM_SCRATCH") else []
            # localstripe with its SEPA Direct Debit gaps patched (deploy/localstripe_sepa.py)
            argv = [sys.executable, "-m", "deploy.localstripe_sepa", "--port", str(self.localstripe_port), *extra]
            self._spawn("localstripe", argv)
            wait_for(lambda: port_open("127.0.0.1", self.localstripe_port), 30, "localstripe to listen")
        register_stripe_webhook(
            self.env["STRIPE_API_BASE"], f"{self.url}/webhooks/stripe", self.env["STRIPE_WEBHOOK_SECRET"]
        )

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=3).status_code == 200
        except requests.RequestException:
            return False

    def wait_healthy(self, timeout: float = 90) -> None:
        def check():
            dead = [name for name, proc in self.procs.items() if proc.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited; see {self.log_dir}/<name>.log")
            return self.healthy()

        wait_for(check, timeout, "every service to answer /healthz")

    def stop_process(self, name: str, signum: int = signal.SIGTERM) -> None:
        self._terminate([self.procs.pop(name)], signum)

    def stop(self) -> None:
        procs, self.procs = list(self.procs.values()), {}
        self._terminate(procs, signal.SIGTERM)

    @staticmethod
    def _terminate(procs: list[subprocess.Popen], signum: int) -> None:
        """Signal all first, then wait: a graceful stop of each runs in parallel."""
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signum)
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def register_stripe_webhook(api_base: str, url: str, secret: str, webhook_id: str = "portal") -> None:
    """localstripe's own configuration call: POST /_config/webhooks/<id> with the URL and secret."""
    response = requests.post(
        f"{api_base.rstrip('/')}/_config/webhooks/{webhook_id}", data={"url": url, "secret": secret}, timeout=10
    )
    response.raise_for_status()


def dev_env() -> dict:
    env = dict(os.environ)
    env.setdefault("PORTAL_ENV", "dev")
    env.setdefault("PORTAL_VAR_DIR", str(ROOT / "var"))
    env.setdefault("AMQP_URI", "amqp://guest:guest@localhost:5672/")
    env.setdefault("GATEWAY_BIND", "127.0.0.1:8000")
    host, port = env["GATEWAY_BIND"].rsplit(":", 1)
    env.setdefault("PORTAL_URL", f"http://localhost:{port}")
    env.setdefault("STRIPE_API_BASE", "http://localhost:8420")
    env.setdefault("STRIPE_SECRET_KEY", "sk_test_localstripe")
    env.setdefault("STRIPE_PUBLISHABLE_KEY", "pk_test_localstripe")
    env.setdefault("STRIPE_WEBHOOK_SECRET", "whsec_localstripe")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main() -> int:
    env = dev_env()
    for name, port in HTTP_PORTS.items():  # make dev: the documented ports (other stacks get free ones)
        env.setdefault(http_address_var(name), f"127.0.0.1:{port}")
    os.environ.update(env)
    print(ensure_broker(env["AMQP_URI"]), flush=True)
    stack = Stack(env, Path(env["PORTAL_VAR_DIR"]) / "logs", env["GATEWAY_BIND"])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        stack.start()
        print("starting services (logs in var/logs/) ...", flush=True)
        stack.wait_healthy()
        from services.billing.seed import main as seed  # billing's own seeding code, on billing's database

        seed()
        print(
            f"""
  Client portal:  {stack.url}
  Sign in as:     demo@example.com  (or other@example.com)
  Sign-in email:  {stack.url}/dev/mail  (also written to var/mail/*.eml)
  Health:         {stack.url}/healthz
  Metrics:        {stack.url}/metrics  {" ".join(f"{stack.http_url(n)}/metrics" for n in SERVICES)}
  Press Ctrl-C to stop.
""",
            flush=True,
        )
        while True:
            for name, proc in stack.procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see var/logs/{name}.log", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        # A second Ctrl-C or TERM must not cut the shutdown short and orphan the children.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping ...", flush=True)
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())

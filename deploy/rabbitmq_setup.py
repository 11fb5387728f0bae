"""Apply the portal's RabbitMQ topology to a broker through its management HTTP API.

    python -m deploy.rabbitmq_setup [deploy/k8s/rabbitmq-definitions.json]

1. `POST /api/definitions` with the definitions file: the `portal` vhost (default queue type
   quorum), the dead-letter exchange and queue, and the policies. An import merges into what the
   broker has, so running it again changes nothing (or updates the policies).
2. `PUT /api/users/<user>` and `PUT /api/permissions/<vhost>/<user>` for the application user
   named in `AMQP_URI` (`amqp://portal:<password>@rabbitmq:5672/portal`), with that password, so the
   Secret's AMQP_URI is the one place the password lives. Re-running it after changing the Secret
   sets the new password.

Reads `RABBITMQ_MANAGEMENT_URL` (default `http://rabbitmq:15672`), `RABBITMQ_ADMIN_USERNAME` and
`RABBITMQ_ADMIN_PASSWORD` (an administrator, e.g. the cluster operator's `<cluster>-default-user`
Secret) and `AMQP_URI`. Waits up to `RABBITMQ_SETUP_WAIT` seconds (default 300) for the API to
answer. Kubernetes runs it as the `rabbitmq-setup` Job (deploy/k8s/rabbitmq-setup-job.yaml).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

DEFAULT_DEFINITIONS = Path(__file__).resolve().parent / "k8s" / "rabbitmq-definitions.json"


class SetupError(RuntimeError):
    pass


def app_user(amqp_uri: str) -> tuple[str, str, str]:
    """(user, password, vhost) of an AMQP URI; an empty path is the default vhost `/`."""
    parsed = urllib.parse.urlsplit(amqp_uri)
    if not parsed.username or parsed.password is None:
        raise SetupError("AMQP_URI must name a user and a password (amqp://user:password@host:5672/vhost)")
    vhost = urllib.parse.unquote(parsed.path[1:]) if len(parsed.path) > 1 else "/"
    return urllib.parse.unquote(parsed.username), urllib.parse.unquote(parsed.password), vhost


class ManagementApi:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self.timeout = timeout

    def request(self, method: str, path: str, body: object | None = None) -> int:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise SetupError(f"{method} {path}: HTTP {exc.code} {detail}") from None

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.request("GET", "/api/overview")
                return
            except (OSError, SetupError) as exc:
                if time.monotonic() >= deadline:
                    raise SetupError(f"the management API at {self.base_url} did not answer: {exc}") from None
                time.sleep(2)


def apply(api: ManagementApi, definitions: dict, amqp_uri: str) -> list[str]:
    """Import the definitions, then create or update the application user. Returns what was done."""
    user, password, vhost = app_user(amqp_uri)
    vhosts = {v["name"] for v in definitions.get("vhosts", [])}
    if vhost not in vhosts and vhost != "/":
        raise SetupError(f"AMQP_URI's vhost {vhost!r} is not in the definitions ({sorted(vhosts)})")
    quoted_vhost = urllib.parse.quote(vhost, safe="")
    quoted_user = urllib.parse.quote(user, safe="")
    api.request("POST", "/api/definitions", definitions)
    api.request("PUT", f"/api/users/{quoted_user}", {"password": password, "tags": ""})
    api.request(
        "PUT", f"/api/permissions/{quoted_vhost}/{quoted_user}", {"configure": ".*", "write": ".*", "read": ".*"}
    )
    return [
        f"imported definitions: vhosts {sorted(vhosts)}, {len(definitions.get('policies', []))} policies",
        f"user {user!r} may configure, write and read in vhost {vhost!r}",
    ]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else DEFAULT_DEFINITIONS
    env = os.environ
    missing = [name for name in ("RABBITMQ_ADMIN_USERNAME", "RABBITMQ_ADMIN_PASSWORD", "AMQP_URI") if not env.get(name)]
    if missing:
        print(f"rabbitmq_setup: set {', '.join(missing)}", file=sys.stderr)
        return 2
    api = ManagementApi(
        env.get("RABBITMQ_MANAGEMENT_URL") or "http://rabbitmq:15672",
        env["RABBITMQ_ADMIN_USERNAME"],
        env["RABBITMQ_ADMIN_PASSWORD"],
    )
    try:
        definitions = json.loads(path.read_text())
        api.wait(float(env.get("RABBITMQ_SETUP_WAIT") or 300))
        for line in apply(api, definitions, env["AMQP_URI"]):
            print(f"rabbitmq_setup: {line}")
    except (SetupError, OSError, ValueError) as exc:
        print(f"rabbitmq_setup: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

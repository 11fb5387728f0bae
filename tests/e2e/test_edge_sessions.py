"""Sessions are checked at the gateways without asking auth: an ended session is refused by every worker
of every gateway replica within a second (the cookie and the API's bearer token alike), portal access
turned off in billing reaches them while auth is down, and signed-in clients keep browsing meanwhile."""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from deploy.devstack import BIN, free_port, wait_for
from tests.conftest import SIGN_IN, Browser, link_token, new_portal_client, services_rpc, sign_in

pytestmark = pytest.mark.e2e
WORKERS = 2
DEADLINE = 1.0  # seconds for a revocation to reach every worker


@pytest.fixture(scope="module")
def replicas(stack):
    """Two more gateway replicas of two workers each, beside the stack's own."""
    names = [f"gateway-replica-{i}" for i in range(2)]
    urls = []
    for name in names:
        port = free_port()
        stack._spawn(
            name,
            [str(BIN / "gunicorn"), "-c", "services/gateway/gunicorn.conf.py", "--bind", f"127.0.0.1:{port}"],
            {**stack.env, "GATEWAY_WORKERS": str(WORKERS)},
        )
        urls.append(f"http://localhost:{port}")
    for url in urls:
        wait_for(lambda url=url: _answers(f"{url}/livez"), 60, f"{url} to answer")
    yield urls
    for name in names:
        stack.stop_process(name)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def bearer(stack, email: str) -> dict:
    before = stack.outbox.count(email, SIGN_IN)
    Browser(stack.url).post(f"{stack.url}/login", data={"email": email})
    token = link_token(stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1])
    answer = requests.post(f"{stack.url}/api/portal/v1/session", json={"token": token})
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def ask(url: str, credential: dict) -> requests.Response:
    """One request on a new connection (so any worker may take it): `credential` is a cookie or a header."""
    if "Authorization" in credential:
        return requests.get(f"{url}/api/portal/v1/me", headers=credential, timeout=5)
    return requests.get(f"{url}/api/portal/v1/me", cookies=credential, timeout=5)


def every_worker_accepts(urls: list[str], credential: dict) -> set[str]:
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while len(seen) < WORKERS * len(urls):
        assert time.monotonic() < deadline, f"only saw workers {seen}"
        for url in urls:
            answer = ask(url, credential)
            assert answer.status_code == 200, answer.text
            seen.add(answer.headers["X-Served-By"] + "@" + url)
    return seen


def refused_everywhere(urls: list[str], credentials: list[dict], since: float, workers: set[str]) -> None:
    """After `since`, every worker of every replica refuses every credential within DEADLINE: the last
    acceptance by any worker comes before it, and each worker is seen refusing after it."""
    last_accepted: dict[str, float] = {}
    refused_after_deadline: set[str] = set()
    stop = time.monotonic() + 10
    while refused_after_deadline != workers:
        assert time.monotonic() < stop, (
            f"workers not seen refusing after the deadline: {workers - refused_after_deadline}"
        )
        for url in urls:
            for credential in credentials:
                answer = ask(url, credential)
                elapsed, worker = time.monotonic() - since, answer.headers["X-Served-By"] + "@" + url
                if answer.status_code == 200:
                    last_accepted[worker] = elapsed
                else:
                    assert answer.status_code == 401, answer.text
                    if elapsed > DEADLINE:
                        refused_after_deadline.add(worker)
    late = {worker: round(at, 3) for worker, at in last_accepted.items() if at > DEADLINE}
    assert late == {}, f"accepted after {DEADLINE} s: {late}"


def test_signing_out_is_refused_by_every_worker_of_every_replica_within_a_second(stack, replicas):
    email = f"edge-{uuid.uuid4().hex[:6]}@example.org"
    new_portal_client(stack, "Edge Sessions Ltd", email)
    browser = sign_in(stack, email)
    cookie = {"portal_session": browser.cookies["portal_session"]}
    token = bearer(stack, email)
    workers = every_worker_accepts(replicas, cookie) | every_worker_accepts(replicas, token)
    assert len(workers) == 2 * WORKERS

    assert browser.post(f"{stack.url}/logout", allow_redirects=False).status_code == 303  # on the stack's gateway
    assert requests.delete(f"{stack.url}/api/portal/v1/session", headers=token).status_code == 204
    refused_everywhere(replicas, [cookie, token], time.monotonic(), workers)


def test_signing_out_everywhere_is_refused_by_every_worker_within_a_second(stack, replicas):
    email = f"everywhere-{uuid.uuid4().hex[:6]}@example.org"
    new_portal_client(stack, "Everywhere Ltd", email)
    laptop, phone = sign_in(stack, email), sign_in(stack, email)
    token = bearer(stack, email)
    credentials = [
        {"portal_session": laptop.cookies["portal_session"]},
        {"portal_session": phone.cookies["portal_session"]},
        token,
    ]
    workers = set().union(*(every_worker_accepts(replicas, credential) for credential in credentials))

    laptop.post(f"{stack.url}/logout", data={"everywhere": "1"}, allow_redirects=False)
    refused_everywhere(replicas, credentials, time.monotonic(), workers)


def test_portal_access_turned_off_reaches_every_gateway_while_auth_is_down(stack, replicas):
    email, bystander = (f"{who}-{uuid.uuid4().hex[:6]}@example.org" for who in ("cut-off", "bystander"))
    made = new_portal_client(stack, "Cut Off Ltd", email)
    new_portal_client(stack, "Bystander Ltd", bystander)
    credentials = [{"portal_session": sign_in(stack, email).cookies["portal_session"]}, bearer(stack, email)]
    other = sign_in(stack, bystander)
    workers = set().union(*(every_worker_accepts(replicas, credential) for credential in credentials))

    stack.stop_process("auth")
    try:
        with services_rpc(stack, made["workspace_id"]) as rpc:
            rpc.billing.set_portal_access(made["workspace_id"], made["contact_id"], False)
        refused_everywhere(replicas, credentials, time.monotonic(), workers)
        # everyone else keeps browsing; signing in needs auth, and the page says so
        for _ in range(5):
            assert other.get(f"{stack.url}/dashboard", allow_redirects=False).status_code == 200
        page = Browser(stack.url).post(f"{stack.url}/login", data={"email": bystander})
        # auth's queue is there with no one to answer it: the request times out, and the page says why
        assert page.status_code in (503, 504) and "Signing in is not available right now" in page.text
    finally:
        stack.start_service("auth")
    stack.wait_healthy(60)

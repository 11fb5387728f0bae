"""`make bench`: latency through the gateway as ratios to a baseline measured in the same run.

Starts its own stack (SQLite in a temporary folder, a throwaway RabbitMQ vhost when the management
API is enabled) so it never disturbs `make dev`. Absolute numbers drift on shared machines; compare
the ratios.
"""
from __future__ import annotations

import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from pathlib import Path

import requests
from nameko.standalone.rpc import ClusterRpcProxy

from deploy.devstack import ROOT, Stack, create_vhost, delete_vhost, dev_env, ensure_broker, wait_for


def timed(fn, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"p50": statistics.median(ordered), "p99": ordered[int(len(ordered) * 0.99) - 1],
            "mean": statistics.fmean(ordered)}


def sign_in(url: str, mail_dir: Path) -> requests.Session:
    session = requests.Session()
    csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', session.get(f"{url}/login").text).group(1)
    session.post(f"{url}/login", data={"email": "demo@example.com", "csrf_token": csrf})

    def sign_in_email():
        for path in mail_dir.glob("*.eml"):  # the seed's invoice emails are there too
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if "sign-in link" in message["Subject"]:
                return message
        return None

    wait_for(sign_in_email, 30, "the sign-in email")
    token = re.search(r"token=([A-Za-z0-9_-]+)", sign_in_email().get_body(("plain",)).get_content()).group(1)
    session.post(f"{url}/login/verify", data={"token": token, "csrf_token": csrf})
    return session


def invoice_data(lines: int, tag: str) -> dict:
    line = {"description": "Consulting", "quantity": "1", "unit_price": 10000, "tax_rate": "0",
            "discount_percent": "0", "discount": 0, "subtotal": 10000, "tax": 0, "total": 10000}
    total = 10000 * lines
    return {"id": tag, "number": f"BENCH-{tag}", "kind": "standard", "display_status": "sent", "currency": "USD",
            "issue_date": "2026-11-01", "due_date": "2026-12-01", "lines": [line] * lines, "subtotal": total,
            "discount_total": 0, "tax_total": 0, "total": total, "amount_paid": 0, "amount_credited": 0,
            "balance": total, "notes": tag, "terms": "", "client": {"name": "Bench Client", "address": ""}}


def bench_documents(amqp_uri: str, billing_db: Path) -> None:
    """Cold and cached PDF renders, and the documents service's RPC latency while 20 PDFs render."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{billing_db}")
    with engine.connect() as conn:
        ws = conn.execute(sa.text("SELECT id FROM workspaces")).scalar_one()
    engine.dispose()
    config = {"AMQP_URI": amqp_uri}
    with ClusterRpcProxy(config, timeout=120) as rpc:
        docs = rpc.documents
        docs.render_document("invoice", ws, invoice_data(15, "warmup"), purpose="bench")  # start a worker

        def cold(lines: int, runs: int) -> float:
            return statistics.median(timed(lambda: docs.render_document(
                "invoice", ws, invoice_data(lines, uuid.uuid4().hex), purpose="bench"), 1)[0] for _ in range(runs))

        one_page, ten_pages = cold(15, 5), cold(330, 3)
        fixed = invoice_data(15, "cached")
        docs.render_document("invoice", ws, fixed, purpose="bench")
        cached = statistics.median(timed(lambda: docs.render_document("invoice", ws, fixed, purpose="bench"), 200))
        timed(docs.ping, 30)
        idle = summary(timed(docs.ping, 300))

    def render(i: int) -> None:
        with ClusterRpcProxy(config, timeout=300) as own:
            own.documents.render_document("invoice", ws, invoice_data(15, f"burst-{i}-{uuid.uuid4().hex}"),
                                          purpose="bench")

    with ThreadPoolExecutor(20) as pool, ClusterRpcProxy(config, timeout=60) as rpc:
        burst = [pool.submit(render, i) for i in range(20)]
        time.sleep(0.5)  # the burst is queued and rendering
        busy = []
        while not all(f.done() for f in burst):
            busy += timed(rpc.documents.ping, 1)
        for f in burst:
            f.result()
    loaded = summary(busy)
    print("\ndocuments: PDF rendering")
    print(f"cold one-page invoice (15 lines)   {one_page:8.1f} ms")
    print(f"cold ten-page invoice (330 lines)  {ten_pages:8.1f} ms")
    print(f"cached fetch of the same invoice   {cached:8.1f} ms   cold / cached = {one_page / cached:.0f}x (goal >= 50x)")
    print(f"documents.ping idle                p50 {idle['p50']:.2f} ms, p99 {idle['p99']:.2f} ms")
    print(f"documents.ping during 20 renders   p50 {loaded['p50']:.2f} ms, p99 {loaded['p99']:.2f} ms "
          f"({len(busy)} pings)   p99 loaded / idle = {loaded['p99'] / idle['p99']:.1f}x (goal <= 3x)")


def main() -> int:
    env = dev_env()
    ensure_broker(env["AMQP_URI"])
    vhost_uri = create_vhost(env["AMQP_URI"], f"portal-bench-{uuid.uuid4().hex[:8]}")
    work = Path(tempfile.mkdtemp(prefix="portal-bench-"))
    env.update({"PORTAL_VAR_DIR": str(work), "MAIL_OUTBOX_DIR": str(work / "mail"), "GATEWAY_BIND": "127.0.0.1:8765",
                "PORTAL_URL": "http://localhost:8765", "AMQP_URI": vhost_uri or env["AMQP_URI"], "LOG_LEVEL": "WARNING",
                "AUTH_LINKS_PER_EMAIL": "1000"})
    stack = Stack(env, work / "logs", env["GATEWAY_BIND"], with_localstripe=False)
    stack.start()
    try:
        stack.wait_healthy()
        subprocess.run([sys.executable, "-m", "services.billing.seed"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        time.sleep(2)  # contacts reach auth through events
        browser = sign_in(stack.url, work / "mail")
        n = 400
        with ClusterRpcProxy({"AMQP_URI": env["AMQP_URI"]}, timeout=10) as rpc:
            timed(rpc.billing.ping, 50)  # warm up
            baseline = summary(timed(rpc.billing.ping, n))
        for path in ("/login", "/api/portal/v1/me", "/dashboard"):
            timed(lambda: browser.get(stack.url + path), 50)
        results = {
            "GET /login (HTTP only, no RPC)": summary(timed(lambda: browser.get(stack.url + "/login"), n)),
            "GET /api/portal/v1/me (1 RPC)": summary(timed(lambda: browser.get(stack.url + "/api/portal/v1/me"), n)),
            "GET /dashboard (2 RPCs + page)": summary(timed(lambda: browser.get(stack.url + "/dashboard"), n)),
        }
        cookies = browser.cookies.get_dict()
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            list(pool.map(lambda _: requests.get(stack.url + "/api/portal/v1/me", cookies=cookies), range(n)))
            throughput = n / (time.perf_counter() - started)

        print(f"\nbaseline: standalone nameko RPC billing.ping, {n} calls: "
              f"p50 {baseline['p50']:.2f} ms, p99 {baseline['p99']:.2f} ms")
        print(f"{'request':36} {'p50 ms':>8} {'p99 ms':>8} {'p50 / baseline':>15}")
        for name, figures in results.items():
            print(f"{name:36} {figures['p50']:8.2f} {figures['p99']:8.2f} {figures['p50'] / baseline['p50']:14.1f}x")
        print(f"GET /api/portal/v1/me with 8 concurrent clients: {throughput:.0f} req/s")
        bench_documents(env["AMQP_URI"], work / "billing.sqlite3")
    finally:
        stack.stop()
        if vhost_uri:
            delete_vhost(vhost_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The real services on real RabbitMQ and PostgreSQL: RPC, events through the outbox, idempotent
consumers, single-use links under concurrency, and a dead service."""

from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg2
import pytest
import requests
from kombu import Connection, Exchange

from tests.conftest import SIGN_IN, Browser, business_today, link_token, sent_days_ago, services_rpc, sign_in

pytestmark = pytest.mark.integration


def query(url: str, sql: str, params=()):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def wait_until(predicate, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_health_reports_broker_and_every_service(stack):
    page = requests.get(f"{stack.url}/healthz", timeout=10)
    assert page.status_code == 200
    assert {name for name, check in page.json()["checks"].items() if check["ok"]} == {
        "broker",
        "auth",
        "billing",
        "payments",
        "documents",
    }


def test_each_service_answers_rpc_and_uses_its_own_postgres_database(stack):
    with services_rpc(stack, timeout=10) as rpc:
        for name in ("auth", "billing", "payments", "documents"):
            assert getattr(rpc, name).ping() == {"service": name, "ok": True}
    assert query(stack.databases["billing"], "SELECT count(*) FROM invoices")[0][0] > 0
    assert query(stack.databases["auth"], "SELECT to_regclass('invoices')")[0][0] is None


def test_every_outbox_event_gets_published(stack):
    for service in ("billing", "auth"):
        wait_until(
            lambda: (
                query(stack.databases[service], "SELECT count(*) FROM outbox WHERE published_at IS NULL")[0][0] == 0
            ),
            what=f"{service} outbox to drain",
        )


def publish(amqp_uri: str, source: str, event: dict) -> None:
    with Connection(amqp_uri) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish(
            event,
            exchange=Exchange(f"{source}.events", type="topic", durable=True),
            routing_key=event["type"],
            declare=[],
        )


def contact_event(contact_id: str, version: int, access: bool = True, event_id: str | None = None) -> dict:
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": "contact.updated",
        "version": 1,
        "occurred_at": "2026-11-23T12:00:00+00:00",
        "workspace_id": "ws-x",
        "data": {
            "id": contact_id,
            "workspace_id": "ws-x",
            "client_id": "cl-x",
            "email": f"{contact_id}@x.test",
            "name": "X",
            "portal_access": access,
            "is_primary": True,
            "version": version,
        },
    }


def test_a_duplicate_event_is_processed_once_and_an_older_version_is_ignored(stack):
    auth_db = stack.databases["auth"]
    contact_id = f"c-{uuid.uuid4().hex[:8]}"
    event = contact_event(contact_id, version=2)
    for _ in range(3):
        publish(stack.amqp_uri, "billing", event)
    publish(stack.amqp_uri, "billing", contact_event(contact_id, version=1, access=False))
    wait_until(
        lambda: query(auth_db, "SELECT portal_access, version FROM contacts WHERE id = %s", (contact_id,)),
        what="contact copy in auth",
    )
    time.sleep(1)  # let any duplicate deliveries land
    assert query(auth_db, "SELECT count(*) FROM inbox WHERE event_id = %s", (event["id"],))[0][0] == 1
    assert query(auth_db, "SELECT portal_access, version FROM contacts WHERE id = %s", (contact_id,)) == [(True, 2)]
    assert query(auth_db, "SELECT count(*) FROM dead_letters")[0][0] == 0


def test_two_concurrent_posts_of_one_link_open_one_session(stack):
    before = stack.outbox.count("other@example.com", SIGN_IN)
    Browser(stack.url).post(f"{stack.url}/login", data={"email": "other@example.com"})
    token = link_token(stack.outbox.wait_for("other@example.com", before + 1, subject=SIGN_IN)[-1])
    results = []
    barrier = threading.Barrier(4)

    def post():
        browser = Browser(stack.url)
        form = {"token": token, "csrf_token": browser.csrf_token()}
        barrier.wait()
        results.append(browser.post(f"{stack.url}/login/verify", data=form, allow_redirects=False))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [303, 410, 410, 410]


def test_disabling_portal_access_in_billing_revokes_the_session(stack):
    session = sign_in(stack, "other@example.com")
    assert session.get(f"{stack.url}/api/portal/v1/me").status_code == 200
    [(workspace_id, contact_id)] = query(
        stack.databases["billing"], "SELECT workspace_id, id FROM contacts WHERE email = 'other@example.com'"
    )
    with services_rpc(stack, workspace_id, timeout=10) as rpc:
        rpc.billing.set_portal_access(workspace_id, contact_id, False)
        wait_until(
            lambda: session.get(f"{stack.url}/api/portal/v1/me").status_code == 401,
            what="session revoked through contact.updated",
        )
        rpc.billing.set_portal_access(workspace_id, contact_id, True)
    wait_until(
        lambda: (
            query(stack.databases["auth"], "SELECT portal_access FROM contacts WHERE id = %s", (contact_id,))
            == [(True,)]
        ),
        what="access restored",
    )


def test_a_stopped_service_gives_a_504_within_the_timeout_then_recovers(stack):
    session = sign_in(stack, "demo@example.com")
    stack.stop_process("billing")
    try:
        started = time.monotonic()
        page = session.get(f"{stack.url}/dashboard")
        elapsed = time.monotonic() - started
        assert page.status_code == 504 and "try again" in page.text
        assert elapsed < 15  # RPC_TIMEOUT is 6s in the test stack: a clear answer, never a hang
        api = session.get(f"{stack.url}/api/portal/v1/dashboard")
        assert api.status_code == 504 and api.headers["content-type"] == "application/problem+json"
        health = requests.get(f"{stack.url}/healthz", timeout=10)
        assert health.status_code == 503 and health.json()["checks"]["billing"]["ok"] is False
    finally:
        stack.start_service("billing")
    stack.wait_healthy(60)
    assert session.get(f"{stack.url}/dashboard").status_code == 200


def test_request_id_travels_into_the_services_logs(stack):
    request_id = f"it-{uuid.uuid4().hex[:12]}"

    def logged():
        for line in (stack.log_dir / "auth.log").read_text().splitlines():
            if line.startswith("{") and json.loads(line).get("request_id") == request_id:
                return True
        return False

    # a sign-in request reaches auth, which logs it with the worker's context
    Browser(stack.url).post(
        f"{stack.url}/login", data={"email": "nobody@example.org"}, headers={"X-Request-ID": request_id}
    )
    wait_until(logged, what="request id in auth's JSON log")


def test_sign_ins_reach_billing_activity_through_events(stack):
    sign_in(stack, "other@example.com")
    [(client_id,)] = query(
        stack.databases["billing"], "SELECT client_id FROM contacts WHERE email = 'other@example.com'"
    )
    wait_until(
        lambda: (
            query(
                stack.databases["billing"],
                "SELECT count(*) FROM activities WHERE client_id = %s AND kind = 'portal.signed_in'",
                (client_id,),
            )[0][0]
            >= 1
        ),
        what="portal.signed_in activity in billing",
    )


def test_a_due_reminder_is_emailed_once_by_documents(stack):
    from datetime import timedelta

    email = f"remind-{uuid.uuid4().hex[:6]}@example.com"
    [(workspace_id,)] = query(stack.databases["billing"], "SELECT id FROM workspaces WHERE name = 'Acme Studio'")
    with services_rpc(stack, workspace_id, timeout=10) as rpc:
        client = rpc.billing.create_client(
            workspace_id,
            {
                "name": "Reminded Ltd",
                "timezone": "UTC",
                "contacts": [{"email": email, "name": "Rita", "portal_access": True}],
            },
        )
        invoice = rpc.billing.create_invoice(
            workspace_id,
            {
                "client_id": client["id"],
                "send": True,
                "issue_date": (business_today() - timedelta(days=2)).isoformat(),
                "due_date": (business_today() + timedelta(days=3)).isoformat(),
                "lines": [{"description": "Reminder test", "unit_price": 4200}],
            },
        )
    assert stack.outbox.count(email, "is due on") == 0  # not right after the invoice's own email
    sent_days_ago(stack, invoice["id"], 2)
    [message] = stack.outbox.wait_for(email, 1, timeout=20, subject="is due on")
    assert "$42.00" in message.get_body(("plain",)).get_content()
    time.sleep(3)  # several more sweeps pass
    assert stack.outbox.count(email, "is due on") == 1


def test_an_invoice_email_link_opens_that_invoice_only_until_it_is_voided(stack):
    import re as regex

    email = f"linked-{uuid.uuid4().hex[:6]}@example.com"
    [(workspace_id,)] = query(stack.databases["billing"], "SELECT id FROM workspaces WHERE name = 'Acme Studio'")
    with services_rpc(stack, workspace_id, timeout=20) as rpc:
        client = rpc.billing.create_client(
            workspace_id, {"name": "Linked Ltd", "contacts": [{"email": email, "name": "Lin", "portal_access": True}]}
        )
        invoice = rpc.billing.create_invoice(
            workspace_id,
            {
                "client_id": client["id"],
                "send": True,
                "lines": [{"description": "Linked work", "quantity": 2, "unit_price": 12345}],
            },
        )
        [message] = stack.outbox.wait_for(email, 1, timeout=30, subject=invoice["number"])
        text = message.get_body(("plain",)).get_content()
        link = regex.search(r"https?://\S+/i/[A-Za-z0-9_-]+", text).group(0)
        attached = {part.get_filename() for part in message.iter_attachments()}
        assert attached == {f"{invoice['number']}.pdf"}

        page = requests.get(link)
        assert page.status_code == 200 and invoice["number"] in page.text and "$246.90" in page.text
        assert "Secret project" not in page.text and "Demo Client" not in page.text
        pdf = requests.get(f"{link}/pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
        assert pdf.headers["content-disposition"] == f'attachment; filename="{invoice["number"]}.pdf"'
        assert requests.get(f"{link}/pdf", headers={"If-None-Match": pdf.headers["etag"]}).status_code == 304
        assert requests.get(link.rsplit("/", 1)[0] + "/forged-token").status_code == 404
        assert requests.get(f"{stack.url}/dashboard", allow_redirects=False).status_code == 303  # no session

        wait_until(
            lambda: (
                query(stack.databases["billing"], "SELECT status FROM invoices WHERE id = %s", (invoice["id"],))
                == [("viewed",)]
            ),
            what="invoice marked viewed",
        )
        log = rpc.documents.list_emails(workspace_id, client["id"])
        assert [(e["kind"], e["status"]) for e in log] == [("invoice_sent", "sent")]

        rpc.billing.void_invoice(workspace_id, invoice["id"])
    wait_until(lambda: requests.get(link).status_code == 410, what="the voided invoice's link to stop working")

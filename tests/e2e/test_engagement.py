"""Collection signals end to end: a client views invoices in the portal, a card is declined, the
sweep sends a reminder, an invoice is long overdue; the admin API's engagement summary follows each
step through the real events (auth's sign-in, payments' attempts and failures, billing's own views and
reminders), and the same events delivered again change nothing."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from urllib.parse import quote, unquote, urlparse
from zoneinfo import ZoneInfo

import pytest
import requests
from nameko.standalone.events import event_dispatcher

from tests.conftest import new_portal_client, sent_days_ago, services_rpc, sign_in
from tests.e2e.payments_support import CARD_DECLINED, pay_card, query, start, wait_until

pytestmark = pytest.mark.e2e
API = "/api/admin/v1"


def admin_get(stack, key: str, path: str, **params) -> requests.Response:
    return requests.get(
        f"{stack.url}{API}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=15
    )


@pytest.fixture(scope="module")
def keys(stack):
    """A key of the seeded workspace (where new_portal_client puts clients) and one of another workspace."""
    workspace_id = query(stack, "billing", "SELECT id FROM workspaces WHERE name = 'Acme Studio'")[0][0]
    with services_rpc(stack, workspace_id) as rpc:
        own = rpc.billing.create_api_key(workspace_id, "engagement tests")["key"]
        other_ws = rpc.billing.create_workspace({"name": "Elsewhere Ltd", "email": "elsewhere@example.org"})["id"]
    with services_rpc(stack, other_ws) as rpc:
        other = rpc.billing.create_api_key(other_ws, "engagement tests")["key"]
    return {"own": own, "other": other, "workspace_id": workspace_id}


def engagement(stack, key: str, client_id: str) -> dict:
    answer = admin_get(stack, key, f"/clients/{client_id}/engagement")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for_summary(stack, key: str, client_id: str, what: str, check, timeout: float = 30) -> dict:
    """Poll the summary until `check` holds (events arrive asynchronously); the summary that passed."""
    return wait_until(
        lambda: (lambda s: s if check(s) else None)(engagement(stack, key, client_id)), timeout=timeout, what=what
    )


def codes(summary: dict) -> set[str]:
    return {r["code"] for r in summary["reasons"]}


def outbox_events(stack, event_type: str, client_id: str) -> list[dict]:
    """The events payments published about this client (its outbox keeps every one)."""
    bodies = [
        json.loads(row[0])
        for row in query(
            stack, "payments", "SELECT body FROM outbox WHERE event_type = %s AND published_at IS NOT NULL", event_type
        )
    ]
    return [event for event in bodies if event["data"].get("client_id") == client_id]


class Queue:
    """A consumer's queue as the RabbitMQ management API reports it (its figures lag a few seconds)."""

    def __init__(self, amqp_uri: str, name: str):
        parsed = urlparse(amqp_uri)
        api = os.environ.get("TEST_RABBIT_MANAGEMENT_URL", f"http://{parsed.hostname}:15672")
        vhost = unquote(parsed.path.lstrip("/")) or "/"
        self.url = f"{api}/api/queues/{quote(vhost, safe='')}/{quote(name, safe='')}"
        self.auth = (parsed.username or "guest", parsed.password or "guest")

    def settled_after(self, published: int) -> bool:
        """At least `published` messages went into the queue, and every one of them was acked (nameko
        acks once the handler returned), with nothing waiting or in flight."""
        queue = requests.get(self.url, auth=self.auth, timeout=5).json()
        stats = queue.get("message_stats", {})
        return (
            stats.get("publish", 0) >= published
            and stats.get("ack", 0) >= stats.get("publish", 0)
            and queue.get("messages_ready") == 0
            and queue.get("messages_unacknowledged") == 0
        )


def test_signals_roll_up_into_the_engagement_summary_and_risk(stack, keys):
    key = keys["own"]
    made = new_portal_client(stack, "Signals Ltd", "signals@example.com", invoices=1)
    client_id, first = made["client"]["id"], made["invoices"][0]

    # A new client, its invoice not due for 30 days: nothing to chase.
    fresh = engagement(stack, key, client_id)
    assert (fresh["risk"], fresh["reasons"], fresh["days_overdue"], fresh["portal_views"]) == ("low", [], 0, 0)
    assert fresh["client_id"] == client_id and fresh["outstanding"] == [{"amount": 10000, "currency": "USD"}]

    # Viewing the invoice in the portal, twice: each view counts, the last one is remembered.
    session = sign_in(stack, "signals@example.com")
    for _ in range(2):
        assert session.get(f"{stack.url}/invoices/{first['id']}").status_code == 200
    viewed = engagement(stack, key, client_id)  # billing counts views in the request's own transaction
    assert viewed["portal_views"] == 2 and viewed["last_viewed_at"] is not None and viewed["risk"] == "low"
    wait_for_summary(stack, key, client_id, "auth's sign-in event", lambda s: s["last_signed_in_at"] is not None)

    # A declined card: payments' attempt and failure events reach billing; one failure is medium risk.
    attempt_id = start(session, stack, invoice=first["id"]).headers["Location"].rsplit("/", 1)[1]
    assert pay_card(session, stack, attempt_id, CARD_DECLINED)["status"] == "failed"
    declined = wait_for_summary(
        stack, key, client_id, "the payment events", lambda s: s["payment_attempts"] == 1 and s["failed_payments"] == 1
    )
    assert (declined["risk"], codes(declined), declined["successful_payments"]) == ("medium", {"failed_payment"}, 0)
    assert declined["last_failed_at"] is not None

    # A reminder (due in 3 days, sent two days ago: the default "3 days before" one, sent by the next
    # sweep) that the client has not looked at since: high risk, and in the high-risk list.
    today = datetime.now(ZoneInfo("America/New_York")).date()  # the seeded workspace's time zone
    with services_rpc(stack, keys["workspace_id"]) as rpc:
        soon = rpc.billing.create_invoice(
            keys["workspace_id"],
            {
                "client_id": client_id,
                "send": True,
                "issue_date": (today - timedelta(days=2)).isoformat(),
                "due_date": (today + timedelta(days=3)).isoformat(),
                "lines": [{"description": "Due soon", "quantity": 1, "unit_price": 2500}],
            },
        )
    sent_days_ago(stack, soon["id"], 2)
    reminded = wait_for_summary(stack, key, client_id, "the reminder sweep", lambda s: s["reminders_sent"] == 1)
    assert (reminded["risk"], codes(reminded)) == ("high", {"failed_payment", "reminders_unanswered"})
    assert reminded["last_reminder_at"] is not None and reminded["unanswered_reminder_since"] is not None
    high = admin_get(stack, key, "/engagement", risk="high", limit=500)
    assert high.status_code == 200 and client_id in [s["client_id"] for s in high.json()["items"]]
    assert {s["risk"] for s in high.json()["items"]} == {"high"}

    # Opening the reminded invoice answers the reminder: back to medium (the failed card remains).
    assert session.get(f"{stack.url}/invoices/{soon['id']}").status_code == 200
    answered = engagement(stack, key, client_id)
    assert (answered["risk"], codes(answered), answered["portal_views"]) == ("medium", {"failed_payment"}, 3)
    assert answered["unanswered_reminder_since"] is None

    # An invoice 40 days past due (in the workspace's own date): high, with its amount per currency.
    with services_rpc(stack, keys["workspace_id"]) as rpc:
        late = rpc.billing.create_invoice(
            keys["workspace_id"],
            {
                "client_id": client_id,
                "send": True,
                "issue_date": (today - timedelta(days=50)).isoformat(),
                "due_date": (today - timedelta(days=40)).isoformat(),
                "lines": [{"description": "Long ago", "quantity": 1, "unit_price": 7700}],
            },
        )
    overdue = engagement(stack, key, client_id)
    now_there = datetime.now(ZoneInfo("America/New_York")).date()
    assert overdue["days_overdue"] == (now_there - (today - timedelta(days=40))).days
    assert overdue["overdue_invoices"] == 1 and overdue["overdue_amount"] == [{"amount": 7700, "currency": "USD"}]
    assert (overdue["risk"], codes(overdue)) == ("high", {"overdue_over_30_days", "failed_payment"})
    listed = admin_get(stack, key, "/engagement", limit=500).json()["items"]
    order = [(("high", "medium", "low").index(s["risk"]), -s["days_overdue"]) for s in listed]
    assert order == sorted(order) and client_id in [s["client_id"] for s in listed]
    # the sweep's overdue notice for it is not a reminder to the client
    wait_until(
        lambda: (
            query(
                stack,
                "billing",
                "SELECT count(*) FROM reminders_sent WHERE invoice_id = %s AND kind = 'overdue'",
                late["id"],
            )[0][0]
            == 1
        ),
        what="the overdue sweep",
    )
    assert engagement(stack, key, client_id)["reminders_sent"] == 1

    # The counts are the distinct events: payments' own outbox, billing's timeline for views.
    attempts, failures = (
        outbox_events(stack, "payment.attempted", client_id),
        outbox_events(stack, "payment.failed", client_id),
    )
    views = query(
        stack, "billing", "SELECT count(*) FROM activities WHERE client_id = %s AND kind = 'invoice.viewed'", client_id
    )[0][0]
    summary = engagement(stack, key, client_id)
    assert (
        (summary["payment_attempts"], summary["failed_payments"], summary["portal_views"])
        == (len(attempts), len(failures), views)
        == (1, 1, 3)
    )


def test_the_same_events_delivered_again_count_once(stack, keys):
    key = keys["own"]
    made = new_portal_client(stack, "Replayed Signals", "replayed-signals@example.com", invoices=1)
    client_id, invoice = made["client"]["id"], made["invoices"][0]
    session = sign_in(stack, "replayed-signals@example.com")
    attempt_id = start(session, stack, invoice=invoice["id"]).headers["Location"].rsplit("/", 1)[1]
    assert pay_card(session, stack, attempt_id, CARD_DECLINED)["status"] == "failed"
    before = wait_for_summary(
        stack, key, client_id, "the payment events", lambda s: s["payment_attempts"] == 1 and s["failed_payments"] == 1
    )

    # Each of payments' events about this client, published again twice as it was (same event id),
    # as an at-least-once relay or a broker redelivery would.
    dispatch = event_dispatcher({"AMQP_URI": stack.amqp_uri})
    for event_type, consumer in (
        ("payment.attempted", "on_payment_attempted"),
        ("payment.failed", "on_payment_failed"),
    ):
        [event] = outbox_events(stack, event_type, client_id)
        queue = Queue(stack.amqp_uri, f"evt-payments-{event_type}--billing.{consumer}")
        # every event billing has taken from this queue so far, then our two copies
        handled = query(stack, "billing", "SELECT count(*) FROM inbox WHERE consumer = %s", f"billing.{consumer}")[0][0]
        for _ in range(2):
            dispatch("payments", event_type, event)
        wait_until(
            lambda: queue.settled_after(handled + 2), timeout=45, what=f"billing to take both copies of {event_type}"
        )
    after = engagement(stack, key, client_id)
    assert (after["payment_attempts"], after["failed_payments"]) == (1, 1)
    assert after["last_failed_at"] == before["last_failed_at"]
    timeline = query(
        stack,
        "billing",
        "SELECT kind, count(*) FROM activities WHERE client_id = %s AND kind LIKE 'payment.%%' GROUP BY kind",
        client_id,
    )
    assert dict(timeline) == {"payment.attempted": 1, "payment.failed": 1}


def test_engagement_is_scoped_to_the_keys_workspace_and_refuses_bad_input(stack, keys):
    made = new_portal_client(stack, "Private Signals", "private-signals@example.com", invoices=1)
    client_id = made["client"]["id"]
    assert admin_get(stack, keys["own"], f"/clients/{client_id}/engagement").status_code == 200
    elsewhere = admin_get(stack, keys["other"], f"/clients/{client_id}/engagement")
    assert elsewhere.status_code == 404 and elsewhere.headers["content-type"] == "application/problem+json"
    assert "Private Signals" not in elsewhere.text
    others = admin_get(stack, keys["other"], "/engagement")
    assert others.status_code == 200 and others.json()["items"] == [] and others.json()["total"] == 0
    assert admin_get(stack, keys["own"], "/clients/no-such-client/engagement").status_code == 404
    for params, field in (({"risk": "extreme"}, "risk"), ({"limit": "lots"}, "limit")):
        bad = admin_get(stack, keys["own"], "/engagement", **params)
        # a query parameter the route cannot take is a 400 naming it (a body field would be a 422)
        assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json", bad.text
        assert field in bad.json()["errors"]
    assert requests.get(f"{stack.url}{API}/engagement", timeout=15).status_code == 401

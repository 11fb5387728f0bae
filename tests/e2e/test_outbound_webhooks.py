"""Outbound webhooks through the running stack: subscriptions made with the admin API, real events
(invoices sent and paid, clients created, a card payment through localstripe) delivered by the
documents service to a real HTTP server this test starts, which checks every signature and timestamp
itself. Retries, the delivery log, replays, pausing, deleting, bad input and another workspace's key."""

from __future__ import annotations

import json
import time
from collections import Counter

import psycopg2
import pytest

from services.documents import webhooks
from tests.conftest import services_rpc
from tests.integration.test_admin_api import Api, _card_payment, portalctl
from tests.integration.test_services import wait_until
from tests.unit.test_webhooks import Receiver

pytestmark = pytest.mark.e2e
SETTLE = 1.5  # seconds: several delivery runs (WEBHOOK_DELIVERY_INTERVAL is 0.2 in the test stack)


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture(scope="module")
def hooks(stack, receiver):
    """Two fresh workspaces with API keys; B subscribes to everything, and must never hear of A."""
    ws_a = portalctl(stack, "workspace", "create", "--name", "Hooks A", "--email", "a@hooks.example.org")["id"]
    ws_b = portalctl(stack, "workspace", "create", "--name", "Hooks B", "--email", "b@hooks.example.org")["id"]
    api_a = Api(stack.url, portalctl(stack, "key", "create", "--workspace", ws_a, "--name", "hooks")["key"])
    api_b = Api(stack.url, portalctl(stack, "key", "create", "--workspace", ws_b, "--name", "hooks")["key"])
    b_sub = subscribe(api_b, receiver, "/b", ["*"])
    yield {"a": api_a, "b": api_b, "ws_a": ws_a, "ws_b": ws_b, "stack": stack, "b_sub": b_sub}
    assert receiver.at("/b") == []  # workspace B did nothing, so B heard nothing: never A's events


def subscribe(api, receiver, path: str, event_types: list[str], **more) -> dict:
    created = api(
        "POST", "/webhooks", {"url": receiver.url(path), "event_types": event_types, **more}, expect=201
    ).json()
    receiver.secrets[path] = created["secret"]
    return created


def deliveries(api, subscription_id: str, **params) -> list[dict]:
    return api("GET", f"/webhooks/{subscription_id}/deliveries", params=params, expect=200).json()


def outbox_marks(stack) -> dict[str, int]:
    """The newest outbox row of billing and payments: events after it are the ones a test caused."""
    marks = {}
    for service in ("billing", "payments"):
        with psycopg2.connect(stack.databases[service]) as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(seq), 0) FROM outbox")
            marks[service] = cur.fetchone()[0]
    return marks


def published_since(stack, marks: dict[str, int], workspace_id: str, patterns: list[str]) -> dict[str, str]:
    """{event id: type} of the events billing and payments published for the workspace since `marks`
    that the patterns ask for: exactly what a subscription made at the marks must receive."""
    found = {}
    for service, mark in marks.items():
        with psycopg2.connect(stack.databases[service]) as conn, conn.cursor() as cur:
            cur.execute("SELECT body FROM outbox WHERE seq > %s ORDER BY seq", (mark,))
            for (body,) in cur.fetchall():
                event = json.loads(body)
                if event["workspace_id"] == workspace_id and any(webhooks.matches(p, event["type"]) for p in patterns):
                    found[event["id"]] = event["type"]
    return found


def new_client(api, name: str) -> dict:
    return api("POST", "/clients", {"name": name}, expect=201).json()


def test_real_events_arrive_once_each_with_a_valid_signature(hooks, receiver):
    api, stack = hooks["a"], hooks["stack"]
    patterns = ["invoice.*", "payment.recorded", "client.created"]
    marks = outbox_marks(stack)
    sub = subscribe(api, receiver, "/a", patterns, description="Our ERP")
    assert sub["secret"].startswith("whsec_") and len(sub["secret"]) > 40
    assert "secret" not in api("GET", f"/webhooks/{sub['id']}", expect=200).json()
    assert [w["id"] for w in api("GET", "/webhooks", expect=200).json()] == [sub["id"]]

    client = api(
        "POST",
        "/clients",
        {"name": "Hooked Ltd", "contacts": [{"email": "ap@hooked.example.org", "portal_access": True}]},
        expect=201,
    ).json()
    invoice = api(
        "POST",
        "/invoices",
        {
            "client_id": client["id"],
            "send": True,
            "lines": [{"description": "Integration work", "quantity": 2, "unit_price": 15000}],
        },
        expect=201,
    ).json()
    api(
        "POST",
        f"/invoices/{invoice['id']}/payments",
        {"amount": 30000, "method": "bank_transfer", "payment_id": "hook-pay-1"},
        expect=201,
    )
    expected = published_since(stack, marks, hooks["ws_a"], patterns)
    assert {"client.created", "invoice.created", "invoice.sent", "invoice.paid", "payment.recorded"} <= set(
        expected.values()
    )

    wait_until(lambda: len(receiver.at("/a")) >= len(expected), timeout=30, what="every event at the receiver")
    time.sleep(SETTLE)  # and nothing more after a few more delivery runs
    got = receiver.at("/a")
    assert all(r["verified"] and r["status"] == 200 for r in got)
    assert Counter(r["headers"]["Portal-Event-Id"] for r in got) == Counter(expected.keys())  # each exactly once
    for request in got:
        event = json.loads(request["body"])
        headers = request["headers"]
        assert (event["id"], event["type"]) == (headers["Portal-Event-Id"], headers["Portal-Event-Type"])
        assert event["workspace_id"] == hooks["ws_a"] and event["type"] == expected[event["id"]]
        assert headers["Content-Type"] == "application/json"
    sent = next(json.loads(r["body"]) for r in got if r["headers"]["Portal-Event-Type"] == "invoice.sent")
    assert (sent["data"]["id"], sent["data"]["client_id"]) == (invoice["id"], client["id"])

    log = deliveries(api, sub["id"])
    assert {d["event_id"] for d in log} == set(expected)
    assert {(d["status"], d["attempts"], d["last_status_code"]) for d in log} == {("succeeded", 1, 200)}
    assert [d["created_at"] for d in log] == sorted((d["created_at"] for d in log), reverse=True)
    assert {r["headers"]["Portal-Webhook-Id"] for r in got} == {d["id"] for d in log}


def test_events_from_the_payments_service_are_delivered_too(hooks, receiver):
    api, stack = hooks["a"], hooks["stack"]
    client = api(
        "POST",
        "/clients",
        {"name": "Card Payer Ltd", "contacts": [{"email": "pay@cardpayer.example.org", "portal_access": True}]},
        expect=201,
    ).json()
    marks = outbox_marks(stack)
    subscribe(api, receiver, "/payments", ["payment.*"])
    with services_rpc(stack, hooks["ws_a"], timeout=20) as rpc:
        attempt = _card_payment(stack, rpc, hooks["ws_a"], client["id"])
    wait_until(
        lambda: (
            {"payment.attempted", "payment.succeeded", "payment.recorded"}
            <= set(published_since(stack, marks, hooks["ws_a"], ["payment.*"]).values())
        ),
        timeout=30,
        what="payments and billing to publish the card payment",
    )
    expected = published_since(stack, marks, hooks["ws_a"], ["payment.*"])
    wait_until(lambda: len(receiver.at("/payments")) >= len(expected), timeout=30, what="the payment events")
    time.sleep(SETTLE)
    got = receiver.at("/payments")
    assert Counter(r["headers"]["Portal-Event-Id"] for r in got) == Counter(expected.keys())
    assert all(r["verified"] for r in got)
    succeeded = next(json.loads(r["body"]) for r in got if r["headers"]["Portal-Event-Type"] == "payment.succeeded")
    assert (succeeded["workspace_id"], succeeded["data"]["payment_id"]) == (hooks["ws_a"], attempt["id"])


def test_a_failing_receiver_is_retried_until_it_answers_and_the_log_shows_each_attempt(hooks, receiver):
    api = hooks["a"]
    receiver.fail_first["/flaky"] = 2
    sub = subscribe(api, receiver, "/flaky", ["client.created"])
    client = new_client(api, "Flaky Receiver Ltd")
    [delivery] = wait_until(
        lambda: [d for d in deliveries(api, sub["id"]) if d["status"] == "succeeded"],
        timeout=30,
        what="the delivery to succeed on the third attempt",
    )
    got = receiver.at("/flaky")
    assert [r["status"] for r in got] == [500, 500, 200] and all(r["verified"] for r in got)
    assert {r["headers"]["Portal-Webhook-Id"] for r in got} == {delivery["id"]}
    assert json.loads(got[-1]["body"])["data"]["id"] == client["id"]
    waits = [b["at"] - a["at"] for a, b in zip(got, got[1:])]
    assert all(wait >= 0.1 for wait in waits), waits  # at least half the 0.2 s base: a backoff, not a loop
    assert (delivery["attempts"], delivery["last_status_code"], delivery["last_error"]) == (3, 200, None)
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert delivery["attempt_log"][0]["error"] == "HTTP 500: try again later"


def test_a_replay_sends_a_delivered_event_again(hooks, receiver):
    api = hooks["a"]
    sub = subscribe(api, receiver, "/replay", ["client.created"])
    new_client(api, "Replayed Ltd")
    [delivery] = wait_until(
        lambda: [d for d in deliveries(api, sub["id"]) if d["status"] == "succeeded"],
        timeout=30,
        what="the first delivery",
    )
    answer = api("POST", f"/webhook-deliveries/{delivery['id']}/replay", expect=202).json()
    assert (answer["id"], answer["status"]) == (delivery["id"], "pending")
    wait_until(lambda: len(receiver.at("/replay")) == 2, timeout=30, what="the replayed request")
    first, again = receiver.at("/replay")
    assert again["verified"] and again["body"] == first["body"]
    assert again["headers"]["Portal-Webhook-Id"] == first["headers"]["Portal-Webhook-Id"] == delivery["id"]
    assert int(again["headers"]["Portal-Timestamp"]) >= int(first["headers"]["Portal-Timestamp"])
    [logged] = wait_until(
        lambda: [d for d in deliveries(api, sub["id"]) if d["attempts"] == 2 and d["status"] == "succeeded"],
        what="the replay in the log",
    )
    assert [a["status_code"] for a in logged["attempt_log"]] == [200, 200]


def test_another_workspace_cannot_see_change_replay_or_delete_a_subscription(hooks, receiver):
    api_a, api_b = hooks["a"], hooks["b"]
    sub = subscribe(api_a, receiver, "/private", ["client.created"])
    new_client(api_a, "Private Ltd")
    [delivery] = wait_until(
        lambda: [d for d in deliveries(api_a, sub["id"]) if d["status"] == "succeeded"],
        timeout=30,
        what="workspace A's delivery",
    )
    before = (api_a("GET", f"/webhooks/{sub['id']}", expect=200).json(), deliveries(api_a, sub["id"]))
    requests_before = len(receiver.at("/private"))

    assert sub["id"] not in [w["id"] for w in api_b("GET", "/webhooks", expect=200).json()]
    for method, path, body in (
        ("GET", f"/webhooks/{sub['id']}", None),
        ("PATCH", f"/webhooks/{sub['id']}", {"url": "https://attacker.example.org/steal"}),
        ("PATCH", f"/webhooks/{sub['id']}", {"active": False}),
        ("DELETE", f"/webhooks/{sub['id']}", None),
        ("GET", f"/webhooks/{sub['id']}/deliveries", None),
        ("POST", f"/webhook-deliveries/{delivery['id']}/replay", None),
    ):
        response = api_b(method, path, body, expect=404)
        assert response.headers["content-type"] == "application/problem+json"
        assert "attacker" not in response.text and receiver.url("/private") not in response.text
    time.sleep(SETTLE)
    assert (api_a("GET", f"/webhooks/{sub['id']}", expect=200).json(), deliveries(api_a, sub["id"])) == before
    assert len(receiver.at("/private")) == requests_before  # the refused replay sent nothing


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "ftp://hooks.example.org/x", "event_types": ["*"]}, "url"),
        ({"url": "https://", "event_types": ["*"]}, "url"),
        ({"url": "https://hooks.example.org/x", "event_types": ["invoice.exploded"]}, "event_types.0"),
        ({"url": "https://hooks.example.org/x", "event_types": ["invoice.paid", "nothing.*"]}, "event_types.1"),
        ({"url": "https://hooks.example.org/x", "event_types": []}, "event_types"),
        ({"url": "https://hooks.example.org/x"}, "event_types"),
        ({"url": "https://hooks.example.org/x", "event_types": ["*"], "secret": "short"}, "secret"),
        ({"url": "https://hooks.example.org/x", "event_types": ["*"], "colour": "red"}, "colour"),
    ],
)
def test_invalid_subscriptions_are_422_with_the_field_and_change_nothing(hooks, body, field):
    api = hooks["a"]
    before = api("GET", "/webhooks", expect=200).json()
    response = api("POST", "/webhooks", body, expect=422)
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.json()["errors"], response.json()
    assert api("GET", "/webhooks", expect=200).json() == before


@pytest.fixture(scope="module")
def target(hooks, receiver):
    return subscribe(hooks["a"], receiver, "/target", ["quote.*"])


@pytest.mark.parametrize(
    "body, field",
    [
        ({"url": "mailto:ap@example.org"}, "url"),
        ({"url": None}, "url"),
        ({"event_types": ["quote.sent", "quote.lost"]}, "event_types.1"),
        ({"event_types": []}, "event_types"),
        ({"active": None}, "active"),
        ({"secret": "a-new-secret-of-enough-length"}, "secret"),  # not changeable: delete and subscribe again
    ],
)
def test_invalid_changes_are_422_and_change_nothing(hooks, target, body, field):
    api = hooks["a"]
    before = api("GET", f"/webhooks/{target['id']}", expect=200).json()
    response = api("PATCH", f"/webhooks/{target['id']}", body, expect=422)
    assert field in response.json()["errors"], response.json()
    assert api("GET", f"/webhooks/{target['id']}", expect=200).json() == before


def test_a_paused_subscription_gets_nothing_and_a_deleted_one_is_gone(hooks, receiver):
    api = hooks["a"]
    witness = subscribe(api, receiver, "/witness", ["client.created"])
    paused = subscribe(api, receiver, "/paused", ["client.created"])
    assert api("PATCH", f"/webhooks/{paused['id']}", {"active": False}, expect=200).json()["active"] is False
    first = new_client(api, "While Paused Ltd")
    wait_until(
        lambda: any(json.loads(r["body"])["data"]["id"] == first["id"] for r in receiver.at("/witness")),
        timeout=30,
        what="the witness to get the event",
    )
    assert deliveries(api, paused["id"]) == [] and receiver.at("/paused") == []  # queued in the same transaction

    assert api("DELETE", f"/webhooks/{paused['id']}", expect=204).text == ""
    api("GET", f"/webhooks/{paused['id']}", expect=404)
    api("GET", f"/webhooks/{paused['id']}/deliveries", expect=404)
    api("DELETE", f"/webhooks/{paused['id']}", expect=404)
    assert paused["id"] not in [w["id"] for w in api("GET", "/webhooks", expect=200).json()]
    second = new_client(api, "After Delete Ltd")
    wait_until(
        lambda: any(json.loads(r["body"])["data"]["id"] == second["id"] for r in receiver.at("/witness")),
        timeout=30,
        what="the witness to get the second event",
    )
    assert receiver.at("/paused") == []
    assert witness["id"] in [w["id"] for w in api("GET", "/webhooks", expect=200).json()]


def test_the_openapi_document_describes_the_webhook_bodies(hooks):
    document = hooks["a"]("GET", "/openapi.json", expect=200).json()
    paths = document["paths"]
    assert set(paths["/api/admin/v1/webhooks/{id}"]) == {"get", "patch", "delete"}
    assert paths["/api/admin/v1/webhooks"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/WebhookIn"
    }
    assert {"url", "event_types", "secret"} <= set(document["components"]["schemas"]["WebhookIn"]["properties"])
    assert "202" in paths["/api/admin/v1/webhook-deliveries/{id}/replay"]["post"]["responses"]

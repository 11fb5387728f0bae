"""docs/events.asyncapi.yaml is the public contract of the events the services publish: it must be a
well-formed AsyncAPI document, document every event type the code publishes (and nothing it does
not), and `chassis.event_contract.validate` must tell good events from bad ones. The integration and
e2e tiers check every event they produce against it (tests/event_contract_check.py); here the demo
seed's events are checked without a broker."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from jsonschema import Draft7Validator

from chassis import event_contract
from chassis.clock import utcnow
from chassis.db import UnitOfWork
from chassis.events import envelope

ROOT = Path(__file__).resolve().parents[2]

# Publish calls whose event type is not a string literal at the call: where they are, and every type
# they can produce. A new computed call site fails the scan below until it is listed here.
COMPUTED = {
    ("services/billing/handlers/workspaces.py", "_publish_workspace"): {"workspace.created", "workspace.updated"},
    # f"{source}.applied"
    ("services/billing/handlers/balances.py", "_use_balance"): {"credit.applied", "retainer.applied"},
}


@pytest.fixture(scope="module")
def contract():
    return event_contract.load()


@pytest.fixture(scope="module")
def document():
    return yaml.safe_load(event_contract.DOCUMENT.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- the document itself


def _refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(document, ref):
    assert ref.startswith("#/"), f"only local refs are used: {ref}"
    node = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"dangling $ref {ref}"
        node = node[part]
    return node


def test_document_is_asyncapi_3_with_amqp_exchanges_as_nameko_declares_them(document):
    assert document["asyncapi"].startswith("3.")
    assert document["defaultContentType"] == "application/json"
    assert {s["protocol"] for s in document["servers"].values()} == {"amqp"}
    for ref in _refs(document):
        _resolve(document, ref)  # every $ref points at something
    exchanges = {}
    for name, channel in document["channels"].items():
        amqp = _resolve(document, channel["bindings"]["$ref"])["amqp"]
        exchange = amqp["exchange"]
        # nameko.standalone.events.get_event_exchange: topic, durable, not auto-delete
        assert (exchange["type"], exchange["durable"], exchange["autoDelete"]) == ("topic", True, False), name
        assert amqp["is"] == "routingKey"
        exchanges[exchange["name"]] = channel
    assert set(exchanges) == {"auth.events", "billing.events", "payments.events", "documents.events"}
    assert {op["action"] for op in document["operations"].values()} == {"send"}
    assert {_resolve(document, op["channel"]["$ref"])["title"] for op in document["operations"].values()} == set(
        exchanges
    )


def test_every_message_has_an_envelope_and_a_data_schema_of_its_own_name(document):
    messages, schemas = document["components"]["messages"], document["components"]["schemas"]
    listed = []
    for channel in document["channels"].values():
        names = [ref["$ref"].rsplit("/", 1)[-1] for ref in channel["messages"].values()]
        listed += names
        # the routing-key parameter lists exactly the channel's event types
        assert sorted(channel["parameters"]["eventType"]["enum"]) == sorted(messages[n]["name"] for n in names)
    assert sorted(listed) == sorted(messages), "every message is on exactly one channel"
    for name, message in messages.items():
        event_type, version = event_contract.pinned(message)
        assert message["name"] == event_type, name
        assert name == "".join(p.capitalize() for p in re.split(r"[._]", event_type)) + f"V{version}"
        envelope_ref, pinned = message["payload"]["allOf"]
        assert envelope_ref == {"$ref": "#/components/schemas/Envelope"}
        assert pinned["properties"]["data"] == {"$ref": f"#/components/schemas/{name}"}
        assert "Published by " in message["summary"], f"{name} says who publishes it and when"
        Draft7Validator.check_schema(schemas[name])
    Draft7Validator.check_schema(schemas["Envelope"])


# ---------------------------------------------------------------- the code publishes what is documented


def _published_in_code() -> dict[tuple[str, int], set[str]]:
    """(type, version) -> the services whose code publishes it, from every `.publish(type, ...)` call."""
    found: dict[tuple[str, int], set[str]] = {}
    unexplained = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        service = rel.split("/")[1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            for call in ast.walk(function):
                if not (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ("publish", "publish_and_commit")
                    and call.args
                ):
                    continue
                version = 1
                if len(call.args) > 3 and isinstance(call.args[3], ast.Constant):
                    version = call.args[3].value
                for kw in call.keywords:
                    if kw.arg == "version" and isinstance(kw.value, ast.Constant):
                        version = kw.value.value
                first = call.args[0]
                branches = [first.body, first.orelse] if isinstance(first, ast.IfExp) else [first]
                if all(isinstance(b, ast.Constant) and isinstance(b.value, str) for b in branches):
                    types = {b.value for b in branches}
                elif (rel, function.name) in COMPUTED:
                    types = COMPUTED[(rel, function.name)]
                else:
                    unexplained.append(f"{rel}:{call.lineno} in {function.name}")
                    continue
                for event_type in types:
                    found.setdefault((event_type, version), set()).add(service)
    assert not unexplained, (
        f"publish calls with a computed event type: list their types in COMPUTED and document them: {unexplained}"
    )
    return found


def test_every_event_type_published_in_the_code_is_documented_for_its_service(contract):
    published = _published_in_code()
    assert len(published) >= 40  # the scan really finds the calls
    for key in [
        ("invoice.paid", 1),
        ("workspace.updated", 1),
        ("invoice.unarchived", 1),
        ("retainer.applied", 1),
        ("auth.signed_in", 1),
        ("payment.succeeded", 1),
        ("document.downloaded", 1),
    ]:
        assert key in published, key
    undocumented = sorted(f"{t} v{v}" for t, v in set(published) - contract.documented())
    assert not undocumented, f"published but not in {event_contract.DOCUMENT.name}: {undocumented}"
    for key, services in published.items():
        assert services == {contract.messages[key].service}, f"{key} is published by {services}"


def test_nothing_is_documented_that_no_code_publishes(contract):
    stale = sorted(f"{t} v{v}" for t, v in contract.documented() - set(_published_in_code()))
    assert not stale, f"documented but never published: {stale}"


# ---------------------------------------------------------------- validate()


def _invoice_paid(**data) -> dict:
    return envelope(
        "invoice.paid",
        "8f7c1f0e-0000-4000-8000-000000000001",
        {
            "payment_id": "pay-1",
            "invoice_id": "inv-1",
            "number": "INV-2026-0001",
            "client_id": "cli-1",
            "amount": 12000,
            "currency": "USD",
            "status": "paid",
            "balance": 0,
            **data,
        },
    )


def test_a_valid_event_passes(contract):
    assert contract.validate(_invoice_paid()) == []
    # data is open: a field added later within the same version does not break consumers
    assert contract.validate(_invoice_paid(note="new field")) == []
    # paid by credit or retainer: no payment_id
    event = _invoice_paid()
    del event["data"]["payment_id"]
    assert event_contract.validate(event) == []


def test_an_undocumented_type_or_version_fails(contract):
    assert contract.validate(envelope("invoice.teleported", "ws-1", {})) == [
        "undocumented event type/version 'invoice.teleported' v1: add it to events.asyncapi.yaml"
    ]
    errors = contract.validate({**_invoice_paid(), "version": 2})
    assert len(errors) == 1 and "'invoice.paid' v2" in errors[0]
    assert contract.validate("not an event") == ["not an object: str"]


def test_a_malformed_event_fails_with_each_problem_named(contract):
    event = _invoice_paid(amount="120.00", currency="usd", status="settled")
    del event["data"]["balance"]
    event["occurred_at"] = "2026-05-01 10:00"  # no offset, not ISO 8601 with a zone
    event["extra"] = True
    errors = contract.validate(event)
    assert "(event): Additional properties are not allowed ('extra' was unexpected)" in errors
    assert "data: 'balance' is a required property" in errors
    assert "data/amount: '120.00' is not of type 'integer'" in errors
    assert "data/currency: 'usd' does not match '^[A-Z]{3}$'" in errors
    assert any(e.startswith("data/status: 'settled' is not one of") for e in errors)
    assert any(e.startswith("occurred_at: '2026-05-01 10:00' does not match") for e in errors)
    assert len(errors) == 6


def test_nullable_fields_are_nullable_only_where_the_code_makes_them_null(contract):
    no_card = envelope(
        "payment.failed",
        "ws-1",
        {
            "payment_id": None,
            "client_id": "cli-1",
            "amount": 5000,
            "currency": "EUR",
            "allocations": [{"invoice_id": "inv-1", "amount": 5000}],
            "off_session": True,
            "reason": "There is no saved card to pay automatically.",
            "code": "no_card",
            "pay_url": "http://x/pay",
        },
    )
    assert contract.validate(no_card) == []
    attempted = envelope(
        "payment.attempted",
        "ws-1",
        {
            k: no_card["data"][k]
            for k in ("payment_id", "client_id", "amount", "currency", "allocations", "off_session")
        },
    )
    assert contract.validate(attempted) == ["data/payment_id: None is not of type 'string'"]


# ---------------------------------------------------------------- real events, without a broker


def test_every_event_of_the_demo_seed_and_the_reminder_sweep_matches_the_contract(sqlite_engine, contract):
    """The seed writes a whole business through billing's own handlers (invoices in every state,
    payments, credit, retainer, quotes, comments, recurring); the sweep adds reminders."""
    from services.billing import handlers
    from services.billing.seed import seed

    engine = sqlite_engine("billing")
    assert seed(engine)
    with UnitOfWork(engine) as uow:
        handlers.run_reminders(uow, utcnow())  # commits per reminder
    with engine.connect() as conn:
        bodies = conn.execute(sa.text("SELECT body FROM outbox ORDER BY seq")).scalars().all()
    events = [json.loads(b) for b in bodies]
    problems = {(e["type"], e["version"], error) for e in events for error in contract.validate(e)}
    assert not problems, sorted(problems)
    seen = {e["type"] for e in events}
    assert {
        "workspace.created",
        "client.created",
        "contact.created",
        "invoice.created",
        "invoice.sent",
        "invoice.viewed",
        "invoice.voided",
        "invoice.archived",
        "invoice.payment_applied",
        "invoice.paid",
        "payment.recorded",
        "credit.issued",
        "credit.applied",
        "comment.added",
        "quote.sent",
        "quote.accepted",
        "quote.rejected",
        "recurring.created",
        "invoice.overdue",
    } <= seen, seen

"""An event consumer's inbox on PostgreSQL (chassis.events.consume_once), as a service's own role: the
inbox row claims the event in the statement that checks it; a duplicate, also one that arrives while
the first is still being handled, runs nothing; a handler that fails leaves the event unclaimed.
Several events handled together (consume_together) are claimed and committed with one another: those
seen before, or given twice, are left out; a failure leaves every one of them unclaimed."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from chassis import events
from chassis.db import make_engine, upgrade
from chassis.events import INBOX, consume_once, consume_together
from tests.conftest import ROOT, RUN_ID, databases_with_roles
from tests.integration.round_trips import RoundTrips

pytestmark = pytest.mark.integration

MIGRATIONS = ROOT / "services" / "documents" / "migrations"


@pytest.fixture(scope="module")
def documents(postgres_admin_url):
    with databases_with_roles(postgres_admin_url, f"portal_{RUN_ID}_inbox", ("documents",)) as urls:
        upgrade(urls["service"]["documents"], MIGRATIONS)
        yield SimpleNamespace(url=urls["service"]["documents"])


@pytest.fixture
def engine(documents):
    engine = make_engine(documents.url, pool_size=4)
    yield engine
    engine.dispose()


def inbox_rows(engine, event_id: str) -> list[str]:
    with engine.connect() as conn:
        return [row.consumer for row in conn.execute(sa.select(INBOX.c.consumer).where(INBOX.c.event_id == event_id))]


def test_an_event_is_claimed_by_one_statement_and_handled_once_per_consumer(engine):
    handled = []
    event = {"id": "e-once", "type": "x", "data": {}}
    consume_once(engine, "warm.up", {"id": "e-warm", "type": "x", "data": {}}, lambda conn, e: None)
    trips = RoundTrips()
    try:
        assert consume_once(engine, "svc.h", event, lambda conn, e: handled.append("svc")) is True
    finally:
        trips.remove()
    claims = [sql for sql in trips.statements if "inbox" in sql.lower()]
    # the claim, prepared once per connection (the warm-up's connection): an insert that skips a duplicate
    assert claims == ["EXECUTE inbox_claim(%(consumer)s, %(event_id)s, %(processed_at)s)"], trips.statements
    assert "ON CONFLICT (consumer, event_id) DO NOTHING" in str(events._CLAIM.statement)
    assert not [sql for sql in trips.statements if sql.lstrip().upper().startswith("SELECT") and "inbox" in sql]
    assert consume_once(engine, "svc.h", event, lambda conn, e: handled.append("again")) is False
    assert consume_once(engine, "other.h", event, lambda conn, e: handled.append("other")) is True
    assert handled == ["svc", "other"] and sorted(inbox_rows(engine, "e-once")) == ["other.h", "svc.h"]


def test_a_failing_handler_leaves_the_event_unclaimed_for_its_retry(engine):
    event = {"id": "e-retry", "type": "x", "data": {}}

    def fails(conn, e):
        raise RuntimeError("flaky")

    with pytest.raises(RuntimeError):
        consume_once(engine, "svc.h", event, fails)
    assert inbox_rows(engine, "e-retry") == []
    handled = []
    assert consume_once(engine, "svc.h", event, lambda conn, e: handled.append(e["id"])) is True
    assert handled == ["e-retry"] and inbox_rows(engine, "e-retry") == ["svc.h"]


@pytest.mark.parametrize("first_fails", [False, True])
def test_a_duplicate_arriving_while_the_first_is_handled_waits_for_it(engine, first_fails):
    """A redelivery (or a replica) takes the event while the first delivery is still in its handler:
    it waits for that transaction, then runs nothing if it committed, or the handler if it failed."""
    event = {"id": f"e-race-{first_fails}", "type": "x", "data": {}}
    inside, release = threading.Event(), threading.Event()
    handled, outcomes = [], {}

    def first_handler(conn, e):
        inside.set()
        assert release.wait(10)
        if first_fails:
            raise RuntimeError("the first delivery fails")
        handled.append("first")

    def first():
        try:
            outcomes["first"] = consume_once(engine, "svc.h", event, first_handler)
        except RuntimeError:
            outcomes["first"] = "failed"

    def second():
        outcomes["second"] = consume_once(engine, "svc.h", event, lambda conn, e: handled.append("second"))

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert inside.wait(10)
    threads[1].start()
    threads[1].join(0.5)
    assert threads[1].is_alive()  # waiting on the first delivery's claim, not handling it
    release.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    if first_fails:
        assert outcomes == {"first": "failed", "second": True} and handled == ["second"]
    else:
        assert outcomes == {"first": True, "second": False} and handled == ["first"]
    assert inbox_rows(engine, event["id"]) == ["svc.h"]


def test_events_handled_together_leave_out_those_seen_before_or_given_twice(engine):
    consume_once(engine, "svc.h", {"id": "e-seen", "type": "x", "data": {}}, lambda conn, e: None)
    batch = [{"id": event_id, "type": "x", "data": {}} for event_id in ("e-t1", "e-seen", "e-t2", "e-t1")]
    handled, trips = [], RoundTrips()
    try:
        answers = consume_together(engine, "svc.h", batch, lambda conn, fresh: handled.append([e["id"] for e in fresh]))
    finally:
        trips.remove()
    assert answers == [True, False, True, False]
    assert handled == [["e-t1", "e-t2"]]  # one call, in one transaction with their inbox rows
    claims = [sql for sql in trips.statements if "inbox" in sql.lower() and not sql.startswith("PREPARE")]
    assert len(claims) == 1 and "inbox_claim_several" in claims[0], trips.statements  # one statement for all
    assert inbox_rows(engine, "e-t1") == ["svc.h"] and inbox_rows(engine, "e-t2") == ["svc.h"]
    assert consume_together(engine, "svc.h", batch[:2], lambda conn, fresh: handled.append("again")) == [False, False]
    assert handled == [["e-t1", "e-t2"]]


def test_events_handled_together_that_fail_are_all_left_unclaimed(engine):
    batch = [{"id": event_id, "type": "x", "data": {}} for event_id in ("e-f1", "e-f2")]

    def fails(conn, fresh):
        raise RuntimeError("the second of them is refused")

    with pytest.raises(RuntimeError):
        consume_together(engine, "svc.h", batch, fails)
    assert inbox_rows(engine, "e-f1") == [] and inbox_rows(engine, "e-f2") == []

"""Group commit for an event consumer (chassis/group_commit.py, consumes(together_by=...)) on an
embedded database: a burst of one client's events that arrive while one of them is being handled is
handled in the next transaction, each exactly once, while other clients' run beside it; an event
alone is handled at once in its own; a batch that fails is handled event by event, with each
consumer's own retries."""

import json
import weakref

import eventlet
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from chassis.clock import utcnow
from chassis.errors import Invalid
from chassis.events import DEAD, INBOX, OUTBOX
from chassis.group_commit import GroupCommit
from chassis.logs import request_id_var
from chassis.nameko_ext import DatabaseHandle, consumes
from services.billing.service import _payer


class Payments:
    """A consumer like billing's of payment.succeeded: each event moves a client's money, and the
    client's summary is refreshed once per transaction (work left for its commit)."""

    name = "svc"
    clock = staticmethod(utcnow)

    def __init__(self, engine):
        self.db = DatabaseHandle(engine)
        self.gate = eventlet.event.Event()  # the first event's handler waits here while the burst arrives
        self.handled, self.refuse = [], set()
        self.transactions = []  # the events of each transaction that committed, in order
        self._open = weakref.WeakKeyDictionary()  # the events of each transaction under way

    @consumes("payments", "payment.succeeded", max_attempts=2, base_delay=0, together_by=lambda e: e["data"]["client"])
    def on_paid(self, uow, now, event):
        if event["id"] == "first":
            self.gate.wait()
        if event["id"] in self.refuse:
            raise Invalid("no such invoice")
        self.handled.append(event["id"])
        self._open.setdefault(uow, []).append(event["id"])
        uow.publish("payment.recorded", event["workspace_id"], {"event": event["id"]})
        uow.before_commit(("summary", event["workspace_id"]), self._refresh)

    def _refresh(self, uow):  # once per transaction, however many events it handled
        self.transactions.append(self._open.pop(uow))


def paid(event_id, workspace="ws1", client="c1"):
    return {"id": event_id, "type": "payment.succeeded", "workspace_id": workspace, "data": {"client": client}}


def deliver(service, events, request_ids=None):
    """Each event to its own worker (green thread), as nameko delivers a burst; the first one's
    handler is held until all of them have arrived. Answers each worker's result."""

    def worker(event, request_id):
        request_id_var.set(request_id)
        return service.on_paid(event)

    workers = [eventlet.spawn(worker, event, (request_ids or {}).get(event["id"])) for event in events]
    eventlet.sleep(0.05)  # every worker has its event: the first is in its handler, the rest wait
    service.gate.send()
    return [w.wait() for w in workers]


def batch_sizes():
    """(transactions, events) the consumer's portal_event_batch_size histogram has counted so far."""
    labels = {"service": "svc", "consumer": "svc.on_paid"}
    return [REGISTRY.get_sample_value(f"portal_event_batch_size_{part}", labels) or 0 for part in ("count", "sum")]


def count(engine, table):
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_a_burst_that_came_while_one_event_was_handled_is_handled_in_one_transaction(sqlite_engine):
    engine = sqlite_engine("billing")
    service = Payments(engine)
    before = batch_sizes()
    assert deliver(service, [paid("first"), *(paid(f"e{n}") for n in range(5))]) == [True] * 6
    assert service.handled == ["first", "e0", "e1", "e2", "e3", "e4"]
    assert service.transactions == [["first"], ["e0", "e1", "e2", "e3", "e4"]]  # two commits, two refreshes
    assert [now - then for now, then in zip(batch_sizes(), before)] == [2, 6]  # what ops see: 2 batches, 6 events
    assert count(engine, INBOX) == 6 and count(engine, OUTBOX) == 6 and count(engine, DEAD) == 0


def test_an_event_alone_is_handled_at_once_in_its_own_transaction(sqlite_engine):
    engine = sqlite_engine("billing")
    service = Payments(engine)
    service.gate.send()
    assert service.on_paid(paid("first")) is True
    assert service.on_paid(paid("second")) is True
    assert service.transactions == [["first"], ["second"]] and count(engine, INBOX) == 2


def test_in_a_burst_an_event_seen_before_or_given_twice_is_handled_once(sqlite_engine):
    engine = sqlite_engine("billing")
    service = Payments(engine)
    service.gate.send()
    service.on_paid(paid("old"))
    service.gate = eventlet.event.Event()
    answers = deliver(service, [paid("first"), paid("new"), paid("old"), paid("new")])
    assert answers == [True, True, False, False]
    assert service.handled == ["old", "first", "new"]
    assert count(engine, INBOX) == 3 and count(engine, OUTBOX) == 3


def test_a_refused_event_fails_its_batch_and_the_others_are_then_handled_alone(sqlite_engine):
    engine = sqlite_engine("billing")
    service = Payments(engine)
    service.refuse = {"e1"}
    assert deliver(service, [paid("first"), paid("e0"), paid("e1"), paid("e2")]) == [True, True, False, True]
    # the batch (e0, then e1 refused) rolled back; then each alone: e1 parked at once, as alone
    assert sorted(service.transactions) == [["e0"], ["e2"], ["first"]]
    with engine.connect() as conn:
        assert conn.execute(sa.select(DEAD.c.event_id)).scalars().all() == ["e1"]  # parked, as alone
        assert sorted(conn.execute(sa.select(INBOX.c.event_id)).scalars()) == ["e0", "e2", "first"]
    assert count(engine, OUTBOX) == 3  # nothing of the failed batch was written


def test_each_event_of_a_batch_keeps_its_own_request_id(sqlite_engine):
    engine = sqlite_engine("billing")
    service = Payments(engine)
    ids = {"first": "req-first", "e0": "req-0", "e1": "req-1"}
    deliver(service, [paid(event_id) for event_id in ids], ids)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(OUTBOX.c.body, OUTBOX.c.request_id)).all()
    assert {json.loads(body)["data"]["event"]: request_id for body, request_id in rows} == ids


def test_events_of_other_clients_are_handled_beside_them_not_with_them(sqlite_engine):
    engine = sqlite_engine("billing")
    service = Payments(engine)
    burst = [paid("first"), paid("a1"), paid("other", client="c2"), paid("a2")]
    assert deliver(service, burst) == [True] * 4
    assert sorted(service.transactions) == [["a1", "a2"], ["first"], ["other"]]


def test_events_of_other_workspaces_are_never_in_one_transaction(sqlite_engine):
    engine = sqlite_engine("billing")
    service = Payments(engine)
    burst = [paid("first"), paid("a1"), paid("b1", "ws2"), paid("a2"), paid("b2", "ws2")]
    assert deliver(service, burst) == [True] * 5
    # b1 came while nothing of ws2 ran: at once, alone; b2 came while b1 ran, the only one of ws2 to
    # wait for it. a1 and a2 came while "first" ran, and were handled together after it.
    assert sorted(service.transactions) == [["a1", "a2"], ["b1"], ["b2"], ["first"]]
    assert count(engine, INBOX) == 5


def test_a_batch_that_fails_answers_every_waiting_worker():
    group = GroupCommit()
    gate, answers = eventlet.event.Event(), {}

    def run(batch):
        if batch[0].event["id"] == "first":
            gate.wait()
            return [True]
        raise RuntimeError("the database went away")

    def worker(event_id):
        answers[event_id] = group.handle("key", {"id": event_id}, run)

    workers = [eventlet.spawn(worker, event_id) for event_id in ("first", "a", "b")]
    eventlet.sleep(0.01)
    gate.send()
    for w in workers:
        w.wait()
    assert answers == {"first": True, "a": None, "b": None}  # None: each is handled alone
    with pytest.raises(RuntimeError):  # alone, its own failure is its own
        group.handle("key", {"id": "c"}, run)
    assert group.handle("key", {"id": "first"}, lambda batch: [True]) is True  # and the key is free again


def test_a_worker_killed_while_it_waits_leaves_the_key_to_the_others():
    group, workers = GroupCommit(), {}

    def run(batch):
        if batch[0].event["id"] == "first":  # the rest come while this transaction runs
            workers.update({name: eventlet.spawn(group.handle, "key", {"id": name}, run) for name in "abcd"})
            eventlet.sleep(0.01)
            workers["a"].kill()  # gone while it waited in the queue
        return [True] * len(batch)

    assert group.handle("key", {"id": "first"}, run) is True  # b was told to lead the next transaction
    workers["b"].kill()  # and is gone before it could: c leads, with d
    with eventlet.Timeout(5):  # not left waiting for a lead that a dead worker was given
        assert (workers["c"].wait(), workers["d"].wait()) == (True, True)
    assert group.handle("key", {"id": "e"}, lambda batch: [len(batch) == 1]) is True  # the key is free


def test_billings_payments_are_handled_together_by_client_and_one_naming_none_alone():
    assert _payer({"id": "e1", "data": {"client_id": "c-1"}}) == "c-1"
    assert _payer({"id": "e2", "data": {"client_id": None}}) == "e2"
    assert _payer({"id": "e3", "data": "not an object"}) == "e3"

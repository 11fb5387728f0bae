"""Outbox, relay and idempotent consumers on an embedded database, with a fake dispatcher."""

import json
from types import SimpleNamespace

import eventlet
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from chassis import nameko_ext
from chassis.clock import utcnow
from chassis.db import UnitOfWork, joined
from chassis.errors import Conflict, Invalid, NotFound, Unavailable
from chassis.events import (
    DEAD,
    INBOX,
    OUTBOX,
    consume_once,
    list_dead_letters,
    on_outbox_commit,
    relay_outbox,
    wake_relays,
)
from chassis.nameko_ext import (
    DatabaseHandle,
    EventConsumer,
    HandedBack,
    OutboxRelayTimer,
    ScopeHandle,
    ServiceBase,
    consumes,
)
from chassis.rpc import SERVICE_STOPPING
from services.billing.handlers.common import record_activity
from services.billing.tables import activities


def publish_two(engine):
    with UnitOfWork(engine) as uow:
        uow.publish("thing.created", "ws1", {"n": 1})
        uow.publish("thing.created", "ws1", {"n": 2})
        uow.commit()


def test_a_transactions_events_reach_the_outbox_in_one_statement_in_order_as_it_commits(sqlite_engine):
    engine = sqlite_engine("payments")
    inserts = []
    sa.event.listen(
        engine, "before_cursor_execute", lambda c, cur, sql, *a: inserts.append(sql) if "outbox" in sql else None
    )
    with UnitOfWork(engine) as uow:
        uow.publish("thing.created", "ws1", {"n": 1})
        uow.publish("thing.changed", "ws1", {"n": 2})
        uow.publish("thing.paid", "ws1", {"n": 3})
        assert inserts == []  # not yet: with the transaction's other events, as it commits
        uow.commit()
    assert len(inserts) == 1
    with engine.begin() as conn, joined(conn) as joined_uow:  # an event consumer's, committed by its owner
        joined_uow.publish("thing.seen", "ws1", {"n": 4})
    with engine.connect() as conn:
        rows = conn.execute(sa.select(OUTBOX.c.event_type, OUTBOX.c.body).order_by(OUTBOX.c.seq)).all()
    assert [(kind, json.loads(body)["data"]["n"]) for kind, body in rows] == [
        ("thing.created", 1),
        ("thing.changed", 2),
        ("thing.paid", 3),
        ("thing.seen", 4),
    ]


def test_events_roll_back_with_the_change(sqlite_engine):
    engine = sqlite_engine("payments")
    with UnitOfWork(engine) as uow:
        uow.publish("thing.created", "ws1", {"n": 1})  # no commit
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == 0


def test_relay_publishes_in_order_with_one_envelope_and_marks_rows(sqlite_engine):
    engine = sqlite_engine("payments")
    publish_two(engine)
    sent = []
    assert relay_outbox(engine, lambda batch: sent.extend((kind, body) for kind, body, _ in batch)) == 2
    assert [body["data"]["n"] for _, body in sent] == [1, 2]
    assert set(sent[0][1]) == {"id", "type", "version", "occurred_at", "workspace_id", "data"}
    assert relay_outbox(engine, sent.extend) == 0  # nothing published twice
    assert len(sent) == 2


def test_a_tick_that_finds_the_relay_still_at_work_leaves_the_rows_to_it(sqlite_engine):
    engine = sqlite_engine("payments")
    publish_two(engine)
    overlapping = []

    def slow_publish(batch):  # the next timer tick comes while this batch waits for its confirms
        overlapping.append(relay_outbox(engine, lambda later: pytest.fail("published twice at once")))

    assert relay_outbox(engine, slow_publish) == 2
    assert overlapping == [0]
    assert relay_outbox(engine, lambda batch: None) == 0  # all marked by the first


def test_a_failed_publish_keeps_the_events_for_the_next_run(sqlite_engine):
    engine = sqlite_engine("payments")
    publish_two(engine)

    def broker_down(batch):
        raise ConnectionError("broker down")

    try:
        relay_outbox(engine, broker_down)
    except ConnectionError:
        pass
    sent = []
    assert relay_outbox(engine, sent.extend) == 2


def test_a_batch_cut_short_is_published_again_whole(sqlite_engine):
    """The batch's marks commit together: a publish failing halfway leaves every row of the batch
    unmarked, and the next run sends them all again (consumers drop the repeat by event id)."""
    engine = sqlite_engine("payments")
    publish_two(engine)
    first_try = []

    def fails_on_the_second(batch):
        first_try.append(batch[0][1]["id"])  # sent; the broker goes before the second is
        raise ConnectionError("broker gone")

    with pytest.raises(ConnectionError):
        relay_outbox(engine, fails_on_the_second)
    sent = []
    assert relay_outbox(engine, lambda batch: sent.extend(body["id"] for _, body, _ in batch)) == 2
    assert sent[0] == first_try[0]  # sent twice, with its one id
    with engine.connect() as conn:
        unmarked = conn.execute(sa.select(sa.func.count()).where(OUTBOX.c.published_at.is_(None))).scalar_one()
    assert unmarked == 0


def test_consume_once_ignores_a_duplicate_event(sqlite_engine):
    engine = sqlite_engine("payments")
    seen = []
    event = {"id": "e1", "type": "x", "data": {}}
    assert consume_once(engine, "svc.h", event, lambda conn, e: seen.append(e["id"])) is True
    assert consume_once(engine, "svc.h", event, lambda conn, e: seen.append(e["id"])) is False
    assert consume_once(engine, "other.h", event, lambda conn, e: seen.append("other")) is True
    assert seen == ["e1", "other"]


class FakeService:
    name = "svc"
    clock = staticmethod(utcnow)

    def __init__(self, engine, failures):
        self.db = DatabaseHandle(engine)
        self.failures = failures
        self.calls = 0

    @consumes("billing", "thing.created", max_attempts=3, base_delay=0)
    def on_thing(self, conn, now, event):
        self.calls += 1
        if self.calls <= self.failures:
            raise RuntimeError("flaky")


def test_a_failing_handler_is_retried_then_succeeds_once(sqlite_engine):
    engine = sqlite_engine("payments")
    service = FakeService(engine, failures=2)
    service.on_thing({"id": "e1", "type": "thing.created", "data": {}})
    assert service.calls == 3
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(INBOX)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(DEAD)).scalar_one() == 0


def _leave(uow, key, ran):
    """Work for the end of the transaction, which leaves a trace in it (an outbox row)."""
    uow.before_commit(key, lambda unit: (ran.append(key), unit.publish("thing.summed", "ws1", {"key": key})))


def test_work_left_for_the_commit_runs_once_per_key_in_key_order_and_a_rollback_forgets_it(sqlite_engine):
    engine = sqlite_engine("payments")
    ran = []
    with UnitOfWork(engine) as uow:
        for key in ("b", "a", "b"):
            _leave(uow, key, ran)
        assert ran == []
        uow.commit()
        assert ran == ["a", "b"]
        _leave(uow, "c", ran)
        uow.rollback()
        uow.commit()
        _leave(uow, "d", ran)  # never committed
    assert ran == ["a", "b"]
    with engine.connect() as conn:
        bodies = conn.execute(sa.select(OUTBOX.c.body).order_by(OUTBOX.c.seq)).scalars()
        assert [json.loads(body)["data"]["key"] for body in bodies] == ["a", "b"]


def test_what_a_transaction_gathers_is_handed_over_once_in_key_order_and_a_rollback_forgets_it(sqlite_engine):
    engine = sqlite_engine("payments")
    ran = []

    def gather(uow, key, item):
        uow.gathered(key, lambda unit, items: ran.append((key, items))).append(item)

    with UnitOfWork(engine) as uow:
        gather(uow, ("b",), 1)
        _leave(uow, ("a",), ran)
        gather(uow, ("b",), 2)
        gather(uow, ("c",), 3)
        uow.commit()
        assert ran == [("a",), (("b",), [1, 2]), (("c",), [3])]
        gather(uow, ("b",), 4)
        uow.rollback()
        gather(uow, ("b",), 5)
        uow.commit()
        assert ran[-1] == (("b",), [5])
        _leave(uow, ("a",), ran)
        with pytest.raises(ValueError):  # a key holds work or a gathering, not both
            gather(uow, ("a",), 6)


def test_rows_inserted_at_commit_are_written_in_one_statement_and_a_rollback_writes_none(sqlite_engine):
    engine = sqlite_engine("billing")
    inserts = []
    sa.event.listen(
        engine,
        "before_cursor_execute",
        lambda c, cur, sql, *a: inserts.append(sql) if "INTO activities" in sql else None,
    )

    def activities_written():
        with engine.connect() as conn:
            return conn.execute(sa.select(activities.c.summary).order_by(activities.c.id)).scalars().all()

    now = utcnow()
    with UnitOfWork(engine) as uow:
        for n in (1, 2, 3):
            record_activity(uow, now, "ws1", "client-1", "payment.recorded", f"payment {n}")
        assert inserts == []  # not yet: as the transaction commits
        uow.commit()
        assert len(inserts) == 1 and activities_written() == ["payment 1", "payment 2", "payment 3"]
        record_activity(uow, now, "ws1", "client-1", "payment.recorded", "alone")
        uow.commit()
        assert len(inserts) == 2 and activities_written()[-1] == "alone"
        record_activity(uow, now, "ws1", "client-1", "payment.recorded", "rolled back")
        uow.rollback()
        uow.commit()
    assert len(inserts) == 2 and "rolled back" not in activities_written()


def test_a_read_once_is_read_once_a_transaction(sqlite_engine):
    reads = []

    def read():
        reads.append(len(reads))
        return reads[-1]

    with UnitOfWork(sqlite_engine("billing")) as uow:
        assert [uow.read_once(("recipients", "client-1"), read) for _ in range(3)] == [0, 0, 0]
        assert uow.read_once(("recipients", "client-2"), read) == 1
        uow.commit()
        assert uow.read_once(("recipients", "client-1"), read) == 2  # a new transaction reads afresh
        uow.rollback()
        assert uow.read_once(("recipients", "client-1"), read) == 3


class LeavesWork(FakeService):
    @consumes("billing", "thing.created", max_attempts=1, base_delay=0)
    def on_thing(self, uow, now, event):
        _leave(uow, "summary", self.ran)


def test_a_consumer_runs_the_work_it_left_in_its_inbox_transaction(sqlite_engine):
    engine = sqlite_engine("payments")
    service = LeavesWork(engine, failures=0)
    service.ran = []
    service.on_thing({"id": "e9", "type": "thing.created", "data": {}})
    assert service.ran == ["summary"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(INBOX)).scalar_one() == 1


def test_a_handler_that_keeps_failing_is_parked_in_dead_letters_not_lost(sqlite_engine):
    engine = sqlite_engine("payments")
    service = FakeService(engine, failures=99)
    service.on_thing({"id": "e2", "type": "thing.created", "data": {}})
    assert service.calls == 3
    with engine.connect() as conn:
        [row] = conn.execute(sa.select(DEAD)).all()
        assert (row.consumer, row.event_id) == ("svc.on_thing", "e2") and "flaky" in row.error
        assert conn.execute(sa.select(sa.func.count()).select_from(INBOX)).scalar_one() == 0


@pytest.fixture
def stopping():
    """The service has begun to stop, as EventConsumer.stop says it."""
    SERVICE_STOPPING.set()
    yield
    SERVICE_STOPPING.clear()


def test_once_the_service_is_stopping_a_failed_event_is_handed_back_neither_retried_nor_parked(sqlite_engine, stopping):
    engine = sqlite_engine("payments")
    service = FakeService(engine, failures=99)
    labels = {"service": "svc", "consumer": "svc.on_thing", "outcome": "handed_back"}
    before = REGISTRY.get_sample_value("portal_events_handled_total", labels) or 0
    with pytest.raises(HandedBack):
        service.on_thing({"id": "e3", "type": "thing.created", "data": {}})
    assert service.calls == 1
    assert REGISTRY.get_sample_value("portal_events_handled_total", labels) == before + 1  # ops see it
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(DEAD)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(INBOX)).scalar_one() == 0


def test_a_stop_that_begins_between_two_tries_hands_the_event_back_before_the_next(sqlite_engine, monkeypatch):
    engine = sqlite_engine("payments")
    service = FakeService(engine, failures=99)
    monkeypatch.setattr(nameko_ext.eventlet, "sleep", lambda seconds: SERVICE_STOPPING.set())
    try:
        with pytest.raises(HandedBack):
            service.on_thing({"id": "e4", "type": "thing.created", "data": {}})
    finally:
        SERVICE_STOPPING.clear()
    assert service.calls == 1


def test_the_consumer_gives_a_handed_back_event_to_the_broker_again_and_acks_the_rest():
    answered = []
    consumer = EventConsumer("billing", "thing.created")
    consumer.queue_consumer = SimpleNamespace(
        ack_message=lambda message: answered.append(("ack", message)),
        requeue_message=lambda message: answered.append(("requeue", message)),
    )
    try:
        raise HandedBack("stopping")
    except HandedBack as exc:
        consumer.handle_message_processed("m1", exc_info=(HandedBack, exc, exc.__traceback__))
    try:
        raise RuntimeError("parked by the consumer itself")
    except RuntimeError as exc:
        consumer.handle_message_processed("m2", exc_info=(RuntimeError, exc, exc.__traceback__))
    consumer.handle_message_processed("m3", result=True)
    assert answered == [("requeue", "m1"), ("ack", "m2"), ("ack", "m3")]


def test_a_message_delivered_once_the_service_is_stopping_is_given_back_unstarted(stopping):
    requeued = []
    consumer = EventConsumer("billing", "thing.created")
    consumer.queue_consumer = SimpleNamespace(requeue_message=requeued.append)
    consumer.container = SimpleNamespace(spawn_worker=lambda *args, **kwargs: pytest.fail("a worker was started"))
    consumer.handle_message({"id": "e5"}, "m4")
    assert requeued == ["m4"]


def test_a_handlers_own_integrity_error_is_retried_and_parked_not_taken_for_a_duplicate(sqlite_engine):
    engine = sqlite_engine("payments")

    class Clashing(FakeService):
        @consumes("billing", "thing.created", max_attempts=2, base_delay=0)
        def on_thing(self, conn, now, event):
            self.calls += 1
            conn.execute(INBOX.insert().values(consumer="x", event_id="same", processed_at=event["at"]))
            conn.execute(INBOX.insert().values(consumer="x", event_id="same", processed_at=event["at"]))

    service = Clashing(engine, failures=0)
    service.on_thing({"id": "e3", "type": "thing.created", "data": {}, "at": utcnow()})
    assert service.calls == 2
    with engine.connect() as conn:
        assert [r.event_id for r in conn.execute(sa.select(DEAD)).all()] == ["e3"]


def test_a_consumer_with_slots_takes_no_database_connection_until_it_has_a_slot(sqlite_engine):
    engine = sqlite_engine("payments")
    slots = eventlet.semaphore.BoundedSemaphore(1)
    connections = []

    class Rendering(FakeService):
        @consumes("billing", "thing.created", max_attempts=1, base_delay=0, slots=slots)
        def on_thing(self, uow, now, event):
            connections.append(engine.pool.checkedout())

    service = Rendering(engine, failures=0)
    slots.acquire()  # another render holds the only slot
    handling = eventlet.spawn(service.on_thing, {"id": "e7", "type": "thing.created", "data": {}})
    eventlet.sleep(0.05)
    assert connections == [] and engine.pool.checkedout() == 0  # waiting for the slot, holding nothing
    slots.release()
    assert handling.wait() is True
    assert connections == [1]  # its own transaction's connection, once it had the slot
    assert slots.balance == 1  # given back


class ReplayableService(ServiceBase):
    """The real ServiceBase dead-letter RPCs (called directly, no broker) over a flaky consumer."""

    name = "svc"
    clock = staticmethod(utcnow)

    def __init__(self, engine, error):
        self.db = DatabaseHandle(engine)
        self.scope = ScopeHandle(SimpleNamespace(data={}))  # what nameko injects: a worker's context
        self.error = error
        self.handled = []

    @consumes("billing", "thing.created", max_attempts=2, base_delay=0)
    def on_thing(self, uow, now, event):
        if self.error is not None:
            raise self.error
        self.handled.append(event["id"])


def test_a_business_refusal_is_parked_at_once_but_unavailable_is_retried(sqlite_engine):
    engine = sqlite_engine("payments")
    refused = ReplayableService(engine, Invalid("no such client"))
    refused.on_thing({"id": "e4", "type": "thing.created", "data": {}})
    busy = ReplayableService(engine, Unavailable("billing did not answer"))
    busy.on_thing({"id": "e5", "type": "thing.created", "data": {}})
    letters = list_dead_letters(engine)
    assert [(letter["event_id"], letter["event_type"]) for letter in letters] == [
        ("e4", "thing.created"),
        ("e5", "thing.created"),
    ]
    assert "no such client" in letters[0]["error"] and "did not answer" in letters[1]["error"]


def test_dead_letters_are_listed_inspected_and_replayed_once(sqlite_engine):
    engine = sqlite_engine("payments")
    service = ReplayableService(engine, RuntimeError("database was down"))
    service.on_thing({"id": "e6", "type": "thing.created", "data": {"n": 6}})
    [letter] = service.list_dead_letters()
    shown = service.get_dead_letter(letter["id"])
    assert shown["event"]["data"] == {"n": 6} and "database was down" in shown["error"]

    service.error = None  # the cause is fixed; the operator replays
    assert service.replay_dead_letter(letter["id"])["handled"] is True
    assert service.handled == ["e6"] and service.list_dead_letters() == []
    with pytest.raises(NotFound):  # a second replay of the same letter finds nothing to do
        service.replay_dead_letter(letter["id"])
    service.on_thing({"id": "e6", "type": "thing.created", "data": {"n": 6}})  # a late redelivery
    assert service.handled == ["e6"]


def test_a_replay_that_fails_again_is_parked_anew_not_lost(sqlite_engine):
    engine = sqlite_engine("payments")
    service = ReplayableService(engine, RuntimeError("still down"))
    service.on_thing({"id": "e7", "type": "thing.created", "data": {}})
    [letter] = service.list_dead_letters()
    assert service.replay_dead_letter(letter["id"])["handled"] is False
    [again] = service.list_dead_letters()
    assert again["event_id"] == "e7" and "still down" in again["error"]


def _make_thing(uow, now, name):
    uow.publish("thing.created", "ws1", {"name": name})
    return {"name": name, "at": now.isoformat()}


def test_an_idempotency_key_returns_the_first_answer_and_refuses_a_different_request(sqlite_engine):
    engine = sqlite_engine("payments")
    service = ReplayableService(engine, None)
    first = service._tx(_make_thing, "one", idempotency_key="k1")
    assert service._tx(_make_thing, "one", idempotency_key="k1") == first  # same answer, nothing done again
    with pytest.raises(Conflict):
        service._tx(_make_thing, "two", idempotency_key="k1")
    service._tx(_make_thing, "two", idempotency_key="k2")
    service._tx(_make_thing, "two")  # without a key every call counts
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == 3


def test_a_failed_call_leaves_its_key_free_for_the_retry(sqlite_engine):
    engine = sqlite_engine("payments")
    service = ReplayableService(engine, None)

    tries = []

    def flaky(uow, now, name):
        tries.append(name)
        made = _make_thing(uow, now, name)
        if len(tries) == 1:
            raise Invalid("not now")  # rolls back the change and the key with it
        return made

    with pytest.raises(Invalid):
        service._tx(flaky, "one", idempotency_key="k3")
    assert service._tx(flaky, "one", idempotency_key="k3")["name"] == "one"
    assert service._tx(flaky, "one", idempotency_key="k3")["name"] == "one" and len(tries) == 2
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == 1


def test_a_key_matches_a_repeat_whatever_dependency_object_the_worker_passes(sqlite_engine):
    """Payments passes its Stripe client and billing proxy to handlers; each worker has its own
    objects, and a repeat served by another worker must still match the first call."""
    engine = sqlite_engine("payments")
    service = ReplayableService(engine, None)

    def with_dependency(uow, now, client, name):
        return _make_thing(uow, now, name)

    class StripeClient:
        pass

    first = service._tx(with_dependency, StripeClient(), "one", idempotency_key="k4")
    assert service._tx(with_dependency, StripeClient(), "one", idempotency_key="k4") == first
    with pytest.raises(Conflict):
        service._tx(with_dependency, StripeClient(), "two", idempotency_key="k4")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == 1


class _LostMessage:
    """A message whose broker connection dropped between delivery and ack, as in a broker restart."""

    class channel:
        connection = object()

    def ack(self):
        raise ConnectionResetError(104, "Connection reset by peer")

    requeue = ack


def test_an_ack_on_a_lost_connection_does_not_kill_the_service():
    from nameko.messaging import QueueConsumer

    from chassis import nameko_patches

    nameko_patches.apply()  # what every service module does as its process starts
    # Unpatched, this exception escapes the worker and nameko kills the whole container.
    assert QueueConsumer.ack_message(None, _LostMessage()) is None
    assert QueueConsumer.requeue_message(None, _LostMessage()) is None


@pytest.fixture
def relay_wakes():
    """How often this process's relays were woken, counted while the test runs."""
    woken = []
    forget = on_outbox_commit(lambda: woken.append(1))
    yield woken
    forget()


def test_a_commit_that_recorded_events_wakes_the_relays_once_and_nothing_else_does(sqlite_engine, relay_wakes):
    engine = sqlite_engine("payments")
    publish_two(engine)
    assert len(relay_wakes) == 1  # one commit, two events
    with UnitOfWork(engine) as uow:
        uow.publish("thing.created", "ws1", {"n": 3})  # rolled back
    with UnitOfWork(engine) as uow:
        uow.execute(sa.select(OUTBOX.c.seq))
        uow.commit()  # nothing recorded
    assert len(relay_wakes) == 1
    with UnitOfWork(engine) as uow:
        uow.publish_and_commit("thing.created", "ws1", {"n": 4})  # the outbox row alone
    assert len(relay_wakes) == 2


def test_a_consumer_wakes_the_relays_once_its_events_committed_not_for_a_duplicate_or_a_failure(
    sqlite_engine, relay_wakes
):
    engine = sqlite_engine("payments")
    event = {"id": "evt-1", "type": "x", "workspace_id": "ws1", "data": {}}

    def records(conn, e):
        with joined(conn) as uow:
            uow.publish("thing.followed", "ws1", {"after": e["id"]})

    def fails(conn, e):
        records(conn, e)
        raise RuntimeError("after recording")

    with pytest.raises(RuntimeError):
        consume_once(engine, "c.handler", event, fails)
    assert relay_wakes == []
    assert consume_once(engine, "c.handler", event, records) is True
    assert len(relay_wakes) == 1
    assert consume_once(engine, "c.handler", event, records) is False  # a duplicate records nothing
    with UnitOfWork(engine) as uow:
        uow.execute(sa.select(OUTBOX.c.seq))
        uow.commit()  # the pooled connection's mark went with its transaction
    assert len(relay_wakes) == 1


class _TimerHost:
    """What an entrypoint needs of nameko's container: threads, and workers (here, counted runs)."""

    def __init__(self):
        self.runs = 0

    def spawn_managed_thread(self, fn):
        return eventlet.spawn(fn)

    def spawn_worker(self, entrypoint, args, kwargs, handle_result):
        self.runs += 1
        handle_result(None, None, None)


def test_the_relay_timer_runs_as_soon_as_events_are_committed_and_stops_listening_when_stopped(sqlite_engine):
    host = _TimerHost()
    timer = OutboxRelayTimer(interval=60).bind(host, "relay_outbox")
    timer.start()
    eventlet.sleep(0.05)
    assert host.runs == 0  # a minute to the safety net's tick
    publish_two(sqlite_engine("payments"))
    eventlet.sleep(0.05)
    assert host.runs == 1
    for _ in range(3):
        wake_relays()  # a burst while no run is going: one more run, not three
    eventlet.sleep(OutboxRelayTimer.GAP + 0.1)
    assert host.runs == 2
    with eventlet.Timeout(5):
        timer.stop()  # at once, not at the next tick
    wake_relays()
    eventlet.sleep(0.05)
    assert host.runs == 2

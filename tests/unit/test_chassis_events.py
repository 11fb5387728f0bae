"""Outbox, relay and idempotent consumers on an embedded database, with a fake dispatcher."""
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.events import DEAD, INBOX, OUTBOX, consume_once, relay_outbox
from chassis.nameko_ext import DatabaseHandle, consumes


def publish_two(engine):
    with UnitOfWork(engine) as uow:
        uow.publish("thing.created", "ws1", {"n": 1})
        uow.publish("thing.created", "ws1", {"n": 2})
        uow.commit()


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
    assert relay_outbox(engine, lambda kind, body: sent.append((kind, body))) == 2
    assert [body["data"]["n"] for _, body in sent] == [1, 2]
    assert set(sent[0][1]) == {"id", "type", "version", "occurred_at", "workspace_id", "data"}
    assert relay_outbox(engine, lambda *a: sent.append(a)) == 0  # nothing published twice


def test_a_failed_publish_keeps_the_events_for_the_next_run(sqlite_engine):
    engine = sqlite_engine("payments")
    publish_two(engine)

    def broker_down(kind, body):
        raise ConnectionError("broker down")

    try:
        relay_outbox(engine, broker_down)
    except ConnectionError:
        pass
    sent = []
    assert relay_outbox(engine, lambda kind, body: sent.append(body)) == 2


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

    def __init__(self, engine, failures):
        self.db = DatabaseHandle(engine)
        self.failures = failures
        self.calls = 0

    @consumes("billing", "thing.created", max_attempts=3, base_delay=0)
    def on_thing(self, conn, event):
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


def test_a_handler_that_keeps_failing_is_parked_in_dead_letters_not_lost(sqlite_engine):
    engine = sqlite_engine("payments")
    service = FakeService(engine, failures=99)
    service.on_thing({"id": "e2", "type": "thing.created", "data": {}})
    assert service.calls == 3
    with engine.connect() as conn:
        [row] = conn.execute(sa.select(DEAD)).all()
        assert (row.consumer, row.event_id) == ("svc.on_thing", "e2") and "flaky" in row.error
        assert conn.execute(sa.select(sa.func.count()).select_from(INBOX)).scalar_one() == 0


def test_a_handlers_own_integrity_error_is_retried_and_parked_not_taken_for_a_duplicate(sqlite_engine):
    engine = sqlite_engine("payments")

    class Clashing(FakeService):
        @consumes("billing", "thing.created", max_attempts=2, base_delay=0)
        def on_thing(self, conn, event):
            self.calls += 1
            conn.execute(INBOX.insert().values(consumer="x", event_id="same", processed_at=event["at"]))
            conn.execute(INBOX.insert().values(consumer="x", event_id="same", processed_at=event["at"]))

    from chassis.events import utcnow

    service = Clashing(engine, failures=0)
    service.on_thing({"id": "e3", "type": "thing.created", "data": {}, "at": utcnow()})
    assert service.calls == 2
    with engine.connect() as conn:
        assert [r.event_id for r in conn.execute(sa.select(DEAD)).all()] == ["e3"]

"""Billing's guarantees under concurrency, on real PostgreSQL: gapless numbers, no over-applied
payments, one invoice per recurring period however many replicas run the timer, client summaries that
count every change made at the same time, and a burst of one client's card payments handled together in
one transaction that leaves its summary right."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import eventlet
import pytest
import sqlalchemy as sa

from chassis.clock import utcnow
from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.errors import Invalid
from chassis.events import INBOX, OUTBOX
from chassis.nameko_ext import DatabaseHandle
from chassis.scope import Scope, acting_for, db_scope
from services.billing import domain
from services.billing import handlers as h
from services.billing.service import BillingService
from services.billing.tables import (
    activities,
    client_engagement,
    invoices,
    payment_allocations,
    payments,
    reminders_sent,
)
from tests.conftest import ROOT
from tests.integration.round_trips import RoundTrips

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(service_databases):
    url = service_databases["billing"]
    upgrade(url, ROOT / "services" / "billing" / "migrations")
    engine = make_engine(url, pool_size=20)
    yield engine
    engine.dispose()


@pytest.fixture
def client(engine):
    """A workspace with a client; the test acts for the workspace, as the admin API would."""
    with UnitOfWork(engine) as uow:
        ws = h.create_workspace(uow, utcnow(), {"name": "Concurrency Co", "email": "c@c.example.org"})["id"]
        uow.commit()
    with acting_for(Scope(ws)):
        with UnitOfWork(engine) as uow:
            client_id = h.create_client(uow, utcnow(), ws, {"name": "Racer"})["id"]
            uow.commit()
        yield ws, client_id


def in_parallel(count: int, work) -> list:
    """`work(i)` in `count` threads at once, each acting for the caller's scope (a thread starts with none)."""
    results: list = [None] * count
    barrier = threading.Barrier(count)
    scope = db_scope.get()

    def run(i):
        barrier.wait()
        try:
            with acting_for(scope):
                results[i] = work(i)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


LINE = [{"description": "Work", "quantity": 1, "unit_price": 10000}]
# what locks invoices: several in one statement, or one by id (prepared)
INVOICE_LOCKS = ("SELECT invoices.", "EXECUTE billing_invoices_by_id_locked")


def sent_invoices(engine, ws: str, client_id: str, count: int) -> list[dict]:
    with UnitOfWork(engine) as uow:
        made = [
            h.create_invoice(uow, utcnow(), ws, {"client_id": client_id, "lines": LINE, "send": True})
            for _ in range(count)
        ]
        uow.commit()
    return made


def sent(trips: RoundTrips, *starts: str) -> list[str]:
    """The statements sent that start with one of `starts`."""
    return [sql for sql in trips.statements if sql.startswith(starts)]


def test_concurrent_creation_gives_gapless_numbers_even_when_some_roll_back(engine, client):
    ws, client_id = client

    def create(i):
        with UnitOfWork(engine) as uow:
            invoice = h.create_invoice(uow, utcnow(), ws, {"client_id": client_id, "lines": LINE})
            if i % 4 == 0:
                raise RuntimeError("crash before commit")  # its number must be given back
            uow.commit()
            return invoice["number"]

    results = in_parallel(16, create)
    numbers = sorted(r for r in results if isinstance(r, str))
    assert len(numbers) == 12
    year = utcnow().year
    assert numbers == [f"INV-{year}-{n:05d}" for n in range(1, 13)]


def test_two_payments_at_once_never_over_apply(engine, client):
    ws, client_id = client
    for _ in range(5):
        with UnitOfWork(engine) as uow:
            invoice = h.create_invoice(uow, utcnow(), ws, {"client_id": client_id, "lines": LINE, "send": True})
            uow.commit()

        def pay(i):
            with UnitOfWork(engine) as uow:
                result = h.record_payment(uow, utcnow(), ws, {"invoice_id": invoice["id"], "amount": 7000})
                uow.commit()
                return result

        results = in_parallel(2, pay)
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "dict"]  # the second would over-apply
        with engine.connect() as conn:
            row = conn.execute(sa.select(invoices).where(invoices.c.id == invoice["id"])).one()
        assert (row.amount_paid, row.status) == (7000, "partially_paid")


def test_payments_of_the_same_invoices_at_once_lock_them_in_one_statement_and_never_deadlock(engine, client):
    """A payment of several invoices ("Pay all") locks them in one statement, and writes them with its
    own insert and its allocations in another; payments naming the same invoices in different orders, at once, lock them
    in one order, so none waits on another in a circle."""
    ws, client_id = client
    made = sent_invoices(engine, ws, client_id, 4)

    def pay(i):
        ordered = made if i % 2 else made[::-1]
        allocations = [{"invoice_id": invoice["id"], "amount": 100} for invoice in ordered]
        with UnitOfWork(engine) as uow:
            result = h.record_payment(uow, utcnow(), ws, {"allocations": allocations, "method": "cash"})
            uow.commit()
            return result

    trips = RoundTrips()
    try:
        pay(0)
    finally:
        trips.remove()
    locks = sent(trips, *INVOICE_LOCKS)
    assert len(locks) == 1 and "FOR UPDATE" in locks[0], trips.statements
    writes = sent(
        trips, "INSERT INTO payment", "UPDATE invoices", "EXECUTE billing_payment_", "EXECUTE billing_invoice"
    )
    assert writes == [sent(trips, "EXECUTE billing_payment_settled_new_allocated(")[0]], trips.statements
    results = in_parallel(8, pay)
    assert [type(result).__name__ for result in results] == ["dict"] * 8  # no deadlock, no refusal
    with engine.connect() as conn:
        paid = conn.execute(sa.select(invoices.c.amount_paid).where(invoices.c.id.in_([i["id"] for i in made])))
        assert sorted(paid.scalars()) == [900] * 4
        allocated = sa.select(payment_allocations.c.invoice_id, sa.func.sum(payment_allocations.c.amount)).where(
            payment_allocations.c.invoice_id.in_([i["id"] for i in made])
        )
        assert dict(conn.execute(allocated.group_by(payment_allocations.c.invoice_id)).all()) == {
            invoice["id"]: 900 for invoice in made
        }


def test_a_payments_activity_receipt_code_and_events_go_in_one_statement_as_it_commits(engine, client):
    ws, client_id = client
    [invoice] = sent_invoices(engine, ws, client_id, 1)
    trips = RoundTrips()
    try:
        with UnitOfWork(engine) as uow:
            payment = h.record_payment(uow, utcnow(), ws, {"invoice_id": invoice["id"], "amount": 4000})
            uow.commit()
    finally:
        trips.remove()
    [at_commit] = [sql for sql in trips.statements if "INTO outbox" in sql or "INTO activities" in sql]
    assert "INSERT INTO verification_codes" in at_commit, trips.statements
    with engine.connect() as conn:
        events = conn.execute(sa.select(OUTBOX.c.event_type).where(OUTBOX.c.body.contains(payment["id"])))
        assert sorted(events.scalars()) == ["invoice.payment_applied", "payment.recorded"]
        activity = sa.select(activities.c.summary).where(activities.c.client_id == client_id)
        assert "Payment of $40.00 recorded" in conn.execute(activity).scalars().all()


def test_the_same_payment_id_twice_at_once_is_applied_once(engine, client):
    ws, client_id = client
    with UnitOfWork(engine) as uow:
        invoice = h.create_invoice(uow, utcnow(), ws, {"client_id": client_id, "lines": LINE, "send": True})
        uow.commit()

    def pay(i):
        with UnitOfWork(engine) as uow:
            result = h.record_payment(
                uow, utcnow(), ws, {"invoice_id": invoice["id"], "amount": 4000, "payment_id": "pi_same"}
            )
            uow.commit()
            return result

    results = in_parallel(3, pay)
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(invoices.c.amount_paid).where(invoices.c.id == invoice["id"])).scalar_one() == 4000
        )
    assert any(isinstance(r, dict) for r in results)
    assert all(isinstance(r, (dict, sa.exc.IntegrityError, Invalid)) for r in results)


def test_money_moving_at_once_for_one_client_leaves_its_summary_right(engine, client):
    """Eight payments of eight invoices and two credit notes, all at once: each transaction sums the
    client's figures only once it holds the summary's lock, so what committed while it waited counts."""
    ws, client_id = client
    made = sent_invoices(engine, ws, client_id, 8)

    def move(i):
        with UnitOfWork(engine) as uow:
            if i < 8:
                h.record_payment(uow, utcnow(), ws, {"invoice_id": made[i]["id"], "amount": 10000 - i})
            else:
                h.issue_credit_note(uow, utcnow(), ws, {"client_id": client_id, "amount": 500})
            uow.commit()

    assert [r for r in in_parallel(10, move) if r is not None] == []
    with UnitOfWork(engine) as uow:
        dashboard = h.client_dashboard(uow, utcnow(), ws, client_id)
        assert (dashboard["outstanding"]["amount"], dashboard["credit_available"]["amount"]) == (sum(range(8)), 1000)
        assert h.repair_client_summaries(uow, utcnow(), ws)["drifted"] == []


def test_two_replicas_running_the_recurring_timer_make_one_invoice_per_period(engine, client):
    ws, client_id = client
    start = (utcnow() - timedelta(days=70)).date()
    with UnitOfWork(engine) as uow:
        schedule = h.create_recurring(
            uow,
            utcnow(),
            ws,
            {
                "client_id": client_id,
                "frequency": "monthly",
                "interval": 1,
                "start_date": start.isoformat(),
                "lines": LINE,
            },
        )
        uow.commit()

    def sweep(i):
        with UnitOfWork(engine) as uow:
            return h.run_due_recurring(uow, utcnow())

    in_parallel(4, sweep)
    in_parallel(2, sweep)  # and again later: nothing twice
    # a sweep that loses a period's claim leaves the later periods to the next tick; on a loaded
    # machine the parallel ones can all have lost by then, so one more tick, alone, as the timer runs
    sweep(0)
    with engine.connect() as conn:
        periods = (
            conn.execute(sa.select(invoices.c.recurring_period).where(invoices.c.recurring_id == schedule["id"]))
            .scalars()
            .all()
        )
    assert sorted(periods) == [
        start,
        domain.Schedule("monthly", 1, start).occurrence(1),
        domain.Schedule("monthly", 1, start).occurrence(2),
    ]


def test_replicas_sweeping_reminders_tell_each_overdue_invoice_once(engine, client):
    """Several replicas sweep at once, then again: each overdue invoice is announced once, and the
    later sweeps skip what was told (the sent kinds come with the read) rather than retry inserts."""
    ws, client_id = client
    due = (utcnow() - timedelta(days=40)).date()
    with UnitOfWork(engine) as uow:
        made = [
            h.create_invoice(
                uow,
                utcnow(),
                ws,
                {
                    "client_id": client_id,
                    "lines": LINE,
                    "send": True,
                    "issue_date": (due - timedelta(days=10)).isoformat(),
                    "due_date": due.isoformat(),
                },
            )["id"]
            for _ in range(3)
        ]
        uow.commit()

    def sweep(i):
        with UnitOfWork(engine) as uow:
            return h.run_reminders(uow, utcnow(), ws)

    in_parallel(4, sweep)
    assert in_parallel(2, sweep) == [0, 0]
    with engine.connect() as conn:
        told = conn.execute(
            sa.select(reminders_sent.c.invoice_id, reminders_sent.c.kind).where(reminders_sent.c.invoice_id.in_(made))
        ).all()
        announced = conn.execute(
            sa.select(sa.func.count())
            .select_from(OUTBOX)
            .where(OUTBOX.c.event_type == "invoice.overdue", sa.or_(*(OUTBOX.c.body.contains(i) for i in made)))
        ).scalar()
    assert sorted(told) == sorted((invoice_id, "overdue") for invoice_id in made)
    assert announced == 3


def test_a_clients_first_signals_at_the_same_time_all_count(engine, client):
    """The rollup row does not exist until the first signal: concurrent first signals create it once
    and every one of them is counted, as are later ones racing each other."""
    ws, client_id = client

    def view(i):
        with UnitOfWork(engine) as uow:
            counted = h.record_signal(uow, utcnow(), ws, client_id, "view")
            uow.commit()
            return counted

    assert in_parallel(8, view) == [True] * 8
    assert in_parallel(8, view) == [True] * 8
    with UnitOfWork(engine) as uow:
        assert h.client_engagement(uow, utcnow(), ws, client_id)["portal_views"] == 16
        assert h.record_signal(uow, utcnow(), ws, "no-such-client", "view") is False  # logged, nothing made


def card_paid(ws: str, client_id: str, invoice: dict) -> dict:
    """payments' payment.succeeded for a card payment of the whole invoice."""
    payment_id = f"pi_{uuid.uuid4().hex[:12]}"
    return {
        "id": str(uuid.uuid4()),
        "type": "payment.succeeded",
        "version": 1,
        "occurred_at": utcnow().isoformat(),
        "workspace_id": ws,
        "data": {
            "payment_id": payment_id,
            "client_id": client_id,
            "allocations": [{"invoice_id": invoice["id"], "amount": invoice["total"]}],
            "amount": invoice["total"],
            "currency": invoice["currency"],
            "method": "card",
            "reference": payment_id,
        },
    }


def test_a_burst_of_one_clients_card_payments_is_handled_together_and_its_summary_is_right(engine, client):
    """Six payments reach billing while the first is still in its transaction (its first statement
    is slowed): the first commits alone, the five that waited for it commit together, each recorded
    once, and the summary is the ledger's. The five are checked for being recorded already, and
    their invoices locked, in one statement each for all of them."""
    ws, client_id = client
    made = sent_invoices(engine, ws, client_id, 6)
    burst = [card_paid(ws, client_id, invoice) for invoice in made]
    billing = BillingService()  # the consumer as nameko runs it, with the dependencies it uses
    billing.db, billing.clock = DatabaseHandle(engine), utcnow
    commits, slowed = [], []

    def slow_first_statement(conn, cursor, statement, *args):
        if not slowed:
            slowed.append(statement)
            eventlet.sleep(0.2)  # the rest of the burst arrives meanwhile

    sa.event.listen(engine, "before_cursor_execute", slow_first_statement)
    sa.event.listen(engine, "commit", lambda conn: commits.append(conn))
    trips = RoundTrips()
    try:
        workers = [eventlet.spawn(billing.on_payment_succeeded, event) for event in burst]
        answers = [worker.wait() for worker in workers]
        workers = [eventlet.spawn(billing.on_payment_succeeded, event) for event in burst[:2]]  # redelivered
        answers += [worker.wait() for worker in workers]
    finally:
        trips.remove()
        sa.event.remove(engine, "before_cursor_execute", slow_first_statement)
    assert answers == [True] * 6 + [False, False]
    assert len(commits) == 2  # the first alone, the five together; the two redelivered changed nothing
    locks, checks = sent(trips, *INVOICE_LOCKS), sent(trips, "SELECT payments.", "EXECUTE billing_payment(")
    assert len(locks) == len(checks) == 2, trips.statements  # the first's own, then one for the five
    with UnitOfWork(engine) as uow:
        paid = uow.execute(sa.select(sa.func.count()).select_from(payments).where(payments.c.client_id == client_id))
        assert paid.scalar_one() == 6
        handled = sa.select(sa.func.count()).select_from(INBOX).where(INBOX.c.event_id.in_([e["id"] for e in burst]))
        assert uow.execute(handled).scalar_one() == 6
        dashboard = h.client_dashboard(uow, utcnow(), ws, client_id)
        assert dashboard["outstanding"]["amount"] == 0 and dashboard["last_payment"] is not None
        assert h.repair_client_summaries(uow, utcnow(), ws)["drifted"] == []
        rollup = sa.select(client_engagement.c.successful_payments).where(client_engagement.c.client_id == client_id)
        assert uow.execute(rollup).scalar_one() == 6  # each payment's signal counted once, at its commit

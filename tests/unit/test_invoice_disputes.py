"""Invoice disputes and aging buckets: the plain rules (which invoices and lines can be disputed, which
bucket a due date falls in), the handlers on a real SQLite database (thread, timeline, events, one open
dispute at a time, reminders paused, adjust and reject), and a property: whatever happens to a
client's invoices while the clock moves on, the buckets add up to what it owes, per currency."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chassis import event_contract
from chassis.clock import utcnow
from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.errors import Conflict, Invalid, NotFound
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing.aging import BUCKETS, OpenByDue, aging, aging_bucket, past_due
from services.billing.disputes import check_adjustment, check_disputable, disputed_lines
from services.billing.tables import invoices
from tests.unit.conftest import ROOT
from tests.unit.test_billing_handlers import NOW, db, ws  # noqa: F401 - shared fixtures

LINES = [
    {"description": "Design", "quantity": 1, "unit_price": 6000},
    {"description": "Hosting", "quantity": 1, "unit_price": 4000},
]


def published(db, event_type):
    """The events of a type in billing's outbox, each checked against docs/events.asyncapi.yaml."""
    with db.engine.connect() as conn:
        rows = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).scalars().all()
    envelopes = [json.loads(body) for body in rows]
    assert [event_contract.validate(e) for e in envelopes] == [[] for _ in envelopes]
    return [e["data"] for e in envelopes]


def contact_of(db, ws_id, client):
    return db(h.get_client, ws_id, client)["contacts"][0]["id"]


def sent_invoice(db, ws_id, client, due="2026-11-01", lines=LINES):
    data = {"client_id": client, "send": True, "issue_date": "2026-06-01", "due_date": due, "lines": lines}
    return db(h.create_invoice, ws_id, data)


# ---------------------------------------------------------------- the plain rules


@pytest.mark.parametrize(
    "days_past, bucket",
    [
        (-10, "current"),
        (0, "current"),  # due today is not late yet
        (1, "days_1_30"),
        (30, "days_1_30"),
        (31, "days_31_60"),
        (60, "days_31_60"),
        (61, "days_61_90"),
        (90, "days_61_90"),
        (91, "days_over_90"),
        (400, "days_over_90"),
    ],
)
def test_a_due_date_falls_in_its_bucket_by_days_past_due(days_past, bucket):
    today = date(2026, 3, 1)  # across February: calendar days, not months
    assert aging_bucket(today - timedelta(days=days_past), today) == bucket


def test_aging_sums_per_currency_with_the_clients_first():
    today = date(2026, 11, 23)
    rows = [("USD", date(2026, 12, 1), 100), ("EUR", date(2026, 8, 1), 50), ("USD", date(2026, 11, 1), 7)]
    assert aging(rows, today, first="USD") == [
        {"currency": "USD", **dict.fromkeys(BUCKETS, 0), "current": 100, "days_1_30": 7, "total": 107},
        {"currency": "EUR", **dict.fromkeys(BUCKETS, 0), "days_over_90": 50, "total": 50},
    ]
    assert aging([], today, first="GBP") == [{"currency": "GBP", **dict.fromkeys(BUCKETS, 0), "total": 0}]


def test_past_due_counts_late_invoices_in_any_currency_and_sums_the_clients_own():
    today = date(2026, 11, 23)
    rows = [
        OpenByDue("USD", date(2026, 11, 22), 700, 2),  # a day late
        OpenByDue("EUR", date(2026, 8, 1), 50, 1),  # late, in another currency: counted, not summed
        OpenByDue("USD", date(2026, 11, 23), 100, 1),  # due today: not yet late
    ]
    assert past_due(rows, today, "USD") == (3, 700)
    assert past_due(rows, today, "EUR") == (3, 50)
    assert past_due(rows, date(2026, 11, 22), "USD") == (1, 0)
    assert past_due([], today, "USD") == (0, 0)


def test_only_owed_standard_invoices_and_real_lines_can_be_disputed():
    check_disputable("viewed", 100, False, "standard")
    for status, balance, archived, kind in (
        ("paid", 0, False, "standard"),
        ("draft", 100, False, "standard"),
        ("void", 0, False, "standard"),
        ("sent", 100, True, "standard"),
        ("sent", 100, False, "retainer"),
    ):
        with pytest.raises(Conflict):
            check_disputable(status, balance, archived, kind)
    assert disputed_lines(None, 3) == [] and disputed_lines([3, 1, 3], 3) == [1, 3]
    assert disputed_lines([1, 2], 2) == []  # every line is the whole invoice
    for bad in ([0], ["1"], [True], "1"):
        with pytest.raises(Invalid):
            disputed_lines(bad, 3)
    with pytest.raises(Conflict):  # well-formed, but the invoice has no such line
        disputed_lines([4], 3)
    assert check_adjustment(500, 500) == 500
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(Invalid):
            check_adjustment(bad, 500)
    with pytest.raises(Conflict):
        check_adjustment(501, 500)


# ---------------------------------------------------------------- the handlers


def test_a_dispute_goes_into_the_thread_the_timeline_and_the_outbox_and_only_one_is_open(db, ws):
    ws_id, client = ws
    contact = contact_of(db, ws_id, client)
    invoice = sent_invoice(db, ws_id, client)
    raised = db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "  Hosting was down  ", [2])
    assert raised["status"] == "open" and raised["reason"] == "Hosting was down" and raised["lines"] == [2]
    [comment] = db(h.list_comments, ws_id, "invoice", invoice["id"], client_id=client)
    assert comment["author_kind"] == "client" and comment["body"] == "Disputed line 2: Hosting was down"
    # the same step as data, for a page to word in its reader's language
    assert comment["notice"] == {"kind": "disputed", "lines": [2], "reason": "Hosting was down"}
    activity = db(h.list_activity, ws_id, client)
    assert activity[0]["kind"] == "invoice.disputed" and invoice["number"] in activity[0]["summary"]
    [event] = published(db, "invoice.disputed")
    assert event["dispute_id"] == raised["id"] and event["lines"] == [2] and event["balance"] == 10000
    assert event["autopay"] is False
    assert db(h.get_invoice, ws_id, invoice["id"])["dispute"]["id"] == raised["id"]

    with pytest.raises(Conflict, match="already has an open dispute"):
        db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "Again")
    assert len(published(db, "invoice.disputed")) == 1
    assert len(db(h.list_comments, ws_id, "invoice", invoice["id"], client_id=client)) == 1


def test_bad_disputes_change_nothing(db, ws):
    ws_id, client = ws
    contact = contact_of(db, ws_id, client)
    invoice = sent_invoice(db, ws_id, client)
    other = db(h.create_client, ws_id, {"name": "Other"})["id"]
    with pytest.raises(Invalid):
        db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "   ")
    with pytest.raises(Conflict):
        db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "Why", [3])
    with pytest.raises(NotFound):  # another client's invoice is as missing as an unknown one
        db(h.raise_invoice_dispute, ws_id, other, contact, "Eve", invoice["id"], "Not mine")
    paid = sent_invoice(db, ws_id, client)
    db(h.record_payment, ws_id, {"invoice_id": paid["id"], "amount": paid["total"]})
    with pytest.raises(Conflict, match="paid"):
        db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", paid["id"], "Too late")
    assert published(db, "invoice.disputed") == []
    assert db(h.list_invoice_disputes, ws_id)["items"] == []


def test_reminders_pause_while_a_dispute_is_open_and_resume_after(db, ws):
    ws_id, client = ws
    contact = contact_of(db, ws_id, client)
    disputed = sent_invoice(db, ws_id, client, due="2026-11-20")
    other = sent_invoice(db, ws_id, client, due="2026-11-20")
    dispute = db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", disputed["id"], "Wrong rate")
    db(h.run_reminders, ws_id)
    reminded = {e["id"] for e in published(db, "invoice.reminder") + published(db, "invoice.overdue")}
    assert other["id"] in reminded and disputed["id"] not in reminded
    db(h.resolve_invoice_dispute, ws_id, dispute["id"], "reject", {"message": "The rate was agreed."})
    db(h.run_reminders, ws_id)
    reminded = {e["id"] for e in published(db, "invoice.reminder") + published(db, "invoice.overdue")}
    assert disputed["id"] in reminded


def test_autopay_plans_are_refused_while_disputed_but_the_client_may_still_pay(db, ws):
    ws_id, client = ws
    contact = contact_of(db, ws_id, client)
    invoice = sent_invoice(db, ws_id, client)
    db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "Wrong rate")
    with pytest.raises(Conflict, match="disputed"):
        db(h.plan_payment, ws_id, client, {"invoice_ids": [invoice["id"]], "autopay": True}, True, "autopay:1")
    manual = db(h.plan_payment, ws_id, client, {"invoice_ids": [invoice["id"]]})
    assert manual["amount"] == 10000


def test_adjusting_issues_a_linked_credit_note_and_applies_it(db, ws):
    ws_id, client = ws
    contact = contact_of(db, ws_id, client)
    invoice = sent_invoice(db, ws_id, client)
    dispute = db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "Hosting was down", [2])
    with pytest.raises(Conflict):
        db(h.resolve_invoice_dispute, ws_id, dispute["id"], "adjust", {"amount": 10001})
    with pytest.raises(Invalid):
        db(h.resolve_invoice_dispute, ws_id, dispute["id"], "refund", {"amount": 100})
    later = NOW + timedelta(hours=2)  # the thread is in time order
    adjusted = db(
        h.resolve_invoice_dispute, ws_id, dispute["id"], "adjust", {"amount": 4000, "message": "Sorry"}, now=later
    )
    assert adjusted["status"] == "adjusted" and adjusted["credit_amount"] == 4000
    [note] = db(h.list_credit_notes, ws_id, client)
    assert note["id"] == adjusted["credit_note_id"] and note["total"] == 4000
    after = db(h.get_invoice, ws_id, invoice["id"])
    assert after["balance"] == 6000 and after["amount_credited"] == 4000
    assert db(h.client_balances, ws_id, client) == {
        "currency": "USD",
        "outstanding": 6000,
        "credit_available": 0,
        "retainer_available": 0,
    }
    thread = db(h.list_comments, ws_id, "invoice", invoice["id"], client_id=client)
    assert thread[-1]["author_kind"] == "business" and note["number"] in thread[-1]["body"]
    assert thread[-1]["notice"] == {
        "kind": "dispute_adjusted",
        "credit_note": note["number"],
        "amount": 4000,
        "currency": "USD",
        "message": "Sorry",
    }
    assert db(h.list_activity, ws_id, client)[0]["kind"] == "invoice.dispute_resolved"
    [event] = published(db, "invoice.dispute_resolved")
    assert event["outcome"] == "adjusted" and event["credit_note_id"] == note["id"] and event["balance"] == 6000
    # what documents emails the client: the credit note's number and amount, to each portal contact
    assert (event["credit_note_number"], event["credit_amount"], event["credit_currency"]) == (
        note["number"],
        4000,
        "USD",
    )
    assert [r["contact_id"] for r in event["recipients"]] == [contact]
    with pytest.raises(Conflict, match="adjusted already"):
        db(h.resolve_invoice_dispute, ws_id, dispute["id"], "reject", {"message": "No"})
    # resolved: another dispute may be raised
    db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "Still wrong")


def test_rejecting_needs_a_message_and_keeps_the_invoice(db, ws):
    ws_id, client = ws
    contact = contact_of(db, ws_id, client)
    invoice = sent_invoice(db, ws_id, client)
    dispute = db(h.raise_invoice_dispute, ws_id, client, contact, "Ann", invoice["id"], "Too expensive")
    with pytest.raises(Invalid):
        db(h.resolve_invoice_dispute, ws_id, dispute["id"], "reject", {"message": " "})
    assert db(h.get_invoice_dispute, ws_id, dispute["id"])["status"] == "open"
    rejected = db(h.resolve_invoice_dispute, ws_id, dispute["id"], "reject", {"message": "As quoted."})
    assert rejected["status"] == "rejected" and rejected["credit_note_id"] is None
    assert db(h.get_invoice, ws_id, invoice["id"])["balance"] == 10000
    [event] = published(db, "invoice.dispute_resolved")
    assert event["outcome"] == "rejected" and event["message"] == "As quoted."
    assert event["credit_note_number"] is None and [r["contact_id"] for r in event["recipients"]] == [contact]
    notices = {c["notice"]["kind"]: c["notice"] for c in db(h.list_comments, ws_id, "invoice", invoice["id"])}
    assert notices == {
        "disputed": {"kind": "disputed", "lines": [], "reason": "Too expensive"},
        "dispute_rejected": {"kind": "dispute_rejected", "message": "As quoted."},
    }
    listed = db(h.list_invoice_disputes, ws_id, {"status": "rejected", "client_id": client})["items"]
    assert [d["id"] for d in listed] == [dispute["id"]]
    with pytest.raises(Invalid):
        db(h.list_invoice_disputes, ws_id, {"status": "closed"})


def test_the_dashboard_and_the_statement_show_the_buckets_in_the_business_zone(db, ws):
    ws_id, client = ws  # the business is in New York: 2026-11-23 15:00 UTC is 10:00 there
    for due, amount in (("2026-11-23", 100), ("2026-11-22", 200), ("2026-10-24", 300), ("2026-10-23", 400)):
        sent_invoice(db, ws_id, client, due=due, lines=[{"description": "Work", "unit_price": amount}])
    sent_invoice(db, ws_id, client, due="2026-06-01", lines=[{"description": "Old", "unit_price": 500}])
    [usd] = db(h.client_dashboard, ws_id, client)["aging"]
    assert (usd["current"], usd["days_1_30"], usd["days_31_60"], usd["days_over_90"]) == (100, 500, 400, 500)
    assert usd["total"] == 1500 == db(h.client_dashboard, ws_id, client)["outstanding"]["amount"]
    # 03:00 UTC on the 24th is still the 23rd in New York: nothing moves a bucket yet
    early = datetime(2026, 11, 24, 3, 0, tzinfo=timezone.utc)
    assert db(h.client_dashboard, ws_id, client, now=early)["aging"] == [usd]
    statement = db(h.statement, ws_id, client, None, None)
    assert statement["aging"] == usd


# ---------------------------------------------------------------- the property


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('aging') / 'billing.sqlite3'}"
    upgrade(url, ROOT / "services" / "billing" / "migrations")
    engine = make_engine(url)
    yield engine
    engine.dispose()


names = itertools.count()
steps = st.lists(
    st.one_of(
        st.tuples(st.just("invoice"), st.integers(-120, 60), st.integers(1, 50_000), st.booleans()),
        st.tuples(st.just("pay"), st.integers(0, 50), st.integers(1, 50_000)),
        st.tuples(st.just("dispute"), st.integers(0, 50), st.booleans()),
        st.tuples(st.just("void"), st.integers(0, 50)),
        st.tuples(
            st.just("currency"),
        ),
        st.tuples(st.just("wait"), st.integers(1, 24 * 45)),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, zone=st.sampled_from(["UTC", "Pacific/Auckland", "America/Los_Angeles"]))
def test_the_buckets_add_up_to_what_is_owed_per_currency_as_the_clock_moves(engine, steps, zone):
    start = datetime(2026, 11, 23, 11, 0, tzinfo=timezone.utc)
    with time_machine.travel(start, tick=False) as clock:

        def run(fn, *args):
            now = utcnow()  # the clock the services read, moved by time-machine
            with UnitOfWork(engine, lambda: now) as uow:
                result = fn(uow, now, *args)
                uow.commit()
                return result

        ws_id = run(h.create_workspace, {"name": "Aging", "email": "a@example.com", "timezone": zone})["id"]
        client = run(h.create_client, ws_id, {"name": f"Client {next(names)}", "currency": "USD"})["id"]
        contact = run(h.add_contact, ws_id, client, {"email": f"c{next(names)}@example.com"})["id"]
        made: list[str] = []
        for step in steps:
            try:
                if step[0] == "invoice":
                    today = utcnow().astimezone(ZoneInfo(zone)).date()
                    issue = min(today, today + timedelta(days=step[1]))
                    data = {
                        "client_id": client,
                        "issue_date": issue.isoformat(),
                        "due_date": (today + timedelta(days=step[1])).isoformat(),
                        "lines": [{"description": "Work", "unit_price": step[2]}],
                        "send": step[3],
                    }
                    made.append(run(h.create_invoice, ws_id, data)["id"])
                elif step[0] == "pay" and made:
                    run(h.record_payment, ws_id, {"invoice_id": made[step[1] % len(made)], "amount": step[2]})
                elif step[0] == "dispute" and made:
                    invoice_id = made[step[1] % len(made)]
                    dispute = run(h.raise_invoice_dispute, ws_id, client, contact, "C", invoice_id, "Why")
                    if step[2]:
                        run(h.resolve_invoice_dispute, ws_id, dispute["id"], "adjust", {"amount": 1})
                elif step[0] == "void" and made:
                    run(h.void_invoice, ws_id, made[step[1] % len(made)])
                elif step[0] == "currency":  # later invoices in another currency: buckets never mix them
                    current = run(h.get_client, ws_id, client)["currency"]
                    run(h.update_client, ws_id, client, {"currency": "EUR" if current == "USD" else "USD"})
                elif step[0] == "wait":
                    clock.shift(timedelta(hours=step[1]))
            except (Conflict, Invalid, NotFound):  # NotFound: a draft does not exist for the client
                pass  # refused: changes nothing, and the sums below still hold

            dashboard = run(h.client_dashboard, ws_id, client)
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(invoices).where(invoices.c.workspace_id == ws_id, invoices.c.client_id == client)
                ).all()
            owed: dict[str, int] = {}
            overdue_count, today = 0, utcnow().astimezone(ZoneInfo(zone)).date()
            for r in rows:
                balance = max(r.total - r.amount_paid - r.amount_credited, 0)
                if r.status in ("sent", "viewed", "partially_paid") and r.archived_at is None and balance > 0:
                    owed[r.currency] = owed.get(r.currency, 0) + balance
                    overdue_count += r.due_date < today
            buckets = {a["currency"]: a for a in dashboard["aging"]}
            assert {c: a["total"] for c, a in buckets.items() if a["total"]} == owed
            for entry in dashboard["aging"]:
                assert entry["total"] == sum(entry[b] for b in BUCKETS)
            currency = dashboard["client"]["currency"]
            assert dashboard["aging"][0]["currency"] == currency
            assert buckets[currency]["total"] == dashboard["outstanding"]["amount"]
            past_due = sum(buckets[currency][b] for b in BUCKETS if b != "current")
            assert past_due == dashboard["overdue"]["amount"] and dashboard["overdue"]["count"] == overdue_count

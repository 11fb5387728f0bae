"""The rules that depend on the date, run with the clock on the days calendars get wrong: the last and
the first day of a month (also when UTC and the business's zone disagree on the date), 29 February,
and both daylight-saving changes in the business's time zone (America/New_York)."""

import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from dateutil.relativedelta import relativedelta

from chassis import credentials
from chassis.db import UnitOfWork, joined
from chassis.events import OUTBOX
from services.auth import domain as auth_domain
from services.auth import handlers as auth
from services.billing import handlers as h

NEW_YORK = ZoneInfo("America/New_York")
INSTANTS = {
    "last day of a month": datetime(2027, 1, 31, 16, 0, tzinfo=timezone.utc),
    "first of a month in UTC, still the last day in New York": datetime(2027, 2, 1, 3, 0, tzinfo=timezone.utc),
    "first of a month": datetime(2027, 3, 1, 14, 0, tzinfo=timezone.utc),
    "29 February": datetime(2028, 2, 29, 15, 0, tzinfo=timezone.utc),
    "daylight saving starts in New York": datetime(2027, 3, 14, 6, 30, tzinfo=timezone.utc),  # 01:30 EST
    "daylight saving ends in New York": datetime(2026, 11, 1, 5, 30, tzinfo=timezone.utc),  # 01:30 EDT
}


@pytest.fixture(params=list(INSTANTS), ids=list(INSTANTS))
def now(request) -> datetime:
    return INSTANTS[request.param]


@pytest.fixture
def billing(sqlite_engine, now):
    engine = sqlite_engine("billing")

    def run(fn, *args, at=now, **kwargs):
        with UnitOfWork(engine, lambda: at) as uow:
            result = fn(uow, at, *args, **kwargs)
            uow.commit()
            return result

    run.engine = engine
    workspace = run(h.create_workspace, {"name": "Acme", "email": "acme@example.com", "timezone": "America/New_York"})
    client = run(h.create_client, workspace["id"], {"name": "Client One"})
    run(h.add_contact, workspace["id"], client["id"], {"email": "one@example.com", "portal_access": True})
    run.ws, run.client = workspace["id"], client["id"]
    return run


def local_today(now: datetime) -> date:
    return now.astimezone(NEW_YORK).date()


def invoice(billing, issue: date, due: date, amount: int = 10000, sent_at: datetime | None = None) -> dict:
    return billing(
        h.create_invoice,
        billing.ws,
        {
            "client_id": billing.client,
            "send": True,
            "issue_date": issue.isoformat(),
            "due_date": due.isoformat(),
            "lines": [{"description": "Work", "unit_price": amount}],
        },
        **({"at": sent_at} if sent_at else {}),
    )


def test_the_default_statement_holds_what_happened_today_in_the_business_zone(billing, now):
    today = local_today(now)
    issued = invoice(billing, today, today + timedelta(days=30))
    billing(h.record_payment, billing.ws, {"invoice_id": issued["id"], "amount": 2500})
    statement = billing(h.statement, billing.ws, billing.client, None, None)
    assert statement["to"] == today.isoformat()
    assert date.fromisoformat(statement["from"]) == today - relativedelta(months=3)
    assert [(entry["kind"], entry["date"]) for entry in statement["entries"]] == [
        ("invoice", today.isoformat()),
        ("payment", today.isoformat()),
    ]
    assert statement["closing_balance"] == 7500 == billing(h.client_balances, billing.ws, billing.client)["outstanding"]


def test_reminders_and_overdue_follow_the_business_calendar(billing, now):
    today = local_today(now)
    month_ago = now - timedelta(days=30)  # sent then: no reminder follows an invoice's own email closely
    due_today = invoice(billing, today - timedelta(days=30), today, sent_at=month_ago)
    due_yesterday = invoice(billing, today - timedelta(days=30), today - timedelta(days=1), sent_at=month_ago)
    due_in_three_days = invoice(billing, today - timedelta(days=30), today + timedelta(days=3), sent_at=month_ago)
    with UnitOfWork(billing.engine, lambda: now) as uow:
        h.run_reminders(uow, now)
    with billing.engine.connect() as conn:
        published = [
            (row.event_type, row.body)
            for row in conn.execute(
                sa.select(OUTBOX.c.event_type, OUTBOX.c.body).where(
                    OUTBOX.c.event_type.in_(["invoice.reminder", "invoice.overdue"])
                )
            )
        ]
    kinds = sorted((number_of(body), event_type, kind_of(body)) for event_type, body in published)
    assert kinds == sorted(
        [
            (due_today["number"], "invoice.reminder", "on_due"),
            (due_yesterday["number"], "invoice.reminder", "after_1"),  # not yesterday's "due today" any more
            (due_yesterday["number"], "invoice.overdue", "overdue"),
            (due_in_three_days["number"], "invoice.reminder", "before_3"),
        ]
    )
    dashboard = billing(h.client_dashboard, billing.ws, billing.client)
    assert (dashboard["overdue"]["count"], dashboard["overdue"]["amount"]) == (1, 10000)


def number_of(body: str) -> str:
    return json.loads(body)["data"]["number"]


def kind_of(body: str) -> str:
    return json.loads(body)["data"]["kind"]


def test_a_recurring_invoice_starting_today_is_issued_once_and_its_next_run_keeps_the_day(billing, now):
    today = local_today(now)
    schedule = billing(
        h.create_recurring,
        billing.ws,
        {
            "client_id": billing.client,
            "frequency": "monthly",
            "start_date": today.isoformat(),
            "lines": [{"description": "Retainer", "unit_price": 5000}],
        },
    )
    with UnitOfWork(billing.engine, lambda: now) as uow:
        assert h.run_due_recurring(uow, now) == 1
    with UnitOfWork(billing.engine, lambda: now) as uow:
        assert h.run_due_recurring(uow, now) == 0  # the same day again: nothing more
    after = billing(h.get_recurring, billing.ws, schedule["id"])
    assert after["runs"] == 1
    assert after["next_run"] == (today + relativedelta(months=1)).isoformat()  # 31 Jan -> 28 Feb, 29 Feb -> 29 Mar
    [issued] = billing(h.list_invoices, billing.ws, {"client_id": billing.client})["items"]
    assert issued["issue_date"] == today.isoformat()
    # a day later by the business's calendar, still nothing; a month later, the next one
    with UnitOfWork(billing.engine, lambda: now) as uow:
        assert h.run_due_recurring(uow, now + timedelta(days=1)) == 0
    later = datetime.combine(date.fromisoformat(after["next_run"]), datetime.min.time(), NEW_YORK) + timedelta(hours=9)
    with UnitOfWork(billing.engine, lambda: later) as uow:
        assert h.run_due_recurring(uow, later) == 1


def test_session_limits_count_real_elapsed_time_across_the_change(sqlite_engine, now):
    """The gateway holds the limits on the session's credential, with its own clock (UTC instants)."""
    engine = sqlite_engine("auth")
    policy = auth_domain.Policy()
    keys = credentials.Keys.parse("test:" + "k" * 40)
    with engine.begin() as conn, joined(conn) as uow:
        auth.apply_contact(
            uow,
            {
                "id": "c1",
                "workspace_id": "ws1",
                "client_id": "cl1",
                "email": "a@example.com",
                "name": "A",
                "portal_access": True,
                "version": 1,
            },
            now,
        )

    def sign_in() -> credentials.Session:
        with UnitOfWork(engine, lambda: now) as uow:
            [link] = auth.request_links(uow, "a@example.com", "10.0.0.1", now, policy)
            uow.commit()
        with UnitOfWork(engine, lambda: now) as uow:
            return credentials.read(
                auth.consume_link(uow, link["token"], None, now, None, policy, keys)["credential"], keys
            )

    # active every 29 minutes: the idle limit never ends it, the absolute limit (12 h) does, to the minute
    session, at = sign_in(), now
    while at + timedelta(minutes=29) < now + policy.session_absolute:
        at += timedelta(minutes=29)
        assert session.state(at, policy.limits) == "active"
        session = session.seen(at)  # the gateway's fresh credential
    assert session.state(now + policy.session_absolute - timedelta(minutes=1), policy.limits) == "active"
    assert session.state(now + policy.session_absolute + timedelta(minutes=1), policy.limits) == "expired"
    # a fresh session left alone for 31 minutes has gone idle, however the wall clocks were set
    idle = sign_in()
    assert idle.state(now + policy.session_idle - timedelta(minutes=1), policy.limits) == "active"
    assert idle.state(now + policy.session_idle + timedelta(minutes=1), policy.limits) == "idle"

"""Collection signals without a broker: the risk rule on fixed dates, the rollup's folding of signals,
and the billing handlers that keep and read it on an embedded database (the migration's backfill too)."""

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from chassis import db as dbmod
from chassis.errors import Invalid, NotFound
from services.billing import engagement as eng
from services.billing import handlers as h
from services.billing.handlers.engagement import record_signals
from services.billing.tables import client_engagement
from tests.unit.conftest import ROOT
from tests.unit.test_billing_handlers import db  # noqa: F401 - the same fixture (a handler runner on SQLite)

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
TODAY = date(2026, 11, 23)
DAY = timedelta(days=1)
LINE = [{"description": "Work", "quantity": 1, "unit_price": 10000}]


def fold(*signals) -> eng.Rollup:
    rollup = eng.Rollup()
    for signal, at in signals:
        rollup = eng.apply_signal(rollup, signal, at)
    return rollup


def owed(days_past_due: int, amount: int = 10000, currency: str = "USD") -> eng.OpenInvoice:
    return eng.OpenInvoice(TODAY - days_past_due * DAY, amount, currency)


def codes(summary) -> list[str]:
    return [r["code"] for r in summary["reasons"]]


# ---------------------------------------------------------------- the rule, on fixed dates


def test_a_client_with_nothing_overdue_and_no_signals_is_low_risk():
    summary = eng.summarize(eng.Rollup(), [owed(-10)], TODAY, NOW)
    assert (summary["risk"], summary["reasons"], summary["days_overdue"]) == ("low", [], 0)
    assert summary["overdue_amount"] == [] and summary["outstanding"] == [{"amount": 10000, "currency": "USD"}]


def test_overdue_is_medium_up_to_30_days_and_high_after():
    due_today = eng.summarize(eng.Rollup(), [owed(0)], TODAY, NOW)
    assert (due_today["risk"], due_today["days_overdue"]) == ("low", 0)  # due today is not late yet
    one = eng.summarize(eng.Rollup(), [owed(1)], TODAY, NOW)
    assert (one["risk"], codes(one), one["days_overdue"]) == ("medium", ["overdue"], 1)
    thirty = eng.summarize(eng.Rollup(), [owed(30)], TODAY, NOW)
    assert (thirty["risk"], codes(thirty)) == ("medium", ["overdue"])
    late = eng.summarize(eng.Rollup(), [owed(5), owed(31)], TODAY, NOW)
    assert (late["risk"], codes(late), late["days_overdue"], late["overdue_invoices"]) == (
        "high",
        ["overdue_over_30_days"],
        31,
        2,
    )
    assert late["reasons"][0]["detail"] == "An invoice is 31 days overdue."


def test_overdue_amounts_are_summed_per_currency_in_minor_units():
    summary = eng.summarize(
        eng.Rollup(),
        [owed(3, 1050, "USD"), owed(40, 2000, "EUR"), owed(1, 950, "USD"), owed(-5, 7000, "USD")],
        TODAY,
        NOW,
    )
    assert summary["overdue_amount"] == [{"amount": 2000, "currency": "EUR"}, {"amount": 2000, "currency": "USD"}]
    assert summary["outstanding"] == [{"amount": 2000, "currency": "EUR"}, {"amount": 9000, "currency": "USD"}]


def test_one_failed_payment_in_30_days_is_medium_two_are_high():
    one = fold(("failure", NOW - 10 * DAY))
    assert (eng.summarize(one, [], TODAY, NOW)["risk"], codes(eng.summarize(one, [], TODAY, NOW))) == (
        "medium",
        ["failed_payment"],
    )
    two = fold(("failure", NOW - 29 * DAY), ("failure", NOW - DAY))
    assert codes(eng.summarize(two, [], TODAY, NOW)) == ["repeated_failed_payments"]
    assert eng.summarize(two, [], TODAY, NOW)["risk"] == "high"


def test_failures_fade_after_30_days():
    old = fold(("failure", NOW - 40 * DAY), ("failure", NOW - 31 * DAY))
    assert eng.summarize(old, [], TODAY, NOW)["risk"] == "low"
    mixed = fold(("failure", NOW - 40 * DAY), ("failure", NOW - 2 * DAY))
    summary = eng.summarize(mixed, [], TODAY, NOW)
    assert (summary["risk"], codes(summary), summary["failed_payments"]) == ("medium", ["failed_payment"], 2)


def test_failures_arriving_out_of_order_keep_the_two_latest():
    rollup = fold(("failure", NOW - DAY), ("failure", NOW - 50 * DAY), ("failure", NOW - 3 * DAY))
    assert (rollup.last_failed_at, rollup.previous_failed_at, rollup.failed_payments) == (NOW - DAY, NOW - 3 * DAY, 3)
    assert eng.failures_within(rollup, NOW) == 2


def test_a_reminder_without_a_view_since_is_high_while_something_is_owed():
    reminded = fold(("view", NOW - 10 * DAY), ("reminder", NOW - 3 * DAY), ("reminder", NOW - DAY))
    assert reminded.unanswered_reminder_since == NOW - 3 * DAY  # the first unanswered one
    summary = eng.summarize(reminded, [owed(-2)], TODAY, NOW)
    assert (summary["risk"], codes(summary)) == ("high", ["reminders_unanswered"])
    assert summary["reasons"][0]["detail"] == "Reminders were sent and no invoice was viewed since the first."
    assert summary["unanswered_reminder_since"] == (NOW - 3 * DAY).isoformat()
    assert eng.summarize(reminded, [], TODAY, NOW)["risk"] == "low"  # paid up: nothing to chase


def test_a_view_after_the_reminder_answers_it_and_a_later_reminder_starts_again():
    answered = fold(("reminder", NOW - 3 * DAY), ("view", NOW - 2 * DAY))
    assert answered.unanswered_reminder_since is None
    assert eng.summarize(answered, [owed(-2)], TODAY, NOW)["risk"] == "low"
    again = eng.apply_signal(answered, "reminder", NOW - DAY)
    assert again.unanswered_reminder_since == NOW - DAY and again.reminders_sent == 2
    assert eng.summarize(again, [owed(-2)], TODAY, NOW)["risk"] == "high"


def test_every_rule_that_applies_is_a_reason():
    rollup = fold(("failure", NOW - 5 * DAY), ("reminder", NOW - 4 * DAY))
    summary = eng.summarize(rollup, [owed(12)], TODAY, NOW)
    assert summary["risk"] == "high"
    assert [(r["level"], r["code"]) for r in summary["reasons"]] == [
        ("medium", "overdue"),
        ("medium", "failed_payment"),
        ("high", "reminders_unanswered"),
    ]


def test_signals_count_and_keep_the_latest_times():
    rollup = fold(
        ("view", NOW - 2 * DAY),
        ("view", NOW - 5 * DAY),
        ("sign_in", NOW - DAY),
        ("sign_in", NOW - 9 * DAY),
        ("attempt", NOW - DAY),
        ("attempt", NOW - DAY),
        ("failure", NOW - DAY),
        ("payment", NOW - DAY),
    )
    summary = eng.summarize(rollup, [], TODAY, NOW)
    assert {
        k: summary[k]
        for k in ("portal_views", "payment_attempts", "failed_payments", "successful_payments", "reminders_sent")
    } == {"portal_views": 2, "payment_attempts": 2, "failed_payments": 1, "successful_payments": 1, "reminders_sent": 0}
    assert summary["last_viewed_at"] == (NOW - 2 * DAY).isoformat()
    assert summary["last_signed_in_at"] == (NOW - DAY).isoformat()
    with pytest.raises(ValueError, match="unknown signal"):
        eng.apply_signal(rollup, "clicked", NOW)


def test_listing_order_is_riskiest_then_longest_overdue_then_name():
    rows = [
        {"risk": "low", "days_overdue": 0, "client_name": "A"},
        {"risk": "high", "days_overdue": 3, "client_name": "B"},
        {"risk": "medium", "days_overdue": 9, "client_name": "C"},
        {"risk": "high", "days_overdue": 45, "client_name": "D"},
        {"risk": "high", "days_overdue": 3, "client_name": "A"},
    ]
    assert [(r["risk"], r["client_name"]) for r in sorted(rows, key=eng.sort_key)] == [
        ("high", "D"),
        ("high", "A"),
        ("high", "B"),
        ("medium", "C"),
        ("low", "A"),
    ]


# ---------------------------------------------------------------- the handlers, on an embedded database


@pytest.fixture
def ws(db):
    workspace = db(h.create_workspace, {"name": "Acme", "email": "acme@example.com", "timezone": "America/New_York"})
    client = db(h.create_client, workspace["id"], {"name": "Client One"})
    db(h.add_contact, workspace["id"], client["id"], {"email": "one@example.com", "portal_access": True})
    return workspace["id"], client["id"]


def test_every_portal_view_counts_and_a_reminder_counts_once(db, ws):
    ws_id, client = ws
    # sent two days ago, due in 3 days in New York: the default "3 days before" reminder is due today
    invoice = db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-11-21", "due_date": "2026-11-26"},
        now=NOW - timedelta(days=2),
    )
    assert db(h.client_engagement, ws_id, client)["risk"] == "low"
    assert db(h.run_reminders) == 1
    assert db(h.run_reminders) == 0  # the next sweep (or another replica) sends nothing twice
    reminded = db(h.client_engagement, ws_id, client)
    assert (reminded["reminders_sent"], reminded["risk"], codes(reminded)) == (1, "high", ["reminders_unanswered"])
    assert reminded["last_reminder_at"] == NOW.isoformat()
    later = NOW + timedelta(hours=2)
    db(h.mark_invoice_viewed, ws_id, client, invoice["id"], now=later)
    db(h.mark_invoice_viewed, ws_id, client, invoice["id"], now=later)
    viewed = db(h.client_engagement, ws_id, client, now=later)
    assert (viewed["portal_views"], viewed["last_viewed_at"], viewed["risk"]) == (2, later.isoformat(), "low")


def test_several_payments_folded_in_at_once_count_as_each_one_alone(db, ws):
    ws_id, client = ws
    moments = [NOW - timedelta(days=2), NOW, NOW - timedelta(days=1)]  # events may come out of order
    with dbmod.UnitOfWork(db.engine, lambda: NOW) as uow:
        assert record_signals(uow, NOW, ws_id, client, "payment", moments)
        assert not record_signals(uow, NOW, ws_id, "no-such-client", "payment", moments)
        uow.commit()
    together = db(h.client_engagement, ws_id, client)
    for at in moments:
        db(h.record_signal, ws_id, client, "payment", at)
    alone = db(h.client_engagement, ws_id, client)
    assert together["successful_payments"] == 3 and alone["successful_payments"] == 6
    assert together["last_paid_at"] == alone["last_paid_at"] == NOW.isoformat()


def test_signals_for_one_client_on_the_embedded_database_queue_up_and_all_count(db, ws):
    """SQLite has no FOR UPDATE: a signal recorded while another transaction holds an uncounted one
    waits for it, then counts on top of it (a read before the write would have counted a stale row)."""
    ws_id, client = ws
    db(h.record_signal, ws_id, client, "view")
    second_done = threading.Event()

    def second_view():
        db(h.record_signal, ws_id, client, "view")
        second_done.set()

    with dbmod.UnitOfWork(db.engine, lambda: NOW) as first:
        assert h.record_signal(first, NOW, ws_id, client, "view")
        other = threading.Thread(target=second_view)
        other.start()
        assert not second_done.wait(0.3)  # it waits for the first transaction
        first.commit()
    other.join(10)
    assert second_done.is_set()
    assert db(h.client_engagement, ws_id, client)["portal_views"] == 3


def test_days_overdue_use_the_workspaces_date(db, ws):
    ws_id, client = ws
    db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-10-01", "due_date": "2026-11-22"},
    )
    # 03:00 UTC on the 23rd is still the 22nd in New York: due today there, not overdue
    early = datetime(2026, 11, 23, 3, 0, tzinfo=timezone.utc)
    assert db(h.client_engagement, ws_id, client, now=early)["days_overdue"] == 0
    summary = db(h.client_engagement, ws_id, client, now=datetime(2026, 11, 23, 6, 0, tzinfo=timezone.utc))
    assert (summary["days_overdue"], summary["risk"], summary["as_of"]) == (1, "medium", "2026-11-23")
    assert summary["overdue_amount"] == [{"amount": 10000, "currency": "USD"}]


def test_paid_void_draft_and_archived_invoices_are_not_overdue(db, ws):
    ws_id, client = ws
    past = {"client_id": client, "lines": LINE, "issue_date": "2026-09-01", "due_date": "2026-09-15"}
    paid = db(h.create_invoice, ws_id, {**past, "send": True})
    db(h.record_payment, ws_id, {"invoice_id": paid["id"], "amount": 10000, "method": "cash"})
    db(h.void_invoice, ws_id, db(h.create_invoice, ws_id, {**past, "send": True})["id"])
    db(h.create_invoice, ws_id, past)  # a draft
    db(h.archive_invoice, ws_id, db(h.create_invoice, ws_id, {**past, "send": True})["id"])
    summary = db(h.client_engagement, ws_id, client)
    assert (summary["days_overdue"], summary["overdue_amount"], summary["risk"]) == (0, [], "low")


def test_another_workspaces_client_is_not_found_and_gets_no_signals(db, ws):
    ws_id, client = ws
    other = db(h.create_workspace, {"name": "Other", "email": "other@example.com"})["id"]
    with pytest.raises(NotFound):
        db(h.client_engagement, other, client)
    assert db(h.record_signal, other, client, "failure") is False
    assert [s["client_id"] for s in db(h.list_engagement, other)["items"]] == []
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(client_engagement)).scalar_one() == 0


def test_the_list_is_sorted_filtered_paged_and_refuses_bad_input(db, ws):
    ws_id, quiet = ws
    late = db(h.create_client, ws_id, {"name": "Late Ltd"})["id"]
    shaky = db(h.create_client, ws_id, {"name": "Shaky Co"})["id"]
    db(
        h.create_invoice,
        ws_id,
        {"client_id": late, "lines": LINE, "send": True, "issue_date": "2026-09-01", "due_date": "2026-10-01"},
    )
    db(h.record_signal, ws_id, shaky, "failure", at=NOW - DAY)
    listed = db(h.list_engagement, ws_id)
    assert [(s["client_name"], s["risk"]) for s in listed["items"]] == [
        ("Late Ltd", "high"),
        ("Shaky Co", "medium"),
        ("Client One", "low"),
    ]
    assert listed["items"][0]["days_overdue"] == 53 and listed["total"] == 3
    assert [s["client_id"] for s in db(h.list_engagement, ws_id, "medium")["items"]] == [shaky]
    page = db(h.list_engagement, ws_id, None, 1, 1)
    assert ([s["client_id"] for s in page["items"]], page["total"]) == ([shaky], 3)
    assert quiet not in [s["client_id"] for s in db(h.list_engagement, ws_id, "high")["items"]]
    with pytest.raises(Invalid) as bad:
        db(h.list_engagement, ws_id, "extreme")
    assert bad.value.fields == {"risk": "one of high, medium, low"}
    with pytest.raises(Invalid):
        db(h.list_engagement, ws_id, None, "ten")


def test_the_migration_backfills_the_rollup_from_the_activity_timeline(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.sqlite3'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(ROOT / "services" / "billing" / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url)
    engine = dbmod.make_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    t = lambda days: (NOW - days * DAY).replace(tzinfo=None)  # noqa: E731 - SQLite stores naive UTC
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO workspaces (id, name, email, phone, address, currency, locale, timezone, "
                "created_at) VALUES ('w', 'W', 'w@example.com', '', '', 'USD', 'en_US', 'UTC', :t)"
            ),
            {"t": t(100)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO clients (id, workspace_id, name, address, phone, currency, locale, timezone, "
                "created_at) VALUES ('c', 'w', 'C', '', '', 'USD', 'en_US', 'UTC', :t)"
            ),
            {"t": t(100)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO payments (id, workspace_id, client_id, amount, currency, method, source, "
                "received_at) VALUES ('card-1', 'w', 'c', 100, 'USD', 'card', 'stripe', :t), "
                "('cash-1', 'w', 'c', 100, 'USD', 'cash', 'offline', :t)"
            ),
            {"t": t(1)},
        )
        timeline = [
            ("invoice.viewed", 9, {}),
            ("reminder.sent", 8, {}),
            ("payment.attempted", 7, {}),
            ("payment.failed", 7, {}),
            ("payment.failed", 3, {}),
            ("portal.signed_in", 2, {}),
            ("reminder.sent", 2, {}),
            ("payment.recorded", 1, {"payment_id": "card-1"}),
            ("payment.recorded", 1, {"payment_id": "cash-1"}),
            ("invoice.sent", 1, {}),
            ("portal.signed_in", 9, {}),
        ]
        for kind, days, data in timeline:
            conn.execute(
                sa.text(
                    "INSERT INTO activities (workspace_id, client_id, kind, summary, data, occurred_at) "
                    "VALUES ('w', 'c', :kind, 'x', :data, :t)"
                ),
                {"kind": kind, "data": __import__("json").dumps(data), "t": t(days)},
            )
    dbmod.upgrade(url, ROOT / "services" / "billing" / "migrations")
    with engine.connect() as conn:
        row = conn.execute(sa.select(client_engagement)).one()
    rollup = eng.Rollup.from_row(row)
    assert (
        rollup.portal_views,
        rollup.reminders_sent,
        rollup.payment_attempts,
        rollup.failed_payments,
        rollup.successful_payments,
    ) == (1, 2, 1, 2, 1)
    assert (rollup.last_failed_at, rollup.previous_failed_at) == (NOW - 3 * DAY, NOW - 7 * DAY)
    assert rollup.last_signed_in_at == NOW - 2 * DAY
    assert rollup.unanswered_reminder_since == NOW - 8 * DAY  # no view after the first reminder

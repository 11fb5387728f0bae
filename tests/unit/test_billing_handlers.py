"""Billing use cases on an embedded database: the rules a business relies on, without a broker."""

import json
from datetime import date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Conflict, Invalid, NotFound
from chassis.events import OUTBOX
from services.billing import handlers as h
from services.billing.handlers.schedules import due_reminders
from services.billing.settings_model import Reminders

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
LINE = [{"description": "Work", "quantity": 1, "unit_price": 10000}]


@pytest.fixture
def db(sqlite_engine):
    engine = sqlite_engine("billing")

    def run(fn, *args, now=NOW, **kwargs):
        with UnitOfWork(engine, lambda: now) as uow:
            result = fn(uow, now, *args, **kwargs)
            uow.commit()
            return result

    run.engine = engine
    return run


@pytest.fixture
def ws(db):
    workspace = db(h.create_workspace, {"name": "Acme", "email": "acme@example.com", "timezone": "America/New_York"})
    client = db(h.create_client, workspace["id"], {"name": "Client One", "address": "Old Street 1"})
    db(h.add_contact, workspace["id"], client["id"], {"email": "one@example.com", "portal_access": True})
    return workspace["id"], client["id"]


def events(db, event_type):
    with db.engine.connect() as conn:
        return conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).scalars().all()


def test_issued_invoices_keep_the_client_details_they_were_issued_with(db, ws):
    ws_id, client = ws
    sent = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    draft = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE})
    db(h.update_client, ws_id, client, {"address": "New Avenue 2"}, from_portal=True)
    assert db(h.get_invoice, ws_id, sent["id"])["client"]["address"] == "Old Street 1"
    assert db(h.get_invoice, ws_id, draft["id"])["client"]["address"] == "New Avenue 2"  # not issued yet


def test_portal_edits_are_limited_to_the_clients_own_details(db, ws):
    ws_id, client = ws
    with pytest.raises(Invalid):
        db(h.update_client, ws_id, client, {"currency": "EUR"}, from_portal=True)


def test_a_rejected_request_changes_nothing(db, ws):
    ws_id, client = ws
    with db.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one()
    with pytest.raises(Invalid):
        db(h.create_invoice, ws_id, {"client_id": client, "lines": [{"description": "x", "unit_price": -5}]})
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(OUTBOX)).scalar_one() == before
    assert db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE})["number"].endswith("00001")


def test_lookups_across_workspaces_are_not_found(db, ws):
    ws_id, client = ws
    other = db(h.create_workspace, {"name": "Other", "email": "o@example.com"})["id"]
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    for call in (
        lambda: db(h.get_invoice, other, invoice["id"]),
        lambda: db(h.get_client, other, client),
        lambda: db(h.void_invoice, other, invoice["id"]),
        lambda: db(h.record_payment, other, {"invoice_id": invoice["id"], "amount": 1}),
    ):
        with pytest.raises(NotFound):
            call()


def test_quotes_are_accepted_or_rejected_once_and_never_after_expiry(db, ws):
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"auto_convert_accepted_quotes": True}})
    quote = db(
        h.create_quote,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-11-20", "expiry_date": "2026-11-30"},
    )
    accepted = db(h.accept_quote, ws_id, quote["id"], "one@example.com", "198.51.100.4", "One Person")
    assert (accepted["status"], accepted["accepted_ip"], accepted["signature_name"]) == (
        "accepted",
        "198.51.100.4",
        "One Person",
    )
    assert accepted["invoice_id"]  # converted automatically
    with pytest.raises(Conflict):
        db(h.reject_quote, ws_id, quote["id"], "one@example.com", "changed my mind")
    old = db(
        h.create_quote,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-10-01", "expiry_date": "2026-10-31"},
    )
    assert old["display_status"] == "expired"
    with pytest.raises(Conflict):
        db(h.accept_quote, ws_id, old["id"], "one@example.com")


def test_credit_cannot_be_applied_beyond_what_is_available(db, ws):
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    db(h.issue_credit_note, ws_id, {"client_id": client, "amount": 3000})
    with pytest.raises(Conflict):
        db(h.apply_credit, ws_id, invoice["id"], 3001)
    assert db(h.apply_credit, ws_id, invoice["id"], 3000)["balance"] == 7000
    with pytest.raises(Conflict):
        db(h.apply_credit, ws_id, invoice["id"], 1)


def test_reminders_are_announced_once_each(db, ws):
    ws_id, client = ws
    due = date(2026, 11, 24)
    db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-11-01", "due_date": due.isoformat()},
        now=datetime(2026, 11, 1, 15, 0, tzinfo=timezone.utc),
    )
    day_before = datetime(2026, 11, 21, 15, 0, tzinfo=timezone.utc)  # 3 days before, New York time
    assert db(h.run_reminders, now=day_before) == 1
    assert db(h.run_reminders, now=day_before) == 0
    assert db(h.run_reminders, now=day_before + timedelta(days=3)) == 1  # on the due date
    assert db(h.run_reminders, now=day_before + timedelta(days=4)) == 1  # one day after
    kinds = sorted(b.split('"kind": "')[1].split('"')[0] for b in events(db, "invoice.reminder"))
    assert kinds == ["after_1", "before_3", "on_due"]
    assert len(events(db, "invoice.overdue")) == 1


def test_due_reminders_follow_the_workspace_settings_and_overdue_comes_regardless():
    due = date(2026, 3, 10)
    sends = Reminders()  # 3 days before, on the due date, 1, 7 and 14 days after
    assert due_reminders(sends, due, date(2026, 3, 7)) == ["before_3"]
    assert due_reminders(sends, due, date(2026, 3, 10)) == ["on_due"]
    # a kind stays due for the catch-up window (3 days): a sweep after downtime still sends it once
    assert due_reminders(sends, due, date(2026, 3, 9)) == ["before_3"]
    # "due today" is never due once the due date has passed
    assert due_reminders(sends, due, date(2026, 3, 11)) == ["after_1", "overdue"]
    assert due_reminders(sends, due, date(2026, 3, 15)) == ["overdue"]
    # an invoice issued on a reminder's day, or after it, has not had that reminder's day
    assert due_reminders(sends, due, date(2026, 3, 11), issued_on=date(2026, 3, 11)) == ["overdue"]
    assert due_reminders(sends, due, date(2026, 3, 10), issued_on=date(2026, 3, 7)) == ["on_due"]
    assert due_reminders(sends, due, date(2026, 3, 10), issued_on=date(2026, 3, 10)) == []
    assert due_reminders(sends, due, date(2026, 3, 17)) == ["after_7", "overdue"]
    assert due_reminders(Reminders(enabled=False), due, date(2026, 3, 11)) == ["overdue"]
    assert due_reminders(Reminders(enabled=False), due, date(2026, 3, 10)) == []


def test_a_business_reply_without_a_name_is_signed_with_the_business_s_name(db, ws):
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    unsigned = db(h.add_comment, ws_id, "invoice", invoice["id"], "business", "", "We got it.")
    signed = db(h.add_comment, ws_id, "invoice", invoice["id"], "business", "Sam at Acme", "Thanks.")
    assert (unsigned["author_name"], signed["author_name"]) == ("Acme", "Sam at Acme")
    announced = [json.loads(body)["data"]["author_name"] for body in events(db, "comment.added")]
    assert announced == ["Acme", "Sam at Acme"]  # what the reply email is signed with
    db(h.update_workspace, ws_id, {"name": "Acme Studio"})
    renamed = db(h.add_comment, ws_id, "invoice", invoice["id"], "business", "", "Any news?")
    assert renamed["author_name"] == "Acme Studio"


def reminder_kinds(db):
    return [json.loads(body)["data"]["kind"] for body in events(db, "invoice.reminder")]


def test_an_invoice_issued_after_its_due_date_gets_no_due_today_reminder(db, ws):
    """Sent on 7 December, due on 6 December (the business's calendar, New York): no "due today"
    reminder, no reminder in the same sweep as its email's day, only the invoice turning overdue."""
    ws_id, client = ws
    issued = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)  # 10:00 in New York
    db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-12-01", "due_date": "2026-12-06"},
        now=issued,
    )
    assert db(h.run_reminders, now=issued + timedelta(seconds=1)) == 0
    assert reminder_kinds(db) == []
    assert len(events(db, "invoice.overdue")) == 1
    for hours in (1, 24, 48, 72):  # the "1 day after" reminder's day was the day it was sent: never sent
        assert db(h.run_reminders, now=issued + timedelta(hours=hours)) == 0
    assert db(h.run_reminders, now=datetime(2026, 12, 13, 15, 0, tzinfo=timezone.utc)) == 1  # 7 days after
    assert reminder_kinds(db) == ["after_7"]
    assert len(events(db, "invoice.overdue")) == 1


@pytest.mark.parametrize("due", ["2026-12-07", "2026-12-10"])
def test_no_reminder_within_a_day_of_the_invoice_email(db, ws, due):
    """Due today or in three days: the invoice's email says so; no "due soon" or "due today" a minute later."""
    ws_id, client = ws
    issued = datetime(2026, 12, 7, 15, 0, tzinfo=timezone.utc)
    db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-12-07", "due_date": due},
        now=issued,
    )
    for minutes in (1, 60, 8 * 60):
        assert db(h.run_reminders, now=issued + timedelta(minutes=minutes)) == 0
    assert reminder_kinds(db) == []
    assert events(db, "invoice.overdue") == []


def test_a_reminder_due_the_day_after_the_invoice_email_waits_a_full_day(db, ws):
    """Sent late in the evening, due in two days: the "due today" reminder comes on the due date, but
    the "before" reminder of the next morning waits until the email is a day old."""
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"reminders": {"days_before": [1]}}})
    issued = datetime(2026, 12, 8, 3, 0, tzinfo=timezone.utc)  # 22:00 on 7 December in New York
    db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-12-07", "due_date": "2026-12-09"},
        now=issued,
    )
    assert db(h.run_reminders, now=datetime(2026, 12, 8, 6, 0, tzinfo=timezone.utc)) == 0  # 8 Dec, 01:00
    assert db(h.run_reminders, now=issued + timedelta(hours=24)) == 1  # 8 Dec, 22:00
    assert db(h.run_reminders, now=datetime(2026, 12, 9, 15, 0, tzinfo=timezone.utc)) == 1
    assert reminder_kinds(db) == ["before_1", "on_due"]


def test_a_sweep_after_downtime_sends_one_reminder_per_invoice(db, ws):
    """Several reminders' days passed while no sweep ran: one email, the latest, and none of the
    earlier ones later."""
    ws_id, client = ws
    db(h.update_workspace, ws_id, {"settings": {"reminders": {"days_after": [1, 2]}}})
    db(
        h.create_invoice,
        ws_id,
        {"client_id": client, "lines": LINE, "send": True, "issue_date": "2026-11-01", "due_date": "2026-11-20"},
        now=datetime(2026, 11, 1, 15, 0, tzinfo=timezone.utc),
    )
    assert db(h.run_reminders, now=datetime(2026, 11, 22, 15, 0, tzinfo=timezone.utc)) == 1
    assert reminder_kinds(db) == ["after_2"]
    assert len(events(db, "invoice.overdue")) == 1
    assert db(h.run_reminders, now=datetime(2026, 11, 22, 16, 0, tzinfo=timezone.utc)) == 0
    assert db(h.run_reminders, now=datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)) == 0
    assert reminder_kinds(db) == ["after_2"]


def test_a_sweep_after_the_reminders_went_out_writes_nothing(db, ws):
    """An overdue invoice is told once; every later sweep skips it with no write at all (not an insert
    that the unique key refuses), so a sweep costs one read however many invoices are overdue."""
    ws_id, client = ws
    for day in (1, 2, 3):
        db(
            h.create_invoice,
            ws_id,
            {
                "client_id": client,
                "lines": LINE,
                "send": True,
                "issue_date": f"2026-10-0{day}",
                "due_date": "2026-10-15",
            },
        )
    later = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)  # long past due: only "overdue" is owed
    db(h.run_reminders, now=later)
    assert len(events(db, "invoice.overdue")) == 3
    statements: list[str] = []

    def record(conn, cursor, statement, *rest):
        statements.append(statement)

    sa.event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert db(h.run_reminders, now=later + timedelta(minutes=1)) == 0
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", record)
    assert statements  # the sweep did read
    assert not [sql for sql in statements if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert len(events(db, "invoice.overdue")) == 3


def test_invoice_list_filters_sorts_and_pages(db, ws):
    ws_id, client = ws
    made = [
        db(
            h.create_invoice,
            ws_id,
            {
                "client_id": client,
                "send": True,
                "issue_date": f"2026-11-0{i}",
                "lines": [{"description": "x", "unit_price": 1000 * i}],
            },
        )
        for i in range(1, 6)
    ]
    db(h.record_payment, ws_id, {"invoice_id": made[0]["id"], "amount": 1000})
    listing = db(h.list_invoices, ws_id, {"status": "unpaid", "sort": "-amount", "limit": 2})
    assert listing["total"] == 4 and [i["total"] for i in listing["items"]] == [5000, 4000]
    assert [i["number"] for i in db(h.list_invoices, ws_id, {"status": "paid"})["items"]] == [made[0]["number"]]
    assert db(h.list_invoices, ws_id, {"search": made[2]["number"][-3:]})["total"] == 1
    with pytest.raises(Invalid):
        db(h.list_invoices, ws_id, {"status": "bogus"})
    assert "client" not in listing  # the business's listing; the portal's carries the reader's settings:
    portal = db(h.list_invoices, ws_id, {"client_id": client, "portal": True})
    assert portal["client"] == {
        key: value
        for key, value in db(h.get_client, ws_id, client).items()
        if key in ("name", "currency", "locale", "timezone")
    }


def test_events_carry_every_state_change(db, ws):
    ws_id, client = ws
    invoice = db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE, "send": True})
    db(h.record_payment, ws_id, {"invoice_id": invoice["id"], "amount": 10000})
    for event_type in (
        "workspace.created",
        "client.created",
        "contact.created",
        "invoice.created",
        "invoice.sent",
        "invoice.payment_applied",
        "invoice.paid",
    ):
        assert events(db, event_type), event_type


def test_a_client_with_documents_keeps_its_currency(db, ws):
    ws_id, client = ws
    assert db(h.update_client, ws_id, client, {"currency": "EUR"})["currency"] == "EUR"  # nothing issued yet
    db(h.create_invoice, ws_id, {"client_id": client, "lines": LINE})
    with pytest.raises(Conflict):
        db(h.update_client, ws_id, client, {"currency": "JPY"})


ONE_LINE = [{"description": "Work", "quantity": 1, "unit_price": 10000}]


def sent_with_a_comment(db, ws_id: str, client: str, kind: str, comment: str) -> dict:
    """An invoice or quote sent to the client, with one comment of the business on it."""
    create = h.create_quote if kind == "quote" else h.create_invoice
    document = db(create, ws_id, {"client_id": client, "lines": ONE_LINE, "send": True})
    db(h.add_comment, ws_id, kind, document["id"], "business", "Acme", comment)
    return document


def test_the_portal_quote_page_is_one_call(db, ws):
    ws_id, client = ws
    quote = sent_with_a_comment(db, ws_id, client, "quote", "Valid for a month")

    shown = db(h.view_quote, ws_id, client, quote["id"])

    assert shown["quote"] == db(h.get_quote, ws_id, quote["id"], client_id=client)
    assert shown["comments"] == db(h.list_comments, ws_id, "quote", quote["id"], client_id=client)
    assert [comment["body"] for comment in shown["comments"]] == ["Valid for a month"]
    other = db(h.create_client, ws_id, {"name": "Client Two"})["id"]
    with pytest.raises(NotFound):  # another client's quote is not there
        db(h.view_quote, ws_id, other, quote["id"])
    draft = db(h.create_quote, ws_id, {"client_id": client, "lines": ONE_LINE})
    with pytest.raises(NotFound):  # nor is a draft its client has not been sent
        db(h.view_quote, ws_id, client, draft["id"])
    for nobody in (None, ""):  # without a client, nothing (not the workspace's every quote)
        with pytest.raises(NotFound):
            db(h.view_quote, ws_id, nobody, quote["id"])


def test_the_portal_invoice_page_is_one_call_that_records_the_view_once(db, ws):
    ws_id, client = ws
    invoice = sent_with_a_comment(db, ws_id, client, "invoice", "Thanks for your business")

    shown = db(h.view_invoice, ws_id, client, invoice["id"])
    again = db(h.view_invoice, ws_id, client, invoice["id"])

    assert shown["invoice"] == db(h.get_invoice, ws_id, invoice["id"], client_id=client)
    assert shown["invoice"]["status"] == "viewed" and again == shown
    assert shown["comments"] == db(h.list_comments, ws_id, "invoice", invoice["id"], client_id=client)
    assert [comment["body"] for comment in shown["comments"]] == ["Thanks for your business"]
    assert len(events(db, "invoice.viewed")) == 1  # the first view changes the invoice; each is in the timeline
    timeline = [a["summary"] for a in db(h.list_activity, ws_id, client)]
    assert timeline.count(f"Invoice {invoice['number']} viewed") == 2

    other = db(h.create_client, ws_id, {"name": "Client Two"})["id"]
    with pytest.raises(NotFound):  # another client's invoice: not there, and nothing recorded
        db(h.view_invoice, ws_id, other, invoice["id"])
    for nobody in (None, ""):  # nor for no client at all
        with pytest.raises(NotFound):
            db(h.view_invoice, ws_id, nobody, invoice["id"])
    assert [a["summary"] for a in db(h.list_activity, ws_id, other)] == ["Client account created"]
    assert [a["summary"] for a in db(h.list_activity, ws_id, client)].count(f"Invoice {invoice['number']} viewed") == 2


def test_the_numbers_of_a_clients_documents_come_in_one_call_with_whether_the_portal_shows_each(db, ws):
    ws_id, client = ws
    kept = db(h.create_invoice, ws_id, {"client_id": client, "lines": ONE_LINE, "send": True})
    archived = db(h.create_invoice, ws_id, {"client_id": client, "lines": ONE_LINE, "send": True})
    db(h.archive_invoice, ws_id, archived["id"])
    draft = db(h.create_invoice, ws_id, {"client_id": client, "lines": ONE_LINE})
    quote = db(h.create_quote, ws_id, {"client_id": client, "lines": ONE_LINE, "send": True})
    other = db(h.create_client, ws_id, {"name": "Client Two"})["id"]
    theirs = db(h.create_invoice, ws_id, {"client_id": other, "lines": ONE_LINE, "send": True})
    asked = [kept["id"], archived["id"], draft["id"], theirs["id"], "no-such-invoice", kept["id"]]

    found = db(h.document_numbers, ws_id, client, asked, [quote["id"]])

    assert found == {
        "invoices": {
            kept["id"]: {"number": kept["number"], "available": True},
            archived["id"]: {"number": archived["number"], "available": False},  # archived: not in the portal
            draft["id"]: {"number": draft["number"], "available": False},
        },  # another client's invoice and an unknown id are left out
        "quotes": {quote["id"]: {"number": quote["number"], "available": True}},
    }
    db(h.archive_invoice, ws_id, archived["id"], archived=False)
    assert db(h.document_numbers, ws_id, client, [archived["id"]], [])["invoices"][archived["id"]]["available"]
    for nobody in (None, ""):  # without a client, nothing (not the workspace's every invoice)
        assert db(h.document_numbers, ws_id, nobody, [kept["id"]], [quote["id"]]) == {"invoices": {}, "quotes": {}}
    other_ws = db(h.create_workspace, {"name": "Other", "email": "o@example.com", "timezone": "UTC"})["id"]
    assert db(h.document_numbers, other_ws, client, [kept["id"]], []) == {"invoices": {}, "quotes": {}}


@pytest.mark.parametrize(
    "invoice_ids,quote_ids,field",
    [
        ("inv-1", [], "invoice_ids"),
        ([], None, "quote_ids"),
        ([1], [], "invoice_ids"),
        ([""], [], "invoice_ids"),
        (["x" * 37], [], "invoice_ids"),
        ([f"inv-{i}" for i in range(501)], [], "invoice_ids"),
    ],
)
def test_document_numbers_refuses_what_is_not_a_short_list_of_ids(db, ws, invoice_ids, quote_ids, field):
    ws_id, client = ws
    with pytest.raises(Invalid) as refused:
        db(h.document_numbers, ws_id, client, invoice_ids, quote_ids)
    assert field in refused.value.fields

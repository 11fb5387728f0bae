"""Work that happens on time: recurring invoices and payment reminders. Both are safe with several
billing replicas running the same timer: a conditional update or a unique row decides who does it."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis.errors import Conflict, Invalid, ServiceError
from chassis.fields import flag, text
from chassis.sql import json_array_agg
from services.billing import domain
from services.billing.handlers.common import (
    check_fields,
    check_reverse_charge,
    client_row,
    get_scoped,
    iso,
    new_id,
    parse_date,
    parse_lines,
    portal_recipients,
    record_activity,
    settings_of,
    today_in,
    workspace_row,
    workspace_today,
)
from services.billing.handlers.documents import create_invoice
from services.billing.handlers.engagement import record_signal
from services.billing.tables import invoice_disputes, invoices, recurring_invoices, reminders_sent, workspaces

# An invoice with an open dispute (handlers/disputes.py) gets no reminders while it is open.
UNDER_DISPUTE = sa.exists().where(invoice_disputes.c.invoice_id == invoices.c.id, invoice_disputes.c.status == "open")

__all__ = [
    "create_recurring",
    "update_recurring",
    "get_recurring",
    "list_recurring",
    "run_due_recurring",
    "run_reminders",
    "workspaces_due_recurring",
    "workspaces_with_open_invoices",
]

log = logging.getLogger(__name__)
RECURRING_FIELDS = {
    "client_id",
    "frequency",
    "interval",
    "start_date",
    "end_date",
    "payment_terms_days",
    "lines",
    "notes",
    "autopay",
    "active",
}


def recurring_view(row) -> dict:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "frequency": row.frequency,
        "interval": row.interval,
        "start_date": iso(row.start_date),
        "end_date": iso(row.end_date),
        "next_run": iso(row.next_run),
        "runs": row.runs,
        "payment_terms_days": row.payment_terms_days,
        "lines": row.lines,
        "notes": row.notes,
        "autopay": row.autopay,
        "active": row.active,
        "created_at": iso(row.created_at),
    }


def _schedule(data: dict, base=None) -> domain.Schedule:
    def pick(key):
        return data[key] if key in data else getattr(base, key, None)

    interval = pick("interval") if "interval" in data or base is not None else 1
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise Invalid("interval is a whole number.", interval="not an integer")
    start = parse_date(pick("start_date"), "start_date")
    if start is None:
        raise Invalid("start_date is required.", start_date="required")
    return domain.Schedule(
        text(pick("frequency"), "frequency", 10, null=""), interval, start, parse_date(pick("end_date"), "end_date")
    )


LINE_KEYS = ("description", "quantity", "unit_price", "tax_rate", "discount_percent", "tax_category")  # as sent


def create_recurring(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    check_fields(data, RECURRING_FIELDS)
    ws = workspace_row(uow, workspace_id)
    client = client_row(uow, workspace_id, data.get("client_id", ""))
    schedule = _schedule(data)
    lines = parse_lines(data.get("lines"))
    check_reverse_charge(ws, client, lines)
    terms = data.get("payment_terms_days", settings_of(ws).default_payment_terms_days)
    if isinstance(terms, bool) or not isinstance(terms, int) or not 0 <= terms <= 365:
        raise Invalid("payment_terms_days is 0 to 365.", payment_terms_days="out of range")
    recurring_id = new_id()
    uow.execute(
        recurring_invoices.insert().values(
            id=recurring_id,
            workspace_id=workspace_id,
            client_id=client.id,
            frequency=schedule.frequency,
            interval=schedule.interval,
            start_date=schedule.start_date,
            end_date=schedule.end_date,
            next_run=schedule.occurrence(0),
            runs=0,
            payment_terms_days=terms,
            lines=[{k: v for k, v in line.as_dict().items() if k in LINE_KEYS} for line in lines],
            notes=text(data.get("notes", ""), "notes", 5000),
            autopay=flag(data.get("autopay", False), "autopay"),
            active=flag(data.get("active", True), "active"),
            created_at=now,
        )
    )
    row = get_scoped(uow, recurring_invoices, workspace_id, recurring_id, "recurring invoice")
    uow.publish("recurring.created", workspace_id, recurring_view(row))
    return recurring_view(row)


def update_recurring(uow, now: datetime, workspace_id: str, recurring_id: str, data: dict) -> dict:
    allowed = RECURRING_FIELDS - {"client_id", "start_date", "frequency", "interval"}
    if not isinstance(data, dict) or set(data) - allowed:
        raise Invalid(
            "Unknown or unchangeable fields.",
            fields={k: "cannot be changed" for k in sorted(set(data or {}) - allowed)},
        )
    row = get_scoped(uow, recurring_invoices, workspace_id, recurring_id, "recurring invoice", lock=True)
    values: dict[str, object] = {}
    if "end_date" in data:
        end = parse_date(data["end_date"], "end_date")
        if end is not None and end < row.start_date:  # the schedule's start is not the caller's to change
            raise Conflict("The end date cannot be before the schedule's start date.", end_date="before start")
        schedule = _schedule({"end_date": end}, row)
        values["end_date"] = schedule.end_date
        values["next_run"] = schedule.occurrence(row.runs)
    if "lines" in data:
        values["lines"] = [
            {k: v for k, v in line.as_dict().items() if k in LINE_KEYS}
            for line in check_reverse_charge(
                workspace_row(uow, workspace_id),
                client_row(uow, workspace_id, row.client_id),
                parse_lines(data["lines"]),
            )
        ]
    for key in ("autopay", "active"):
        if key in data:
            values[key] = flag(data[key], key)
    if "notes" in data:
        values["notes"] = text(data["notes"], "notes", 5000, null="")  # null clears them
    if "payment_terms_days" in data:
        terms = data["payment_terms_days"]
        if not isinstance(terms, int) or isinstance(terms, bool) or not 0 <= terms <= 365:
            raise Invalid("payment_terms_days is 0 to 365.", payment_terms_days="out of range")
        values["payment_terms_days"] = terms
    if values:  # an empty PATCH changes nothing (an UPDATE with no SET is not SQL)
        uow.execute(recurring_invoices.update().where(recurring_invoices.c.id == recurring_id).values(**values))
    row = get_scoped(uow, recurring_invoices, workspace_id, recurring_id, "recurring invoice")
    uow.publish("recurring.updated", workspace_id, recurring_view(row))
    return recurring_view(row)


def get_recurring(uow, now: datetime, workspace_id: str, recurring_id: str) -> dict:
    return recurring_view(get_scoped(uow, recurring_invoices, workspace_id, recurring_id, "recurring invoice"))


def list_recurring(uow, now: datetime, workspace_id: str, client_id: str | None = None) -> list[dict]:
    query = sa.select(recurring_invoices).where(recurring_invoices.c.workspace_id == workspace_id)
    if client_id:
        query = query.where(recurring_invoices.c.client_id == client_id)
    return [recurring_view(r) for r in uow.execute(query.order_by(recurring_invoices.c.created_at)).all()]


def workspaces_due_recurring(uow, now: datetime) -> list[str]:
    """The workspaces with a recurring invoice whose next run may have come (today somewhere on Earth):
    the sweep's step that looks across workspaces."""
    latest_today = (now + timedelta(days=1)).date()
    return list(
        uow.execute(
            sa.select(recurring_invoices.c.workspace_id)
            .distinct()
            .where(recurring_invoices.c.active.is_(True), recurring_invoices.c.next_run <= latest_today)
        ).scalars()
    )


def workspaces_with_open_invoices(uow, now: datetime) -> list[str]:
    """The workspaces with an open invoice, which may be due a reminder."""
    return list(
        uow.execute(
            sa.select(invoices.c.workspace_id)
            .distinct()
            .where(
                invoices.c.status.in_(sorted(domain.OPEN_STATUSES)),
                invoices.c.kind == "standard",
                invoices.c.archived_at.is_(None),
            )
        ).scalars()
    )


def run_due_recurring(uow, now: datetime, workspace_id: str | None = None) -> int:
    """Generate every invoice whose period has come, catching up missed periods (in one workspace, or
    in all that the transaction can see). Each period is claimed with a compare-and-set on next_run,
    and the (schedule, period) unique key backs it up, so two replicas never make the same invoice twice."""
    made = 0
    query = (
        sa.select(recurring_invoices, workspaces.c.timezone)
        .join(workspaces, workspaces.c.id == recurring_invoices.c.workspace_id)
        .where(recurring_invoices.c.active.is_(True), recurring_invoices.c.next_run.is_not(None))
    )
    if workspace_id is not None:
        query = query.where(recurring_invoices.c.workspace_id == workspace_id)
    due = uow.execute(query).all()
    uow.rollback()
    for row in due:
        schedule = domain.Schedule(row.frequency, row.interval, row.start_date, row.end_date)
        runs, period = row.runs, row.next_run
        while period is not None and period <= workspace_today(row, now):
            following = schedule.occurrence(runs + 1)
            claimed = uow.execute(
                recurring_invoices.update()
                .where(
                    recurring_invoices.c.id == row.id,
                    recurring_invoices.c.next_run == period,
                    recurring_invoices.c.runs == runs,
                )
                .values(next_run=following, runs=runs + 1)
            ).rowcount
            if claimed != 1:
                uow.rollback()
                break  # another replica has this period
            try:
                create_invoice(
                    uow,
                    now,
                    row.workspace_id,
                    {
                        "client_id": row.client_id,
                        "issue_date": period.isoformat(),
                        "lines": row.lines,
                        "payment_terms_days": row.payment_terms_days,
                        "notes": row.notes,
                        "send": True,
                    },
                    recurring={"id": row.id, "period": period, "autopay": row.autopay},
                )
                uow.commit()
                made += 1
            except IntegrityError:
                uow.rollback()
                break
            except ServiceError as exc:  # it can never succeed as it stands: pause it, say why
                uow.rollback()
                uow.execute(recurring_invoices.update().where(recurring_invoices.c.id == row.id).values(active=False))
                uow.publish("recurring.paused", row.workspace_id, {"id": row.id, "reason": exc.detail})
                uow.commit()
                log.warning("recurring invoice paused", extra={"recurring_id": row.id, "error": exc.detail})
                break
            runs, period = runs + 1, following
    return made


# What a reminder needs of an open invoice, and the reminder kinds it has had already: a sweep skips
# those without a write, so its cost stays one read however many overdue invoices have been told.
_REMINDED = (
    sa.select(json_array_agg(reminders_sent.c.kind))
    .where(reminders_sent.c.invoice_id == invoices.c.id)
    .scalar_subquery()
    .label("reminded")
)
_DUE_REMINDERS = sa.select(
    invoices.c.id,
    invoices.c.workspace_id,
    invoices.c.client_id,
    invoices.c.number,
    invoices.c.currency,
    invoices.c.due_date,
    invoices.c.sent_at,
    invoices.c.total,
    invoices.c.amount_paid,
    invoices.c.amount_credited,
    _REMINDED,
).where(
    invoices.c.status.in_(sorted(domain.OPEN_STATUSES)),
    invoices.c.kind == "standard",
    invoices.c.archived_at.is_(None),
    ~UNDER_DISPUTE,  # paused until the business resolves the dispute; then they resume
)


def _kinds(value) -> set[str]:
    """The JSON array of kinds (PostgreSQL's json_agg of no rows is NULL, SQLite's is "[]")."""
    items = json.loads(value) if isinstance(value, str) else (value or [])
    return {kind for kind in items if kind}


# A reminder never follows the invoice's own email closely: none within a day of it.
QUIET_AFTER_SENDING = timedelta(days=1)


def due_reminders(settings, due_date: date, today: date, issued_on: date | None = None) -> list[str]:
    """The reminder kinds an open invoice due on `due_date` has had by `today`, earliest first: the
    workspace's reminders before, on and after the due date (when it sends them; "due soon" and "due
    today" only while the due date has not passed), and "overdue" once it is past. An invoice issued
    on `issued_on` has none whose day came on or before that day: its own email said it all."""
    kinds = []
    if settings.enabled:
        kinds = domain.ReminderPolicy(settings.days_before, settings.on_due, settings.days_after).due(due_date, today)
        if issued_on is not None:
            kinds = [kind for kind in kinds if domain.reminder_day(kind, due_date) > issued_on]
    if due_date < today:
        kinds.append("overdue")
    return kinds


def reminder_to_send(kinds: list[str], reminded: set[str], due_date: date) -> str | None:
    """Of the reminder kinds due (earliest first), the one reminder email to send now: the latest not
    sent yet, and none when a reminder of a later day has gone out already. One per invoice per sweep,
    so a sweep after downtime, or an invoice issued late, never sends two at once."""
    emails = [kind for kind in kinds if kind != "overdue"]
    if not emails or emails[-1] in reminded:
        return None
    latest_sent = max((domain.reminder_day(kind, due_date) for kind in reminded if kind != "overdue"), default=None)
    if latest_sent is not None and domain.reminder_day(emails[-1], due_date) <= latest_sent:
        return None
    return emails[-1]


def run_reminders(uow, now: datetime, workspace_id: str | None = None) -> int:
    """Announce reminders before, on and after due dates, each once per invoice and at most one per
    invoice per sweep, none within a day of the invoice's own email, and an invoice's first day overdue
    (in one workspace, or in all that the transaction can see). Documents sends the emails from these
    events."""
    sent = 0
    query = _DUE_REMINDERS if workspace_id is None else _DUE_REMINDERS.where(invoices.c.workspace_id == workspace_id)
    rows = uow.execute(query).all()
    businesses = {
        ws.id: ws
        for ws in uow.execute(
            sa.select(workspaces.c.id, workspaces.c.settings, workspaces.c.timezone).where(
                workspaces.c.id.in_(sorted({row.workspace_id for row in rows}))
            )
        )
    }
    uow.rollback()
    policies: dict[str, tuple] = {}  # per workspace: its today and its reminder settings, worked out once
    for row in rows:
        owed = domain.balance(row.total, row.amount_paid, row.amount_credited)
        if owed <= 0:
            continue
        if row.workspace_id not in policies:
            business = businesses[row.workspace_id]
            policies[row.workspace_id] = (
                business.timezone,
                workspace_today(business, now),
                settings_of(business).reminders,
            )
        timezone, today, settings = policies[row.workspace_id]
        reminded = _kinds(row.reminded)
        issued_on = today_in(timezone, row.sent_at) if row.sent_at is not None else None
        kinds = due_reminders(settings, row.due_date, today, issued_on)
        to_tell = ["overdue"] if "overdue" in kinds and "overdue" not in reminded else []
        reminder = reminder_to_send(kinds, reminded, row.due_date)
        if reminder is not None and (row.sent_at is None or now - row.sent_at >= QUIET_AFTER_SENDING):
            to_tell.insert(0, reminder)  # else it waits for a later sweep, while its day is still in the window
        for kind in to_tell:
            # told on an earlier sweep: skipped above; a race between replicas is settled by the unique key
            try:
                uow.execute(reminders_sent.insert().values(invoice_id=row.id, kind=kind, sent_at=now))
                event = {
                    "id": row.id,
                    "number": row.number,
                    "client_id": row.client_id,
                    "kind": kind,
                    "balance": owed,
                    "currency": row.currency,
                    "due_date": iso(row.due_date),
                    "recipients": portal_recipients(uow, row.client_id),
                }
                if kind == "overdue":
                    uow.publish("invoice.overdue", row.workspace_id, event)
                else:
                    uow.publish("invoice.reminder", row.workspace_id, event)
                    record_activity(
                        uow,
                        now,
                        row.workspace_id,
                        row.client_id,
                        "reminder.sent",
                        f"Reminder ({kind.replace('_', ' ')}) sent for {row.number}",
                        {"invoice_id": row.id},
                    )
                    record_signal(uow, now, row.workspace_id, row.client_id, "reminder")
                    sent += 1
                uow.commit()
            except IntegrityError:
                uow.rollback()  # already done, here or by another replica
    return sent

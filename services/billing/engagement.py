"""Collection signals in plain Python: how one client's portal views, card payment attempts and
reminders roll up, and the late-payment risk read from that rollup and the client's open invoices.

No database and no broker here; handlers/engagement.py loads and stores the rollup.

The risk rule (also in docs/admin-api.md and the admin API's OpenAPI description):

- high: an invoice is more than 30 days overdue; or at least 2 card payments failed in the last
  30 days; or reminders were sent and the client has not viewed an invoice since the first of
  them, while it still owes something.
- medium: any invoice overdue; or a card payment failed in the last 30 days.
- low: otherwise.

Every rule that applies is listed in `reasons`, so the flag can be explained to whoever acts on it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta

from chassis.money import Money

SIGNALS = ("view", "sign_in", "attempt", "failure", "reminder", "payment")
RISKS = ("high", "medium", "low")  # in the order a collections list shows them
OVERDUE_HIGH_DAYS = 30
FAILURE_WINDOW = timedelta(days=30)


@dataclass(frozen=True)
class Rollup:
    """What the events said about one client so far. Counters only grow; times are UTC."""

    portal_views: int = 0
    last_viewed_at: datetime | None = None
    last_signed_in_at: datetime | None = None
    payment_attempts: int = 0
    failed_payments: int = 0
    last_failed_at: datetime | None = None
    previous_failed_at: datetime | None = None  # the failure before the last: "2 in 30 days" needs both
    successful_payments: int = 0
    last_paid_at: datetime | None = None
    reminders_sent: int = 0
    last_reminder_at: datetime | None = None
    # the first reminder sent after the client's latest invoice view; cleared by the next view
    unanswered_reminder_since: datetime | None = None

    @classmethod
    def from_row(cls, row) -> Rollup:
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls)})

    def as_values(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _later(current: datetime | None, at: datetime) -> datetime:
    return at if current is None or at > current else current


def apply_signal(rollup: Rollup, signal: str, at: datetime) -> Rollup:
    """The rollup after one more signal that happened at `at`. Signals may arrive a little out of
    order (events from other services), so "last" times keep the latest, whatever came first."""
    if signal == "view":
        answered = rollup.unanswered_reminder_since is not None and at >= rollup.unanswered_reminder_since
        return replace(
            rollup,
            portal_views=rollup.portal_views + 1,
            last_viewed_at=_later(rollup.last_viewed_at, at),
            unanswered_reminder_since=None if answered else rollup.unanswered_reminder_since,
        )
    if signal == "sign_in":
        return replace(rollup, last_signed_in_at=_later(rollup.last_signed_in_at, at))
    if signal == "attempt":
        return replace(rollup, payment_attempts=rollup.payment_attempts + 1)
    if signal == "failure":
        latest = sorted(
            (t for t in (rollup.last_failed_at, rollup.previous_failed_at, at) if t is not None), reverse=True
        )[:2]
        return replace(
            rollup,
            failed_payments=rollup.failed_payments + 1,
            last_failed_at=latest[0],
            previous_failed_at=latest[1] if len(latest) > 1 else None,
        )
    if signal == "payment":
        return replace(
            rollup, successful_payments=rollup.successful_payments + 1, last_paid_at=_later(rollup.last_paid_at, at)
        )
    if signal == "reminder":
        since = rollup.unanswered_reminder_since
        if since is None and (rollup.last_viewed_at is None or at > rollup.last_viewed_at):
            since = at  # the first reminder the client has not answered with a view
        return replace(
            rollup,
            reminders_sent=rollup.reminders_sent + 1,
            last_reminder_at=_later(rollup.last_reminder_at, at),
            unanswered_reminder_since=since,
        )
    raise ValueError(f"unknown signal {signal!r}; one of {', '.join(SIGNALS)}")


@dataclass(frozen=True)
class OpenInvoice:
    """A standard invoice the client still owes on (issued, not void, not archived)."""

    due_date: date
    owed: int  # minor units, > 0
    currency: str


def failures_within(rollup: Rollup, now: datetime, window: timedelta = FAILURE_WINDOW) -> int:
    """Failed payments in the window, counted up to 2 (all the rule needs)."""
    return sum(1 for t in (rollup.last_failed_at, rollup.previous_failed_at) if t is not None and now - t <= window)


def _per_currency(invoices: list[OpenInvoice]) -> list[dict]:
    totals: dict[str, Money] = {}
    for inv in invoices:
        totals[inv.currency] = totals.get(inv.currency, Money.zero(inv.currency)) + Money(inv.owed, inv.currency)
    return [totals[c].as_dict() for c in sorted(totals)]


def assess(rollup: Rollup, days_overdue: int, owes: bool, now: datetime) -> tuple[str, list[dict]]:
    """The risk level and every reason behind it (see the module docstring for the rule)."""
    reasons = []

    def reason(level: str, code: str, detail: str) -> None:
        reasons.append({"level": level, "code": code, "detail": detail})

    if days_overdue > OVERDUE_HIGH_DAYS:
        reason("high", "overdue_over_30_days", f"An invoice is {days_overdue} days overdue.")
    elif days_overdue > 0:
        reason("medium", "overdue", f"An invoice is {days_overdue} day{'s' if days_overdue != 1 else ''} overdue.")
    failed = failures_within(rollup, now)
    if failed >= 2:
        reason("high", "repeated_failed_payments", "2 or more card payments failed in the last 30 days.")
    elif failed == 1:
        reason("medium", "failed_payment", "A card payment failed in the last 30 days.")
    if owes and rollup.unanswered_reminder_since is not None:
        reason("high", "reminders_unanswered", "Reminders were sent and no invoice was viewed since the first.")
    levels = {r["level"] for r in reasons}
    risk = next((level for level in RISKS if level in levels), "low")
    return risk, reasons


def summarize(rollup: Rollup, open_invoices: list[OpenInvoice], today: date, now: datetime) -> dict:
    """The engagement summary: `today` is the workspace's date (due dates are dates there), `now` UTC."""
    overdue = [inv for inv in open_invoices if inv.owed > 0 and inv.due_date < today]
    days_overdue = max(((today - inv.due_date).days for inv in overdue), default=0)
    risk, reasons = assess(rollup, days_overdue, any(inv.owed > 0 for inv in open_invoices), now)
    iso = lambda value: value.isoformat() if value is not None else None  # noqa: E731
    return {
        "risk": risk,
        "reasons": reasons,
        "as_of": today.isoformat(),
        "days_overdue": days_overdue,
        "overdue_invoices": len(overdue),
        "overdue_amount": _per_currency(overdue),
        "outstanding": _per_currency([inv for inv in open_invoices if inv.owed > 0]),
        "portal_views": rollup.portal_views,
        "last_viewed_at": iso(rollup.last_viewed_at),
        "last_signed_in_at": iso(rollup.last_signed_in_at),
        "payment_attempts": rollup.payment_attempts,
        "failed_payments": rollup.failed_payments,
        "last_failed_at": iso(rollup.last_failed_at),
        "successful_payments": rollup.successful_payments,
        "last_paid_at": iso(rollup.last_paid_at),
        "reminders_sent": rollup.reminders_sent,
        "last_reminder_at": iso(rollup.last_reminder_at),
        "unanswered_reminder_since": iso(rollup.unanswered_reminder_since),
    }


def sort_key(summary: dict) -> tuple:
    """High risk first, then the longest overdue, then by name."""
    return RISKS.index(summary["risk"]), -summary["days_overdue"], summary.get("client_name", "")

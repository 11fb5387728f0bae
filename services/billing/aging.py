"""Aging of what a client owes: each open invoice's balance in a bucket by days past its due date,
counted in the business's calendar. Plain Python: the dashboard and the statement hand in the rows
their indexed query of open invoices read, grouped by currency and due date."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any, NamedTuple

# Bucket names in order: not yet due, then ranges of days past due.
BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "days_over_90")


def aging_bucket(due_date: date, today: date) -> str:
    """The bucket of a balance due on `due_date`, as of `today` (the business's date): due today is
    still current, the day after is 1 day past due."""
    days = (today - due_date).days
    if days <= 0:
        return "current"
    if days <= 30:
        return "days_1_30"
    if days <= 60:
        return "days_31_60"
    if days <= 90:
        return "days_61_90"
    return "days_over_90"


class OpenByDue(NamedTuple):
    """What a client owes on its open invoices in one currency that fall due on one day."""

    currency: str
    due_date: date
    owed: int
    invoices: int


def past_due(rows: Iterable[OpenByDue], today: date, currency: str) -> tuple[int, int]:
    """(how many open invoices are overdue, what they owe in `currency`) as of `today` (the
    business's date): overdue invoices are counted in any currency and summed in the client's own
    (domain.is_overdue; the rows hold only invoices that still owe something)."""
    late = [row for row in rows if row.due_date < today]
    return sum(row.invoices for row in late), sum(row.owed for row in late if row.currency == currency)


def aging(rows: Iterable[tuple[str, date, int]], today: date, first: str | None = None) -> list[dict[str, Any]]:
    """Buckets per currency from (currency, due date, amount owed) rows; `first` (the client's
    currency, listed even when nothing is owed in it) leads, the others follow alphabetically. Each
    entry's total is the sum of its buckets."""
    by_currency: dict[str, dict[str, int]] = {} if first is None else {first: dict.fromkeys(BUCKETS, 0)}
    for currency, due_date, amount in rows:
        buckets = by_currency.setdefault(currency, dict.fromkeys(BUCKETS, 0))
        buckets[aging_bucket(due_date, today)] += int(amount)
    order = sorted(by_currency, key=lambda c: (c != first, c))
    return [{"currency": c, **by_currency[c], "total": sum(by_currency[c].values())} for c in order]

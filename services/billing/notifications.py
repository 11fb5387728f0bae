"""Which emails a contact wants: the categories it may turn off, their defaults, and the monthly
statement's period. Plain rules, no database: the handlers (handlers/notifications.py) store them.

Sign-in links, security notices and the receipt for a payment the contact made itself are not
categories: they are always sent, so nobody can lock themselves out or miss their own payment."""

from __future__ import annotations

from datetime import date, timedelta

from chassis.errors import Invalid

# Each category a contact may turn off, in the order the portal shows them.
CATEGORIES = (
    "invoices",  # a new or re-sent invoice
    "quotes",  # a new quote
    "reminders",  # payment reminders before and after the due date
    "receipts",  # receipts for payments someone else at the client made (or the business recorded)
    "monthly_statement",  # the statement of account for the month before, on the 1st
    "comment_replies",  # the business answering on a comment thread
    "bookings",  # booking confirmations and cancellations
)
# Everything is on, except the monthly statement: that one is new, and asked for.
DEFAULTS = {category: category != "monthly_statement" for category in CATEGORIES}
FIELDS = frozenset(CATEGORIES) | {"email_locale"}


def clean(data) -> dict:
    """The changes as sent: known categories as true or false, and the email language (null: the
    client's). Anything else is refused, naming each field."""
    if not isinstance(data, dict):
        raise Invalid("Expected an object.", body="not an object")
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        raise Invalid("Unknown fields.", fields={key: "unknown field" for key in unknown})
    wrong = sorted(key for key in CATEGORIES if key in data and not isinstance(data[key], bool))
    if wrong:
        raise Invalid("Each notification is on (true) or off (false).", fields={key: "not a boolean" for key in wrong})
    return dict(data)


def statement_period(today: date) -> tuple[date, date, str]:
    """The month before `today` (a date in the workspace's time zone): its first and last day, and its
    label YYYY-MM, which keys the once-a-month send."""
    last = today.replace(day=1) - timedelta(days=1)
    first = last.replace(day=1)
    return first, last, f"{first.year:04d}-{first.month:02d}"

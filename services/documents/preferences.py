"""Which emails a contact may turn off, and the check before each one.

Every kind of email either belongs to a category a contact can turn off (billing owns the choices and
their defaults; documents keeps a copy from billing's events) or is essential and always sent: sign-in
links, security notices (a failed automatic payment), the receipt for a payment the contact made
itself and the news of its refund, and mail that is not to a contact (a forward, a message to the
business). The check fails towards sending: an essential email is never looked up, and a contact
whose choices have not reached documents yet has the defaults."""

from __future__ import annotations

import sqlalchemy as sa

from services.documents.tables import notification_preferences

# billing's categories (services/billing/notifications.py) and their defaults, as the events carry them
DEFAULTS = {
    "invoices": True,
    "quotes": True,
    "reminders": True,
    "receipts": True,
    "monthly_statement": False,
    "comment_replies": True,
    "bookings": True,
}
# The category of each kind of email to a contact; None: essential, always sent.
CATEGORY_OF_KIND = {
    "magic_link": None,
    "password_reset": None,  # "Forgot your password?": a sign-in credential, like a sign-in link
    "new_device": None,  # a sign-in from a device the contact had not used: a security notice
    "payment_failed": None,  # a card failing, or autopay needing the client: a security and account notice
    "mandate_copy": None,  # the client's copy of a direct debit mandate it accepted: a record it must get
    "debit_notice": None,  # the pre-notification of an automatic debit, which SEPA rules require
    "invoice_sent": "invoices",
    "dispute_resolved": "invoices",  # a dispute of an invoice settled: with a credit note, or the invoice kept
    "quote_sent": "quotes",
    "invoice_reminder": "reminders",
    "payment_receipt": "receipts",  # ...unless the contact paid it itself: see category()
    "refund_notice": "receipts",  # a refund of a payment, the updated receipt attached; like a receipt
    "booking": "bookings",
    "monthly_statement": "monthly_statement",
    "comment_reply": "comment_replies",
}


def category(kind: str, contact_id: str | None = None, paid_by: str | None = None) -> str | None:
    """The category an email of `kind` to `contact_id` belongs to, or None when it is essential. A kind
    not listed is essential (a new kind is sent until someone decides it may be turned off)."""
    if kind in ("payment_receipt", "refund_notice") and contact_id is not None and contact_id == paid_by:
        return None  # the receipt for your own payment, or the refund of it
    if contact_id is None:
        return None  # not to a contact (a forward, the business): nobody's choice to make
    return CATEGORY_OF_KIND.get(kind)


def choices(uow, contact_id: str) -> dict:
    row = uow.execute(
        sa.select(notification_preferences.c.choices).where(notification_preferences.c.contact_id == contact_id)
    ).first()
    return {**DEFAULTS, **(row.choices if row is not None and isinstance(row.choices, dict) else {})}


def wanted(uow, kind: str, contact_id: str | None, paid_by: str | None = None) -> bool:
    """Whether to send this email to this contact: always for an essential one, else its choice."""
    name = category(kind, contact_id, paid_by)
    if name is None or contact_id is None:  # no contact: essential, as category() says
        return True
    return bool(choices(uow, contact_id).get(name, DEFAULTS.get(name, True)))


def apply(uow, now, workspace_id: str, data: dict) -> None:
    """Keep the copy from billing's event; an older version never overwrites a newer one."""
    values = {
        "workspace_id": workspace_id,
        "client_id": data["client_id"],
        "choices": {name: bool(data[name]) for name in DEFAULTS if name in data},
        "email_locale": data.get("email_locale"),
        "version": int(data["version"]),
        "updated_at": now,
    }
    table = notification_preferences
    updated = uow.execute(
        table.update()
        .where(table.c.contact_id == data["contact_id"], table.c.version < values["version"])
        .values(**values)
    ).rowcount
    known = uow.execute(sa.select(table.c.contact_id).where(table.c.contact_id == data["contact_id"])).first()
    if not updated and not known:
        uow.execute(table.insert().values(contact_id=data["contact_id"], **values))


def unsubscribe_headers(url: str) -> dict:
    """RFC 8058 one-click unsubscribe: the link, and the header saying a POST to it is enough."""
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

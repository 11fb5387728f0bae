"""What goes into each kind of email: recipients, links, attachments, amounts in the reader's locale.
Each function queues through handlers.queue_email with an idempotency key, so a repeated event or
call sends nothing twice."""

from __future__ import annotations

import base64
from datetime import datetime

from icalendar import Calendar, Event

from chassis.fields import display_name
from chassis.i18n import language_of
from services.documents import handlers
from services.documents.formatting import day, moment_in_zone, money
from services.documents.i18n import translations


def pdf_attachment(renderer, brand: dict, kind: str, data: dict) -> tuple:
    rendered = handlers.render_document(renderer, brand, kind, data, data.get("locale"), data.get("timezone"))
    return (rendered["filename"], "application/pdf", base64.b64decode(rendered["pdf"]))


def document_sent(
    uow,
    now,
    sender,
    renderer,
    brand: dict,
    *,
    key: str,
    kind: str,
    document: dict,
    recipient: dict,
    link: str,
    forwarded_by: str = "",
    note: str = "",
    attachments: tuple | None = None,
    headers: dict | None = None,
) -> str:
    """An invoice or a quote, with its one-document link and (by setting) its PDF attached; in the
    contact's language, else the client's (a forward's recipient has none: the document's)."""
    locale = handlers.recipient_locale(recipient, document.get("locale"))
    if attachments is None:
        attachments = (pdf_attachment(renderer, brand, kind, document),) if brand.get("attach_pdf", True) else ()
    context = {
        "name": recipient.get("name", ""),
        "number": document["number"],
        "link": link,
        "total": money(document["total"], document["currency"], locale),
        "attached": bool(attachments),
        "forwarded_by": forwarded_by,
        "note": note,
    }
    if kind == "invoice":
        context.update(
            balance=money(document["balance"], document["currency"], locale), due_date=day(document["due_date"], locale)
        )
    else:
        context.update(expiry_date=day(document.get("expiry_date"), locale))
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind=f"{kind}_sent",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=document["client_id"],
        attachments=attachments,
        locale=locale,
        headers=headers,
    )


def comment_reply(uow, now, sender, brand: dict, *, key: str, comment: dict, recipient: dict, link: str, headers):
    """The business's answer in a document's comment thread, quoted, with the document's link; in the
    contact's language, else the client's."""
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="comment_reply",
        to=recipient["email"],
        context={
            "name": recipient.get("name", ""),
            "document_kind": comment["document_kind"],
            "number": comment.get("document_number", ""),
            "author": comment.get("author_name") or brand["name"],
            "body": comment.get("body", ""),
            "link": link,
        },
        workspace_id=brand["id"],
        client_id=comment["client_id"],
        locale=handlers.recipient_locale(recipient),
        headers=headers,
    )


def dispute_resolved(uow, now, sender, *, key: str, workspace_id: str, dispute: dict, recipient: dict, link, headers):
    """A client's dispute settled: the credit note's number and amount when one was issued (else the
    business's answer), and the link to it; in the contact's language, else the client's."""
    locale = handlers.recipient_locale(recipient)
    credited = dispute.get("credit_note_id") and dispute.get("credit_amount") is not None
    currency = dispute.get("credit_currency") or dispute["currency"]
    return handlers.queue_email(
        uow,
        now,
        sender,
        idempotency_key=key,
        kind="dispute_resolved",
        to=recipient["email"],
        context={
            "name": recipient.get("name", ""),
            "number": dispute["number"],
            "credit_number": (dispute.get("credit_note_number") or "") if credited else "",
            "amount": money(dispute["credit_amount"], currency, locale) if credited else "",
            "message": dispute.get("message") or "",
            "link": link,
        },
        workspace_id=workspace_id,
        client_id=dispute["client_id"],
        locale=locale,
        headers=headers,
    )


def payment_receipt(
    uow,
    now,
    sender,
    renderer,
    brand: dict,
    *,
    key: str,
    payment: dict,
    recipient: dict,
    portal_url: str,
    attachments: tuple | None = None,
    headers: dict | None = None,
) -> str:
    """In the contact's language, else the client's; when it was received, in the client's zone."""
    locale = handlers.recipient_locale(recipient, payment.get("locale"))
    tz = recipient.get("timezone") or payment.get("timezone") or "UTC"
    context = {
        "name": recipient.get("name", ""),
        "amount": money(payment["amount"], payment["currency"], locale),
        "received_at": moment_in_zone(payment["received_at"], tz, locale),
        "portal_url": portal_url,
        "allocations": [
            {"number": a["number"], "amount": money(a["amount"], payment["currency"], locale)}
            for a in payment["allocations"]
        ],
    }
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="payment_receipt",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=payment["client_id"],
        attachments=attachments or (pdf_attachment(renderer, brand, "receipt", payment),),
        locale=locale,
        headers=headers,
    )


def refund_notice(
    uow,
    now,
    sender,
    brand: dict,
    *,
    key: str,
    refund: dict,
    payment: dict,
    recipient: dict,
    portal_url: str,
    attachments: tuple = (),
    headers: dict | None = None,
) -> str:
    """A card refund: how much, of which payment (its amount, when and how it was paid), when the money
    arrives, what the payment still pays, and any invoice it left owing; in the contact's language, else
    the client's, and the payment's time in the client's zone."""
    locale = handlers.recipient_locale(recipient, payment.get("locale"))
    tz = recipient.get("timezone") or payment.get("timezone") or "UTC"
    currency = refund["currency"]
    context = {
        "name": recipient.get("name", ""),
        "amount": money(refund["amount"], currency, locale),
        "paid": money(payment["amount"], currency, locale),
        "paid_at": moment_in_zone(payment["received_at"], tz, locale),
        "method": payment.get("method", ""),
        "reference": payment.get("reference", ""),
        "kept": money(payment["amount"] - payment.get("refunded", refund["amount"]), currency, locale),
        "owed": [
            {"number": r["number"], "balance": money(r["balance"], currency, locale)}
            for r in refund.get("reversals", [])
            if r.get("balance")
        ],
        "portal_url": portal_url,
    }
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="refund_notice",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=refund["client_id"],
        attachments=attachments,
        locale=locale,
        headers=headers,
    )


def payment_failed(uow, now, sender, brand: dict, *, key: str, data: dict, recipient: dict, link: str) -> str:
    locale = recipient.get("locale") or "en_US"
    context = {
        "name": recipient.get("name", ""),
        "amount": money(data["amount"], data["currency"], locale),
        "reason": data.get("reason", ""),
        "link": link,
    }
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="payment_failed",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=data["client_id"],
        locale=locale,
    )


def business_message(
    uow,
    now,
    sender,
    brand: dict,
    *,
    key: str,
    client_id: str,
    client_name: str,
    from_name: str,
    from_email: str,
    subject: str,
    message: str,
) -> str:
    """A client's message from the portal, to the business's contact address; replies go to the client."""
    context = {
        "from_name": display_name(from_name, from_email),
        "from_email": from_email,
        "client_name": client_name,
        "subject": subject,
        "message": message,
    }
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="business_message",
        to=brand["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=client_id,
        reply_to=from_email,
    )


def booking_invite(brand: dict, booking: dict, cancelled: bool, locale: str | None = None) -> bytes:
    """An iCalendar invitation (or cancellation) with a stable UID, so calendars update in place; its
    title in the email's language, as the calendar shows it to the reader."""
    gettext = translations(language_of(locale)).gettext
    calendar = Calendar()
    calendar.add("prodid", "-//Billing portal//Bookings//EN")
    calendar.add("version", "2.0")
    calendar.add("method", "CANCEL" if cancelled else "REQUEST")
    event = Event()
    event.add("uid", f"booking-{booking['id']}@billing-portal")
    event.add(
        "summary", gettext("%(title)s with %(business)s") % {"title": booking["title"], "business": brand["name"]}
    )
    event.add("dtstart", datetime.fromisoformat(booking["start"]))
    event.add("dtend", datetime.fromisoformat(booking["end"]))
    event.add("dtstamp", datetime.fromisoformat(booking["created_at"]))
    event.add("organizer", f"mailto:{brand.get('email') or 'no-reply@localhost'}")
    event.add("status", "CANCELLED" if cancelled else "CONFIRMED")
    event.add("sequence", 1 if cancelled else 0)
    calendar.add_component(event)
    return calendar.to_ical()


def booking(
    uow,
    now,
    sender,
    brand: dict,
    *,
    key: str,
    client_id: str,
    recipient: dict,
    booking: dict,
    cancelled: bool,
    portal_url: str,
    headers: dict | None = None,
) -> str:
    """The time in the client's zone, as its portal showed it (the workspace's may differ), and named;
    in the contact's language, else the client's (a contact's own locale may be null)."""
    locale = handlers.recipient_locale(recipient)
    tz = recipient.get("timezone") or booking.get("timezone") or "UTC"
    start, end = datetime.fromisoformat(booking["start"]), datetime.fromisoformat(booking["end"])
    context = {
        "name": recipient.get("name", ""),
        "title": booking["title"],
        "cancelled": cancelled,
        "when": moment_in_zone(booking["start"], tz, locale),
        "duration": int((end - start).total_seconds() // 60),
        "portal_url": portal_url,
    }
    invite = (
        "cancel.ics" if cancelled else "invite.ics",
        "text/calendar",
        booking_invite(brand, booking, cancelled, locale),
    )
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="booking",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=client_id,
        attachments=(invite,),
        locale=locale,
        headers=headers,
    )


def statement(
    uow,
    now,
    sender,
    renderer,
    brand: dict,
    *,
    key: str,
    client_id: str,
    recipient: dict,
    statement: dict,
    headers: dict | None = None,
) -> str:
    locale = handlers.recipient_locale(recipient, statement.get("locale"))
    context = {
        "name": recipient.get("name", ""),
        "period": f"{day(statement['from'], locale)} – {day(statement['to'], locale)}",
        "closing": money(statement["closing_balance"], statement["currency"], locale),
    }
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="statement",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=client_id,
        attachments=(pdf_attachment(renderer, brand, "statement", statement),),
        locale=locale,
        headers=headers,
    )


def device_context(device: dict | None) -> dict | None:
    """What a sign-in email says of the device: browser and OS as the user agent named them, and the
    address; None when nothing is known (the template then says nothing of it)."""
    if not isinstance(device, dict):
        return None
    known = {key: str(device[key])[:100] for key in ("browser", "os", "ip") if device.get(key)}
    return known or None


def business_moment(brand: dict, iso: str, locale: str | None) -> str:
    """A time in the business's zone, named: for the emails that reach a contact by its email address
    alone (a link's expiry, a new sign-in), where neither auth nor documents knows the client's zone."""
    return moment_in_zone(iso, brand.get("timezone") or "UTC", locale or brand.get("locale") or "en_US")


def mandate_copy(
    uow, now, sender, brand: dict, *, key: str, data: dict, recipient: dict, timezone: str, link: str
) -> str:
    """The client's copy of a SEPA Direct Debit mandate it accepted in the portal, with its reference."""
    locale = recipient.get("locale") or "en_US"
    context = {
        "name": recipient.get("name", ""),
        "holder_name": data["holder_name"],
        "iban_last4": data["iban_last4"],
        "reference": data["reference"],
        "accepted_at": moment_in_zone(data["accepted_at"], timezone or "UTC", locale),
        "link": link,
    }
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="mandate_copy",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=data["client_id"],
        locale=locale,
    )


def debit_notice(uow, now, sender, brand: dict, *, key: str, data: dict, recipient: dict, link: str) -> str:
    """SEPA pre-notification: the amount and date of an automatic debit, before it is collected."""
    locale = recipient.get("locale") or "en_US"
    context = {
        "name": recipient.get("name", ""),
        "amount": money(data["amount"], data["currency"], locale),
        "collect_on": day(data["collect_on"], locale),
        "iban_last4": data.get("iban_last4", ""),
        "reference": data.get("mandate_reference", ""),
        "invoices": ", ".join(a.get("number") or a["invoice_id"] for a in data["allocations"]),
        "link": link,
    }
    return handlers.queue_email(
        uow,
        now,
        sender,
        brand=brand,
        idempotency_key=key,
        kind="debit_notice",
        to=recipient["email"],
        context=context,
        workspace_id=brand["id"],
        client_id=data["client_id"],
        locale=locale,
    )

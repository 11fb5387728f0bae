"""Documents use cases: queue an email durably, deliver what is due, keep workspace names."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from chassis.errors import Conflict, Invalid, NotFound, Unavailable
from chassis.fields import display_name
from chassis.i18n import language_of
from chassis.logs import current_request_id, request_context
from chassis.settings import env as setting
from chassis.settings import is_dev
from clients import verification
from services.documents import preferences
from services.documents.einvoice.cii import EInvoiceError, cii_xml
from services.documents.formatting import day, money
from services.documents.i18n import template_env, translations
from services.documents.mail import PermanentMailError, TransientMailError
from services.documents.pdf import encode
from services.documents.tables import emails, workspaces

log = logging.getLogger(__name__)

EMAIL_TEMPLATES = Path(__file__).parent / "templates" / "email"
MAX_ATTEMPTS = 8


def render_email(kind: str, context: dict, locale: str = "en_US") -> tuple[str, str, str]:
    """Subject, plain text and HTML in the reader's language (gettext catalogues, as for PDFs)."""
    env = template_env(EMAIL_TEMPLATES, locale)
    context = {"locale": locale, **context}
    subject = env.get_template(f"{kind}.subject").render(context).strip()
    # the .txt template is not HTML: Jinja does not escape it, which is what plain text wants
    text = env.get_template(f"{kind}.txt").render(context)
    html = env.get_template(f"{kind}.html").render({**context, "subject": subject})
    return subject, text, html


def one_line(value: str) -> str:
    """A header value on one line: a client's subject may hold any line break Unicode knows (U+0085,
    U+2028...), which email headers cannot carry; they become spaces, as mail programs show them."""
    return " ".join(value.splitlines())


def build_message(
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    when: datetime,
    attachments: tuple = (),
    reply_to: str | None = None,
    headers: dict | None = None,
) -> str:
    """Multipart: plain text and HTML alternatives, then any (filename, mime type, bytes) attachments;
    `headers` are added as given (List-Unsubscribe...)."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = one_line(sender), to, one_line(subject)
    if reply_to:
        msg["Reply-To"] = one_line(reply_to)
    for name, value in (headers or {}).items():
        msg[name] = one_line(value)
    msg["Date"] = formatdate(when.timestamp(), usegmt=True)
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">") or "localhost")
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    for filename, mime_type, data in attachments:
        maintype, subtype = mime_type.split("/", 1)
        if maintype == "text":
            msg.add_attachment(data.decode("utf-8"), subtype=subtype, filename=filename)
        else:
            msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_string()


def email_exists(uow, idempotency_key: str) -> bool:
    return uow.execute(sa.select(emails.c.id).where(emails.c.idempotency_key == idempotency_key)).first() is not None


def _brand_or_default(uow, workspace_id: str | None) -> dict:
    try:
        return branding(uow, workspace_id) if workspace_id else {"name": "Your billing portal"}
    except NotFound:  # a workspace whose events have not reached documents yet
        return {"name": "Your billing portal"}


def branding_or_default(uow, workspace_id: str | None) -> dict:
    """The workspace's branding, or a neutral one while its events have not reached documents."""
    return _brand_or_default(uow, workspace_id)


# Sign-in and security emails: a reply (quoting a live sign-in link, or a device's details) goes to no
# one. Every other email to a client is sent for its business and answers go to the business's address.
NO_REPLY_KINDS = frozenset({"magic_link", "password_reset", "new_device"})


def business_reply_to(brand: dict) -> str | None:
    """`Business name <its email>`, where replies to an email sent for the business go; None without one."""
    address = (brand.get("email") or "").strip()
    return formataddr((brand.get("name") or "", address)) if address else None


def queue_email(
    uow,
    now: datetime,
    sender: str,
    *,
    idempotency_key: str,
    kind: str,
    to: str,
    context: dict,
    workspace_id: str,
    client_id: str | None = None,
    attachments: tuple = (),
    reply_to: str | None = None,
    locale: str | None = None,
    brand: dict | None = None,
    headers: dict | None = None,
) -> str:
    """Store the rendered message for delivery; the same key twice queues it once. Callers that
    already hold the workspace's branding pass it, saving a lookup."""
    existing = uow.execute(sa.select(emails.c.id).where(emails.c.idempotency_key == idempotency_key)).first()
    if existing:
        return existing.id
    brand = brand or _brand_or_default(uow, workspace_id)
    if reply_to is None and kind not in NO_REPLY_KINDS:
        reply_to = business_reply_to(brand)
    if "name" in context:  # the greeting: a contact without a name is greeted by its address
        context = {**context, "name": display_name(context["name"], to)}
    color = brand.get("brand_color") or "#1d4ed8"
    context = {
        "business_name": brand["name"],
        "brand_color": color,
        "logo_url": brand.get("logo_url", ""),
        "button": f"display:inline-block;padding:12px 20px;background:{color};color:#ffffff;"
        "border-radius:6px;text-decoration:none",
        **context,
    }
    subject, text, html = render_email(kind, context, locale or brand.get("locale") or "en_US")
    email_id = str(uuid.uuid4())
    uow.execute(
        emails.insert().values(
            id=email_id,
            idempotency_key=idempotency_key,
            kind=kind,
            workspace_id=workspace_id,
            client_id=client_id,
            to_addr=to,
            subject=subject,
            status="queued",
            message=build_message(sender, to, subject, text, html, now, attachments, reply_to, headers),
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            request_id=current_request_id(),
        )
    )
    return email_id


def retry_delay(attempts: int) -> timedelta:
    return timedelta(seconds=min(2**attempts * 5, 3600))


def workspaces_with_mail_due(uow, now: datetime) -> list[str]:
    """The workspaces with an email due: the mail timer's step that looks across workspaces."""
    return list(
        uow.execute(
            sa.select(emails.c.workspace_id)
            .distinct()
            .where(emails.c.status == "queued", emails.c.next_attempt_at <= now, emails.c.workspace_id.is_not(None))
        ).scalars()
    )


def deliver_due(uow, backend, now: datetime, batch: int = 20, workspace_id: str | None = None) -> int:
    """Send queued emails whose time has come (one workspace's, or all the transaction can see), one
    row per transaction: the row stays locked while it is sent (SKIP LOCKED on PostgreSQL lets other
    replicas take the next ones, never the same one)."""
    sent = 0
    for _ in range(batch):
        query = (
            sa.select(emails)
            .where(emails.c.status == "queued", emails.c.next_attempt_at <= now)
            .order_by(emails.c.created_at)
            .limit(1)
        )
        if workspace_id is not None:
            query = query.where(emails.c.workspace_id == workspace_id)
        if uow.conn.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        row = uow.execute(query).first()
        if row is None:
            break
        with request_context(row.request_id):  # sent later, logged under the request it was queued for
            values = _send(backend, row, now)
        sent += values["status"] == "sent"
        uow.execute(emails.update().where(emails.c.id == row.id).values(**values))
        uow.commit()
    return sent


def _send(backend, row, now: datetime) -> dict:
    """Try one queued email; the row's new values."""
    values: dict = {"attempts": row.attempts + 1}
    try:
        backend.send(row.id, row.message)
        values.update(status="sent", sent_at=now, last_error=None)
        if not is_dev():  # sign-in and document links inside are live credentials: keep no copy
            values["message"] = ""
        log.info("email sent", extra={"email_id": row.id, "kind": row.kind, "attempt": values["attempts"]})
    except TransientMailError as exc:
        failed = row.attempts + 1 >= MAX_ATTEMPTS
        values.update(
            status="failed" if failed else "queued",
            last_error=str(exc),
            next_attempt_at=now + retry_delay(row.attempts),
        )
        log.warning(
            "email not sent",
            extra={"email_id": row.id, "kind": row.kind, "attempt": values["attempts"], "gave_up": failed},
        )  # the error (it may name the address) stays in the row
    except PermanentMailError as exc:
        values.update(status="failed", last_error=str(exc))
        log.warning("email refused", extra={"email_id": row.id, "kind": row.kind})
    return values


def recipient_locale(recipient: dict, *known: str | None) -> str:
    """The language of an email to a contact: its own locale, else its client's (`client_locale`, which
    billing's events carry beside it; an event from before it did has none), else what the caller knows
    of the client (a document's or a payment's locale), else English."""
    for locale in (recipient.get("locale"), recipient.get("client_locale"), *known):
        if isinstance(locale, str) and locale:
            return locale
    return "en_US"


def queue_reminders(uow, now: datetime, sender: str, event: dict, portal_url: str, headers_for=None) -> int:
    """One reminder email per portal contact who has not turned reminders off, once per invoice, kind
    and contact, in its language (else its client's). `headers_for(recipient)`: the headers of that
    contact's email."""
    data = event["data"]
    recipients = [r for r in data["recipients"] if preferences.wanted(uow, "invoice_reminder", r["contact_id"])]
    for recipient in recipients:
        locale = recipient_locale(recipient)
        queue_email(
            uow,
            now,
            sender,
            idempotency_key=f"reminder:{data['id']}:{data['kind']}:{recipient['contact_id']}",
            kind="invoice_reminder",
            to=recipient["email"],
            workspace_id=event["workspace_id"],
            client_id=data["client_id"],
            locale=locale,
            context={
                "name": recipient["name"],
                "number": data["number"],
                "kind": data["kind"],
                "due_date": day(data["due_date"], locale),
                "balance": money(data["balance"], data["currency"], locale),
                "portal_url": f"{portal_url.rstrip('/')}/login",
            },
            headers=headers_for(recipient) if headers_for else None,
        )
    return len(recipients)


LINK = re.compile(r"https?://\S+")


def recent_emails(uow, limit: int = 50) -> list[dict]:
    rows = uow.execute(sa.select(emails).order_by(emails.c.created_at.desc()).limit(limit)).all()
    return [
        {
            "id": r.id,
            "to": r.to_addr,
            "subject": r.subject,
            "kind": r.kind,
            "status": r.status,
            "created_at": r.created_at.isoformat(),
            "links": sorted(set(LINK.findall(_text_part(r.message)))),
        }
        for r in rows
    ]


def _text_part(message: str) -> str:
    from email import message_from_string, policy

    msg = message_from_string(message, policy=policy.default)
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


BRANDING_KEYS = (
    "name",
    "email",
    "phone",
    "address",
    "tax_id",
    "logo_url",
    "brand_color",
    "accent_color",
    "locale",
    "timezone",
)


LEGAL_KEYS = ("country", "vat_id", "iban", "bic", "einvoice_profile")


def apply_workspace(uow, data: dict, now: datetime) -> None:
    """Keep documents' own copy of a workspace's branding; an older version never overwrites."""
    branding = {key: data.get(key, "") for key in BRANDING_KEYS}
    settings = data.get("settings") or {}
    branding["paper"] = settings.get("paper_size", "A4")
    branding["attach_pdf"] = settings.get("attach_pdf_to_emails", True)
    # whether outbound webhooks may carry a contact's IP and user agent (services/documents/webhooks.py)
    branding["webhook_device_details"] = settings.get("webhooks_include_device_details", False) is True
    legal = settings.get("legal") or {}
    for key in LEGAL_KEYS:  # what invoice law asks the documents to state about the seller
        branding[key] = legal.get(key, "en16931" if key == "einvoice_profile" else "")
    version = int(data.get("version", 0))
    values = {"name": data["name"], "branding": branding, "version": version, "updated_at": now}
    updated = uow.execute(
        workspaces.update().where(workspaces.c.id == data["id"], workspaces.c.version < version).values(**values)
    ).rowcount
    if not updated and not uow.execute(sa.select(workspaces.c.id).where(workspaces.c.id == data["id"])).first():
        uow.execute(workspaces.insert().values(id=data["id"], **values))


def branding(uow, workspace_id: str) -> dict:
    row = uow.execute(sa.select(workspaces).where(workspaces.c.id == workspace_id)).first()
    if row is None:  # its workspace.created event is still on the way: a consumer retries, not parks
        raise Unavailable("This workspace is not known to the documents service yet.")
    return {"brand_color": "#1d4ed8", "paper": "A4", **(row.branding or {}), "name": row.name, "id": row.id}


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def document_filename(kind: str, data: dict, timezone: str | None = None, locale: str | None = None) -> str:
    """A name of its own for each document, so that downloads do not overwrite each other: a receipt is
    named by the day it was received (in the client's time zone) and its receipt number, as printed. The
    words in a receipt's or a statement's name are in the document's language, as the paper is."""
    gettext = translations(language_of(locale)).gettext
    if kind == "receipt":
        received = data.get("received_at")
        when = datetime.fromisoformat(received).astimezone(ZoneInfo(timezone or "UTC")).date() if received else None
        stem = f"{gettext('receipt')}-{when.isoformat() + '-' if when else ''}{data['id'][:8].upper()}"
    elif kind == "statement":
        stem = gettext("statement-%(from)s-to-%(to)s") % {"from": data["from"], "to": data["to"]}
    else:
        stem = data["number"]
    return SAFE_NAME.sub("-", stem).strip("-") + ".pdf"


VERIFIABLE = ("invoice", "quote", "credit_note", "receipt")  # a statement is a summary, not a document to pay


def render_document(
    renderer, brand: dict, kind: str, data: dict, locale: str | None = None, timezone: str | None = None, reference=None
) -> dict:
    """A PDF for one document, from the cache when the same data was rendered before. Takes no
    database connection: a render can take a second, and connections are for short work.

    With `reference` (cache key -> a signed reference to that cached file), the answer carries the
    reference instead of the bytes, and a cached PDF is not even read: the caller fetches it over HTTP."""
    context = {
        "doc": data,
        "business": brand,
        "client": data.get("client") or {},
        "locale": locale or brand.get("locale") or "en_US",
        "timezone": timezone or brand.get("timezone") or "UTC",
        "paper": brand.get("paper", "A4"),
    }
    if kind in VERIFIABLE and data.get("verification_code"):  # the paper says where to check it
        context["verify"] = {
            "code": verification.grouped(data["verification_code"]),
            "url": verification.url(setting("PORTAL_URL", "http://localhost:8000"), data["verification_code"]),
        }
    if kind in ("invoice", "credit_note") and issues_einvoices(brand):
        try:  # a Factur-X / ZUGFeRD PDF: the same document, readable by accounting software too
            context["einvoice_xml"] = cii_xml(kind, data, brand).decode()
        except EInvoiceError as exc:
            log.warning("plain PDF: not an e-invoice", extra={"number": data.get("number"), "error": str(exc)})
    answer = {
        "filename": document_filename(kind, data, context["timezone"], context["locale"]),
        "content_type": "application/pdf",
    }
    if reference is not None:
        key, size, rendered = renderer.ensure(kind, context)
        return {
            **answer,
            "etag": key[:32],
            "rendered": rendered,
            "size": size,
            "reference": reference(key),
            "cache_key": key,
        }
    pdf, key, rendered = renderer.get(kind, context)
    return {**answer, "etag": key[:32], "rendered": rendered, "size": len(pdf), "pdf": encode(pdf)}


def issues_einvoices(brand: dict) -> bool:
    """EN 16931 asks for the seller's VAT id (or tax registration) on every e-invoice: a workspace that
    has not set one (a US business, say) issues plain PDFs."""
    return bool(brand.get("vat_id"))


def einvoice(brand: dict, kind: str, data: dict) -> dict:
    if kind not in ("invoice", "credit_note"):
        raise Invalid("E-invoices are for invoices and credit notes.", kind="unknown")
    if not issues_einvoices(brand):
        raise Conflict("This business issues no e-invoices: its VAT id is not set.", vat_id="not set")
    try:
        xml = cii_xml(kind, data, brand)
    except EInvoiceError as exc:
        raise Conflict(f"This document cannot be an e-invoice: {exc}") from None
    stem = SAFE_NAME.sub("-", data["number"]).strip("-")
    return {"filename": f"{stem}.xml", "content_type": "application/xml", "xml": xml.decode()}


def list_emails(uow, workspace_id: str, client_id: str | None = None, limit: int = 100) -> list[dict]:
    """The log of emails sent for a workspace (or one client): what, to whom, when, and how it went."""
    query = sa.select(emails).where(emails.c.workspace_id == workspace_id)
    if client_id:
        query = query.where(emails.c.client_id == client_id)
    try:
        limit = max(1, min(int(limit), 500))
    except (TypeError, ValueError):
        raise Invalid("limit is a whole number.", limit="not a number") from None
    rows = uow.execute(query.order_by(emails.c.created_at.desc()).limit(limit)).all()
    return [
        {
            "id": r.id,
            "kind": r.kind,
            "to": r.to_addr,
            "subject": r.subject,
            "status": r.status,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "created_at": r.created_at.isoformat(),
            "sent_at": r.sent_at.isoformat() if r.sent_at else None,
        }
        for r in rows
    ]

"""What a signed-in client does, once for the portal's pages and its JSON API.

Each use case takes the typed service stubs it needs, the session (the signed credential's contact,
client and workspace, never the request's) and plain arguments its edge has already read from a form
or a JSON body. The rules of what a client may send (lengths, what is required) live here, and so does
the one rule for idempotency keys: `<action>:<contact id>:<the client's key>`, where the client's key is
the form's nonce or the API's `idempotency_key`, else the request's id (a retry with the same
X-Request-ID acts once too).

A use case refuses input with `BadInput` (an `Invalid`: the JSON API answers it 422 problem+json like
any other, a page shows its form's 400 page) and lets the services' errors through unchanged; each
edge maps them as it always has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chassis.errors import Conflict, Invalid
from chassis.fields import NOT_A_PHONE, PHONE_EXAMPLE
from chassis.i18n import Message
from clients.auth import AuthClient
from clients.billing import DOCUMENT_NUMBERS_MAX, BillingClient
from clients.documents import DocumentsClient
from clients.payments import PaymentsClient
from services.gateway.jsonapi import valid_email

Session = Mapping[str, Any]

# The longest text a client may send in each field (the pages' forms and the API's bodies both).
COMMENT_MAX = 5000
DISPUTE_REASON_MAX = 2000
DISPUTE_LINES_MAX = 200  # how many lines a dispute may name, and the highest line number
FORWARD_NOTE_MAX = 500
SIGNATURE_MAX = 200
DECLINE_REASON_MAX = 2000
CHANGES_MAX = 5000
SUBJECT_MAX = 200
MESSAGE_MAX = 5000
REVIEW_MAX = 5000
NONCE_MAX = 64
PROFILE_FIELDS = {"name": 200, "phone": 50, "company": 200, "address": 2000, "company_phone": 50}

# How the forms label the fields a client types in, for the messages that name one: a client never reads
# a field's key (the JSON APIs' `errors` keep the keys). Translated where shown (views.CODE_MESSAGES).
LABELS = {
    "name": "Your name",
    "phone": "Your phone number",
    "company": "The company name",
    "address": "The address",
    "company_phone": "The company phone number",
    "subject": "The subject",
    "message": "The message",
    "body": "The comment",
    "note": "The note",
    "reason": "The reason",
    "signature_name": "Your full name",
    "holder_name": "The account holder's name",
    "email": "The email address",
    "to": "The email address",
    "iban": "The IBAN",
    "password": "The password",
    "current_password": "The current password",
    "confirm": "The repeated password",
}

# What a client may filter and sort its lists by, with the pages' labels (translated in views.py).
INVOICE_FILTERS = [
    ("all", "All"),
    ("unpaid", "Unpaid"),
    ("partially_paid", "Partially paid"),
    ("overdue", "Overdue"),
    ("paid", "Paid"),
]
INVOICE_SORTS = [
    ("-date", "Newest first"),
    ("date", "Oldest first"),
    ("due_date", "Due date"),
    ("-amount", "Largest amount"),
    ("amount", "Smallest amount"),
]
QUOTE_FILTERS = [
    ("all", "All"),
    ("pending", "Pending"),
    ("accepted", "Accepted"),
    ("rejected", "Declined"),
    ("expired", "Expired"),
]
PAYMENT_KINDS = [("all", "All payments"), ("invoice", "Invoice payments"), ("retainer", "Retainer payments")]
PAYMENT_SORTS = [
    ("-date", "Newest first"),
    ("date", "Oldest first"),
    ("-amount", "Largest amount"),
    ("amount", "Smallest amount"),
]

# Why auth refused a sign-in, a reset link or a passkey, in words for the contact. A password sign-in has
# one refusal whatever was wrong (unknown email, wrong password, a workspace without passwords, no password
# set), and another when no workspace here allows passwords at all.
PASSWORD_REFUSALS = {
    "wrong_password": (
        "That email and password do not match an account that signs in with a password. "
        "Check them, use “Forgot your password?”, or sign in with an emailed link."
    ),
    "passwords_off": "Password sign-in is not turned on for this portal. Sign in with an emailed link.",
}
RESET_LINK_PROBLEMS = {
    "used": ("This link has already been used", "Each password link works once. Ask for a new one."),
    "expired": ("This link has expired", "Password links work for one hour. Ask for a new one."),
    "unknown": ("This link is not valid", "The link may be incomplete. Ask for a new one."),
    "no_access": (
        "Passwords are not available",
        "Your portal no longer signs in with passwords. Sign in with an emailed link.",
    ),
}
PASSKEY_REFUSALS = {
    "challenge": "This passkey request has expired or was already used. Try again.",
    "passkey": "This passkey was not recognised here. Sign in with an emailed link instead.",
    "no_access": "Portal access is turned off. Contact the business to have it enabled.",
}


class BadInput(Invalid):
    """Input refused before any service was asked (a service's own Invalid is not one)."""


def too_long(label: str, limit: int) -> Message:
    """ "The note is at most 500 characters.", in the reader's language where a page shows it."""
    return Message("%(field)s is at most %(limit)s characters.", field=label, limit=limit)


def request_key(client_key: str | None, request_id: str) -> str:
    """The client's key for a request that must act once: its nonce or Idempotency-Key, else the request id."""
    return client_key or request_id


def idempotency_key(action: str, session: Session, key: str) -> str:
    return f"{action}:{session['contact_id']}:{key}"


def author(session: Session) -> str:
    """How the business sees the contact: its name, else its address."""
    return session["name"] or session["email"]


def is_stale(exc: Conflict) -> bool:
    """A decision on a quote version a revision has replaced (billing names the newest)."""
    return "newest_version" in exc.fields


def _text(value: str, name: str, limit: int, detail: str) -> str:
    """Required text: at least one character that is not blank space, at most `limit`; kept as written."""
    if not value.strip() or len(value) > limit:
        raise BadInput(detail, fields={name: f"1 to {limit} characters"})
    return value


def comment_on_invoice(
    billing: BillingClient, session: Session, invoice_id: str, body: str, *, request_key: str
) -> dict:
    _text(body, "body", COMMENT_MAX, f"A comment is 1 to {COMMENT_MAX} characters.")
    return billing.add_comment(
        session["workspace_id"],
        "invoice",
        invoice_id,
        "client",
        author(session),
        body,
        client_id=session["client_id"],
        idempotency_key=idempotency_key("comment", session, request_key),
    )


def dispute_invoice(
    billing: BillingClient,
    session: Session,
    invoice_id: str,
    reason: str,
    lines: list[int] | None,
    *,
    request_key: str,
) -> dict:
    """The whole invoice (no lines) or the lines named, numbered from 1."""
    _text(reason, "reason", DISPUTE_REASON_MAX, f"A reason is 1 to {DISPUTE_REASON_MAX} characters.")
    if lines is not None and (
        len(lines) > DISPUTE_LINES_MAX or not all(1 <= line <= DISPUTE_LINES_MAX for line in lines)
    ):
        raise BadInput("Tick the lines you dispute, or none.", lines=f"line numbers 1 to {DISPUTE_LINES_MAX}")
    return billing.raise_invoice_dispute(
        session["workspace_id"],
        session["client_id"],
        session["contact_id"],
        author(session),
        invoice_id,
        reason,
        lines=lines or None,
        idempotency_key=idempotency_key("dispute", session, request_key),
    )


def forward_invoice(
    documents: DocumentsClient, session: Session, invoice_id: str, to: str, note: str, *, request_key: str
) -> tuple[str, str]:
    """Email the invoice to another address: (the address as written to, the email's id). The same
    form may forward to another address, so the key names the invoice and the address too."""
    try:
        to = valid_email(to)
    except ValueError:
        raise BadInput("Enter the email address to forward the invoice to.", to="not an email address") from None
    if len(note) > FORWARD_NOTE_MAX:
        raise BadInput(too_long(LABELS["note"], FORWARD_NOTE_MAX), note=f"at most {FORWARD_NOTE_MAX}")
    email_id = documents.forward_invoice(
        session["workspace_id"],
        session["client_id"],
        invoice_id,
        to,
        author(session),
        note,
        idempotency_key=idempotency_key(f"forward:{invoice_id}:{to}", session, request_key),
    )
    return to, email_id


def check_signature(signature_name: str) -> str:
    """A quote is accepted with a name typed as a signature (kept as typed)."""
    return _text(signature_name, "signature_name", SIGNATURE_MAX, "Type your full name to accept.")


def accept_quote(
    billing: BillingClient, session: Session, quote_id: str, signature_name: str, version: int, *, ip: str
) -> dict:
    """Accept the version the contact saw, signed with a name (a replaced version is billing's 409)."""
    check_signature(signature_name)
    return billing.accept_quote(
        session["workspace_id"],
        quote_id,
        session["email"],
        ip,
        signature_name,
        client_id=session["client_id"],
        version=version,
    )


def decline_quote(billing: BillingClient, session: Session, quote_id: str, reason: str, version: int) -> dict:
    if len(reason) > DECLINE_REASON_MAX:
        raise BadInput(too_long(LABELS["reason"], DECLINE_REASON_MAX), reason=f"at most {DECLINE_REASON_MAX}")
    return billing.reject_quote(
        session["workspace_id"],
        quote_id,
        session["email"],
        reason,
        client_id=session["client_id"],
        version=version,
    )


def request_quote_changes(
    billing: BillingClient, session: Session, quote_id: str, message: str, version: int, *, request_key: str
) -> dict:
    """The message joins the quote's comments and the business is told."""
    _text(message, "message", CHANGES_MAX, f"A message is 1 to {CHANGES_MAX} characters.")
    return billing.request_quote_changes(
        session["workspace_id"],
        session["client_id"],
        session["contact_id"],
        quote_id,
        message,
        version,
        idempotency_key=idempotency_key("quote-changes", session, request_key),
    )


def update_profile(billing: BillingClient, session: Session, changes: Mapping[str, str | None]) -> dict:
    """Only the fields given change, saved as typed; null clears one, but the contact and the company
    keep a name."""
    for name, value in changes.items():
        if name not in PROFILE_FIELDS or (value is not None and len(value) > PROFILE_FIELDS[name]):
            raise BadInput(
                "Some fields are not valid.", fields={name: f"at most {PROFILE_FIELDS.get(name, 0)} characters"}
            )
    if "name" in changes and not (changes["name"] or "").strip():
        raise BadInput("Enter your name.", name="required")
    if "company" in changes and not (changes["company"] or "").strip():
        raise BadInput("The company name cannot be empty.", company="required")
    try:
        return billing.update_profile(
            session["workspace_id"], session["client_id"], session["contact_id"], dict(changes)
        )
    except Invalid as exc:  # billing reads a new phone as dialled where the client is: the form says so
        phone = next((name for name in ("phone", "company_phone") if exc.fields.get(name) == NOT_A_PHONE), None)
        if phone is None:
            raise
        raise BadInput(
            Message(
                "%(field)s is not a phone number. Write it with its country code, such as %(example)s.",
                field=LABELS[phone],
                example=PHONE_EXAMPLE,
            ),
            {phone: NOT_A_PHONE},
        ) from None


def renamed_to(session: Session, saved_profile: dict) -> str | None:
    """The contact's new name when the profile changed it: the session must say it from now on."""
    name = saved_profile["contact"]["name"]
    return name if name != session["name"] else None


def message_business(
    billing: BillingClient,
    documents: DocumentsClient,
    session: Session,
    subject: str,
    message: str,
    *,
    request_key: str,
) -> str:
    """Email the business a message from the contact; the email's id."""
    detail = f"Both are needed; the message is at most {MESSAGE_MAX} characters."
    _text(subject, "subject", SUBJECT_MAX, detail)
    _text(message, "message", MESSAGE_MAX, detail)
    client = billing.get_client(session["workspace_id"], session["client_id"])
    return documents.send_business_message(
        session["workspace_id"],
        session["client_id"],
        client["name"],
        author(session),
        session["email"],
        subject,
        message,
        idempotency_key("message", session, request_key),
    )


def review_business(billing: BillingClient, session: Session, rating: int, message: str) -> dict:
    if not 1 <= rating <= 5:
        raise BadInput("Pick from 1 to 5 stars.", rating="1 to 5")
    if len(message) > REVIEW_MAX:
        raise BadInput(too_long(LABELS["message"], REVIEW_MAX), message=f"at most {REVIEW_MAX}")
    return billing.add_review(
        session["workspace_id"], session["client_id"], session["contact_id"], author(session), rating, message
    )


def book_slot(billing: BillingClient, session: Session, link_id: str, start: str) -> dict:
    return billing.book_slot(session["workspace_id"], session["client_id"], session["contact_id"], link_id, start)


def cancel_booking(billing: BillingClient, session: Session, booking_id: str) -> dict:
    return billing.cancel_booking(session["workspace_id"], booking_id, client_id=session["client_id"])


def update_notifications(billing: BillingClient, session: Session, changes: dict) -> dict:
    return billing.update_notification_preferences(
        session["workspace_id"], session["contact_id"], changes, client_id=session["client_id"]
    )


def language_changed(session: Session, saved_preferences: dict) -> bool:
    """Whether saving the notifications changed the contact's locale (the language of its emails and
    its pages; null: the client's): the session must carry the new one from now on."""
    return (saved_preferences["email_locale"] or None) != (session.get("locale") or None)


def invite_contact(billing: BillingClient, session: Session, invitation: dict) -> dict:
    """Owners only (billing decides): a new contact with portal access and a role, or one given access again."""
    return billing.invite_contact(session["workspace_id"], session["client_id"], session["contact_id"], invitation)


def change_contact_role(billing: BillingClient, session: Session, contact_id: str, role: str) -> dict:
    return billing.change_contact_role(
        session["workspace_id"], session["client_id"], session["contact_id"], contact_id, role
    )


def remove_contact(billing: BillingClient, session: Session, contact_id: str) -> dict:
    return billing.remove_contact(session["workspace_id"], session["client_id"], session["contact_id"], contact_id)


def add_bank_account(
    payments: PaymentsClient,
    session: Session,
    details: dict,
    accepted: bool,
    *,
    ip: str,
    user_agent: str | None,
    request_key: str,
    attempt_id: str | None = None,
    save: bool = True,
) -> dict:
    """A bank account under a new SEPA Direct Debit mandate, which records who accepted it, from which
    address and browser (payments checks the IBAN and the acceptance); with attempt_id, that payment's
    debit too."""
    acceptance = {
        "accepted": accepted,
        "contact_id": session.get("contact_id"),
        "ip_address": ip,
        "user_agent": (user_agent or "")[:500],
    }
    return payments.add_bank_account(
        session["workspace_id"],
        session["client_id"],
        details,
        acceptance,
        attempt_id=attempt_id,
        save=save,
        idempotency_key=idempotency_key("bank", session, request_key),
    )


def devices(auth: AuthClient, billing: BillingClient, session: Session) -> dict:
    """The contact's sessions (this one marked), unused sign-in links and one-document links. Each
    document link carries its document's `number` and whether the client can still open it in the
    portal (`available`: issued and not archived), from one billing call for the whole list (one per
    500 ids of a kind). A document billing does not name as the client's has no number and is not
    available."""
    listed = auth.list_devices(session["contact_id"], current_session_id=session["session_id"])
    links = listed.get("document_links") or []
    ids = {
        kind: list(dict.fromkeys(link["document_id"] for link in links if link.get("kind") == kind))
        for kind in ("invoice", "quote")
    }
    known: dict[str, dict] = {"invoice": {}, "quote": {}}
    for start in range(0, max(len(ids["invoice"]), len(ids["quote"])), DOCUMENT_NUMBERS_MAX):
        batch = slice(start, start + DOCUMENT_NUMBERS_MAX)
        found = billing.document_numbers(
            session["workspace_id"], session["client_id"], ids["invoice"][batch], ids["quote"][batch]
        )
        known["invoice"].update(found.get("invoices") or {})
        known["quote"].update(found.get("quotes") or {})

    def named(link: dict) -> dict:
        document = known.get(str(link.get("kind")), {}).get(str(link.get("document_id"))) or {}
        return {**link, "number": document.get("number"), "available": document.get("available") is True}

    return {**listed, "document_links": [named(link) for link in links]}


def end_session(auth: AuthClient, session: Session, session_id: str, *, forget: Callable[[str], None]) -> bool:
    """End one of the contact's sessions; False when it has none by that id still open. `forget` makes
    this gateway worker refuse it at once, before auth's announcement comes back."""
    if not auth.end_contact_session(session["contact_id"], session_id):
        return False
    forget(session_id)
    return True


def end_other_sessions(auth: AuthClient, session: Session) -> int:
    return auth.end_other_sessions(session["contact_id"], session["session_id"])

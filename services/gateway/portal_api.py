"""The portal's JSON API, `/api/portal/v1/`: everything the pages show and do, for the signed-in client.

Authentication is the session from a magic link: the browser's cookie, or `Authorization: Bearer
<access_token>` where the token comes from `POST /session` with the link's token (or, where the business
allows passwords, from `POST /session/password` with an email and password). Scope comes from the
session only, never from the request, so another client's ids answer 404. State-changing calls with the
cookie need the `X-CSRF-Token` header (the token is in `GET /me`); bearer calls do not. A token not used
for 30 minutes expires; while a client is active, an answer carries a fresh token in the `X-Session-Token`
header (at most once a minute), to be used from then on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import falcon
from pydantic import Field

from chassis.errors import Conflict, Unauthorized
from clients.auth import AuthClient
from clients.billing import BillingClient
from clients.documents import DocumentsClient
from clients.payments import PaymentsClient
from services.gateway import usecases
from services.gateway.downloads import einvoice_xml, render_pdf, send_pdf, send_xml, with_verify_urls
from services.gateway.jsonapi import (
    AFTER,
    OFFSET,
    PHONE,
    Body,
    Email,
    Endpoint,
    Limit,
    Locale,
    Moment,
    OpenApi,
    Phone,
    Query,
    Routed,
    Text,
    openapi_document,
    read_body,
    read_query,
)
from services.gateway.pages.base import Base, forget_session
from services.gateway.usecases import (
    INVOICE_FILTERS,
    INVOICE_SORTS,
    PASSKEY_REFUSALS,
    PASSWORD_REFUSALS,
    PAYMENT_KINDS,
    PAYMENT_SORTS,
    QUOTE_FILTERS,
    RESET_LINK_PROBLEMS,
)

PREFIX = "/api/portal/v1"
BASE64URL = "^[A-Za-z0-9_-]+$"
TRIMMED = "; blank space around it is trimmed"
# The default of a field that may be left out but not sent as null: only the fields sent are dumped
# (exclude_unset), so it is never read; typed Any so that the field keeps its type without null.
LEFT_OUT: Any = None


class SessionIn(Body):
    token: str = Text(200, required=True, description="The token from the sign-in link")


class PasswordSignInIn(Body):
    email: Email
    password: str = Text(512, required=True, description="The password the contact set")


class PasswordForgotIn(Body):
    email: Email


class PasswordResetIn(Body):
    token: str = Text(200, required=True, description="The token from the emailed link")
    password: str = Text(512, required=True, description="The new password: 12 to 128 characters, not a common one")


class PasswordIn(Body):
    current_password: str = Text(
        512, default="", description="Required when a password is set already (forgot it? use /password/forgot)"
    )
    password: str = Text(512, required=True, description="The new password: 12 to 128 characters, not a common one")


class BankAccountIn(Body):
    holder_name: str = Text(200, required=True, description="The account holder's name")
    email: Email = Field(description="Where the mandate copy and debit notices go")
    iban: str = Text(64, required=True, description="A SEPA IBAN; checked (check digits, country) before Stripe")
    accept_mandate: Literal[True] = Field(description="true: the contact accepts the SEPA Direct Debit mandate text")
    idempotency_key: str = Text(
        usecases.NONCE_MAX, default="", description="Repeat it on a retry and the account is added once"
    )


class CommentIn(Body):
    body: str = Text(usecases.COMMENT_MAX, required=True, description="The comment" + TRIMMED)
    idempotency_key: str = Text(
        usecases.NONCE_MAX, default="", description="Repeat it on a retry and the comment is posted once"
    )


class ForwardIn(Body):
    to: Email
    note: str = Text(usecases.FORWARD_NOTE_MAX, default="")


VERSION = "The quote's version you saw (`version` in GET /quotes/{id}); a revision since is a 409 naming the newest"


class AcceptIn(Body):
    signature_name: str = Text(usecases.SIGNATURE_MAX, required=True, description="Full name, as a signature")
    version: int = Field(ge=1, le=1_000_000, description=VERSION)


class RejectIn(Body):
    reason: str = Text(usecases.DECLINE_REASON_MAX, default="")
    version: int = Field(ge=1, le=1_000_000, description=VERSION)


class ChangesIn(Body):
    message: str = Text(usecases.CHANGES_MAX, required=True, description="What you would like changed" + TRIMMED)
    version: int = Field(ge=1, le=1_000_000, description=VERSION)
    idempotency_key: str = Text(
        usecases.NONCE_MAX, default="", description="Repeat it on a retry and the request is made once"
    )


class DisputeIn(Body):
    reason: str = Text(usecases.DISPUTE_REASON_MAX, required=True, description="Why you dispute the invoice" + TRIMMED)
    lines: list[Annotated[int, Field(ge=1, le=usecases.DISPUTE_LINES_MAX)]] = Field(
        LEFT_OUT,
        max_length=usecases.DISPUTE_LINES_MAX,
        description="Line numbers (from 1) you dispute; left out or all of them: the whole invoice",
    )
    idempotency_key: str = Text(
        usecases.NONCE_MAX, default="", description="Repeat it on a retry and the dispute is raised once"
    )


class ProfileIn(Body):
    """Only the fields sent change; null clears your phone, or the company's address or phone. Your name
    and the company's may be changed but not cleared."""

    name: str = Text(usecases.PROFILE_FIELDS["name"], required=True, default=None)
    phone: Phone | None = Field(None, description=PHONE)
    company: str = Text(usecases.PROFILE_FIELDS["company"], required=True, default=None)
    address: str | None = Text(usecases.PROFILE_FIELDS["address"], default=None)
    company_phone: Phone | None = Field(None, description=PHONE)


class NotificationPreferencesIn(Body):
    """Only the fields sent change. Sign-in links, security notices and receipts for your own payments
    are always sent."""

    invoices: bool = Field(LEFT_OUT, description="New and re-sent invoices")
    quotes: bool = Field(LEFT_OUT, description="New quotes")
    reminders: bool = Field(LEFT_OUT, description="Payment reminders")
    receipts: bool = Field(LEFT_OUT, description="Receipts and refunds for payments made by others at your company")
    monthly_statement: bool = Field(LEFT_OUT, description="The statement of account for last month, on the 1st")
    comment_replies: bool = Field(LEFT_OUT, description="Replies to your comments")
    bookings: bool = Field(LEFT_OUT, description="Booking confirmations and cancellations")
    email_locale: Locale | None = Field(None, description="The language of your emails; null: the company's")


Role = Literal["owner", "payer", "approver", "viewer"]
ROLES_TEXT = (
    "owner: everything, and manages the organisation's contacts; payer: pays and manages cards; "
    "approver: accepts, declines and asks to change quotes; viewer: reads and downloads"
)


class InviteIn(Body):
    email: Email
    name: str = Text(200, default="")
    role: Role = Field(description=ROLES_TEXT)


class RoleIn(Body):
    role: Role = Field(description=ROLES_TEXT)


class MessageIn(Body):
    subject: str = Text(usecases.SUBJECT_MAX, required=True)
    message: str = Text(usecases.MESSAGE_MAX, required=True)
    idempotency_key: str = Text(
        usecases.NONCE_MAX, default="", description="Repeat it on a retry and the message is sent once"
    )


class ReviewIn(Body):
    rating: int = Field(ge=1, le=5)
    message: str = Text(usecases.REVIEW_MAX, default="", description="What you think" + TRIMMED)


class BookingIn(Body):
    link_id: str = Text(50, required=True)
    start: Moment = Field(description="One of the slots offered (a taken or unknown time is a 409)")


def _bytes(max_length: int, **kwargs):
    return Field(min_length=1, max_length=max_length, pattern=BASE64URL, **kwargs)


class PasskeyResponseIn(Body):
    """An AuthenticatorAttestationResponse (adding) or AuthenticatorAssertionResponse (using) as JSON."""

    clientDataJSON: str = _bytes(4096)
    attestationObject: str = _bytes(16384, default=None)
    authenticatorData: str = _bytes(4096, default=None)
    signature: str = _bytes(1024, default=None)
    userHandle: str | None = Field(None, max_length=1024, pattern=BASE64URL)
    publicKey: str = _bytes(4096, default=None)
    publicKeyAlgorithm: int = LEFT_OUT
    transports: list[Literal["ble", "cable", "hybrid", "internal", "nfc", "smart-card", "usb"]] = Field(
        LEFT_OUT, max_length=7
    )


class CredPropsIn(Body):
    rk: bool = LEFT_OUT


class ExtensionResultsIn(Body):
    credProps: CredPropsIn = LEFT_OUT


class PasskeyCredentialIn(Body):
    """The browser's PublicKeyCredential as JSON (WebAuthn Level 3 toJSON(): bytes as base64url)."""

    id: str = _bytes(1400)
    rawId: str = _bytes(1400)
    type: Literal["public-key"]
    response: PasskeyResponseIn
    authenticatorAttachment: Literal["platform", "cross-platform"] | None = None
    clientExtensionResults: ExtensionResultsIn = LEFT_OUT


class PasskeyAnswerIn(Body):
    credential: PasskeyCredentialIn


class NewPasskeyIn(PasskeyAnswerIn):
    name: str = Text(100, description="So the contact can tell its passkeys apart (default: Passkey)")


class PasskeyNameIn(Body):
    name: str = Text(100, required=True)


@dataclass(frozen=True)
class PortalRoute(Endpoint):
    """`call(api, path params, body, query, session)`: `api.call(service, method, ...)` reaches the
    services; the session dict holds workspace_id, client_id, contact_id, email, name and sid."""

    public: bool = False


def _mine(method):
    """A billing lookup of one of the client's objects by the path's id."""
    return lambda a, p, b, q, s: getattr(a.billing, method)(s["workspace_id"], p["id"], client_id=s["client_id"])


def _verifiable(call):
    """The invoices, quotes or credit notes the call answers, each with `verify_url`: where anyone holding
    its paper copy checks it (the address in its QR code)."""
    return lambda a, p, b, q, s: with_verify_urls(a.resource.config.portal_url, call(a, p, b, q, s))


def _pdf(kind):
    return lambda a, p, b, q, s: a.pdf(kind, s, p.get("id"), q)


def _me(a, p, b, q, s) -> dict:
    return {
        **{k: s[k] for k in ("contact_id", "client_id", "workspace_id", "email", "name", "role", "expires_at")},
        "csrf_token": a.req.context.csrf_token,
    }


def _sign_in(a, p, b, q, s) -> dict:
    session = a.auth.consume_link(  # guessing is rate-limited
        b["token"], None, a.client_ip(a.req), user_agent=a.req.user_agent
    )
    return {"access_token": session["credential"], "token_type": "bearer", "expires_at": session.get("expires_at")}


def _token(session: dict) -> dict:
    return {"access_token": session["credential"], "token_type": "bearer", "expires_at": session.get("expires_at")}


def _password_sign_in(a, p, b, q, s) -> dict:
    try:  # failures per account and per address are rate-limited by auth
        session = a.auth.sign_in_with_password(
            b["email"], b["password"], a.client_ip(a.req), user_agent=a.req.user_agent
        )
    except Unauthorized as exc:
        raise Unauthorized(PASSWORD_REFUSALS.get(exc.detail, PASSWORD_REFUSALS["wrong_password"])) from None
    return _token(session)


def _password_reset(a, p, b, q, s) -> dict:
    try:
        session = a.auth.reset_password(b["token"], b["password"], None, a.client_ip(a.req), a.req.user_agent)
    except Unauthorized as exc:
        raise Unauthorized(RESET_LINK_PROBLEMS.get(exc.detail, RESET_LINK_PROBLEMS["unknown"])[1]) from None
    return _token(session)


def _passkey(call):
    """A passkey ceremony whose refusal (a used or expired challenge, an unknown passkey) is a 401 that
    says why in words."""

    def checked(a, p, b, q, s):
        try:
            return call(a, p, b, q, s)
        except Unauthorized as exc:
            raise Unauthorized(PASSKEY_REFUSALS.get(exc.detail, PASSKEY_REFUSALS["passkey"])) from None

    return checked


def _passkey_sign_in(a, p, b, q, s) -> dict:
    session = a.auth.passkey_sign_in(
        b["credential"], a.resource.config.portal_url, None, a.client_ip(a.req), a.req.user_agent
    )
    return _token(session)


def _step_up(a, p, b, q, s) -> dict:
    proved = a.auth.passkey_step_up(s["contact_id"], s["session_id"], b["credential"], a.resource.config.portal_url)
    # a new credential that says so: the cookie, or the X-Session-Token header for a bearer client
    a.req.context.sessions.renew(a.req, a.resp, proved_at=datetime.fromisoformat(proved["proved_at"]))
    return {"proved_at": proved["proved_at"]}


def _end_session(a, p, b, q, s) -> None:
    if not usecases.end_session(a.auth, s, p["id"], forget=lambda ended: forget_session(a.req, ended)):
        raise falcon.HTTPNotFound()  # ended already, or not this contact's


def _ended(ended: int) -> None:
    if not ended:
        raise falcon.HTTPNotFound()


def _profile(a, p, b, q, s) -> dict:
    saved = usecases.update_profile(a.billing, s, b)
    renamed = usecases.renamed_to(s, saved)
    if renamed is not None:  # the session says the new name from now on
        a.req.context.sessions.renew(a.req, a.resp, name=renamed)
    return saved


def _notifications(a, p, b, q, s) -> dict:
    saved = usecases.update_notifications(a.billing, s, b)
    if usecases.language_changed(s, saved):  # the session speaks the new language from now on
        a.req.context.sessions.renew(a.req, a.resp, locale=saved["email_locale"])
    return saved


def _invoices(a, p, b, q, s) -> dict:
    return a.billing.list_invoices(
        s["workspace_id"],
        {
            "client_id": s["client_id"],
            "portal": True,
            "status": q.get("status", "all"),
            "sort": q.get("sort", "-date"),
            "search": q.get("search", ""),
            "limit": q.get("limit", 20),
            "offset": q.get("offset", 0),
            "after": q.get("after"),
        },
    )


def _credit_notes(a, p, b, q, s) -> dict:
    filters = {"limit": q.get("limit", 50), "offset": q.get("offset", 0)}
    if "invoice_id" in q:
        filters["invoice_id"] = q["invoice_id"]
    return a.billing.list_client_credit_notes(s["workspace_id"], s["client_id"], filters)


def _request_key(a, b) -> str:
    return usecases.request_key(b.get("idempotency_key"), a.req.context.request_id)


def _forward(a, p, b, q, s) -> dict:
    _to, email_id = usecases.forward_invoice(
        a.documents, s, p["id"], b["to"], b.get("note", ""), request_key=_request_key(a, b)
    )
    return {"email_id": email_id}


def _bank_account(a, p, b, q, s) -> dict:
    details = {k: b[k] for k in ("holder_name", "email", "iban")}
    return usecases.add_bank_account(
        a.payments,
        s,
        details,
        b["accept_mandate"],
        ip=a.client_ip(a.req),
        user_agent=a.req.user_agent,
        request_key=_request_key(a, b),
    )["mandate"]


def _comment(a, p, b, q, s) -> dict:
    return usecases.comment_on_invoice(a.billing, s, p["id"], b["body"], request_key=_request_key(a, b))


def _dispute(a, p, b, q, s) -> dict:
    return usecases.dispute_invoice(a.billing, s, p["id"], b["reason"], b.get("lines"), request_key=_request_key(a, b))


class NewerVersion(Conflict):
    """A decision on a version a revision replaced: the 409 also says which version is the newest and where
    to read it (problem+json members `newest_version` and `newest`)."""

    def __init__(self, exc: Conflict, quote_id: str):
        super().__init__(exc.detail, exc.fields)
        self.extensions = {"newest_version": int(exc.fields["newest_version"]), "newest": f"{PREFIX}/quotes/{quote_id}"}


def _on_newest(decide):
    """A quote decision whose stale-version 409 links to the newest version."""

    def call(a, p, b, q, s):
        try:
            return decide(a, p, b, q, s)
        except Conflict as exc:
            if usecases.is_stale(exc):
                raise NewerVersion(exc, p["id"]) from None
            raise

    return call


def _request_changes(a, p, b, q, s) -> dict:
    return usecases.request_quote_changes(
        a.billing, s, p["id"], b["message"], b["version"], request_key=_request_key(a, b)
    )


def _message(a, p, b, q, s) -> dict:
    email_id = usecases.message_business(
        a.billing, a.documents, s, b["subject"], b["message"], request_key=_request_key(a, b)
    )
    return {"email_id": email_id}


def _bookings(a, p, b, q, s) -> dict:
    options = a.billing.booking_options(s["workspace_id"])
    return {
        "links": options["links"],
        "timezone": options["timezone"],
        "upcoming": a.billing.list_bookings(s["workspace_id"], s["client_id"]),
    }


ENUM = {
    "invoice_status": tuple(k for k, _ in INVOICE_FILTERS),
    "invoice_sort": tuple(k for k, _ in INVOICE_SORTS),
    "quote_status": tuple(k for k, _ in QUOTE_FILTERS),
    "payment_kind": tuple(k for k, _ in PAYMENT_KINDS),
    "payment_sort": tuple(k for k, _ in PAYMENT_SORTS),
}
PERIOD = (
    Query("from", "The first day (default three months before to); on or before to", kind="date"),
    Query("to", "The last day (default today)", kind="date"),
)
PDF = "application/pdf"
XML = "application/xml"

ROUTES: tuple[PortalRoute, ...] = (
    PortalRoute(
        "POST",
        "/session",
        "sign_in",
        "Exchange a sign-in link's token for a bearer access token",
        _sign_in,
        SessionIn,
        status=201,
        public=True,
        problems=(429,),
    ),
    PortalRoute(
        "DELETE",
        "/session",
        "sign_out",
        "Sign out: this session ends at once, server-side "
        "(?everywhere=true ends all of your sessions, on every device)",
        lambda a, p, b, q, s: a.resource.end_session(a.req, q.get("everywhere") == "true"),
        status=204,
        query=(Query("everywhere", enum=("true", "false")),),
    ),
    PortalRoute(
        "POST",
        "/session/logout",
        "sign_out",
        "Sign out (for clients that cannot send DELETE)",
        lambda a, p, b, q, s: a.resource.end_session(a.req),
        status=204,
    ),
    PortalRoute("GET", "/me", "me", "Who is signed in, and the CSRF token for cookie-authenticated calls", _me),
    PortalRoute(
        "GET",
        "/dashboard",
        "dashboard",
        "Outstanding, credits, retainer, last payment, recent items",
        lambda a, p, b, q, s: a.billing.client_dashboard(s["workspace_id"], s["client_id"]),
    ),
    PortalRoute(
        "GET",
        "/invoices",
        "list_invoices",
        "The client's invoices, filtered, sorted, searched, paged",
        _verifiable(_invoices),
        query=(
            Query("status", enum=ENUM["invoice_status"]),
            Query("sort", enum=ENUM["invoice_sort"]),
            Query("search", "Part of an invoice number", max_length=50),
            Limit(100, 20),
            AFTER,
            OFFSET,
        ),
    ),
    PortalRoute(
        "GET",
        "/invoices/{id}",
        "get_invoice",
        "One invoice with lines, payments and credits, and its verify_url (recorded as viewed)",
        _verifiable(lambda a, p, b, q, s: a.billing.mark_invoice_viewed(s["workspace_id"], s["client_id"], p["id"])),
    ),
    PortalRoute("GET", "/invoices/{id}/pdf", "invoice_pdf", "The invoice as PDF", _pdf("invoice"), content_type=PDF),
    PortalRoute(
        "GET",
        "/invoices/{id}/xml",
        "invoice_einvoice",
        "The invoice as an EN 16931 e-invoice (CII XML; 409 when the business issues none)",
        lambda a, p, b, q, s: einvoice_xml(a.call, s["workspace_id"], p["id"], s["client_id"]),
        content_type=XML,
        problems=(409,),
    ),
    PortalRoute(
        "GET",
        "/invoices/{id}/comments",
        "list_comments",
        "The invoice's comment thread",
        lambda a, p, b, q, s: a.billing.list_comments(s["workspace_id"], "invoice", p["id"], client_id=s["client_id"]),
    ),
    PortalRoute(
        "POST", "/invoices/{id}/comments", "add_comment", "Comment on the invoice", _comment, CommentIn, status=201
    ),
    PortalRoute(
        "POST",
        "/invoices/{id}/dispute",
        "dispute_invoice",
        "Dispute an invoice you owe on, as a whole or some of its lines, with a reason (409 while a dispute "
        "of it is open, or when nothing is owed); reminders and automatic payment wait until it is resolved",
        _dispute,
        DisputeIn,
        status=201,
    ),
    PortalRoute(
        "POST",
        "/invoices/{id}/forward",
        "forward_invoice",
        "Email the invoice to another address",
        _forward,
        ForwardIn,
        status=202,
    ),
    PortalRoute(
        "GET",
        "/quotes",
        "list_quotes",
        "The client's quotes",
        _verifiable(
            lambda a, p, b, q, s: a.billing.list_quotes(
                s["workspace_id"],
                {"client_id": s["client_id"], "portal": True, "status": q.get("status", "all"), "limit": 100},
            )
        ),
        query=(Query("status", enum=ENUM["quote_status"]),),
    ),
    PortalRoute(
        "GET",
        "/quotes/{id}",
        "get_quote",
        "One quote with lines and totals, and its verify_url",
        _verifiable(_mine("get_quote")),
    ),
    PortalRoute("GET", "/quotes/{id}/pdf", "quote_pdf", "The quote as PDF", _pdf("quote"), content_type=PDF),
    PortalRoute(
        "POST",
        "/quotes/{id}/accept",
        "accept_quote",
        "Accept the version you saw of a pending quote, signed with a name",
        _on_newest(
            lambda a, p, b, q, s: usecases.accept_quote(
                a.billing, s, p["id"], b["signature_name"], b["version"], ip=a.client_ip(a.req)
            )
        ),
        AcceptIn,
    ),
    PortalRoute(
        "POST",
        "/quotes/{id}/reject",
        "reject_quote",
        "Decline the version you saw of a pending quote, with a reason",
        _on_newest(
            lambda a, p, b, q, s: usecases.decline_quote(a.billing, s, p["id"], b.get("reason", ""), b["version"])
        ),
        RejectIn,
    ),
    PortalRoute(
        "POST",
        "/quotes/{id}/request-changes",
        "request_quote_changes",
        "Ask for changes to the version you saw of a pending quote; the message joins the quote's comments",
        _on_newest(_request_changes),
        ChangesIn,
    ),
    PortalRoute(
        "GET",
        "/quotes/{id}/versions",
        "list_quote_versions",
        "Every version of the quote, oldest first, with lines, totals and what changed from the one before",
        _mine("list_quote_versions"),
    ),
    PortalRoute(
        "GET",
        "/quotes/{id}/comments",
        "list_quote_comments",
        "The quote's comment thread (your change requests and the business's answers)",
        lambda a, p, b, q, s: a.billing.list_comments(s["workspace_id"], "quote", p["id"], client_id=s["client_id"]),
    ),
    PortalRoute(
        "GET",
        "/credit-notes",
        "list_credit_notes",
        "The client's credit notes, newest first, paged (total, limit, offset), each with its verify_url and the "
        "invoice it credits; and credit_available, the client's credit not yet applied to invoices (one balance "
        "that credit notes add to, not kept per credit note)",
        _verifiable(_credit_notes),
        query=(
            Query("invoice_id", "Only the credit notes of this invoice", pattern="^[^\\u0000]{1,64}$"),
            Limit(100, 50),
            OFFSET,
        ),
    ),
    PortalRoute(
        "GET",
        "/credit-notes/{id}",
        "get_credit_note",
        "One credit note with its lines, totals and reason, the invoice it credits (invoice_id is null when that "
        "invoice is not in the portal), and its verify_url",
        _verifiable(_mine("get_credit_note")),
    ),
    PortalRoute(
        "GET",
        "/credit-notes/{id}/pdf",
        "credit_note_pdf",
        "The credit note as PDF",
        _pdf("credit_note"),
        content_type=PDF,
    ),
    PortalRoute(
        "GET",
        "/payments",
        "list_payments",
        "Payments made, invoice or retainer",
        lambda a, p, b, q, s: a.billing.list_payments(
            s["workspace_id"],
            s["client_id"],
            None if q.get("kind", "all") == "all" else q["kind"],
            q.get("sort", "-date"),
        ),
        query=(Query("kind", enum=ENUM["payment_kind"]), Query("sort", enum=ENUM["payment_sort"])),
    ),
    PortalRoute("GET", "/payments/{id}", "get_payment", "One payment and what it paid", _mine("get_payment")),
    PortalRoute(
        "GET",
        "/processing-payments",
        "list_processing_payments",
        "Bank debits still with the bank (processing until they settle or fail, which may take days)",
        lambda a, p, b, q, s: a.billing.list_processing_payments(s["workspace_id"], s["client_id"]),
    ),
    PortalRoute(
        "GET",
        "/payment-methods",
        "list_payment_methods",
        "Saved cards and bank accounts (type card or sepa_debit), the default first marked",
        lambda a, p, b, q, s: a.payments.list_cards(s["workspace_id"], s["client_id"]),
    ),
    PortalRoute(
        "POST",
        "/bank-accounts",
        "add_bank_account",
        "Save a bank account for SEPA Direct Debit (EUR clients) under a new mandate, recorded with this "
        "request's IP address and user agent; a copy of the mandate is emailed. A bad IBAN is a 422 and "
        "nothing is created",
        _bank_account,
        BankAccountIn,
        status=201,
    ),
    PortalRoute(
        "GET",
        "/mandates",
        "list_mandates",
        "The SEPA Direct Debit mandates you accepted, active and cancelled",
        lambda a, p, b, q, s: a.payments.list_mandates(s["workspace_id"], s["client_id"]),
    ),
    PortalRoute(
        "GET",
        "/payments/{id}/receipt.pdf",
        "receipt_pdf",
        "The payment's receipt as PDF",
        _pdf("receipt"),
        content_type=PDF,
    ),
    PortalRoute(
        "GET",
        "/statement",
        "statement",
        "Statement of account for a period",
        lambda a, p, b, q, s: a.billing.statement(s["workspace_id"], s["client_id"], q.get("from"), q.get("to")),
        query=PERIOD,
    ),
    PortalRoute(
        "GET",
        "/statement.pdf",
        "statement_pdf",
        "The statement as PDF",
        _pdf("statement"),
        query=PERIOD,
        content_type=PDF,
    ),
    PortalRoute(
        "GET",
        "/profile",
        "get_profile",
        "The client's company details and contacts",
        lambda a, p, b, q, s: a.billing.get_client(s["workspace_id"], s["client_id"]),
    ),
    PortalRoute(
        "PATCH",
        "/profile",
        "update_profile",
        "Change your name and phone, and the company's details",
        _profile,
        ProfileIn,
    ),
    PortalRoute(
        "GET",
        "/contacts",
        "list_contacts",
        "Owners only: the organisation's contacts, each with its role and whether it may sign in",
        lambda a, p, b, q, s: {"items": a.billing.list_team(s["workspace_id"], s["client_id"], s["contact_id"])},
        problems=(403,),
    ),
    PortalRoute(
        "POST",
        "/contacts",
        "invite_contact",
        "Owners only: invite a person by email with a role (they get a sign-in link)",
        lambda a, p, b, q, s: usecases.invite_contact(a.billing, s, b),
        InviteIn,
        status=201,
    ),
    PortalRoute(
        "PATCH",
        "/contacts/{id}",
        "change_contact_role",
        "Owners only: change a contact's role (its sessions end; the last owner stays an owner)",
        lambda a, p, b, q, s: usecases.change_contact_role(a.billing, s, p["id"], b["role"]),
        RoleIn,
    ),
    PortalRoute(
        "DELETE",
        "/contacts/{id}",
        "remove_contact",
        "Owners only: take a contact's portal access away (its sessions end; the last owner stays)",
        lambda a, p, b, q, s: usecases.remove_contact(a.billing, s, p["id"]),
    ),
    PortalRoute(
        "GET",
        "/notification-preferences",
        "get_notification_preferences",
        "Which emails you get (each category on or off) and their language",
        lambda a, p, b, q, s: a.billing.get_notification_preferences(
            s["workspace_id"], s["contact_id"], client_id=s["client_id"]
        ),
    ),
    PortalRoute(
        "PATCH",
        "/notification-preferences",
        "update_notification_preferences",
        "Turn categories of email on or off, or change their language",
        _notifications,
        NotificationPreferencesIn,
    ),
    PortalRoute(
        "POST", "/messages", "send_message", "Send the business a message (by email)", _message, MessageIn, status=202
    ),
    PortalRoute(
        "POST",
        "/reviews",
        "add_review",
        "Review the business",
        lambda a, p, b, q, s: usecases.review_business(a.billing, s, b["rating"], b.get("message", "")),
        ReviewIn,
        status=201,
    ),
    PortalRoute(
        "POST",
        "/session/password",
        "sign_in_with_password",
        "Sign in with an email and a password, where the business allows passwords; "
        "the same 401 whatever is wrong, so it tells nobody whether an email has an account",
        _password_sign_in,
        PasswordSignInIn,
        status=201,
        public=True,
        problems=(429,),
    ),
    PortalRoute(
        "POST",
        "/password/forgot",
        "forgot_password",
        "Email a link to set a new password (single-use, one hour); the same answer for any email",
        lambda a, p, b, q, s: a.auth.request_password_reset(
            b["email"], a.client_ip(a.req), a.resource.config.portal_url
        ),
        PasswordForgotIn,
        status=202,
        public=True,
        problems=(429,),
    ),
    PortalRoute(
        "POST",
        "/password/reset",
        "reset_password",
        "Set a new password with the emailed link's token: every other session ends, and a bearer token "
        "for a new one is returned",
        _password_reset,
        PasswordResetIn,
        status=201,
        public=True,
        problems=(429,),
    ),
    PortalRoute(
        "GET",
        "/me/password",
        "get_password",
        "Whether the business allows passwords, and whether you have set one",
        lambda a, p, b, q, s: a.auth.password_status(s["contact_id"]),
    ),
    PortalRoute(
        "POST",
        "/me/password",
        "set_password",
        "Set or change your password (changing needs the current one); your other sessions end",
        lambda a, p, b, q, s: a.auth.set_password(
            s["session_id"], s["contact_id"], b.get("current_password") or None, b["password"]
        ),
        PasswordIn,
        problems=(429,),
    ),
    PortalRoute(
        "GET",
        "/sessions",
        "list_sessions",
        "Your active sessions (the current one marked; last seen may lag a minute), unused sign-in links and "
        "active one-document links emailed to you (each with its document's number, and whether you can still "
        "open that document)",
        lambda a, p, b, q, s: usecases.devices(a.auth, a.billing, s),
    ),
    PortalRoute(
        "POST",
        "/sessions/{id}/end",
        "end_session",
        "End one of your sessions on every gateway (your current one too: that signs you out)",
        _end_session,
        status=204,
    ),
    PortalRoute(
        "POST",
        "/sessions/end-others",
        "end_other_sessions",
        "End every session but this one; answers how many ended",
        lambda a, p, b, q, s: {"ended": usecases.end_other_sessions(a.auth, s)},
    ),
    PortalRoute(
        "POST",
        "/sign-in-links/{id}/end",
        "end_sign_in_link",
        "Make one of your unused sign-in links stop working",
        lambda a, p, b, q, s: _ended(a.auth.end_sign_in_link(s["contact_id"], p["id"])),
        status=204,
    ),
    PortalRoute(
        "POST",
        "/document-links/{id}/end",
        "end_document_link",
        "Make a one-document link emailed to you stop working",
        lambda a, p, b, q, s: _ended(a.auth.end_document_link(s["contact_id"], p["id"])),
        status=204,
    ),
    PortalRoute("GET", "/bookings", "list_bookings", "Booking links and your upcoming bookings", _bookings),
    PortalRoute(
        "GET",
        "/booking-links/{id}/slots",
        "booking_slots",
        "Free start times (UTC) for one booking link",
        lambda a, p, b, q, s: a.billing.booking_options(s["workspace_id"], p["id"]),
    ),
    PortalRoute(
        "POST",
        "/bookings",
        "book_slot",
        "Book one of the free start times (a confirmation is emailed)",
        lambda a, p, b, q, s: usecases.book_slot(a.billing, s, b["link_id"], b["start"]),
        BookingIn,
        status=201,
    ),
    PortalRoute(
        "POST",
        "/bookings/{id}/cancel",
        "cancel_booking",
        "Cancel one of your upcoming bookings",
        lambda a, p, b, q, s: usecases.cancel_booking(a.billing, s, p["id"]),
    ),
    PortalRoute(
        "POST",
        "/session/passkey/options",
        "passkey_sign_in_options",
        "A challenge for signing in with a passkey (no email: the device offers the passkeys it holds); "
        "pass it to navigator.credentials.get(), single-use, five minutes",
        lambda a, p, b, q, s: a.auth.passkey_sign_in_options(a.resource.config.portal_url, a.client_ip(a.req)),
        public=True,
        problems=(429,),
    ),
    PortalRoute(
        "POST",
        "/session/passkey",
        "sign_in_with_passkey",
        "Sign in with the passkey's answer to that challenge; a bearer token for the new session",
        _passkey(_passkey_sign_in),
        PasskeyAnswerIn,
        status=201,
        public=True,
    ),
    PortalRoute(
        "GET",
        "/me/passkeys",
        "list_passkeys",
        "Your passkeys",
        lambda a, p, b, q, s: a.auth.list_passkeys(s["contact_id"]),
    ),
    PortalRoute(
        "POST",
        "/me/passkeys/options",
        "passkey_registration_options",
        "A challenge for adding a passkey; pass it to navigator.credentials.create()",
        lambda a, p, b, q, s: a.auth.passkey_registration_options(
            s["contact_id"], a.resource.config.portal_url, a.resource.brand(s["workspace_id"])["name"]
        ),
    ),
    PortalRoute(
        "POST",
        "/me/passkeys",
        "add_passkey",
        "Add a passkey: the device's answer to that challenge, and a name",
        _passkey(
            lambda a, p, b, q, s: a.auth.register_passkey(
                s["contact_id"], b["credential"], b.get("name"), a.resource.config.portal_url
            )
        ),
        NewPasskeyIn,
        status=201,
    ),
    PortalRoute(
        "PATCH",
        "/me/passkeys/{id}",
        "rename_passkey",
        "Rename one of your passkeys",
        lambda a, p, b, q, s: a.auth.rename_passkey(s["contact_id"], p["id"], b["name"]),
        PasskeyNameIn,
    ),
    PortalRoute(
        "DELETE",
        "/me/passkeys/{id}",
        "remove_passkey",
        "Remove one of your passkeys (it signs nobody in from then on; sign-in links still work)",
        lambda a, p, b, q, s: a.auth.remove_passkey(s["contact_id"], p["id"]),
        status=204,
    ),
    PortalRoute(
        "POST",
        "/me/step-up/options",
        "step_up_options",
        "A challenge only your passkeys answer, to confirm it is you before paying or changing payment methods "
        "(where the business asks; without a passkey, sign in again with an emailed link)",
        lambda a, p, b, q, s: a.auth.passkey_step_up_options(
            s["contact_id"], s["session_id"], a.resource.config.portal_url
        ),
    ),
    PortalRoute(
        "POST",
        "/me/step-up",
        "step_up",
        "Confirm it is you with your passkey's answer: the session counts as proved for 10 minutes "
        "(a new token comes in the X-Session-Token header)",
        _passkey(_step_up),
        PasskeyAnswerIn,
    ),
)


class PortalApiResource(Routed, Base):
    """All the portal API routes of one path."""

    def __init__(self, rpc, config, routes: list[PortalRoute]):
        super().__init__(rpc, config)
        self.routes = {route.method: route for route in routes}
        self.methods = tuple(self.routes)

    def public_for(self, req) -> bool:
        """Signing in is public; everything else needs the session (an unknown method answers 405)."""
        route = self.routes.get(req.method)
        return route is None or route.public

    def _handle(self, req, resp, **params):
        route = self.routes.get(req.method)
        if route is None:
            return self.not_allowed(req, resp)  # raises the 405
        session = {} if route.public else self.session(req, resp)
        query = read_query(req, route.query)
        body = read_body(req, route.body) if route.body is not None else {}
        result: Any = route.call(_Call(self, req, resp), params, body, query, session)
        resp.status = route.status
        if route.content_type == PDF:
            send_pdf(req, resp, result)
        elif route.content_type == XML:
            send_xml(resp, result)
        elif route.status != 204:
            resp.media = result

    on_get = on_post = on_patch = on_delete = _handle


class _Call:
    """What a route's call function may use: the services, the request and the PDF helper."""

    def __init__(self, resource: PortalApiResource, req, resp):
        self.resource = resource
        self.req = req
        self.resp = resp
        self.client_ip = resource.client_ip

    def call(self, service, method, *args, **kwargs):
        return self.resource.call(self.req, service, method, *args, **kwargs)

    @property
    def auth(self) -> AuthClient:
        return AuthClient(self.call)

    @property
    def billing(self) -> BillingClient:
        return BillingClient(self.call)

    @property
    def documents(self) -> DocumentsClient:
        return DocumentsClient(self.call)

    @property
    def payments(self) -> PaymentsClient:
        return PaymentsClient(self.call)

    def pdf(self, kind, session, object_id, query) -> dict:
        return render_pdf(self.call, kind, session, object_id, query)


def portal_openapi() -> dict:
    return openapi_document(
        ROUTES,
        PREFIX,
        {
            "title": "Billing portal client API",
            "version": "1.0.0",
            "description": __doc__.split("\n\n", 1)[1].strip() + " Money is integer minor units with an ISO 4217 "
            "currency; times are UTC (ISO 8601). Errors are application/problem+json. Invoices, quotes and credit "
            "notes carry verification_code and verify_url: the public page, printed on their PDFs with a QR code, "
            "where anyone holding the paper checks it.",
        },
        {
            "session": {"type": "http", "scheme": "bearer", "description": "access_token from POST /session"},
            "cookie": {
                "type": "apiKey",
                "in": "cookie",
                "name": "__Host-portal_session",
                "description": "The portal's own session cookie (plus X-CSRF-Token on changes)",
            },
        },
    )


def add_portal_api_routes(app: falcon.App, rpc, config) -> None:
    by_path: dict[str, list[PortalRoute]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, []).append(route)
    for path, routes in by_path.items():
        app.add_route(PREFIX + path, PortalApiResource(rpc, config, routes))
    app.add_route(PREFIX + "/openapi.json", OpenApi(portal_openapi()))

"""The admin JSON API, `/api/admin/v1/`, for a workspace's own systems and staff.

One table of routes drives the request handling and the OpenAPI document, so the two cannot drift.
Bodies are validated here (pydantic) for clear field errors; billing checks the business rules again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

import falcon
from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from chassis.errors import Unauthorized
from chassis.scope import Scope
from clients.billing import BookingLink
from clients.documents import EVENT_TYPES
from services.gateway.document_check import with_verify_urls
from services.gateway.jsonapi import (
    AFTER,
    OFFSET,
    SHARED_SCHEMAS,
    Body,
    Country,
    Currency,
    Day,
    Email,
    Endpoint,
    Limit,
    Locale,
    Moment,
    OpenApi,
    Query,
    Routed,
    Text,
    TimeZone,
    idempotency_key,
    read_body,
    read_query,
)
from services.gateway.jsonapi import openapi_document as _openapi
from services.gateway.resources import send_xml

PREFIX = "/api/admin/v1"
Id = Text(64, required=True)
NULL_CLEARS = "; null clears it"
MAX_PRICE = 1_000_000_000  # minor units: 200 lines of the largest quantity still total within a 64-bit integer
MAX_AMOUNT = 10**15


def _decimal(pattern: str, minimum: Decimal, maximum: Decimal, exclusive_minimum: bool, what: str):
    """A number with at most 4 decimal places (what is stored), as a JSON number or as decimal text."""

    def check(value):
        if isinstance(value, str):
            if not re.fullmatch(pattern, value):
                raise ValueError(f"{what}, as a number or as text like 1.5")
            return value
        try:
            number = Decimal(repr(value))
            if (
                number > maximum
                or number < minimum
                or (exclusive_minimum and number == minimum)
                or number != number.quantize(Decimal("0.0001"))
            ):
                raise InvalidOperation
        except InvalidOperation:
            raise ValueError(f"{what}, with at most 4 decimal places") from None
        return value

    number = {
        "type": "number",
        "maximum": float(maximum),
        "multipleOf": 0.0001,
        **({"exclusiveMinimum": float(minimum)} if exclusive_minimum else {"minimum": float(minimum)}),
    }
    return Annotated[
        float | str,
        AfterValidator(check),
        WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": pattern}], "description": what}),
    ]


Quantity = _decimal(
    r"^([1-9][0-9]{0,6}(\.[0-9]{1,4})?|0\.([1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$",
    Decimal(0),
    Decimal("9999999.9999"),
    True,
    "more than 0 and below 10,000,000",
)
Percent = _decimal(
    r"^(100(\.0{1,4})?|[1-9]?[0-9](\.[0-9]{1,4})?)$", Decimal(0), Decimal(100), False, "a percentage from 0 to 100"
)


class LineIn(Body):
    description: str = Text(500, required=True)
    quantity: Quantity = 1
    unit_price: int = Field(ge=0, le=MAX_PRICE, description="Minor units (cents)")
    tax_rate: Percent = 0
    discount_percent: Percent = 0
    tax_category: Literal["S", "Z", "E", "AE"] = Field(
        None,
        description="VAT category: S standard (rate above 0), Z zero rated, E exempt, AE reverse charge; "
        "left out: S when taxed, Z at 0%",
    )


NUMBER_PATTERN = (
    r"^[^{}\u0000]*(\{(YYYY|YY|MM)\}[^{}\u0000]*)*\{seq(:0?[1-9])?\}[^{}\u0000]*(\{(YYYY|YY|MM)\}[^{}\u0000]*)*$"
)
WINDOW = r"^([01][0-9]|2[0-3]):[0-5][05]-([01][0-9]|2[0-3]):[0-5][05]$"


def _windows(weekly: dict) -> dict:
    for day, windows in weekly.items():
        for window in windows:
            start, end = window.split("-")
            if start >= end:
                raise ValueError(f"{day}: {window} starts before it ends")
    return weekly


class BookingRulesIn(Body):
    weekly: Annotated[
        dict[
            Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            Annotated[list[Annotated[str, Field(pattern=WINDOW)]], Field(max_length=6)],
        ],
        AfterValidator(_windows),
    ] = Field(None, description="Windows like 09:00-12:00, each starting before it ends")
    slot_step_minutes: int = Field(None, ge=5, le=240, multiple_of=5)
    min_notice_hours: int = Field(None, ge=0, le=24 * 14)
    horizon_days: int = Field(None, ge=1, le=90)


Days = Annotated[
    list[Annotated[int, Field(ge=1, le=365)]], Field(max_length=10, json_schema_extra={"uniqueItems": True})
]


def _unique(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("each at most once")
    return values


class RemindersIn(Body):
    enabled: bool = None
    days_before: Annotated[Days, AfterValidator(_unique)] = None
    on_due: bool = None
    days_after: Annotated[Days, AfterValidator(_unique)] = None


class LegalIn(Body):
    """What invoice law asks the documents to state; the fields sent change, the others stay."""

    country: Country = None
    vat_id: str = Field(None, max_length=20, description="With its country prefix; checked by its check digits")
    iban: str = Field(None, max_length=42, description="Printed with the payment terms; checked")
    bic: str = Field(None, max_length=11)
    einvoice_profile: Literal["en16931", "xrechnung"] = None


class SettingsIn(Body):
    """The settings to change; the others keep their values."""

    portal_enabled: bool = None
    passwords_enabled: bool = Field(
        None, description="Contacts may also sign in with an email and a password they set (off by default)"
    )
    allow_partial_payments: bool = None
    partial_payment_minimum: int = Field(None, ge=0, le=MAX_AMOUNT)
    debit_notice_days: int = Field(
        None, ge=0, le=14, description="Days between the notice of an automatic bank debit and its collection"
    )
    payment_methods: Annotated[
        list[Literal["card", "bank_transfer"]], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})
    ] = None
    stripe_account: str | None = Field(
        None, pattern=r"^acct_[A-Za-z0-9]+$", max_length=100, description="A Stripe Connect account" + NULL_CLEARS
    )
    booking_links: list[BookingLink] = Field(None, max_length=20)
    booking: BookingRulesIn = None
    invoice_number_pattern: str = Field(None, pattern=NUMBER_PATTERN, max_length=40)
    retainer_number_pattern: str = Field(None, pattern=NUMBER_PATTERN, max_length=40)
    quote_number_pattern: str = Field(None, pattern=NUMBER_PATTERN, max_length=40)
    credit_number_pattern: str = Field(None, pattern=NUMBER_PATTERN, max_length=40)
    default_payment_terms_days: int = Field(None, ge=0, le=365)
    reminders: RemindersIn = None
    auto_convert_accepted_quotes: bool = None
    refund_policy: Literal["reopen", "credit"] = None
    step_up_for_payments: bool = Field(
        None,
        description="Before paying or changing payment methods, a contact confirms with a passkey or a sign-in "
        "link from the last 10 minutes (off by default)",
    )
    paper_size: Literal["A4", "Letter"] = None
    attach_pdf_to_emails: bool = None
    webhooks_include_device_details: bool = Field(
        None, description="Outbound webhooks of session events include the contact's IP address and user agent"
    )
    legal: LegalIn = None


LOGO = r"^(data:image/(png|jpeg|svg\+xml);base64,[A-Za-z0-9+/=]+)?$"
COLOR = r"^#[0-9a-fA-F]{6}$"


class WorkspaceUpdate(Body):
    """Only the fields sent change; null clears the phone, address, tax id or logo."""

    name: str = Text(200, required=True, default=None)
    email: str = Text(254, required=True, default=None)
    phone: str | None = Text(50, default=None)
    address: str | None = Text(2000, default=None)
    currency: Currency = None
    locale: Locale = None
    timezone: TimeZone = None
    tax_id: str | None = Text(50, default=None)
    logo_url: str | None = Field(
        None,
        max_length=60_000,
        pattern=LOGO,  # within the gateway's 64 KB bodies
        description="data:image/png;base64,... (embedded)",
    )
    brand_color: str = Field(None, pattern=COLOR)
    accent_color: str = Field(None, pattern=COLOR)
    settings: SettingsIn = None


ContactRole = Literal["owner", "payer", "approver", "viewer"]
CONTACT_ROLES = (
    "The contact's role in its organisation: owner (everything, and manages the other contacts in the "
    "portal), payer (pays, manages cards), approver (accepts, declines and asks to change quotes) or viewer "
    "(reads and downloads). A client's last owner cannot lose the role"
)


class ContactIn(Body):
    email: Email = Field(description="Stored in its normal form (lower case)")
    name: str = Text(200, default="")
    phone: str = Text(50, default="")
    locale: Locale | None = Field(None, description="null: the client's")
    is_primary: bool = False
    portal_access: bool = False
    role: ContactRole = Field("payer", description=CONTACT_ROLES)


class ContactUpdate(Body):
    """Only the fields sent change; null clears the name or phone, and the locale (the client's applies)."""

    email: Email = Field(None, description="Stored in its normal form (lower case)")
    name: str | None = Text(200, default=None)
    phone: str | None = Text(50, default=None)
    locale: Locale | None = None
    is_primary: bool = None
    portal_access: bool = None
    role: ContactRole = Field(None, description=CONTACT_ROLES + ". The contact's sessions end when it changes")


class ClientIn(Body):
    name: str = Text(200, required=True)
    address: str = Text(2000, default="")
    phone: str = Text(50, default="")
    currency: Currency = Field(None, description="The workspace's if left out")
    locale: Locale = Field(None, description="The workspace's if left out")
    timezone: TimeZone = Field(None, description="The workspace's if left out")
    tax_id: str = Text(50, default="")
    country: Country = ""
    vat_id: str = Text(30, default="", description="With its country prefix; checked by its check digits")
    buyer_reference: str = Text(100, default="", description="The buyer's reference (Leitweg-ID for XRechnung)")
    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)


class ClientUpdate(Body):
    """Only the fields sent change; null clears the address, phone or tax id."""

    name: str = Text(200, required=True, default=None)
    address: str | None = Text(2000, default=None)
    phone: str | None = Text(50, default=None)
    currency: Currency = None
    locale: Locale = None
    timezone: TimeZone = None
    tax_id: str | None = Text(50, default=None)
    country: Country | None = None
    vat_id: str | None = Text(30, default=None)
    buyer_reference: str | None = Text(100, default=None)


LEGAL_DATES = {
    "supply_date": "The date of supply, when it is not the issue date",
    "service_period_start": "The service period's first day (with its end)",
    "service_period_end": "The service period's last day",
}
EXEMPTION = "Why exempt lines (tax_category E) carry no tax, as printed"


TERMS = Field(
    None,
    ge=0,
    le=365,
    description="Days to pay; null: the workspace's default (the due date is then issue date + that default)",
)
DUE = "On or after issue_date (default: issue date + payment terms)"


class InvoiceIn(Body):
    client_id: str = Id
    kind: Literal["standard", "retainer"] = "standard"
    issue_date: Day = Field(None, description="Today (the workspace's) if left out")
    due_date: Day = Field(None, description=DUE)
    payment_terms_days: int | None = TERMS
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Text(5000, default="")
    terms: str = Text(5000, default="")
    supply_date: Day = Field(None, description=LEGAL_DATES["supply_date"])
    service_period_start: Day = Field(None, description=LEGAL_DATES["service_period_start"])
    service_period_end: Day = Field(None, description=LEGAL_DATES["service_period_end"])
    tax_exemption_reason: str = Text(500, default="", description=EXEMPTION)
    send: bool = False


class InvoiceUpdate(Body):
    """A draft's dates and lines, any invoice's notes and terms (null clears those)."""

    issue_date: Day = None
    due_date: Day = Field(None, description=DUE)
    payment_terms_days: int | None = TERMS
    lines: list[LineIn] = Field(None, min_length=1, max_length=200)
    notes: str | None = Text(5000, default=None)
    terms: str | None = Text(5000, default=None)
    supply_date: Day | None = Field(None, description=LEGAL_DATES["supply_date"])
    service_period_start: Day | None = Field(None, description=LEGAL_DATES["service_period_start"])
    service_period_end: Day | None = Field(None, description=LEGAL_DATES["service_period_end"])
    tax_exemption_reason: str | None = Text(500, default=None, description=EXEMPTION)


class QuoteIn(Body):
    client_id: str = Id
    issue_date: Day = Field(None, description="Today (the workspace's) if left out")
    expiry_date: Day = Field(None, description="On or after issue_date (default: 30 days after it)")
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Text(5000, default="")
    terms: str = Text(5000, default="")
    send: bool = False


class QuoteUpdate(Body):
    """A draft quote's dates and lines, and its notes and terms (null clears those)."""

    issue_date: Day = None
    expiry_date: Day = Field(None, description="On or after issue_date")
    lines: list[LineIn] = Field(None, min_length=1, max_length=200)
    notes: str | None = Text(5000, default=None)
    terms: str | None = Text(5000, default=None)


class QuoteRevisionIn(Body):
    """The next version of a sent quote: its lines, and optionally new notes, terms (null clears those) and
    expiry date. It is issued today, numbered like the quote with the version as a suffix (Q-0007-2)."""

    lines: list[LineIn] = Field(min_length=1, max_length=200)
    expiry_date: Day = Field(None, description="On or after today (default: 30 days from today)")
    notes: str | None = Text(5000, default=None, description="The current version's if left out")
    terms: str | None = Text(5000, default=None, description="The current version's if left out")


Method = Literal["card", "bank_transfer", "cash", "cheque", "other"]


class OfflinePayment(Body):
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="Minor units")
    method: Method = "bank_transfer"
    reference: str = Text(200, default="")
    received_at: Moment = Field(None, description="ISO 8601 with time zone; now if left out")
    payment_id: str = Text(64, required=True, default=None, description="Your id for the payment; makes retries safe")


class Allocation(Body):
    invoice_id: str = Id
    amount: int = Field(gt=0, le=MAX_AMOUNT)


class MultiPayment(Body):
    allocations: list[Allocation] = Field(min_length=1, max_length=100)
    method: Method = "bank_transfer"
    reference: str = Text(200, default="")
    received_at: Moment = Field(None, description="ISO 8601 with time zone; now if left out")
    payment_id: str = Text(64, required=True, default=None, description="Your id for the payment; makes retries safe")


class AmountIn(Body):
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="Minor units")


class RefundIn(Body):
    amount: int = Field(gt=0, le=MAX_AMOUNT)
    reference: str = Text(200, default="")


class CardRefundIn(Body):
    amount: int | None = Field(None, gt=0, le=MAX_AMOUNT, description="Minor units; null or left out: what is left")
    reason: str = Text(500, default="")
    idempotency_key: str = Text(100, required=True, description="The same key never refunds twice")


class ArchiveIn(Body):
    archived: bool = True


class CommentIn(Body):
    body: str = Text(5000, required=True, description="The comment; blank space around it is trimmed")
    author_name: str = Text(200, default="", description="The business's name if left out or empty")


class CreditNoteIn(Body):
    """Lines, or an amount (one line for it): exactly one of the two."""

    model_config = {
        **Body.model_config,
        "json_schema_extra": {"oneOf": [{"required": ["lines"]}, {"required": ["amount"]}]},
    }
    client_id: str = Id
    issue_date: Day = Field(None, description="Today (the workspace's) if left out")
    lines: list[LineIn] = Field(None, min_length=1, max_length=200, description="Totalling more than 0")
    amount: int = Field(None, gt=0, le=MAX_AMOUNT)
    reason: str = Text(2000, default="")
    invoice_id: str = Text(64, required=True, default=None)

    @model_validator(mode="after")
    def _lines_or_amount(self):
        if ("lines" in self.model_fields_set) == ("amount" in self.model_fields_set):
            raise ValueError("send lines or an amount (one of the two)")
        return self


class DisputeAdjustIn(Body):
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="The credit note's amount, at most the invoice's total")
    message: str = Text(2000, default="", description="The answer to the client; also the credit note's reason")


class DisputeRejectIn(Body):
    message: str = Text(2000, required=True, description="Why the invoice stands as it is")


class RecurringIn(Body):
    client_id: str = Id
    frequency: Literal["weekly", "monthly", "yearly"]
    interval: int = Field(1, ge=1, le=36)
    start_date: Day
    end_date: Day | None = Field(None, description="On or after start_date; null or left out: no end")
    payment_terms_days: int = Field(None, ge=0, le=365, description="The workspace's default if left out")
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Text(5000, default="")
    autopay: bool = False
    active: bool = True


class RecurringUpdate(Body):
    """Only the fields sent change; null clears the end date (no end) or the notes."""

    end_date: Day | None = Field(None, description="On or after the start date (a 409 otherwise)")
    payment_terms_days: int = Field(None, ge=0, le=365)
    lines: list[LineIn] = Field(None, min_length=1, max_length=200)
    notes: str | None = Text(5000, default=None)
    autopay: bool = None
    active: bool = None


WEBHOOK_EVENTS = "Event types (e.g. invoice.paid), invoice.* for a family, or * for all; each once"
EVENT_PATTERNS = sorted(EVENT_TYPES | {t.split(".")[0] + ".*" for t in EVENT_TYPES} | {"*"})
EventTypes = Annotated[
    list[Literal[tuple(EVENT_PATTERNS)]],
    AfterValidator(_unique),
    Field(min_length=1, max_length=50, description=WEBHOOK_EVENTS, json_schema_extra={"uniqueItems": True}),
]
PORT = r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
URL = r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?" + PORT + r"([/?#][!-~]*)?$"


class WebhookIn(Body):
    url: str = Field(max_length=2000, pattern=URL, description="http(s) URL that receives the POSTs")
    event_types: EventTypes
    secret: str = Field(
        None,
        pattern=r"^[ -~]{16,200}$",
        description="Signing secret; left out: a random whsec_... (shown only in this answer)",
    )
    description: str = Text(500, default="")
    active: bool = True


class WebhookUpdate(Body):
    url: str = Field(None, max_length=2000, pattern=URL)
    event_types: EventTypes = None
    description: str = Text(500, default=None)
    active: bool = Field(None, description="false pauses deliveries; pending ones wait")


@dataclass(frozen=True)
class Route(Endpoint):
    """An admin endpoint: `call(path params, body, query)` gives the RPC's arguments after the workspace id."""

    service: str = "billing"
    scope_check: str | None = None  # a billing method that 404s when {id} is not this workspace's
    einvoice: str | None = None  # a document kind: the call's answer is sent as that kind's e-invoice XML

    @property
    def keyed(self) -> bool:
        # payments' refunds carry their key in the body (it is also Stripe's idempotency key)
        return self.method != "GET" and self.service != "payments"


def _p(name):
    return lambda p, b, q: (p[name],)


def _pb(name):
    return lambda p, b, q: (p[name], b)


def _comment(kind):
    return lambda p, b, q: (kind, p["id"], "business", b.get("author_name") or "The business", b["body"])


# The late-payment risk rule (services/billing/engagement.py), as the API documents it.
ENGAGEMENT_RULE = (
    "Risk is high when an invoice is more than 30 days overdue, or 2 or more card payments failed in "
    "the last 30 days, or reminders were sent and the client has viewed no invoice since the first "
    "of them while still owing; medium when any invoice is overdue or a card payment failed in the "
    "last 30 days; low otherwise. `reasons` lists each rule that applies."
)
CLIENT_ID = Query("client_id", "Only this client's", max_length=64)
INVOICE_SORTS = tuple(f"{d}{k}" for k in ("date", "due_date", "amount", "number") for d in ("", "-"))
STATUS_FILTER = ("all", "paid", "unpaid", "partially_paid", "overdue", "draft", "sent", "viewed", "void")
ROUTES: tuple[Route, ...] = (
    Route("GET", "/workspace", "get_workspace", "The workspace's details and settings", lambda p, b, q: ()),
    Route(
        "PATCH",
        "/workspace",
        "update_workspace",
        "Change details, branding and settings",
        lambda p, b, q: (b,),
        WorkspaceUpdate,
    ),
    Route(
        "GET",
        "/clients",
        "list_clients",
        "List clients",
        lambda p, b, q: (q.get("limit", 100), q.get("offset", 0)),
        query=(Limit(500, 100), OFFSET),
    ),
    Route(
        "POST",
        "/clients",
        "create_client",
        "Create a client, optionally with contacts",
        lambda p, b, q: (b,),
        ClientIn,
        status=201,
    ),
    Route("GET", "/clients/{id}", "get_client", "A client with contacts and balances", _p("id")),
    Route("PATCH", "/clients/{id}", "update_client", "Change a client (future invoices only)", _pb("id"), ClientUpdate),
    Route("POST", "/clients/{id}/contacts", "add_contact", "Add a contact", _pb("id"), ContactIn, status=201),
    Route(
        "PATCH",
        "/contacts/{id}",
        "update_contact",
        "Change a contact, e.g. enable portal access",
        _pb("id"),
        ContactUpdate,
    ),
    Route(
        "GET",
        "/clients/{id}/notification-preferences",
        "list_notification_preferences",
        "Which emails each of the client's contacts chose to get (read-only: contacts choose in the portal)",
        _p("id"),
    ),
    Route(
        "GET",
        "/clients/{id}/statement",
        "statement",
        "Statement of account for a period",
        lambda p, b, q: (p["id"], q.get("from"), q.get("to"), q.get("currency")),
        query=(
            Query("from", "The first day (default three months before to); on or before to", kind="date"),
            Query("to", "The last day (default today)", kind="date"),
            Query(
                "currency", "An ISO 4217 code; the client's if left out", pattern=SHARED_SCHEMAS["Currency"]["pattern"]
            ),
        ),
    ),
    Route(
        "GET",
        "/clients/{id}/activity",
        "list_activity",
        "The client's activity timeline",
        lambda p, b, q: (p["id"], q.get("limit", 50)),
        query=(Limit(200, 50),),
    ),
    Route(
        "GET",
        "/clients/{id}/engagement",
        "client_engagement",
        "Collection signals and late-payment risk: portal views, sign-ins, card attempts and failures, "
        "reminders, days overdue (see GET /engagement for the rule)",
        _p("id"),
    ),
    Route(
        "GET",
        "/engagement",
        "list_engagement",
        "Clients by late-payment risk, riskiest and longest overdue first. " + ENGAGEMENT_RULE,
        lambda p, b, q: (q.get("risk"), q.get("limit", 100), q.get("offset", 0)),
        query=(
            Query("risk", "Only clients at this risk level", enum=("high", "medium", "low")),
            Limit(500, 100),
            OFFSET,
        ),
    ),
    Route(
        "POST",
        "/clients/{id}/retainer-refunds",
        "refund_retainer",
        "Refund unused retainer money",
        lambda p, b, q: (p["id"], b["amount"], b.get("reference", "")),
        RefundIn,
        status=201,
    ),
    Route(
        "GET",
        "/clients/{id}/emails",
        "list_emails",
        "Emails sent to the client's contacts, with delivery status",
        lambda p, b, q: (p["id"], q.get("limit", 100)),
        query=(Limit(500, 100),),
        service="documents",
        scope_check="get_client",
    ),
    Route(
        "GET",
        "/clients/{id}/mandates",
        "list_mandates",
        "The client's SEPA Direct Debit mandates, newest first: who accepted each, when, from which IP address "
        "and browser, the mandate text version, its reference, and whether it was cancelled (its bank account removed)",
        _p("id"),
        service="payments",
        scope_check="get_client",
    ),
    Route(
        "GET",
        "/invoices",
        "list_invoices",
        "List invoices",
        lambda p, b, q: ({**q, "include_archived": q.get("include_archived") == "true"},),
        query=(
            CLIENT_ID,
            Query("status", enum=STATUS_FILTER),
            Query("kind", enum=("standard", "retainer")),
            Query("search", "Part of an invoice number", max_length=50),
            Query("sort", "By date, due date, amount or number; - for descending", enum=INVOICE_SORTS),
            Limit(100, 20),
            AFTER,
            OFFSET,
            Query("include_archived", enum=("true", "false")),
        ),
    ),
    Route(
        "POST",
        "/invoices",
        "create_invoice",
        "Create an invoice (numbered at once)",
        lambda p, b, q: (b,),
        InvoiceIn,
        status=201,
    ),
    Route(
        "GET",
        "/invoices/{id}",
        "get_invoice",
        "An invoice with lines, payments and credits, and its verify_url",
        _p("id"),
    ),
    Route(
        "GET",
        "/invoices/{id}/xml",
        "get_invoice",
        "The invoice as an EN 16931 e-invoice: CII XML in the workspace's profile (EN 16931 or XRechnung); "
        "409 when the workspace has no VAT id",
        _p("id"),
        content_type="application/xml",
        problems=(409,),
        einvoice="invoice",
    ),
    Route(
        "PATCH", "/invoices/{id}", "update_invoice", "Change a draft invoice (notes on any)", _pb("id"), InvoiceUpdate
    ),
    Route("POST", "/invoices/{id}/send", "send_invoice", "Issue or re-send an invoice", _p("id")),
    Route("POST", "/invoices/{id}/void", "void_invoice", "Void an invoice without payments", _p("id")),
    Route(
        "POST",
        "/invoices/{id}/archive",
        "archive_invoice",
        "Hide an invoice from the portal (or show again)",
        lambda p, b, q: (p["id"], b.get("archived", True)),
        ArchiveIn,
    ),
    Route(
        "POST",
        "/invoices/{id}/payments",
        "record_payment",
        "Record an offline payment",
        lambda p, b, q: ({**{k: v for k, v in b.items() if v is not None}, "invoice_id": p["id"]},),
        OfflinePayment,
        status=201,
    ),
    Route(
        "POST",
        "/invoices/{id}/apply-credit",
        "apply_credit",
        "Apply available credit",
        lambda p, b, q: (p["id"], b["amount"]),
        AmountIn,
    ),
    Route(
        "POST",
        "/invoices/{id}/apply-retainer",
        "apply_retainer",
        "Apply retainer balance",
        lambda p, b, q: (p["id"], b["amount"]),
        AmountIn,
    ),
    Route(
        "GET",
        "/invoices/{id}/comments",
        "list_comments",
        "The invoice's comment thread",
        lambda p, b, q: ("invoice", p["id"]),
    ),
    Route(
        "POST",
        "/invoices/{id}/comments",
        "add_comment",
        "Reply on an invoice as the business",
        _comment("invoice"),
        CommentIn,
        status=201,
    ),
    Route(
        "GET",
        "/quotes",
        "list_quotes",
        "List quotes",
        lambda p, b, q: (q,),
        query=(
            CLIENT_ID,
            Query("status", enum=("all", "draft", "pending", "accepted", "rejected", "expired")),
            Limit(100, 50),
        ),
    ),
    Route("POST", "/quotes", "create_quote", "Create a quote", lambda p, b, q: (b,), QuoteIn, status=201),
    Route("GET", "/quotes/{id}", "get_quote", "A quote with lines and its verify_url", _p("id")),
    Route("PATCH", "/quotes/{id}", "update_quote", "Change a draft quote", _pb("id"), QuoteUpdate),
    Route("POST", "/quotes/{id}/send", "send_quote", "Send a quote to the client", _p("id")),
    Route("POST", "/quotes/{id}/convert", "convert_quote", "Turn an accepted quote into an invoice", _p("id")),
    Route(
        "POST",
        "/quotes/{id}/revisions",
        "revise_quote",
        "Issue the next version of a sent quote (same number with -<version>); the client is emailed it",
        _pb("id"),
        QuoteRevisionIn,
        status=201,
    ),
    Route(
        "GET",
        "/quotes/{id}/versions",
        "list_quote_versions",
        "Every version of a quote, oldest first, with its lines and totals and what changed from the one before",
        _p("id"),
    ),
    Route(
        "GET",
        "/quotes/{id}/comments",
        "list_comments",
        "The quote's comment thread",
        lambda p, b, q: ("quote", p["id"]),
    ),
    Route(
        "POST",
        "/quotes/{id}/comments",
        "add_comment",
        "Reply on a quote as the business",
        _comment("quote"),
        CommentIn,
        status=201,
    ),
    Route(
        "GET",
        "/credit-notes",
        "list_credit_notes",
        "List credit notes",
        lambda p, b, q: (q.get("client_id"),),
        query=(CLIENT_ID,),
    ),
    Route(
        "POST",
        "/credit-notes",
        "issue_credit_note",
        "Issue a credit note",
        lambda p, b, q: (b,),
        CreditNoteIn,
        status=201,
    ),
    Route(
        "GET",
        "/payments",
        "list_payments",
        "List payments",
        lambda p, b, q: (q.get("client_id"), q.get("kind"), q.get("sort", "-date")),
        query=(
            CLIENT_ID,
            Query("kind", enum=("invoice", "retainer")),
            Query("sort", enum=("-date", "date", "-amount", "amount")),
        ),
    ),
    Route(
        "POST",
        "/payments",
        "record_payment",
        "Record one offline payment across several invoices",
        lambda p, b, q: ({k: v for k, v in b.items() if v is not None},),
        MultiPayment,
        status=201,
    ),
    Route(
        "GET",
        "/recurring-invoices",
        "list_recurring",
        "List recurring invoices",
        lambda p, b, q: (q.get("client_id"),),
        query=(CLIENT_ID,),
    ),
    Route(
        "POST",
        "/recurring-invoices",
        "create_recurring",
        "Create a recurring invoice",
        lambda p, b, q: (b,),
        RecurringIn,
        status=201,
    ),
    Route("GET", "/recurring-invoices/{id}", "get_recurring", "A recurring invoice", _p("id")),
    Route(
        "PATCH",
        "/recurring-invoices/{id}",
        "update_recurring",
        "Pause, resume, end or change one",
        _pb("id"),
        RecurringUpdate,
    ),
    Route(
        "GET",
        "/reviews",
        "list_reviews",
        "Reviews clients wrote in the portal, newest first",
        lambda p, b, q: (q.get("client_id"), q.get("limit", 50), q.get("offset", 0)),
        query=(CLIENT_ID, Limit(200, 50), OFFSET),
    ),
    Route(
        "GET",
        "/bookings",
        "list_bookings",
        "Bookings clients made in the portal",
        lambda p, b, q: (q.get("client_id"), q.get("upcoming", "true") != "false"),
        query=(CLIENT_ID, Query("upcoming", "false lists past and cancelled ones too", enum=("true", "false"))),
    ),
    Route("POST", "/bookings/{id}/cancel", "cancel_booking", "Cancel a booking (the client is emailed)", _p("id")),
    Route(
        "POST",
        "/payments/{id}/refunds",
        "refund_payment",
        "Refund all or part of a card payment through Stripe",
        lambda p, b, q: (p["id"], b.get("amount"), b.get("reason", ""), b["idempotency_key"]),
        CardRefundIn,
        status=201,
        service="payments",
    ),
    Route("GET", "/payments/{id}/refunds", "list_refunds", "A card payment's refunds", _p("id"), service="payments"),
    Route(
        "GET",
        "/disputes",
        "list_disputes",
        "Card payments the client disputed with its bank",
        lambda p, b, q: (),
        service="payments",
    ),
    Route(
        "GET",
        "/invoice-disputes",
        "list_invoice_disputes",
        "Invoices your clients disputed in the portal, newest first (not card chargebacks: see /disputes)",
        lambda p, b, q: (q,),
        query=(
            CLIENT_ID,
            Query("invoice_id", "Only this invoice's", max_length=64),
            Query("status", enum=("all", "open", "adjusted", "rejected")),
            Limit(200, 50),
            OFFSET,
        ),
    ),
    Route("GET", "/invoice-disputes/{id}", "get_invoice_dispute", "An invoice dispute", _p("id")),
    Route(
        "POST",
        "/invoice-disputes/{id}/adjust",
        "resolve_invoice_dispute",
        "Resolve an open invoice dispute by a credit note for an amount, linked to the invoice and applied to "
        "what it owes (any rest is the client's credit); reminders and autopay resume",
        lambda p, b, q: (p["id"], "adjust", b),
        DisputeAdjustIn,
    ),
    Route(
        "POST",
        "/invoice-disputes/{id}/reject",
        "resolve_invoice_dispute",
        "Reject an open invoice dispute with a message; reminders and autopay resume",
        lambda p, b, q: (p["id"], "reject", b),
        DisputeRejectIn,
    ),
    Route(
        "POST",
        "/webhooks",
        "create_webhook",
        "Subscribe a URL to events (the answer holds the signing secret, shown only once)",
        lambda p, b, q: (b,),
        WebhookIn,
        status=201,
        service="documents",
    ),
    Route(
        "GET",
        "/webhooks",
        "list_webhooks",
        "The workspace's webhook subscriptions",
        lambda p, b, q: (),
        service="documents",
    ),
    Route("GET", "/webhooks/{id}", "get_webhook", "A webhook subscription", _p("id"), service="documents"),
    Route(
        "PATCH",
        "/webhooks/{id}",
        "update_webhook",
        "Change the URL or event types, pause or resume",
        _pb("id"),
        WebhookUpdate,
        service="documents",
    ),
    Route(
        "DELETE",
        "/webhooks/{id}",
        "delete_webhook",
        "Delete a subscription with its deliveries",
        _p("id"),
        status=204,
        service="documents",
    ),
    Route(
        "GET",
        "/webhooks/{id}/deliveries",
        "list_webhook_deliveries",
        "The delivery log, newest first, each delivery with its attempts",
        lambda p, b, q: (p["id"], q.get("limit", 50)),
        query=(Limit(200, 50),),
        service="documents",
    ),
    Route(
        "POST",
        "/webhook-deliveries/{id}/replay",
        "replay_webhook_delivery",
        "Send a delivery again now (whatever its status), retried for another 24 hours",
        _p("id"),
        status=202,
        service="documents",
    ),
)


class AdminResource(Routed):
    """All the routes of one path; each method validates, calls billing once, and answers JSON."""

    public = True  # to sessions: the admin API authenticates its own callers, by API key

    def __init__(self, rpc, routes: list[Route], portal_url: str = "http://localhost:8000"):
        self.rpc = rpc
        self.portal_url = portal_url  # where a document's verify_url points
        self.routes = {route.method: route for route in routes}
        self.methods = tuple(self.routes)

    def _workspace(self, req) -> str:
        header = req.get_header("Authorization") or ""
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise falcon.HTTPUnauthorized(
                title="API key required", description="Send Authorization: Bearer <workspace API key>."
            )
        try:
            return self.rpc.call("billing", "authenticate_api_key", key.strip(), request_id=req.context.request_id)
        except Unauthorized:
            raise falcon.HTTPUnauthorized(
                title="Invalid API key", description="The key is unknown or revoked."
            ) from None

    def _handle(self, req, resp, **params):
        route = self.routes.get(req.method)
        if route is None:
            self.not_allowed(req, resp)
        workspace_id = self._workspace(req)
        scope = Scope(workspace_id)  # the services' databases hold the call to the key's workspace too
        query = read_query(req, route.query)
        body = read_body(req, route.body) if route.body is not None else {}
        if route.scope_check:
            self.rpc.call(
                "billing", route.scope_check, workspace_id, params["id"], request_id=req.context.request_id, scope=scope
            )
        keyed = (
            {"idempotency_key": key} if route.keyed and (key := idempotency_key(req, f"admin:{workspace_id}")) else {}
        )
        answer = self.rpc.call(
            route.service,
            route.name,
            workspace_id,
            *route.call(params, body, query),
            request_id=req.context.request_id,
            scope=scope,
            **keyed,
        )
        resp.status = route.status
        if route.einvoice:  # the document billing answered, written as XML by documents
            xml = self.rpc.call(
                "documents",
                "einvoice",
                route.einvoice,
                workspace_id,
                answer,
                request_id=req.context.request_id,
                scope=scope,
            )
            send_xml(resp, xml)
        else:  # each invoice, quote and credit note with the address its paper's QR code opens
            resp.media = with_verify_urls(self.portal_url, answer)

    on_get = on_post = on_patch = on_delete = _handle


def openapi_document() -> dict:
    return _openapi(
        ROUTES,
        PREFIX,
        {
            "title": "Billing portal admin API",
            "version": "1.0.0",
            "description": "Money is integer minor units with an ISO 4217 currency. Errors are "
            "application/problem+json; a rejected request changes nothing. Invoices, quotes and credit notes carry "
            "verification_code and verify_url: the public page, printed on their PDFs with a QR code, where anyone "
            "holding the paper checks it.",
        },
        {
            "apiKey": {
                "type": "http",
                "scheme": "bearer",
                "description": "A workspace API key from `portalctl key create`",
            }
        },
    )


def add_admin_routes(app: falcon.App, rpc, portal_url: str = "http://localhost:8000") -> None:
    by_path: dict[str, list[Route]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, []).append(route)
    for path, routes in by_path.items():
        app.add_route(PREFIX + path, AdminResource(rpc, routes, portal_url))
    app.add_route(PREFIX + "/openapi.json", OpenApi(openapi_document()))

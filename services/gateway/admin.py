"""The admin JSON API, `/api/admin/v1/`, for a workspace's own systems and staff.

One table of routes drives the request handling and the OpenAPI document, so the two cannot drift.
Bodies are validated here (pydantic) for clear field errors; billing checks the business rules again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import falcon
from pydantic import AfterValidator, Field, WithJsonSchema, model_validator

from chassis.errors import Unauthorized
from chassis.scope import Scope
from clients.billing import BillingClient, BookingLink
from clients.documents import EVENT_TYPES, DocumentsClient
from clients.payments import PaymentsClient
from services.gateway.downloads import send_xml, with_verify_urls
from services.gateway.jsonapi import (
    AFTER,
    OFFSET,
    PHONE,
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
    Phone,
    Query,
    Routed,
    Text,
    TimeZone,
    idempotency_key,
    read_body,
    read_query,
)
from services.gateway.jsonapi import openapi_document as _openapi

PREFIX = "/api/admin/v1"
Id = Text(64, required=True)
NULL_CLEARS = "; null clears it"
MAX_PRICE = 1_000_000_000  # minor units: 200 lines of the largest quantity still total within a 64-bit integer
MAX_AMOUNT = 10**15
# The default of a field that may be left out but not sent as null: only the fields sent are dumped
# (exclude_unset), so it is never read; typed Any so that the field keeps its type without null.
LEFT_OUT: Any = None


def _decimal(
    pattern: str, minimum: Decimal, maximum: Decimal, exclusive_minimum: bool, what: str
) -> tuple[AfterValidator, WithJsonSchema]:
    """A number with at most 4 decimal places (what is stored), as a JSON number or as decimal text: the
    check and the schema of a `float | str` field."""

    def check(value: float | str) -> float | str:
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
    return (
        AfterValidator(check),
        WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": pattern}], "description": what}),
    )


QUANTITY_CHECK, QUANTITY_SCHEMA = _decimal(
    r"^([1-9][0-9]{0,6}(\.[0-9]{1,4})?|0\.([1-9][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]))$",
    Decimal(0),
    Decimal("9999999.9999"),
    True,
    "more than 0 and below 10,000,000",
)
Quantity = Annotated[float | str, QUANTITY_CHECK, QUANTITY_SCHEMA]
PERCENT_CHECK, PERCENT_SCHEMA = _decimal(
    r"^(100(\.0{1,4})?|[1-9]?[0-9](\.[0-9]{1,4})?)$", Decimal(0), Decimal(100), False, "a percentage from 0 to 100"
)
Percent = Annotated[float | str, PERCENT_CHECK, PERCENT_SCHEMA]


class LineIn(Body):
    description: str = Text(500, required=True)
    quantity: Quantity = 1
    unit_price: int = Field(ge=0, le=MAX_PRICE, description="Minor units (cents)")
    tax_rate: Percent = 0
    discount_percent: Percent = 0
    tax_category: Literal["S", "Z", "E", "AE"] = Field(
        LEFT_OUT,
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
    ] = Field(LEFT_OUT, description="Windows like 09:00-12:00, each starting before it ends")
    slot_step_minutes: int = Field(LEFT_OUT, ge=5, le=240, multiple_of=5)
    min_notice_hours: int = Field(LEFT_OUT, ge=0, le=24 * 14)
    horizon_days: int = Field(LEFT_OUT, ge=1, le=90)


Days = Annotated[
    list[Annotated[int, Field(ge=1, le=365)]], Field(max_length=10, json_schema_extra={"uniqueItems": True})
]


def _unique(values: list) -> list:
    if len(set(values)) != len(values):
        raise ValueError("each at most once")
    return values


class RemindersIn(Body):
    enabled: bool = LEFT_OUT
    days_before: Annotated[Days, AfterValidator(_unique)] = LEFT_OUT
    on_due: bool = LEFT_OUT
    days_after: Annotated[Days, AfterValidator(_unique)] = LEFT_OUT


class LegalIn(Body):
    """What invoice law asks the documents to state; the fields sent change, the others stay."""

    country: Country = LEFT_OUT
    vat_id: str = Field(LEFT_OUT, max_length=20, description="With its country prefix; checked by its check digits")
    iban: str = Field(LEFT_OUT, max_length=42, description="Printed with the payment terms; checked")
    bic: str = Field(LEFT_OUT, max_length=11)
    einvoice_profile: Literal["en16931", "xrechnung"] = LEFT_OUT


class SettingsIn(Body):
    """The settings to change; the others keep their values."""

    portal_enabled: bool = LEFT_OUT
    passwords_enabled: bool = Field(
        LEFT_OUT, description="Contacts may also sign in with an email and a password they set (off by default)"
    )
    allow_partial_payments: bool = LEFT_OUT
    partial_payment_minimum: int = Field(LEFT_OUT, ge=0, le=MAX_AMOUNT)
    debit_notice_days: int = Field(
        LEFT_OUT, ge=0, le=14, description="Days between the notice of an automatic bank debit and its collection"
    )
    payment_methods: Annotated[
        list[Literal["card", "bank_transfer"]], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})
    ] = LEFT_OUT
    stripe_account: str | None = Field(
        None, pattern=r"^acct_[A-Za-z0-9]+$", max_length=100, description="A Stripe Connect account" + NULL_CLEARS
    )
    booking_links: list[BookingLink] = Field(LEFT_OUT, max_length=20)
    booking: BookingRulesIn = LEFT_OUT
    invoice_number_pattern: str = Field(LEFT_OUT, pattern=NUMBER_PATTERN, max_length=40)
    retainer_number_pattern: str = Field(LEFT_OUT, pattern=NUMBER_PATTERN, max_length=40)
    quote_number_pattern: str = Field(LEFT_OUT, pattern=NUMBER_PATTERN, max_length=40)
    credit_number_pattern: str = Field(LEFT_OUT, pattern=NUMBER_PATTERN, max_length=40)
    default_payment_terms_days: int = Field(LEFT_OUT, ge=0, le=365)
    reminders: RemindersIn = LEFT_OUT
    auto_convert_accepted_quotes: bool = LEFT_OUT
    refund_policy: Literal["reopen", "credit"] = LEFT_OUT
    step_up_for_payments: bool = Field(
        LEFT_OUT,
        description="Before paying or changing payment methods, a contact confirms with a passkey or a sign-in "
        "link from the last 10 minutes (off by default)",
    )
    paper_size: Literal["A4", "Letter"] = LEFT_OUT
    attach_pdf_to_emails: bool = LEFT_OUT
    webhooks_include_device_details: bool = Field(
        LEFT_OUT, description="Outbound webhooks of session events include the contact's IP address and user agent"
    )
    legal: LegalIn = LEFT_OUT


LOGO = r"^(data:image/(png|jpeg|svg\+xml);base64,[A-Za-z0-9+/=]+)?$"
COLOR = r"^#[0-9a-fA-F]{6}$"


class WorkspaceUpdate(Body):
    """Only the fields sent change; null clears the phone, address, tax id or logo."""

    name: str = Text(200, required=True, default=None)
    email: str = Text(254, required=True, default=None)
    phone: str | None = Text(50, default=None)
    address: str | None = Text(2000, default=None)
    currency: Currency = LEFT_OUT
    locale: Locale = LEFT_OUT
    timezone: TimeZone = LEFT_OUT
    tax_id: str | None = Text(50, default=None)
    logo_url: str | None = Field(
        None,
        max_length=60_000,
        pattern=LOGO,  # within the gateway's 64 KB bodies
        description="data:image/png;base64,... (embedded)",
    )
    brand_color: str = Field(LEFT_OUT, pattern=COLOR)
    accent_color: str = Field(LEFT_OUT, pattern=COLOR)
    settings: SettingsIn = LEFT_OUT


ContactRole = Literal["owner", "payer", "approver", "viewer"]
CONTACT_ROLES = (
    "The contact's role in its organisation: owner (everything, and manages the other contacts in the "
    "portal), payer (pays, manages cards), approver (accepts, declines and asks to change quotes) or viewer "
    "(reads and downloads). A client's last owner cannot lose the role"
)


class ContactIn(Body):
    email: Email = Field(description="Stored in its normal form (lower case)")
    name: str = Text(200, default="")
    phone: Phone = Field("", description=PHONE)
    locale: Locale | None = Field(None, description="null: the client's")
    is_primary: bool = False
    portal_access: bool = False
    role: ContactRole = Field("payer", description=CONTACT_ROLES)


class ContactUpdate(Body):
    """Only the fields sent change; null clears the name or phone, and the locale (the client's applies)."""

    email: Email = Field(LEFT_OUT, description="Stored in its normal form (lower case)")
    name: str | None = Text(200, default=None)
    phone: Phone | None = Field(None, description=PHONE)
    locale: Locale | None = None
    is_primary: bool = LEFT_OUT
    portal_access: bool = LEFT_OUT
    role: ContactRole = Field(LEFT_OUT, description=CONTACT_ROLES + ". The contact's sessions end when it changes")


class ClientIn(Body):
    name: str = Text(200, required=True)
    address: str = Text(2000, default="")
    phone: Phone = Field("", description=PHONE)
    currency: Currency = Field(LEFT_OUT, description="The workspace's if left out")
    locale: Locale = Field(LEFT_OUT, description="The workspace's if left out")
    timezone: TimeZone = Field(LEFT_OUT, description="The workspace's if left out")
    tax_id: str = Text(50, default="")
    country: Country = ""
    vat_id: str = Text(30, default="", description="With its country prefix; checked by its check digits")
    buyer_reference: str = Text(100, default="", description="The buyer's reference (Leitweg-ID for XRechnung)")
    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)


class ClientUpdate(Body):
    """Only the fields sent change; null clears the address, phone or tax id."""

    name: str = Text(200, required=True, default=None)
    address: str | None = Text(2000, default=None)
    phone: Phone | None = Field(None, description=PHONE)
    currency: Currency = LEFT_OUT
    locale: Locale = LEFT_OUT
    timezone: TimeZone = LEFT_OUT
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
    issue_date: Day = Field(LEFT_OUT, description="Today (the workspace's) if left out")
    due_date: Day = Field(LEFT_OUT, description=DUE)
    payment_terms_days: int | None = TERMS
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Text(5000, default="")
    terms: str = Text(5000, default="")
    supply_date: Day = Field(LEFT_OUT, description=LEGAL_DATES["supply_date"])
    service_period_start: Day = Field(LEFT_OUT, description=LEGAL_DATES["service_period_start"])
    service_period_end: Day = Field(LEFT_OUT, description=LEGAL_DATES["service_period_end"])
    tax_exemption_reason: str = Text(500, default="", description=EXEMPTION)
    send: bool = False


class InvoiceUpdate(Body):
    """A draft's dates and lines, any invoice's notes and terms (null clears those)."""

    issue_date: Day = LEFT_OUT
    due_date: Day = Field(LEFT_OUT, description=DUE)
    payment_terms_days: int | None = TERMS
    lines: list[LineIn] = Field(LEFT_OUT, min_length=1, max_length=200)
    notes: str | None = Text(5000, default=None)
    terms: str | None = Text(5000, default=None)
    supply_date: Day | None = Field(None, description=LEGAL_DATES["supply_date"])
    service_period_start: Day | None = Field(None, description=LEGAL_DATES["service_period_start"])
    service_period_end: Day | None = Field(None, description=LEGAL_DATES["service_period_end"])
    tax_exemption_reason: str | None = Text(500, default=None, description=EXEMPTION)


class QuoteIn(Body):
    client_id: str = Id
    issue_date: Day = Field(LEFT_OUT, description="Today (the workspace's) if left out")
    expiry_date: Day = Field(LEFT_OUT, description="On or after issue_date (default: 30 days after it)")
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Text(5000, default="")
    terms: str = Text(5000, default="")
    send: bool = False


class QuoteUpdate(Body):
    """A draft quote's dates and lines, and its notes and terms (null clears those)."""

    issue_date: Day = LEFT_OUT
    expiry_date: Day = Field(LEFT_OUT, description="On or after issue_date")
    lines: list[LineIn] = Field(LEFT_OUT, min_length=1, max_length=200)
    notes: str | None = Text(5000, default=None)
    terms: str | None = Text(5000, default=None)


class QuoteRevisionIn(Body):
    """The next version of a sent quote: its lines, and optionally new notes, terms (null clears those) and
    expiry date. It is issued today, numbered like the quote with the version as a suffix (Q-0007-2)."""

    lines: list[LineIn] = Field(min_length=1, max_length=200)
    expiry_date: Day = Field(LEFT_OUT, description="On or after today (default: 30 days from today)")
    notes: str | None = Text(5000, default=None, description="The current version's if left out")
    terms: str | None = Text(5000, default=None, description="The current version's if left out")


Method = Literal["card", "bank_transfer", "cash", "cheque", "other"]


class OfflinePayment(Body):
    amount: int = Field(gt=0, le=MAX_AMOUNT, description="Minor units")
    method: Method = "bank_transfer"
    reference: str = Text(200, default="")
    received_at: Moment = Field(LEFT_OUT, description="ISO 8601 with time zone; now if left out")
    payment_id: str = Text(64, required=True, default=None, description="Your id for the payment; makes retries safe")


class Allocation(Body):
    invoice_id: str = Id
    amount: int = Field(gt=0, le=MAX_AMOUNT)


class MultiPayment(Body):
    allocations: list[Allocation] = Field(min_length=1, max_length=100)
    method: Method = "bank_transfer"
    reference: str = Text(200, default="")
    received_at: Moment = Field(LEFT_OUT, description="ISO 8601 with time zone; now if left out")
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
    issue_date: Day = Field(LEFT_OUT, description="Today (the workspace's) if left out")
    lines: list[LineIn] = Field(LEFT_OUT, min_length=1, max_length=200, description="Totalling more than 0")
    amount: int = Field(LEFT_OUT, gt=0, le=MAX_AMOUNT)
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
    payment_terms_days: int = Field(LEFT_OUT, ge=0, le=365, description="The workspace's default if left out")
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Text(5000, default="")
    autopay: bool = False
    active: bool = True


class RecurringUpdate(Body):
    """Only the fields sent change; null clears the end date (no end) or the notes."""

    end_date: Day | None = Field(None, description="On or after the start date (a 409 otherwise)")
    payment_terms_days: int = Field(LEFT_OUT, ge=0, le=365)
    lines: list[LineIn] = Field(LEFT_OUT, min_length=1, max_length=200)
    notes: str | None = Text(5000, default=None)
    autopay: bool = LEFT_OUT
    active: bool = LEFT_OUT


WEBHOOK_EVENTS = "Event types (e.g. invoice.paid), invoice.* for a family, or * for all; each once"
EVENT_PATTERNS = sorted(EVENT_TYPES | {t.split(".")[0] + ".*" for t in EVENT_TYPES} | {"*"})
if TYPE_CHECKING:
    EventPattern = str  # known only at run time, to the checker a string
else:
    EventPattern = Literal[tuple(EVENT_PATTERNS)]
EventTypes = Annotated[
    list[EventPattern],
    AfterValidator(_unique),
    Field(min_length=1, max_length=50, description=WEBHOOK_EVENTS, json_schema_extra={"uniqueItems": True}),
]
PORT = r"(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
URL = r"^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?" + PORT + r"([/?#][!-~]*)?$"


class WebhookIn(Body):
    url: str = Field(max_length=2000, pattern=URL, description="http(s) URL that receives the POSTs")
    event_types: EventTypes
    secret: str = Field(
        LEFT_OUT,
        pattern=r"^[ -~]{16,200}$",
        description="Signing secret; left out: a random whsec_... (shown only in this answer)",
    )
    description: str = Text(500, default="")
    active: bool = True


class WebhookUpdate(Body):
    url: str = Field(LEFT_OUT, max_length=2000, pattern=URL)
    event_types: EventTypes = LEFT_OUT
    description: str = Text(500, default=None)
    active: bool = Field(LEFT_OUT, description="false pauses deliveries; pending ones wait")


Json = dict[str, Any]


@dataclass(frozen=True)
class Services:
    """What a route's call may use: the services' stubs, whose calls carry the request's id and the key's
    workspace as their scope, and the request's Idempotency-Key (namespaced; None without one)."""

    billing: BillingClient
    payments: PaymentsClient
    documents: DocumentsClient
    key: str | None = None


# call(services, workspace id, path params, body, query) -> the answer
RouteCall = Callable[[Services, str, dict[str, str], Json, Json], object]


@dataclass(frozen=True)
class Route(Endpoint):
    """An admin endpoint: `call` makes its call to `service`'s `name`, within the key's workspace."""

    call: RouteCall
    service: str = "billing"  # the service whose RPC `name` the call makes
    einvoice: str | None = None  # a document kind: the call's answer is sent as that kind's e-invoice XML

    @property
    def keyed(self) -> bool:
        # payments' refunds carry their key in the body (it is also Stripe's idempotency key)
        return self.method != "GET" and self.service != "payments"


def _comment(kind: str) -> RouteCall:
    """A reply on the path's invoice or quote, as the business."""
    return lambda s, ws, p, b, q: s.billing.add_comment(
        ws, kind, p["id"], "business", b.get("author_name") or "", b["body"], idempotency_key=s.key
    )


def _client_first(call: RouteCall) -> RouteCall:
    """Another service's records of the path's client: billing 404s first when it is not this workspace's."""

    def checked(s: Services, ws: str, p: dict[str, str], b: Json, q: Json) -> object:
        s.billing.get_client(ws, p["id"])
        return call(s, ws, p, b, q)

    return checked


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
    Route(
        "GET",
        "/workspace",
        "get_workspace",
        "The workspace's details and settings",
        lambda s, ws, p, b, q: s.billing.get_workspace(ws),
    ),
    Route(
        "PATCH",
        "/workspace",
        "update_workspace",
        "Change details, branding and settings",
        lambda s, ws, p, b, q: s.billing.update_workspace(ws, b, idempotency_key=s.key),
        WorkspaceUpdate,
    ),
    Route(
        "GET",
        "/clients",
        "list_clients",
        "List clients",
        lambda s, ws, p, b, q: s.billing.list_clients(ws, limit=q.get("limit", 100), offset=q.get("offset", 0)),
        query=(Limit(500, 100), OFFSET),
    ),
    Route(
        "POST",
        "/clients",
        "create_client",
        "Create a client, optionally with contacts",
        lambda s, ws, p, b, q: s.billing.create_client(ws, b, idempotency_key=s.key),
        ClientIn,
        status=201,
    ),
    Route(
        "GET",
        "/clients/{id}",
        "get_client",
        "A client with contacts and balances",
        lambda s, ws, p, b, q: s.billing.get_client(ws, p["id"]),
    ),
    Route(
        "PATCH",
        "/clients/{id}",
        "update_client",
        "Change a client (future invoices only)",
        lambda s, ws, p, b, q: s.billing.update_client(ws, p["id"], b, idempotency_key=s.key),
        ClientUpdate,
    ),
    Route(
        "POST",
        "/clients/{id}/contacts",
        "add_contact",
        "Add a contact",
        lambda s, ws, p, b, q: s.billing.add_contact(ws, p["id"], b, idempotency_key=s.key),
        ContactIn,
        status=201,
    ),
    Route(
        "PATCH",
        "/contacts/{id}",
        "update_contact",
        "Change a contact, e.g. enable portal access",
        lambda s, ws, p, b, q: s.billing.update_contact(ws, p["id"], b, idempotency_key=s.key),
        ContactUpdate,
    ),
    Route(
        "GET",
        "/clients/{id}/notification-preferences",
        "list_notification_preferences",
        "Which emails each of the client's contacts chose to get (read-only: contacts choose in the portal)",
        lambda s, ws, p, b, q: s.billing.list_notification_preferences(ws, p["id"]),
    ),
    Route(
        "GET",
        "/clients/{id}/statement",
        "statement",
        "Statement of account for a period",
        lambda s, ws, p, b, q: s.billing.statement(ws, p["id"], q.get("from"), q.get("to"), currency=q.get("currency")),
        query=(
            Query("from", "The first day (default three months before to); on or before to", kind="date"),
            Query("to", "The last day (default today)", kind="date"),
            Query(
                "currency",
                "An ISO 4217 code; the client's if left out",
                pattern=cast(str, SHARED_SCHEMAS["Currency"]["pattern"]),
            ),
        ),
    ),
    Route(
        "GET",
        "/clients/{id}/activity",
        "list_activity",
        "The client's activity timeline",
        lambda s, ws, p, b, q: s.billing.list_activity(ws, p["id"], limit=q.get("limit", 50)),
        query=(Limit(200, 50),),
    ),
    Route(
        "GET",
        "/clients/{id}/engagement",
        "client_engagement",
        "Collection signals and late-payment risk: portal views, sign-ins, card attempts and failures, "
        "reminders, days overdue (see GET /engagement for the rule)",
        lambda s, ws, p, b, q: s.billing.client_engagement(ws, p["id"]),
    ),
    Route(
        "GET",
        "/engagement",
        "list_engagement",
        "Clients by late-payment risk, riskiest and longest overdue first. " + ENGAGEMENT_RULE,
        lambda s, ws, p, b, q: s.billing.list_engagement(
            ws, risk=q.get("risk"), limit=q.get("limit", 100), offset=q.get("offset", 0)
        ),
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
        lambda s, ws, p, b, q: s.billing.refund_retainer(
            ws, p["id"], b["amount"], reference=b.get("reference", ""), idempotency_key=s.key
        ),
        RefundIn,
        status=201,
    ),
    Route(
        "GET",
        "/clients/{id}/emails",
        "list_emails",
        "Emails sent to the client's contacts, with delivery status",
        _client_first(lambda s, ws, p, b, q: s.documents.list_emails(ws, client_id=p["id"], limit=q.get("limit", 100))),
        query=(Limit(500, 100),),
        service="documents",
    ),
    Route(
        "GET",
        "/clients/{id}/mandates",
        "list_mandates",
        "The client's SEPA Direct Debit mandates, newest first: who accepted each, when, from which IP address "
        "and browser, the mandate text version, its reference, and whether it was cancelled (its bank account removed)",
        _client_first(lambda s, ws, p, b, q: s.payments.list_mandates(ws, p["id"])),
        service="payments",
    ),
    Route(
        "GET",
        "/invoices",
        "list_invoices",
        "List invoices",
        lambda s, ws, p, b, q: s.billing.list_invoices(
            ws, filters={**q, "include_archived": q.get("include_archived") == "true"}
        ),
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
        lambda s, ws, p, b, q: s.billing.create_invoice(ws, b, idempotency_key=s.key),
        InvoiceIn,
        status=201,
    ),
    Route(
        "GET",
        "/invoices/{id}",
        "get_invoice",
        "An invoice with lines, payments and credits, and its verify_url",
        lambda s, ws, p, b, q: s.billing.get_invoice(ws, p["id"]),
    ),
    Route(
        "GET",
        "/invoices/{id}/xml",
        "get_invoice",
        "The invoice as an EN 16931 e-invoice: CII XML in the workspace's profile (EN 16931 or XRechnung); "
        "409 when the workspace has no VAT id",
        lambda s, ws, p, b, q: s.billing.get_invoice(ws, p["id"]),
        content_type="application/xml",
        problems=(409,),
        einvoice="invoice",
    ),
    Route(
        "PATCH",
        "/invoices/{id}",
        "update_invoice",
        "Change a draft invoice (notes on any)",
        lambda s, ws, p, b, q: s.billing.update_invoice(ws, p["id"], b, idempotency_key=s.key),
        InvoiceUpdate,
    ),
    Route(
        "POST",
        "/invoices/{id}/send",
        "send_invoice",
        "Issue or re-send an invoice",
        lambda s, ws, p, b, q: s.billing.send_invoice(ws, p["id"], idempotency_key=s.key),
    ),
    Route(
        "POST",
        "/invoices/{id}/void",
        "void_invoice",
        "Void an invoice without payments",
        lambda s, ws, p, b, q: s.billing.void_invoice(ws, p["id"], idempotency_key=s.key),
    ),
    Route(
        "POST",
        "/invoices/{id}/archive",
        "archive_invoice",
        "Hide an invoice from the portal (or show again)",
        lambda s, ws, p, b, q: s.billing.archive_invoice(
            ws, p["id"], archived=b.get("archived", True), idempotency_key=s.key
        ),
        ArchiveIn,
    ),
    Route(
        "POST",
        "/invoices/{id}/payments",
        "record_payment",
        "Record an offline payment",
        lambda s, ws, p, b, q: s.billing.record_payment(
            ws, {**{k: v for k, v in b.items() if v is not None}, "invoice_id": p["id"]}, idempotency_key=s.key
        ),
        OfflinePayment,
        status=201,
    ),
    Route(
        "POST",
        "/invoices/{id}/apply-credit",
        "apply_credit",
        "Apply available credit",
        lambda s, ws, p, b, q: s.billing.apply_credit(ws, p["id"], b["amount"], idempotency_key=s.key),
        AmountIn,
    ),
    Route(
        "POST",
        "/invoices/{id}/apply-retainer",
        "apply_retainer",
        "Apply retainer balance",
        lambda s, ws, p, b, q: s.billing.apply_retainer(ws, p["id"], b["amount"], idempotency_key=s.key),
        AmountIn,
    ),
    Route(
        "GET",
        "/invoices/{id}/comments",
        "list_comments",
        "The invoice's comment thread",
        lambda s, ws, p, b, q: s.billing.list_comments(ws, "invoice", p["id"]),
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
        lambda s, ws, p, b, q: s.billing.list_quotes(ws, filters=q),
        query=(
            CLIENT_ID,
            Query("status", enum=("all", "draft", "pending", "accepted", "rejected", "expired")),
            Limit(100, 50),
        ),
    ),
    Route(
        "POST",
        "/quotes",
        "create_quote",
        "Create a quote",
        lambda s, ws, p, b, q: s.billing.create_quote(ws, b, idempotency_key=s.key),
        QuoteIn,
        status=201,
    ),
    Route(
        "GET",
        "/quotes/{id}",
        "get_quote",
        "A quote with lines and its verify_url",
        lambda s, ws, p, b, q: s.billing.get_quote(ws, p["id"]),
    ),
    Route(
        "PATCH",
        "/quotes/{id}",
        "update_quote",
        "Change a draft quote",
        lambda s, ws, p, b, q: s.billing.update_quote(ws, p["id"], b, idempotency_key=s.key),
        QuoteUpdate,
    ),
    Route(
        "POST",
        "/quotes/{id}/send",
        "send_quote",
        "Send a quote to the client",
        lambda s, ws, p, b, q: s.billing.send_quote(ws, p["id"], idempotency_key=s.key),
    ),
    Route(
        "POST",
        "/quotes/{id}/convert",
        "convert_quote",
        "Turn an accepted quote into an invoice",
        lambda s, ws, p, b, q: s.billing.convert_quote(ws, p["id"], idempotency_key=s.key),
    ),
    Route(
        "POST",
        "/quotes/{id}/revisions",
        "revise_quote",
        "Issue the next version of a sent quote (same number with -<version>); the client is emailed it",
        lambda s, ws, p, b, q: s.billing.revise_quote(ws, p["id"], b, idempotency_key=s.key),
        QuoteRevisionIn,
        status=201,
    ),
    Route(
        "GET",
        "/quotes/{id}/versions",
        "list_quote_versions",
        "Every version of a quote, oldest first, with its lines and totals and what changed from the one before",
        lambda s, ws, p, b, q: s.billing.list_quote_versions(ws, p["id"]),
    ),
    Route(
        "GET",
        "/quotes/{id}/comments",
        "list_comments",
        "The quote's comment thread",
        lambda s, ws, p, b, q: s.billing.list_comments(ws, "quote", p["id"]),
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
        lambda s, ws, p, b, q: s.billing.list_credit_notes(ws, client_id=q.get("client_id")),
        query=(CLIENT_ID,),
    ),
    Route(
        "POST",
        "/credit-notes",
        "issue_credit_note",
        "Issue a credit note",
        lambda s, ws, p, b, q: s.billing.issue_credit_note(ws, b, idempotency_key=s.key),
        CreditNoteIn,
        status=201,
    ),
    Route(
        "GET",
        "/payments",
        "list_payments",
        "List payments",
        lambda s, ws, p, b, q: s.billing.list_payments(
            ws, client_id=q.get("client_id"), kind=q.get("kind"), sort=q.get("sort", "-date")
        ),
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
        lambda s, ws, p, b, q: s.billing.record_payment(
            ws, {k: v for k, v in b.items() if v is not None}, idempotency_key=s.key
        ),
        MultiPayment,
        status=201,
    ),
    Route(
        "GET",
        "/recurring-invoices",
        "list_recurring",
        "List recurring invoices",
        lambda s, ws, p, b, q: s.billing.list_recurring(ws, client_id=q.get("client_id")),
        query=(CLIENT_ID,),
    ),
    Route(
        "POST",
        "/recurring-invoices",
        "create_recurring",
        "Create a recurring invoice",
        lambda s, ws, p, b, q: s.billing.create_recurring(ws, b, idempotency_key=s.key),
        RecurringIn,
        status=201,
    ),
    Route(
        "GET",
        "/recurring-invoices/{id}",
        "get_recurring",
        "A recurring invoice",
        lambda s, ws, p, b, q: s.billing.get_recurring(ws, p["id"]),
    ),
    Route(
        "PATCH",
        "/recurring-invoices/{id}",
        "update_recurring",
        "Pause, resume, end or change one",
        lambda s, ws, p, b, q: s.billing.update_recurring(ws, p["id"], b, idempotency_key=s.key),
        RecurringUpdate,
    ),
    Route(
        "GET",
        "/reviews",
        "list_reviews",
        "Reviews clients wrote in the portal, newest first",
        lambda s, ws, p, b, q: s.billing.list_reviews(
            ws, client_id=q.get("client_id"), limit=q.get("limit", 50), offset=q.get("offset", 0)
        ),
        query=(CLIENT_ID, Limit(200, 50), OFFSET),
    ),
    Route(
        "GET",
        "/bookings",
        "list_bookings",
        "Bookings clients made in the portal",
        lambda s, ws, p, b, q: s.billing.list_bookings(
            ws, client_id=q.get("client_id"), upcoming=q.get("upcoming", "true") != "false"
        ),
        query=(CLIENT_ID, Query("upcoming", "false lists past and cancelled ones too", enum=("true", "false"))),
    ),
    Route(
        "POST",
        "/bookings/{id}/cancel",
        "cancel_booking",
        "Cancel a booking (the client is emailed)",
        lambda s, ws, p, b, q: s.billing.cancel_booking(ws, p["id"], idempotency_key=s.key),
    ),
    Route(
        "POST",
        "/payments/{id}/refunds",
        "refund_payment",
        "Refund all or part of a card payment through Stripe",
        lambda s, ws, p, b, q: s.payments.refund_payment(
            ws, p["id"], amount=b.get("amount"), reason=b.get("reason", ""), request_key=b["idempotency_key"]
        ),
        CardRefundIn,
        status=201,
        service="payments",
    ),
    Route(
        "GET",
        "/payments/{id}/refunds",
        "list_refunds",
        "A card payment's refunds",
        lambda s, ws, p, b, q: s.payments.list_refunds(ws, p["id"]),
        service="payments",
    ),
    Route(
        "GET",
        "/disputes",
        "list_disputes",
        "Card payments the client disputed with its bank",
        lambda s, ws, p, b, q: s.payments.list_disputes(ws),
        service="payments",
    ),
    Route(
        "GET",
        "/invoice-disputes",
        "list_invoice_disputes",
        "Invoices your clients disputed in the portal, newest first (not card chargebacks: see /disputes)",
        lambda s, ws, p, b, q: s.billing.list_invoice_disputes(ws, filters=q),
        query=(
            CLIENT_ID,
            Query("invoice_id", "Only this invoice's", max_length=64),
            Query("status", enum=("all", "open", "adjusted", "rejected")),
            Limit(200, 50),
            OFFSET,
        ),
    ),
    Route(
        "GET",
        "/invoice-disputes/{id}",
        "get_invoice_dispute",
        "An invoice dispute",
        lambda s, ws, p, b, q: s.billing.get_invoice_dispute(ws, p["id"]),
    ),
    Route(
        "POST",
        "/invoice-disputes/{id}/adjust",
        "resolve_invoice_dispute",
        "Resolve an open invoice dispute by a credit note for an amount, linked to the invoice and applied to "
        "what it owes (any rest is the client's credit); reminders and autopay resume",
        lambda s, ws, p, b, q: s.billing.resolve_invoice_dispute(ws, p["id"], "adjust", b, idempotency_key=s.key),
        DisputeAdjustIn,
    ),
    Route(
        "POST",
        "/invoice-disputes/{id}/reject",
        "resolve_invoice_dispute",
        "Reject an open invoice dispute with a message; reminders and autopay resume",
        lambda s, ws, p, b, q: s.billing.resolve_invoice_dispute(ws, p["id"], "reject", b, idempotency_key=s.key),
        DisputeRejectIn,
    ),
    Route(
        "POST",
        "/webhooks",
        "create_webhook",
        "Subscribe a URL to events (the answer holds the signing secret, shown only once)",
        lambda s, ws, p, b, q: s.documents.create_webhook(ws, b, idempotency_key=s.key),
        WebhookIn,
        status=201,
        service="documents",
    ),
    Route(
        "GET",
        "/webhooks",
        "list_webhooks",
        "The workspace's webhook subscriptions",
        lambda s, ws, p, b, q: s.documents.list_webhooks(ws),
        service="documents",
    ),
    Route(
        "GET",
        "/webhooks/{id}",
        "get_webhook",
        "A webhook subscription",
        lambda s, ws, p, b, q: s.documents.get_webhook(ws, p["id"]),
        service="documents",
    ),
    Route(
        "PATCH",
        "/webhooks/{id}",
        "update_webhook",
        "Change the URL or event types, pause or resume",
        lambda s, ws, p, b, q: s.documents.update_webhook(ws, p["id"], b, idempotency_key=s.key),
        WebhookUpdate,
        service="documents",
    ),
    Route(
        "DELETE",
        "/webhooks/{id}",
        "delete_webhook",
        "Delete a subscription with its deliveries",
        lambda s, ws, p, b, q: s.documents.delete_webhook(ws, p["id"], idempotency_key=s.key),
        status=204,
        service="documents",
    ),
    Route(
        "GET",
        "/webhooks/{id}/deliveries",
        "list_webhook_deliveries",
        "The delivery log, newest first, each delivery with its attempts",
        lambda s, ws, p, b, q: s.documents.list_webhook_deliveries(ws, p["id"], limit=q.get("limit", 50)),
        query=(Limit(200, 50),),
        service="documents",
    ),
    Route(
        "POST",
        "/webhook-deliveries/{id}/replay",
        "replay_webhook_delivery",
        "Send a delivery again now (whatever its status), retried for another 24 hours",
        lambda s, ws, p, b, q: s.documents.replay_webhook_delivery(ws, p["id"], idempotency_key=s.key),
        status=202,
        service="documents",
    ),
)


class AdminResource(Routed):
    """All the routes of one path; each method validates, makes its route's call, and answers JSON."""

    public = True  # to sessions: the admin API authenticates its own callers, by API key

    def __init__(self, rpc, routes: list[Route], portal_url: str = "http://localhost:8000"):
        self.rpc = rpc
        self.portal_url = portal_url  # where a document's verify_url points
        self.routes = {route.method: route for route in routes}
        self.methods = tuple(self.routes)

    def _services(self, req, scope: Scope | None, key: str | None = None) -> Services:
        def call(service: str, method: str, *args: Any, **kwargs: Any) -> Any:
            return self.rpc.call(service, method, *args, request_id=req.context.request_id, scope=scope, **kwargs)

        return Services(BillingClient(call), PaymentsClient(call), DocumentsClient(call), key)

    def _workspace(self, req) -> str:
        header = req.get_header("Authorization") or ""
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise falcon.HTTPUnauthorized(
                title="API key required", description="Send Authorization: Bearer <workspace API key>."
            )
        try:  # before the key is checked, no workspace scopes the call
            return self._services(req, None).billing.authenticate_api_key(key.strip())
        except Unauthorized:
            raise falcon.HTTPUnauthorized(
                title="Invalid API key", description="The key is unknown or revoked."
            ) from None

    def _handle(self, req, resp, **params):
        route = self.routes.get(req.method)
        if route is None:
            return self.not_allowed(req, resp)  # raises the 405
        workspace_id = self._workspace(req)
        query = read_query(req, route.query)
        body = read_body(req, route.body) if route.body is not None else {}
        key = idempotency_key(req, f"admin:{workspace_id}") if route.keyed else None
        # the services' databases hold each call to the key's workspace too
        services = self._services(req, Scope(workspace_id), key)
        answer = route.call(services, workspace_id, params, body, query)
        resp.status = route.status
        if route.einvoice:  # the document billing answered, written as XML by documents
            send_xml(resp, services.documents.einvoice(route.einvoice, workspace_id, cast(dict, answer)))
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

"""The admin JSON API, `/api/admin/v1/`, for a workspace's own systems and staff.

One table of routes drives the request handling and the OpenAPI document, so the two cannot drift.
Bodies are validated here (pydantic) for clear field errors; billing checks the business rules again.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import falcon
from pydantic import Field

from chassis.errors import Unauthorized
from chassis.scope import Scope
from services.gateway.jsonapi import AFTER, OFFSET, Body, Endpoint, OpenApi, Query, idempotency_key, read_body
from services.gateway.jsonapi import openapi_document as _openapi

PREFIX = "/api/admin/v1"
Id = Field(min_length=1, max_length=64)


class LineIn(Body):
    description: str = Field(min_length=1, max_length=500)
    quantity: float | str = 1
    unit_price: int = Field(ge=0, description="Minor units (cents)")
    tax_rate: float | str = 0
    discount_percent: float | str = 0


class WorkspaceUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=50)
    address: str | None = Field(None, max_length=2000)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    locale: str | None = Field(None, max_length=20)
    timezone: str | None = Field(None, max_length=60)
    tax_id: str | None = Field(None, max_length=50)
    logo_url: str | None = Field(None, max_length=300_000, description="data:image/png;base64,... (embedded)")
    brand_color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    accent_color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")
    settings: dict[str, Any] | None = None


class ContactIn(Body):
    email: str = Field(max_length=254)
    name: str = Field("", max_length=200)
    phone: str = Field("", max_length=50)
    locale: str | None = Field(None, max_length=20)
    is_primary: bool = False
    portal_access: bool = False


class ContactUpdate(Body):
    email: str | None = Field(None, max_length=254)
    name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=50)
    locale: str | None = Field(None, max_length=20)
    is_primary: bool | None = None
    portal_access: bool | None = None


class ClientIn(Body):
    name: str = Field(min_length=1, max_length=200)
    address: str = Field("", max_length=2000)
    phone: str = Field("", max_length=50)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    locale: str | None = Field(None, max_length=20)
    timezone: str | None = Field(None, max_length=60)
    tax_id: str = Field("", max_length=50)
    contacts: list[ContactIn] = Field(default_factory=list, max_length=20)


class ClientUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200)
    address: str | None = Field(None, max_length=2000)
    phone: str | None = Field(None, max_length=50)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    locale: str | None = Field(None, max_length=20)
    timezone: str | None = Field(None, max_length=60)
    tax_id: str | None = Field(None, max_length=50)


class InvoiceIn(Body):
    client_id: str = Id
    kind: Literal["standard", "retainer"] = "standard"
    issue_date: date | None = None
    due_date: date | None = None
    payment_terms_days: int | None = Field(None, ge=0, le=365)
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Field("", max_length=5000)
    terms: str = Field("", max_length=5000)
    send: bool = False


class InvoiceUpdate(Body):
    issue_date: date | None = None
    due_date: date | None = None
    payment_terms_days: int | None = Field(None, ge=0, le=365)
    lines: list[LineIn] | None = Field(None, min_length=1, max_length=200)
    notes: str | None = Field(None, max_length=5000)
    terms: str | None = Field(None, max_length=5000)


class QuoteIn(Body):
    client_id: str = Id
    issue_date: date | None = None
    expiry_date: date | None = None
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Field("", max_length=5000)
    terms: str = Field("", max_length=5000)
    send: bool = False


class QuoteUpdate(Body):
    issue_date: date | None = None
    expiry_date: date | None = None
    lines: list[LineIn] | None = Field(None, min_length=1, max_length=200)
    notes: str | None = Field(None, max_length=5000)
    terms: str | None = Field(None, max_length=5000)


Method = Literal["card", "bank_transfer", "cash", "cheque", "other"]


class OfflinePayment(Body):
    amount: int = Field(gt=0, description="Minor units")
    method: Method = "bank_transfer"
    reference: str = Field("", max_length=200)
    received_at: str | None = Field(None, description="ISO 8601 with time zone; now if omitted")
    payment_id: str | None = Field(None, max_length=64, description="Your id for the payment; makes retries safe")


class Allocation(Body):
    invoice_id: str = Id
    amount: int = Field(gt=0)


class MultiPayment(Body):
    allocations: list[Allocation] = Field(min_length=1, max_length=100)
    method: Method = "bank_transfer"
    reference: str = Field("", max_length=200)
    received_at: str | None = None
    payment_id: str | None = Field(None, max_length=64)


class AmountIn(Body):
    amount: int = Field(gt=0, description="Minor units")


class RefundIn(Body):
    amount: int = Field(gt=0)
    reference: str = Field("", max_length=200)


class CardRefundIn(Body):
    amount: int | None = Field(None, gt=0, description="Minor units; omit to refund what is left")
    reason: str = Field("", max_length=500)
    idempotency_key: str = Field(min_length=1, max_length=100, description="The same key never refunds twice")


class ArchiveIn(Body):
    archived: bool = True


class CommentIn(Body):
    body: str = Field(min_length=1, max_length=5000)
    author_name: str = Field("", max_length=200)


class CreditNoteIn(Body):
    client_id: str = Id
    issue_date: date | None = None
    lines: list[LineIn] | None = Field(None, min_length=1, max_length=200)
    amount: int | None = Field(None, gt=0)
    reason: str = Field("", max_length=2000)
    invoice_id: str | None = Field(None, max_length=64)


class RecurringIn(Body):
    client_id: str = Id
    frequency: Literal["weekly", "monthly", "yearly"]
    interval: int = Field(1, ge=1, le=36)
    start_date: date
    end_date: date | None = None
    payment_terms_days: int | None = Field(None, ge=0, le=365)
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    notes: str = Field("", max_length=5000)
    autopay: bool = False
    active: bool = True


class RecurringUpdate(Body):
    end_date: date | None = None
    payment_terms_days: int | None = Field(None, ge=0, le=365)
    lines: list[LineIn] | None = Field(None, min_length=1, max_length=200)
    notes: str | None = Field(None, max_length=5000)
    autopay: bool | None = None
    active: bool | None = None


WEBHOOK_EVENTS = "Event types (e.g. invoice.paid), invoice.* for a family, or * for all"


class WebhookIn(Body):
    url: str = Field(min_length=1, max_length=2000, description="http(s) URL that receives the POSTs")
    event_types: list[str] = Field(min_length=1, max_length=50, description=WEBHOOK_EVENTS)
    secret: str | None = Field(None, min_length=16, max_length=200,
                               description="Signing secret; omit to get a random whsec_... (shown only in this answer)")
    description: str = Field("", max_length=500)
    active: bool = True


class WebhookUpdate(Body):
    url: str | None = Field(None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(None, min_length=1, max_length=50, description=WEBHOOK_EVENTS)
    description: str | None = Field(None, max_length=500)
    active: bool | None = Field(None, description="false pauses deliveries; pending ones wait")


@dataclass(frozen=True)
class Route(Endpoint):
    """An admin endpoint: `call(path params, body, query)` gives the RPC's arguments after the workspace id."""
    service: str = "billing"
    scope_check: str | None = None  # a billing method that 404s when {id} is not this workspace's

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
ENGAGEMENT_RULE = ("Risk is high when an invoice is more than 30 days overdue, or 2 or more card payments failed in "
                   "the last 30 days, or reminders were sent and the client has viewed no invoice since the first "
                   "of them while still owing; medium when any invoice is overdue or a card payment failed in the "
                   "last 30 days; low otherwise. `reasons` lists each rule that applies.")
STATUS_FILTER = ("all", "paid", "unpaid", "partially_paid", "overdue", "draft", "sent", "viewed", "void")
ROUTES: tuple[Route, ...] = (
    Route("GET", "/workspace", "get_workspace", "The workspace's details and settings", lambda p, b, q: ()),
    Route("PATCH", "/workspace", "update_workspace", "Change details, branding and settings", lambda p, b, q: (b,),
          WorkspaceUpdate),
    Route("GET", "/clients", "list_clients", "List clients", lambda p, b, q: (q.get("limit", 100), q.get("offset", 0)),
          query=(Query("limit"), Query("offset"))),
    Route("POST", "/clients", "create_client", "Create a client, optionally with contacts", lambda p, b, q: (b,),
          ClientIn, status=201),
    Route("GET", "/clients/{id}", "get_client", "A client with contacts and balances", _p("id")),
    Route("PATCH", "/clients/{id}", "update_client", "Change a client (future invoices only)", _pb("id"),
          ClientUpdate),
    Route("POST", "/clients/{id}/contacts", "add_contact", "Add a contact", _pb("id"), ContactIn, status=201),
    Route("PATCH", "/contacts/{id}", "update_contact", "Change a contact, e.g. enable portal access", _pb("id"),
          ContactUpdate),
    Route("GET", "/clients/{id}/statement", "statement", "Statement of account for a period",
          lambda p, b, q: (p["id"], q.get("from"), q.get("to"), q.get("currency")),
          query=(Query("from", "YYYY-MM-DD"), Query("to", "YYYY-MM-DD"), Query("currency"))),
    Route("GET", "/clients/{id}/activity", "list_activity", "The client's activity timeline",
          lambda p, b, q: (p["id"], q.get("limit", 50)), query=(Query("limit"),)),
    Route("GET", "/clients/{id}/engagement", "client_engagement",
          "Collection signals and late-payment risk: portal views, sign-ins, card attempts and failures, "
          "reminders, days overdue (see GET /engagement for the rule)", _p("id")),
    Route("GET", "/engagement", "list_engagement",
          "Clients by late-payment risk, riskiest and longest overdue first. " + ENGAGEMENT_RULE,
          lambda p, b, q: (q.get("risk"), q.get("limit", 100), q.get("offset", 0)),
          query=(Query("risk", "Only clients at this risk level", enum=("high", "medium", "low")), Query("limit"),
                 Query("offset"))),
    Route("POST", "/clients/{id}/retainer-refunds", "refund_retainer", "Refund unused retainer money",
          lambda p, b, q: (p["id"], b["amount"], b.get("reference", "")), RefundIn, status=201),
    Route("GET", "/clients/{id}/emails", "list_emails", "Emails sent to the client's contacts, with delivery status",
          lambda p, b, q: (p["id"], q.get("limit", 100)), query=(Query("limit"),), service="documents",
          scope_check="get_client"),
    Route("GET", "/invoices", "list_invoices", "List invoices",
          lambda p, b, q: ({**q, "include_archived": q.get("include_archived") == "true"},),
          query=(Query("client_id"), Query("status", enum=STATUS_FILTER), Query("kind", enum=("standard", "retainer")),
                 Query("search", "Part of an invoice number"), Query("sort", "date, due_date, amount or number; - for descending"),
                 Query("limit"), AFTER, OFFSET, Query("include_archived", enum=("true", "false")))),
    Route("POST", "/invoices", "create_invoice", "Create an invoice (numbered at once)", lambda p, b, q: (b,),
          InvoiceIn, status=201),
    Route("GET", "/invoices/{id}", "get_invoice", "An invoice with lines, payments and credits", _p("id")),
    Route("PATCH", "/invoices/{id}", "update_invoice", "Change a draft invoice (notes on any)", _pb("id"),
          InvoiceUpdate),
    Route("POST", "/invoices/{id}/send", "send_invoice", "Issue or re-send an invoice", _p("id")),
    Route("POST", "/invoices/{id}/void", "void_invoice", "Void an invoice without payments", _p("id")),
    Route("POST", "/invoices/{id}/archive", "archive_invoice", "Hide an invoice from the portal (or show again)",
          lambda p, b, q: (p["id"], b.get("archived", True)), ArchiveIn),
    Route("POST", "/invoices/{id}/payments", "record_payment", "Record an offline payment",
          lambda p, b, q: ({**{k: v for k, v in b.items() if v is not None}, "invoice_id": p["id"]},),
          OfflinePayment, status=201),
    Route("POST", "/invoices/{id}/apply-credit", "apply_credit", "Apply available credit",
          lambda p, b, q: (p["id"], b["amount"]), AmountIn),
    Route("POST", "/invoices/{id}/apply-retainer", "apply_retainer", "Apply retainer balance",
          lambda p, b, q: (p["id"], b["amount"]), AmountIn),
    Route("GET", "/invoices/{id}/comments", "list_comments", "The invoice's comment thread",
          lambda p, b, q: ("invoice", p["id"])),
    Route("POST", "/invoices/{id}/comments", "add_comment", "Reply on an invoice as the business",
          _comment("invoice"), CommentIn, status=201),
    Route("GET", "/quotes", "list_quotes", "List quotes", lambda p, b, q: (q,),
          query=(Query("client_id"), Query("status", enum=("all", "draft", "pending", "accepted", "rejected", "expired")),
                 Query("limit"))),
    Route("POST", "/quotes", "create_quote", "Create a quote", lambda p, b, q: (b,), QuoteIn, status=201),
    Route("GET", "/quotes/{id}", "get_quote", "A quote with lines", _p("id")),
    Route("PATCH", "/quotes/{id}", "update_quote", "Change a draft quote", _pb("id"), QuoteUpdate),
    Route("POST", "/quotes/{id}/send", "send_quote", "Send a quote to the client", _p("id")),
    Route("POST", "/quotes/{id}/convert", "convert_quote", "Turn an accepted quote into an invoice", _p("id")),
    Route("GET", "/quotes/{id}/comments", "list_comments", "The quote's comment thread",
          lambda p, b, q: ("quote", p["id"])),
    Route("POST", "/quotes/{id}/comments", "add_comment", "Reply on a quote as the business", _comment("quote"),
          CommentIn, status=201),
    Route("GET", "/credit-notes", "list_credit_notes", "List credit notes", lambda p, b, q: (q.get("client_id"),),
          query=(Query("client_id"),)),
    Route("POST", "/credit-notes", "issue_credit_note", "Issue a credit note", lambda p, b, q: (b,), CreditNoteIn,
          status=201),
    Route("GET", "/payments", "list_payments", "List payments",
          lambda p, b, q: (q.get("client_id"), q.get("kind"), q.get("sort", "-date")),
          query=(Query("client_id"), Query("kind", enum=("invoice", "retainer")), Query("sort"))),
    Route("POST", "/payments", "record_payment", "Record one offline payment across several invoices",
          lambda p, b, q: ({k: v for k, v in b.items() if v is not None},), MultiPayment, status=201),
    Route("GET", "/recurring-invoices", "list_recurring", "List recurring invoices",
          lambda p, b, q: (q.get("client_id"),), query=(Query("client_id"),)),
    Route("POST", "/recurring-invoices", "create_recurring", "Create a recurring invoice", lambda p, b, q: (b,),
          RecurringIn, status=201),
    Route("GET", "/recurring-invoices/{id}", "get_recurring", "A recurring invoice", _p("id")),
    Route("PATCH", "/recurring-invoices/{id}", "update_recurring", "Pause, resume, end or change one", _pb("id"),
          RecurringUpdate),
    Route("GET", "/reviews", "list_reviews", "Reviews clients wrote in the portal, newest first",
          lambda p, b, q: (q.get("client_id"), q.get("limit", 50), q.get("offset", 0)),
          query=(Query("client_id"), Query("limit"), Query("offset"))),
    Route("GET", "/bookings", "list_bookings", "Bookings clients made in the portal",
          lambda p, b, q: (q.get("client_id"), q.get("upcoming", "true") != "false"),
          query=(Query("client_id"), Query("upcoming", "false lists past and cancelled ones too",
                                           enum=("true", "false")))),
    Route("POST", "/bookings/{id}/cancel", "cancel_booking", "Cancel a booking (the client is emailed)", _p("id")),
    Route("POST", "/payments/{id}/refunds", "refund_payment", "Refund all or part of a card payment through Stripe",
          lambda p, b, q: (p["id"], b.get("amount"), b.get("reason", ""), b["idempotency_key"]), CardRefundIn,
          status=201, service="payments"),
    Route("GET", "/payments/{id}/refunds", "list_refunds", "A card payment's refunds", _p("id"), service="payments"),
    Route("GET", "/disputes", "list_disputes", "Card payments the client disputed with its bank",
          lambda p, b, q: (), service="payments"),
    Route("POST", "/webhooks", "create_webhook", "Subscribe a URL to events (the answer holds the signing secret, "
          "shown only once)", lambda p, b, q: (b,), WebhookIn, status=201, service="documents"),
    Route("GET", "/webhooks", "list_webhooks", "The workspace's webhook subscriptions", lambda p, b, q: (),
          service="documents"),
    Route("GET", "/webhooks/{id}", "get_webhook", "A webhook subscription", _p("id"), service="documents"),
    Route("PATCH", "/webhooks/{id}", "update_webhook", "Change the URL or event types, pause or resume", _pb("id"),
          WebhookUpdate, service="documents"),
    Route("DELETE", "/webhooks/{id}", "delete_webhook", "Delete a subscription with its deliveries", _p("id"),
          status=204, service="documents"),
    Route("GET", "/webhooks/{id}/deliveries", "list_webhook_deliveries",
          "The delivery log, newest first, each delivery with its attempts",
          lambda p, b, q: (p["id"], q.get("limit", 50)), query=(Query("limit", "1 to 200, default 50"),),
          service="documents"),
    Route("POST", "/webhook-deliveries/{id}/replay", "replay_webhook_delivery",
          "Send a delivery again now (whatever its status), retried for another 24 hours", _p("id"), status=202,
          service="documents"),
)



class AdminResource:
    """All the routes of one path; each method validates, calls billing once, and answers JSON."""

    public = True  # to sessions: the admin API authenticates its own callers, by API key

    def __init__(self, rpc, routes: list[Route]):
        self.rpc = rpc
        self.routes = {route.method: route for route in routes}

    def _workspace(self, req) -> str:
        header = req.get_header("Authorization") or ""
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise falcon.HTTPUnauthorized(title="API key required",
                                          description="Send Authorization: Bearer <workspace API key>.")
        try:
            return self.rpc.call("billing", "authenticate_api_key", key.strip(), request_id=req.context.request_id)
        except Unauthorized:
            raise falcon.HTTPUnauthorized(title="Invalid API key",
                                          description="The key is unknown or revoked.") from None

    def _handle(self, req, resp, **params):
        route = self.routes.get(req.method)
        if route is None:
            raise falcon.HTTPMethodNotAllowed(sorted(self.routes))
        workspace_id = self._workspace(req)
        scope = Scope(workspace_id)  # the services' databases hold the call to the key's workspace too
        body = read_body(req, route.body) if route.body is not None else {}
        query = {k: v for k, v in req.params.items() if isinstance(v, str)}
        if route.scope_check:
            self.rpc.call("billing", route.scope_check, workspace_id, params["id"], request_id=req.context.request_id,
                          scope=scope)
        keyed = {"idempotency_key": key} if route.keyed and (key := idempotency_key(req, f"admin:{workspace_id}")) \
            else {}
        resp.media = self.rpc.call(route.service, route.name, workspace_id, *route.call(params, body, query),
                                   request_id=req.context.request_id, scope=scope, **keyed)
        resp.status = route.status

    on_get = on_post = on_patch = on_delete = _handle


def openapi_document() -> dict:
    return _openapi(ROUTES, PREFIX, {
        "title": "Billing portal admin API", "version": "1.0.0",
        "description": "Money is integer minor units with an ISO 4217 currency. Errors are "
                       "application/problem+json; a rejected request changes nothing."},
        {"apiKey": {"type": "http", "scheme": "bearer",
                    "description": "A workspace API key from `portalctl key create`"}})


def add_admin_routes(app: falcon.App, rpc) -> None:
    by_path: dict[str, list[Route]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, []).append(route)
    for path, routes in by_path.items():
        app.add_route(PREFIX + path, AdminResource(rpc, routes))
    app.add_route(PREFIX + "/openapi.json", OpenApi(openapi_document()))

"""Gateway resources, grouped by area: sign-in, portal pages, JSON API, health, dev mail."""

from __future__ import annotations

import base64
import concurrent.futures
import functools
import logging
import uuid
from datetime import date, timedelta
from urllib.parse import urlencode

import falcon
from email_validator import EmailNotValidError, validate_email

from chassis.errors import Conflict, Invalid, RateLimited, Unauthorized
from chassis.logs import request_id_var
from chassis.scope import Scope
from clients.auth import AuthClient
from clients.billing import BillingClient
from clients.documents import DocumentsClient
from clients.payments import PaymentsClient
from services.gateway.branding import BrandCss, BrandLogo, brand_of
from services.gateway.forms import field
from services.gateway.metrics import broker_reachable
from services.gateway.pdf_fetch import FetchFailed, PdfFetcher
from services.gateway.sessions import previous_session_id, set_session_cookie
from services.gateway.views import env_for

log = logging.getLogger(__name__)

LINK_PROBLEMS = {
    "used": ("This link has already been used", "Each sign-in link works once. Ask for a new one below."),
    "expired": ("This link has expired", "Sign-in links work for a limited time. Ask for a new one below."),
    "unknown": ("This link is not valid", "The link may be incomplete. Ask for a new one below."),
    "no_access": ("Portal access is turned off", "Contact the business to have portal access enabled."),
}


class Base:
    def __init__(self, rpc, config):
        self.rpc = rpc
        self.config = config

    def call(self, req, service, method, *args, **kwargs):
        # once the caller is known (session, document link), the services' databases enforce its scope too
        return self.rpc.call(
            service, method, *args, request_id=req.context.request_id, scope=req.context.get("scope"), **kwargs
        )

    # The services, typed (clients/): each call carries this request's id and its caller's scope.
    def auth(self, req) -> AuthClient:
        return AuthClient(functools.partial(self.call, req))

    def billing(self, req) -> BillingClient:
        return BillingClient(functools.partial(self.call, req))

    def payments(self, req) -> PaymentsClient:
        return PaymentsClient(functools.partial(self.call, req))

    def documents(self, req) -> DocumentsClient:
        return DocumentsClient(functools.partial(self.call, req))

    def render(self, resp, template: str, status: int = 200, **context):
        """A page; a client's page (session) or one document's (workspace_id) wears the business's brand.
        It speaks the signed-in contact's language (session locale), else the page's `locale` (the
        client's or the document's), else English; `locale` (formatting) defaults to the same."""
        workspace_id = (context.get("session") or {}).get("workspace_id") or context.pop("workspace_id", None)
        if workspace_id and "brand" not in context:
            context["brand"] = self.brand(workspace_id)
        locale = (context.get("session") or {}).get("locale") or context.get("locale") or None
        if locale and not context.get("locale"):
            context["locale"] = locale
        resp.status = status
        resp.content_type = falcon.MEDIA_HTML
        resp.text = env_for(locale).get_template(template).render(dev=self.config.dev, **context)

    def brand(self, workspace_id: str) -> dict:
        """The business's name, logo and colours (cached for a minute per gateway process)."""
        return brand_of(lambda *a, **k: self.rpc.call(*a, request_id=request_id_var.get(), **k), workspace_id)

    def form(self, req) -> dict:
        if req.content_type and req.content_type.startswith(falcon.MEDIA_URLENCODED):
            media = req.get_media()
            return media if isinstance(media, dict) else {}
        return {}

    def client_ip(self, req) -> str:
        """The address to rate-limit. Behind N trusted proxies, the N-th address from the right of
        X-Forwarded-For is the one our own proxy saw; anything left of it the client could forge."""
        hops = self.config.trusted_proxy_hops
        forwarded = [a.strip() for a in (req.get_header("X-Forwarded-For") or "").split(",") if a.strip()]
        if hops and len(forwarded) >= hops:
            return forwarded[-hops]
        return req.remote_addr or "unknown"

    def has_session_cookie(self, req) -> bool:
        return bool(req.get_cookie_values(self.config.cookie_name))

    def set_session_cookie(self, resp, credential: str):
        set_session_cookie(resp, self.config.cookie_name, credential, secure=not self.config.dev)

    def clear_session_cookie(self, resp):
        resp.unset_cookie(self.config.cookie_name, path="/")

    def end_session(self, req, everywhere: bool = False) -> None:
        """Sign out: auth ends the session (or all of the contact's) and announces it to every gateway;
        this worker refuses the credential at once, before the announcement comes back."""
        self.auth(req).end_session(req.context.session_id, everywhere)
        guard = req.context.sessions.guard
        guard.revocations.end_session(req.context.session_id, req.context.credential.started_at + guard.limits.absolute)

    def session(self, req, resp) -> dict:
        """The signed-in contact's session, which SessionMiddleware checked before any responder of a
        route that is not public (services/gateway/sessions.py)."""
        session = req.context.get("session")
        if session is None:
            raise RuntimeError(f"{type(self).__name__} is public: it has no session to read")
        return session


class Root(Base):
    public = True

    def on_get(self, req, resp):
        raise falcon.HTTPSeeOther("/dashboard" if self.has_session_cookie(req) else "/login")


class Login(Base):
    public = True

    def on_get(self, req, resp):
        notice = {"expired": "Your session has ended. Sign in again to continue.", "signed_out": "You are signed out."}
        message = next((text for key, text in notice.items() if req.get_param(key)), None)
        # the password form only where some workspace allows passwords (services/gateway/passwords.py)
        self.render(resp, "login.html", notice=message, email="", passwords=self._passwords_offered(req))

    def _passwords_offered(self, req) -> bool:
        try:
            return bool(self.auth(req).passwords_offered())
        except Exception:  # noqa: BLE001 - without an answer the page still offers the emailed link
            return False

    def on_post(self, req, resp):
        email = field(self.form(req), "email", 1000).strip()
        try:
            validate_email(email, check_deliverability=False)
        except EmailNotValidError:
            return self.render(
                resp,
                "login.html",
                status=400,
                email=email[:254],
                error="Enter a valid email address, like name@example.com.",
            )
        try:
            self.auth(req).request_link(email, self.client_ip(req), self.config.portal_url, user_agent=req.user_agent)
        except Invalid:
            return self.render(
                resp,
                "login.html",
                status=400,
                email=email[:254],
                error="Enter a valid email address, like name@example.com.",
            )
        except RateLimited as exc:
            resp.set_header("Retry-After", "900")
            return self.render(
                resp, "error.html", status=429, title="Too many sign-in requests", detail=exc.detail, retry=True
            )
        # The same answer whether or not the address has portal access: addresses cannot be probed.
        self.render(resp, "check_email.html")


class Verify(Base):
    public = True

    def _problem(self, resp, state: str):
        title, detail = LINK_PROBLEMS.get(state, LINK_PROBLEMS["unknown"])
        self.render(
            resp, "error.html", status=400 if state == "unknown" else 410, title=title, detail=detail, retry=True
        )

    def _limited(self, resp, exc: RateLimited):
        resp.set_header("Retry-After", "900")
        self.render(resp, "error.html", status=429, title="Too many sign-in attempts", detail=exc.detail, retry=True)

    def on_get(self, req, resp):
        # Consumes nothing: mail scanners prefetch links. The button POSTs the token.
        token = req.get_param("token") or ""
        try:  # auth counts tokens it never issued against the address (guessing is rate-limited)
            state = self.auth(req).link_state(token, self.client_ip(req)) if token else "unknown"
        except RateLimited as exc:
            return self._limited(resp, exc)
        if state != "valid":
            return self._problem(resp, state)
        self.render(resp, "verify.html", token=token)

    def on_post(self, req, resp):
        token = field(self.form(req), "token", 200)
        previous = previous_session_id(req, self.config.cookie_name, req.context.sessions.guard.keys)
        try:  # a new session every time: the one this browser had (fixation) ends, never kept
            session = self.auth(req).consume_link(token, previous, self.client_ip(req), user_agent=req.user_agent)
        except Unauthorized as exc:
            return self._problem(resp, exc.detail)
        except RateLimited as exc:
            return self._limited(resp, exc)
        self.set_session_cookie(resp, session["credential"])
        raise falcon.HTTPSeeOther("/dashboard")


class Logout(Base):
    def on_post(self, req, resp):
        # "everywhere" (from the profile page) ends the contact's sessions on all devices
        self.end_session(req, everywhere=self.form(req).get("everywhere") == "1")
        self.clear_session_cookie(resp)
        raise falcon.HTTPSeeOther("/login?signed_out=1")


class Dashboard(Base):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        data = self.billing(req).client_dashboard(session["workspace_id"], session["client_id"])
        self.render(
            resp,
            "dashboard.html",
            session=session,
            d=data,
            locale=data["client"]["locale"],
            tz=data["client"]["timezone"],
        )


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
PAGE_SIZE = 20


class Portal(Base):
    """A page for the signed-in client: its scope comes from the session, never from the request."""

    def page(self, req, resp, template: str, session: dict, status: int = 200, client: dict | None = None, **context):
        """Render for the client's locale and time zone; pass `client` (or any dict with those two)
        when the caller already has it, to save the lookup."""
        client = client or self.billing(req).get_client(session["workspace_id"], session["client_id"])
        self.render(
            resp,
            template,
            status=status,
            session=session,
            client=client,
            locale=client["locale"],
            tz=client["timezone"],
            **context,
        )


class InvoiceList(Portal):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        status = req.get_param("status") or "all"
        sort = req.get_param("sort") or "-date"
        if status not in dict(INVOICE_FILTERS) or sort not in dict(INVOICE_SORTS):
            raise falcon.HTTPBadRequest(title="Unknown filter", description="Choose a filter and a sort from the page.")
        search = (req.get_param("q") or "")[:50]
        number = max(req.get_param_as_int("page", min_value=1, max_value=10_000) or 1, 1)
        page = self.billing(req).list_invoices(
            session["workspace_id"],
            {
                "client_id": session["client_id"],
                "portal": True,
                "status": status,
                "sort": sort,
                "search": search,
                "limit": PAGE_SIZE,
                "offset": (number - 1) * PAGE_SIZE,
            },
        )
        # A billing older than this gateway (a rolling upgrade) sends no "client": page() then asks for it.
        self.page(
            req,
            resp,
            "invoices.html",
            session,
            client=page.get("client"),
            page=page,
            current=status,
            sort=sort,
            search=search,
            filters=INVOICE_FILTERS,
            sorts=INVOICE_SORTS,
            page_number=number,
            pages=max(1, -(-page["total"] // PAGE_SIZE)),
        )


class InvoiceDetail(Portal):
    def on_get(self, req, resp, invoice_id: str):
        session = self.session(req, resp)
        ws, client = session["workspace_id"], session["client_id"]
        invoice = self.billing(req).mark_invoice_viewed(ws, client, invoice_id)  # scoped, and recorded
        comments = self.billing(req).list_comments(ws, "invoice", invoice_id, client_id=client)
        self.page(
            req,
            resp,
            "invoice.html",
            session,
            client=invoice,
            inv=invoice,
            comments=comments,
            business=invoice.get("business_name", ""),
            forwarded=req.get_param("forwarded"),
            printable=req.get_param_as_bool("print") or False,
            nonce=uuid.uuid4().hex,
        )


class InvoiceComment(Portal):
    def on_post(self, req, resp, invoice_id: str):
        session = self.session(req, resp)
        form = self.form(req)
        body = field(form, "body", 5000, title="Write a comment")  # as written
        if not body.strip():
            raise falcon.HTTPBadRequest(title="Write a comment", description="A comment is 1 to 5000 characters.")
        nonce = field(form, "nonce", 64) or req.context.request_id  # a double submit posts once
        self.billing(req).add_comment(
            session["workspace_id"],
            "invoice",
            invoice_id,
            "client",
            session["name"] or session["email"],
            body,
            client_id=session["client_id"],
            idempotency_key=f"comment:{session['contact_id']}:{nonce}",
        )
        raise falcon.HTTPSeeOther(f"/invoices/{invoice_id}#comments")


class InvoiceDispute(Portal):
    """The invoice page's dispute form: a reason (required) and, optionally, the lines disputed."""

    def on_post(self, req, resp, invoice_id: str):
        session = self.session(req, resp)
        form = self.form(req)
        reason = field(form, "reason", 2000, title="Say why you dispute the invoice")
        if not reason.strip():
            raise falcon.HTTPBadRequest(
                title="Say why you dispute the invoice", description="A reason is 1 to 2000 characters."
            )
        raw = form.get("line", [])
        raw = raw if isinstance(raw, list) else [raw]
        if len(raw) > 200 or not all(isinstance(v, str) and v.isdigit() and len(v) <= 3 for v in raw):
            raise falcon.HTTPBadRequest(title="Choose the lines", description="Tick the lines you dispute, or none.")
        nonce = field(form, "nonce", 64) or req.context.request_id  # a double submit raises it once
        self.billing(req).raise_invoice_dispute(
            session["workspace_id"],
            session["client_id"],
            session["contact_id"],
            session["name"] or session["email"],
            invoice_id,
            reason,
            lines=[int(v) for v in raw] or None,
            idempotency_key=f"dispute:{session['contact_id']}:{nonce}",
        )
        raise falcon.HTTPSeeOther(f"/invoices/{invoice_id}#dispute")


class InvoiceForward(Portal):
    def on_post(self, req, resp, invoice_id: str):
        session = self.session(req, resp)
        form = self.form(req)
        to, note = field(form, "to", 1000).strip(), field(form, "note", 500)
        try:
            to = validate_email(to, check_deliverability=False).normalized
        except EmailNotValidError:
            raise falcon.HTTPBadRequest(
                title="Check the address", description="Enter the email address to forward the invoice to."
            ) from None
        nonce = field(form, "nonce", 64) or req.context.request_id  # a double submit sends once
        self.documents(req).forward_invoice(
            session["workspace_id"],
            session["client_id"],
            invoice_id,
            to,
            session["name"] or session["email"],
            note,
            idempotency_key=f"forward:{invoice_id}:{to}:{nonce}",
        )
        raise falcon.HTTPSeeOther(f"/invoices/{invoice_id}?{urlencode({'forwarded': to})}")


QUOTE_FILTERS = [
    ("all", "All"),
    ("pending", "Pending"),
    ("accepted", "Accepted"),
    ("rejected", "Declined"),
    ("expired", "Expired"),
]


class QuoteList(Portal):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        status = req.get_param("status") or "all"
        if status not in dict(QUOTE_FILTERS):
            raise falcon.HTTPBadRequest(title="Unknown filter", description="Choose a filter from the page.")
        quotes = self.billing(req).list_quotes(
            session["workspace_id"],
            {"client_id": session["client_id"], "portal": True, "status": status, "limit": 100},
        )["items"]
        self.page(req, resp, "quotes.html", session, quotes=quotes, current=status, filters=QUOTE_FILTERS)


class QuotePage(Portal):
    """The quote page, and the forms on it that decide on the version it showed."""

    def show(self, req, resp, quote_id: str, confirm: str | None = None, stale: int | None = None):
        session = self.session(req, resp)
        ws, client = session["workspace_id"], session["client_id"]
        quote = self.billing(req).get_quote(ws, quote_id, client_id=client)
        comments = self.billing(req).list_comments(ws, "quote", quote_id, client_id=client)
        self.page(
            req,
            resp,
            "quote.html",
            session,
            status=409 if stale else 200,
            client=quote,
            q=quote,
            confirm=confirm,
            stale=stale,
            comments=comments or [],
            nonce=uuid.uuid4().hex,
        )

    def decide(self, req, resp, quote_id: str, seen: int, decision):
        """Make a decision on the version the page showed; when a revision has replaced it, the page
        again with the newest version and a 409 that says so, and nothing changed."""
        try:
            decision()
        except Conflict as exc:
            if "newest_version" not in exc.fields:
                raise
            return self.show(req, resp, quote_id, stale=seen)
        raise falcon.HTTPSeeOther(f"/quotes/{quote_id}")


class QuoteDetail(QuotePage):
    def on_get(self, req, resp, quote_id: str):
        self.show(req, resp, quote_id)


def seen_version(form: dict, required: bool = True) -> int | None:
    """The quote version a decision form was shown with (its hidden field)."""
    raw = field(form, "version", 10)
    if not raw and not required:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise falcon.HTTPBadRequest(
            title="This page is out of date", description="Open the quote again and decide on what it shows."
        )
    return int(raw)


class QuoteAccept(QuoteDetail):
    """Two steps: the name is asked for, then confirmed; only the confirmation accepts."""

    def on_post(self, req, resp, quote_id: str):
        session = self.session(req, resp)
        form = self.form(req)
        name = field(form, "signature_name", 200, title="Sign with your name")  # signed as typed
        if not name.strip():
            raise falcon.HTTPBadRequest(title="Sign with your name", description="Type your full name to accept.")
        confirmed = form.get("confirmed") == "yes"
        seen = seen_version(form, required=confirmed)
        if not confirmed:
            quote = self.billing(req).get_quote(session["workspace_id"], quote_id, client_id=session["client_id"])
            if seen is not None and seen != quote.get("version", 1):
                return self.show(req, resp, quote_id, stale=seen)
            return self.show(req, resp, quote_id, confirm=name)
        self.decide(
            req,
            resp,
            quote_id,
            seen,
            lambda: self.billing(req).accept_quote(
                session["workspace_id"],
                quote_id,
                session["email"],
                self.client_ip(req),
                name,
                client_id=session["client_id"],
                version=seen,
            ),
        )


class QuoteReject(QuotePage):
    def on_post(self, req, resp, quote_id: str):
        session = self.session(req, resp)
        form = self.form(req)
        reason = field(form, "reason", 2000)
        seen = seen_version(form)
        self.decide(
            req,
            resp,
            quote_id,
            seen,
            lambda: self.billing(req).reject_quote(
                session["workspace_id"],
                quote_id,
                session["email"],
                reason,
                client_id=session["client_id"],
                version=seen,
            ),
        )


class QuoteChanges(QuotePage):
    """Request changes: the message joins the quote's comments and the business is told."""

    def on_post(self, req, resp, quote_id: str):
        session = self.session(req, resp)
        form = self.form(req)
        message = field(form, "message", 5000, title="Say what you would like changed")  # as written
        if not message.strip():
            raise falcon.HTTPBadRequest(
                title="Say what you would like changed", description="A message is 1 to 5000 characters."
            )
        seen = seen_version(form)
        nonce = field(form, "nonce", 64) or req.context.request_id  # a double submit asks once
        try:
            self.billing(req).request_quote_changes(
                session["workspace_id"],
                session["client_id"],
                session["contact_id"],
                quote_id,
                message,
                seen,
                idempotency_key=f"quote-changes:{session['contact_id']}:{nonce}",
            )
        except Conflict as exc:
            if "newest_version" not in exc.fields:
                raise
            return self.show(req, resp, quote_id, stale=seen)
        raise falcon.HTTPSeeOther(f"/quotes/{quote_id}#comments")


PAYMENT_KINDS = [("all", "All payments"), ("invoice", "Invoice payments"), ("retainer", "Retainer payments")]
PAYMENT_SORTS = [
    ("-date", "Newest first"),
    ("date", "Oldest first"),
    ("-amount", "Largest amount"),
    ("amount", "Smallest amount"),
]


class PaymentList(Portal):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        kind, sort = req.get_param("kind") or "all", req.get_param("sort") or "-date"
        if kind not in dict(PAYMENT_KINDS) or sort not in dict(PAYMENT_SORTS):
            raise falcon.HTTPBadRequest(title="Unknown filter", description="Choose a filter and a sort from the page.")
        payments = self.billing(req).list_payments(
            session["workspace_id"],
            session["client_id"],
            None if kind == "all" else kind,
            sort,
        )
        self.page(
            req,
            resp,
            "payments.html",
            session,
            payments=payments,
            processing=self.billing(req).list_processing_payments(session["workspace_id"], session["client_id"]),
            kind=kind,
            sort=sort,
            kinds=PAYMENT_KINDS,
            sorts=PAYMENT_SORTS,
        )


ALL_TIME_FROM = date(1900, 1, 1)


def statement_periods(today: date) -> list[tuple[str, dict]]:
    """The statement's quick picks as (key, query), for `today` in the business's time zone. A period
    that ends today leaves "to" out, so billing ends it on its own today (a bookmark stays current);
    no query at all is billing's default, the last three months."""
    month = today.replace(day=1)
    last_month_end = month - timedelta(days=1)
    return [
        ("this_month", {"from": month.isoformat()}),
        ("last_month", {"from": last_month_end.replace(day=1).isoformat(), "to": last_month_end.isoformat()}),
        ("last_3_months", {}),
        ("this_year", {"from": month.replace(month=1).isoformat()}),
        ("all_time", {"from": ALL_TIME_FROM.isoformat()}),
    ]


class StatementPage(Portal):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        ws, client = session["workspace_id"], session["client_id"]
        asked = {key: value for key in ("from", "to") if (value := req.get_param(key))}
        statement = self.billing(req).statement(ws, client, asked.get("from"), asked.get("to"))
        # Billing says what day it is for the business; without "to", the statement ends that day.
        today = statement.get("today") or statement["to"]  # an older billing sends no "today"
        periods = statement_periods(date.fromisoformat(today))
        shown = {key for key, query in periods if query == asked}  # in January, this month's "from" is the year's
        self.page(req, resp, "statement.html", session, client=statement, st=statement, periods=periods, shown=shown)


PROFILE_FIELDS = {"name": 200, "phone": 50, "company": 200, "address": 2000, "company_phone": 50}


class ProfilePage(Portal):
    def _show(self, req, resp, session, status: int = 200, error: str | None = None):
        client = self.billing(req).get_client(session["workspace_id"], session["client_id"])
        contact = next(c for c in client["contacts"] if c["id"] == session["contact_id"])
        business = self.brand(session["workspace_id"])["name"]
        self.page(
            req,
            resp,
            "profile.html",
            session,
            status=status,
            client=client,
            contact=contact,
            business=business,
            saved=req.get_param("saved") == "1",
            error=error,
            notifications=self.billing(req).get_notification_preferences(
                session["workspace_id"], session["contact_id"], client_id=session["client_id"]
            ),
            notifications_saved=req.get_param("notifications") == "saved",
            password=self.auth(req).password_status(session["contact_id"]),  # its link, where passwords are on
        )

    def on_get(self, req, resp):
        self._show(req, resp, self.session(req, resp))

    def on_post(self, req, resp):
        session = self.session(req, resp)
        form = self.form(req)
        # what the form sends is saved as typed; a field the form leaves out is left as it is
        data = {key: field(form, key, limit) for key, limit in PROFILE_FIELDS.items() if key in form}
        if "company" in data and not data["company"].strip():
            return self._show(req, resp, session, status=400, error="The company name cannot be empty.")
        saved = self.billing(req).update_profile(
            session["workspace_id"], session["client_id"], session["contact_id"], data
        )
        if saved["contact"]["name"] != session["name"]:  # the pages greet the contact by the new name
            req.context.sessions.renew(req, resp, name=saved["contact"]["name"])
        raise falcon.HTTPSeeOther("/profile?saved=1")


class ContactBusiness(Portal):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        business = self.brand(session["workspace_id"])["name"]
        self.page(
            req,
            resp,
            "contact.html",
            session,
            business=business,
            sent=req.get_param("sent") == "1",
            nonce=uuid.uuid4().hex,
        )

    def on_post(self, req, resp):
        session = self.session(req, resp)
        form = self.form(req)
        title = "Write a subject and a message"
        subject, message = field(form, "subject", 200, title=title), field(form, "message", 5000, title=title)
        if not subject.strip() or not message.strip():
            raise falcon.HTTPBadRequest(
                title="Write a subject and a message",
                description="Both are needed; the message is at most 5000 characters.",
            )
        client = self.billing(req).get_client(session["workspace_id"], session["client_id"])
        nonce = field(form, "nonce", 64) or req.context.request_id  # a double submit sends once
        self.documents(req).send_business_message(
            session["workspace_id"],
            session["client_id"],
            client["name"],
            session["name"] or session["email"],
            session["email"],
            subject,
            message,
            f"message:{session['contact_id']}:{nonce}",
        )
        raise falcon.HTTPSeeOther("/contact?sent=1")


class PdfDownload(Base):
    """A PDF of one of the signed-in client's documents, rendered (or served from cache) by documents."""

    def __init__(self, rpc, config, kind: str, fetcher: PdfFetcher | None = None):
        super().__init__(rpc, config)
        self.kind = kind
        self.fetcher = fetcher or PdfFetcher(None)

    def on_get(self, req, resp, object_id=None, invoice_id=None, quote_id=None):
        session = self.session(req, resp)
        call = lambda *args, **kwargs: self.call(req, *args, **kwargs)  # noqa: E731
        send_pdf(
            req,
            resp,
            render_pdf(
                call,
                self.kind,
                session,
                invoice_id or quote_id or object_id,
                {"from": req.get_param("from"), "to": req.get_param("to")},
                by_reference=self.fetcher.enabled,
            ),
            self.fetcher,
        )


class EInvoiceDownload(Base):
    """The signed-in client's invoice as an EN 16931 e-invoice (CII XML), for its accounting software."""

    def on_get(self, req, resp, invoice_id):
        session = self.session(req, resp)
        call = lambda *args, **kwargs: self.call(req, *args, **kwargs)  # noqa: E731
        send_xml(resp, einvoice_xml(call, session["workspace_id"], invoice_id, session["client_id"]))


def einvoice_xml(call, workspace_id: str, invoice_id: str, client_id: str | None) -> dict:
    """Look the invoice up (within the client, when one is given), then have documents write its XML."""
    data = call("billing", "get_invoice", workspace_id, invoice_id, client_id=client_id)
    return call("documents", "einvoice", "invoice", workspace_id, data)


def send_xml(resp, answer: dict) -> None:
    resp.content_type = answer["content_type"]
    resp.set_header("Content-Disposition", f'attachment; filename="{answer["filename"]}"')
    resp.set_header("Cache-Control", "private, max-age=0, must-revalidate")
    resp.text = answer["xml"]


def render_pdf(call, kind: str, session: dict, object_id: str | None, query: dict, by_reference: bool = False) -> dict:
    """Look the document up within the session's client (404 otherwise), then have documents render it
    (`by_reference`: answer with a reference to fetch the cached PDF by, not its bytes)."""
    ws, client = session["workspace_id"], session["client_id"]
    if kind == "invoice":
        data = call("billing", "get_invoice", ws, object_id, client_id=client)
    elif kind == "quote":
        data = call("billing", "get_quote", ws, object_id, client_id=client)
    elif kind == "receipt":
        data = call("billing", "get_payment", ws, object_id, client_id=client)
    else:
        data = call("billing", "statement", ws, client, query.get("from"), query.get("to"))
    data.setdefault("client_id", client)
    return document_pdf(call, kind, ws, data, by_reference)


def document_pdf(call, kind: str, workspace_id: str, data: dict, by_reference: bool = False) -> dict:
    extra = {"by_reference": True} if by_reference else {}
    answer = call(
        "documents", "render_document", kind, workspace_id, data, data.get("locale"), data.get("timezone"), **extra
    )
    # the bytes after all, when the reference cannot be fetched (announced once, by the first call)
    answer["again"] = lambda: call(
        "documents",
        "render_document",
        kind,
        workspace_id,
        data,
        data.get("locale"),
        data.get("timezone"),
        purpose="fallback",
    )
    return answer


class DocumentLink(Base):
    """/i/<token>: one invoice or quote from an email link, without signing in, and nothing else."""

    public = True

    def _resolve(self, req, token: str) -> tuple[dict, dict]:
        try:
            scope = self.auth(req).resolve_document_link(token)
        except Unauthorized as exc:
            gone = exc.detail in ("expired", "revoked")
            raise (
                falcon.HTTPGone(
                    title="This link no longer works",
                    description="Links in emails expire or are withdrawn. Sign in to see the document.",
                )
                if gone
                else falcon.HTTPNotFound()
            ) from None
        req.context.scope = Scope(scope["workspace_id"], scope["client_id"])
        method = "get_invoice" if scope["kind"] == "invoice" else "get_quote"
        document = self.call(
            req, "billing", method, scope["workspace_id"], scope["document_id"], client_id=scope["client_id"]
        )
        return scope, document

    def on_get(self, req, resp, token: str):
        scope, document = self._resolve(req, token)
        if scope["kind"] == "invoice":  # the business sees the visit in the client's activity
            self.billing(req).mark_invoice_viewed(scope["workspace_id"], scope["client_id"], scope["document_id"])
        self.render(
            resp,
            "document_public.html",
            doc=document,
            kind=scope["kind"],
            token=token,
            workspace_id=scope["workspace_id"],
            business=document.get("business_name", ""),
            locale=document.get("locale", "en_US"),
        )


class DocumentLinkPdf(DocumentLink):
    def __init__(self, rpc, config, fetcher: PdfFetcher | None = None):
        super().__init__(rpc, config)
        self.fetcher = fetcher or PdfFetcher(None)

    def on_get(self, req, resp, token: str):
        scope, document = self._resolve(req, token)
        document.setdefault("client_id", scope["client_id"])
        call = lambda *args, **kwargs: self.call(req, *args, **kwargs)  # noqa: E731
        send_pdf(
            req,
            resp,
            document_pdf(call, scope["kind"], scope["workspace_id"], document, self.fetcher.enabled),
            self.fetcher,
        )


def send_pdf(req, resp, pdf: dict, fetcher: PdfFetcher | None = None) -> None:
    """The PDF documents answered with: its bytes, or streamed from documents by its reference. A
    reference that cannot be fetched (the documents process restarted, a secret mismatch) falls back
    to the bytes in an RPC answer."""
    etag = f'"{pdf["etag"]}"'
    resp.set_header("ETag", etag)
    # private: the PDF is one client's; revalidate so a changed document is never served stale
    resp.set_header("Cache-Control", "private, max-age=0, must-revalidate")
    if req.get_header("If-None-Match") == etag:
        resp.status = 304
        return
    resp.content_type = "application/pdf"
    resp.set_header("Content-Disposition", f'attachment; filename="{pdf["filename"]}"')
    if "pdf" not in pdf and fetcher is not None:
        try:
            resp.stream, resp.content_length = fetcher.open(pdf["reference"])
            return
        except FetchFailed as exc:
            log.warning("cached PDF not fetched by reference; asking for its bytes", extra={"error": str(exc)})
            pdf = pdf["again"]()
    resp.data = base64.b64decode(pdf["pdf"])


class Health(Base):
    """200 only when the broker and every service answer a ping."""

    public = True

    def on_get(self, req, resp):
        checks = {"broker": broker_reachable(self.config.amqp_uri)}
        with concurrent.futures.ThreadPoolExecutor(len(self.config.services)) as pool:
            futures = {name: pool.submit(self._ping, req.context.request_id, name) for name in self.config.services}
            checks.update({name: future.result() for name, future in futures.items()})
        healthy = all(check["ok"] for check in checks.values())
        resp.status = 200 if healthy else 503
        resp.media = {"status": "ok" if healthy else "degraded", "checks": checks}

    def _ping(self, request_id: str, name: str) -> dict:
        try:
            self.rpc.call(name, "ping", request_id=request_id)
            return {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, reported as text
            return {"ok": False, "error": str(exc) or type(exc).__name__}


class DevMail(Base):
    """Development only: the mail the system sent, so a newcomer can sign in without a mail server."""

    public = True

    def on_get(self, req, resp):
        self.render(resp, "dev_mail.html", emails=self.documents(req).recent_emails(50))


def add_routes(app: falcon.App, rpc, health_rpc, config) -> None:
    pdfs = PdfFetcher(config.pdf_fetch_secret)
    app.add_route("/", Root(rpc, config))
    app.add_route("/login", Login(rpc, config))
    app.add_route("/login/verify", Verify(rpc, config))
    app.add_route("/logout", Logout(rpc, config))
    app.add_route("/dashboard", Dashboard(rpc, config))
    app.add_route("/healthz", Health(health_rpc, config))
    if config.dev:
        app.add_route("/dev/mail", DevMail(rpc, config))
    app.add_route("/invoices", InvoiceList(rpc, config))
    app.add_route("/invoices/{invoice_id}", InvoiceDetail(rpc, config))
    app.add_route("/invoices/{invoice_id}/comments", InvoiceComment(rpc, config))
    app.add_route("/invoices/{invoice_id}/forward", InvoiceForward(rpc, config))
    app.add_route("/invoices/{invoice_id}/dispute", InvoiceDispute(rpc, config))
    app.add_route("/invoices/{invoice_id}/pdf", PdfDownload(rpc, config, "invoice", pdfs))
    app.add_route("/invoices/{invoice_id}/xml", EInvoiceDownload(rpc, config))
    app.add_route("/quotes", QuoteList(rpc, config))
    app.add_route("/quotes/{quote_id}", QuoteDetail(rpc, config))
    app.add_route("/quotes/{quote_id}/accept", QuoteAccept(rpc, config))
    app.add_route("/quotes/{quote_id}/reject", QuoteReject(rpc, config))
    app.add_route("/quotes/{quote_id}/changes", QuoteChanges(rpc, config))
    app.add_route("/quotes/{quote_id}/pdf", PdfDownload(rpc, config, "quote", pdfs))
    app.add_route("/payments", PaymentList(rpc, config))
    app.add_route("/payments/{object_id}/receipt.pdf", PdfDownload(rpc, config, "receipt", pdfs))
    app.add_route("/statement", StatementPage(rpc, config))
    app.add_route("/profile", ProfilePage(rpc, config))
    app.add_route("/contact", ContactBusiness(rpc, config))
    app.add_route("/statement.pdf", PdfDownload(rpc, config, "statement", pdfs))
    app.add_route("/i/{token}", DocumentLink(rpc, config))
    app.add_route("/i/{token}/pdf", DocumentLinkPdf(rpc, config, pdfs))
    app.add_route("/brand/{workspace_id}.css", BrandCss(rpc))
    app.add_route("/brand/{workspace_id}/logo", BrandLogo(rpc))

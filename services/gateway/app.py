"""The gateway: a Falcon app that checks magic-link sessions, serves the portal and its JSON API,
and reaches the services over RPC. `get_app()` is what gunicorn loads."""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon

from chassis import credentials, settings
from chassis.clock import Clock, utcnow
from chassis.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    ServiceError,
    Unauthorized,
    Unavailable,
)
from chassis.i18n import Message
from chassis.logs import configure_logging, request_id_var
from services.gateway.admin import add_admin_routes
from services.gateway.branding import brand_of, cached_brand
from services.gateway.csrf import CsrfMiddleware
from services.gateway.jsonapi import BadQuery, unstorable_text
from services.gateway.metrics import MeteredRpc, MetricsMiddleware, add_ops_routes
from services.gateway.pages.base import Rpc
from services.gateway.pages.passkeys import step_up_location
from services.gateway.portal_api import add_portal_api_routes
from services.gateway.revocations import RevocationFeed, RevocationList
from services.gateway.routes import add_page_routes
from services.gateway.rpc import ContractViolation, RpcPool, ServiceCrashed, ServiceTimeout, ServiceUnavailable
from services.gateway.sessions import SeenReports, SessionGuard, SessionMiddleware
from services.gateway.views import QUERY_PARAMETERS, browser_locale, env_for

log = logging.getLogger(__name__)
# The services' business errors, as HTTP answers.
HTTP_STATUS = {
    BadQuery: 400,
    NotFound: 404,
    Invalid: 422,
    Conflict: 409,
    RateLimited: 429,
    Unauthorized: 401,
    Forbidden: 403,
    Unavailable: 503,
}
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Falcon's HTTPInvalidParam keeps the parameter's name only in its English description.
INVALID_PARAM = re.compile(r'^The "([^"]+)" parameter is invalid\.')
SERVICES = ("auth", "billing", "payments", "documents")
DEV_PDF_FETCH_SECRET = b"dev-only-pdf-fetch-secret"


@dataclass
class GatewayConfig:
    portal_url: str = "http://localhost:8000"
    dev: bool = True
    max_body: int = 64 * 1024
    trusted_proxy_hops: int = 0  # how many reverse proxies in front of gunicorn add X-Forwarded-For
    amqp_uri: str = "amqp://guest:guest@localhost:5672/"
    secret: bytes = b"dev-only-gateway-secret"  # signs CSRF tokens; GATEWAY_SECRET outside dev
    services: tuple = SERVICES
    extra: dict = field(default_factory=dict)
    # publishable_key, js_url (Stripe.js, or localstripe's stand-in), api_origin, webhook_secret
    stripe: dict = field(default_factory=lambda: stripe_settings(None, "pk_test_localstripe", "whsec_localstripe"))
    metrics_token: str | None = None  # /metrics needs it as a bearer token; unset: served in dev only
    # the keys auth signs session credentials with (SESSION_KEYS, shared with auth), and the limits
    session_keys: credentials.Keys = field(default_factory=lambda: credentials.Keys.parse(credentials.DEV_KEYS))
    session_limits: credentials.Limits = field(default_factory=credentials.Limits)
    workspaces: frozenset[str] | None = None  # PORTAL_WORKSPACES: the only workspaces served here; None: all
    # checks the references by which cached PDFs are fetched from documents (PDF_FETCH_SECRET, shared
    # with documents); None: PDFs come in the RPC answer (services/gateway/pdf_fetch.py)
    pdf_fetch_secret: bytes | None = DEV_PDF_FETCH_SECRET
    # documents' HTTP port, where a client's current renders are fetched without an RPC (DOCUMENTS_URL)
    documents_url: str | None = None

    @property
    def cookie_name(self) -> str:
        # __Host- pins the cookie to this host, path / and HTTPS (browsers demand Secure with it).
        return "portal_session" if self.dev else "__Host-portal_session"

    @property
    def csrf_cookie_name(self) -> str:
        return "portal_csrf" if self.dev else "__Host-portal_csrf"

    @classmethod
    def from_env(cls) -> GatewayConfig:
        dev = settings.is_dev()
        secret = settings.env("GATEWAY_SECRET")
        if not secret and not dev:
            raise RuntimeError(
                "GATEWAY_SECRET must be set outside development (a long random string, "
                "the same for every gateway replica)."
            )
        return cls(
            secret=(secret or cls.secret.decode()).encode(),
            portal_url=settings.env("PORTAL_URL", "http://localhost:8000"),
            dev=dev,
            max_body=settings.env_int("GATEWAY_MAX_BODY", 64 * 1024),
            trusted_proxy_hops=settings.env_int("TRUSTED_PROXY_HOPS", 0),
            metrics_token=settings.env("METRICS_TOKEN"),
            pdf_fetch_secret=(
                settings.env("PDF_FETCH_SECRET") or (DEV_PDF_FETCH_SECRET.decode() if dev else "")
            ).encode()
            or None,
            documents_url=settings.env("DOCUMENTS_URL") or None,
            amqp_uri=settings.amqp_uri(),
            session_keys=credentials.Keys.from_env(),
            session_limits=credentials.Limits.from_env(),
            workspaces=frozenset(w.strip() for w in settings.env("PORTAL_WORKSPACES", "").split(",") if w.strip())
            or None,
            stripe=stripe_settings(
                settings.env("STRIPE_API_BASE") or None,
                settings.env("STRIPE_PUBLISHABLE_KEY", "pk_test_localstripe" if dev else None),
                settings.env("STRIPE_WEBHOOK_SECRET", "whsec_localstripe" if dev else None),
            ),
        )


def stripe_settings(api_base: str | None, publishable_key: str | None, webhook_secret: str | None) -> dict:
    """Where the browser gets Stripe.js and talks to Stripe: Stripe itself, or localstripe in
    development (which serves a stand-in Stripe.js and answers its calls)."""
    if api_base:
        origin = api_base.rstrip("/")
        return {
            "publishable_key": publishable_key,
            "js_url": f"{origin}/js.stripe.com/v3/",
            "js_origin": origin,
            "api_origin": origin,
            "webhook_secret": webhook_secret,
        }
    return {
        "publishable_key": publishable_key,
        "js_url": "https://js.stripe.com/v3/",
        "js_origin": "https://js.stripe.com",
        "api_origin": "https://api.stripe.com",
        "webhook_secret": webhook_secret,
    }


def wants_json(req: falcon.Request) -> bool:
    if req.path.startswith(("/api/", "/healthz", "/livez", "/readyz", "/metrics", "/webhooks/")):
        return True
    return "json" in (req.accept or "") and not req.client_accepts("text/html")


class RequestIdMiddleware:
    def __init__(self, dev: bool = False):
        # In development, which worker answered (tests check that every worker of every replica
        # refuses an ended session); never in production, where it would describe the deployment.
        self.served_by = f"gateway-{os.getpid()}" if dev else None

    def process_request(self, req, resp):
        incoming = req.get_header("X-Request-ID") or ""
        req.context.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request_id_var.set(req.context.request_id)

    def process_response(self, req, resp, resource, req_succeeded):
        resp.set_header("X-Request-ID", req.context.get("request_id", ""))
        if self.served_by:
            resp.set_header("X-Served-By", self.served_by)
        request_id_var.set(None)


DRAINED_AT_MOST = 1024 * 1024  # bytes of a too-large body read and dropped so that its 413 arrives
DRAIN_WAIT = 2.0  # seconds each read of it may wait: a client that stops sending gets its 413 then


def drain(req: falcon.Request) -> None:
    """Read and drop the rest of the request's body. A client that stops sending for DRAIN_WAIT, or
    goes away, ends the drain: the answer goes out regardless, and gunicorn closes the connection."""
    sock = req.env.get("gunicorn.socket")
    if sock is None:  # the app called in process (tests): the body is in memory
        req.bounded_stream.exhaust()
        return
    waited = sock.gettimeout()
    sock.settimeout(DRAIN_WAIT)
    try:
        req.bounded_stream.exhaust()
    except OSError:  # a timeout (socket.timeout is one) or a reset
        pass
    finally:
        sock.settimeout(waited)


class SecurityMiddleware:
    """Body size cap, cross-site POST refusal and security headers on every response."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.origin = config.portal_url.rstrip("/")
        js, api = config.stripe["js_origin"], config.stripe["api_origin"]
        # Stripe.js is the only script from elsewhere; it talks to Stripe's API and frames its own
        # 3-D Secure pages (https://docs.stripe.com/security/guide#content-security-policy).
        self.csp = (
            f"default-src 'self'; script-src 'self' {js}; connect-src 'self' {api}; "
            f"frame-src {js} https://hooks.stripe.com; img-src 'self' data:; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'"
        )

    def process_request(self, req, resp):
        if req.content_length and req.content_length > self.config.max_body:
            # Read what the client is still sending before answering: gunicorn drains little of it
            # after a response (64 KB, then as much while closing) and closes, and a close with bytes
            # unread resets the connection, which can discard the 413 before the client reads it.
            if req.content_length <= DRAINED_AT_MOST:
                drain(req)
            raise falcon.HTTPContentTooLarge(
                title="Request too large",
                description=Message("Requests may be at most %(limit)s bytes.", limit=self.config.max_body),
            )
        # a signed link is its own credential: mail programs POST one-click unsubscribes from anywhere
        if req.method in ("POST", "PUT", "PATCH", "DELETE") and not req.path.startswith(("/webhooks/", "/unsubscribe")):
            site = req.get_header("Sec-Fetch-Site")
            origin = req.get_header("Origin")
            if site == "cross-site" or (origin and origin.rstrip("/") not in (self.origin, req.prefix.rstrip("/"))):
                raise falcon.HTTPForbidden(
                    title="Cross-site request refused", description="This form must be sent from the portal itself."
                )
        try:
            form = (
                req.get_media()
                if req.method == "POST"
                and not req.path.startswith("/webhooks/")
                and (req.content_type or "").startswith(falcon.MEDIA_URLENCODED)
                else None
            )
        except falcon.MediaMalformedError:  # bytes that are not URL-encoded text (a form is ASCII once encoded)
            raise falcon.HTTPBadRequest(
                title="The form could not be read",
                description="It did not arrive as a browser sends a form. Go back, reload the page and try again.",
            ) from None
        if unstorable_text([req.path, list(req.params.values()), form]):  # NUL from %00, in any field
            raise falcon.HTTPBadRequest(
                title="Characters that are not allowed", description="The address or the form contains a NUL character."
            )

    def process_response(self, req, resp, resource, req_succeeded):
        resp.set_header("Content-Security-Policy", self.csp)
        resp.set_header("X-Content-Type-Options", "nosniff")
        # Tokens in our URLs never reach another site in a Referer; "no-referrer" would also make
        # browsers send "Origin: null" on our own forms, which the cross-site check must refuse.
        resp.set_header("Referrer-Policy", "same-origin")
        resp.set_header("X-Frame-Options", "DENY")
        if not self.config.dev:
            resp.set_header("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        if resp.get_header("Cache-Control") is None:
            resp.set_header("Cache-Control", "no-store")


class ErrorRenderer:
    """Every error as a designed HTML page or application/problem+json."""

    def __init__(self, config: GatewayConfig, sessions: SessionMiddleware | None = None, rpc: Rpc | None = None):
        self.config = config
        self.sessions = sessions
        self.rpc = rpc  # the business's branding, for a signed-in contact's page

    def respond(self, req, resp, status: int, title: str, detail: str, extra: dict | None = None):
        resp.status = status
        if wants_json(req):
            resp.content_type = "application/problem+json"
            resp.text = json.dumps(
                {
                    "type": "about:blank",
                    "title": title,
                    "status": status,
                    "detail": detail,
                    "request_id": req.context.get("request_id"),
                    **(extra or {}),
                }
            )
        else:
            resp.content_type = falcon.MEDIA_HTML
            session = req.context.get("session")
            resp.text = (
                env_for(self._reader_locale(req, session))
                .get_template("error.html")
                .render(
                    status=status,
                    title=title,
                    detail=detail,
                    request_id=req.context.get("request_id"),
                    session=session,
                    brand=self._brand(session, status),
                )
            )

    def _brand(self, session: dict | None, status: int) -> dict | None:
        """The business's name, logo and colours above a signed-in contact's error page, as on its other
        pages. A server error's page asks for them only if this process has them already: billing may
        be what did not answer."""
        workspace_id = (session or {}).get("workspace_id")
        if not workspace_id or self.rpc is None:
            return None
        if status >= 500:
            return cached_brand(workspace_id)
        rpc = self.rpc
        try:
            return brand_of(lambda *a, **k: rpc.call(*a, request_id=request_id_var.get(), **k), workspace_id)
        except Exception:  # noqa: BLE001 - the error page is shown all the same, unbranded
            log.warning("no branding for an error page", exc_info=True)
            return None

    def _reader_locale(self, req, session: dict | None) -> str:
        """The language of an error page: the signed-in contact's. A request answered without its
        session being read (refused at the door: a body too large, a cross-site or expired form,
        characters no database stores; or a public page) speaks that of the live session its cookie
        names, if any; else the browser's Accept-Language, among the portal's languages. The JSON
        APIs' problems stay English, as all of theirs are."""
        if session and session.get("locale"):
            return session["locale"]
        if session is None and self.sessions is not None:
            locale = self.sessions.credential_locale(req)
            if locale:
                return locale
        return browser_locale(req.get_header("Accept-Language"))

    def http_error(self, req, resp, ex: falcon.HTTPError, params):
        if isinstance(ex, falcon.HTTPRouteNotFound) and self.sessions is not None and not wants_json(req):
            self.sessions.keep_if_signed_in(req)  # no route ran the session middleware
        if ex.status_code == 404:
            self.respond(
                req,
                resp,
                404,
                "Page not found",
                "There is nothing here, or it is not yours to see. Check the address or go back to the portal.",
            )
        elif ex.status_code == 405:
            self.respond(req, resp, 405, "Not allowed", "This address does not accept that kind of request.")
        elif isinstance(ex, falcon.HTTPInvalidParam) and not wants_json(req):
            self.respond(req, resp, 400, "Check the address", self._invalid_param(ex))
        else:
            self.respond(req, resp, ex.status_code, ex.title or "Error", ex.description or "")
        headers = ex.headers or {}
        for name, value in headers.items() if isinstance(headers, Mapping) else headers:
            resp.set_header(name, value)

    @staticmethod
    def _invalid_param(ex: falcon.HTTPInvalidParam) -> str:
        """A page's bad query parameter (req.get_param_as_int, ...) for a reader, who may read German:
        Falcon's own text names it as the address does, in English. The JSON APIs keep Falcon's."""
        found = INVALID_PARAM.match(ex.description or "")
        label = QUERY_PARAMETERS.get(found.group(1)) if found else None
        return Message("%(field)s is not valid.", field=label) if label else "A value in the address is not valid."

    def service_error(self, req, resp, ex: ServiceError, params):
        fields = {"errors": ex.fields} if ex.fields else {}
        if isinstance(ex, Unauthorized) and ex.fields.get("step_up") == "required":
            # step-up for money (services/gateway/pages/passkeys.py): a page goes to confirm it is you first
            location = step_up_location(req, self.config.portal_url)
            if not wants_json(req):
                resp.status, resp.location, resp.text = 303, location, ""
                return
            return self.respond(req, resp, 401, "Confirm it is you", ex.detail, {**fields, "step_up_url": location})
        status = next((code for kind, code in HTTP_STATUS.items() if isinstance(ex, kind)), 500)
        # problem+json extension members a gateway error may add (e.g. a link to the newest version)
        self.respond(req, resp, status, ex.title, ex.detail, {**fields, **getattr(ex, "extensions", {})})

    # What a client loses while one service is down; pages that do not need it keep working.
    FEATURES = {
        "auth": "Signing in is",
        "billing": "Your invoices and account are",
        "payments": "Card payments are",
        "documents": "PDF documents and emails are",
    }

    def _part(self, ex) -> str:
        feature = self.FEATURES.get(getattr(ex, "service", None) or "")
        return (
            f"{feature} not available right now; the rest of the portal still works."
            if feature
            else "Part of the portal is not answering right now."
        )

    def unavailable(self, req, resp, ex, params):
        log.warning("service unavailable", extra={"error": str(ex), "service": getattr(ex, "service", None)})
        self.respond(req, resp, 503, "Temporarily unavailable", f"{self._part(ex)} Please try again in a minute.")

    def timeout(self, req, resp, ex, params):
        log.warning("service timeout", extra={"error": str(ex), "service": getattr(ex, "service", None)})
        self.respond(
            req,
            resp,
            504,
            "Taking too long",
            f"The portal did not get an answer in time. {self._part(ex)} Please try again in a minute.",
        )

    def crashed(self, req, resp, ex, params):
        self._went_wrong(req, resp, 502)

    def contract_bug(self, req, resp, ex, params):
        # logged once already, where the call was refused (RpcPool), with the service and method
        self._went_wrong(req, resp, 500)

    def unexpected(self, req, resp, ex, params):
        log.exception("unhandled error")
        self._went_wrong(req, resp, 500)

    def _went_wrong(self, req, resp, status: int) -> None:
        self.respond(
            req,
            resp,
            status,
            "Something went wrong",
            "We could not complete this request. It has been logged; please try again.",
        )


class Favicon:
    """Browsers ask for /favicon.ico whatever the page links: send them to the portal's icon."""

    public = True  # asked for before anyone signs in

    def on_get(self, req, resp):
        raise falcon.HTTPMovedPermanently("/static/favicon.svg")


def create_app(
    rpc: Rpc,
    health_rpc: Rpc,
    config: GatewayConfig,
    revocations: RevocationList | None = None,
    clock: Clock = utcnow,
    reports: SeenReports | None = None,
) -> falcon.App:
    """The gateway. `revocations` is the worker's list of ended sessions, kept by its feed (get_app);
    without one (a test), nothing is revoked and every session is checked with auth."""
    csrf = CsrfMiddleware(config.secret, config.csrf_cookie_name, config.cookie_name, secure=not config.dev)
    guard = SessionGuard(
        config.session_keys, config.session_limits, revocations or RevocationList(), clock, rpc, config.workspaces
    )
    sessions = SessionMiddleware(guard, config.cookie_name, secure=not config.dev, reports=reports)
    middleware: list[Any] = [  # falcon's middleware protocols are not written for classes like these
        MetricsMiddleware(),
        RequestIdMiddleware(config.dev),
        SecurityMiddleware(config),
        csrf,
        sessions,
    ]
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    errors = ErrorRenderer(config, sessions, rpc)
    app.add_error_handler(Exception, errors.unexpected)
    app.add_error_handler(falcon.HTTPError, errors.http_error)
    app.add_error_handler(ServiceError, errors.service_error)
    app.add_error_handler(ServiceUnavailable, errors.unavailable)
    app.add_error_handler(ServiceTimeout, errors.timeout)
    app.add_error_handler(ServiceCrashed, errors.crashed)
    app.add_error_handler(ContractViolation, errors.contract_bug)
    add_page_routes(app, rpc, health_rpc, config, clock)
    add_portal_api_routes(app, rpc, config)
    add_admin_routes(app, rpc, config.portal_url)
    add_ops_routes(app, config)
    app.add_static_route("/static", str(Path(__file__).parent / "static"))
    app.add_route("/favicon.ico", Favicon())
    return app


def get_app() -> falcon.App:
    configure_logging("gateway", settings.env("LOG_LEVEL", "INFO"))
    config = GatewayConfig.from_env()
    nameko_config = {"AMQP_URI": config.amqp_uri}
    # MeteredRpc times every call (portal_gateway_rpc_duration_seconds) without touching rpc.py.
    rpc = MeteredRpc(
        RpcPool(
            nameko_config, timeout=float(settings.env("RPC_TIMEOUT", "10")), size=settings.env_int("RPC_POOL_SIZE", 8)
        )
    )
    health_rpc = MeteredRpc(RpcPool(nameko_config, timeout=float(settings.env("HEALTH_RPC_TIMEOUT", "2")), size=4))
    # Each worker keeps its own revocation list, fed by its own queue (services/gateway/revocations.py).
    revocations = RevocationList()
    RevocationFeed(
        config.amqp_uri, revocations, lambda: rpc.call("auth", "revocations"), utcnow, config.session_limits.absolute
    ).start()
    return create_app(rpc, health_rpc, config, revocations, utcnow, SeenReports(rpc))

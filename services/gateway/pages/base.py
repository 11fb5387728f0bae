"""What every page shares: the typed service stubs for a request, rendering in the business's brand and
the contact's language, the form body, the client's address, and the session and its cookie."""

from __future__ import annotations

import functools
from typing import Any, Protocol

import falcon

from chassis.logs import request_id_var
from clients.auth import AuthClient
from clients.billing import BillingClient
from clients.documents import DocumentsClient
from clients.payments import PaymentsClient
from services.gateway.branding import brand_of
from services.gateway.sessions import set_session_cookie
from services.gateway.views import browser_locale, env_for, reading_locale


class Rpc(Protocol):
    """What reaches the services: the gateway's RpcPool, metered or not (and the tests' fakes)."""

    def call(self, service: str, method: str, *args: Any, **kwargs: Any) -> Any: ...


class Base:
    def __init__(self, rpc: Rpc, config: Any):
        self.rpc = rpc
        self.config = config

    def call(self, req: falcon.Request, service: str, method: str, *args: Any, **kwargs: Any) -> Any:
        # once the caller is known (session, document link), the services' databases enforce its scope too
        return self.rpc.call(
            service, method, *args, request_id=req.context.request_id, scope=req.context.get("scope"), **kwargs
        )

    # The services, typed (clients/): each call carries this request's id and its caller's scope.
    def auth(self, req: falcon.Request) -> AuthClient:
        return AuthClient(functools.partial(self.call, req))

    def billing(self, req: falcon.Request) -> BillingClient:
        return BillingClient(functools.partial(self.call, req))

    def payments(self, req: falcon.Request) -> PaymentsClient:
        return PaymentsClient(functools.partial(self.call, req))

    def documents(self, req: falcon.Request) -> DocumentsClient:
        return DocumentsClient(functools.partial(self.call, req))

    def render(self, resp: falcon.Response, template: str, status: int = 200, **context: Any) -> None:
        """A page; a client's page (session) or one document's (workspace_id) wears the business's brand.
        It speaks the signed-in contact's language (session locale), else the page's `locale` (the
        client's or the document's), else English; its money and dates are formatted for the language
        it speaks (views.reading_locale), while the currency and time zone stay the client's."""
        workspace_id = (context.get("session") or {}).get("workspace_id") or context.pop("workspace_id", None)
        if workspace_id and "brand" not in context:
            context["brand"] = self.brand(workspace_id)
        locale = reading_locale((context.get("session") or {}).get("locale"), context.get("locale"))
        context["locale"] = locale
        resp.status = status
        resp.content_type = falcon.MEDIA_HTML
        resp.text = env_for(locale).get_template(template).render(dev=self.config.dev, **context)

    def visitor_locale(self, req: falcon.Request) -> str:
        """The language of a page for someone not signed in (signing in, a sign-in or password link, a
        refusal of one): the browser's best match among the portal's languages (Accept-Language)."""
        return browser_locale(req.get_header("Accept-Language"))

    def brand(self, workspace_id: str) -> dict:
        """The business's name, logo and colours (cached for a minute per gateway process)."""
        return brand_of(lambda *a, **k: self.rpc.call(*a, request_id=request_id_var.get(), **k), workspace_id)

    def form(self, req: falcon.Request) -> dict:
        if req.content_type and req.content_type.startswith(falcon.MEDIA_URLENCODED):
            media = req.get_media()
            return media if isinstance(media, dict) else {}
        return {}

    def client_ip(self, req: falcon.Request) -> str:
        """The address to rate-limit. Behind N trusted proxies, the N-th address from the right of
        X-Forwarded-For is the one our own proxy saw; anything left of it the client could forge."""
        hops = self.config.trusted_proxy_hops
        forwarded = [a.strip() for a in (req.get_header("X-Forwarded-For") or "").split(",") if a.strip()]
        if hops and len(forwarded) >= hops:
            return forwarded[-hops]
        return req.remote_addr or "unknown"

    def has_session_cookie(self, req: falcon.Request) -> bool:
        return bool(req.get_cookie_values(self.config.cookie_name))

    def set_session_cookie(self, resp: falcon.Response, credential: str) -> None:
        set_session_cookie(resp, self.config.cookie_name, credential, secure=not self.config.dev)

    def clear_session_cookie(self, resp: falcon.Response) -> None:
        resp.unset_cookie(self.config.cookie_name, path="/")

    def end_session(self, req: falcon.Request, everywhere: bool = False) -> None:
        """Sign out: auth ends the session (or all of the contact's) and announces it to every gateway;
        this worker refuses the credential at once, before the announcement comes back."""
        self.auth(req).end_session(req.context.session_id, everywhere)
        guard = req.context.sessions.guard
        guard.revocations.end_session(req.context.session_id, req.context.credential.started_at + guard.limits.absolute)

    def session(self, req: falcon.Request, resp: falcon.Response) -> dict:
        """The signed-in contact's session, which SessionMiddleware checked before any responder of a
        route that is not public (services/gateway/sessions.py)."""
        session = req.context.get("session")
        if session is None:
            raise RuntimeError(f"{type(self).__name__} is public: it has no session to read")
        return session


class Portal(Base):
    """A page for the signed-in client: its scope comes from the session, never from the request."""

    def page(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        template: str,
        session: dict,
        status: int = 200,
        client: dict | None = None,
        **context: Any,
    ) -> None:
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


def forget_session(req: falcon.Request, session_id: str) -> None:
    """This worker refuses the session at once (the broker brings the same to every other worker);
    remembered until any credential of it would have expired anyway."""
    guard = req.context.sessions.guard
    guard.revocations.end_session(str(session_id), guard.clock() + guard.limits.absolute)

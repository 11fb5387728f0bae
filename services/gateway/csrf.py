"""CSRF protection: a signed double-submit token (OWASP's recommended stateless pattern).

Each browser gets a random cookie; its token is HMAC(secret, cookie). Pages put the token in every
form (and `/api/portal/v1/me` hands it to scripts for the `X-CSRF-Token` header). A state-changing
request that carries ambient credentials (the session or CSRF cookie) or is a form post must send
the token; a JSON API call with only a bearer token has nothing ambient to abuse and needs none.
Origin / Sec-Fetch-Site checks run before this, in SecurityMiddleware.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import secrets

import falcon

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
# Authenticated by what they carry, not by ambient cookies: Stripe's signature, an unsubscribe link's token.
EXEMPT = ("/webhooks/", "/unsubscribe")
current_token: contextvars.ContextVar[str] = contextvars.ContextVar("csrf_token", default="")


def sign(secret: bytes, cookie: str) -> str:
    return hmac.new(secret, cookie.encode(), hashlib.sha256).hexdigest()


class CsrfMiddleware:
    def __init__(self, secret: bytes, cookie_name: str, session_cookie: str, secure: bool):
        self.secret = secret
        self.cookie_name = cookie_name
        self.session_cookie = session_cookie
        self.secure = secure

    def process_request(self, req, resp):
        values = req.get_cookie_values(self.cookie_name)
        cookie = values[0] if values and 20 <= len(values[0]) <= 100 else None
        req.context.csrf_cookie_is_new = cookie is None
        req.context.csrf_cookie = cookie or secrets.token_urlsafe(32)
        req.context.csrf_token = sign(self.secret, req.context.csrf_cookie)
        current_token.set(req.context.csrf_token)
        if req.method in UNSAFE and not req.path.startswith(EXEMPT) and self._needs_token(req):
            sent = req.get_header(HEADER) or self._form_token(req)
            if cookie is None or not sent or not hmac.compare_digest(sent, req.context.csrf_token):
                raise falcon.HTTPForbidden(
                    title="This form has expired",
                    description="The page was open too long or came from elsewhere. Go back, reload it and try again.",
                )

    def _needs_token(self, req) -> bool:
        ambient = bool(req.get_cookie_values(self.session_cookie) or req.get_cookie_values(self.cookie_name))
        is_form = (req.content_type or "").startswith((falcon.MEDIA_URLENCODED, falcon.MEDIA_MULTIPART))
        return ambient or is_form or not req.path.startswith("/api/")

    @staticmethod
    def _form_token(req) -> str:
        if not (req.content_type or "").startswith(falcon.MEDIA_URLENCODED):
            return ""
        media = req.get_media()  # Falcon caches the parsed form: resources read it again for free
        value = media.get(FIELD, "") if isinstance(media, dict) else ""
        return value if isinstance(value, str) else ""

    def process_response(self, req, resp, resource, req_succeeded):
        current_token.set("")
        if req.context.get("csrf_cookie_is_new") and not req.path.startswith(("/api/", "/webhooks/", "/static/")):
            resp.set_cookie(
                self.cookie_name, req.context.csrf_cookie, http_only=True, same_site="Lax", secure=self.secure, path="/"
            )

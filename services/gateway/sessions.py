"""Signed-in clients: every route needs one unless its resource says it is public.

The check is structural: `SessionMiddleware` runs before every responder, so a new page cannot
forget it. A resource opts out with `public = True` (sign-in pages, token links, health, the admin
API with its own keys, Stripe's webhook) or, when it serves public and private methods on one path,
with `public_for(req)`. Responders read the session from `req.context.session` and the scope the
services' databases enforce from `req.context.scope`.
"""
from __future__ import annotations

import falcon
from falcon.routing import StaticRoute

from chassis.errors import Unauthorized
from chassis.scope import Scope

API_PREFIX = "/api/"


def session_id(req, cookie_name: str) -> str | None:
    """The session cookie, or for the portal's JSON API a bearer access token (the same session id)."""
    if req.path.startswith("/api/portal/"):
        scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    values = req.get_cookie_values(cookie_name)
    return values[0] if values else None


def is_public(resource, req) -> bool:
    """Whether a route may be used without signing in (see the module docstring)."""
    if isinstance(resource, StaticRoute):
        return True
    public_for = getattr(resource, "public_for", None)
    if public_for is not None:
        return bool(public_for(req))
    return getattr(resource, "public", False) is True


class SessionMiddleware:
    def __init__(self, rpc, cookie_name: str):
        self.rpc = rpc
        self.cookie_name = cookie_name

    def process_resource(self, req, resp, resource, params):
        if resource is None or is_public(resource, req):
            return
        sid = session_id(req, self.cookie_name)
        try:
            session = self.rpc.call("auth", "validate_session", sid, request_id=req.context.request_id) \
                if sid else None
        except Unauthorized:
            session = None
        if session is None:
            if sid:
                resp.unset_cookie(self.cookie_name, path="/")
            if req.path.startswith(API_PREFIX):
                raise falcon.HTTPUnauthorized(title="Not signed in", description="Sign in with a magic link first.")
            raise falcon.HTTPSeeOther("/login?expired=1" if sid else "/login")
        req.context.session = session
        req.context.sid = sid
        req.context.scope = Scope(session["workspace_id"], session["client_id"])

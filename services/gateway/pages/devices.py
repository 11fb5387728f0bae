"""The contact's sessions and devices: the page that lists where it is signed in and which links it can
still sign in or open a document with, and ends any of them; and the sign-in email's "this wasn't me"
link.

Everything here is auth's (services/auth/handlers.py): the gateway passes the contact and session from
the signed credential, never from the request, so a contact can only list and end its own. Ending a
session goes through auth, which announces it (`session.ended`) to every gateway worker; this worker
also refuses it at once, before the announcement comes back. "Last seen" is what the gateways reported
to auth in batches (services/gateway/sessions.py), not a call per page.

`/not-me?token=...` comes from the sign-in email: a GET only shows what it would do and a button (mail
scanners open links; a GET must never act); the POST from that button ends every session and link of
the contact. The token is the credential; the form carries the CSRF token too, like every page's form.
"""

from __future__ import annotations

import falcon

from chassis.errors import Unauthorized
from services.gateway import usecases
from services.gateway.forms import field
from services.gateway.pages.base import Base, Portal, forget_session

NOT_ME = "/not-me"


class SessionsPage(Portal):
    def on_get(self, req, resp):
        session = self.session(req, resp)
        self.page(
            req,
            resp,
            "sessions.html",
            session,
            d=usecases.devices(self.auth(req), self.billing(req), session),
            done=req.get_param("done") if req.get_param("done") in DONE else None,
        )


DONE = {"session", "others", "link", "document"}


class EndSession(Portal):
    def on_post(self, req, resp, session_id: str):
        session = self.session(req, resp)
        if not usecases.end_session(
            self.auth(req), session, session_id, forget=lambda ended: forget_session(req, ended)
        ):
            raise falcon.HTTPNotFound()  # ended already, or not this contact's
        if session_id == session["session_id"]:  # this very browser: signed out
            self.clear_session_cookie(resp)
            raise falcon.HTTPSeeOther("/login?signed_out=1")
        raise falcon.HTTPSeeOther("/profile/sessions?done=session")


class EndOtherSessions(Portal):
    def on_post(self, req, resp):
        usecases.end_other_sessions(self.auth(req), self.session(req, resp))
        raise falcon.HTTPSeeOther("/profile/sessions?done=others")


class EndLink(Portal):
    """Ends one of the contact's outstanding links: a sign-in link, or a document link it was sent."""

    def __init__(self, rpc, config, kind: str):
        super().__init__(rpc, config)
        self.kind = kind  # "link" (sign-in) or "document": what the sessions page says was ended

    def on_post(self, req, resp, link_id: str):
        contact_id, auth = self.session(req, resp)["contact_id"], self.auth(req)
        end = auth.end_sign_in_link if self.kind == "link" else auth.end_document_link
        if not end(contact_id, link_id):
            raise falcon.HTTPNotFound()  # ended already, used, or not this contact's
        raise falcon.HTTPSeeOther(f"/profile/sessions?done={self.kind}")


class NotMe(Base):
    public = True  # the emailed token is the credential

    def _token(self, req) -> str:
        token = req.get_param("token") or field(self.form(req), "token", 200)
        return token[:200]

    def _refuse(self, resp) -> None:
        self.render(
            resp,
            "error.html",
            status=400,
            title="This link is not valid",
            detail="The link may be incomplete, or older than 30 days. Sign in and end your sessions "
            "from your profile instead.",
        )

    def on_get(self, req, resp):
        token = self._token(req)
        state = self.auth(req).report_state(token) if token else {"state": "unknown"}
        if state["state"] != "valid":
            return self._refuse(resp)
        self.render(
            resp,
            "not_me.html",
            workspace_id=state["workspace_id"],
            locale=state["locale"],
            email=state["email"],
            token=token,
            done=None,
        )

    def on_post(self, req, resp):
        token = self._token(req)
        try:
            state = self.auth(req).report_state(token) if token else {"state": "unknown"}
            if state["state"] != "valid":
                raise Unauthorized("unknown")
            done = self.auth(req).report_not_me(token)
        except Unauthorized:
            return self._refuse(resp)
        self.render(
            resp,
            "not_me.html",
            workspace_id=state["workspace_id"],
            locale=state["locale"],
            email=state["email"],
            token=token,
            done=done,
        )


def add_device_routes(app: falcon.App, rpc, config) -> None:
    app.add_route("/profile/sessions", SessionsPage(rpc, config))
    app.add_route("/profile/sessions/end-others", EndOtherSessions(rpc, config))
    app.add_route("/profile/sessions/{session_id}/end", EndSession(rpc, config))
    app.add_route("/profile/sign-in-links/{link_id}/end", EndLink(rpc, config, "link"))
    app.add_route("/profile/document-links/{link_id}/end", EndLink(rpc, config, "document"))
    app.add_route(NOT_ME, NotMe(rpc, config))

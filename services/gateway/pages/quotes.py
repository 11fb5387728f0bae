"""The client's quotes: the list, one quote, and deciding on the version it showed (accept, decline,
ask for changes)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import falcon

from chassis.errors import Conflict
from services.gateway import usecases
from services.gateway.forms import field, refusal, refused_as, typed
from services.gateway.pages.base import Portal
from services.gateway.usecases import QUOTE_FILTERS


class QuoteList(Portal):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
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

    def show(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        quote_id: str,
        confirm: str | None = None,
        stale: int | None = None,
        shown: dict | None = None,
        refused: dict | None = None,
        closed: bool = False,
    ) -> None:
        """`shown`: view_quote's answer, when the caller has it already; `refused` (forms.refusal): the
        form refused, shown again as a 400; `closed`: a decision on a quote no longer open, as a 409."""
        session = self.session(req, resp)
        if shown is None:  # the quote within the client, with its comments
            shown = self.billing(req).view_quote(session["workspace_id"], session["client_id"], quote_id)
        quote, comments = shown["quote"], shown["comments"]
        self.page(
            req,
            resp,
            "quote.html",
            session,
            status=409 if stale or closed else 400 if refused else 200,
            client=quote,
            q=quote,
            confirm=confirm,
            stale=stale,
            closed=closed,
            refused=refused or {},
            comments=comments or [],
            nonce=uuid.uuid4().hex,
        )

    def decide(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        quote_id: str,
        seen: int,
        decision: Callable[[], Any],
        done: str = "",
    ) -> None:
        """Make a decision on the version the page showed; when a revision has replaced it, or the quote is
        no longer open (decided, expired), the page again with a 409 that says so, and nothing changed."""
        try:
            decision()
        except Conflict as exc:
            if usecases.is_stale(exc):
                return self.show(req, resp, quote_id, stale=seen)
            if "status" in exc.fields:  # billing names the state that closed it
                return self.show(req, resp, quote_id, closed=True)
            raise
        raise falcon.HTTPSeeOther(f"/quotes/{quote_id}{done}")


class QuoteDetail(QuotePage):
    def on_get(self, req: falcon.Request, resp: falcon.Response, quote_id: str) -> None:
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


def decided_version(form: dict) -> int:
    seen = seen_version(form)
    assert seen is not None  # a required version is a number or a 400 page
    return seen


class QuoteAccept(QuoteDetail):
    """Two steps: the name is asked for, then confirmed; only the confirmation accepts."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, quote_id: str) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        title = "Sign with your name"
        try:
            name = field(form, "signature_name", usecases.SIGNATURE_MAX, title=title, again=True)  # signed as typed
            usecases.check_signature(name)
        except usecases.BadInput as exc:  # the page again, the form saying what to fix, with what was typed
            return self.show(req, resp, quote_id, refused=refusal("accept", exc, **typed(form, "signature_name")))
        if form.get("confirmed") != "yes":
            seen = seen_version(form, required=False)
            shown = self.billing(req).view_quote(session["workspace_id"], session["client_id"], quote_id)
            if seen is not None and seen != shown["quote"].get("version", 1):
                return self.show(req, resp, quote_id, stale=seen, shown=shown)
            if shown["quote"].get("display_status", "sent") != "sent":  # decided or expired: nothing to sign
                return self.show(req, resp, quote_id, closed=True, shown=shown)
            return self.show(req, resp, quote_id, confirm=name, shown=shown)
        version = decided_version(form)
        with refused_as(title):
            self.decide(
                req,
                resp,
                quote_id,
                version,
                lambda: usecases.accept_quote(
                    self.billing(req), session, quote_id, name, version, ip=self.client_ip(req)
                ),
            )


class QuoteReject(QuotePage):
    def on_post(self, req: falcon.Request, resp: falcon.Response, quote_id: str) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        reason = field(form, "reason", usecases.DECLINE_REASON_MAX)
        version = decided_version(form)
        with refused_as("Check the form"):
            self.decide(
                req,
                resp,
                quote_id,
                version,
                lambda: usecases.decline_quote(self.billing(req), session, quote_id, reason, version),
            )


class QuoteChanges(QuotePage):
    """Request changes: the message joins the quote's comments and the business is told."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, quote_id: str) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        title = "Say what you would like changed"
        version = decided_version(form)
        nonce = field(form, "nonce", usecases.NONCE_MAX)
        try:
            message = field(form, "message", usecases.CHANGES_MAX, title=title, again=True)  # as written
            self.decide(
                req,
                resp,
                quote_id,
                version,
                lambda: usecases.request_quote_changes(
                    self.billing(req),
                    session,
                    quote_id,
                    message,
                    version,
                    request_key=usecases.request_key(nonce, req.context.request_id),
                ),
                done="#comments",
            )
        except usecases.BadInput as exc:  # the page again, the form saying what to fix, with what was typed
            return self.show(req, resp, quote_id, refused=refusal("changes", exc, **typed(form, "message")))

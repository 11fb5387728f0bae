"""The client's invoices: the list, one invoice, and what the client does with it (comment, dispute,
forward)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import falcon

from services.gateway import usecases
from services.gateway.downloads import with_verify_urls
from services.gateway.forms import field, refusal, typed
from services.gateway.pages.base import Portal
from services.gateway.usecases import INVOICE_FILTERS, INVOICE_SORTS

PAGE_SIZE = 20


class InvoiceList(Portal):
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
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
                "fields": "listing",  # what the list shows of each invoice, not the whole of it
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
    """One invoice; `?print=1` is the same invoice as a page to print and file: the document alone (the
    business and the client with their addresses and ids, dates, lines, totals, how to pay, and how to
    check the paper), without the forms, the dispute and the comments."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, invoice_id: str) -> None:
        printable = req.get_param_as_bool("print") or False  # a bad value is a 400 before anything is recorded
        self.show(req, resp, self.session(req, resp), invoice_id, printable=printable)

    def show(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        session: dict,
        invoice_id: str,
        printable: bool = False,
        refused: dict | None = None,
    ) -> None:
        """The invoice page; after a refused forward or dispute (`refused`: forms.refusal) again, as a 400."""
        ws, client = session["workspace_id"], session["client_id"]
        shown = self.billing(req).view_invoice(ws, client, invoice_id)  # scoped, and the view recorded
        invoice, comments = shown["invoice"], shown["comments"]
        with_verify_urls(self.config.portal_url, invoice)  # the address its PDF prints to check the paper
        self.page(
            req,
            resp,
            "invoice.html",
            session,
            status=400 if refused else 200,
            client=invoice,
            inv=invoice,
            comments=comments,
            credit_notes=shown.get("credit_notes") or [],  # a billing older than this gateway sends none
            business=invoice.get("business_name", ""),
            forwarded=req.get_param("forwarded"),
            refused=refused or {},
            printable=printable,
            nonce=uuid.uuid4().hex,  # each form's key: a double submit acts once
        )


class InvoiceComment(InvoiceDetail):
    def on_post(self, req: falcon.Request, resp: falcon.Response, invoice_id: str) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        nonce = field(form, "nonce", usecases.NONCE_MAX)
        try:
            body = field(form, "body", usecases.COMMENT_MAX, title="Write a comment", again=True)
            usecases.comment_on_invoice(
                self.billing(req),
                session,
                invoice_id,
                body,
                request_key=usecases.request_key(nonce, req.context.request_id),
            )
        except usecases.BadInput as exc:  # the page again, the form saying what to fix, with what was typed
            return self.show(req, resp, session, invoice_id, refused=refusal("comment", exc, **typed(form, "body")))
        raise falcon.HTTPSeeOther(f"/invoices/{invoice_id}#comments")


def ticked_lines(form: dict) -> list[int] | None:
    """The dispute form's ticked line numbers (none: the whole invoice)."""
    raw = form.get("line", [])
    raw = raw if isinstance(raw, list) else [raw]
    if len(raw) > usecases.DISPUTE_LINES_MAX or not all(
        isinstance(v, str) and v.isdigit() and len(v) <= 3 for v in raw
    ):
        raise falcon.HTTPBadRequest(title="Choose the lines", description="Tick the lines you dispute, or none.")
    return [int(v) for v in raw] or None


class InvoiceDispute(InvoiceDetail):
    """The invoice page's dispute form: a reason (required) and, optionally, the lines disputed."""

    def on_post(self, req: falcon.Request, resp: falcon.Response, invoice_id: str) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        title = "Say why you dispute the invoice"
        lines = ticked_lines(form)
        nonce = field(form, "nonce", usecases.NONCE_MAX)
        try:
            reason = field(form, "reason", usecases.DISPUTE_REASON_MAX, title=title, again=True)
            usecases.dispute_invoice(
                self.billing(req),
                session,
                invoice_id,
                reason,
                lines,
                request_key=usecases.request_key(nonce, req.context.request_id),
            )
        except usecases.BadInput as exc:  # the page again, the form saying what to fix, with what was typed
            refused = refusal("dispute", exc, lines=lines, **typed(form, "reason"))
            return self.show(req, resp, session, invoice_id, refused=refused)
        raise falcon.HTTPSeeOther(f"/invoices/{invoice_id}#dispute")


class InvoiceForward(InvoiceDetail):
    def on_post(self, req: falcon.Request, resp: falcon.Response, invoice_id: str) -> None:
        session = self.session(req, resp)
        form = self.form(req)
        nonce = field(form, "nonce", usecases.NONCE_MAX)
        try:
            to = field(form, "to", 1000, again=True).strip()
            note = field(form, "note", usecases.FORWARD_NOTE_MAX, again=True)
            to, _email_id = usecases.forward_invoice(
                self.documents(req),
                session,
                invoice_id,
                to,
                note,
                request_key=usecases.request_key(nonce, req.context.request_id),
            )
        except usecases.BadInput as exc:  # the page again, the form saying what to fix, with what was typed
            refused = refusal("forward", exc, **typed(form, "to", "note"))
            return self.show(req, resp, session, invoice_id, refused=refused)
        raise falcon.HTTPSeeOther(f"/invoices/{invoice_id}?{urlencode({'forwarded': to})}")

"""The client's documents as files (PDFs, e-invoices) and the one-document links emailed to it."""

from __future__ import annotations

from typing import Any

import falcon

from chassis.errors import Unauthorized
from chassis.scope import Scope
from services.gateway.downloads import document_pdf, einvoice_xml, render_pdf, send_current_pdf, send_pdf, send_xml
from services.gateway.pages.base import Base
from services.gateway.pdf_fetch import PdfFetcher


class PdfDownload(Base):
    """A PDF of one of the signed-in client's documents, rendered (or served from cache) by documents."""

    def __init__(self, rpc: Any, config: Any, kind: str, fetcher: PdfFetcher | None = None):
        super().__init__(rpc, config)
        self.kind = kind
        self.fetcher = fetcher or PdfFetcher(None)

    def on_get(
        self,
        req: falcon.Request,
        resp: falcon.Response,
        object_id: str | None = None,
        invoice_id: str | None = None,
        quote_id: str | None = None,
        credit_note_id: str | None = None,
    ) -> None:
        session = self.session(req, resp)
        document_id = invoice_id or quote_id or credit_note_id or object_id
        if send_current_pdf(req, resp, self.fetcher, self.kind, session, document_id):
            return
        read_at = self.fetcher.clock() if self.fetcher.clock else None  # before billing is asked
        call = lambda *args, **kwargs: self.call(req, *args, **kwargs)  # noqa: E731
        send_pdf(
            req,
            resp,
            render_pdf(
                call,
                self.kind,
                session,
                document_id,
                {"from": req.get_param("from"), "to": req.get_param("to")},
                by_reference=self.fetcher.enabled,
                read_at=read_at,
            ),
            self.fetcher,
        )


class EInvoiceDownload(Base):
    """The signed-in client's invoice as an EN 16931 e-invoice (CII XML), for its accounting software."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, invoice_id: str) -> None:
        session = self.session(req, resp)
        call = lambda *args, **kwargs: self.call(req, *args, **kwargs)  # noqa: E731
        send_xml(resp, einvoice_xml(call, session["workspace_id"], invoice_id, session["client_id"]))


class DocumentLink(Base):
    """/i/<token>: one invoice or quote from an email link, without signing in, and nothing else."""

    public = True

    def _resolve(self, req: falcon.Request, token: str) -> tuple[dict, dict]:
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

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
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
            tz=document.get("timezone") or "UTC",  # the client's, as on its signed-in page (payment times)
        )


class DocumentLinkPdf(DocumentLink):
    def __init__(self, rpc: Any, config: Any, fetcher: PdfFetcher | None = None):
        super().__init__(rpc, config)
        self.fetcher = fetcher or PdfFetcher(None)

    def on_get(self, req: falcon.Request, resp: falcon.Response, token: str) -> None:
        scope, document = self._resolve(req, token)
        document.setdefault("client_id", scope["client_id"])
        call = lambda *args, **kwargs: self.call(req, *args, **kwargs)  # noqa: E731
        send_pdf(
            req,
            resp,
            document_pdf(call, scope["kind"], scope["workspace_id"], document, self.fetcher.enabled),
            self.fetcher,
        )

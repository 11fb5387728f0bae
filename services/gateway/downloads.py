"""A client's documents as files: PDFs (rendered or served from cache by documents) and e-invoices,
for the pages, the portal API and the admin API; and the public address that checks a paper copy."""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, cast

import falcon

from clients import verification
from clients.documents import CURRENT_PDF_KINDS
from services.gateway.pdf_fetch import FetchFailed, PdfFetcher
from services.gateway.rpc import ContractViolation

log = logging.getLogger(__name__)

Call = Callable[..., Any]  # call(service, method, *args, **kwargs), with the request's id and scope


def einvoice_xml(call: Call, workspace_id: str, invoice_id: str, client_id: str | None) -> dict:
    """Look the invoice up (within the client, when one is given), then have documents write its XML."""
    data = call("billing", "get_invoice", workspace_id, invoice_id, client_id=client_id)
    return call("documents", "einvoice", "invoice", workspace_id, data)


def send_xml(resp: falcon.Response, answer: dict) -> None:
    resp.content_type = answer["content_type"]
    resp.set_header("Content-Disposition", f'attachment; filename="{answer["filename"]}"')
    resp.set_header("Cache-Control", "private, max-age=0, must-revalidate")
    resp.text = answer["xml"]


def render_pdf(
    call: Call,
    kind: str,
    session: dict,
    object_id: str | None,
    query: dict,
    by_reference: bool = False,
    read_at: datetime | None = None,
) -> dict:
    """Look the document up within the session's client (404 otherwise), then have documents render it
    (`by_reference`: answer with a reference to fetch the cached PDF by, not its bytes; with `read_at`,
    a moment before billing is asked, documents records the render as the client's)."""
    ws, client = session["workspace_id"], session["client_id"]
    if kind == "invoice":
        data = call("billing", "get_invoice", ws, object_id, client_id=client)
    elif kind == "quote":
        data = call("billing", "get_quote", ws, object_id, client_id=client)
    elif kind == "credit_note":
        data = call("billing", "get_credit_note", ws, object_id, client_id=client)
    elif kind == "receipt":
        data = call("billing", "get_payment", ws, object_id, client_id=client)
    else:
        data = call("billing", "statement", ws, client, query.get("from"), query.get("to"))
    data.setdefault("client_id", client)
    recorded = (
        {"for_client": client, "read_at": read_at.isoformat()}
        if by_reference and read_at is not None and kind in CURRENT_PDF_KINDS
        else {}
    )
    return document_pdf(call, kind, ws, data, by_reference, **recorded)


def document_pdf(
    call: Call, kind: str, workspace_id: str, data: dict, by_reference: bool = False, **recorded: str
) -> dict:
    extra = {"by_reference": True, **recorded} if by_reference else {}
    render = functools.partial(
        call, "documents", "render_document", kind, workspace_id, data, data.get("locale"), data.get("timezone")
    )
    try:
        answer = render(**extra)
    except ContractViolation:
        if not recorded:
            raise
        # documents older than this gateway, while an upgrade rolls out: the PDF, without the record
        answer = render(by_reference=True)
    # the bytes after all, when the reference cannot be fetched (announced once, by the first call)
    answer["again"] = lambda: render(purpose="fallback")
    return answer


def send_current_pdf(
    req: falcon.Request, resp: falcon.Response, fetcher: PdfFetcher, kind: str, session: dict, document_id: str | None
) -> bool:
    """The client's current render straight from documents, without asking billing; False when there
    is none (then render_pdf and send_pdf go the long way)."""
    wanted = session["workspace_id"], session["client_id"], document_id or ""
    current = fetcher.current(kind, *wanted, if_none_match=req.get_header("If-None-Match"))
    if current is None:
        return False
    _headers(resp, current.etag)
    if current.chunks is None:  # documents answered 304: the client has this render
        resp.status = 304
        return True
    resp.content_type = "application/pdf"
    resp.set_header("Content-Disposition", f'attachment; filename="{current.filename}"')
    resp.stream, resp.content_length = cast(Iterable[bytes], current.chunks), current.length
    return True


def _headers(resp: falcon.Response, etag: str) -> None:
    resp.set_header("ETag", etag)
    # private: the PDF is one client's; revalidate so a changed document is never served stale
    resp.set_header("Cache-Control", "private, max-age=0, must-revalidate")


def send_pdf(req: falcon.Request, resp: falcon.Response, pdf: dict, fetcher: PdfFetcher | None = None) -> None:
    """The PDF documents answered with: its bytes, or streamed from documents by its reference. A
    reference that cannot be fetched (the documents process restarted, a secret mismatch) falls back
    to the bytes in an RPC answer."""
    etag = f'"{pdf["etag"]}"'
    _headers(resp, etag)
    if req.get_header("If-None-Match") == etag:
        resp.status = 304
        return
    resp.content_type = "application/pdf"
    resp.set_header("Content-Disposition", f'attachment; filename="{pdf["filename"]}"')
    if "pdf" not in pdf and fetcher is not None:
        try:
            chunks, resp.content_length = fetcher.open(pdf["reference"])
            resp.stream = cast(Iterable[bytes], chunks)  # the fetched response's chunks
            return
        except FetchFailed as exc:
            log.warning("cached PDF not fetched by reference; asking for its bytes", extra={"error": str(exc)})
            pdf = pdf["again"]()
    resp.data = base64.b64decode(pdf["pdf"])


def with_verify_urls(portal_url: str, answer: Any) -> Any:
    """Billing's answer with `verify_url` beside each `verification_code`: on one document, on each
    of a page's `items`, or on each of a list. Anything else passes unchanged."""
    documents = answer.get("items") if isinstance(answer, dict) and "items" in answer else answer
    for document in documents if isinstance(documents, list) else [documents]:
        if isinstance(document, dict) and "verification_code" in document:
            code = document["verification_code"]
            document["verify_url"] = verification.url(portal_url, code) if code else None
    return answer

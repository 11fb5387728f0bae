"""Cached PDFs straight from the documents process that holds them, over its HTTP port.

documents answers `render_document(..., by_reference=True)` with a reference it signed (HMAC with
PDF_FETCH_SECRET, shared with the gateway; valid for a minute) that names the cached file and the
address of the documents process whose cache holds it. The gateway checks the signature, so it only
ever fetches from an address documents signed, then streams `GET <address>/pdf/<reference>` to the
client: the PDF's bytes pass through no RPC answer and no shared filesystem. documents checks the
signature and the expiry again before it serves anything.

Before that, for an invoice, quote or receipt, the gateway asks documents' HTTP port
(`DOCUMENTS_URL`) for the client's current render with a grant of its own, signed with the same
secret (workspace, client, kind, document; a minute): documents serves it when it rendered that
document for that client and nothing about the client has changed since (services/documents/renders.py),
so a cached PDF costs no RPC at all. Anything else ("not current", documents unreachable) goes the
long way above.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlparse

import urllib3

from chassis import signing
from chassis.clock import Clock
from clients.documents import CURRENT_PDF_GRANT, CURRENT_PDF_KINDS

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
GRANT_TTL = timedelta(minutes=1)
# the long way is always there: a documents port slow to answer is not waited on long
CURRENT_TIMEOUT = urllib3.Timeout(connect=0.5, read=2.0)


@dataclass
class CurrentPdf:
    """A client's current render, as documents streams it; no chunks when the client has it already."""

    chunks: object | None  # an iterable of the PDF's chunks that closes the connection when done
    length: int | None
    etag: str
    filename: str


class FetchFailed(Exception):
    """The PDF could not be fetched by its reference (documents restarted, the file went, a bad secret)."""


class PdfFetcher:
    def __init__(
        self, secret: bytes | None, timeout: float = 10.0, documents_url: str | None = None, clock: Clock | None = None
    ):
        self.secret = secret
        # a grant is dated by the gateway's clock, given by its wiring (services/gateway/app.py)
        self.clock = clock
        self.documents_url = documents_url.rstrip("/") if documents_url and secret and clock else None
        # urllib3 itself, not requests: a fetch is a GET to a known address, and requests' layers
        # cost 0.6 ms of CPU a call, which is a fifth of a cached PDF's. Keep-alive connections per
        # documents address, shared by the gateway's threads (one each at most), no retries.
        self._timeout = urllib3.Timeout(connect=2.0, read=timeout)
        self._http = urllib3.PoolManager(num_pools=16, maxsize=8, retries=False)

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def _get(
        self, url: str, headers: dict | None = None, timeout: urllib3.Timeout | None = None
    ) -> urllib3.BaseHTTPResponse:
        return self._http.urlopen(
            "GET", url, headers=headers, preload_content=False, redirect=False, timeout=timeout or self._timeout
        )

    def current(
        self, kind: str, workspace_id: str, client_id: str, document_id: str, if_none_match: str | None = None
    ) -> CurrentPdf | None:
        """The client's current render of the document from documents, or None (not current, not
        kept for this kind, no DOCUMENTS_URL, documents unreachable): then ask billing."""
        if self.documents_url is None or self.clock is None or kind not in CURRENT_PDF_KINDS or not document_id:
            return None
        wanted = {"grant": CURRENT_PDF_GRANT, "w": workspace_id, "c": client_id, "kind": kind, "d": document_id}
        grant = signing.issue(self.secret or b"", wanted, self.clock(), GRANT_TTL)
        try:
            answer = self._get(
                f"{self.documents_url}/current/{grant}",
                {"If-None-Match": if_none_match} if if_none_match else None,
                CURRENT_TIMEOUT,
            )
        except urllib3.exceptions.HTTPError as exc:
            log.warning("documents did not answer for a current PDF", extra={"error": str(exc)})
            return None
        headers = answer.headers
        etag, filename = headers.get("ETag", ""), headers.get("X-Filename", "document.pdf")
        if answer.status == 304:
            _discard(answer)
            return CurrentPdf(None, None, etag, filename)
        if answer.status != 200:
            _discard(answer)
            if answer.status != 404:  # 404 is "not current here"; anything else is worth a look
                log.warning("current PDF refused", extra={"status": answer.status})
            return None
        return CurrentPdf(_Body(answer), _length(answer), etag, filename)

    def open(self, reference: str) -> tuple[object, int | None]:
        """(an iterable of the PDF's chunks that closes the connection when done, its length)."""
        try:
            payload = signing.read(self.secret or b"", reference)  # no secret: refused as malformed
        except signing.Refused as exc:
            raise FetchFailed(f"reference not signed by documents: {exc.reason}") from None
        base = payload.get("u")
        if not isinstance(base, str) or urlparse(base).scheme not in ("http", "https"):
            raise FetchFailed("reference names no address")
        try:
            answer = self._get(f"{base.rstrip('/')}/pdf/{reference}")
        except urllib3.exceptions.HTTPError as exc:
            raise FetchFailed(f"documents did not answer: {exc}") from None
        if answer.status != 200:
            _discard(answer)
            raise FetchFailed(f"documents answered {answer.status}")
        return _Body(answer), _length(answer)


def _discard(answer: urllib3.BaseHTTPResponse) -> None:
    """A short refusal read to its end, so its keep-alive connection can serve the next fetch."""
    answer.drain_conn()
    answer.release_conn()


def _length(answer: urllib3.BaseHTTPResponse) -> int | None:
    length = answer.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


class _Body:
    """The upstream body as a WSGI iterable: the server calls close() when the client is done or gone."""

    def __init__(self, answer: urllib3.BaseHTTPResponse):
        self.answer = answer
        self.read_to_the_end = False

    def __iter__(self):
        yield from self.answer.stream(CHUNK)
        self.read_to_the_end = True

    def close(self) -> None:
        if not self.read_to_the_end:  # the client left early: drop the half-read connection, not reuse it
            self.answer.close()
        self.answer.release_conn()

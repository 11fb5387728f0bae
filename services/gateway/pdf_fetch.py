"""Cached PDFs straight from the documents process that holds them, over its HTTP port.

documents answers `render_document(..., by_reference=True)` with a reference it signed (HMAC with
PDF_FETCH_SECRET, shared with the gateway; valid for a minute) that names the cached file and the
address of the documents process whose cache holds it. The gateway checks the signature, so it only
ever fetches from an address documents signed, then streams `GET <address>/pdf/<reference>` to the
client: the PDF's bytes pass through no RPC answer and no shared filesystem. documents checks the
signature and the expiry again before it serves anything.

Before that, for an invoice, quote, credit note or receipt, the gateway asks documents' HTTP port
(`DOCUMENTS_URL`) for the client's current render with a grant of its own, signed with the same
secret (workspace, client, kind, document; a minute): documents serves it when it rendered that
document for that client and nothing about the client has changed since (services/documents/renders.py),
so a cached PDF costs no RPC at all. Anything else ("not current", documents unreachable) goes the
long way above.
"""

from __future__ import annotations

import http.client
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from chassis import signing
from chassis.clock import Clock
from clients.documents import CURRENT_PDF_GRANT, CURRENT_PDF_KINDS

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
GRANT_TTL = timedelta(minutes=1)
CONNECT_TIMEOUT = 2.0
# the long way is always there: a documents port slow to answer is not waited on long
CURRENT_TIMEOUTS = (0.5, 2.0)  # (to connect, to read)
KEPT_ADDRESSES = 16  # documents replicas a gateway thread keeps a connection to
# What a kept connection that documents closed while it was idle raises on its next request; the GET
# is sent once more on a fresh connection (nothing was done: a GET changes nothing anyway).
_GONE = (http.client.RemoteDisconnected, http.client.ImproperConnectionState, ConnectionError)


@dataclass
class CurrentPdf:
    """A client's current render, as documents streams it; no chunks when the client has it already."""

    chunks: object | None  # an iterable of the PDF's chunks that closes the connection when done
    length: int | None
    etag: str
    filename: str


class FetchFailed(Exception):
    """The PDF could not be fetched by its reference (documents restarted, the file went, a bad secret)."""


class _Connections(threading.local):
    """This thread's keep-alive connections, one per documents address: a gunicorn thread serves one
    request at a time, so its connection is never shared and needs no pool, no lock, no checkout."""

    def __init__(self) -> None:
        self.by_address: dict[tuple[str, str], http.client.HTTPConnection] = {}


class PdfFetcher:
    def __init__(
        self, secret: bytes | None, timeout: float = 10.0, documents_url: str | None = None, clock: Clock | None = None
    ):
        self.secret = secret
        # a grant is dated by the gateway's clock, given by its wiring (services/gateway/app.py)
        self.clock = clock
        self.documents_url = documents_url.rstrip("/") if documents_url and secret and clock else None
        # The standard library's HTTP client, not requests or urllib3: a fetch is a GET to an address
        # this gateway knows, and their layers (pools, retries, timeouts as objects) cost more CPU than
        # the request itself (docs/decisions.md). Keep-alive connections per thread and address.
        self._timeouts = (CONNECT_TIMEOUT, timeout)
        self._connections = _Connections()

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def _get(self, url: str, headers: dict | None = None, timeouts: tuple[float, float] | None = None) -> _Answer:
        """GET `url` on this thread's kept connection to its address (a fresh one if there is none, or
        if the kept one turns out to be closed). OSError or http.client.HTTPException when documents
        cannot be reached or answers no HTTP."""
        parts = urlsplit(url)
        address = (parts.scheme, parts.netloc)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        connect, read = timeouts or self._timeouts
        kept = self._connections.by_address
        conn = kept.pop(address, None)
        while True:
            fresh = conn is None or conn.sock is None
            if conn is None:
                cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
                conn = cls(parts.hostname or "", parts.port, timeout=connect)
            try:
                if conn.sock is None:
                    conn.timeout = connect
                    conn.connect()
                conn.sock.settimeout(read)
                conn.request("GET", path, headers=headers or {})
                response = conn.getresponse()
            except _GONE:
                conn.close()
                if fresh:
                    raise
                conn = None  # closed by documents while it was idle: once more, on a new connection
                continue
            except BaseException:
                conn.close()
                raise
            if len(kept) >= KEPT_ADDRESSES:  # replicas come and go: the longest unused is let go
                kept.pop(next(iter(kept))).close()
            kept[address] = conn
            return _Answer(conn, response)

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
                CURRENT_TIMEOUTS,
            )
        except (OSError, http.client.HTTPException) as exc:
            log.warning("documents did not answer for a current PDF", extra={"error": repr(exc)})
            return None
        etag, filename = answer.header("ETag") or "", answer.header("X-Filename") or "document.pdf"
        if answer.status == 304:
            answer.discard()
            return CurrentPdf(None, None, etag, filename)
        if answer.status != 200:
            answer.discard()
            if answer.status != 404:  # 404 is "not current here"; anything else is worth a look
                log.warning("current PDF refused", extra={"status": answer.status})
            return None
        return CurrentPdf(_Body(answer), answer.length, etag, filename)

    def open(self, reference: str) -> tuple[object, int | None]:
        """(an iterable of the PDF's chunks that closes the connection when done, its length)."""
        try:
            payload = signing.read(self.secret or b"", reference)  # no secret: refused as malformed
        except signing.Refused as exc:
            raise FetchFailed(f"reference not signed by documents: {exc.reason}") from None
        base = payload.get("u")
        if not isinstance(base, str) or urlsplit(base).scheme not in ("http", "https"):
            raise FetchFailed("reference names no address")
        try:
            answer = self._get(f"{base.rstrip('/')}/pdf/{reference}")
        except (OSError, http.client.HTTPException) as exc:
            raise FetchFailed(f"documents did not answer: {exc!r}") from None
        if answer.status != 200:
            answer.discard()
            raise FetchFailed(f"documents answered {answer.status}")
        return _Body(answer), answer.length


class _Answer:
    """documents' answer on the connection it came on: the connection is kept for the thread's next
    fetch once the body is read to its end, and closed when it is left half-read."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        self.conn, self.response, self.status = conn, response, response.status

    def header(self, name: str) -> str | None:
        return self.response.getheader(name)

    @property
    def length(self) -> int | None:
        length = self.header("Content-Length")
        return int(length) if length and length.isdigit() else None

    def read(self, size: int) -> bytes:
        return self.response.read(size)

    def discard(self) -> None:
        """A short refusal read to its end, so its keep-alive connection can serve the next fetch."""
        try:
            self.response.read()
        except (OSError, http.client.HTTPException):
            self.close()

    def close(self) -> None:
        self.conn.close()


class _Body:
    """The upstream body as a WSGI iterable: the server calls close() when the client is done or gone."""

    def __init__(self, answer: _Answer):
        self.answer = answer
        self.read_to_the_end = False

    def __iter__(self):
        while chunk := self.answer.read(CHUNK):
            yield chunk
        self.read_to_the_end = True

    def close(self) -> None:
        if not self.read_to_the_end:  # the client left early: drop the half-read connection, not reuse it
            self.answer.close()

"""Cached PDFs straight from the documents process that holds them, over its HTTP port.

documents answers `render_document(..., by_reference=True)` with a reference it signed (HMAC with
PDF_FETCH_SECRET, shared with the gateway; valid for a minute) that names the cached file and the
address of the documents process whose cache holds it. The gateway checks the signature, so it only
ever fetches from an address documents signed, then streams `GET <address>/pdf/<reference>` to the
client: the PDF's bytes pass through no RPC answer and no shared filesystem. documents checks the
signature and the expiry again before it serves anything.
"""

from __future__ import annotations

import logging
import threading
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter

from chassis import signing

log = logging.getLogger(__name__)
CHUNK = 64 * 1024


class FetchFailed(Exception):
    """The PDF could not be fetched by its reference (documents restarted, the file went, a bad secret)."""


class PdfFetcher:
    def __init__(self, secret: bytes | None, timeout: float = 10.0):
        self.secret = secret
        self.timeout = timeout
        self._local = threading.local()

    @property
    def enabled(self) -> bool:
        return bool(self.secret)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:  # one keep-alive session per gateway thread (a thread streams one PDF at a time)
            session = self._local.session = requests.Session()
            session.mount("http://", HTTPAdapter(pool_connections=4, pool_maxsize=1))
        return session

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
            answer = self._session().get(
                f"{base.rstrip('/')}/pdf/{reference}", stream=True, timeout=(2.0, self.timeout)
            )
        except requests.RequestException as exc:
            raise FetchFailed(f"documents did not answer: {exc}") from None
        if answer.status_code != 200:
            answer.close()
            raise FetchFailed(f"documents answered {answer.status_code}")
        length = answer.headers.get("Content-Length")
        return _Body(answer), int(length) if length and length.isdigit() else None


class _Body:
    """The upstream body as a WSGI iterable: the server calls close() when the client is done or gone."""

    def __init__(self, answer: requests.Response):
        self.answer = answer

    def __iter__(self):
        return self.answer.iter_content(CHUNK)

    def close(self) -> None:
        self.answer.close()

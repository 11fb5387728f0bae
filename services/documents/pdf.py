"""PDF rendering with WeasyPrint: locked-down resource fetching, deterministic output, a cache keyed
by a hash of everything that is rendered, and rendering off the eventlet hub in a process pool."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from chassis import metrics
from chassis.errors import Invalid
from services.documents.i18n import template_env

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
ASSETS = Path(__file__).parent / "assets"
TEMPLATES = Path(__file__).parent / "templates" / "pdf"
KINDS = {"invoice", "quote", "credit_note", "receipt", "statement"}
MAX_RESOURCE_BYTES = 2_000_000


class BlockedResource(Exception):
    pass


def _locked_fetcher_class():
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class LockedFetcher(URLFetcher):
        """The only resources a template may load: data: URIs and files inside its own assets
        folder. Anything else (http, file:///etc/passwd, ../ escapes) is refused, so templates and
        the data put into them can reach neither the network nor the filesystem."""

        def __init__(self):
            super().__init__(allowed_protocols={"data", "file"}, allow_redirects=False, timeout=1)

        def fetch(self, url, headers=None):
            parsed = urlparse(url)
            if parsed.scheme == "data":
                return super().fetch(url, headers)
            if parsed.scheme == "file":
                path = Path(unquote(parsed.path)).resolve()
                if (
                    path.is_relative_to(ASSETS.resolve())
                    and path.is_file()
                    and path.stat().st_size <= MAX_RESOURCE_BYTES
                ):
                    return URLFetcherResponse(
                        url, path.read_bytes(), {"Content-Type": mimetypes.guess_type(path.name)[0] or "text/plain"}
                    )
            log.warning("blocked resource in a document template", extra={"url": url[:200]})
            raise BlockedResource(f"blocked: {url[:100]}")

    return LockedFetcher


def locked_fetcher():
    return _locked_fetcher_class()()


def template_version() -> str:
    """A change to any template or asset gives new cache keys, so no stale PDF is served."""
    digest = hashlib.sha256()
    for path in sorted([*TEMPLATES.rglob("*"), *ASSETS.rglob("*"), *(Path(__file__).parent / "locale").rglob("*.po")]):
        if path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


VERSION = template_version()


def cache_key(kind: str, context: dict, einvoice_xml: bytes | None = None) -> str:
    parts = {"kind": kind, "context": context, "version": VERSION}
    if einvoice_xml is not None:  # a PDF carrying e-invoice XML is a different file from the plain one
        parts["einvoice_xml"] = hashlib.sha256(einvoice_xml).hexdigest()
    canonical = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def render_html(kind: str, context: dict) -> str:
    if kind not in KINDS:
        raise Invalid("Unknown document kind.", kind=kind)
    env = template_env(TEMPLATES, context.get("locale", "en_US"))
    verify = context.get("verify")
    if verify:  # drawn here, from the URL in the cache key: the key stays small and the same
        context = {**context, "verify": {**verify, "qr": qr_data_uri(verify["url"])}}
    return env.get_template(f"{kind}.html").render(**context)


def qr_data_uri(url: str) -> str:
    """The URL as a QR code in SVG (sharp at any size in the PDF), as a data: URI the locked fetcher
    admits. Error correction M survives a crease or a smudge; the quiet zone is the standard four modules."""
    import segno

    return segno.make(url, error="m", micro=False).svg_data_uri(scale=1, border=4, omitsize=True)


def render_pdf(kind: str, context: dict, einvoice_xml: bytes | None = None) -> bytes:
    """HTML to PDF bytes; deterministic for the same context (no render-time dates or ids).

    With `einvoice_xml` (or a context carrying it as text under "einvoice_xml", the form that travels
    to a render worker and into the cache key), the PDF is a Factur-X / ZUGFeRD PDF/A-3b with that
    CII XML embedded."""
    from weasyprint import HTML

    if einvoice_xml is None and context.get("einvoice_xml"):
        einvoice_xml = context["einvoice_xml"].encode("utf-8")
    html = render_html(kind, context)
    fetcher = locked_fetcher()
    document = HTML(string=html, base_url=ASSETS.as_uri() + "/", url_fetcher=fetcher)
    if einvoice_xml is None:
        return document.write_pdf()
    from services.documents.einvoice.pdfa import write_pdf_options

    return document.write_pdf(**write_pdf_options(einvoice_xml, url_fetcher=fetcher))


class RenderFailed(Exception):
    pass


class WorkerPool:
    """A fixed number of render worker processes; a render borrows one and gives it back.

    Under nameko (eventlet) the pipes are green, so waiting for a worker or its reply yields to the
    hub: other RPC calls to the service carry on while PDFs render.
    """

    def __init__(self, size: int):
        self.size = size
        self.started = 0
        self._subprocess, self._idle = _io_modules(size)

    def _spawn(self):
        self.started += 1
        try:
            return self._subprocess.Popen(
                [sys.executable, "-m", "services.documents.render_worker"],
                stdin=self._subprocess.PIPE,
                stdout=self._subprocess.PIPE,
                cwd=str(ROOT),
                text=True,
                bufsize=1,
            )
        except Exception:
            self.started -= 1
            raise

    def render(self, kind: str, context: dict) -> bytes:
        try:
            worker = self._idle.get_nowait()
        except Exception:  # empty: start another worker if under the bound, else wait for one
            worker = self._spawn() if self.started < self.size else self._idle.get()
        try:
            worker.stdin.write(json.dumps({"kind": kind, "context": context}, default=str) + "\n")
            worker.stdin.flush()
            line = worker.stdout.readline()
            if not line:
                raise RenderFailed("a render worker exited")
            reply = json.loads(line)
        except BaseException:
            worker.kill()
            self.started -= 1
            raise
        self._idle.put(worker)
        if "error" in reply:
            raise RenderFailed(reply["error"])
        return base64.b64decode(reply["pdf"])

    def close(self) -> None:
        while True:
            try:
                worker = self._idle.get_nowait()
            except Exception:
                return
            worker.kill()


def _io_modules(size: int):
    """Green subprocess and queue inside a monkey-patched nameko process, the standard ones elsewhere."""
    import eventlet.patcher

    if eventlet.patcher.is_monkey_patched("socket"):
        from eventlet.green import subprocess
        from eventlet.queue import LightQueue

        return subprocess, LightQueue(size)
    import queue
    import subprocess

    return subprocess, queue.Queue(size)


class Renderer:
    """Cache first; on a miss, render in a worker process (at most `concurrency` at once) and store."""

    def __init__(self, storage, concurrency: int = 2):
        self.storage = storage
        self.pool = WorkerPool(concurrency)
        self.renders = 0

    def get(self, kind: str, context: dict) -> tuple[bytes, str, bool]:
        """(pdf, cache key, rendered now?)"""
        key = cache_key(kind, context)
        cached = self.storage.get(key)
        if cached is not None:
            return cached, key, False
        return self._render(kind, context, key), key, True

    def ensure(self, kind: str, context: dict) -> tuple[str, int, bool]:
        """(cache key, size, rendered now?): the PDF is in the cache afterwards; a cached one is not read."""
        key = cache_key(kind, context)
        size = self.storage.size(key)
        if size is not None:
            return key, size, False
        return key, len(self._render(kind, context, key)), True

    def _render(self, kind: str, context: dict, key: str) -> bytes:
        started = time.perf_counter()
        pdf = self.pool.render(kind, context)
        metrics.PDF_RENDER.labels(kind).observe(time.perf_counter() - started)
        self.storage.put(key, pdf)
        self.renders += 1
        return pdf

    def close(self) -> None:
        self.pool.close()


def encode(pdf: bytes) -> str:
    return base64.b64encode(pdf).decode("ascii")

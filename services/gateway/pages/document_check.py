"""/verify/<code>: anyone holding a printed invoice, quote, credit note or receipt checks it against
the business's own record, without signing in (the code on the paper, or its QR code, leads here).

The page shows only what proves the document: the business, the document's kind, number and date,
its amounts and status, and the bank account to pay (IBAN and BIC in full, to compare with the paper).
It never shows the client's name or the lines; only a reader signed in as the client of a credit note
gets a link to it in the portal. A code that cannot be one is answered "not verified"
before any call; a lookup is one primary-key probe in billing, and each address may make only so many
a minute on each gateway worker (the codes are unguessable; the limit keeps the page cheap to serve).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import quote

import falcon

from chassis.errors import NotFound
from clients import verification
from services.gateway.pages.base import Base
from services.gateway.views import browser_locale, iban

LOOKUPS_PER_MINUTE = 30  # per client address, per gateway worker


class Budget:
    """At most `limit` requests per address in any `window` seconds (a sliding log), in one process."""

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic, size=10_000):
        self.limit, self.window, self.clock, self.size = limit, window, clock, size
        self._seen: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def spend(self, address: str) -> bool:
        now = self.clock()
        with self._lock:
            if len(self._seen) >= self.size:  # many addresses at once: forget the quiet ones first
                self._seen = {a: t for a, t in self._seen.items() if t and t[-1] > now - self.window}
                if len(self._seen) >= self.size:
                    self._seen.clear()
            recent = [t for t in self._seen.get(address, ()) if t > now - self.window]
            if len(recent) >= self.limit:
                self._seen[address] = recent
                return False
            self._seen[address] = [*recent, now]
            return True


class DocumentCheck(Base):
    """GET /verify/{code}: the record of one printed document, or a 404 page saying it could not be verified."""

    public = True  # the code is the credential, and what it shows is printed on the paper anyway

    def __init__(self, rpc, config, budget: Budget | None = None):
        super().__init__(rpc, config)
        self.budget = budget or Budget(LOOKUPS_PER_MINUTE)

    def on_get(self, req, resp, code: str):
        resp.set_header("X-Robots-Tag", "noindex")  # a document's record is for its holder, not for search engines
        if not self.budget.spend(self.client_ip(req)):
            self.render(resp, "document_check.html", 429, found=False, limited=True, locale=self._reader(req))
            resp.set_header("Retry-After", "60")
            return
        canonical = verification.parse(code)
        if canonical is None:  # no code can look like this: no lookup
            self._unknown(req, resp)
            return
        try:
            record = self.billing(req).verify_document(canonical)
        except NotFound:
            self._unknown(req, resp)
            return
        self.render(
            resp,
            "document_check.html",
            found=True,
            record=record,
            iban=iban(record["iban"]),
            workspace_id=record["workspace_id"],
            locale=record["locale"],
            own=self._own(req, record),
        )

    def _own(self, req, record: dict) -> str | None:
        """Where a reader signed in as the credit note's client opens it in the portal; None for anyone
        else, who learns nothing of whose it is (the page is the same as without signing in)."""
        if record.get("kind") != "credit_note" or not record.get("document_id"):
            return None
        req.context.sessions.keep_if_signed_in(req)  # a public page: no route checked the session
        session = req.context.get("session")
        if not session or (session["workspace_id"], session["client_id"]) != (
            record["workspace_id"],
            record.get("client_id"),
        ):
            return None
        return f"/credit-notes/{quote(record['document_id'], safe='')}"

    def _unknown(self, req, resp) -> None:
        self.render(resp, "document_check.html", 404, found=False, limited=False, locale=self._reader(req))

    def _reader(self, req) -> str:
        """No document, so no client's language: the browser's (Accept-Language), German or English."""
        return browser_locale(req.get_header("Accept-Language"))


def add_document_check_routes(app: falcon.App, rpc, config) -> None:
    app.add_route("/verify/{code}", DocumentCheck(rpc, config))

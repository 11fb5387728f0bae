"""Documents service entrypoints: branded PDFs and every email the portal sends."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import eventlet
import kombu
import requests
from cachetools import TTLCache
from nameko.constants import AMQP_URI_CONFIG_KEY
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.standalone.events import get_event_exchange
from nameko.timer import timer
from nameko.web.handlers import http
from werkzeug.wrappers import Response
from werkzeug.wsgi import wrap_file

from chassis import nameko_patches, settings, signing, unsubscribe
from chassis.errors import EXPECTED
from chassis.nameko_ext import ClockProvider, Database, ServiceBase, consumes
from chassis.rpc import TimedRpcProxy
from chassis.scope import CALLER, OWN, SYSTEM_WIDE, runs_in
from clients.documents import CURRENT_PDF_GRANT, CURRENT_PDF_KINDS, EVENTS
from services.documents import handlers, mails, preferences, renders, webhooks
from services.documents.mail import backend_from_env
from services.documents.pdf import Renderer
from services.documents.storage import FileStorage

# `nameko run` loads this module to start the service: nameko is patched before it builds the container.
nameko_patches.apply()

log = logging.getLogger(__name__)


class PdfRenderer(DependencyProvider):
    """One renderer (process pool and cache) per service container."""

    def setup(self):
        storage = FileStorage(Path(settings.env("DOCUMENTS_DIR", str(settings.var_dir() / "documents"))))
        # One core is left for the service itself by default.
        default = max(1, (os.cpu_count() or 2) - 1)
        self.renderer = Renderer(storage, concurrency=settings.env_int("PDF_RENDER_CONCURRENCY", default))

    def stop(self):
        self.renderer.close()

    def get_dependency(self, worker_ctx):
        return self.renderer


# Consumers that render a PDF inside their transaction take one of these first (chassis `consumes`):
# a burst of sent invoices then holds a few of the pool's connections while they wait for the
# renderer, and a sign-in link asked for meanwhile is not kept waiting for one.
RENDERING = eventlet.semaphore.BoundedSemaphore(settings.env_int("DOCUMENTS_RENDERING_CONSUMERS", 3))
FETCH_TTL = timedelta(minutes=1)
SENT_IN_BLOCKS_OF = 64 * 1024
BRANDING_TTL = timedelta(seconds=5)
DEV_FETCH_SECRET = "dev-only-pdf-fetch-secret"


def fetch_secret() -> bytes | None:
    """PDF_FETCH_SECRET, shared with the gateway; a fixed value in development. Without one outside
    development no reference is issued (PDFs travel in the RPC answer) and every fetch is refused."""
    secret = settings.env("PDF_FETCH_SECRET") or (DEV_FETCH_SECRET if settings.is_dev() else None)
    return secret.encode() if secret else None


def internal_url(web_server_address: str) -> str:
    """How the gateway reaches this process's HTTP server: DOCUMENTS_INTERNAL_URL, else its listening
    address; one that listens everywhere stands for the address the host name resolves to (a pod's
    or a container's own IP), else the host name itself."""
    configured = settings.env("DOCUMENTS_INTERNAL_URL")
    if configured:
        return configured.rstrip("/")
    host, _, port = web_server_address.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = socket.gethostname()
        try:
            host = socket.gethostbyname(host)
        except OSError:
            pass
    return f"http://{host}:{port}"


class PdfFetch(DependencyProvider):
    """Signed, short-lived references to cached PDFs, and their check when one is presented: each
    names one cached file and this process's address (another replica's cache is not this one's)."""

    def setup(self):
        self.secret = fetch_secret()
        self.base_url = internal_url(str(self.container.config.get("WEB_SERVER_ADDRESS", "127.0.0.1:8000")))

    def get_dependency(self, worker_ctx):
        return self

    def reference(self, key: str, now) -> str:
        # without a secret, issue refuses (ValueError); callers ask only when there is one
        return signing.issue(self.secret or b"", {"k": key, "u": self.base_url}, now, FETCH_TTL)

    def check_grant(self, grant: str, now) -> dict:
        """What a grant the gateway signed names (w, c, kind, d), or signing.Refused (forged, expired,
        malformed, a file reference rather than a grant, or no secret here)."""
        if not self.secret:
            raise signing.Refused("not configured")
        wanted = signing.check(self.secret, grant, now)
        if wanted.get("grant") != CURRENT_PDF_GRANT or wanted.get("kind") not in CURRENT_PDF_KINDS:
            raise signing.Refused("malformed")
        if not all(isinstance(wanted.get(name), str) and wanted[name] for name in ("w", "c", "d")):
            raise signing.Refused("malformed")
        return wanted

    def check(self, reference: str, now) -> str:
        """The cache key a reference names, or signing.Refused (forged, expired, or no secret here)."""
        if not self.secret:
            raise signing.Refused("not configured")
        key = signing.check(self.secret, reference, now).get("k")
        if not isinstance(key, str) or not key.isalnum():
            raise signing.Refused("malformed")
        return key


# The events that can change a client's documents: each public type of billing's and payments' (the
# ones the webhook consumers below take too).
CHANGES = [
    kombu.binding(get_event_exchange(source, {}), routing_key=event_type)
    for source in renders.CHANGE_SOURCES
    for event_type in EVENTS[source]
]


class ChangesFeed(DependencyProvider):
    """This process's read model of its clients' current renders (services/documents/renders.py), and
    what keeps it current: a queue of its own bound to CHANGES, exclusive (gone with its connection),
    read in a green thread of its own, without a nameko worker or an ack per event. A lost message
    needs no redelivery: after any break the read model counts only renders of data read once the
    queue was back (CurrentRenders.listening)."""

    def setup(self):
        self.renders = renders.CurrentRenders()
        self.amqp_uri = self.container.config[AMQP_URI_CONFIG_KEY]
        self.heartbeat = int(self.container.config.get("HEARTBEAT", 30))
        # the service's own clock (ServiceBase.clock), so tests that move it move this too
        [self.clock] = [dep.now for dep in self.container.dependencies if isinstance(dep, ClockProvider)]
        self.stopped = False

    def start(self):
        self.container.spawn_managed_thread(self._run)

    def stop(self):
        self.stopped = True
        self.renders.deaf()

    def get_dependency(self, worker_ctx):
        return self.renders

    def _run(self):
        delay = 0.5
        while not self.stopped:
            try:
                self._follow()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - the broker is away: try again shortly
                self.renders.deaf()
                log.warning("the queue of changes is interrupted", extra={"error": repr(exc)})
                eventlet.sleep(delay)
                delay = min(delay * 2, 10.0)

    def _follow(self):
        with kombu.Connection(self.amqp_uri, heartbeat=self.heartbeat, connect_timeout=5) as connection:
            name = f"documents.changes.{uuid.uuid4().hex}"  # named, so ops can tell what it is
            queue = kombu.Queue(name, bindings=CHANGES, exclusive=True, auto_delete=True, durable=False)
            with kombu.Consumer(connection, queues=[queue], callbacks=[self.heard], accept=["json"], no_ack=True):
                self.renders.listening(self.clock())  # bound: every change from now on comes here
                while not self.stopped:
                    try:
                        connection.drain_events(timeout=1)
                    except TimeoutError:
                        pass
                    # also while events keep coming: without acks, nothing else tells the broker we are here
                    connection.heartbeat_check()

    def heard(self, event, message):
        """An event of CHANGES: a new branding counts from when every replica's cached branding has
        expired too."""
        later = BRANDING_TTL if message.delivery_info.get("routing_key") == "workspace.updated" else timedelta(0)
        self.renders.heard(event, self.clock(), later)


class Mailer(DependencyProvider):
    """The delivery backend, built once: SMTP when SMTP_URL is set, else the .eml file outbox."""

    def setup(self):
        outbox = settings.env("MAIL_OUTBOX_DIR") or str(settings.var_dir() / "mail")
        self.backend = backend_from_env(settings.env("SMTP_URL"), Path(outbox))

    def get_dependency(self, worker_ctx):
        return self.backend


def _delete_subscription(uow, now, workspace_id: str, subscription_id: str) -> None:
    webhooks.delete_subscription(uow, workspace_id, subscription_id)


class DocumentsService(ServiceBase):
    name = "documents"
    db = Database("documents", Path(__file__).parent / "migrations")
    renderer = PdfRenderer()
    pdf_fetch = PdfFetch()
    current_renders = ChangesFeed()
    mailer = Mailer()
    billing = TimedRpcProxy("billing")
    auth = TimedRpcProxy("auth")
    sender = settings.env("MAIL_FROM", "Billing Portal <no-reply@portal.localhost>")

    @runs_in(CALLER)
    @rpc
    def send_password_reset_link(
        self, *, to, name, workspace_id, client_id, url, expires_at, idempotency_key, locale=None
    ) -> str:
        def queue(uow, now) -> str:
            brand = handlers.branding_or_default(uow, workspace_id)
            return handlers.queue_email(
                uow,
                now,
                self.sender,
                idempotency_key=idempotency_key,
                kind="password_reset",
                to=to,
                workspace_id=workspace_id,
                client_id=client_id,
                locale=locale,
                brand=brand,
                context={"name": name, "url": url, "expires_at": mails.business_moment(brand, expires_at, locale)},
            )

        return self._tx(queue)

    @runs_in(CALLER)
    @rpc
    def send_magic_link(
        self,
        *,
        to,
        name,
        workspace_id,
        client_id,
        url,
        expires_at,
        idempotency_key,
        locale=None,
        device=None,
        report_url=None,
    ) -> str:
        """`device` (browser, os, ip) is who asked for the link; `report_url` the "this wasn't me" link."""

        def queue(uow, now) -> str:
            brand = handlers.branding_or_default(uow, workspace_id)
            return handlers.queue_email(
                uow,
                now,
                self.sender,
                idempotency_key=idempotency_key,
                kind="magic_link",
                to=to,
                workspace_id=workspace_id,
                client_id=client_id,
                locale=locale,
                brand=brand,
                context={
                    "name": name,
                    "url": url,
                    "expires_at": mails.business_moment(brand, expires_at, locale),
                    "device": mails.device_context(device),
                    "report_url": report_url,
                },
            )

        return self._tx(queue)

    @runs_in(CALLER)
    @rpc
    def send_new_device_notice(
        self, *, to, name, workspace_id, client_id, contact_id, device, signed_in_at, idempotency_key, locale=None
    ) -> str:
        """A sign-in from a browser and OS the contact had not used before: essential, always sent."""

        def queue(uow, now) -> str:
            if not preferences.wanted(uow, "new_device", contact_id):
                return ""
            brand = handlers.branding_or_default(uow, workspace_id)
            when = mails.business_moment(brand, signed_in_at, locale)
            return handlers.queue_email(
                uow,
                now,
                self.sender,
                idempotency_key=idempotency_key,
                kind="new_device",
                to=to,
                workspace_id=workspace_id,
                client_id=client_id,
                locale=locale,
                brand=brand,
                context={
                    "name": name,
                    "device": mails.device_context(device),
                    "signed_in_at": when,
                    "sessions_url": self._portal("/profile/sessions"),
                },
            )

        return self._tx(queue)

    @runs_in(OWN)
    @timer(interval=float(settings.env("MAIL_POLL_INTERVAL", "0.5")))
    def deliver_mail(self):
        """Which workspaces have mail due is looked up across them all; each sends in its own scope."""
        now = self.clock()
        with self.scope.system(), self.db.uow() as uow:
            due = handlers.workspaces_with_mail_due(uow, now)
        for workspace_id in due:
            with self.scope.workspace(workspace_id), self.db.uow() as uow:
                handlers.deliver_due(uow, self.mailer, now, workspace_id=workspace_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def render_document(
        self,
        kind: str,
        workspace_id: str,
        data: dict,
        locale: str | None = None,
        timezone: str | None = None,
        purpose: str = "download",
        by_reference: bool = False,
        for_client: str | None = None,
        read_at: str | None = None,
    ) -> dict:
        """The PDF of an invoice, quote, credit note, receipt or statement, base64 in the reply; or,
        `by_reference`, rendered into the cache if it was not there and answered with a signed
        reference to fetch it from this process's HTTP server within a minute (`GET /pdf/<reference>`),
        so the bytes never pass through the broker. A download by a client is announced, so the
        business sees it in the activity timeline.

        `for_client`: `data` is what billing answered that client at `read_at` (ISO, the caller's
        clock, taken before it asked), so the render is recorded as that client's for fetches without
        billing (services/documents/renders.py)."""
        brand = self._branding(workspace_id)
        now = self.clock()
        reference = (lambda key: self.pdf_fetch.reference(key, now)) if by_reference and self.pdf_fetch.secret else None
        result = handlers.render_document(self.renderer, brand, kind, data, locale, timezone, reference)
        cache_key = result.pop("cache_key", None)
        if not (purpose == "download" and data.get("client_id")):
            return result
        recordable = kind in CURRENT_PDF_KINDS and str(data["client_id"]) == for_client
        if cache_key and for_client and read_at and recordable:
            # fetched again without billing while unchanged, for a while (renders.py); announced now
            self.current_renders.record(
                workspace_id=workspace_id,
                client_id=for_client,
                kind=kind,
                document_id=str(data["id"]),
                cache_key=cache_key,
                filename=result["filename"],
                read_at=min(datetime.fromisoformat(read_at), now),
                timezone=brand.get("timezone"),
            )
        with self.db.uow() as uow:
            uow.publish_and_commit(
                "document.downloaded",
                workspace_id,
                {
                    "kind": kind,
                    "client_id": data["client_id"],
                    "document_id": data.get("id"),
                    "number": data.get("number"),
                    "filename": result["filename"],
                },
            )
        return result

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def einvoice(self, kind: str, workspace_id: str, data: dict) -> dict:
        """An invoice or credit note as an EN 16931 e-invoice (CII XML, in the workspace's profile:
        EN 16931 or XRechnung), for a workspace that has a VAT id."""
        return handlers.einvoice(self._branding(workspace_id), kind, data)

    @runs_in(OWN)  # a signed reference names one cached file: no workspace's rows are read
    @http("GET", "/pdf/<string:reference>")
    def http_pdf(self, request, reference):
        """A cached PDF, streamed, for a reference render_document signed less than a minute ago
        (the gateway fetches it for a client it has checked). Anything else is refused."""
        try:
            key = self.pdf_fetch.check(reference, self.clock())
        except signing.Refused as exc:
            return 403, {"Content-Type": "text/plain"}, f"refused: {exc.reason}\n"
        stream = self.renderer.storage.open(key)
        if stream is None:
            return 404, {"Content-Type": "text/plain"}, "not cached here\n"
        return _streamed(request, stream)

    @runs_in(OWN)  # the grant names the workspace and client; no rows are read
    @http("GET", "/current/<string:grant>")
    def http_current_pdf(self, request, grant):
        """A client's cached PDF without asking billing, for a grant the gateway signed for a session
        it checked (kind, document, client, workspace; a minute): served when this process rendered it
        for that client and nothing about the client has changed since (services/documents/renders.py).
        404 means "not current here": the gateway then asks billing and render_document. No database
        round trip: the read model is this process's."""
        now = self.clock()
        try:
            wanted = self.pdf_fetch.check_grant(grant, now)
        except signing.Refused as exc:
            return 403, {"Content-Type": "text/plain"}, f"refused: {exc.reason}\n"
        render = self.current_renders.current(now, wanted["w"], wanted["c"], wanted["kind"], wanted["d"])
        if render is None:
            return 404, {"Content-Type": "text/plain"}, "not current here\n"
        etag = f'"{render.cache_key[:32]}"'
        if request.headers.get("If-None-Match") == etag:  # the client has it: the file is not opened
            return 304, {"ETag": etag, "X-Filename": render.filename}, ""
        stream = self.renderer.storage.open(render.cache_key)
        if stream is None:  # recorded, but no longer in this process's cache
            return 404, {"Content-Type": "text/plain"}, "not current here\n"
        # Not announced again: the download that recorded this render was, minutes ago at most
        # (renders.CURRENT_FOR), and nothing has changed since.
        return _streamed(request, stream, {"ETag": etag, "X-Filename": render.filename})

    # Branding for a few seconds per replica: a cached PDF then costs no database round trip. A new
    # logo or colour shows within the TTL (the PDF cache key includes the branding it used).
    _branding_cache: TTLCache[str, dict] = TTLCache(maxsize=256, ttl=BRANDING_TTL.total_seconds())

    def _branding(self, workspace_id: str, uow=None) -> dict:
        """The workspace's branding, cached. Inside a transaction, read through its unit of work: a
        second connection from the pool while holding one would deadlock a pool that a burst of
        events has emptied, each handler waiting for a connection the others hold."""
        brand = self._branding_cache.get(workspace_id)
        if brand is None:
            if uow is None:
                with self.db.uow() as own:
                    brand = handlers.branding(own, workspace_id)
            else:
                brand = handlers.branding(uow, workspace_id)
            self._branding_cache[workspace_id] = brand
        return brand

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_emails(self, workspace_id: str, client_id: str | None = None, limit: int = 100) -> list[dict]:
        with self.db.uow() as uow:
            return handlers.list_emails(uow, workspace_id, client_id, limit)

    @runs_in(SYSTEM_WIDE)  # the development mail page: every workspace's newest emails
    @rpc
    def recent_emails(self, limit: int = 50) -> list[dict]:
        with self.db.uow() as uow:
            return handlers.recent_emails(uow, limit)

    @consumes("billing", "workspace.created")
    def on_workspace_created(self, uow, now, event):
        handlers.apply_workspace(uow, event["data"], now)

    @consumes("billing", "workspace.updated")
    def on_workspace_updated(self, uow, now, event):
        handlers.apply_workspace(uow, event["data"], now)
        renders.changed_for_older_processes(uow, now + BRANDING_TTL, event["workspace_id"], None)

    def _portal(self, path: str = "") -> str:
        return settings.env("PORTAL_URL", "http://localhost:8000").rstrip("/") + path

    def _unsubscribe(self, workspace_id: str, client_id: str, recipient: dict, kind: str, paid_by=None) -> dict | None:
        """The one-click unsubscribe headers of an email that may be turned off (none on an essential one):
        a signed link that turns off that one category for that one contact, without signing in."""
        category, key = preferences.category(kind, recipient.get("contact_id"), paid_by), unsubscribe.secret()
        if category is None or key is None:
            return None
        token = unsubscribe.issue(key, workspace_id, client_id, recipient["contact_id"], category, self.clock())
        return preferences.unsubscribe_headers(self._portal(f"/unsubscribe?token={token}"))

    def _link(self, workspace_id: str, client_id: str, kind: str, document_id: str, contact_id=None) -> str:
        """A one-document link; with the recipient's contact id, its sessions page lists the link."""
        link = self.auth.issue_document_link(workspace_id, client_id, kind, document_id, contact_id=contact_id)
        return self._portal(f"/i/{link['token']}")

    @consumes("billing", "invoice.sent", slots=RENDERING)
    def on_invoice_sent(self, uow, now, event):
        self._document_sent(uow, now, event, "invoice", self.billing.get_invoice)

    @consumes("billing", "quote.sent", slots=RENDERING)
    def on_quote_sent(self, uow, now, event):
        self._document_sent(uow, now, event, "quote", self.billing.get_quote)

    def _document_sent(self, uow, now, event, kind: str, fetch):
        """Everything slow (the document, its PDF, the links) is fetched before anything is written,
        so this transaction holds no write lock while it waits."""
        data, workspace_id = event["data"], event["workspace_id"]
        wanted = [r for r in data["recipients"] if preferences.wanted(uow, f"{kind}_sent", r["contact_id"])]
        pending = [(f"{kind}-sent:{event['id']}:{r['contact_id']}", r) for r in wanted]
        pending = [(key, r) for key, r in pending if not handlers.email_exists(uow, key)]  # redelivered?
        if not pending:
            return
        brand = self._branding(workspace_id, uow)
        document = fetch(workspace_id, data["id"])
        attachments = (
            (mails.pdf_attachment(self.renderer, brand, kind, document),) if brand.get("attach_pdf", True) else ()
        )
        links = [self._link(workspace_id, data["client_id"], kind, data["id"], r.get("contact_id")) for _, r in pending]
        for (key, recipient), link in zip(pending, links):
            mails.document_sent(
                uow,
                now,
                self.sender,
                self.renderer,
                brand,
                key=key,
                kind=kind,
                document=document,
                recipient=recipient,
                link=link,
                attachments=attachments,
                headers=self._unsubscribe(workspace_id, data["client_id"], recipient, f"{kind}_sent"),
            )

    @consumes("billing", "comment.added")
    def on_comment_added(self, uow, now, event):
        """The business answered in an invoice's or a quote's thread: each contact who keeps comment
        replies on gets the answer and a link to the thread, on the document's page in the portal (which
        asks to sign in first when needed; a one-document link shows no comments). The client's own
        comments email nobody."""
        data, workspace_id = event["data"], event["workspace_id"]
        if data.get("author_kind") != "business":
            return
        wanted = [r for r in data.get("recipients", ()) if preferences.wanted(uow, "comment_reply", r["contact_id"])]
        pending = [(f"comment-reply:{data['id']}:{r['contact_id']}", r) for r in wanted]
        pending = [(key, r) for key, r in pending if not handlers.email_exists(uow, key)]  # redelivered?
        if not pending:
            return
        kind, client_id = data["document_kind"], data["client_id"]
        link = self._portal(f"/{kind}s/{data['document_id']}#comments")
        brand = self._branding(workspace_id, uow)
        for key, recipient in pending:
            mails.comment_reply(
                uow,
                now,
                self.sender,
                brand,
                key=key,
                comment=data,
                recipient=recipient,
                link=link,
                headers=self._unsubscribe(workspace_id, client_id, recipient, "comment_reply"),
            )

    @consumes("billing", "payment.recorded", slots=RENDERING)
    def on_payment_recorded(self, uow, now, event):
        data, workspace_id = event["data"], event["workspace_id"]
        paid_by = data.get("paid_by_contact_id")  # the payer's own receipt is always sent
        wanted = [r for r in data["recipients"] if preferences.wanted(uow, "payment_receipt", r["contact_id"], paid_by)]
        pending = [(f"receipt:{data['id']}:{r['contact_id']}", r) for r in wanted]
        pending = [(key, r) for key, r in pending if not handlers.email_exists(uow, key)]
        if not pending:
            return
        brand = self._branding(workspace_id, uow)
        payment = self.billing.get_payment(workspace_id, data["id"])
        receipt = mails.pdf_attachment(self.renderer, brand, "receipt", payment)
        for key, recipient in pending:
            mails.payment_receipt(
                uow,
                now,
                self.sender,
                self.renderer,
                brand,
                key=key,
                payment=payment,
                recipient=recipient,
                portal_url=self._portal("/payments"),
                attachments=(receipt,),
                headers=self._unsubscribe(workspace_id, data["client_id"], recipient, "payment_receipt", paid_by),
            )

    @consumes("billing", "refund.recorded", slots=RENDERING)
    def on_refund_recorded(self, uow, now, event):
        """A card refund: each contact with portal access hears of it (those who keep receipts on, and
        always the contact who paid), with the payment's receipt as it now stands (the refund listed)."""
        data, workspace_id = event["data"], event["workspace_id"]
        pending = [(f"refund:{data['id']}:{r['contact_id']}", r) for r in data.get("recipients", [])]
        pending = [(key, r) for key, r in pending if not handlers.email_exists(uow, key)]  # redelivered?
        if not pending:
            return
        payment = self.billing.get_payment(workspace_id, data["payment_id"])
        paid_by = payment.get("paid_by_contact_id")  # the refund of your own payment is always sent
        pending = [(k, r) for k, r in pending if preferences.wanted(uow, "refund_notice", r["contact_id"], paid_by)]
        if not pending:
            return
        brand = self._branding(workspace_id, uow)
        receipt = mails.pdf_attachment(self.renderer, brand, "receipt", payment)
        for key, recipient in pending:
            mails.refund_notice(
                uow,
                now,
                self.sender,
                brand,
                key=key,
                refund=data,
                payment=payment,
                recipient=recipient,
                portal_url=self._portal("/payments"),
                attachments=(receipt,),
                headers=self._unsubscribe(workspace_id, data["client_id"], recipient, "refund_notice", paid_by),
            )

    @consumes("payments", "payment.failed")
    def on_payment_failed(self, uow, now, event):
        """Automatic payments and late failures (a debit the bank returned days later) are emailed: a
        client paying on screen sees any other failure there."""
        data, workspace_id = event["data"], event["workspace_id"]
        if not data.get("off_session", True) and not data.get("late"):
            return
        client = self.billing.get_client(workspace_id, data["client_id"])
        for contact in (c for c in client["contacts"] if c["portal_access"]):
            mails.payment_failed(
                uow,
                now,
                self.sender,
                self._branding(workspace_id, uow),
                key=f"payment-failed:{data.get('payment_id') or event['id']}:{contact['id']}",
                data=data,
                recipient={**contact, "locale": contact.get("locale") or client.get("locale")},
                link=data.get("pay_url") or self._portal("/login"),
            )

    @consumes("payments", "mandate.accepted")
    def on_mandate_accepted(self, uow, now, event):
        """The client's copy of the direct debit mandate, to the contact who accepted it and to the
        email given for the mandate (once each)."""
        data, workspace_id = event["data"], event["workspace_id"]
        client = self.billing.get_client(workspace_id, data["client_id"])
        contacts = [c for c in client["contacts"] if c["portal_access"] and c["id"] == data.get("contact_id")]
        recipients = {c["email"].lower(): c for c in contacts}
        recipients.setdefault(
            data["email"].lower(), {"email": data["email"], "name": data["holder_name"], "locale": client.get("locale")}
        )
        for email, recipient in recipients.items():
            mails.mandate_copy(
                uow,
                now,
                self.sender,
                self._branding(workspace_id, uow),
                key=f"mandate-copy:{data['id']}:{email}",
                data=data,
                recipient={**recipient, "locale": recipient.get("locale") or client.get("locale")},
                timezone=client.get("timezone") or "UTC",
                link=self._portal("/payment-methods"),
            )

    @consumes("payments", "payment.debit_scheduled")
    def on_debit_scheduled(self, uow, now, event):
        """SEPA pre-notification of an automatic debit: its amount and date, before it is collected."""
        data, workspace_id = event["data"], event["workspace_id"]
        client = self.billing.get_client(workspace_id, data["client_id"])
        for contact in (c for c in client["contacts"] if c["portal_access"]):
            mails.debit_notice(
                uow,
                now,
                self.sender,
                self._branding(workspace_id, uow),
                key=f"debit-notice:{data['payment_id']}:{contact['id']}",
                data=data,
                recipient={**contact, "locale": contact.get("locale") or client.get("locale")},
                link=self._portal("/invoices"),
            )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def forward_invoice(
        self,
        workspace_id: str,
        client_id: str,
        invoice_id: str,
        to: str,
        forwarded_by: str,
        note: str = "",
        idempotency_key: str = "",
    ) -> str:
        """A client forwards one of its invoices to another address (a colleague, its accountant)."""
        invoice = self.billing.get_invoice(workspace_id, invoice_id, client_id=client_id)
        return self._tx(
            lambda uow, now: mails.document_sent(
                uow,
                now,
                self.sender,
                self.renderer,
                self._branding(workspace_id, uow),
                key=f"forward:{hashlib.sha256(idempotency_key.encode()).hexdigest()}"
                if idempotency_key
                else f"forward:{uuid.uuid4()}",
                kind="invoice",
                document=invoice,
                recipient={"email": to, "name": ""},
                forwarded_by=forwarded_by,
                note=note,
                link=self._link(workspace_id, client_id, "invoice", invoice_id),
            )
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def send_business_message(
        self,
        workspace_id: str,
        client_id: str,
        client_name: str,
        from_name: str,
        from_email: str,
        subject: str,
        message: str,
        idempotency_key: str,
    ) -> str:
        def send(uow, now) -> str:
            repeated = handlers.email_exists(uow, idempotency_key)
            email_id = mails.business_message(
                uow,
                now,
                self.sender,
                self._branding(workspace_id, uow),
                key=idempotency_key,
                client_id=client_id,
                client_name=client_name,
                from_name=from_name,
                from_email=from_email,
                subject=subject,
                message=message,
            )
            if not repeated:  # the business's timeline shows each message once, however often it was posted
                uow.publish(
                    "message.sent", workspace_id, {"client_id": client_id, "subject": subject, "email_id": email_id}
                )
            return email_id

        return self._tx(send)

    @consumes("billing", "booking.confirmed")
    def on_booking_confirmed(self, uow, now, event):
        self._booking_email(uow, now, event, cancelled=False)

    @consumes("billing", "booking.cancelled")
    def on_booking_cancelled(self, uow, now, event):
        self._booking_email(uow, now, event, cancelled=True)

    def _booking_email(self, uow, now, event, cancelled: bool) -> None:
        """The confirmation (or cancellation) with its .ics; the key makes a redelivery send nothing."""
        data = event["data"]
        booking, recipient = data["booking"], data["recipient"]
        if not preferences.wanted(uow, "booking", recipient.get("contact_id")):
            return
        mails.booking(
            uow,
            now,
            self.sender,
            self._branding(event["workspace_id"], uow),
            key=f"booking-{'cancelled' if cancelled else 'confirmed'}:{booking['id']}",
            client_id=data["client_id"],
            recipient=recipient,
            booking=booking,
            cancelled=cancelled,
            portal_url=self._portal("/bookings"),
            headers=self._unsubscribe(event["workspace_id"], data["client_id"], recipient, "booking"),
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def send_statement(
        self, workspace_id: str, client_id: str, recipient: dict, statement: dict, idempotency_key: str
    ) -> str:
        return self._tx(
            lambda uow, now: mails.statement(
                uow,
                now,
                self.sender,
                self.renderer,
                self._branding(workspace_id, uow),
                key=idempotency_key,
                client_id=client_id,
                recipient=recipient,
                statement=statement,
            )
        )

    @consumes("billing", "invoice.reminder")
    def on_invoice_reminder(self, uow, now, event):
        workspace_id, client_id = event["workspace_id"], event["data"]["client_id"]
        handlers.queue_reminders(
            uow,
            now,
            self.sender,
            event,
            settings.env("PORTAL_URL", "http://localhost:8000"),
            lambda recipient: self._unsubscribe(workspace_id, client_id, recipient, "invoice_reminder"),
        )

    @consumes("billing", "invoice.dispute_resolved")
    def on_invoice_dispute_resolved(self, uow, now, event):
        """The business settled a client's dispute: with a credit note (its number and amount, and a link
        to its page) or by keeping the invoice (its answer, and a link to the invoice). Each contact who
        keeps invoice emails on is told once; an event from before it named recipients emails no one."""
        data, workspace_id = event["data"], event["workspace_id"]
        wanted = [
            r for r in data.get("recipients") or () if preferences.wanted(uow, "dispute_resolved", r["contact_id"])
        ]
        credit_id = data.get("credit_note_id")
        link = self._portal(f"/credit-notes/{credit_id}" if credit_id else f"/invoices/{data['invoice_id']}")
        for recipient in wanted:
            mails.dispute_resolved(
                uow,
                now,
                self.sender,
                key=f"dispute-resolved:{data['dispute_id']}:{recipient['contact_id']}",
                workspace_id=workspace_id,
                dispute=data,
                recipient=recipient,
                link=link,
                headers=self._unsubscribe(workspace_id, data["client_id"], recipient, "dispute_resolved"),
            )

    @consumes("billing", "contact.notification_preferences_changed")
    def on_notification_preferences_changed(self, uow, now, event):
        preferences.apply(uow, now, event["workspace_id"], event["data"])

    @consumes("billing", "statement.monthly", slots=RENDERING)
    def on_monthly_statement(self, uow, now, event):
        """Last month's statement of account for one contact who asked for it; billing announces each
        contact and month once, and the key makes a redelivered event send nothing."""
        data, workspace_id = event["data"], event["workspace_id"]
        recipient = data["recipient"]
        key = f"monthly-statement:{recipient['contact_id']}:{data['period']}"
        if handlers.email_exists(uow, key) or not preferences.wanted(uow, "monthly_statement", recipient["contact_id"]):
            return  # sent already, or turned off since billing announced it
        statement = self.billing.statement(workspace_id, data["client_id"], data["from"], data["to"])
        statement.setdefault("client_id", data["client_id"])
        mails.statement(
            uow,
            now,
            self.sender,
            self.renderer,
            self._branding(workspace_id, uow),
            key=key,
            client_id=data["client_id"],
            recipient=recipient,
            statement=statement,
            headers=self._unsubscribe(workspace_id, data["client_id"], recipient, "monthly_statement"),
        )

    # --- outbound webhooks (services/documents/webhooks.py; the admin API's /webhooks routes) ---
    webhook_base = float(settings.env("WEBHOOK_RETRY_BASE_SECONDS", "30"))
    # Private and loopback addresses are refused outside development (PORTAL_ENV=dev).
    webhook_allow_private = settings.env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", settings.is_dev())

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def create_webhook(self, workspace_id: str, data: dict, idempotency_key: str | None = None) -> dict:
        """The new subscription with its secret: the only time the secret is shown."""
        return self._tx(
            webhooks.create_subscription,
            workspace_id,
            data,
            self.webhook_allow_private,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_webhooks(self, workspace_id: str) -> list[dict]:
        with self.db.uow() as uow:
            return webhooks.list_subscriptions(uow, workspace_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def get_webhook(self, workspace_id: str, subscription_id: str) -> dict:
        with self.db.uow() as uow:
            return webhooks.get_subscription(uow, workspace_id, subscription_id)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def update_webhook(
        self, workspace_id: str, subscription_id: str, data: dict, idempotency_key: str | None = None
    ) -> dict:
        return self._tx(
            webhooks.update_subscription,
            workspace_id,
            subscription_id,
            data,
            self.webhook_allow_private,
            idempotency_key=idempotency_key,
        )

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def delete_webhook(self, workspace_id: str, subscription_id: str, idempotency_key: str | None = None) -> None:
        self._tx(_delete_subscription, workspace_id, subscription_id, idempotency_key=idempotency_key)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def list_webhook_deliveries(self, workspace_id: str, subscription_id: str, limit=50) -> list[dict]:
        with self.db.uow() as uow:
            return webhooks.list_deliveries(uow, workspace_id, subscription_id, limit)

    @runs_in(CALLER)
    @rpc(expected_exceptions=EXPECTED)
    def replay_webhook_delivery(self, workspace_id: str, delivery_id: str, idempotency_key: str | None = None) -> dict:
        return self._tx(webhooks.replay, workspace_id, delivery_id, idempotency_key=idempotency_key)

    @runs_in(OWN)
    @timer(interval=float(settings.env("WEBHOOK_DELIVERY_INTERVAL", "1")))
    def deliver_webhooks(self):
        """POST what is due, several at once (green threads), holding no transaction while waiting.
        Which workspaces have deliveries due is looked up across them all; each delivers in its own scope."""
        with self.scope.system(), self.db.uow() as uow:
            due = webhooks.workspaces_with_deliveries_due(uow, self.clock())
        pool = eventlet.GreenPool(webhooks.CONCURRENCY)
        with requests.Session() as http:
            for workspace_id in due:
                with self.scope.workspace(workspace_id):
                    webhooks.deliver_due(
                        self.db.uow,
                        http,
                        self.clock,
                        base=self.webhook_base,
                        allow_private=self.webhook_allow_private,
                        map_fn=pool.imap,
                        workspace_id=workspace_id,
                    )


def _streamed(request, stream, headers: dict | None = None) -> Response:
    """A cached PDF, open for reading, as the answer's body, sent as it is read: in blocks as large as
    the gateway reads, so a one-page PDF goes out in one write instead of one per 8 KiB."""
    return Response(
        wrap_file(request.environ, stream, SENT_IN_BLOCKS_OF),
        status=200,
        direct_passthrough=True,
        headers={
            "Content-Type": "application/pdf",
            "Content-Length": str(os.fstat(stream.fileno()).st_size),
            **(headers or {}),
        },
    )


def _webhook_consumer(source: str, event_type: str):
    """A consumer that queues one event type for the workspace's subscriptions (and, for billing's and
    payments' events, keeps the change times older processes read: renders.py). Its name is both the
    method's and its queue's, and the inbox's key, so a parked event can be replayed to it."""
    name = "webhooks_" + event_type.replace(".", "_")

    def deliver(self, uow, now, event):
        webhooks.fan_out(uow, now, event)
        if source in renders.CHANGE_SOURCES:  # read by older documents processes while an upgrade rolls out
            client_id = renders.changed_client(event_type, event.get("data"))
            renders.changed_for_older_processes(uow, now, event.get("workspace_id"), client_id)

    deliver.__name__ = deliver.__qualname__ = name
    return name, consumes(source, event_type)(deliver)


# One consumer per public event type (nameko binds an event handler to one type); added to the class
# before any container is built, which is when nameko looks for entrypoints.
for _source, _types in EVENTS.items():
    for _type in _types:
        setattr(DocumentsService, *_webhook_consumer(_source, _type))

"""Documents service entrypoints: email now; PDFs come with their own issue."""
from __future__ import annotations

from pathlib import Path

from nameko.rpc import rpc
from nameko.timer import timer

from chassis import settings
from chassis.events import utcnow
from chassis.nameko_ext import Database, ServiceBase, consumes
from services.documents import handlers
from services.documents.mail import backend_from_env


class DocumentsService(ServiceBase):
    name = "documents"
    db = Database("documents", Path(__file__).parent / "migrations")
    sender = settings.env("MAIL_FROM", "Billing Portal <no-reply@portal.localhost>")

    @rpc
    def send_magic_link(self, *, to, name, workspace_id, client_id, url, expires_at, idempotency_key) -> str:
        with self.db.uow() as uow:
            return handlers.queue_email(
                uow, utcnow(), self.sender, idempotency_key=idempotency_key, kind="magic_link", to=to,
                workspace_id=workspace_id, client_id=client_id,
                context={"name": name, "url": url, "expires_at": expires_at[:16].replace("T", " ")})

    @timer(interval=float(settings.env("MAIL_POLL_INTERVAL", "0.5")))
    def deliver_mail(self):
        backend = backend_from_env(settings.env("SMTP_URL"), Path(settings.env("MAIL_OUTBOX_DIR", str(settings.var_dir() / "mail"))))
        with self.db.uow() as uow:
            handlers.deliver_due(uow, backend, utcnow())

    @rpc
    def recent_emails(self, limit: int = 50) -> list[dict]:
        with self.db.uow() as uow:
            return handlers.recent_emails(uow, limit)

    @consumes("billing", "workspace.created")
    def on_workspace_created(self, uow, event):
        handlers.apply_workspace(uow, event["data"], utcnow())

    @consumes("billing", "workspace.updated")
    def on_workspace_updated(self, uow, event):
        handlers.apply_workspace(uow, event["data"], utcnow())

    @consumes("billing", "invoice.reminder")
    def on_invoice_reminder(self, uow, event):
        handlers.queue_reminders(uow, utcnow(), self.sender, event,
                                 settings.env("PORTAL_URL", "http://localhost:8000"))

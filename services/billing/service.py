"""Billing service entrypoints."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from nameko.rpc import rpc

from chassis import settings
from chassis.errors import EXPECTED
from chassis.nameko_ext import Database, ServiceBase
from services.billing import handlers


class BillingService(ServiceBase):
    name = "billing"
    db = Database("billing", Path(__file__).parent / "migrations")

    @rpc(expected_exceptions=EXPECTED)
    def client_dashboard(self, workspace_id: str, client_id: str, today: str | None = None) -> dict:
        with self.db.uow() as uow:
            return handlers.client_dashboard(uow, workspace_id, client_id,
                                             date.fromisoformat(today) if today else date.today())

    @rpc(expected_exceptions=EXPECTED)
    def set_portal_access(self, workspace_id: str, contact_id: str, enabled: bool) -> None:
        with self.db.uow() as uow:
            handlers.set_portal_access(uow, workspace_id, contact_id, enabled)
            uow.commit()

    @rpc
    def republish_contacts(self, workspace_id: str | None = None) -> int:
        with self.db.uow() as uow:
            count = handlers.republish_contacts(uow, workspace_id)
            uow.commit()
            return count

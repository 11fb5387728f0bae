"""The workspace branding every documents email is built with: inside a consumer's transaction it is
read through that transaction, and a workspace documents has not heard of yet is a wait, not a refusal."""

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from chassis.db import UnitOfWork
from chassis.errors import Unavailable
from services.documents import handlers
from services.documents.service import DocumentsService

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


class NoSecondConnection:
    def uow(self):
        raise AssertionError("a second connection from the pool, while the handler holds one")


def test_inside_a_transaction_the_branding_is_read_through_it(sqlite_engine):
    """A burst of events can hold every connection of the pool; a handler that asked the pool for a
    second one would wait for a connection that the others, waiting too, never give back."""
    engine = sqlite_engine("documents")
    with UnitOfWork(engine) as uow:
        handlers.apply_workspace(uow, {"id": "ws-brand", "name": "Acme Studio", "branding": {}}, NOW)
        uow.commit()
    service = SimpleNamespace(_branding_cache={}, db=NoSecondConnection())
    with UnitOfWork(engine) as uow:
        brand = DocumentsService._branding(service, "ws-brand", uow)
    assert (brand["id"], brand["name"]) == ("ws-brand", "Acme Studio")
    assert service._branding_cache["ws-brand"] == brand


def test_a_workspace_not_known_yet_is_unavailable_so_its_events_are_retried_not_parked(sqlite_engine):
    """An invoice sent right after its workspace was made can reach documents before workspace.created."""
    with UnitOfWork(sqlite_engine("documents")) as uow, pytest.raises(Unavailable):
        handlers.branding(uow, "ws-on-its-way")

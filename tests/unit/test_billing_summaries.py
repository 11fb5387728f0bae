"""Client summaries, the dashboard's read model: kept by every change to a client's money, filled by the
migration for clients that existed before it, rebuilt (and drift reported) by the repair."""
from datetime import timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from chassis.db import UnitOfWork, make_engine, upgrade
from services.billing import domain
from services.billing import handlers as h
from services.billing.tables import OPEN_INVOICE, client_summaries
from tests.unit.conftest import ROOT
from tests.unit.test_billing_dashboard import _history, _invoice
from tests.unit.test_billing_handlers import NOW, db, ws  # noqa: F401 - shared fixtures

MIGRATIONS = ROOT / "services" / "billing" / "migrations"
FIGURES = [c for c in client_summaries.c if c.name != "updated_at"]


def summaries(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*FIGURES).order_by(client_summaries.c.client_id))]


def test_the_open_invoice_index_holds_the_open_statuses():
    assert OPEN_INVOICE == f"status IN ({', '.join(repr(s) for s in sorted(domain.OPEN_STATUSES))})"


def test_every_client_has_a_summary_from_the_start(db, ws):
    ws_id, client = ws
    assert summaries(db.engine) == [(ws_id, client, "USD", 0, 0, 0, 0, None, None, None)]


def test_the_migration_fills_the_summaries_the_handlers_keep(tmp_path):
    url = f"sqlite:///{tmp_path / 'billing.sqlite3'}"
    upgrade(url, MIGRATIONS)
    engine = make_engine(url)

    def run(fn, *args, now=NOW, **kwargs):
        with UnitOfWork(engine, lambda: now) as uow:
            result = fn(uow, now, *args, **kwargs)
            uow.commit()
            return result

    ws_id = run(h.create_workspace, {"name": "Acme", "email": "acme@example.com", "timezone": "America/New_York"})["id"]
    clients = [run(h.create_client, ws_id, {"name": name})["id"] for name in ("One", "Two", "Three")]
    _history(run, ws_id, clients[0])
    _invoice(run, ws_id, clients[1], 2500, "2026-11-01", "2026-11-30")
    run(h.record_payment, ws_id, {"invoice_id": _invoice(run, ws_id, clients[1], 900, "2026-11-02", "2026-11-30")["id"],
                                  "amount": 900}, now=NOW - timedelta(hours=1))
    kept = summaries(engine)
    assert [row[3] for row in kept if row[1] == clients[0]] == [11500]

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.downgrade(config, "0007")
    upgrade(url, MIGRATIONS)
    assert summaries(engine) == kept
    assert run(h.repair_client_summaries, ws_id) == {"workspace_id": ws_id, "clients": 3, "drifted": []}

"""Client summaries, the dashboard's read model: kept by every change to a client's money, filled by the
migration for clients that existed before it, rebuilt (and drift reported) by the repair."""

import json
from datetime import timedelta
from types import SimpleNamespace

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
FIGURE_NAMES = sorted(c.name for c in FIGURES if c.name not in ("workspace_id", "client_id"))


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
    run(
        h.record_payment,
        ws_id,
        {"invoice_id": _invoice(run, ws_id, clients[1], 900, "2026-11-02", "2026-11-30")["id"], "amount": 900},
        now=NOW - timedelta(hours=1),
    )
    kept = summaries(engine)
    assert [row[3] for row in kept if row[1] == clients[0]] == [11500]

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    command.downgrade(config, "0007")
    upgrade(url, MIGRATIONS)
    assert summaries(engine) == kept
    assert run(h.repair_client_summaries, ws_id) == {"workspace_id": ws_id, "clients": 3, "drifted": []}


def test_the_repair_rebuilds_drifted_and_missing_summaries_and_says_which(db, ws):
    ws_id, client = ws
    other_ws = db(h.create_workspace, {"name": "Other", "email": "o@example.com"})["id"]
    theirs = db(h.create_client, other_ws, {"name": "Theirs"})["id"]
    _invoice(db, ws_id, client, 4000, "2026-11-01", "2026-11-30")
    second = db(h.create_client, ws_id, {"name": "Client Two"})["id"]
    with UnitOfWork(db.engine) as uow:  # behind billing's back: one figure off, one row gone, another workspace off
        uow.execute(
            client_summaries.update()
            .where(client_summaries.c.client_id.in_([client, theirs]))
            .values(outstanding=client_summaries.c.outstanding + 1)
        )
        uow.execute(client_summaries.delete().where(client_summaries.c.client_id == second))
        uow.commit()
    report = db(h.repair_client_summaries, ws_id)
    assert (report["workspace_id"], report["clients"]) == (ws_id, 2)
    assert sorted((d["client_id"], d["missing"], sorted(d["figures"])) for d in report["drifted"]) == sorted(
        [(client, False, ["outstanding"]), (second, True, FIGURE_NAMES)]
    )
    assert [d["figures"]["outstanding"] for d in report["drifted"] if d["client_id"] == client] == [
        {"was": 4001, "now": 4000}
    ]
    assert db(h.repair_client_summaries, ws_id)["drifted"] == []
    assert db(h.repair_client_summaries, other_ws)["drifted"][0]["client_id"] == theirs  # untouched until asked


def test_portalctl_repairs_the_workspace_it_acts_for(db, ws, monkeypatch, capsys):
    from services.billing import cli

    ws_id, client = ws
    with UnitOfWork(db.engine) as uow:
        uow.execute(client_summaries.update().values(credit_available=77))
        uow.commit()
    proxies = []

    class Proxy:  # the cluster, as ClusterRpcProxy gives it, calling the handler as billing would
        def __init__(self, config, context_data=None, timeout=None):
            proxies.append(context_data)
            self.billing = SimpleNamespace(
                repair_client_summaries=lambda workspace_id, *, idempotency_key=None: db(
                    h.repair_client_summaries, workspace_id
                )
            )

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(cli, "ClusterRpcProxy", Proxy)
    assert cli.main(["summaries", "repair", "--workspace", ws_id]) == 0
    report = json.loads(capsys.readouterr().out)
    assert proxies == [{"scope": {"workspace_id": ws_id}}]  # the services hold the call to this workspace
    assert report["drifted"] == [
        {"client_id": client, "missing": False, "figures": {"credit_available": {"was": 77, "now": 0}}}
    ]

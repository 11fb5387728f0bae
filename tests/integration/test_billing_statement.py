"""The statement of account on real PostgreSQL, as billing's own role under row-level security: a
retainer invoice paid by card and refunded by card, under each refund policy, leaves the retainer and
is not credited, so open invoices less unapplied credit and retainer held still make the closing
balance; and the dashboard's summary says the same."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.scope import SYSTEM, Scope, acting_for
from services.billing import handlers as h
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def engine(service_databases):
    url = service_databases["billing"]
    upgrade(url, ROOT / "services" / "billing" / "migrations")
    engine = make_engine(url, pool_size=2)
    yield engine
    engine.dispose()


def run(engine, fn, *args, **kwargs):
    with UnitOfWork(engine, lambda: NOW) as uow:
        result = fn(uow, NOW, *args, **kwargs)
        uow.commit()
        return result


@pytest.mark.parametrize("policy", ["reopen", "credit"])
def test_a_card_refund_of_retainer_money_reconciles(engine, policy):
    with acting_for(SYSTEM):
        ws = run(
            engine,
            h.create_workspace,
            {"name": "Retainers", "email": "r@example.org", "settings": {"refund_policy": policy}},
        )["id"]
    with acting_for(Scope(ws)):
        client = run(engine, h.create_client, ws, {"name": "Client"})["id"]
        invoice = run(
            engine,
            h.create_invoice,
            ws,
            {"client_id": client, "send": True, "lines": [{"description": "Work", "unit_price": 20000}]},
        )
        retainer = run(
            engine,
            h.create_invoice,
            ws,
            {
                "client_id": client,
                "kind": "retainer",
                "send": True,
                "lines": [{"description": "Retainer", "unit_price": 50000}],
            },
        )
        run(
            engine,
            h.record_payment,
            ws,
            {
                "payment_id": f"pi_{policy}",
                "allocations": [
                    {"invoice_id": invoice["id"], "amount": 20000},
                    {"invoice_id": retainer["id"], "amount": 50000},
                ],
                "amount": 70000,
                "method": "card",
                "source": "stripe",
            },
            allow_unapplied=True,
        )
        # refunded newest invoice first: the retainer's 500.00, then the invoice's 200.00
        # (open invoices, retainer held, closing balance) after each refund; the invoice is owed again
        # under "reopen", kept settled by a credit under "credit"
        owed_again = 20000 if policy == "reopen" else 0
        for n, (amount, figures) in enumerate(((30000, (0, 20000, -20000)), (40000, (owed_again, 0, owed_again)))):
            run(
                engine,
                h.record_refund,
                ws,
                {"refund_id": f"re_{policy}_{n}", "payment_id": f"pi_{policy}", "amount": amount, "currency": "USD"},
            )
            st = run(engine, h.statement, ws, client, "2026-01-01", None)
            dashboard = run(engine, h.client_dashboard, ws, client)
            open_total, held, closing = figures
            assert (st["aging"]["total"], st["unapplied_credit"], st["retainer_held"]) == (open_total, 0, held)
            assert (dashboard["outstanding"]["amount"], dashboard["retainer_available"]["amount"]) == (open_total, held)
            assert (st["closing_balance"], st["reconciles"]) == (closing, True)
        credits = [e["amount"] for e in st["entries"] if e["kind"] == "credit"]
        assert credits == ([20000] if policy == "credit" else [])  # only the invoice is kept settled by a credit

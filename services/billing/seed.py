"""`make seed`: a demo workspace with two clients, written through billing's own handlers so every
contact and invoice event goes through the outbox like real data. Does nothing if data exists."""
from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from chassis import db as dbmod
from chassis import settings
from chassis.events import utcnow
from services.billing import handlers
from services.billing.tables import workspaces

MIGRATIONS = Path(__file__).parent / "migrations"


def seed(engine) -> bool:
    now = utcnow()
    today = now.date()
    with dbmod.UnitOfWork(engine) as uow:
        if uow.execute(sa.select(sa.func.count()).select_from(workspaces)).scalar_one():
            return False
        ws = handlers.create_workspace(uow, now, name="Acme Studio", email="billing@acme.example",
                                       phone="+1 555 0100", address="1 Market Street\nSpringfield",
                                       currency="USD", locale="en_US", timezone="America/New_York")
        demo = handlers.create_client(uow, now, ws, name="Demo Client Ltd", address="42 Demo Road\nGotham",
                                      phone="+1 555 0142")
        handlers.add_contact(uow, now, ws, demo, email="demo@example.com", name="Dana Demo", is_primary=True,
                             portal_access=True)
        day = timedelta(days=1)

        def invoice(client, issued_days_ago, due_in_days, lines):
            issued = today - issued_days_ago * day
            return handlers.create_invoice(uow, now, ws, client, issue_date=issued, due_date=issued + due_in_days * day,
                                           lines=lines)

        paid = invoice(demo, 60, 30, [{"description": "Brand workshop", "quantity": 1, "unit_price": 120000}])
        handlers.record_payment(uow, now - 40 * day, ws, paid, 120000, "bank_transfer")
        invoice(demo, 5, 30, [{"description": "Website design", "quantity": 10, "unit_price": 9500},
                              {"description": "Hosting (monthly)", "quantity": 1, "unit_price": 2500}])
        partial = invoice(demo, 20, 30, [{"description": "Copywriting", "quantity": "12.5", "unit_price": 6000}])
        handlers.record_payment(uow, now - 3 * day, ws, partial, 25000, "card")
        invoice(demo, 45, 14, [{"description": "Photography day rate", "quantity": 2, "unit_price": 45000}])

        other = handlers.create_client(uow, now, ws, name="Other Corp", address="9 Elsewhere Ave")
        handlers.add_contact(uow, now, ws, other, email="other@example.com", name="Otto Other", is_primary=True,
                             portal_access=True)
        invoice(other, 10, 30, [{"description": "Secret project retainer", "quantity": 1, "unit_price": 777700}])
        uow.commit()
    return True


def main() -> int:
    url = settings.database_url("billing")
    dbmod.upgrade(url, MIGRATIONS)
    engine = dbmod.make_engine(url)
    created = seed(engine)
    engine.dispose()
    print("seeded demo data" if created else "billing already has data; seed skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

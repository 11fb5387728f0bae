"""`make seed`: a rich demo written through billing's own handlers, so every event goes through the
outbox like real data. Does nothing if the database already has a workspace.

Demo client (demo@example.com, USD): invoices paid, sent, viewed, partially paid, overdue, draft,
void and archived; a credit note partly applied; a paid retainer; quotes in every status; a monthly
recurring invoice; a comment thread. Other Corp (other@example.com) and Euro Kunde GmbH
(euro@example.com, EUR, German) have their own data, which the demo client must never see.
A second workspace, Muster Design GmbH (a German seller issuing XRechnung), bills Kunde AG
(kunde@example.com) and a French business by reverse charge.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

from chassis import db as dbmod
from chassis import settings
from chassis.clock import utcnow
from chassis.scope import SYSTEM, acting_for
from services.billing import handlers as h
from services.billing.handlers.common import workspace_row, workspace_today
from services.billing.tables import workspaces

MIGRATIONS = Path(__file__).parent / "migrations"
DAY = timedelta(days=1)


def seed(engine) -> bool:
    now = utcnow()
    # A command-line tool that creates a workspace and fills it in one transaction, before any scope
    # could name it: it acts for the system (on the allow-list in tests/unit/test_scopes.py).
    with acting_for(SYSTEM), dbmod.UnitOfWork(engine) as uow:
        if uow.execute(sa.select(sa.func.count()).select_from(workspaces)).scalar_one():
            return False
        ws = h.create_workspace(
            uow,
            now,
            {
                "name": "Acme Studio",
                "email": "billing@acme.example",
                "phone": "+1 555 0100",
                "address": "1 Market Street\nSpringfield, IL 62701",
                "currency": "USD",
                "locale": "en_US",
                "timezone": "America/New_York",
                "tax_id": "US-12-3456789",
                "brand_color": "#1d4ed8",
                "settings": {
                    "booking_links": [
                        {"id": "consultation-30", "name": "30-minute consultation", "duration_minutes": 30}
                    ],
                    "partial_payment_minimum": 1000,
                },
            },
        )["id"]
        today = workspace_today(workspace_row(uow, ws), now)

        def at(days_ago: int):
            return now - days_ago * DAY

        def invoice(client, days_ago, terms, lines, send=True, kind="standard"):
            return h.create_invoice(
                uow,
                at(days_ago),
                ws,
                {
                    "client_id": client,
                    "issue_date": (today - days_ago * DAY).isoformat(),
                    "payment_terms_days": terms,
                    "lines": lines,
                    "send": send,
                    "kind": kind,
                },
            )["id"]

        demo = h.create_client(
            uow,
            at(90),
            ws,
            {
                "name": "Demo Client Ltd",
                "address": "42 Demo Road\nGotham, NJ 07001",
                "phone": "+1 555 0142",
                "tax_id": "DE-999",
            },
        )["id"]
        h.add_contact(
            uow,
            at(90),
            ws,
            demo,
            {
                "email": "demo@example.com",
                "name": "Dana Demo",
                "is_primary": True,
                "portal_access": True,
                "role": "owner",
            },
        )
        h.add_contact(uow, at(90), ws, demo, {"email": "accounts@demo-client.example", "name": "Demo Accounts"})

        paid = invoice(demo, 60, 30, [{"description": "Brand workshop", "quantity": 1, "unit_price": 120000}])
        h.record_payment(
            uow, at(40), ws, {"invoice_id": paid, "amount": 120000, "method": "bank_transfer", "reference": "TRX-88213"}
        )
        invoice(
            demo,
            5,
            30,
            [
                {"description": "Website design (hours)", "quantity": 10, "unit_price": 9500, "discount_percent": 10},
                {"description": "Hosting, first month", "quantity": 1, "unit_price": 2500, "tax_rate": 20},
            ],
        )
        viewed = invoice(demo, 10, 30, [{"description": "SEO audit", "quantity": 1, "unit_price": 40000}])
        h.mark_invoice_viewed(uow, at(8), ws, demo, viewed)
        partial = invoice(
            demo, 20, 30, [{"description": "Copywriting (hours)", "quantity": "12.5", "unit_price": 6000}]
        )
        h.record_payment(
            uow, at(3), ws, {"invoice_id": partial, "amount": 25000, "method": "card", "reference": "Card ending 4242"}
        )
        overdue = invoice(demo, 45, 14, [{"description": "Photography day rate", "quantity": 2, "unit_price": 45000}])
        invoice(demo, 1, 30, [{"description": "Next quarter planning", "quantity": 1, "unit_price": 30000}], send=False)
        void = invoice(
            demo, 30, 30, [{"description": "Duplicate of brand workshop", "quantity": 1, "unit_price": 120000}]
        )
        h.void_invoice(uow, at(29), ws, void)
        old = invoice(demo, 400, 30, [{"description": "Logo sketches (last year)", "quantity": 1, "unit_price": 20000}])
        h.record_payment(uow, at(380), ws, {"invoice_id": old, "amount": 20000, "method": "cash"})
        h.archive_invoice(uow, at(300), ws, old)

        h.issue_credit_note(
            uow,
            at(12),
            ws,
            {"client_id": demo, "amount": 15000, "reason": "Goodwill credit for the delayed photo delivery"},
        )
        h.apply_credit(uow, at(12), ws, overdue, 5000)
        retainer = invoice(
            demo,
            35,
            7,
            [{"description": "Retainer for ongoing support", "quantity": 1, "unit_price": 50000}],
            kind="retainer",
        )
        h.record_payment(
            uow,
            at(30),
            ws,
            {"invoice_id": retainer, "amount": 50000, "method": "bank_transfer", "reference": "TRX-90001"},
        )

        h.add_comment(
            uow,
            at(9),
            ws,
            "invoice",
            overdue,
            "client",
            "Dana Demo",
            "Could you add our PO number 4471 to this invoice?",
        )
        h.add_comment(
            uow,
            at(8),
            ws,
            "invoice",
            overdue,
            "business",
            "Acme Studio",
            "Of course. PO 4471 is noted on our side; no need to resend.",
        )

        def quote(days_ago, lines, expires_in=30, send=True):
            return h.create_quote(
                uow,
                at(days_ago),
                ws,
                {
                    "client_id": demo,
                    "issue_date": (today - days_ago * DAY).isoformat(),
                    "expiry_date": (today - days_ago * DAY + expires_in * DAY).isoformat(),
                    "lines": lines,
                    "send": send,
                },
            )["id"]

        quote(2, [{"description": "Mobile app prototype", "quantity": 1, "unit_price": 350000}])
        accepted = quote(15, [{"description": "Newsletter templates", "quantity": 3, "unit_price": 12000}])
        h.accept_quote(uow, at(14), ws, accepted, "demo@example.com", "203.0.113.7", "Dana Demo")
        rejected = quote(20, [{"description": "Video production", "quantity": 1, "unit_price": 800000}])
        h.reject_quote(uow, at(18), ws, rejected, "demo@example.com", "Over our budget this year.")
        quote(60, [{"description": "Trade show booth design", "quantity": 1, "unit_price": 240000}], expires_in=14)
        quote(0, [{"description": "Annual report layout", "quantity": 1, "unit_price": 180000}], send=False)

        next_month = (today.replace(day=1) + 32 * DAY).replace(day=1)
        h.create_recurring(
            uow,
            now,
            ws,
            {
                "client_id": demo,
                "frequency": "monthly",
                "interval": 1,
                "start_date": next_month.isoformat(),
                "payment_terms_days": 14,
                "lines": [{"description": "Hosting (monthly)", "quantity": 1, "unit_price": 2500, "tax_rate": 20}],
                "autopay": True,
            },
        )

        other = h.create_client(uow, at(50), ws, {"name": "Other Corp", "address": "9 Elsewhere Ave"})["id"]
        h.add_contact(
            uow,
            at(50),
            ws,
            other,
            {"email": "other@example.com", "name": "Otto Other", "portal_access": True, "role": "owner"},
        )
        invoice(other, 10, 30, [{"description": "Secret project retainer", "quantity": 1, "unit_price": 777700}])
        h.create_quote(
            uow,
            at(3),
            ws,
            {
                "client_id": other,
                "lines": [{"description": "Secret phase two", "quantity": 1, "unit_price": 990000}],
                "send": True,
            },
        )

        euro = h.create_client(
            uow,
            at(20),
            ws,
            {
                "name": "Euro Kunde GmbH",
                "address": "Hauptstraße 5\n10115 Berlin",
                "currency": "EUR",
                "locale": "de_DE",
                "timezone": "Europe/Berlin",
            },
        )["id"]
        h.add_contact(
            uow,
            at(20),
            ws,
            euro,
            {
                "email": "euro@example.com",
                "name": "Eva Euro",
                "locale": "de_DE",
                "portal_access": True,
                "role": "owner",
            },
        )
        invoice(
            euro, 7, 14, [{"description": "Übersetzung Website", "quantity": 3, "unit_price": 33333, "tax_rate": 19}]
        )
        seed_german_seller(uow, now)
        uow.commit()
    return True


def seed_german_seller(uow, now) -> None:
    """A German seller (VAT id, IBAN, XRechnung) whose invoices cover the VAT categories an auditor
    meets: standard 19 % and 7 %, zero rated, exempt, and reverse charge to a French business."""
    ws = h.create_workspace(
        uow,
        now - 30 * DAY,
        {
            "name": "Muster Design GmbH",
            "email": "rechnung@muster-design.example",
            "phone": "+49 30 1234567",
            "address": "Friedrichstraße 10\n10117 Berlin",
            "currency": "EUR",
            "locale": "de_DE",
            "timezone": "Europe/Berlin",
            "tax_id": "29/123/45678",
            "settings": {
                "default_payment_terms_days": 14,
                "legal": {
                    "country": "DE",
                    "vat_id": "DE136695976",
                    "iban": "DE89370400440532013000",
                    "bic": "COBADEFFXXX",
                    "einvoice_profile": "xrechnung",
                },
            },
        },
    )["id"]
    today = workspace_today(workspace_row(uow, ws), now)
    kunde = h.create_client(
        uow,
        now - 20 * DAY,
        ws,
        {
            "name": "Kunde AG",
            "address": "Hauptstraße 5\n80331 München",
            "country": "DE",
            "vat_id": "DE129273398",
            "buyer_reference": "04011000-12345-03",
            "contacts": [
                {
                    "email": "kunde@example.com",
                    "name": "Karl Kunde",
                    "is_primary": True,
                    "portal_access": True,
                    "role": "owner",
                }
            ],
        },
    )["id"]
    client_fr = h.create_client(
        uow,
        now - 20 * DAY,
        ws,
        {
            "name": "Client Exemple SARL",
            "address": "12 rue de la Paix\n75002 Paris",
            "country": "FR",
            "vat_id": "FR40303265045",
            "buyer_reference": "PO-7781",
            "locale": "en_US",
            "contacts": [{"email": "achats@client-exemple.example", "name": "Claire", "is_primary": True}],
        },
    )["id"]
    last_month_end = today.replace(day=1) - DAY
    period = {
        "service_period_start": last_month_end.replace(day=1).isoformat(),
        "service_period_end": last_month_end.isoformat(),
    }
    h.create_invoice(
        uow,
        now - 2 * DAY,
        ws,
        {
            "client_id": kunde,
            "issue_date": (today - 2 * DAY).isoformat(),
            **period,
            "tax_exemption_reason": "§ 4 Nr. 21 UStG (Schulungsleistung)",
            "lines": [
                {"description": "Webdesign (Stunden)", "quantity": 12, "unit_price": 9000, "tax_rate": 19},
                {"description": "Fachbuch Typografie", "quantity": 2, "unit_price": 3900, "tax_rate": 7},
                {"description": "Versand ins Drittland", "quantity": 1, "unit_price": 1500, "tax_category": "Z"},
                {"description": "Schulung Barrierefreiheit", "quantity": 1, "unit_price": 60000, "tax_category": "E"},
            ],
            "send": True,
        },
    )
    h.create_invoice(
        uow,
        now - DAY,
        ws,
        {
            "client_id": client_fr,
            "issue_date": (today - DAY).isoformat(),
            "supply_date": (today - 3 * DAY).isoformat(),
            "lines": [
                {"description": "Brand identity workshop", "quantity": 2, "unit_price": 120000, "tax_category": "AE"}
            ],
            "send": True,
        },
    )


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

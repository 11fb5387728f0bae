"""The portal's reads on real PostgreSQL, as the service's own role under row-level security: the
dashboard in one round trip (its scope and its statement sent together, nothing to commit), its
answer the same as the listings give, and the invoice listing served by its indexes, never a
sequential scan of invoices, in a workspace of 12,000 invoices (among 60,000). The plans are written to
test-artifacts/invoice-list-plans.txt. Each page's prepared statement runs the plan made once, never
one made again for its values. And the summary that the dashboard reads, recomputed on every
payment, reads what is open, not the client's history of paid invoices and payments."""

from __future__ import annotations

import functools
import json
from datetime import datetime, timezone
from types import SimpleNamespace

import psycopg2
import pytest
import sqlalchemy as sa

from chassis import db as chassis_db
from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.errors import NotFound
from chassis.nameko_ext import DatabaseHandle, ServiceBase
from chassis.scope import SYSTEM, Scope, acting_for
from services.billing import handlers as h
from services.billing.handlers import summaries
from services.billing.handlers.common import client_row, client_snapshot, load_lines
from tests.conftest import ARTIFACTS, ROOT, RUN_ID, databases_with_roles
from tests.integration.round_trips import RoundTrips

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
INVOICES = 12_000  # in the workspace under test, and in each of the others
OTHERS = 4  # workspaces: the one under test holds a fifth of the table (in production, far less)
BIG_SHARE = 0.4  # of them, one client's: a portal listing that is not small either
LISTING_INDEXES = {
    "ix_invoices_client_listing",
    "ix_invoices_listing",
    "ix_invoices_open",
    "ix_invoices_client_id",
    "invoices_pkey",
}


@pytest.fixture(scope="module")
def billing(postgres_admin_url):
    """Billing's database as in production (its own role, bound by the policies), with five workspaces
    of 40 clients and 12,000 invoices each; in each, one client holds 40% of them and 39 share the
    rest. Rows the handlers would make in thousands are written in bulk by the admin (invoices, their
    number endings as create_invoice writes them, the other workspaces' clients)."""
    with databases_with_roles(postgres_admin_url, f"portal_{RUN_ID}_readmodel", ("billing",)) as urls:
        upgrade(urls["service"]["billing"], ROOT / "services" / "billing" / "migrations")
        engine = make_engine(urls["service"]["billing"], pool_size=2)
        run = functools.partial(_committed, engine)

        made = []
        for n in range(1 + OTHERS):
            ws = run(
                SYSTEM,
                h.create_workspace,
                {"name": f"Studio {n}", "email": "b@example.org", "timezone": "America/New_York"},
            )["id"]
            made.append(
                (
                    ws,
                    [
                        run(Scope(ws), h.create_client, ws, {"name": f"Client {i}"})["id"]
                        for i in range(40 if n == 0 else 0)
                    ],
                )
            )
        with psycopg2.connect(urls["admin"]["billing"]) as conn, conn.cursor() as cur:
            for ws, clients in made[1:]:  # the other workspaces' clients, in bulk: only their invoices matter
                cur.execute(
                    """INSERT INTO clients (id, workspace_id, name, address, phone, currency, locale, timezone,
                                                    created_at)
                               SELECT md5(%(ws)s || c)::uuid::text, %(ws)s, 'Client ' || c, '', '', 'USD', 'en_US',
                                      'America/New_York', now()
                               FROM generate_series(1, 40) c RETURNING id""",
                    {"ws": ws},
                )
                clients += [row[0] for row in cur.fetchall()]
            for ws, clients in made:
                _bulk_invoices(cur, ws, clients, INVOICES)
            cur.execute("""INSERT INTO invoice_number_suffixes (invoice_id, suffix, workspace_id, client_id)
                           SELECT i.id, lower(substr(i.number, p)), i.workspace_id, i.client_id
                           FROM invoices i, generate_series(1, length(i.number)) p""")
            _bulk_payments(cur, made[0][0], made[0][1][0])
        _analyze(urls["admin"]["billing"])
        ws, clients = made[0]
        run(Scope(ws), h.repair_client_summaries, ws)  # the summaries, as the handlers would have kept them
        yield SimpleNamespace(
            engine=engine, url=urls["service"]["billing"], run=run, ws=ws, big=clients[0], small=clients[1]
        )
        engine.dispose()


def _committed(engine, scope, fn, *args, **kwargs):
    """A handler's unit of work in `scope`, committed; its result."""
    with acting_for(scope), UnitOfWork(engine, lambda: NOW) as uow:
        result = fn(uow, NOW, *args, **kwargs)
        uow.commit()
        return result


def _analyze(admin_url: str) -> None:
    """Statistics for every table, as autovacuum would have them once it came by."""
    with psycopg2.connect(admin_url) as conn:
        conn.autocommit = True
        conn.cursor().execute("ANALYZE")


def _bulk_invoices(cur, ws: str, clients: list[str], count: int) -> None:
    """`count` standard invoices over 8 years, four a day, numbered by year. The newest 600 are a mix
    of every status; older ones are paid, one in 50 void."""
    cur.execute(
        """
        INSERT INTO invoices (id, workspace_id, client_id, number, kind, status, currency, issue_date, due_date,
                              subtotal, discount_total, tax_total, total, amount_paid, amount_credited, notes, terms,
                              sent_at, created_at)
        SELECT md5(%(ws)s || i)::uuid::text, %(ws)s,
               CASE WHEN i %% 10 < %(share)s THEN (%(clients)s::text[])[1]
                    ELSE (%(clients)s::text[])[2 + i %% greatest(cardinality(%(clients)s::text[]) - 1, 1)] END,
               'INV-' || (2018 + i / 1500) || '-' || lpad((i %% 1500 + 1)::text, 5, '0'), 'standard', s.status, 'USD',
               date '2018-06-01' + i / 4, date '2018-06-01' + i / 4 + 30, t.total, 0, 0, t.total,
               CASE s.status WHEN 'paid' THEN t.total WHEN 'partially_paid' THEN t.total / 2 ELSE 0 END, 0, '', '',
               timestamptz '2018-06-01' + (i / 4) * interval '1 day',
               timestamptz '2018-06-01' + (i / 4) * interval '1 day'
        FROM generate_series(0, %(last)s) i,
             LATERAL (SELECT 1000 + (i * 37) %% 90000 AS total) t,
             LATERAL (SELECT CASE WHEN i < %(last)s - 600 THEN (CASE WHEN i %% 50 = 0 THEN 'void' ELSE 'paid' END)
                                  ELSE (ARRAY['sent', 'viewed', 'partially_paid', 'paid', 'paid', 'draft'])[1 + i %% 6]
                             END AS status) s""",
        {
            "ws": ws,
            "clients": clients,
            "count": count,
            "last": count - 1,
            "share": int(BIG_SHARE * 10) if len(clients) > 1 else 10,
        },
    )


def _bulk_payments(cur, ws: str, client: str) -> None:
    """A card payment for each of the client's paid invoices, paid in full three days after issue."""
    paid = "FROM invoices WHERE workspace_id = %(ws)s AND client_id = %(client)s AND status = 'paid'"
    cur.execute(
        "INSERT INTO payments (id, workspace_id, client_id, kind, amount, currency, method, reference, source, "
        "received_at, unapplied) SELECT 'pay-' || id, workspace_id, client_id, 'invoice', total, currency, 'card', "
        f"'', 'stripe', created_at + interval '3 days', 0 {paid}",
        {"ws": ws, "client": client},
    )
    cur.execute(
        f"INSERT INTO payment_allocations (payment_id, invoice_id, amount) SELECT 'pay-' || id, id, total {paid}",
        {"ws": ws, "client": client},
    )


def as_the_service(engine, handler, *args):
    """One RPC's database work exactly as BillingService runs it (ServiceBase._tx): a unit of work from
    the service's handle, the handler, the commit."""
    service = SimpleNamespace(db=DatabaseHandle(engine, lambda: NOW), clock=lambda: NOW, name="billing")
    return ServiceBase._tx(service, handler, *args)


def test_the_dashboard_takes_one_round_trip_and_answers_what_the_listings_do(billing):
    with acting_for(Scope(billing.ws, billing.big)):
        as_the_service(billing.engine, h.client_dashboard, billing.ws, billing.big)  # the pool has a connection
        trips = RoundTrips()
        try:
            dashboard = as_the_service(billing.engine, h.client_dashboard, billing.ws, billing.big)
        finally:
            trips.remove()
        assert trips.count == 1, trips.statements
        listing = as_the_service(
            billing.engine, h.list_invoices, billing.ws, {"client_id": billing.big, "portal": True, "limit": 5}
        )
        balances = as_the_service(billing.engine, h.client_balances, billing.ws, billing.big)
        activity = as_the_service(billing.engine, h.list_activity, billing.ws, billing.big, 10)
        listing_only = {"client_id": billing.big, "portal": True, "limit": 5, "fields": "listing"}
        as_the_service(billing.engine, h.client_dashboard, billing.ws, billing.big, "brief")  # prepared
        as_the_service(billing.engine, h.list_invoices, billing.ws, listing_only)
        trips = RoundTrips()
        try:  # in brief, as the portal's pages ask: one round trip each too, their own prepared statements
            brief = as_the_service(billing.engine, h.client_dashboard, billing.ws, billing.big, "brief")
            listed = as_the_service(billing.engine, h.list_invoices, billing.ws, listing_only)
        finally:
            trips.remove()
        assert trips.count == 2, trips.statements
    assert dashboard["recent_invoices"] == listing["items"]  # dates, times and JSON read back alike
    assert brief["recent_invoices"] == listed["items"] and "recent_activity" not in brief
    whole = {k: v for k, v in dashboard.items() if k not in ("recent_invoices", "recent_quotes", "recent_activity")}
    assert {k: v for k, v in brief.items() if k != "recent_invoices"} == whole
    assert dashboard["recent_activity"] == activity
    assert (dashboard["outstanding"]["amount"], dashboard["credit_available"]["amount"]) == (
        balances["outstanding"],
        balances["credit_available"],
    )
    assert dashboard["overdue"]["count"] > 0


def test_the_pages_prepared_statements_run_the_plan_made_once(billing):
    """Each EXECUTE of a page's statement runs its generic plan: none is planned again for its values,
    whatever PostgreSQL would estimate (left to choose, it re-planned the dashboard on every call once
    an ANALYZE made the generic plan look dearer)."""
    page = {"client_id": billing.big, "portal": True, "limit": 20, "status": "unpaid", "fields": "listing"}
    used = {}  # the connections that ran them (a read alone has a pool of its own)

    def seen(conn, cursor, statement, *_):
        if statement.startswith("EXECUTE") or " EXECUTE " in statement:
            used[id(conn.connection.dbapi_connection)] = conn.connection.dbapi_connection

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", seen)
    try:
        with acting_for(Scope(billing.ws, billing.big)):
            for _ in range(8):  # past the five calls PostgreSQL plans for their values before it chooses
                as_the_service(billing.engine, h.client_dashboard, billing.ws, billing.big, "brief")
                as_the_service(billing.engine, h.list_invoices, billing.ws, page)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", seen)
    plans = []
    for dbapi_connection in used.values():  # idle in their pools now
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT name, generic_plans, custom_plans FROM pg_prepared_statements")
            plans += cursor.fetchall()
        dbapi_connection.rollback()
    assert {"billing_client_dashboard_brief", "billing_invoices_unpaid_desc_date_listing"} <= {
        name for name, *_ in plans
    }, plans
    assert all(custom == 0 and generic >= 1 for _, generic, custom in plans), plans
    assert sum(generic for *_, generic, _ in plans) >= 16, plans


def test_the_plan_setting_keeps_the_options_the_url_gives(billing):
    engine = make_engine(f"{billing.url}?options=-c%20statement_timeout%3D7000", pool_size=1)
    try:
        for pool in (engine, chassis_db._ALONE[engine]):  # a transaction's and a read alone's
            with pool.connect() as conn:
                settings = conn.exec_driver_sql(
                    "SELECT current_setting('plan_cache_mode'), current_setting('statement_timeout')"
                )
                assert settings.one() == ("force_generic_plan", "7s")
    finally:
        engine.dispose()


def test_a_portal_invoice_page_takes_one_round_trip(billing):
    """The page's one prepared statement (the reader with the business's today, the count, the page
    with its verification codes) with its scope, sent together: no query per lookup the page needs."""
    page = {"client_id": billing.big, "portal": True, "limit": 20, "status": "unpaid"}
    with acting_for(Scope(billing.ws, billing.big)):
        as_the_service(billing.engine, h.list_invoices, billing.ws, page)  # the pool has a connection
        trips = RoundTrips()
        try:
            listing = as_the_service(billing.engine, h.list_invoices, billing.ws, page)
        finally:
            trips.remove()
    assert trips.count == 1, trips.statements
    assert len(listing["items"]) == 20 and all(item["verification_code"] is None for item in listing["items"])
    assert listing["client"] == {
        "name": "Client 0",
        "currency": "USD",
        "locale": "en_US",
        "timezone": "America/New_York",
    }


def test_an_invoice_with_payments_and_a_dispute_reads_in_one_round_trip(billing):
    """The invoice with its business, client, code, processing amount, lines, payments, credits and
    latest dispute, sent with its scope: one statement, nothing to commit. Quantities and rates read
    back exactly, as the lines' own query reads them."""
    ws = billing.ws
    client = billing.run(Scope(ws), h.create_client, ws, {"name": "Client with a dispute"})["id"]
    lines = [
        {"description": "Design", "unit_price": 7000},
        {"description": "Hosting", "unit_price": 3000},
        {"description": "Support", "unit_price": 1000, "quantity": "0.1", "discount_percent": "2.5"},
    ]
    with acting_for(Scope(ws)):
        invoice = billing.run(Scope(ws), h.create_invoice, ws, {"client_id": client, "send": True, "lines": lines})
        billing.run(Scope(ws), h.record_payment, ws, {"invoice_id": invoice["id"], "amount": 2500})
        contact = billing.run(Scope(ws), h.add_contact, ws, client, {"name": "Ann", "email": "ann@example.org"})
    owner = Scope(ws, client, role="owner")
    raised = billing.run(
        owner, h.raise_invoice_dispute, ws, client, contact["id"], "Ann", invoice["id"], "Hosting was down", [2]
    )
    with acting_for(Scope(ws, client)):
        as_the_service(billing.engine, h.get_invoice, ws, invoice["id"], client)  # the pool has a connection
        trips = RoundTrips()
        try:
            view = as_the_service(billing.engine, h.get_invoice, ws, invoice["id"], client)
        finally:
            trips.remove()
    assert trips.count == 1, trips.statements
    assert (view["business_name"], view["locale"], view["timezone"]) == ("Studio 0", "en_US", "America/New_York")
    assert [line["description"] for line in view["lines"]] == ["Design", "Hosting", "Support"]
    assert (view["lines"][2]["quantity"], view["lines"][2]["discount_percent"]) == ("0.1000", "2.5000")
    assert view["lines"] == billing.run(Scope(ws), lambda uow, _now: load_lines(uow, "invoice", invoice["id"]))
    assert [(p["amount"], p["currency"]) for p in view["payments"]] == [(2500, "USD")]
    assert (view["credits"], view["processing"], view["einvoice"]) == ([], 0, False)
    assert view["balance"] == invoice["total"] - 2500 and view["client"]["name"] == "Client with a dispute"
    assert view["verification_code"] is not None
    assert view["dispute"]["id"] == raised["id"] and view["dispute"]["lines"] == [2]
    with acting_for(Scope(ws, billing.big)), pytest.raises(NotFound):  # another client's invoice: not there
        as_the_service(billing.engine, h.get_invoice, ws, invoice["id"], billing.big)

    # a draft has kept no copy of its client: it shows the client as it is now, addressed to Ann
    draft = billing.run(Scope(ws), h.create_invoice, ws, {"client_id": client, "lines": lines[:1]})
    with acting_for(Scope(ws)):
        shown = as_the_service(billing.engine, h.get_invoice, ws, draft["id"])["client"]
    now = billing.run(Scope(ws), lambda uow, _now: client_snapshot(uow, client_row(uow, ws, client)))
    assert shown == now and (shown["contact_name"], shown["contact_email"]) == ("Ann", "ann@example.org")
    with acting_for(Scope(ws, client)), pytest.raises(NotFound):  # nor is a draft there for its client
        as_the_service(billing.engine, h.get_invoice, ws, draft["id"], client)


def test_a_dashboard_with_quotes_payments_and_activity_reads_back_like_the_listings(billing):
    ws, client = billing.ws, billing.small
    with acting_for(Scope(ws)):
        for i in range(7):
            billing.run(
                Scope(ws),
                h.create_quote,
                ws,
                {"client_id": client, "send": i != 3, "lines": [{"description": f"Idea {i}", "unit_price": 100 + i}]},
            )
        invoice = billing.run(
            Scope(ws),
            h.create_invoice,
            ws,
            {"client_id": client, "send": True, "lines": [{"description": "Work", "unit_price": 5000}]},
        )
        billing.run(Scope(ws), h.record_payment, ws, {"invoice_id": invoice["id"], "amount": 1234})
        billing.run(Scope(ws), h.archive_invoice, ws, invoice["id"])
    with acting_for(Scope(ws, client)):
        dashboard = as_the_service(billing.engine, h.client_dashboard, ws, client)
        quotes = as_the_service(billing.engine, h.list_quotes, ws, {"client_id": client, "portal": True, "limit": 5})
        listing = as_the_service(billing.engine, h.list_invoices, ws, {"client_id": client, "portal": True, "limit": 5})
        activity = as_the_service(billing.engine, h.list_activity, ws, client, 10)
    assert dashboard["recent_quotes"] == quotes["items"] and len(quotes["items"]) == 5
    assert dashboard["recent_invoices"] == listing["items"]
    assert dashboard["recent_activity"] == activity and activity[0]["data"]
    assert dashboard["last_payment"] == {"amount": 1234, "currency": "USD", "received_at": NOW.isoformat()}


def _reads_invoices(statement: str) -> bool:
    reads = " invoices" in statement and statement.lstrip().upper().startswith("SELECT")
    # a prepared statement (chassis/prepared.py), after any planner settings sent with it
    return reads or statement.rsplit("; ", 1)[-1].startswith("EXECUTE")


def _plans(engine, handler, *args, explained=_reads_invoices) -> tuple[object, list[tuple[str, dict]]]:
    """The handler's result, and each statement it ran that is `explained` (by default, its reads of
    invoices) with its plan and timing (EXPLAIN ANALYZE, same parameters, same transaction, so the
    same scope and policies; the transaction is rolled back)."""
    seen = []
    listen = lambda conn, cursor, statement, parameters, *_: seen.append((statement, parameters))  # noqa: E731
    sa.event.listen(engine, "before_cursor_execute", listen)
    try:
        with UnitOfWork(engine, lambda: NOW) as uow:
            cursor = uow.conn.connection.dbapi_connection.cursor()  # the transaction, open: a read runs in it
            result = handler(uow, NOW, *args)
            plans = []
            for statement, parameters in seen:
                if explained(statement):
                    statement = statement.rsplit("; ", 1)[-1]  # a prepared statement's, after its settings
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
                    plans.append((statement, cursor.fetchone()[0][0]))
    finally:
        sa.event.remove(engine, "before_cursor_execute", listen)
    return result, plans


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _uses_indexes(label: str, plans) -> set[str]:
    """The indexes the plans read invoices with; no plan may scan invoices sequentially."""
    used = set()
    with (ARTIFACTS / "invoice-list-plans.txt").open("a") as out:
        for statement, plan in plans:
            out.write(f"== {label}\n{statement}\n{json.dumps(plan, indent=1)}\n\n")
            for node in _nodes(plan["Plan"]):
                if node.get("Relation Name") in ("invoices", "invoice_number_suffixes"):
                    assert node["Node Type"] != "Seq Scan", f"{label}: {statement}\n{json.dumps(plan, indent=1)}"
                if "Index Name" in node:  # a bitmap index scan names its index, not its table
                    used.add(node["Index Name"])
    return used


def _in_index_order(plans) -> bool:
    """The page's rows come from an index in the listing's order: no sort of the matching rows."""
    _, plan = plans[-1]
    kinds = [node["Node Type"] for node in _nodes(plan["Plan"])]
    return "Limit" in kinds and "Sort" not in kinds


def test_a_portal_page_by_number_reads_the_rows_the_pages_after_a_cursor_read(billing):
    """On PostgreSQL too: the prepared portal page (its rows as JSON) and the pages after a cursor
    (built as asked) give the same invoices, read back alike."""
    portal = {"client_id": billing.big, "portal": True, "limit": 20}
    with acting_for(Scope(billing.ws, billing.big)):
        for filters in (
            {},
            {"status": "unpaid", "sort": "due_date"},
            {"status": "overdue", "sort": "-amount"},
            {"status": "paid", "sort": "number"},
            {"search": "2024-000", "sort": "-date"},
        ):
            filters = {**portal, **filters}
            by_offset = [
                item
                for offset in (0, 20, 40)
                for item in as_the_service(billing.engine, h.list_invoices, billing.ws, {**filters, "offset": offset})[
                    "items"
                ]
            ]
            page = as_the_service(billing.engine, h.list_invoices, billing.ws, filters)
            listing = as_the_service(billing.engine, h.list_invoices, billing.ws, {**filters, "fields": "listing"})
            assert listing["total"] == page["total"] and listing["client"] == page["client"]
            assert listing["items"] == [{k: item[k] for k in listing["items"][0]} for item in page["items"]]
            assert "notes" not in listing["items"][0] and "balance" in listing["items"][0]
            by_cursor = list(page["items"])
            while page["next_cursor"] and len(by_cursor) < 60:
                page = as_the_service(
                    billing.engine, h.list_invoices, billing.ws, {**filters, "after": page["next_cursor"]}
                )
                by_cursor += page["items"]
            assert by_offset == by_cursor and len(by_offset) >= 40, filters


def test_the_invoice_listing_is_served_by_its_indexes(billing):
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "invoice-list-plans.txt").write_text("")
    ws, big = billing.ws, billing.big
    portal = {"client_id": big, "portal": True, "limit": 20}
    with acting_for(Scope(ws, big)):
        first, plans = _plans(billing.engine, h.list_invoices, ws, portal)
        assert first["total"] > 4000 and first["next_cursor"]
        assert "ix_invoices_client_listing" in _uses_indexes("portal: first page", plans) and _in_index_order(plans)
        listed, plans = _plans(billing.engine, h.list_invoices, ws, {**portal, "fields": "listing"})  # the page's
        assert listed["total"] == first["total"] and _in_index_order(plans)
        assert "ix_invoices_client_listing" in _uses_indexes("portal: first page, fields listing", plans)
        after = first["next_cursor"]
        for _ in range(10):  # ten pages on
            page = as_the_service(billing.engine, h.list_invoices, ws, {**portal, "after": after})
            after = page["next_cursor"]
        later, plans = _plans(billing.engine, h.list_invoices, ws, {**portal, "after": after})
        key = lambda invoice: (invoice["issue_date"], invoice["number"])  # noqa: E731 - newest first
        assert key(later["items"][0]) < key(page["items"][-1])
        assert "ix_invoices_client_listing" in _uses_indexes("portal: a later page by cursor", plans)
        assert _in_index_order(plans) and len(plans) == 1  # and no count
        overdue, plans = _plans(billing.engine, h.list_invoices, ws, {**portal, "status": "overdue"})
        assert overdue["total"] > 0 and all(i["display_status"] == "overdue" for i in overdue["items"])
        assert _uses_indexes("portal: overdue", plans) & LISTING_INDEXES
        found, plans = _plans(billing.engine, h.list_invoices, ws, {**portal, "search": "2024-0004"})
        assert found["total"] > 0 and all("2024-0004" in i["number"] for i in found["items"])
        assert _uses_indexes("portal: part of a number", plans)
        _, plans = _plans(billing.engine, h.client_dashboard, ws, big)
        assert _uses_indexes("the dashboard", plans) & LISTING_INDEXES
        _, plans = _plans(billing.engine, h.client_dashboard, ws, big, "brief")
        assert _uses_indexes("the dashboard in brief", plans) & LISTING_INDEXES
    with acting_for(Scope(ws)):  # the admin API: the whole workspace
        first, plans = _plans(billing.engine, h.list_invoices, ws, {"limit": 20})
        assert first["total"] >= INVOICES * 0.99
        assert "ix_invoices_listing" in _uses_indexes("workspace: first page", plans) and _in_index_order(plans)
        later, plans = _plans(billing.engine, h.list_invoices, ws, {"limit": 20, "after": first["next_cursor"]})
        assert "ix_invoices_listing" in _uses_indexes("workspace: the next page by cursor", plans)
        assert _in_index_order(plans)
        unpaid, plans = _plans(billing.engine, h.list_invoices, ws, {"limit": 20, "status": "unpaid"})
        assert unpaid["total"] > 0
        assert _uses_indexes("workspace: unpaid", plans) & LISTING_INDEXES
        paid, plans = _plans(billing.engine, h.list_invoices, ws, {"limit": 20, "status": "paid"})
        assert _uses_indexes("workspace: paid", plans) & LISTING_INDEXES
        found, plans = _plans(billing.engine, h.list_invoices, ws, {"limit": 20, "search": "2021-0123"})
        assert sorted(i["number"] for i in found["items"]) == [f"INV-2021-0123{d}" for d in range(10)]
        _uses_indexes("workspace: part of a number", plans)


def _rows_read(node: dict) -> float:
    """The rows a plan node read: those it returned and those its filters dropped, over all its loops."""
    returned = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
    return returned + node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)


@pytest.mark.parametrize("first", ["small", "big"])
def test_the_dashboards_plan_reads_a_clients_open_and_newest_invoices_not_its_history(billing, first):
    """The dashboard's prepared statement has one generic plan per connection, made at its first call
    with that caller's scope, whichever client it was. Whoever came first, the plan sums what is
    overdue from the client's open invoices by their partial index and reads the newest invoices from
    the listing's index in order, not the thousands of invoices a client with a long history holds;
    and, planned without sorts where an index gives the order, it is not compiled (JIT) either."""
    ws, big = billing.ws, billing.big
    for fields in ("all", "brief"):
        engine = make_engine(billing.url, pool_size=1)  # a connection on which nothing is prepared yet
        try:
            with acting_for(Scope(ws, getattr(billing, first))):
                _plans(engine, h.client_dashboard, ws, getattr(billing, first), fields)  # the plan is made
            with acting_for(Scope(ws, big)):
                _, plans = _plans(engine, h.client_dashboard, ws, big, fields, explained=lambda sql: "EXECUTE" in sql)
        finally:
            engine.dispose()
        [(_, plan)] = plans
        open_reads = [_rows_read(node) for node in _nodes(plan["Plan"]) if node.get("Index Name") == "ix_invoices_open"]
        invoices_read = sum(
            _rows_read(node) for node in _nodes(plan["Plan"]) if node.get("Relation Name") == "invoices"
        )
        assert open_reads and invoices_read < 600, (fields, invoices_read, json.dumps(plan, indent=1))
        assert "JIT" not in plan, (fields, plan["JIT"])  # compiled on every call, it costs more than the read


def test_the_dashboards_planner_settings_end_with_it_inside_a_transaction(billing):
    """Read inside a transaction that is already open, the dashboard's planner settings hold for its
    statement alone: the transaction's next statements are planned as usual."""
    with acting_for(Scope(billing.ws, billing.big)), UnitOfWork(billing.engine, lambda: NOW) as uow:
        uow.execute(sa.text("SELECT 1"))  # the transaction is open: the dashboard is one of its statements
        dashboard = h.client_dashboard(uow, NOW, billing.ws, billing.big)
        settings = uow.execute(sa.text("SELECT current_setting('enable_sort'), current_setting('jit')")).one()
    assert len(dashboard["recent_invoices"]) == 5
    with billing.engine.connect() as conn:
        defaults = dict(
            conn.execute(sa.text("SELECT name, reset_val FROM pg_settings WHERE name IN ('enable_sort', 'jit')")).all()
        )
    assert defaults["enable_sort"] == "on"  # what the dashboard turns off, and the next statement has back
    assert tuple(settings) == (defaults["enable_sort"], defaults["jit"])


def test_a_summary_refreshs_planner_settings_go_back_with_the_next_statement_or_with_the_commit(billing):
    """The summary refresh plans with seq scans and sorts off. They are set back in the round trip of
    the transaction's next statement, which is then planned as usual; when the commit comes next, it
    ends them and nothing more is sent. Either way the next transaction starts with none pending."""
    ws, big = billing.ws, billing.big
    names = "SELECT current_setting('enable_seqscan'), current_setting('enable_sort'), current_setting('jit')"
    with billing.engine.connect() as conn:
        defaults = (
            conn.execute(
                sa.text("SELECT reset_val FROM pg_settings WHERE name = ANY(:n) ORDER BY name"),
                {"n": ["enable_seqscan", "enable_sort", "jit"]},
            )
            .scalars()
            .all()
        )
    sent: list[str] = []  # as sent, after every listener that may add to it

    def record(_conn, _cursor, statement, *_):
        sent.append(statement)

    with acting_for(Scope(ws)):
        as_the_service(billing.engine, summaries.refresh, ws, big)  # prepared on the pooled connection
        sa.event.listen(billing.engine, "after_cursor_execute", record)
        try:
            with UnitOfWork(billing.engine, lambda: NOW) as uow:
                summaries.refresh(uow, NOW, ws, big)
                after = uow.execute(sa.text(names)).one()
                uow.commit()
            followed = sent[:]
            sent.clear()
            as_the_service(billing.engine, summaries.refresh, ws, big)  # the commit comes next
            committed = sent[:]
            sent.clear()
            with UnitOfWork(billing.engine, lambda: NOW) as uow:
                fresh = uow.execute(sa.text(names)).one()
            untouched = sent[:]
        finally:
            sa.event.remove(billing.engine, "after_cursor_execute", record)
    assert defaults[1] == "on"  # enable_seqscan, enable_sort, jit: what the refresh turns off
    assert tuple(after) == tuple(defaults) == tuple(fresh)
    # the lock, the refresh, then the settings set back in the next statement's own round trip
    assert len(followed) == 3 and "TO DEFAULT" not in followed[1], followed
    assert followed[2].startswith("SET LOCAL") and followed[2].endswith(names), followed
    # the lock and the refresh: the commit ended them
    assert len(committed) == 2 and not any("TO DEFAULT" in sql for sql in committed + untouched), (committed, untouched)


def _refresh_explained(engine, ws: str, client: str):
    """The client's summary refreshed, (before, after), and the plan its statement ran."""
    result, plans = _plans(
        engine, summaries.refresh, ws, client, explained=lambda sql: "EXECUTE billing_client_summary_refresh" in sql
    )
    [(_, plan)] = plans
    return result, plan


def _ledger_reads(plan) -> tuple[dict[str, float], set[str | None]]:
    """The rows the plan read of each ledger table (none of them scanned whole), and the indexes it used."""
    read: dict[str, float] = {}
    used = set()
    for node in _nodes(plan["Plan"]):
        used.add(node.get("Index Name"))
        table = node.get("Relation Name")
        if table in ("invoices", "payments", "payment_allocations"):
            assert node["Node Type"] != "Seq Scan", json.dumps(plan, indent=1)
            read[table] = read.get(table, 0) + _rows_read(node)
    return read, used


def test_a_summary_refresh_reads_what_is_open_not_the_clients_history(billing):
    """The summary is recomputed from the ledger on every payment. For a client with thousands of
    paid invoices and payments, that reads its few open invoices, unapplied payments and retainers
    and its latest payment: no table scan of its history, whatever its length."""
    ws, big = billing.ws, billing.big
    with acting_for(Scope(ws)):  # as the payment's event is consumed: the workspace's scope
        history = as_the_service(billing.engine, h.list_payments, ws, big)
        (before, after), plan = _refresh_explained(billing.engine, ws, big)
    assert len(history) > 4000 and after.last_payment_received_at == before.last_payment_received_at
    assert after.outstanding == before.outstanding > 0
    read, used = _ledger_reads(plan)
    assert {"ix_payments_client_latest", "ix_payments_unapplied", "ix_invoices_retainers"} <= used
    # its latest payment, three times (one figure each); no retainer, nothing unapplied
    assert read["payments"] <= 3 and read.get("payment_allocations", 0) == 0, read
    # its open invoices, among the workspace's newest 600 (the client holds 40%), none of its paid ones
    assert 0 < read["invoices"] < 600, read


@pytest.fixture
def young(postgres_admin_url):
    """A workspace in a billing database whose tables were last analysed while nearly empty, as a new
    deployment's are until autovacuum comes by (every minute at most, once a table grew by a tenth)."""
    with databases_with_roles(postgres_admin_url, f"portal_{RUN_ID}_young", ("billing",)) as urls:
        upgrade(urls["service"]["billing"], ROOT / "services" / "billing" / "migrations")
        engine = make_engine(urls["service"]["billing"], pool_size=1)  # one connection: one plan
        ws = _committed(engine, SYSTEM, h.create_workspace, {"name": "New Studio", "email": "b@example.org"})["id"]
        client = _committed(engine, Scope(ws), h.create_client, ws, {"name": "First Client"})["id"]
        _analyze(urls["admin"]["billing"])
        yield SimpleNamespace(engine=engine, admin_url=urls["admin"]["billing"], ws=ws, client=client)
        engine.dispose()


def test_a_summary_refresh_planned_while_the_tables_were_young_reads_one_payment_once_they_grew(young):
    """The refresh's one generic plan is made at its first call on a connection, from the statistics of
    then. Made while the client had no payments, it must not become a scan of all its payments and a
    sort of them once it has hundreds (three times a payment, one per figure of the latest payment)."""
    ws, client = young.ws, young.client
    with acting_for(Scope(ws)):
        as_the_service(young.engine, summaries.refresh, ws, client)  # the plan is made
    with psycopg2.connect(young.admin_url) as conn, conn.cursor() as cur:  # then the client's history grows
        _bulk_invoices(cur, ws, [client], 1_000)
        _bulk_payments(cur, ws, client)
    with acting_for(Scope(ws)):
        (_, after), plan = _refresh_explained(young.engine, ws, client)
    read, _ = _ledger_reads(plan)
    assert after.last_payment_received_at is not None and read["payments"] <= 3, read
    # the open ones, not every invoice the client was ever sent; it has no retainer, so no allocation
    assert read["invoices"] < 1_000 and read.get("payment_allocations", 0) == 0, read
    assert "JIT" not in plan, plan["JIT"]

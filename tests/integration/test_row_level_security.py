"""Row-level security on real PostgreSQL, with each service's migrations applied as its own role
(neither superuser nor BYPASSRLS, as in production): a query with no scope sees no rows, a client
scope sees its client's, a workspace scope its workspace's, the system scope (the bypass) everything, and a write into
another client's rows is refused. The protected tables are read from the catalogue, so a new table
with a workspace and a client cannot be added without a policy."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import eventlet
import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy as sa

from chassis.clock import utcnow
from chassis.db import _ALONE, UnitOfWork, make_engine, upgrade
from chassis.errors import NotFound
from chassis.scope import SYSTEM, Scope, acting_for, db_scope
from services.billing import handlers as billing
from tests.conftest import ROOT, RUN_ID, databases_with_roles
from tests.integration.round_trips import RoundTrips

pytestmark = pytest.mark.integration

SERVICES = ("auth", "billing", "payments", "documents")
# Where a table's client is its own id rather than a client_id column.
CLIENT_COLUMN = {("billing", "clients"): "id"}
W1, W2 = str(uuid.uuid4()), str(uuid.uuid4())
A, B, C = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())  # A and B in W1, C in W2
OWNERS = ((W1, A), (W1, B), (W2, C))


@pytest.fixture(scope="module")
def dbs(postgres_admin_url):
    """Databases of our own (not the running stack's): the rows below are made for the policies only."""
    with databases_with_roles(postgres_admin_url, f"portal_{RUN_ID}_rls", SERVICES) as urls:
        for service in SERVICES:
            upgrade(urls["service"][service], ROOT / "services" / service / "migrations")
        yield urls


def fetch(url: str, sql: str, params=()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def protected_tables(admin_url: str) -> set[str]:
    return {
        name
        for (name,) in fetch(
            admin_url,
            """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity AND c.relforcerowsecurity
          AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)""",
        )
    }


def columns_of(admin_url: str) -> dict[str, dict[str, tuple]]:
    tables: dict[str, dict[str, tuple]] = {}
    for table, column, data_type, length, nullable, default in fetch(
        admin_url,
        """
            SELECT table_name, column_name, data_type, character_maximum_length, is_nullable = 'YES',
                   column_default IS NOT NULL OR is_identity = 'YES'
            FROM information_schema.columns WHERE table_schema = 'public' ORDER BY ordinal_position""",
    ):
        tables.setdefault(table, {})[column] = (data_type, length, nullable, default)
    return tables


def client_column(service: str, table: str, columns: dict) -> str | None:
    return CLIENT_COLUMN.get((service, table)) or ("client_id" if "client_id" in columns else None)


def _value(data_type: str, length: int | None):
    if data_type in ("character varying", "text", "character"):
        return uuid.uuid4().hex[: length or 32]  # unique wherever a column must be
    if data_type in ("integer", "bigint", "smallint", "numeric"):
        return 1  # also a valid review rating
    if data_type == "boolean":
        return False
    if data_type == "date":
        return date(2026, 1, 1) + timedelta(days=uuid.uuid4().int % 3000)
    if data_type.startswith("timestamp"):
        return datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=uuid.uuid4().int % 10**8)
    if data_type in ("json", "jsonb"):
        return "{}"
    if data_type == "bytea":  # a passkey's id and public key
        return uuid.uuid4().bytes
    raise AssertionError(f"the test cannot make a value of type {data_type}: teach _value about it")


def row_for(columns: dict, client_col: str | None, workspace_id: str, client_id: str) -> dict:
    """Every required column filled; the workspace and client set to the given ones."""
    row = {
        name: _value(data_type, length)
        for name, (data_type, length, nullable, default) in columns.items()
        if not nullable and not default
    }
    row["workspace_id"] = workspace_id
    if "role" in row:  # a contact's role: a checked list of names
        row["role"] = "owner"
    if client_col:
        row[client_col] = client_id
    return row


def insert_sql(table: str, row: dict) -> tuple[str, list]:
    names = list(row)
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})",
        [row[n] for n in names],
    )


@pytest.fixture(scope="module")
def seeded(dbs):
    """Rows of three owners in every protected table, written as the admin (which RLS does not bind).
    Foreign keys are not the subject here, so their triggers are off for this one transaction."""
    tables = {}
    for service in SERVICES:
        admin_url = dbs["admin"][service]
        columns = columns_of(admin_url)
        tables[service] = {t: client_column(service, t, columns[t]) for t in protected_tables(admin_url)}
        with psycopg2.connect(admin_url) as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL session_replication_role = replica")
            for table, client_col in tables[service].items():
                for workspace_id, client_id in OWNERS:
                    cur.execute("SAVEPOINT row")
                    try:
                        cur.execute(*insert_sql(table, row_for(columns[table], client_col, workspace_id, client_id)))
                    except psycopg2.errors.UniqueViolation:  # one row per workspace (a copied setting)
                        assert client_col is None, (service, table)
                        cur.execute("ROLLBACK TO SAVEPOINT row")
                        ONE_PER_WORKSPACE.add((service, table))
    return tables


ONE_PER_WORKSPACE: set[tuple[str, str]] = set()  # workspace-wide tables keyed by the workspace alone


def in_w1(service: str, table: str) -> list[tuple]:
    """The rows of a workspace-wide table the seed put in W1: one per owner there, or one in all."""
    return [(W1, None)] * (1 if (service, table) in ONE_PER_WORKSPACE else 2)


def scoped_rows(url: str, table: str, client_col: str | None, settings: dict | None) -> list[tuple]:
    """(workspace, client) of every row the service's role sees in one transaction with `settings`
    set the way chassis/db.py sets them; None sets nothing at all."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for name, value in (settings or {}).items():
            cur.execute("SELECT set_config(%s, %s, true)", (f"app.{name}", value))
        cur.execute(f"SELECT workspace_id, {client_col or 'NULL'} FROM {table}")
        return cur.fetchall()


def client_scope(workspace_id, client_id):
    return {"workspace_id": workspace_id, "client_id": client_id, "rls_bypass": ""}


def each_table(seeded):
    return [
        (service, table, client_col)
        for service, tables in seeded.items()
        for table, client_col in sorted(tables.items())
    ]


def test_every_table_with_a_workspace_and_a_client_is_protected(dbs):
    for service in SERVICES:
        admin_url = dbs["admin"][service]
        columns = columns_of(admin_url)
        client_scoped = {t for t, cols in columns.items() if {"workspace_id", "client_id"} <= set(cols)}
        assert client_scoped, f"{service} has client-scoped tables"
        assert client_scoped - protected_tables(admin_url) == set(), (
            f"{service}: tables with workspace_id and client_id but no forced row-level security policy"
        )
    billing_protected = protected_tables(dbs["admin"]["billing"])
    assert {"invoices", "payments", "bookings", "clients", "booking_cells", "counters"} <= billing_protected
    assert {"attempts", "payment_methods", "customers", "card_setups", "disputes"} <= protected_tables(
        dbs["admin"]["payments"]
    )
    assert {"sessions", "document_links", "contacts"} <= protected_tables(dbs["admin"]["auth"])
    assert {"emails", "webhook_subscriptions", "webhook_deliveries"} <= protected_tables(dbs["admin"]["documents"])


def test_the_service_roles_are_bound_by_the_policies(dbs):
    for service in SERVICES:
        [(superuser, bypass)] = fetch(
            dbs["service"][service], "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        assert (superuser, bypass) == (False, False)


def test_an_unscoped_query_returns_no_rows(dbs, seeded):
    for service, table, client_col in each_table(seeded):
        [(count,)] = fetch(dbs["admin"][service], f"SELECT count(*) FROM {table}")
        assert count >= 3 - ((service, table) in ONE_PER_WORKSPACE), (service, table)  # the rows exist
        assert scoped_rows(dbs["service"][service], table, client_col, None) == [], (service, table)


def test_a_client_scope_sees_only_its_clients_rows(dbs, seeded):
    for service, table, client_col in each_table(seeded):
        seen = scoped_rows(dbs["service"][service], table, client_col, client_scope(W1, A))
        if client_col:
            assert seen == [(W1, A)], (service, table)
        else:  # workspace-wide tables (numbering, booking cells): the whole workspace, never another
            assert seen == in_w1(service, table), (service, table)


def test_a_workspace_scope_sees_the_workspace_and_the_bypass_sees_all(dbs, seeded):
    for service, table, client_col in each_table(seeded):
        url = dbs["service"][service]
        workspace = sorted(scoped_rows(url, table, client_col, client_scope(W1, "")), key=str)
        expected = [(W1, A), (W1, B)] if client_col else in_w1(service, table)
        assert workspace == sorted(expected, key=str), (service, table)
        everything = scoped_rows(url, table, client_col, {"rls_bypass": "on"})
        [(count,)] = fetch(dbs["admin"][service], f"SELECT count(*) FROM {table}")
        assert len(everything) == count and {W1, W2} <= {ws for ws, _ in everything}, (service, table)


def test_writing_another_clients_row_under_a_client_scope_is_refused(dbs, seeded):
    for service, table, client_col in each_table(seeded):
        columns = columns_of(dbs["admin"][service])[table]
        wrong = ((W1, B), (W2, C)) if client_col else ((W2, C),)
        for workspace_id, client_id in wrong:
            with psycopg2.connect(dbs["service"][service]) as conn, conn.cursor() as cur:
                for name, value in client_scope(W1, A).items():
                    cur.execute("SELECT set_config(%s, %s, true)", (f"app.{name}", value))
                with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
                    cur.execute(*insert_sql(table, row_for(columns, client_col, workspace_id, client_id)))


def test_moving_a_row_to_another_client_is_refused(dbs, seeded):
    url = dbs["service"]["billing"]
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for name, value in client_scope(W1, A).items():
            cur.execute("SELECT set_config(%s, %s, true)", (f"app.{name}", value))
        with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="row-level security"):
            cur.execute("UPDATE invoices SET client_id = %s WHERE client_id = %s", (B, A))


# ------------------------------------------------------------- through the chassis, as services do


@pytest.fixture(scope="module")
def billing_data(dbs):
    """A workspace with two clients, an invoice each, made by the handlers in the system scope (the bypass)."""
    engine = make_engine(dbs["service"]["billing"], pool_size=4)
    with acting_for(SYSTEM), UnitOfWork(engine) as uow:
        now = utcnow()
        ws = billing.create_workspace(uow, now, {"name": "Scoped Co", "email": "s@scoped.example.org"})["id"]
        clients = [billing.create_client(uow, now, ws, {"name": name})["id"] for name in ("Mine", "Theirs")]
        invoices = [
            billing.create_invoice(
                uow,
                now,
                ws,
                {
                    "client_id": client,
                    "send": True,
                    "lines": [{"description": "Work", "quantity": 1, "unit_price": 1000}],
                },
            )["id"]
            for client in clients
        ]
        uow.commit()
    yield engine, ws, clients, invoices
    engine.dispose()


def test_a_handler_that_forgets_the_client_filter_still_sees_one_client(billing_data):
    engine, ws, (mine, theirs), (my_invoice, their_invoice) = billing_data
    token = db_scope.set(Scope(ws, mine))
    try:
        with UnitOfWork(engine) as uow:
            listed = billing.list_invoices(uow, utcnow(), ws)  # no client filter: the admin listing
            assert [i["id"] for i in listed["items"]] == [my_invoice]
            with pytest.raises(NotFound):
                billing.get_invoice(uow, utcnow(), ws, their_invoice)
            with pytest.raises(NotFound):
                billing.get_client(uow, utcnow(), ws, theirs)
    finally:
        db_scope.reset(token)
    token = db_scope.set(Scope(ws))  # the admin API: the whole workspace
    try:
        with UnitOfWork(engine) as uow:
            assert {i["id"] for i in billing.list_invoices(uow, utcnow(), ws)["items"]} == {my_invoice, their_invoice}
    finally:
        db_scope.reset(token)
    token = db_scope.set(Scope(str(uuid.uuid4())))  # another workspace's key
    try:
        with UnitOfWork(engine) as uow:
            assert billing.list_invoices(uow, utcnow(), ws)["items"] == []
    finally:
        db_scope.reset(token)


def test_a_handler_called_with_no_scope_sees_nothing_and_writes_nothing(billing_data):
    """A path that forgets its scope (a new page, a new consumer) fails closed."""
    engine, ws, (mine, _), (my_invoice, _) = billing_data
    assert db_scope.get() is None
    with UnitOfWork(engine) as uow:
        assert billing.list_invoices(uow, utcnow(), ws)["items"] == []
        with pytest.raises(NotFound):
            billing.get_invoice(uow, utcnow(), ws, my_invoice)
        with pytest.raises(NotFound):
            billing.client_dashboard(uow, utcnow(), ws, mine)
        with pytest.raises(NotFound):
            billing.record_payment(uow, utcnow(), ws, {"invoice_id": my_invoice, "amount": 100})
    with acting_for(Scope(ws, mine)), UnitOfWork(engine) as uow:
        assert billing.get_invoice(uow, utcnow(), ws, my_invoice)["amount_paid"] == 0  # nothing was written


def test_a_client_reads_only_its_own_credit_notes_even_through_a_lookup_that_names_no_client(billing_data):
    """The portal's credit note RPCs pass the session's client; were one to forget it, the policies
    still show the client only its own credit notes and its own invoice behind one."""
    engine, ws, (mine, theirs), (my_invoice, their_invoice) = billing_data
    with acting_for(SYSTEM), UnitOfWork(engine) as uow:
        now = utcnow()
        my_note = billing.issue_credit_note(uow, now, ws, {"client_id": mine, "amount": 300, "invoice_id": my_invoice})
        their_note = billing.issue_credit_note(
            uow, now, ws, {"client_id": theirs, "amount": 400, "invoice_id": their_invoice}
        )
        uow.commit()
    with acting_for(Scope(ws, mine, role="viewer")), UnitOfWork(engine) as uow:
        read = billing.get_credit_note(uow, utcnow(), ws, my_note["id"])  # no client filter: the business's lookup
        assert (read["invoice_id"], read["total"], read["lines"][0]["unit_price"]) == (my_invoice, 300, 300)
        with pytest.raises(NotFound):
            billing.get_credit_note(uow, utcnow(), ws, their_note["id"])
        with pytest.raises(NotFound):
            billing.list_client_credit_notes(uow, utcnow(), ws, theirs)
        listed = billing.list_client_credit_notes(uow, utcnow(), ws, mine)
        assert [n["id"] for n in listed["items"]] == [my_note["id"]] and listed["credit_available"]["amount"] == 300
    with UnitOfWork(engine) as uow:  # no scope at all
        with pytest.raises(NotFound):
            billing.get_credit_note(uow, utcnow(), ws, my_note["id"])
        with pytest.raises(NotFound):
            billing.list_client_credit_notes(uow, utcnow(), ws, mine)


def test_a_prepared_statement_binds_by_the_scope_it_runs_in_not_the_one_it_was_prepared_in(billing_data, dbs):
    """The dashboard's statement is prepared once per connection (chassis/prepared.py); the policies
    still read the scope of each transaction that runs it."""
    _, ws, (mine, theirs), _ = billing_data
    engine = make_engine(dbs["service"]["billing"], pool_size=1)  # one connection: every call reuses it
    try:
        with acting_for(Scope(ws, mine)), UnitOfWork(engine) as uow:
            uow.execute(sa.text("SELECT 1"))  # a transaction open: the dashboard's read runs in it (not alone)
            assert billing.client_dashboard(uow, utcnow(), ws, mine)["client"]["id"] == mine
            uow.rollback()  # PREPARE outlives the transaction it was sent in
        with acting_for(Scope(ws, theirs)), UnitOfWork(engine) as uow:
            prepared = uow.execute(sa.text("SELECT name FROM pg_prepared_statements")).scalars().all()
            assert "billing_client_dashboard" in prepared
            with pytest.raises(NotFound):  # the other client's dashboard, through the same prepared plan
                billing.client_dashboard(uow, utcnow(), ws, mine)
            assert billing.client_dashboard(uow, utcnow(), ws, theirs)["client"]["id"] == theirs
        with acting_for(Scope(str(uuid.uuid4()), mine)), UnitOfWork(engine) as uow:  # another workspace's key
            uow.execute(sa.text("SELECT 1"))
            with pytest.raises(NotFound):
                billing.client_dashboard(uow, utcnow(), ws, mine)
        with UnitOfWork(engine) as uow:  # no scope at all
            uow.execute(sa.text("SELECT 1"))
            with pytest.raises(NotFound):
                billing.client_dashboard(uow, utcnow(), ws, mine)
    finally:
        engine.dispose()


def test_a_read_in_one_round_trip_carries_its_own_scope_and_leaves_none_behind(billing_data, dbs):
    """UnitOfWork.read_row sends the scope with the statement, in autocommit (chassis/db.py): each read binds
    by its own scope, and one with none, on the same connection after the others, sees nothing."""
    _, ws, (mine, theirs), _ = billing_data
    engine = make_engine(dbs["service"]["billing"], pool_size=1)  # one connection for reads: each reuses it
    cases = [
        (Scope(ws, mine), mine, True),
        (Scope(ws, theirs), mine, False),
        (Scope(ws, theirs), theirs, True),
        (Scope(str(uuid.uuid4()), mine), mine, False),
        (None, mine, False),
    ]
    try:
        for scope, client, visible in cases:
            with acting_for(scope), UnitOfWork(engine) as uow:
                if visible:
                    assert billing.client_dashboard(uow, utcnow(), ws, client)["client"]["id"] == client
                else:
                    with pytest.raises(NotFound):
                        billing.client_dashboard(uow, utcnow(), ws, client)
                assert uow._conn is None  # no transaction was opened for it
    finally:
        engine.dispose()


def test_a_read_on_a_connection_the_server_dropped_is_tried_again_unseen(billing_data, postgres_admin_url):
    """A read's connection is not pinged before it is used: the read is its own ping, and a dropped
    connection costs the caller nothing but a second try, even when every idle connection was dropped."""
    _, ws, (mine, _theirs), _ = billing_data
    url = billing_data[0].url
    engine = make_engine(str(url.render_as_string(hide_password=False)), pool_size=2)
    try:
        with acting_for(Scope(ws, mine)):
            reads = _ALONE[engine]  # the autocommit engine such reads take their connection from
            for _ in range(2):  # the read done on each of its pool's two connections, while the other is held
                with reads.connect():
                    with UnitOfWork(engine) as uow:
                        assert billing.client_dashboard(uow, utcnow(), ws, mine)["client"]["id"] == mine
            assert reads.pool.checkedin() == 2
            dropped = fetch(
                postgres_admin_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
                (url.database, url.username),
            )
            assert dropped and all(ok for (ok,) in dropped)
            for _ in range(3):
                with UnitOfWork(engine) as uow:
                    assert billing.client_dashboard(uow, utcnow(), ws, mine)["client"]["id"] == mine
    finally:
        engine.dispose()


def test_a_pooled_connection_does_not_carry_a_scope_into_the_next_transaction(billing_data):
    engine, ws, (mine, theirs), _ = billing_data
    token = db_scope.set(Scope(ws, mine))
    try:
        with engine.connect() as conn:
            assert {c for (c,) in conn.execute(sa.text("SELECT client_id FROM invoices"))} == {mine}
    finally:
        db_scope.reset(token)
    with engine.connect() as conn:  # the same pooled connection, now with no scope: nothing
        assert conn.execute(sa.text("SELECT count(*) FROM invoices")).scalar_one() == 0
    with acting_for(SYSTEM), engine.connect() as conn:  # and for the system (allow-listed paths only)
        assert {
            c for (c,) in conn.execute(sa.text("SELECT client_id FROM invoices WHERE workspace_id = :ws"), {"ws": ws})
        } == {mine, theirs}
    raw = engine.raw_connection()  # outside a transaction's settings nothing is visible
    try:
        raw.rollback()  # ends the transaction the checkout's scope statement opened, and its settings
        cur = raw.cursor()
        cur.execute("SELECT count(*) FROM invoices")
        assert cur.fetchone()[0] == 0
    finally:
        raw.close()


def test_every_transaction_of_a_checkout_has_the_scope(billing_data):
    """The checkout sets the scope for the first transaction; each later one sets it again."""
    engine, ws, (mine, _theirs), _ = billing_data
    token = db_scope.set(Scope(ws, mine))
    try:
        with UnitOfWork(engine) as uow:
            for _ in range(3):
                assert {c for (c,) in uow.execute(sa.text("SELECT client_id FROM invoices"))} == {mine}
                uow.commit()
            uow.rollback()
            assert {c for (c,) in uow.execute(sa.text("SELECT client_id FROM invoices"))} == {mine}
    finally:
        db_scope.reset(token)


def test_a_transaction_the_checkout_did_not_open_still_gets_the_scope(billing_data):
    """Changing the isolation level ends the transaction the checkout's scope statement opened (psycopg2
    rolls it back); the next transaction sets the scope itself instead of trusting the checkout."""
    engine, ws, (mine, _theirs), _ = billing_data
    token = db_scope.set(Scope(ws, mine))
    try:
        with engine.connect() as conn:
            conn.execution_options(isolation_level="REPEATABLE READ")
            assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "repeatable read"
            assert {c for (c,) in conn.execute(sa.text("SELECT client_id FROM invoices"))} == {mine}
    finally:
        db_scope.reset(token)


def test_a_pooled_connection_the_server_dropped_is_replaced_unseen(billing_data, postgres_admin_url):
    """What pool_pre_ping did, done by the checkout's scope statement: no caller gets the error."""
    _, ws, (mine, _theirs), _ = billing_data
    engine = make_engine(str(billing_data[0].url.render_as_string(hide_password=False)), pool_size=2)
    try:
        token = db_scope.set(Scope(ws, mine))
        with engine.connect() as a, engine.connect() as b:  # two pooled connections, then returned
            pids = [conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() for conn in (a, b)]
        fetch(postgres_admin_url, "SELECT pg_terminate_backend(pid) FROM unnest(%s) AS pid", (pids,))
        for _ in range(3):
            with UnitOfWork(engine) as uow:
                assert {c for (c,) in uow.execute(sa.text("SELECT client_id FROM invoices"))} == {mine}
                assert uow.execute(sa.text("SELECT pg_backend_pid()")).scalar() not in pids
        db_scope.reset(token)
    finally:
        engine.dispose()


def test_green_threads_each_keep_their_own_scope(billing_data):
    """nameko runs each worker in its own green thread: scopes must not leak between them, even when
    they interleave mid-transaction."""
    engine, ws, (mine, theirs), _ = billing_data

    def worker(client_id):
        db_scope.set(Scope(ws, client_id))
        seen = []
        for _ in range(3):
            eventlet.sleep(0)  # let the other workers run between setting the scope and using it
            with engine.connect() as conn:
                eventlet.sleep(0)
                seen.extend(c for (c,) in conn.execute(sa.text("SELECT client_id FROM invoices")))
        return client_id, seen

    threads = [eventlet.spawn(worker, client) for client in (mine, theirs) * 3]
    for client_id, seen in (t.wait() for t in threads):
        assert seen and set(seen) == {client_id}
    assert db_scope.get() is None  # the test's own context was never touched


def test_a_stripe_event_is_stored_once_and_its_workspace_found_only_within_scope(dbs):
    """payments keeps an event once (on PostgreSQL too, a redelivery's insert counts no row) and finds
    whose it is from its own rows: in the system scope across workspaces, in one round trip that leaves
    no transaction open; with no scope, or another workspace's, it finds nothing."""
    from services.payments.handlers import webhook_events

    attempt_id, now = str(uuid.uuid4()), utcnow()
    fetch(
        dbs["admin"]["payments"],
        "INSERT INTO attempts (id, workspace_id, client_id, request_key, currency, amount, allocations,"
        " applied, status, tries, off_session, failure_message, refunded, created_at, updated_at)"
        " VALUES (%s, %s, %s, 'rls-key', 'EUR', 100, '[]', '{}', 'processing', 0, false, '', 0, %s, %s)"
        " RETURNING id",
        (attempt_id, W1, A, now, now),
    )
    intent = {"id": f"pi_{uuid.uuid4().hex[:12]}", "status": "succeeded", "amount": 100, "currency": "eur"}
    event = {
        "id": f"evt_{uuid.uuid4().hex[:12]}",
        "type": "payment_intent.succeeded",
        "data": {"object": {**intent, "metadata": {"attempt_id": attempt_id, "workspace_id": W2}}},
    }
    engine = make_engine(dbs["service"]["payments"], pool_size=1)
    try:
        for stored in (True, False):  # stripe_events is payments' own: no workspace's rows, no scope
            trips = RoundTrips()
            try:
                with UnitOfWork(engine) as uow:
                    assert webhook_events.receive_event(uow, now, event) is stored
                    assert uow._conn is None  # no transaction was opened for it
                    # seen from another connection before the unit of work ends: committed
                    assert fetch(
                        dbs["admin"]["payments"], "SELECT count(*) FROM stripe_events WHERE id = %s", (event["id"],)
                    ) == [(1,)]
            finally:
                trips.remove()
            assert trips.count == 1, trips.statements  # the insert alone, on the path Stripe waits on
        for scope, found in ((SYSTEM, W1), (None, None), (Scope(W2), None), (Scope(W1), W1)):
            with acting_for(scope), UnitOfWork(engine) as uow:
                assert webhook_events.workspace_of(uow, event) == found  # never the W2 its metadata names
                assert uow._conn is None  # no transaction was opened for it
        with acting_for(SYSTEM), UnitOfWork(engine) as uow:  # the timer's way: the stored body, then the lookup
            assert webhook_events.event_workspace(uow, event["id"]) == W1
    finally:
        engine.dispose()


def test_the_change_times_older_documents_processes_read_are_written_only_in_the_events_workspace(dbs):
    """While an upgrade rolls out, documents still writes when a client (or a whole workspace) last
    changed, for older processes that read these tables: as documents' own role, in the event's
    workspace scope; another workspace's row is refused, and no scope sees none of them."""
    from services.documents import renders
    from services.documents.tables import client_changes, workspace_changes

    now = utcnow()
    W1, W2, A, C = (str(uuid.uuid4()) for _ in range(4))  # apart from the rows `seeded` made
    engine = make_engine(dbs["service"]["documents"], pool_size=1)

    def change(scope, workspace_id, client_id, at=now):
        with acting_for(scope), UnitOfWork(engine) as uow:
            renders.changed_for_older_processes(uow, at, workspace_id, client_id)
            uow.commit()

    def seen(scope):
        with acting_for(scope), UnitOfWork(engine) as uow:
            clients = uow.execute(sa.select(client_changes.c.client_id, client_changes.c.changed_at)).all()
            workspaces = uow.execute(sa.select(workspace_changes.c.workspace_id)).scalars().all()
        return {c: at for c, at in clients if c == A}, [w for w in workspaces if w in (W1, W2)]

    try:
        change(Scope(W1), W1, A)
        change(Scope(W1), W1, None)  # naming no client: the workspace
        change(Scope(W1), W1, A, at=now - timedelta(minutes=1))  # arriving late: the time stays
        assert seen(Scope(W1)) == ({A: now}, [W1])
        assert seen(None) == ({}, []) and seen(Scope(W2)) == ({}, [])
        with pytest.raises(sa.exc.ProgrammingError):
            change(Scope(W1), W2, C)
        with pytest.raises(sa.exc.ProgrammingError):
            change(Scope(W1), W2, None)
    finally:
        engine.dispose()

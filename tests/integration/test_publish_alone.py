"""An event that is all a unit of work records (UnitOfWork.publish_and_commit, chassis/db.py): on
PostgreSQL, as the service's own role, one round trip that leaves the row committed; sent again,
unseen, when the pooled connection was gone, and recorded once even when the first insert landed and
only its answer was lost; inside an open transaction, committed with it. On SQLite, committed too."""

from __future__ import annotations

import json
from types import SimpleNamespace

import psycopg2
import pytest
import sqlalchemy as sa

from chassis import db as chassis_db
from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.events import IDEMPOTENCY
from chassis.scope import Scope, acting_for
from tests.conftest import ROOT, RUN_ID, databases_with_roles
from tests.integration.round_trips import RoundTrips

pytestmark = pytest.mark.integration

MIGRATIONS = ROOT / "services" / "documents" / "migrations"
WORKSPACE = "11111111-1111-4111-8111-111111111111"
DOWNLOADED = {"kind": "invoice", "client_id": "c-1", "document_id": "i-1", "number": "INV-1", "filename": "a.pdf"}


@pytest.fixture(scope="module")
def documents(postgres_admin_url):
    with databases_with_roles(postgres_admin_url, f"portal_{RUN_ID}_alone", ("documents",)) as urls:
        upgrade(urls["service"]["documents"], MIGRATIONS)
        yield SimpleNamespace(url=urls["service"]["documents"], admin=urls["admin"]["documents"])


@pytest.fixture
def engine(documents):
    """The service's engine, its own in each test (one test drops every connection of the role)."""
    engine = make_engine(documents.url, pool_size=2)
    yield engine
    engine.dispose()


def outbox(admin_url: str, event_id: str) -> list[dict]:
    with psycopg2.connect(admin_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_type, body FROM outbox WHERE event_id = %s", (event_id,))
        return [{"type": event_type, **json.loads(body)} for event_type, body in cur.fetchall()]


def test_an_event_alone_is_one_round_trip_and_committed_when_it_returns(documents, engine):
    with acting_for(Scope(WORKSPACE)), UnitOfWork(engine) as uow:
        uow.publish_and_commit("document.downloaded", WORKSPACE, DOWNLOADED)  # the pool has a connection
    trips = RoundTrips()
    try:
        with acting_for(Scope(WORKSPACE)), UnitOfWork(engine) as uow:
            event = uow.publish_and_commit("document.downloaded", WORKSPACE, DOWNLOADED)
            assert uow._conn is None  # no transaction was opened for it
            [row] = outbox(documents.admin, event["id"])  # seen from another connection: committed
    finally:
        trips.remove()

    assert trips.count == 1, trips.statements
    assert row["type"] == "document.downloaded"
    assert (row["workspace_id"], row["data"]) == (WORKSPACE, DOWNLOADED)


def test_an_event_alone_on_a_connection_the_server_dropped_is_sent_again_unseen(documents, engine, postgres_admin_url):
    url = sa.engine.make_url(documents.url)
    with UnitOfWork(engine) as uow:  # the autocommit pool has a connection
        uow.publish_and_commit("document.downloaded", WORKSPACE, DOWNLOADED)
    with psycopg2.connect(postgres_admin_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND usename = %s",
            (url.database, url.username),
        )
        assert all(ok for (ok,) in cur.fetchall())
    with UnitOfWork(engine) as uow:
        event = uow.publish_and_commit("document.downloaded", WORKSPACE, DOWNLOADED)

    assert len(outbox(documents.admin, event["id"])) == 1


def test_an_event_whose_answer_was_lost_is_recorded_once(documents, engine, monkeypatch):
    """The insert landed, then the connection went before its answer came: the second try changes nothing."""
    run_alone, tries = chassis_db._run_alone, []

    def lose_the_first_answer(writes, statement, params):
        run_alone(writes, statement, params)
        tries.append(statement)
        if len(tries) == 1:
            raise sa.exc.DBAPIError(
                "INSERT", {}, psycopg2.OperationalError("server closed"), connection_invalidated=True
            )

    monkeypatch.setattr(chassis_db, "_run_alone", lose_the_first_answer)
    with UnitOfWork(engine) as uow:
        event = uow.publish_and_commit("document.downloaded", WORKSPACE, DOWNLOADED)

    assert len(tries) == 2
    assert len(outbox(documents.admin, event["id"])) == 1


def test_an_event_after_other_statements_commits_with_them(documents, engine):
    key = f"documents.test:{RUN_ID}"
    with acting_for(Scope(WORKSPACE)), UnitOfWork(engine) as uow:
        uow.execute(IDEMPOTENCY.insert().values(key=key, request_hash="h", result=None, created_at=uow.clock()))
        event = uow.publish_and_commit("document.downloaded", WORKSPACE, DOWNLOADED)

    assert len(outbox(documents.admin, event["id"])) == 1
    with psycopg2.connect(documents.admin) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s", (key,))
        assert cur.fetchone() == (1,)


def test_an_event_alone_on_sqlite_is_committed(tmp_path):
    url = f"sqlite:///{tmp_path / 'documents.db'}"
    upgrade(url, MIGRATIONS)
    sqlite = make_engine(url)
    try:
        with UnitOfWork(sqlite) as uow:
            event = uow.publish_and_commit("document.downloaded", WORKSPACE, DOWNLOADED)
        with sqlite.connect() as conn:
            rows = conn.execute(sa.text("SELECT event_type FROM outbox WHERE event_id = :id"), {"id": event["id"]})
            assert rows.all() == [("document.downloaded",)]
    finally:
        sqlite.dispose()

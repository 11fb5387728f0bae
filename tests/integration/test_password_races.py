"""Passwords on real PostgreSQL, with row-level security: two tabs setting or changing a password at the
same moment, and one reset link used twice at once, never leave a half-state: one wins, the other is
refused and changes nothing. A client's password rows are invisible from another client's scope."""

from __future__ import annotations

import contextlib
import uuid

import pytest
import sqlalchemy as sa

from chassis import credentials
from chassis.clock import utcnow
from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.errors import Conflict, Invalid, Unauthorized
from chassis.scope import SYSTEM, Scope, acting_for
from services.auth import domain, handlers, password_handlers, passwords
from services.auth.tables import passwords as password_rows
from services.auth.tables import sessions
from tests.conftest import ROOT
from tests.integration.test_billing_concurrency import in_parallel

pytestmark = pytest.mark.integration
POLICY = domain.Policy()
RULES = passwords.PasswordPolicy()
KEYS = credentials.Keys.parse("test:" + "k" * 40)
HASHER = passwords.Hasher(time_cost=1, memory_cost=1024)  # real argon2id, cheap parameters


@pytest.fixture(scope="module")
def engine(service_databases):
    url = service_databases["auth"]
    upgrade(url, ROOT / "services" / "auth" / "migrations")
    engine = make_engine(url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture
def contact(engine):
    """A contact of a workspace that allows passwords, as billing's events make it; the test then acts
    as the portal does for that contact's client."""
    ws, client_id, contact_id = (str(uuid.uuid4()) for _ in range(3))
    email = f"race-{contact_id[:8]}@example.org"
    now = utcnow()
    with acting_for(Scope(ws)), UnitOfWork(engine) as uow:
        data = {"id": contact_id, "workspace_id": ws, "client_id": client_id, "email": email, "name": "Rae"}
        handlers.apply_contact(uow, {**data, "portal_access": True, "version": 1}, now, POLICY)
        password_handlers.apply_workspace(uow, {"id": ws, "version": 1, "settings": {"passwords_enabled": True}}, now)
        uow.commit()
    with acting_for(SYSTEM), UnitOfWork(engine) as uow:
        row = uow.execute(sa.select(handlers.contacts).where(handlers.contacts.c.id == contact_id)).one()
        session_id = password_handlers._open_session(uow, row, None, now, POLICY, KEYS)["session_id"]
        uow.commit()
    yield {"workspace_id": ws, "client_id": client_id, "id": contact_id, "email": email, "session_id": session_id}
    # the database is the session stack's auth database: leave no workspace allowing passwords behind
    # for the end-to-end tests, which count the workspaces that do
    with acting_for(Scope(ws)), UnitOfWork(engine) as uow:
        password_handlers.apply_workspace(uow, {"id": ws, "version": 2, "settings": {"passwords_enabled": False}}, now)
        uow.commit()


@contextlib.contextmanager
def committed(engine):
    """A unit of work as an entrypoint runs a handler in: committed when the block ends without an error."""
    with UnitOfWork(engine) as uow:
        yield uow
        uow.commit()


def set_password(engine, contact, new, current=None):
    with committed(engine) as uow:
        return password_handlers.set_password(
            uow, utcnow(), contact["session_id"], contact["id"], current, new, POLICY, RULES, HASHER
        )


def stored_hash(engine, contact) -> list[str]:
    with acting_for(SYSTEM), UnitOfWork(engine) as uow:
        return (
            uow.execute(sa.select(password_rows.c.hash).where(password_rows.c.contact_id == contact["id"]))
            .scalars()
            .all()
        )


def test_two_tabs_setting_the_first_password_at_once_leave_exactly_one(engine, contact):
    tries = ["first tab passphrase", "second tab passphrase"]
    with acting_for(Scope(contact["workspace_id"], contact["client_id"])):
        results = in_parallel(2, lambda i: set_password(engine, contact, tries[i]))
    won = [i for i, r in enumerate(results) if isinstance(r, dict)]
    lost = [r for r in results if not isinstance(r, dict)]
    # overlapping, the second is told of the race; after the first committed, it needs the password
    # the first tab set (its "current password" is wrong): refused either way, nothing half-written
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(lost[0], Conflict) or (isinstance(lost[0], Invalid) and "current_password" in lost[0].fields)
    [stored] = stored_hash(engine, contact)
    assert HASHER.verify(stored, tries[won[0]]) and not HASHER.verify(stored, tries[1 - won[0]])


def test_two_tabs_changing_the_password_at_once_leave_one_change(engine, contact):
    scope = Scope(contact["workspace_id"], contact["client_id"])
    with acting_for(scope):
        set_password(engine, contact, "the original passphrase")
        tries = ["changed in tab one", "changed in tab two"]
        results = in_parallel(2, lambda i: set_password(engine, contact, tries[i], "the original passphrase"))
    won = [i for i, r in enumerate(results) if isinstance(r, dict)]
    assert len(won) == 1, results
    # overlapping, the other tab is told of the race; after the first committed, the password it gives
    # as current is no longer right: refused either way, and only the first change is kept
    lost = results[1 - won[0]]
    assert isinstance(lost, Conflict) or (isinstance(lost, Invalid) and "current_password" in lost.fields), results
    [stored] = stored_hash(engine, contact)
    assert HASHER.verify(stored, tries[won[0]])


def test_one_reset_link_used_twice_at_once_opens_one_session(engine, contact):
    with acting_for(SYSTEM):
        with committed(engine) as uow:
            [link] = password_handlers.request_reset(uow, contact["email"], "10.9.0.1", utcnow(), POLICY, RULES)

        def use(i):
            with committed(engine) as uow:
                return password_handlers.reset_password(
                    uow, link["token"], f"reset from browser {i}", None, None, utcnow(), POLICY, HASHER, KEYS
                )

        results = in_parallel(2, use)
        opened = [r for r in results if isinstance(r, dict)]
        assert len(opened) == 1 and isinstance(next(r for r in results if not isinstance(r, dict)), Unauthorized)
        with UnitOfWork(engine) as uow:
            live = uow.execute(
                sa.select(sessions.c.id).where(sessions.c.contact_id == contact["id"], sessions.c.revoked_at.is_(None))
            ).scalars()
            assert [str(s) for s in live] == [opened[0]["session_id"]]  # the one before the reset ended too


def test_another_clients_scope_sees_no_password(engine, contact):
    with acting_for(Scope(contact["workspace_id"], contact["client_id"])):
        set_password(engine, contact, "only mine to see")
        with UnitOfWork(engine) as uow:
            assert password_handlers.password_status(uow, contact["id"])["has_password"] is True
    with acting_for(Scope(contact["workspace_id"], str(uuid.uuid4()))), UnitOfWork(engine) as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(password_rows)).scalar_one() == 0
        assert password_handlers.password_status(uow, contact["id"]) == {
            "enabled": False,
            "has_password": False,
            "set_at": None,
        }
    with acting_for(Scope(str(uuid.uuid4()))), UnitOfWork(engine) as uow:
        assert uow.execute(sa.select(sa.func.count()).select_from(password_rows)).scalar_one() == 0

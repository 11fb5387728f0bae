"""The last owner of a client's organisation stays, on real PostgreSQL, even when two owners demote or
remove each other at the same moment (two tabs, two devices): the client row's lock serializes them, and
the second sees the first's change and is refused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from chassis.clock import utcnow
from chassis.db import UnitOfWork, make_engine, upgrade
from chassis.errors import Conflict, Forbidden
from chassis.scope import Scope, acting_for
from services.billing import handlers as h
from services.billing.tables import contacts
from tests.conftest import ROOT
from tests.integration.test_billing_concurrency import in_parallel

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine(service_databases):
    url = service_databases["billing"]
    upgrade(url, ROOT / "services" / "billing" / "migrations")
    engine = make_engine(url, pool_size=10)
    yield engine
    engine.dispose()


@pytest.fixture
def two_owners(engine):
    """A client whose organisation has exactly two owners; the test then acts as the portal does for
    a signed-in owner of that client (row-level security and the role in the scope)."""
    with UnitOfWork(engine) as uow:
        ws = h.create_workspace(uow, utcnow(), {"name": "Roles Co", "email": "r@r.example.org"})["id"]
        uow.commit()
    with acting_for(Scope(ws)), UnitOfWork(engine) as uow:
        client_id = h.create_client(uow, utcnow(), ws, {"name": "Two Owners"})["id"]
        owners = [
            h.add_contact(
                uow, utcnow(), ws, client_id, {"email": f"o{i}@r.example.org", "portal_access": True, "role": "owner"}
            )["id"]
            for i in (1, 2)
        ]
        uow.commit()
    with acting_for(Scope(ws, client_id, role="owner")):
        yield ws, client_id, owners


def owners_left(engine, client_id) -> list[str]:
    with UnitOfWork(engine) as uow:
        return (
            uow.execute(
                sa.select(contacts.c.id).where(
                    contacts.c.client_id == client_id, contacts.c.role == "owner", contacts.c.portal_access.is_(True)
                )
            )
            .scalars()
            .all()
        )


def run(engine, handler, *args):
    with UnitOfWork(engine) as uow:
        result = handler(uow, utcnow(), *args)
        uow.commit()
        return result


@pytest.mark.parametrize("rounds", [5])
def test_two_owners_demoting_each_other_at_once_leave_one_owner(engine, two_owners, rounds):
    ws, client_id, (first, second) = two_owners
    for _ in range(rounds):
        actors = [first, second]
        results = in_parallel(
            2, lambda i: run(engine, h.change_contact_role, ws, client_id, actors[i], actors[1 - i], "payer")
        )
        won = [r for r in results if isinstance(r, dict)]
        lost = [r for r in results if isinstance(r, Exception)]
        assert len(won) == 1 and len(lost) == 1, results
        assert isinstance(lost[0], (Forbidden, Conflict))  # the loser is no owner any more, or the last one
        [left] = owners_left(engine, client_id)
        assert left in (first, second)
        # make the demoted one an owner again for the next round
        run(engine, h.change_contact_role, ws, client_id, left, first if left == second else second, "owner")
        assert sorted(owners_left(engine, client_id)) == sorted([first, second])


def test_two_owners_removing_each_other_at_once_leave_one_owner(engine, two_owners):
    ws, client_id, (first, second) = two_owners
    actors = [first, second]
    results = in_parallel(2, lambda i: run(engine, h.remove_contact, ws, client_id, actors[i], actors[1 - i]))
    assert sum(isinstance(r, dict) for r in results) == 1, results
    assert len(owners_left(engine, client_id)) == 1


def test_owners_stepping_down_at_once_leave_one_owner(engine, two_owners):
    ws, client_id, (first, second) = two_owners
    actors = [first, second]
    results = in_parallel(
        2, lambda i: run(engine, h.change_contact_role, ws, client_id, actors[i], actors[i], "viewer")
    )
    assert sum(isinstance(r, dict) for r in results) == 1, results
    assert [type(r) for r in results if isinstance(r, Exception)] == [Conflict]  # the last owner stays
    assert len(owners_left(engine, client_id)) == 1

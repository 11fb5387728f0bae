"""Passkey use cases on a real (embedded SQLite) database, answered by a software authenticator that
signs exactly as a browser's would: registration, discoverable sign-in, step-up, single-use and
expiring challenges, the signature counter, naming and removing."""

import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from chassis import credentials
from chassis.db import joined
from chassis.errors import Conflict, Invalid, NotFound, RateLimited, Unauthorized
from chassis.events import OUTBOX
from services.auth import domain, handlers, passkeys
from services.auth.tables import passkey_challenges, sessions
from services.auth.tables import passkeys as passkey_table
from tests.passkey_authenticator import SoftAuthenticator
from tests.unit.test_auth_handlers import committed

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
PORTAL = "https://portal.example.com"
POLICY = domain.Policy()
KEYS = credentials.Keys.parse("test:" + "k" * 40)


def contact(cid, email, client):
    return {
        "id": cid,
        "workspace_id": "ws1",
        "client_id": client,
        "email": email,
        "name": "Dana",
        "portal_access": True,
        "version": 1,
    }


@pytest.fixture
def engine(sqlite_engine):
    engine = sqlite_engine("auth")
    with engine.begin() as conn, joined(conn) as uow:
        handlers.apply_contact(uow, contact("c1", "demo@example.com", "cl1"), NOW)
        handlers.apply_contact(uow, contact("c2", "other@example.com", "cl2"), NOW)
    return engine


def run(engine, fn, *args, **kwargs):
    with committed(engine) as uow:
        return fn(uow, *args, **kwargs)


def register(engine, key, contact_id="c1", name="Laptop", now=NOW):
    options = run(engine, passkeys.registration_options, now, contact_id, PORTAL, "Acme Studio")
    return run(engine, passkeys.register, now, contact_id, key.create(options), name, PORTAL)


def sign_in(engine, key, now=NOW, **kwargs):
    options = run(engine, passkeys.sign_in_options, now, PORTAL)
    answer = key.get(options, **kwargs)
    return run(engine, passkeys.sign_in, now, answer, PORTAL, None, "10.0.0.1", POLICY, KEYS), answer


def events(engine, event_type):
    with engine.connect() as conn:
        bodies = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).scalars().all()
    return [json.loads(body)["data"] for body in bodies]


@pytest.fixture
def key():
    return SoftAuthenticator(PORTAL, "portal.example.com")


def test_a_registered_passkey_signs_in_without_an_email_and_proves_presence(engine, key):
    added = register(engine, key)
    assert added["name"] == "Laptop" and added["last_used_at"] is None
    assert events(engine, "passkey.added") == [
        {"id": added["id"], "contact_id": "c1", "client_id": "cl1", "name": "Laptop"}
    ]
    session, _ = sign_in(engine, key, now=NOW + timedelta(minutes=1))
    read = credentials.read(session["credential"], KEYS)
    assert (read.contact_id, read.client_id, read.workspace_id) == ("c1", "cl1", "ws1")
    assert read.proved_at == NOW + timedelta(minutes=1)
    [listed] = run(engine, passkeys.list_passkeys, NOW, "c1")
    assert listed["last_used_at"] == (NOW + timedelta(minutes=1)).isoformat()
    assert run(engine, passkeys.list_passkeys, NOW, "c2") == []  # another contact sees none of them
    assert events(engine, "auth.signed_in")[-1]["contact_id"] == "c1"


def test_a_replayed_assertion_is_refused_and_opens_no_session(engine, key):
    register(engine, key)
    _, answer = sign_in(engine, key)
    with engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one()
    with pytest.raises(Unauthorized, match="challenge"):
        run(engine, passkeys.sign_in, NOW, answer, PORTAL, None, None, POLICY, KEYS)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one() == before


def test_a_counter_that_does_not_grow_is_a_cloned_key_and_is_refused(engine, key):
    register(engine, key)
    sign_in(engine, key)
    with pytest.raises(Unauthorized, match="passkey"):
        sign_in(engine, key, count=False)  # a fresh challenge, but the same counter as last time


def test_challenges_expire_and_answer_only_their_own_purpose(engine, key):
    options = run(engine, passkeys.registration_options, NOW, "c1", PORTAL, "")
    with pytest.raises(Unauthorized, match="challenge"):  # five minutes later it is gone
        run(engine, passkeys.register, NOW + timedelta(minutes=6), "c1", key.create(options), "x", PORTAL)
    options = run(engine, passkeys.registration_options, NOW, "c1", PORTAL, "")
    with pytest.raises(Unauthorized, match="challenge"):  # another contact cannot answer c1's challenge
        run(engine, passkeys.register, NOW, "c2", key.create(options), "x", PORTAL)
    register(engine, key)
    sign_options = run(engine, passkeys.sign_in_options, NOW, PORTAL)
    with pytest.raises(Unauthorized, match="challenge"):  # a sign-in challenge is no step-up
        run(engine, passkeys.step_up, NOW, "c1", "1", key.get(sign_options), PORTAL)


def test_an_answer_from_another_site_is_refused(engine, key):
    register(engine, key)
    with pytest.raises(Unauthorized, match="passkey"):
        sign_in(engine, key, origin="https://evil.example.net")
    with pytest.raises(Invalid):
        options = run(engine, passkeys.registration_options, NOW, "c1", PORTAL, "")
        run(
            engine,
            passkeys.register,
            NOW,
            "c1",
            SoftAuthenticator("https://x.test", "x.test").create(options),
            "",
            PORTAL,
        )


def test_step_up_needs_this_contacts_passkey_and_this_sessions_challenge(engine, key):
    with pytest.raises(Conflict):  # no passkey yet: the page offers a sign-in link instead
        run(engine, passkeys.step_up_options, NOW, "c1", "7", PORTAL)
    register(engine, key)
    options = run(engine, passkeys.step_up_options, NOW, "c1", "7", PORTAL)
    assert [c["id"] for c in options["allowCredentials"]] == [passkeys.bytes_to_base64url(key.credential_id)]
    answer = key.get(options)
    with pytest.raises(Unauthorized, match="challenge"):  # another session cannot use it
        run(engine, passkeys.step_up, NOW, "c1", "8", answer, PORTAL)
    options = run(engine, passkeys.step_up_options, NOW, "c1", "7", PORTAL)
    proved = run(engine, passkeys.step_up, NOW + timedelta(seconds=5), "c1", "7", key.get(options), PORTAL)
    assert proved["proved_at"] == (NOW + timedelta(seconds=5)).isoformat()
    other = SoftAuthenticator(PORTAL, "portal.example.com")
    register(engine, other, contact_id="c2")
    options = run(engine, passkeys.step_up_options, NOW, "c1", "7", PORTAL)
    with pytest.raises(Unauthorized, match="passkey"):  # c2's passkey does not prove c1
        run(engine, passkeys.step_up, NOW, "c1", "7", other.get(options), PORTAL)


def test_rename_and_remove_only_ones_own_passkeys(engine, key):
    added = register(engine, key)
    assert run(engine, passkeys.rename_passkey, NOW, "c1", added["id"], "  Work   phone ")["name"] == "Work phone"
    with pytest.raises(Invalid):
        run(engine, passkeys.rename_passkey, NOW, "c1", added["id"], "x" * 101)
    with pytest.raises(Invalid):
        run(engine, passkeys.rename_passkey, NOW, "c1", added["id"], "   ")
    with pytest.raises(NotFound):
        run(engine, passkeys.remove_passkey, NOW, "c2", added["id"])
    assert run(engine, passkeys.remove_passkey, NOW, "c1", added["id"]) == []
    with pytest.raises(NotFound):  # the second tab's remove
        run(engine, passkeys.remove_passkey, NOW, "c1", added["id"])
    assert events(engine, "passkey.removed") == [
        {"id": added["id"], "contact_id": "c1", "client_id": "cl1", "name": "Work phone"}
    ]
    with pytest.raises(Unauthorized, match="passkey"):  # a removed passkey signs nobody in
        sign_in(engine, key)


def test_the_same_authenticator_is_not_registered_twice(engine, key):
    register(engine, key)
    options = run(engine, passkeys.registration_options, NOW, "c1", PORTAL, "")
    assert [c["id"] for c in options["excludeCredentials"]] == [passkeys.bytes_to_base64url(key.credential_id)]
    with pytest.raises(Conflict):
        run(engine, passkeys.register, NOW, "c1", key.create(options), "Again", PORTAL)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(passkey_table)).scalar_one() == 1


def test_malformed_answers_are_refused_and_change_nothing(engine):
    for bad in ["not json", {"id": 5}, "x" * 50000]:
        with pytest.raises(Invalid):
            run(engine, passkeys.sign_in, NOW, bad, PORTAL, None, None, POLICY, KEYS)
    for unsigned in [{"id": "x", "response": {"clientDataJSON": "!!"}}, {"id": "x", "response": {}}]:
        with pytest.raises(Unauthorized, match="challenge"):  # it answers no challenge of ours
            run(engine, passkeys.sign_in, NOW, unsigned, PORTAL, None, None, POLICY, KEYS)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sessions)).scalar_one() == 0


def test_a_magic_link_also_proves_presence():
    link_session = credentials.Session("1", "c1", "cl1", "ws1", "a@b.c", "", None, NOW, NOW, proved_at=NOW)
    assert credentials.read(credentials.issue(link_session, KEYS), KEYS).proved_at == NOW


def test_starting_passkey_sign_ins_is_rate_limited_per_address(engine):
    policy = domain.Policy(links_per_ip=3)
    for _ in range(3):
        run(engine, passkeys.sign_in_options, NOW, PORTAL, "10.0.0.9", policy)
    with pytest.raises(RateLimited):
        run(engine, passkeys.sign_in_options, NOW, PORTAL, "10.0.0.9", policy)
    run(engine, passkeys.sign_in_options, NOW, PORTAL, "10.0.0.10", policy)  # another address may
    run(engine, passkeys.sign_in_options, NOW + policy.rate_window + timedelta(seconds=1), PORTAL, "10.0.0.9", policy)


def test_expired_challenges_are_cleared_as_new_ones_are_made(engine):
    run(engine, passkeys.sign_in_options, NOW, PORTAL)
    run(engine, passkeys.sign_in_options, NOW + timedelta(minutes=11), PORTAL)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(passkey_challenges)).scalar_one() == 1

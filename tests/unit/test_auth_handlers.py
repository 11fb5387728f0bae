"""Auth use cases on a real (embedded SQLite) database, with the time passed in."""
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Invalid, RateLimited, Unauthorized
from chassis.events import OUTBOX
from services.auth import domain, handlers
from services.auth.tables import link_tokens, sessions

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
POLICY = domain.Policy(links_per_email=3, links_per_ip=5)


def contact(cid="c1", email="demo@example.com", access=True, version=1, client="cl1"):
    return {"id": cid, "workspace_id": "ws1", "client_id": client, "email": email, "name": "Dana",
            "portal_access": access, "version": version}


@pytest.fixture
def engine(sqlite_engine):
    engine = sqlite_engine("auth")
    with engine.begin() as conn:
        handlers.apply_contact(conn, contact(), NOW)
        handlers.apply_contact(conn, contact("c2", "other@example.com", client="cl2"), NOW)
        handlers.apply_contact(conn, contact("c3", "off@example.com", access=False, client="cl3"), NOW)
    return engine


def request(engine, email="demo@example.com", ip="10.0.0.1", now=NOW):
    with UnitOfWork(engine) as uow:
        return handlers.request_links(uow, email, ip, now, POLICY)


def consume(engine, token, previous=None, now=NOW):
    with UnitOfWork(engine) as uow:
        return handlers.consume_link(uow, token, previous, now)


def validate(engine, sid, now=NOW):
    with UnitOfWork(engine) as uow:
        return handlers.validate_session(uow, sid, now, POLICY)


def test_link_is_issued_for_a_portal_contact_and_only_its_hash_is_stored(engine):
    [link] = request(engine)
    with engine.connect() as conn:
        stored = conn.execute(sa.select(link_tokens.c.token_hash)).scalars().all()
    assert stored == [domain.hash_secret(link["token"])]
    assert link["email"] == "demo@example.com"


@pytest.mark.parametrize("email", ["nobody@example.com", "off@example.com"])
def test_unknown_or_disabled_addresses_get_no_link_and_no_error(engine, email):
    assert request(engine, email) == []


def test_malformed_email_stores_nothing(engine):
    with pytest.raises(Invalid):
        request(engine, "not an email")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(link_tokens)).scalar_one() == 0


def test_requests_are_rate_limited_per_email_and_per_ip(engine):
    for _ in range(3):
        request(engine)
    with pytest.raises(RateLimited):
        request(engine, ip="10.9.9.9")  # same email, other IP
    for i in range(2):
        request(engine, f"x{i}@example.com", ip="10.0.0.7")
    request(engine, "y@example.com", ip="10.0.0.7")
    request(engine, "z@example.com", ip="10.0.0.7")
    request(engine, "w@example.com", ip="10.0.0.7")
    with pytest.raises(RateLimited):
        request(engine, "v@example.com", ip="10.0.0.7")
    # the window passes and the address may ask again
    assert request(engine, now=NOW + POLICY.rate_window + timedelta(seconds=1))


def test_a_link_signs_in_once(engine):
    [link] = request(engine)
    session = consume(engine, link["token"])
    assert session["client_id"] == "cl1" and len(session["sid"]) >= 43
    with pytest.raises(Unauthorized, match="used"):
        consume(engine, link["token"])


def test_expired_and_unknown_links_are_refused(engine):
    [link] = request(engine)
    with pytest.raises(Unauthorized, match="expired"):
        consume(engine, link["token"], now=NOW + timedelta(hours=24))
    with pytest.raises(Unauthorized, match="unknown"):
        consume(engine, "forged-token")
    with UnitOfWork(engine) as uow:
        assert handlers.link_state(uow, link["token"], NOW) == "valid"  # peeking consumed nothing


def test_signing_in_again_rotates_the_previous_session(engine):
    [first] = request(engine)
    old = consume(engine, first["token"])
    [second] = request(engine)
    new = consume(engine, second["token"], previous=old["sid"])
    with pytest.raises(Unauthorized, match="revoked"):
        validate(engine, old["sid"])
    assert validate(engine, new["sid"])["contact_id"] == "c1"


def test_sessions_expire_when_idle_and_absolutely(engine):
    [link] = request(engine)
    sid = consume(engine, link["token"])["sid"]
    t = NOW
    for _ in range(25):  # active every 29 minutes for 12 hours
        t += timedelta(minutes=29)
        if t >= NOW + POLICY.session_absolute:
            break
        validate(engine, sid, t)
    with pytest.raises(Unauthorized, match="expired"):
        validate(engine, sid, NOW + POLICY.session_absolute)
    [link2] = request(engine, now=NOW + timedelta(hours=13))
    sid2 = consume(engine, link2["token"], now=NOW + timedelta(hours=13))["sid"]
    with pytest.raises(Unauthorized, match="idle"):
        validate(engine, sid2, NOW + timedelta(hours=13, minutes=30))


def test_logout_revokes_server_side(engine):
    [link] = request(engine)
    sid = consume(engine, link["token"])["sid"]
    with UnitOfWork(engine) as uow:
        assert handlers.logout(uow, sid, NOW)
    with pytest.raises(Unauthorized):
        validate(engine, sid)


def test_logout_everywhere_ends_the_contacts_sessions_on_every_device(engine):
    sids = []
    for _ in range(3):  # a laptop, a phone, a tablet
        [link] = request(engine)
        sids.append(consume(engine, link["token"])["sid"])
    with UnitOfWork(engine) as uow:
        assert handlers.logout(uow, sids[0], NOW) == 1
    validate(engine, sids[1])  # the others still work
    with UnitOfWork(engine) as uow:
        assert handlers.logout(uow, sids[1], NOW, everywhere=True) == 2
        assert handlers.logout(uow, "forged", NOW, everywhere=True) == 0
    for sid in sids:
        with pytest.raises(Unauthorized):
            validate(engine, sid)


def test_disabling_portal_access_revokes_sessions_and_old_versions_are_ignored(engine):
    [link] = request(engine)
    sid = consume(engine, link["token"])["sid"]
    with engine.begin() as conn:
        handlers.apply_contact(conn, contact(access=False, version=2), NOW)
        handlers.apply_contact(conn, contact(access=True, version=1), NOW)  # a late, older event
    with pytest.raises(Unauthorized):
        validate(engine, sid)
    assert request(engine) == []


def test_sign_in_publishes_an_event_through_the_outbox(engine):
    [link] = request(engine)
    consume(engine, link["token"])
    with engine.connect() as conn:
        types = conn.execute(sa.select(OUTBOX.c.event_type)).scalars().all()
    assert types == ["auth.signed_in"]


def test_session_rows_store_no_plaintext_id(engine):
    [link] = request(engine)
    sid = consume(engine, link["token"])["sid"]
    with engine.connect() as conn:
        hashes = conn.execute(sa.select(sessions.c.sid_hash)).scalars().all()
    assert hashes == [domain.hash_secret(sid)]


def test_guessing_link_tokens_is_rate_limited_per_address_even_for_a_real_link(engine):
    policy = domain.Policy(verify_failures_per_ip=3)
    [link] = request(engine)

    def state(token, ip, now=NOW):
        with UnitOfWork(engine) as uow:
            return handlers.link_state(uow, token, now, ip, policy)

    for guess in ("guess-1", "guess-2", ""):
        assert state(guess, "10.6.6.6") == "unknown"
    with pytest.raises(RateLimited):
        state("guess-4", "10.6.6.6")
    with pytest.raises(RateLimited), UnitOfWork(engine) as uow:  # a lucky guess gets nothing either
        handlers.consume_link(uow, link["token"], None, NOW, "10.6.6.6", policy)
    assert state(link["token"], "10.0.0.1") == "valid"  # nothing consumed; another address is not limited
    with UnitOfWork(engine) as uow:
        handlers.consume_link(uow, link["token"], None, NOW, "10.0.0.1", policy)
    for _ in range(3):  # replaying a used link is refused as used, and is not counted as a guess
        with pytest.raises(Unauthorized, match="used"), UnitOfWork(engine) as uow:
            handlers.consume_link(uow, link["token"], None, NOW, "10.0.0.1", policy)
    assert state("guess-6", "10.0.0.1") == "unknown"
    assert state("guess-5", "10.6.6.6", NOW + policy.rate_window + timedelta(seconds=1)) == "unknown"

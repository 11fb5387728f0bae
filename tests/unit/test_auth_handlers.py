"""Auth use cases on a real (embedded SQLite) database, with the time passed in."""

import contextlib
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from chassis import credentials
from chassis.db import UnitOfWork, joined
from chassis.errors import Invalid, RateLimited, Unauthorized
from chassis.events import OUTBOX
from services.auth import domain, handlers
from services.auth.tables import link_tokens, sessions

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
POLICY = domain.Policy(links_per_email=3, links_per_ip=5)
KEYS = credentials.Keys.parse("test:" + "k" * 40)


def contact(cid="c1", email="demo@example.com", access=True, version=1, client="cl1"):
    return {
        "id": cid,
        "workspace_id": "ws1",
        "client_id": client,
        "email": email,
        "name": "Dana",
        "portal_access": access,
        "version": version,
    }


@pytest.fixture
def engine(sqlite_engine):
    engine = sqlite_engine("auth")
    with engine.begin() as conn, joined(conn) as uow:
        handlers.apply_contact(uow, contact(), NOW)
        handlers.apply_contact(uow, contact("c2", "other@example.com", client="cl2"), NOW)
        handlers.apply_contact(uow, contact("c3", "off@example.com", access=False, client="cl3"), NOW)
    return engine


@contextlib.contextmanager
def committed(engine):
    """A unit of work as an entrypoint runs a handler in: committed when the block ends without an error."""
    with UnitOfWork(engine) as uow:
        yield uow
        uow.commit()


def request(engine, email="demo@example.com", ip="10.0.0.1", now=NOW):
    with committed(engine) as uow:
        return handlers.request_links(uow, email, ip, now, POLICY)


def consume(engine, token, previous=None, now=NOW):
    with committed(engine) as uow:
        return handlers.consume_link(uow, token, previous, now, None, POLICY, KEYS)


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


def test_a_link_signs_in_once_and_gives_a_signed_credential(engine):
    [link] = request(engine)
    session = consume(engine, link["token"])
    claims = credentials.read(session["credential"], KEYS)
    assert (claims.session_id, claims.contact_id, claims.client_id, claims.workspace_id, claims.email) == (
        session["session_id"],
        "c1",
        "cl1",
        "ws1",
        "demo@example.com",
    )
    assert claims.started_at == claims.seen_at == NOW and claims.state(NOW, POLICY.limits) == "active"
    with pytest.raises(Unauthorized, match="used"):
        consume(engine, link["token"])
    with pytest.raises(credentials.Refused, match="forged"):  # another deployment's keys sign nothing here
        credentials.read(session["credential"], credentials.Keys.parse("k2:" + "x" * 40))


def test_expired_and_unknown_links_are_refused(engine):
    [link] = request(engine)
    with pytest.raises(Unauthorized, match="expired"):
        consume(engine, link["token"], now=NOW + timedelta(hours=24))
    with pytest.raises(Unauthorized, match="unknown"):
        consume(engine, "forged-token")
    with UnitOfWork(engine) as uow:
        assert handlers.link_state(uow, link["token"], NOW) == "valid"  # peeking consumed nothing


def state(engine, session) -> str:
    with UnitOfWork(engine) as uow:
        return handlers.check_session(uow, NOW, session["session_id"])


def ended(engine) -> list[tuple[str, str]]:
    """(session id, reason) of every session.ended event, in order."""
    with engine.connect() as conn:
        bodies = (
            conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "session.ended").order_by(OUTBOX.c.seq))
            .scalars()
            .all()
        )
    return [(json.loads(b)["data"]["session_id"], json.loads(b)["data"]["reason"]) for b in bodies]


def test_signing_in_again_ends_the_previous_session_and_says_so(engine):
    [first] = request(engine)
    old = consume(engine, first["token"])
    [second] = request(engine)
    new = consume(engine, second["token"], previous=old["session_id"])
    assert (state(engine, old), state(engine, new)) == ("revoked", "active")
    assert ended(engine) == [(old["session_id"], "signed_in_again")]


def test_signing_out_ends_the_session_and_every_gateway_is_told(engine):
    [link] = request(engine)
    session = consume(engine, link["token"])
    with committed(engine) as uow:
        assert handlers.end_session(uow, NOW, session["session_id"]) == 1
        assert handlers.end_session(uow, NOW, session["session_id"]) == 0  # already ended
    assert state(engine, session) == "revoked"
    [event] = [json.loads(b) for b in outbox(engine, "session.ended")]
    assert event["data"] == {
        "session_id": session["session_id"],
        "contact_id": "c1",
        "client_id": "cl1",
        "reason": "signed_out",
        "ended_at": NOW.isoformat(),
        "remember_until": (NOW + POLICY.session_absolute).isoformat(),
    }


def test_signing_out_everywhere_ends_the_contacts_sessions_on_every_device(engine):
    sessions_ = []
    for _ in range(3):  # a laptop, a phone, a tablet
        [link] = request(engine)
        sessions_.append(consume(engine, link["token"]))
    with committed(engine) as uow:
        assert handlers.end_session(uow, NOW, sessions_[0]["session_id"]) == 1
    assert state(engine, sessions_[1]) == "active"  # the others still work
    with committed(engine) as uow:
        assert handlers.end_session(uow, NOW, sessions_[1]["session_id"], everywhere=True) == 2
        assert handlers.end_session(uow, NOW, "forged", everywhere=True) == 0
    assert [state(engine, s) for s in sessions_] == ["revoked"] * 3
    assert [reason for _, reason in ended(engine)] == ["signed_out", "signed_out_everywhere", "signed_out_everywhere"]


def test_disabling_portal_access_ends_sessions_and_old_versions_are_ignored(engine):
    [link] = request(engine)
    session = consume(engine, link["token"])
    with engine.begin() as conn, joined(conn) as uow:
        handlers.apply_contact(uow, contact(access=False, version=2), NOW)
        handlers.apply_contact(uow, contact(access=True, version=1), NOW)  # a late, older event
    assert state(engine, session) == "revoked"
    assert ended(engine) == [(session["session_id"], "access_removed")]
    assert request(engine) == []


def test_the_revocation_list_holds_what_a_gateway_must_refuse_while_it_matters(engine):
    [link] = request(engine)
    session = consume(engine, link["token"])
    with committed(engine) as uow:
        handlers.end_session(uow, NOW, session["session_id"])
    with UnitOfWork(engine) as uow:
        listed = handlers.revocations(uow, NOW, POLICY)
    assert listed["sessions"] == [[session["session_id"], (NOW + POLICY.session_absolute).isoformat()]]
    assert listed["contacts"] == [["c3", NOW.isoformat()]]  # off@example.com has no portal access
    with UnitOfWork(engine) as uow:  # once its credential has expired anyway, the session is not listed
        assert handlers.revocations(uow, NOW + POLICY.session_absolute, POLICY)["sessions"] == []


def test_gateways_report_when_sessions_were_last_seen(engine):
    [link] = request(engine)
    session = consume(engine, link["token"])
    later = NOW + timedelta(minutes=7)
    with committed(engine) as uow:
        assert (
            handlers.sessions_seen(
                uow, later, {session["session_id"]: later.isoformat(), "999": later.isoformat(), "x": "not a time"}
            )
            == 1
        )
        assert handlers.sessions_seen(uow, later, {session["session_id"]: NOW.isoformat()}) == 0  # never back
    with engine.connect() as conn:
        assert conn.execute(sa.select(sessions.c.last_seen_at)).scalar_one() == later


def test_sign_in_publishes_an_event_through_the_outbox(engine):
    [link] = request(engine)
    consume(engine, link["token"])
    with engine.connect() as conn:
        types = conn.execute(sa.select(OUTBOX.c.event_type)).scalars().all()
    assert types == ["auth.signed_in", "session.started"]


def outbox(engine, event_type: str) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).scalars().all()


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
        handlers.consume_link(uow, link["token"], None, NOW, "10.6.6.6", policy, KEYS)
    assert state(link["token"], "10.0.0.1") == "valid"  # nothing consumed; another address is not limited
    with committed(engine) as uow:
        handlers.consume_link(uow, link["token"], None, NOW, "10.0.0.1", policy, KEYS)
    for _ in range(3):  # replaying a used link is refused as used, and is not counted as a guess
        with pytest.raises(Unauthorized, match="used"), UnitOfWork(engine) as uow:
            handlers.consume_link(uow, link["token"], None, NOW, "10.0.0.1", policy, KEYS)
    assert state("guess-6", "10.0.0.1") == "unknown"
    assert state("guess-5", "10.6.6.6", NOW + policy.rate_window + timedelta(seconds=1)) == "unknown"

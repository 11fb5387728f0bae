"""Passwords: the NIST SP 800-63B rules, argon2id hashing, and auth's password use cases on a real
(embedded SQLite) database with the time passed in."""

import json
from datetime import datetime, timedelta, timezone
from email import message_from_string, policy

import pytest
import sqlalchemy as sa

from chassis import credentials, event_contract
from chassis.db import UnitOfWork, joined
from chassis.errors import Conflict, Invalid, RateLimited, Unauthorized
from chassis.events import OUTBOX
from services.auth import domain, handlers, password_handlers, passwords
from services.auth.tables import password_reset_tokens, rate_hits, sessions
from services.auth.tables import passwords as password_rows
from services.documents import handlers as documents
from services.documents import mails, preferences
from services.documents.tables import emails
from tests.unit.test_auth_handlers import committed

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)
POLICY = domain.Policy(links_per_email=3, links_per_ip=5)
RULES = passwords.PasswordPolicy(failures_per_account=3, failures_per_ip=5)
KEYS = credentials.Keys.parse("test:" + "k" * 40)
GOOD = "correct horse battery staple"


class CountingHasher(passwords.Hasher):
    """The real argon2id, cheap parameters; counts the hashes it runs (one per verify or hash)."""

    def __init__(self):
        self.runs = 0
        super().__init__(run=self._count, time_cost=1, memory_cost=1024)

    def _count(self, fn, *args):
        self.runs += 1
        return fn(*args)


# --- the rules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password, reason",
    [
        ("", "required"),
        (None, "required"),
        ("short pass", "too_short"),
        ("x" * 11, "too_short"),
        ("a" * 129 + "bcd", "too_long"),
        ("QWERTY123456", "common"),  # from the shipped list, whatever the case
        ("1q2w3e4r5t6y", "common"),
        ("Dana.Smith.Example@Example.com", "email"),
        ("Dana.Smith.Example", "email"),
        ("aaaaaaaaaaaaaaaa", "repetitive"),
        ("abababababababab", "repetitive"),
    ],
)
def test_a_new_password_is_refused_with_its_reason(password, reason):
    with pytest.raises(Invalid) as refused:
        passwords.check_new_password(password, "dana.smith.example@example.com" if reason == "email" else None)
    assert refused.value.fields == {"password": reason}
    assert refused.value.detail  # a sentence the page shows


def test_the_email_itself_is_refused():
    with pytest.raises(Invalid) as refused:
        passwords.check_new_password("Dana@Example.com", "dana@example.com")
    assert refused.value.fields == {"password": "email"}


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "alllowercaseletters",  # no composition rules: no digit, capital or symbol asked for
        "x" * 60 + "yz12",  # long ones are welcome: NIST asks to accept at least 64
        "zwölf Äpfel im Körbchen",
        "🙂🙃🙂 three faces 🙃",
    ],
)
def test_a_long_uncommon_password_is_accepted_as_typed(password):
    assert passwords.check_new_password(password, "dana@example.com") == passwords.normalise(password)


def test_the_shipped_common_list_is_the_full_ten_thousand():
    common = passwords.common_passwords()
    assert len(common) > 9000 and "password" in common and "123456" in common and "qwertyuiop" in common


def test_unicode_is_normalised_so_the_same_password_typed_elsewhere_matches():
    decomposed, composed = "cafe\u0301 au lait please", "café au lait please"
    hasher = CountingHasher()
    assert hasher.verify(hasher.hash(passwords.check_new_password(composed)), decomposed)


# --- hashing ---------------------------------------------------------------------------------------------


def test_hashes_are_argon2id_salted_and_verify_only_the_right_password():
    hasher = passwords.Hasher()  # the production parameters
    first, second = hasher.hash(GOOD), hasher.hash(GOOD)
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and first != second  # a salt each
    assert hasher.verify(first, GOOD) and hasher.verify(second, GOOD)
    assert not hasher.verify(first, GOOD + " ") and not hasher.verify(first, "")
    assert not hasher.verify("not a hash", GOOD)


def test_verifying_without_a_stored_hash_does_the_same_work_and_fails():
    hasher = CountingHasher()
    assert hasher.verify(None, GOOD) is False
    assert hasher.verify(None, hasher.dummy) is False
    assert hasher.runs == 2


def test_old_parameters_are_flagged_for_rehashing():
    weak = passwords.Hasher(time_cost=1, memory_cost=1024).hash(GOOD)
    assert passwords.Hasher().needs_rehash(weak)


# --- the use cases ---------------------------------------------------------------------------------------


def contact(cid="c1", email="dana@example.com", client="cl1", workspace="ws1", access=True):
    return {
        "id": cid,
        "workspace_id": workspace,
        "client_id": client,
        "email": email,
        "name": "Dana",
        "portal_access": access,
        "version": 1,
    }


def workspace(wid="ws1", enabled=True, version=1):
    return {"id": wid, "version": version, "settings": {"passwords_enabled": enabled}}


@pytest.fixture
def engine(sqlite_engine):
    engine = sqlite_engine("auth")
    with engine.begin() as conn, joined(conn) as uow:
        handlers.apply_contact(uow, contact(), NOW)
        handlers.apply_contact(uow, contact("c2", "erin@example.com", client="cl2"), NOW)
        handlers.apply_contact(uow, contact("c3", "olaf@example.com", client="cl3", workspace="ws2"), NOW)
        password_handlers.apply_workspace(uow, workspace("ws1", True), NOW)
        password_handlers.apply_workspace(uow, workspace("ws2", False), NOW)
    return engine


def session_for(engine, contact_id="c1") -> str:
    with engine.begin() as conn, joined(conn) as uow:
        row = conn.execute(sa.select(handlers.contacts).where(handlers.contacts.c.id == contact_id)).one()
        answer = password_handlers._open_session(uow, row, None, NOW, POLICY, KEYS)
    return answer["session_id"]


def set_password(engine, new=GOOD, current=None, session_id=None, contact_id="c1", hasher=None, now=NOW):
    session_id = session_id or session_for(engine, contact_id)
    with committed(engine) as uow:
        return password_handlers.set_password(
            uow, now, session_id, contact_id, current, new, POLICY, RULES, hasher or CountingHasher()
        )


def sign_in(engine, email="dana@example.com", password=GOOD, ip="10.0.0.1", hasher=None, now=NOW):
    with committed(engine) as uow:
        return password_handlers.sign_in(
            uow, email, password, ip, None, now, POLICY, RULES, hasher or CountingHasher(), KEYS
        )


def open_sessions(engine, contact_id="c1") -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(sessions.c.id).where(sessions.c.contact_id == contact_id, sessions.c.revoked_at.is_(None))
        )
        return [str(r.id) for r in rows]


def events(engine, kind: str) -> list[dict]:
    with engine.connect() as conn:
        bodies = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == kind).order_by(OUTBOX.c.seq))
        envelopes = [json.loads(body) for body in bodies.scalars()]
    assert [event_contract.validate(e) for e in envelopes] == [[] for _ in envelopes]  # as documented
    return envelopes


def test_the_workspace_setting_follows_billing_events_in_version_order(engine):
    with engine.begin() as conn, joined(conn) as uow:
        password_handlers.apply_workspace(uow, workspace("ws2", True, version=3), NOW)
        password_handlers.apply_workspace(uow, workspace("ws2", False, version=2), NOW)  # late
        assert password_handlers._workspace_allows(uow, "ws2")
        password_handlers.apply_workspace(uow, {"id": "ws3", "version": 1, "settings": {}}, NOW)
        assert not password_handlers._workspace_allows(uow, "ws3")  # off by default


def test_a_contact_sets_a_password_and_signs_in_with_it(engine):
    saved = set_password(engine)
    assert saved["has_password"] and saved["sessions_ended"] == 0
    with engine.connect() as conn:
        stored = conn.execute(sa.select(password_rows.c.hash)).scalar_one()
    assert stored.startswith("$argon2id$") and GOOD not in stored
    answer = sign_in(engine, email="  Dana@Example.com ")
    assert answer["contact_id"] == "c1" and answer["client_id"] == "cl1"
    assert credentials.read(answer["credential"], KEYS).contact_id == "c1"
    assert events(engine, "password.set")[0]["data"]["changed"] is False


def test_a_wrong_password_an_unknown_email_and_no_password_are_the_same_refusal_after_the_same_work(engine):
    set_password(engine)
    answers = []
    for email, password in [
        ("dana@example.com", GOOD + "!"),  # wrong password
        ("nobody@example.com", GOOD),  # no such contact
        ("erin@example.com", GOOD),  # a contact without a password
        ("olaf@example.com", GOOD),  # a contact whose workspace has passwords off
    ]:
        hasher = CountingHasher()
        with pytest.raises(Unauthorized) as refused:
            sign_in(engine, email=email, password=password, hasher=hasher, ip=f"10.0.0.{len(answers)}")
        answers.append((refused.value.detail, refused.value.fields, hasher.runs))
    assert answers == [("wrong_password", {}, 1)] * 4


def test_failures_are_limited_per_account_even_with_the_right_password_then(engine):
    set_password(engine)
    for i in range(RULES.failures_per_account):
        with pytest.raises(Unauthorized):
            sign_in(engine, password=f"wrong guess number {i}", ip=f"10.1.0.{i}")
    with pytest.raises(RateLimited):
        sign_in(engine, ip="10.9.9.9")
    assert sign_in(engine, now=NOW + POLICY.rate_window + timedelta(seconds=1))["contact_id"] == "c1"


def test_failures_are_limited_per_address_across_emails(engine):
    for i in range(RULES.failures_per_ip):
        with pytest.raises(Unauthorized):
            sign_in(engine, email=f"guess{i}@example.com", ip="10.2.0.1")
    with pytest.raises(RateLimited):
        sign_in(engine, email="dana@example.com", ip="10.2.0.1")
    with engine.connect() as conn:
        keys = set(conn.execute(sa.select(rate_hits.c.key)).scalars())
    assert "password:ip:10.2.0.1" in keys and "password:email:guess0@example.com" in keys


def test_password_sign_in_is_refused_plainly_when_no_workspace_allows_passwords(engine):
    set_password(engine)
    with engine.begin() as conn, joined(conn) as uow:
        password_handlers.apply_workspace(uow, workspace("ws1", False, version=2), NOW)
    with pytest.raises(Unauthorized) as refused:
        sign_in(engine)
    assert refused.value.detail == "passwords_off"


def test_turning_passwords_off_refuses_the_workspace_s_passwords(engine):
    set_password(engine)
    with engine.begin() as conn, joined(conn) as uow:
        password_handlers.apply_workspace(uow, workspace("ws1", False, version=2), NOW)
        password_handlers.apply_workspace(uow, workspace("ws2", True, version=2), NOW)
    with pytest.raises(Unauthorized) as refused:
        sign_in(engine)
    assert refused.value.detail == "wrong_password"
    with pytest.raises(Conflict):
        set_password(engine, new="another long passphrase", current=GOOD)


def test_changing_needs_the_current_password_and_ends_the_other_sessions_only(engine):
    set_password(engine)
    other, here = session_for(engine), session_for(engine)
    with pytest.raises(Invalid) as refused:
        set_password(engine, new="another long passphrase", current="not it at all", session_id=here)
    assert refused.value.fields == {"current_password": "wrong"}
    with pytest.raises(Invalid):
        set_password(engine, new="another long passphrase", current=None, session_id=here)
    assert other in open_sessions(engine)  # a refusal changes nothing
    saved = set_password(engine, new="another long passphrase", current=GOOD, session_id=here)
    assert saved["sessions_ended"] >= 1
    assert open_sessions(engine) == [here]
    ended = events(engine, "session.ended")
    assert {e["data"]["reason"] for e in ended} == {"password_changed"}
    assert sign_in(engine, password="another long passphrase")["contact_id"] == "c1"
    with pytest.raises(Unauthorized):
        sign_in(engine, password=GOOD, ip="10.3.0.1")


def test_a_refused_new_password_changes_nothing(engine):
    with pytest.raises(Invalid):
        set_password(engine, new="qwerty123456")
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(password_rows)).scalar_one() == 0
    assert events(engine, "password.set") == []


def reset_links(engine, email="dana@example.com", ip="10.0.0.1", now=NOW):
    with committed(engine) as uow:
        return password_handlers.request_reset(uow, email, ip, now, POLICY, RULES)


def reset(engine, token, new="a brand new passphrase", now=NOW):
    with committed(engine) as uow:
        return password_handlers.reset_password(uow, token, new, None, "10.0.0.1", now, POLICY, CountingHasher(), KEYS)


def state(engine, token, now=NOW):
    with UnitOfWork(engine) as uow:
        return password_handlers.reset_state(uow, token, now, "10.0.0.1", POLICY)


def test_forgot_password_issues_a_single_use_expiring_link_only_where_passwords_are_on(engine):
    assert reset_links(engine, "nobody@example.com") == []
    assert reset_links(engine, "olaf@example.com") == []  # passwords off in that workspace
    [link] = reset_links(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(password_reset_tokens.c.token_hash)).scalars().all() == [
            domain.hash_secret(link["token"])
        ]
    assert state(engine, link["token"]) == "valid"
    assert state(engine, link["token"], NOW + RULES.reset_ttl) == "expired"
    before = session_for(engine)
    answer = reset(engine, link["token"])
    assert answer["contact_id"] == "c1"
    assert open_sessions(engine) == [answer["session_id"]] and before not in open_sessions(engine)
    assert events(engine, "password.reset")[0]["data"]["sessions_ended"] == 1
    assert state(engine, link["token"]) == "used"
    with pytest.raises(Unauthorized) as refused:
        reset(engine, link["token"], new="yet another passphrase")
    assert refused.value.detail == "used"
    assert sign_in(engine, password="a brand new passphrase")["contact_id"] == "c1"


def test_a_reset_with_a_refused_password_leaves_the_link_usable(engine):
    [link] = reset_links(engine)
    with pytest.raises(Invalid):
        reset(engine, link["token"], new="too short")
    assert state(engine, link["token"]) == "valid"
    with pytest.raises(Unauthorized) as refused:
        reset(engine, link["token"], now=NOW + RULES.reset_ttl)
    assert refused.value.detail == "expired"


def test_reset_links_are_rate_limited_per_email(engine):
    for _ in range(POLICY.links_per_email):
        reset_links(engine, ip="10.4.0.1")
    with pytest.raises(RateLimited):
        reset_links(engine, ip="10.4.0.2")


def test_password_status_tells_the_profile_what_to_offer(engine):
    with UnitOfWork(engine) as uow:
        assert password_handlers.password_status(uow, "c1") == {"enabled": True, "has_password": False, "set_at": None}
        assert password_handlers.password_status(uow, "c3")["enabled"] is False
    set_password(engine)
    with UnitOfWork(engine) as uow:
        status = password_handlers.password_status(uow, "c1")
    assert status["has_password"] and status["set_at"] == NOW.isoformat()


# --- the "Forgot your password?" email -------------------------------------------------------------------


@pytest.mark.parametrize(
    "locale, subject, says",
    [
        (
            None,
            "Set your password for Acme Studio",
            "The link works once and expires on Wednesday, December 2, 2026, 5:00\u202fAM (Eastern Time).",
        ),
        (
            "de_DE",
            "Ihr Passwort für Acme Studio",
            "Der Link funktioniert einmal und ist bis Mittwoch, 2. Dezember 2026, 05:00"
            " (Nordamerikanische Ostküstenzeit) gültig.",
        ),
    ],
)
def test_the_reset_email_is_essential_and_speaks_the_contact_s_language(sqlite_engine, locale, subject, says):
    engine = sqlite_engine("documents")
    with engine.begin() as conn:
        documents.apply_workspace(conn, {"id": "ws1", "name": "Acme Studio", "timezone": "America/New_York"}, NOW)
    with UnitOfWork(engine) as uow:
        expires_at = mails.business_moment(
            documents.branding_or_default(uow, "ws1"), "2026-12-02T10:00:00+00:00", locale
        )
        documents.queue_email(
            uow,
            NOW,
            "Portal <no-reply@portal.test>",
            idempotency_key="password-reset:abc",
            kind="password_reset",
            to="dana@example.com",
            workspace_id="ws1",
            client_id="cl1",
            locale=locale,
            context={
                "name": "Dana",
                "url": "http://portal.test/password/reset?token=T0K",
                "expires_at": expires_at,
            },
        )
        uow.commit()
    with engine.connect() as conn:
        row = conn.execute(sa.select(emails.c.subject, emails.c.message)).one()
    text = message_from_string(row.message, policy=policy.default).get_body(("plain",)).get_content()
    assert row.subject == subject
    assert "http://portal.test/password/reset?token=T0K" in text and says in text
    assert preferences.category("password_reset", "c1") is None  # essential: never turned off


def test_an_address_email_validator_refuses_is_answered_like_any_unknown_one(engine):
    with pytest.raises(Unauthorized) as refused:
        sign_in(engine, email="pat@mail.test")  # a special-use domain: the API's schema accepts it
    assert refused.value.detail == "wrong_password"
    assert reset_links(engine, "pat@mail.test") == []
    with pytest.raises(Invalid):
        sign_in(engine, email="not an address")

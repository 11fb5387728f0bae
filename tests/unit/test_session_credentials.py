"""Sessions checked at the gateway: the signed credential, its limits against a moving clock, the
revocation list, key rotation, and what the gateway does with each (no broker, no auth)."""

import base64
import json
import warnings
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from chassis import credentials
from chassis.credentials import Keys, Limits, Refused, Session
from services.gateway.revocations import RevocationList
from services.gateway.sessions import SessionGuard
from tests.unit.test_gateway import DASHBOARD, NOW, SESSION, WORKSPACE, client, credential

KEYS = Keys.parse("k1:" + "a" * 40)
LIMITS = Limits()
STARTED = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def session(**changes) -> Session:
    values = dict(
        session_id="7",
        contact_id="c1",
        client_id="cl1",
        workspace_id="ws1",
        email="a@example.com",
        name="A",
        locale="en_US",
        started_at=STARTED,
        seen_at=STARTED,
    )
    return Session(**{**values, **changes})


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def guard(
    clock: Clock, revocations: RevocationList | None = None, rpc=None, workspaces=None, keys: Keys = KEYS
) -> SessionGuard:
    return SessionGuard(keys, LIMITS, revocations or RevocationList(ready=True), clock, rpc, workspaces)


# ---------------------------------------------------------------- forged


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        "a.b.c",
        "x" * 5000,
        credentials.issue(session(), Keys.parse("k1:" + "b" * 40)),  # signed with another secret, same key id
        credentials.issue(session(), Keys.parse("k9:" + "a" * 40)),  # a key id nobody here knows
        jwt.encode({"sid": "7", "sub": "c1", "cli": "cl1", "ws": "ws1", "iat": 1}, None, algorithm="none"),
    ],
)
def test_a_forged_credential_is_refused(token):
    with pytest.raises(Refused, match="forged"):
        guard(Clock(STARTED)).check(token)


def signed(payload: bytes, algorithm: str = "HS256", header: dict | None = None) -> str:
    """`payload` signed with the right key, whatever it says."""
    with warnings.catch_warnings():  # HS512 would want a longer key: it is refused whatever its length
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.PyJWS().encode(payload, b"a" * 40, algorithm=algorithm, headers=header or {"kid": "k1"})


def with_header(token: str, header: bytes) -> str:
    return base64.urlsafe_b64encode(header).decode().rstrip("=") + "." + token.split(".", 1)[1]


CLAIMS = {"sid": "7", "sub": "c1", "cli": "cl1", "ws": "ws1", "role": "owner", "iat": int(STARTED.timestamp())}


@pytest.mark.parametrize(
    "token",
    [
        signed(b"[1, 2]"),  # claims that are no object
        signed(b"not json"),
        signed(json.dumps({k: v for k, v in CLAIMS.items() if k != "iat"}).encode()),  # no start
        signed(json.dumps({**CLAIMS, "iat": "yesterday"}).encode()),
        signed(json.dumps({**CLAIMS, "iat": True}).encode()),
        signed(json.dumps({**CLAIMS, "iat": float("nan")}).encode()),  # Python's JSON reads NaN
        signed(json.dumps(CLAIMS).encode(), algorithm="HS512"),  # the right key, another algorithm
        with_header(signed(json.dumps(CLAIMS).encode()), b'{"alg": "HS256", "kid": ["k1"]}'),
        with_header(signed(json.dumps(CLAIMS).encode()), b'["k1"]'),
        "!!!." + signed(json.dumps(CLAIMS).encode()).split(".", 1)[1],  # a header that is no base64
        with_header(signed(json.dumps(CLAIMS).encode()), b"[" * 1500 + b"]" * 1500),  # deeper than JSON reads
    ],
)
def test_a_credential_signed_with_the_right_key_but_not_as_auth_issues_them_is_refused(token):
    assert credentials.read(signed(json.dumps(CLAIMS).encode()), KEYS).session_id == "7"  # the helper signs validly
    with pytest.raises(Refused, match="forged"):
        credentials.read(token, KEYS)


def test_a_credential_whose_claims_were_changed_is_refused():
    header, payload, signature = credentials.issue(session(), KEYS).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["cli"] = "someone-else"
    changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Refused, match="forged"):
        guard(Clock(STARTED)).check(f"{header}.{changed}.{signature}")


def test_a_credential_from_the_future_is_refused_beyond_the_allowed_clock_skew():
    ahead = credentials.issue(
        session(started_at=STARTED + timedelta(minutes=5), seen_at=STARTED + timedelta(minutes=5)), KEYS
    )
    with pytest.raises(Refused, match="forged"):
        guard(Clock(STARTED)).check(ahead)
    assert guard(Clock(STARTED + timedelta(minutes=5) - LIMITS.skew)).check(ahead).session_id == "7"


# ---------------------------------------------------------------- the limits, with a moving clock


def test_the_idle_limit_holds_to_within_a_minute():
    token = credentials.issue(session(), KEYS)
    assert guard(Clock(STARTED + LIMITS.idle - timedelta(minutes=1))).check(token)
    with pytest.raises(Refused, match="idle"):
        guard(Clock(STARTED + LIMITS.idle + timedelta(minutes=1))).check(token)


def test_activity_slides_the_idle_limit_but_never_the_absolute_one():
    clock = Clock(STARTED)
    gate = guard(clock)
    token = credentials.issue(session(), KEYS)
    while clock.now + timedelta(minutes=29) < STARTED + LIMITS.absolute - timedelta(minutes=1):
        clock.now += timedelta(minutes=29)
        fresh = gate.refreshed(gate.check(token))
        assert fresh is not None and fresh.seen_at == clock.now
        token = gate.issue(fresh)  # what the gateway sets as the new cookie
    clock.now = STARTED + LIMITS.absolute - timedelta(minutes=1)
    assert gate.check(token)
    clock.now = STARTED + LIMITS.absolute + timedelta(minutes=1)
    with pytest.raises(Refused, match="expired"):
        gate.check(token)


def test_a_fresh_credential_is_given_at_most_once_a_minute():
    clock = Clock(STARTED + timedelta(seconds=59))
    gate = guard(clock)
    assert gate.refreshed(gate.check(credentials.issue(session(), KEYS))) is None
    clock.now = STARTED + timedelta(seconds=60)
    assert gate.refreshed(gate.check(credentials.issue(session(), KEYS))).seen_at == clock.now


# ---------------------------------------------------------------- revoked, elsewhere


def test_a_credential_replayed_after_its_session_ended_is_refused():
    revocations = RevocationList(ready=True)
    token = credentials.issue(session(), KEYS)
    assert guard(Clock(STARTED), revocations).check(token)
    revocations.apply(
        "session.ended", {"data": {"session_id": "7", "remember_until": (STARTED + LIMITS.absolute).isoformat()}}
    )
    with pytest.raises(Refused, match="revoked"):
        guard(Clock(STARTED + timedelta(seconds=1)), revocations).check(token)
    revocations.prune(STARTED + LIMITS.absolute + timedelta(seconds=1), LIMITS.absolute)  # expired anyway by then
    assert revocations.refuses(session()) is None


def test_portal_access_removed_refuses_the_sessions_begun_before_not_a_later_sign_in():
    revocations = RevocationList(ready=True)
    off = STARTED + timedelta(minutes=10)
    revocations.apply("contact.updated", {"occurred_at": off.isoformat(), "data": {"id": "c1", "portal_access": False}})
    revocations.apply("contact.updated", {"occurred_at": off.isoformat(), "data": {"id": "c2", "portal_access": True}})
    with pytest.raises(Refused, match="no_access"):
        guard(Clock(off), revocations).check(credentials.issue(session(), KEYS))
    later = session(started_at=off + timedelta(minutes=1), seen_at=off + timedelta(minutes=1))
    assert guard(Clock(off + timedelta(minutes=2)), revocations).check(credentials.issue(later, KEYS))
    assert guard(Clock(off), revocations).check(credentials.issue(session(contact_id="c2"), KEYS))


def test_a_sign_in_in_the_same_second_as_a_new_role_is_let_in_and_a_session_just_before_it_is_not():
    """The bar and the sessions are told apart to the millisecond: a contact whose role changed at
    12:10:00.500 and who signs in again at .800 gets in; its session begun at .200 stays refused."""
    revocations = RevocationList(ready=True)
    changed = STARTED + timedelta(minutes=10, milliseconds=500)
    revocations.apply(
        "contact.updated", {"occurred_at": changed.isoformat(), "data": {"id": "c1", "role_changed": True}}
    )
    before, after = (changed + timedelta(milliseconds=ms) for ms in (-300, 300))
    with pytest.raises(Refused, match="no_access"):
        guard(Clock(changed), revocations).check(credentials.issue(session(started_at=before, seen_at=before), KEYS))
    assert guard(Clock(after), revocations).check(credentials.issue(session(started_at=after, seen_at=after), KEYS))


def test_a_credential_issued_again_from_one_it_read_keeps_its_start_to_the_millisecond():
    """The gateway renews a credential from the one it read: its start never drifts, and is never
    later than the session's (microseconds are dropped, not rounded up)."""
    started = STARTED + timedelta(seconds=7, microseconds=123_999)
    token = credentials.issue(session(started_at=started, seen_at=started), KEYS)
    for _ in range(5):
        read = credentials.read(token, KEYS)
        token = credentials.issue(read, KEYS)
    assert read.started_at == STARTED + timedelta(seconds=7, milliseconds=123)


def test_another_workspaces_credential_is_refused_where_only_some_workspaces_are_served():
    token = credentials.issue(session(workspace_id="ws-elsewhere"), KEYS)
    with pytest.raises(Refused, match="workspace"):
        guard(Clock(STARTED), workspaces=frozenset({"ws1"})).check(token)
    assert guard(Clock(STARTED), workspaces=frozenset({"ws1"})).check(credentials.issue(session(), KEYS))


def test_without_its_revocation_list_a_worker_asks_auth_and_fails_closed():
    class Auth:
        def __init__(self, answer):
            self.answer, self.calls = answer, []

        def call(self, service, method, *args, **kwargs):
            self.calls.append((service, method, args, kwargs["scope"]))
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

    token = credentials.issue(session(), KEYS)
    auth = Auth("active")
    assert guard(Clock(STARTED), RevocationList(ready=False), auth).check(token)
    assert auth.calls[0][:3] == ("auth", "check_session", ("7",)) and auth.calls[0][3].client_id == "cl1"
    with pytest.raises(Refused, match="revoked"):
        guard(Clock(STARTED), RevocationList(ready=False), Auth("revoked")).check(token)
    with pytest.raises(ConnectionError):  # auth is down too: the page says signing in is unavailable
        guard(Clock(STARTED), RevocationList(ready=False), Auth(ConnectionError("auth down"))).check(token)


# ---------------------------------------------------------------- keys


def test_keys_rotate_the_new_one_signs_and_the_old_one_still_verifies_until_dropped():
    old = Keys.parse("old:" + "o" * 40)
    rotated = Keys.parse("new:" + "n" * 40 + ",old:" + "o" * 40)
    issued_before = credentials.issue(session(), old)
    assert guard(Clock(STARTED), keys=rotated).check(issued_before)
    assert jwt.get_unverified_header(credentials.issue(session(), rotated))["kid"] == "new"
    with pytest.raises(Refused, match="forged"):
        guard(Clock(STARTED), keys=Keys.parse("new:" + "n" * 40)).check(issued_before)


def test_a_credential_is_verified_once_per_key_and_a_forged_one_every_time(monkeypatch):
    verified = []
    decode = credentials._JWS.decode_complete
    monkeypatch.setattr(
        credentials._JWS, "decode_complete", lambda token, *a, **k: verified.append(token) or decode(token, *a, **k)
    )
    token = credentials.issue(session(session_id="once"), KEYS)
    first, again = credentials.read(token, KEYS), credentials.read(token, KEYS)
    assert first == again == session(session_id="once") and verified == [token]
    same_kid_other_secret = Keys.parse("k1:" + "c" * 40)
    for _ in range(2):  # the key is part of what was verified: another secret checks, and refuses, anew
        with pytest.raises(Refused, match="forged"):
            credentials.read(token, same_kid_other_secret)
    assert verified == [token] * 3


@pytest.mark.parametrize("text", ["", "nokid", "k1:short", ":" + "a" * 40, "k1:" + "a" * 40 + ",k2"])
def test_bad_key_settings_are_refused_at_start(text):
    with pytest.raises(ValueError):
        Keys.parse(text)


# ---------------------------------------------------------------- through the gateway


def test_the_gateway_slides_the_cookie_and_hands_bearer_clients_a_fresh_token():
    later = NOW + timedelta(minutes=5)
    c, rpc = client({("billing", "client_dashboard"): DASHBOARD, ("billing", "get_workspace"): WORKSPACE}, now=later)
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200
    fresh = credentials.read(page.cookies["portal_session"].value, c.config.session_keys)
    assert fresh.seen_at == later and fresh.started_at == NOW and page.cookies["portal_session"].http_only
    api = c.simulate_get("/api/portal/v1/dashboard", headers=c.bearer)
    assert credentials.read(api.headers["x-session-token"], c.config.session_keys).seen_at == later
    assert [call[:2] for call in rpc.calls if call[0] == "auth"] == []  # auth was not asked


def test_an_idle_cookie_sends_the_browser_to_sign_in_and_the_api_answers_401():
    c, rpc = client(now=NOW + timedelta(minutes=31))
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 303 and page.headers["location"] == "/login?expired=1"
    assert c.simulate_get("/api/portal/v1/me", headers=c.bearer).status_code == 401
    assert rpc.calls == []


def test_signing_out_refuses_the_credential_on_this_worker_at_once():
    revocations = RevocationList(ready=True)
    c, rpc = client({("auth", "end_session"): 1}, revocations=revocations)
    assert c.simulate_get("/api/portal/v1/me", headers=c.bearer).status_code == 200
    assert c.simulate_post("/api/portal/v1/session/logout", csrf=False, headers=c.bearer).status_code == 204
    assert c.simulate_get("/api/portal/v1/me", headers=c.bearer).status_code == 401
    assert revocations.refuses(credentials.read(credential(SESSION), c.config.session_keys)) == "revoked"


def test_a_contact_that_renames_itself_is_greeted_by_the_new_name_at_once():
    renamed = {"client": {"id": "cl1", "name": "Demo Client Ltd"}, "contact": {"id": "c1", "name": "Dana D."}}
    c, _ = client({("billing", "update_profile"): renamed})
    api = c.simulate_patch("/api/portal/v1/profile", json={"name": "Dana D."}, headers=c.bearer)
    assert api.status_code == 200
    assert credentials.read(api.headers["x-session-token"], c.config.session_keys).name == "Dana D."

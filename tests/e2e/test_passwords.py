"""Optional passwords against the running stack: a workspace that allows them, a contact who sets one from
the profile and signs in with it (pages and JSON API), refusals that tell nobody whether an email has an
account, the rate limit, "Forgot your password?" and its emailed link, other sessions ending on a change,
a workspace without passwords, and auth answering other calls while 20 sign-ins hash at once."""

from __future__ import annotations

import re
import threading
import time
import uuid

import psycopg2
import pytest
import requests

from services.gateway.portal_api import PREFIX as API
from tests.conftest import Browser, refused_within, services_rpc, sign_in

pytestmark = pytest.mark.e2e
COOKIE = "portal_session"  # the test stack runs in dev mode: no __Host- prefix
RESET = "Set your password"
FIRST = "first long passphrase here"
REFUSED_TEXT = "That email and password do not match an account that signs in with a password."


def auth_rows(stack, sql: str, *args) -> list:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def forget_failures(stack) -> None:
    """Every test signs in from 127.0.0.1: failed passwords counted by one test do not limit the next."""
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM rate_hits WHERE key LIKE 'password:%%' OR key LIKE 'reset:%%'")


def wait_until(predicate, what: str, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def new_contact(stack, workspace_id: str, email: str) -> str:
    with services_rpc(stack, workspace_id) as rpc:
        client = rpc.billing.create_client(
            workspace_id,
            {
                "name": f"{email.split('@')[0].title()} GmbH",
                "contacts": [{"email": email, "name": "Pat", "is_primary": True, "portal_access": True}],
            },
        )
    wait_until(lambda: auth_rows(stack, "SELECT 1 FROM contacts WHERE email = %s", email), f"auth to learn {email}")
    return client["contacts"][0]["id"]


def set_passwords(stack, workspace_id: str, enabled: bool) -> None:
    with services_rpc(stack, workspace_id) as rpc:
        rpc.billing.update_workspace(workspace_id, {"settings": {"passwords_enabled": enabled}})
    wait_until(
        lambda: auth_rows(
            stack, "SELECT 1 FROM workspace_passwords WHERE workspace_id = %s AND enabled = %s", workspace_id, enabled
        ),
        "auth to learn the workspace's password setting",
    )


def password_workspace(stack, name: str = "Passwords Co") -> dict:
    """A new workspace that allows passwords, besides the seeded one (which does not), known to auth."""
    acme = auth_rows(stack, "SELECT workspace_id FROM contacts WHERE email = 'demo@example.com'")[0][0]
    with services_rpc(stack, acme) as rpc:
        workspace = rpc.billing.create_workspace(
            {"name": name, "email": "office@passwords.example.org", "settings": {"passwords_enabled": True}}
        )
    wait_until(
        lambda: auth_rows(
            stack, "SELECT 1 FROM workspace_passwords WHERE workspace_id = %s AND enabled", workspace["id"]
        ),
        "auth to learn that the workspace allows passwords",
    )
    return {"workspace_id": workspace["id"], "acme": acme}


@pytest.fixture(scope="module")
def business(stack):
    forget_failures(stack)
    yield password_workspace(stack)
    forget_failures(stack)


def email_for(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@passwords.example.org"


def set_first_password(stack, browser: Browser, password: str = FIRST):
    page = browser.post(
        f"{stack.url}/profile/password", data={"password": password, "confirm": password}, allow_redirects=False
    )
    assert page.status_code == 303 and page.headers["Location"] == "/profile/password?saved=set", page.text[:500]


def password_sign_in(stack, email: str, password: str, browser: Browser | None = None) -> requests.Response:
    browser = browser or Browser(stack.url)
    return browser.post(
        f"{stack.url}/login/password", data={"email": email, "password": password}, allow_redirects=False
    )


def error_text(page: requests.Response) -> str:
    found = re.search(r'<p id="password-error"[^>]*>(.*?)</p>', page.text, re.S)
    assert found, page.text[:1000]
    return found.group(1).strip()


def test_a_contact_sets_a_password_from_the_profile_and_signs_in_with_it(stack, business):
    email = email_for("first")
    new_contact(stack, business["workspace_id"], email)
    browser = sign_in(stack, email)
    profile = browser.get(f"{stack.url}/profile")
    assert 'href="/profile/password"' in profile.text and "Set a password" in profile.text
    page = browser.get(f"{stack.url}/profile/password")
    assert page.status_code == 200 and 'name="current_password"' not in page.text  # nothing to confirm yet
    set_first_password(stack, browser)
    assert "Your password is saved" in browser.get(f"{stack.url}/profile/password?saved=set").text
    assert auth_rows(
        stack, "SELECT p.hash FROM passwords p JOIN contacts c ON c.id = p.contact_id WHERE c.email = %s", email
    )[0][0].startswith("$argon2id$")

    login = Browser(stack.url).get(f"{stack.url}/login")
    assert 'action="/login/password"' in login.text and 'href="/password/forgot"' in login.text
    fresh = Browser(stack.url)
    answer = password_sign_in(stack, email.upper(), FIRST, fresh)
    assert answer.status_code == 303 and answer.headers["Location"] == "/dashboard", answer.text[:500]
    assert fresh.get(f"{stack.url}/dashboard").status_code == 200
    [(agent,)] = auth_rows(  # recorded like any sign-in, for the sessions page
        stack,
        "SELECT s.user_agent FROM sessions s JOIN contacts c ON c.id = s.contact_id WHERE c.email = %s"
        " ORDER BY s.id DESC LIMIT 1",
        email,
    )
    assert agent.startswith("python-requests/")

    token = requests.post(f"{stack.url}{API}/session/password", json={"email": email, "password": FIRST}, timeout=20)
    assert token.status_code == 201, token.text
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    me = requests.get(f"{stack.url}{API}/me", headers=bearer, timeout=20)
    assert me.status_code == 200 and me.json()["email"] == email
    status = requests.get(f"{stack.url}{API}/me/password", headers=bearer, timeout=20).json()
    assert status["enabled"] is True and status["has_password"] is True


def test_a_wrong_password_an_unknown_email_and_a_workspace_without_passwords_answer_alike(stack, business):
    email = email_for("alike")
    new_contact(stack, business["workspace_id"], email)
    set_first_password(stack, sign_in(stack, email))
    before = auth_rows(stack, "SELECT count(*) FROM sessions")[0][0]
    tries = {
        "wrong password": (email, FIRST + "!"),
        "unknown email": (email_for("nobody"), FIRST),
        "no password in a workspace without passwords": ("demo@example.com", FIRST),
    }
    pages = {what: password_sign_in(stack, *attempt) for what, attempt in tries.items()}
    assert {what: page.status_code for what, page in pages.items()} == {what: 401 for what in tries}
    assert {error_text(page) for page in pages.values()} == {error_text(pages["wrong password"])}
    assert error_text(pages["wrong password"]).startswith(REFUSED_TEXT)
    problems = [
        requests.post(f"{stack.url}{API}/session/password", json={"email": e, "password": p}, timeout=20)
        for e, p in tries.values()
    ]
    assert [p.status_code for p in problems] == [401, 401, 401]
    assert {p.headers["content-type"].split(";")[0] for p in problems} == {"application/problem+json"}
    assert len({p.json()["detail"] for p in problems}) == 1 and problems[0].json()["detail"].startswith(REFUSED_TEXT)
    assert auth_rows(stack, "SELECT count(*) FROM sessions")[0][0] == before  # nothing opened
    forget_failures(stack)


def test_failed_passwords_are_rate_limited_per_account(stack, business):
    email = email_for("limited")
    new_contact(stack, business["workspace_id"], email)
    set_first_password(stack, sign_in(stack, email))
    forget_failures(stack)
    try:
        for i in range(10):  # AUTH_PASSWORD_FAILURES_PER_ACCOUNT's default
            assert password_sign_in(stack, email, f"wrong guess number {i}").status_code == 401
        limited = password_sign_in(stack, email, FIRST)  # even the right password, until the window passes
        assert limited.status_code == 429 and "Too many failed password sign-ins" in limited.text
        assert limited.headers["Retry-After"] == "900"
        api = requests.post(f"{stack.url}{API}/session/password", json={"email": email, "password": FIRST}, timeout=20)
        assert api.status_code == 429 and api.headers["content-type"].startswith("application/problem+json")
    finally:
        forget_failures(stack)
    assert password_sign_in(stack, email, FIRST).status_code == 303


def reset_token(message) -> str:
    text = message.get_body(("plain",)).get_content()
    return re.search(r"/password/reset\?token=([A-Za-z0-9_-]+)", text).group(1)


def test_forgot_your_password_sets_one_by_a_single_use_link_and_ends_every_other_session(stack, business):
    email = email_for("forgot")
    new_contact(stack, business["workspace_id"], email)
    elsewhere = sign_in(stack, email)  # signed in on another device, by link, never with a password
    assert elsewhere.get(f"{stack.url}/dashboard").status_code == 200

    browser = Browser(stack.url)
    asked = browser.post(f"{stack.url}/password/forgot", data={"email": email})
    unknown = Browser(stack.url).post(f"{stack.url}/password/forgot", data={"email": email_for("nobody")})
    assert asked.status_code == unknown.status_code == 200
    assert re.sub(r'value="[0-9a-f]+"', "", asked.text) == re.sub(r'value="[0-9a-f]+"', "", unknown.text)
    assert "If this address may sign in with a password" in asked.text
    [message] = stack.outbox.wait_for(email, 1, subject=RESET)
    token = reset_token(message)

    page = browser.get(f"{stack.url}/password/reset", params={"token": token})
    assert page.status_code == 200 and 'name="token"' in page.text  # showing it uses nothing up
    mismatch = browser.post(
        f"{stack.url}/password/reset", data={"token": token, "password": "a new passphrase", "confirm": "another"}
    )
    assert mismatch.status_code == 400 and "The two passwords are not the same" in mismatch.text
    common = browser.post(
        f"{stack.url}/password/reset", data={"token": token, "password": "qwerty123456", "confirm": "qwerty123456"}
    )
    assert common.status_code == 400 and "one of the most common" in common.text
    new = "reset by the emailed link"
    done = browser.post(
        f"{stack.url}/password/reset", data={"token": token, "password": new, "confirm": new}, allow_redirects=False
    )
    assert done.status_code == 303 and done.headers["Location"] == "/profile/password?saved=reset", done.text[:500]
    assert browser.get(f"{stack.url}/profile/password?saved=reset").status_code == 200  # signed in here

    refused_within(lambda: elsewhere.get(f"{stack.url}/dashboard", allow_redirects=False))
    ended = auth_rows(
        stack,
        "SELECT count(*) FROM sessions s JOIN contacts c ON c.id = s.contact_id"
        " WHERE c.email = %s AND s.revoked_at IS NOT NULL",
        email,
    )[0][0]
    assert ended >= 1
    again = Browser(stack.url).post(
        f"{stack.url}/password/reset", data={"token": token, "password": new + "!", "confirm": new + "!"}
    )
    assert again.status_code == 410 and "already been used" in again.text
    assert password_sign_in(stack, email, new).status_code == 303
    assert password_sign_in(stack, email, new + "!").status_code == 401
    forget_failures(stack)


def test_changing_a_password_needs_the_current_one_and_ends_the_other_sessions(stack, business):
    email = email_for("change")
    new_contact(stack, business["workspace_id"], email)
    here, there = sign_in(stack, email), sign_in(stack, email)
    set_first_password(stack, here)
    refused_within(lambda: there.get(f"{stack.url}/dashboard", allow_redirects=False))  # setting one ends others
    there = sign_in(stack, email)
    form = here.get(f"{stack.url}/profile/password")
    assert 'name="current_password"' in form.text
    wrong = here.post(
        f"{stack.url}/profile/password",
        data={"current_password": "not my password", "password": "second passphrase", "confirm": "second passphrase"},
    )
    assert wrong.status_code == 400 and "Your current password is not right." in wrong.text
    assert there.get(f"{stack.url}/dashboard").status_code == 200  # a refusal changes nothing
    changed = here.post(
        f"{stack.url}/profile/password",
        data={"current_password": FIRST, "password": "second passphrase", "confirm": "second passphrase"},
        allow_redirects=False,
    )
    assert changed.status_code == 303
    refused_within(lambda: there.get(f"{stack.url}/dashboard", allow_redirects=False))
    assert here.get(f"{stack.url}/dashboard").status_code == 200  # this session stays
    assert password_sign_in(stack, email, "second passphrase").status_code == 303
    forget_failures(stack)


def test_a_workspace_without_passwords_refuses_them_with_a_clear_message(stack, business):
    # the seeded workspace never turned passwords on: its contacts see why, and nothing is stored
    demo = sign_in(stack, "demo@example.com")
    assert 'href="/profile/password"' not in demo.get(f"{stack.url}/profile").text
    page = demo.get(f"{stack.url}/profile/password")
    assert page.status_code == 200 and "has not turned on passwords" in page.text
    refused = demo.post(f"{stack.url}/profile/password", data={"password": FIRST, "confirm": FIRST})
    assert refused.status_code == 409 and "Passwords are turned off for this portal." in refused.text
    assert not auth_rows(
        stack, "SELECT 1 FROM passwords p JOIN contacts c ON c.id = p.contact_id WHERE c.email = 'demo@example.com'"
    )
    assert (
        not stack.outbox.count("demo@example.com", RESET)
        and Browser(stack.url).post(f"{stack.url}/password/forgot", data={"email": "demo@example.com"}).status_code
        == 200
    )
    time.sleep(1)
    assert stack.outbox.count("demo@example.com", RESET) == 0  # no link: its workspace has no passwords

    # turning them off where they were on: the password stops working, and with no workspace left that
    # allows them, the sign-in page drops the form and a password post says so plainly
    email = email_for("turned-off")
    new_contact(stack, business["workspace_id"], email)
    set_first_password(stack, sign_in(stack, email))
    # other modules on this stack (the fuzzers) may have turned passwords on in workspaces of their own
    allowing = [ws for (ws,) in auth_rows(stack, "SELECT workspace_id FROM workspace_passwords WHERE enabled")]
    assert business["workspace_id"] in allowing
    for workspace_id in allowing:
        set_passwords(stack, workspace_id, False)
    try:
        assert 'action="/login/password"' not in Browser(stack.url).get(f"{stack.url}/login").text
        off = password_sign_in(stack, email, FIRST)
        assert off.status_code == 401
        assert error_text(off) == "Password sign-in is not turned on for this portal. Sign in with an emailed link."
    finally:
        for workspace_id in allowing:
            set_passwords(stack, workspace_id, True)
    assert password_sign_in(stack, email, FIRST).status_code == 303


def test_twenty_concurrent_password_sign_ins_do_not_stop_auth_answering(stack, business):
    email = email_for("burst")
    new_contact(stack, business["workspace_id"], email)
    set_first_password(stack, sign_in(stack, email))
    statuses, pings, done = [], [], threading.Event()

    def sign_in_once(i: int):
        password = FIRST if i % 4 else FIRST + " (wrong)"
        answer = requests.post(
            f"{stack.url}{API}/session/password", json={"email": email, "password": password}, timeout=60
        )
        statuses.append((i % 4 != 0, answer.status_code))

    def keep_pinging():
        with services_rpc(stack, timeout=30) as rpc:
            while not done.is_set():
                started = time.monotonic()
                assert rpc.auth.ping() == {"service": "auth", "ok": True}
                pings.append(time.monotonic() - started)
                time.sleep(0.05)

    pinger = threading.Thread(target=keep_pinging)
    pinger.start()
    burst = [threading.Thread(target=sign_in_once, args=(i,)) for i in range(20)]
    for thread in burst:
        thread.start()
    for thread in burst:
        thread.join(90)
    done.set()
    pinger.join(60)
    forget_failures(stack)
    assert sorted(statuses) == sorted((right, 201 if right else 401) for right in (i % 4 != 0 for i in range(20)))
    assert len(pings) >= 3, pings  # auth kept answering during the burst
    assert max(pings) < 5, pings  # a generous bound: a frozen hub would hold a ping for the whole burst

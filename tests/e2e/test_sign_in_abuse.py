"""Sign-in abuse against the running stack: guessing link tokens, replaying a used link, fixing a session
cookie before sign-in, and forging requests (CSRF) on every form and every state-changing API call. Each is
refused, and refused requests change nothing. (test_sign_in_story.py has the ordinary story, sign-out and
forged session cookies; this file goes after the attacks.)"""

from __future__ import annotations

import re
import secrets
from html.parser import HTMLParser
from urllib.parse import urlencode, urlsplit

import psycopg2
import pytest
import requests

from services.auth.domain import hash_secret
from services.gateway.portal_api import PREFIX as API
from services.gateway.portal_api import ROUTES as API_ROUTES
from tests.conftest import SIGN_IN, Browser, link_token, new_portal_client, refused_within, services_rpc, sign_in
from tests.e2e.auth_support import forget_guesses, guesses_counted
from tests.e2e.payments_support import CARD_OK, confirm_setup
from tests.e2e.test_data_isolation import portal_routes, unchanged_state

pytestmark = pytest.mark.e2e
COOKIE = "portal_session"  # the test stack runs in dev mode: no __Host- prefix


def fresh_link(stack, email: str) -> str:
    before = stack.outbox.count(email, SIGN_IN)
    Browser(stack.url).post(f"{stack.url}/login", data={"email": email})
    return link_token(stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1])


def auth_count(stack, sql: str, *args) -> int:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def sessions_of(stack, email: str) -> int:
    return auth_count(
        stack, "SELECT count(*) FROM sessions s JOIN contacts c ON c.id = s.contact_id WHERE c.email = %s", email
    )


def link_used(stack, token: str) -> bool:
    return bool(
        auth_count(
            stack, "SELECT count(*) FROM link_tokens WHERE token_hash = %s AND used_at IS NOT NULL", hash_secret(token)
        )
    )


def me(stack, sid: str) -> requests.Response:
    return requests.get(f"{stack.url}{API}/me", cookies={COOKIE: sid})


# --- guessing tokens ---------------------------------------------------------------------------------------


def test_guessed_tokens_are_refused_and_then_the_address_is_limited_even_with_a_real_link(stack):
    new_portal_client(stack, "Guess Target Ltd", "guess-target@example.org")
    token = fresh_link(stack, "guess-target@example.org")
    limit = int(stack.env["AUTH_VERIFY_FAILURES_PER_IP"])
    verify, session_api = f"{stack.url}/login/verify", f"{stack.url}{API}/session"
    browser = Browser(stack.url)
    csrf = browser.csrf_token()
    sessions = auth_count(stack, "SELECT count(*) FROM sessions")
    forget_guesses(stack)  # earlier tests' forged tokens do not count towards this one's
    try:
        for i in range(limit):  # every way in, in turn: the link page, its button, the API's exchange
            guess = secrets.token_urlsafe(32)
            if i % 3 == 0:
                answer = browser.get(verify, params={"token": guess})
                assert answer.status_code == 400 and "not valid" in answer.text, answer.text[:300]
            elif i % 3 == 1:
                answer = browser.post(verify, data={"token": guess, "csrf_token": csrf}, allow_redirects=False)
                assert answer.status_code == 400 and "not valid" in answer.text, answer.text[:300]
            else:
                answer = requests.post(session_api, json={"token": guess})
                assert answer.status_code == 401 and answer.headers["content-type"] == "application/problem+json"
            assert COOKIE not in answer.cookies and "access_token" not in answer.text
        assert guesses_counted(stack) == limit
        # past the limit the address is refused outright, with the real link too: a lucky guess gets nothing
        for answer in (
            browser.get(verify, params={"token": secrets.token_urlsafe(32)}),
            browser.post(verify, data={"token": token, "csrf_token": csrf}, allow_redirects=False),
        ):
            assert answer.status_code == 429 and answer.headers["retry-after"] == "900"
            assert "Too many sign-in attempts" in answer.text and COOKIE not in answer.cookies
        api = requests.post(session_api, json={"token": token})
        assert api.status_code == 429 and api.headers["content-type"] == "application/problem+json"
        assert guesses_counted(stack) == limit  # refusals past the limit are not even looked up
        assert not link_used(stack, token) and auth_count(stack, "SELECT count(*) FROM sessions") == sessions
        forget_guesses(stack)  # as the rate window passing would: the untouched link then signs in
        signed_in = browser.post(verify, data={"token": token, "csrf_token": csrf}, allow_redirects=False)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/dashboard"
        assert me(stack, signed_in.cookies[COOKIE]).json()["email"] == "guess-target@example.org"
    finally:
        forget_guesses(stack)


# --- replaying a used link ---------------------------------------------------------------------------------


def test_a_used_link_is_refused_everywhere_and_opens_no_session(stack):
    new_portal_client(stack, "Replay Ltd", "replay@example.org")
    token = fresh_link(stack, "replay@example.org")
    first = Browser(stack.url)
    assert first.post(f"{stack.url}/login/verify", data={"token": token}, allow_redirects=False).status_code == 303
    sessions, guesses = sessions_of(stack, "replay@example.org"), guesses_counted(stack)
    for replayer in (Browser(stack.url), first):  # another browser (a stolen link), and the same one again
        answer = replayer.post(f"{stack.url}/login/verify", data={"token": token}, allow_redirects=False)
        assert answer.status_code == 410 and "already been used" in answer.text
        assert "Request a new sign-in link" in answer.text and COOKIE not in answer.cookies
    peek = requests.get(f"{stack.url}/login/verify", params={"token": token})
    assert peek.status_code == 410 and 'action="/login/verify"' not in peek.text  # no button to press
    api = requests.post(f"{stack.url}{API}/session", json={"token": token})
    assert api.status_code == 401 and api.headers["content-type"] == "application/problem+json"
    assert "access_token" not in api.text
    assert sessions_of(stack, "replay@example.org") == sessions
    assert guesses_counted(stack) == guesses  # a used link is refused as used, not counted as a guess
    assert first.get(f"{stack.url}/dashboard", allow_redirects=False).status_code == 200  # the first one holds


# --- session fixation --------------------------------------------------------------------------------------


def sign_in_with_cookie(stack, email: str, planted: str) -> requests.Response:
    """The link's button pressed in a browser that already holds `planted` as its session cookie."""
    browser = Browser(stack.url)
    answer = browser.post(
        f"{stack.url}/login/verify",
        data={"token": fresh_link(stack, email)},
        cookies={COOKIE: planted},
        allow_redirects=False,
    )
    assert answer.status_code == 303, answer.text[:300]
    return answer


def test_a_session_cookie_set_before_sign_in_is_never_the_one_after(stack):
    new_portal_client(stack, "Fixation Ltd", "fixation@example.org")
    new_portal_client(stack, "Fixer Ltd", "fixer@example.org")
    # an attacker-chosen value is not adopted: sign-in sets a new one, and the chosen one opens nothing
    planted = secrets.token_urlsafe(32)
    after = sign_in_with_cookie(stack, "fixation@example.org", planted).cookies[COOKIE]
    assert after != planted and len(after) >= 43
    assert me(stack, planted).status_code == 401
    assert me(stack, after).json()["email"] == "fixation@example.org"
    # the attacker plants their own, real session: the victim's sign-in replaces and ends it, so the
    # attacker's copy never becomes the victim's account
    attacker = sign_in(stack, "fixer@example.org").cookies[COOKIE]
    victim = sign_in_with_cookie(stack, "fixation@example.org", attacker).cookies[COOKIE]
    assert victim not in (attacker, after)
    refused_within(lambda: me(stack, attacker))  # ended, on every gateway worker within a second
    assert me(stack, victim).json()["email"] == "fixation@example.org"
    # signing in again in the same browser rotates the id too; the old one ends
    again = sign_in_with_cookie(stack, "fixation@example.org", victim).cookies[COOKIE]
    assert again != victim and me(stack, again).status_code == 200
    refused_within(lambda: me(stack, victim))


# --- CSRF: every form, every state-changing API call -------------------------------------------------------

FILL = {
    "email": "mallory@example.org",
    "to": "mallory@example.org",
    "signature_name": "Mallory",
    "rating": "1",
    "subject": "Forged",
    "message": "Forged",
    "body": "Forged",
    "company": "Forged Inc",
    "phone": "+1 212 555 0100",
    "company_phone": "+1 212 555 0100",
    "name": "Forged",
}


class Page(HTMLParser):
    """The links and forms of one page, each form's fields filled as a person would (so that, were the
    token not checked, the post would really change something)."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.forms, self._form, self._select = [], [], None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "a" and a.get("href", "").startswith("/"):
            self.links.append(a["href"])
        elif tag == "form":
            self._form = {
                "method": (a.get("method") or "get").lower(),
                "action": a.get("action", ""),
                "fields": {},
                "scripted": {
                    k: v for k, v in a.items() if k.startswith("data-") and k.endswith("-url") and k != "data-done-url"
                },
                "csrf_header": "data-csrf" in a,
            }
            self.forms.append(self._form)
        elif self._form is not None and tag in ("input", "textarea", "select") and a.get("name"):
            name, kind = a["name"], a.get("type", "text")
            if kind in ("radio", "checkbox") and name in self._form["fields"]:
                return  # the first choice is enough
            self._form["fields"][name] = a.get("value") or FILL.get(name, "1" if kind == "number" else "x")
            self._select = name if tag == "select" else None
        elif tag == "option" and self._select and self._form is not None:
            self._form["fields"][self._select] = a.get("value", "")
            self._select = None

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


def template_of(path: str) -> str:
    """/invoices/<uuid>/comments -> /invoices/{id}/comments (the ids the pages link to: uuids, with a
    digit, and Stripe's, with an underscore after their prefix, which may have no digit at all)."""
    return re.sub(r"/(?=[^/]*[\d_])[A-Za-z0-9_-]{16,}(?=/|$)", "/{id}", path)


def crawl(stack, browser, starts: list[str], limit: int = 60) -> list[dict]:
    """Every form on every page reachable from `starts` by links and GET forms (one page per path)."""
    queue, seen, forms = list(starts), set(), []
    while queue and len(seen) < limit:
        url = queue.pop(0)
        path = urlsplit(url).path
        if path in seen or path.endswith(".pdf") or path.startswith(("/static/", "/brand/", "/i/", "/dev/")):
            continue
        seen.add(path)
        answer = browser.get(stack.url + url)
        if answer.status_code != 200 or "text/html" not in answer.headers.get("content-type", ""):
            continue
        page = Page(answer.text)
        queue.extend(page.links)
        for form in page.forms:
            form["page"] = url
            if form["method"] == "get" and not form["csrf_header"]:  # a filter, a search, a next step: follow it
                queue.append(form["action"] + "?" + urlencode(form["fields"]))
            else:
                forms.append(form)
    return forms


@pytest.fixture(scope="module")
def csrf_client(stack):
    """A client whose pages have every kind of form: unpaid invoices, pending quotes, a booking, two saved
    cards (one not the default), and a payment begun (the card page)."""
    made = new_portal_client(stack, "Forgery Target Ltd", "forgery@example.org", invoices=2, quotes=2)
    ws, client = made["workspace_id"], made["client"]["id"]
    with services_rpc(stack, ws) as rpc:
        slots = rpc.billing.booking_options(ws, "consultation-30")["slots"]
        rpc.billing.book_slot(ws, client, made["contact_id"], "consultation-30", slots[-4])
        for _ in range(2):
            setup = rpc.payments.card_setup(ws, client)
            confirm_setup(stack, setup["client_secret"], CARD_OK)
            rpc.payments.save_card(ws, client, setup["setup_intent"])
        attempt = rpc.payments.start_payment(ws, client, {"invoice_ids": [made["invoices"][0]["id"]]}, "csrf-walk")
    return {**made, "attempt": attempt["id"]}


def refusals(stack, url: str, browser, other_token: str, form: dict | None = None):
    """The post without the token, with a made-up one, and with another browser's (valid, but bound to
    that browser's cookie): as a form post, or as the page script's JSON call."""
    cookies = browser.cookies.get_dict()
    if form is not None:
        fields = {k: v for k, v in form["fields"].items() if k != "csrf_token"}
        for token in (None, "0" * 64, other_token):
            yield requests.post(
                url,
                data=fields if token is None else {**fields, "csrf_token": token},
                cookies=cookies,
                allow_redirects=False,
            )
    else:
        for token in (None, "0" * 64, other_token):
            yield requests.post(
                url,
                json={},
                cookies=cookies,
                allow_redirects=False,
                headers={} if token is None else {"X-CSRF-Token": token},
            )


def test_every_form_on_every_page_refuses_a_post_without_its_token(stack, csrf_client):
    browser = sign_in(stack, "forgery@example.org")
    other_token = Browser(stack.url).csrf_token()  # a real token, of another browser
    forms = crawl(
        stack,
        browser,
        [
            "/dashboard",
            "/invoices",
            "/quotes",
            "/payments",
            "/statement",
            "/profile",
            "/contact",
            "/review",
            "/bookings",
            "/payment-methods",
            f"/pay/{csrf_client['attempt']}",
            "/profile/sessions",
            "/profile/password",
            "/profile/passkeys",
            "/team",
        ],
    )
    before = unchanged_state(stack, csrf_client["client"]["id"])
    mail = len(stack.outbox.messages())
    sessions = sessions_of(stack, "forgery@example.org")
    posted, token = set(), browser.csrf_token()
    for form in forms:  # a form posts its fields with the token; a scripted one sends it as X-CSRF-Token
        assert form["fields"].get("csrf_token") == token or form["csrf_header"], form
        targets = [(form["action"], form)] if form["action"] else []
        targets += [(url, None) for url in form["scripted"].values()]
        for url, as_form in targets:
            for answer in refusals(stack, stack.url + url, browser, other_token, as_form):
                assert answer.status_code == 403, (form["page"], url, answer.status_code, answer.text[:200])
                assert "expired" in answer.text  # the refusal says what to do: reload and try again
            posted.add(template_of(url))
    # every POST route of the pages was found on a page, as a form or as its script's call
    expected = {
        template_of(re.sub(r"\{\w+\}", "{id}", t))
        for m, t, _ in portal_routes()
        # /unsubscribe is the one-click link of an email: its token is the credential, not a session
        if m == "POST" and not t.startswith(("/api/", "/webhooks/", "/login", "/unsubscribe"))
    }
    # Forms this walk's client cannot show: before sign-in (the password and "this wasn't me" pages, whose
    # own forms carry the token), or in states it does not have (a second session, passkeys, colleagues,
    # passwords turned on, a EUR invoice for a bank debit, step-up asked for). The portal JSON API's twin of
    # each is refused without the header in the test below.
    elsewhere = {
        "/not-me",
        "/password/forgot",
        "/password/reset",
        "/profile/password",
        "/profile/sessions/end-others",
        "/profile/sessions/{id}/end",
        "/profile/sign-in-links/{id}/end",
        "/profile/document-links/{id}/end",
        "/profile/passkeys/{id}/rename",
        "/profile/passkeys/{id}/remove",
        "/team/{id}/role",
        "/team/{id}/remove",
        "/pay/{id}/bank",
        "/payment-methods/bank",
        "/step-up",  # only when the workspace asks for a fresh proof before paying
        "/step-up/link",
        "/step-up/options",
    }
    assert expected - elsewhere <= posted, sorted(expected - elsewhere - posted)
    assert unchanged_state(stack, csrf_client["client"]["id"]) == before
    assert len(stack.outbox.messages()) == mail and sessions_of(stack, "forgery@example.org") == sessions
    assert browser.get(f"{stack.url}/dashboard", allow_redirects=False).status_code == 200  # logout was refused
    # with its own token the same form goes through: the refusals above were the token's doing
    profile = next(f for f in forms if f["action"] == "/profile")
    assert browser.post(f"{stack.url}/profile", data=profile["fields"], allow_redirects=False).status_code == 303


def test_the_sign_in_forms_need_the_token_too(stack):
    """Login CSRF: another site must not request links for an address, nor sign a browser in with its
    own link (the victim would then act in the attacker's account)."""
    new_portal_client(stack, "Login Forgery Ltd", "login-forgery@example.org")
    token = fresh_link(stack, "login-forgery@example.org")
    browser = Browser(stack.url)
    browser.csrf_token()  # the browser holds its CSRF cookie, as after opening any page
    sent = stack.outbox.count("login-forgery@example.org", SIGN_IN)
    for cookies in (browser.cookies.get_dict(), {}):
        for path, data in (("/login", {"email": "login-forgery@example.org"}), ("/login/verify", {"token": token})):
            answer = requests.post(stack.url + path, data=data, cookies=cookies, allow_redirects=False)
            assert answer.status_code == 403 and COOKIE not in answer.cookies, (path, answer.text[:200])
    assert not link_used(stack, token) and stack.outbox.count("login-forgery@example.org", SIGN_IN) == sent


BODIES = {
    "SessionIn": {"token": "x"},
    "CommentIn": {"body": "Forged"},
    "ForwardIn": {"to": "mallory@example.org"},
    "AcceptIn": {"signature_name": "Mallory"},
    "RejectIn": {"reason": "Forged"},
    "ProfileIn": {"company": "F"},
    "MessageIn": {"subject": "Forged", "message": "Forged"},
    "ReviewIn": {"rating": 1},
    "BookingIn": {"link_id": "consultation-30", "start": "2030-01-07T15:00:00+00:00"},
    "ChangesIn": {"message": "Forged", "version": 1},
    "DisputeIn": {"reason": "Forged"},
    "NotificationPreferencesIn": {"invoices": False},
    "BankAccountIn": {"holder_name": "M", "email": "m@example.org", "iban": "DE89370400440532013000"},
    "InviteIn": {"email": "mallory@example.org", "role": "owner"},
    "RoleIn": {"role": "owner"},
    "PasswordSignInIn": {"email": "forgery@example.org", "password": "correct horse battery"},
    "PasswordForgotIn": {"email": "forgery@example.org"},
    "PasswordResetIn": {"token": "x", "password": "correct horse battery"},
    "PasswordIn": {"password": "correct horse battery"},
    "PasskeyAnswerIn": {"credential": {}},
    "NewPasskeyIn": {"credential": {}, "name": "Forged"},
    "PasskeyNameIn": {"name": "Forged"},
}
SOMEONE_ELSES = "00000000-0000-4000-8000-000000000000"  # the token is checked before any id is looked up


def test_every_state_changing_api_call_with_the_cookie_needs_the_header(stack, csrf_client):
    browser = sign_in(stack, "forgery@example.org")
    ids = {
        "invoices": csrf_client["invoices"][1]["id"],
        "quotes": csrf_client["quotes"][1]["id"],
        "bookings": browser.get(f"{stack.url}{API}/bookings").json()["upcoming"][0]["id"],
    }
    other_token = Browser(stack.url).csrf_token()
    before = unchanged_state(stack, csrf_client["client"]["id"])
    mail = len(stack.outbox.messages())
    unsafe = [r for r in API_ROUTES if r.method != "GET"]
    assert {r.method for r in unsafe} == {"POST", "PATCH", "DELETE"}
    for route in unsafe:
        path = re.sub(r"\{id\}", lambda _: ids.get(route.path.split("/")[1], SOMEONE_ELSES), route.path)
        body = BODIES[route.body.__name__] if route.body else None
        for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": other_token}):
            answer = requests.request(
                route.method, f"{stack.url}{API}{path}", json=body, headers=headers, cookies=browser.cookies.get_dict()
            )
            assert answer.status_code == 403, (route.method, path, answer.status_code, answer.text[:200])
            assert answer.headers["content-type"] == "application/problem+json"
    assert unchanged_state(stack, csrf_client["client"]["id"]) == before
    assert len(stack.outbox.messages()) == mail
    assert browser.get(f"{stack.url}{API}/me").status_code == 200  # DELETE /session was refused too

"""The gateway's HTTP behaviour with the services replaced by a fake RPC pool (no broker)."""

import json
import logging
from datetime import datetime, timezone

import falcon.testing
import pytest

from chassis import credentials
from chassis.errors import Conflict, Invalid, NotFound, RateLimited, Unauthorized, Unavailable
from services.gateway.app import GatewayConfig, create_app
from services.gateway.csrf import sign
from services.gateway.jsonapi import BadQuery
from services.gateway.revocations import RevocationList
from services.gateway.rpc import ContractViolation, ServiceTimeout, ServiceUnavailable

SESSION = {
    "contact_id": "c1",
    "client_id": "cl1",
    "workspace_id": "ws1",
    "email": "demo@example.com",
    "name": "Dana",
    "expires_at": "2026-11-23T12:30:00+00:00",
}
DASHBOARD = {
    "client": {
        "id": "cl1",
        "name": "Demo Client Ltd",
        "address": "1 Road",
        "phone": "",
        "currency": "USD",
        "locale": "en_US",
        "timezone": "America/New_York",
    },
    "business": {"name": "Acme", "email": "b@acme.example", "phone": "", "address": ""},
    "outstanding": {"amount": 237500, "currency": "USD"},
    "overdue": {"count": 1, "amount": 90000, "currency": "USD"},
    "credit_available": {"amount": 10000, "currency": "USD"},
    "retainer_available": {"amount": 50000, "currency": "USD"},
    "last_payment": {"amount": 25000, "currency": "USD", "received_at": "2026-11-20T15:00:00+00:00"},
    "recent_invoices": [],
}


WORKSPACE = {"id": "ws1", "name": "Acme", "logo_url": "", "brand_color": "#fde047", "accent_color": "#0f766e"}


class FakeRpc:
    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls = []

    def call(self, service, method, *args, request_id=None, **kwargs):
        self.calls.append((service, method, args, request_id, kwargs))
        answer = self.answers.get((service, method))
        if isinstance(answer, Exception):
            raise answer
        return answer(*args) if callable(answer) else answer


CSRF_COOKIE = "c" * 43


class Browser(falcon.testing.TestClient):
    """Posts carry the CSRF cookie and token, as the portal's own forms do; csrf=False sends neither."""

    def __init__(self, app, config: GatewayConfig):
        super().__init__(app)
        self.config = config

    def simulate_post(self, path, csrf=True, **kwargs):
        if csrf:
            kwargs["cookies"] = {self.config.csrf_cookie_name: CSRF_COOKIE, **kwargs.get("cookies", {})}
            kwargs["headers"] = {"X-CSRF-Token": sign(self.config.secret, CSRF_COOKIE), **kwargs.get("headers", {})}
        return super().simulate_post(path, **kwargs)


NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def credential(
    session: dict = SESSION, started: datetime = NOW, seen: datetime | None = None, keys: credentials.Keys | None = None
) -> str:
    """What auth signs at sign-in, for `session`."""
    return credentials.issue(
        credentials.Session(
            session.get("session_id", "s1"),
            session["contact_id"],
            session["client_id"],
            session["workspace_id"],
            session["email"],
            session["name"],
            session.get("locale"),
            started,
            seen or started,
            role=session.get("role", "owner"),  # everything, as every contact could before roles
        ),
        keys or GatewayConfig().session_keys,
    )


def client(answers=None, dev=True, hops=0, session=SESSION, now=NOW, revocations=None, rpc=None):
    """The gateway on a fake RPC pool (`rpc`, else one giving `answers`), its clock at `now`;
    `c.session_cookie` is `session` signed in."""
    rpc = rpc or FakeRpc(answers)
    config = GatewayConfig(portal_url="http://portal.test", dev=dev, trusted_proxy_hops=hops)
    app = create_app(rpc, rpc, config, revocations or RevocationList(ready=True), clock=lambda: now)
    browser = Browser(app, config)
    browser.session_cookie = {config.cookie_name: credential(session)}
    browser.bearer = {"Authorization": f"Bearer {credential(session)}"}
    return browser, rpc


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_login_answers_the_same_page_for_any_valid_address():
    c, rpc = client({("auth", "request_link"): {"accepted": True}})
    pages = [c.simulate_post("/login", body=f"email={e}", headers=FORM) for e in ("demo@example.com", "no@x.org")]
    assert [p.status_code for p in pages] == [200, 200]
    assert pages[0].text == pages[1].text
    assert "If this address has portal access" in pages[0].text
    # the link points at the configured portal URL, never at a Host header
    assert rpc.calls[0][2] == ("demo@example.com", "127.0.0.1", "http://portal.test")


@pytest.mark.parametrize("body", ["email=not-an-email", "email=", "", "email=a%40"])
def test_malformed_email_is_a_400_page_and_calls_nothing(body):
    c, rpc = client()
    page = c.simulate_post("/login", body=body, headers=FORM)
    assert page.status_code == 400 and "Enter a valid email address" in page.text
    assert rpc.calls == []


def test_rate_limited_login_is_a_readable_429():
    c, _ = client({("auth", "request_link"): RateLimited("Too many sign-in links were requested.")})
    page = c.simulate_post("/login", body="email=demo@example.com", headers=FORM)
    assert page.status_code == 429 and "Too many" in page.text and page.headers["retry-after"]


def test_oversized_body_is_refused_before_any_call():
    c, rpc = client()
    page = c.simulate_post("/login", body="email=" + "a" * 70_000, headers=FORM)
    assert page.status_code == 413 and rpc.calls == []


@pytest.mark.parametrize("path", ["/login", "/contact", "/api/portal/v1/contact"])
def test_a_form_body_that_is_not_url_encoded_text_is_refused_in_words_before_any_call(path):
    c, rpc = client()
    answer = c.simulate_post(path, body=b"email=d\xc3\xa9mo@example.com&subject=\xff", headers=FORM)
    assert answer.status_code == 400 and rpc.calls == []
    shown = answer.json["title"] if path.startswith("/api/") else answer.text
    assert "The form could not be read" in shown and "codec" not in answer.text and "ascii" not in answer.text


def test_cross_site_post_is_refused():
    c, rpc = client()
    page = c.simulate_post(
        "/login",
        body="email=demo@example.com",
        headers={**FORM, "Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert page.status_code == 403 and rpc.calls == []


def test_verify_get_consumes_nothing_and_shows_a_button():
    c, rpc = client({("auth", "link_state"): "valid"})
    page = c.simulate_get("/login/verify", params={"token": "t" * 43})
    assert page.status_code == 200 and 'action="/login/verify"' in page.text
    assert [call[1] for call in rpc.calls] == ["link_state"]


@pytest.mark.parametrize(
    "state,status,text",
    [("used", 410, "already been used"), ("expired", 410, "expired"), ("unknown", 400, "not valid")],
)
def test_bad_links_get_a_clear_page_with_a_new_link_button(state, status, text):
    c, _ = client({("auth", "link_state"): state, ("auth", "consume_link"): Unauthorized(state)})
    for page in (
        c.simulate_get("/login/verify", params={"token": "x"}),
        c.simulate_post("/login/verify", body="token=x", headers=FORM),
    ):
        assert page.status_code == status and text in page.text and "Request a new sign-in link" in page.text


def test_missing_token_is_a_400_without_calling_auth():
    c, rpc = client()
    assert c.simulate_get("/login/verify").status_code == 400
    assert rpc.calls == []


def test_verify_post_sets_a_hardened_cookie_in_production():
    c, _ = client({("auth", "consume_link"): {"credential": "c" * 43, **SESSION}}, dev=False)
    page = c.simulate_post("/login/verify", body="token=abc", headers=FORM)
    assert page.status_code == 303 and page.headers["location"] == "/dashboard"
    cookie = page.cookies["__Host-portal_session"]
    assert cookie.value == "c" * 43 and cookie.http_only and cookie.secure and cookie.same_site == "Lax"
    assert "max-age" in page.headers["strict-transport-security"]


def test_dashboard_shows_name_and_formatted_balance():
    c, rpc = client({("billing", "client_dashboard"): DASHBOARD, ("billing", "get_workspace"): WORKSPACE})
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == 200
    assert "Demo Client Ltd" in page.text and "$2,375.00" in page.text and "$250.00" in page.text
    assert ("billing", "client_dashboard", ("ws1", "cl1")) in [call[:3] for call in rpc.calls]  # the session's scope


class OlderBilling(FakeRpc):
    """A billing older than the gateway, as in a rolling upgrade: its dashboard takes no `fields`."""

    def call(self, service, method, *args, request_id=None, **kwargs):
        if (service, method) == ("billing", "client_dashboard") and "fields" in kwargs:
            self.calls.append((service, method, args, request_id, kwargs))
            raise ContractViolation("billing.client_dashboard: takes 2 args")
        return super().call(service, method, *args, request_id=request_id, **kwargs)


def test_the_dashboard_page_asks_for_the_brief_dashboard_and_takes_the_whole_from_an_older_billing():
    answers = {("billing", "client_dashboard"): DASHBOARD, ("billing", "get_workspace"): WORKSPACE}
    for rpc in (FakeRpc(answers), OlderBilling(answers)):
        c, _ = client(rpc=rpc)
        page = c.simulate_get("/dashboard", cookies=c.session_cookie)
        assert page.status_code == 200 and "$2,375.00" in page.text
        asked = [call[4].get("fields") for call in rpc.calls if call[:2] == ("billing", "client_dashboard")]
        assert asked == (["brief"] if type(rpc) is FakeRpc else ["brief", None])
    c, rpc = client(answers)  # the portal's API answers the whole dashboard
    assert c.simulate_get("/api/portal/v1/dashboard", cookies=c.session_cookie).status_code == 200
    assert [call[4].get("fields") for call in rpc.calls if call[:2] == ("billing", "client_dashboard")] == [None]


def test_a_page_asked_for_signed_out_is_where_the_sign_in_leads_once():
    c, _ = client({("auth", "consume_link"): {"credential": "c" * 43, **SESSION}})
    asked = c.simulate_get("/invoices/inv9", params={"tab": "comments"})
    assert asked.status_code == 303 and asked.headers["location"] == "/login"
    remembered = asked.cookies["portal_return_to"]
    assert remembered.http_only and remembered.same_site == "Lax" and remembered.max_age == 3600
    signed_in = c.simulate_post(
        "/login/verify", body="token=abc", headers=FORM, cookies={"portal_return_to": remembered.value}
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/invoices/inv9?tab=comments"
    assert signed_in.cookies["portal_return_to"].value == ""  # once: the next sign-in goes to the dashboard
    assert c.simulate_post("/login/verify", body="token=abc", headers=FORM).headers["location"] == "/dashboard"


@pytest.mark.parametrize("remembered", ["%2F%2Fevil.example%2F", "https%3A%2F%2Fevil.example", "%2F%5Cevil.example"])
def test_a_remembered_page_elsewhere_than_the_portal_is_never_where_a_sign_in_leads(remembered):
    c, _ = client({("auth", "consume_link"): {"credential": "c" * 43, **SESSION}})
    page = c.simulate_post("/login/verify", body="token=abc", headers=FORM, cookies={"portal_return_to": remembered})
    assert page.status_code == 303 and page.headers["location"] == "/dashboard"


def test_api_calls_and_posts_signed_out_remember_no_page():
    c, _ = client()
    assert "portal_return_to" not in c.simulate_get("/api/portal/v1/dashboard").cookies
    assert "portal_return_to" not in c.simulate_post("/profile", body="name=x", headers=FORM).cookies


def test_forged_cookie_redirects_to_sign_in_and_clears_it():
    c, rpc = client()
    page = c.simulate_get("/dashboard", cookies={"portal_session": "forged"})
    assert page.status_code == 303 and page.headers["location"] == "/login?expired=1"
    assert page.cookies["portal_session"].value == ""
    assert rpc.calls == []  # refused at the gateway


def test_api_without_session_is_problem_json():
    c, _ = client()
    page = c.simulate_get("/api/portal/v1/dashboard")
    assert page.status_code == 401 and page.headers["content-type"] == "application/problem+json"
    assert page.json["title"] == "Not signed in"


@pytest.mark.parametrize("error,status", [(ServiceUnavailable("down"), 503), (ServiceTimeout("slow"), 504)])
def test_unreachable_or_slow_services_give_clear_pages(error, status):
    c, _ = client({("billing", "client_dashboard"): error})
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert page.status_code == status and "try again" in page.text
    api = c.simulate_get("/api/portal/v1/dashboard", cookies=c.session_cookie)
    assert api.status_code == status and json.loads(api.text)["status"] == status


def test_a_call_the_service_refused_as_a_contract_bug_is_a_500_logged_once_by_the_rpc_pool(caplog):
    c, _ = client({("billing", "client_dashboard"): ContractViolation("billing.client_dashboard: takes 2 args")})
    with caplog.at_level(logging.INFO):
        page = c.simulate_get("/dashboard", cookies=c.session_cookie)
        api = c.simulate_get("/api/portal/v1/dashboard", cookies=c.session_cookie)
    assert page.status_code == 500 and "try again" in page.text
    assert api.status_code == 500 and api.headers["content-type"] == "application/problem+json"
    # the pool logged "contract bug: call refused" with the service and method; no traceback after it
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_request_id_is_kept_when_sane_and_passed_to_services():
    c, rpc = client({("auth", "link_state"): "valid"})
    page = c.simulate_get("/login/verify", params={"token": "x"}, headers={"X-Request-ID": "abc-123"})
    assert page.headers["x-request-id"] == "abc-123" and rpc.calls[0][3] == "abc-123"
    page = c.simulate_get("/login", headers={"X-Request-ID": "bad id\n"})
    assert page.headers["x-request-id"] != "bad id\n" and len(page.headers["x-request-id"]) == 32


def test_security_headers_on_every_page():
    c, _ = client()
    headers = c.simulate_get("/login").headers
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "same-origin" and headers["cache-control"] == "no-store"


def test_every_page_links_the_portal_s_icon_and_favicon_ico_leads_to_it():
    c, _ = client()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in c.simulate_get("/login").text
    asked = c.simulate_get("/favicon.ico")  # browsers ask for it, signed in or not
    assert asked.status_code == 301 and asked.headers["location"] == "/static/favicon.svg"
    icon = c.simulate_get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert "img-src 'self'" in icon.headers["content-security-policy"]  # an icon is an image of the portal's own


def test_unknown_page_is_a_designed_404():
    c, _ = client()
    page = c.simulate_get("/no/such/page")
    assert page.status_code == 404 and "Page not found" in page.text and "<main" in page.text


def test_health_is_503_when_a_service_does_not_answer():
    c, _ = client(
        {
            ("auth", "ping"): {"ok": True},
            ("billing", "ping"): ServiceTimeout("slow"),
            ("payments", "ping"): {"ok": True},
            ("documents", "ping"): {"ok": True},
        }
    )
    page = c.simulate_get("/healthz")
    assert page.status_code == 503
    assert page.json["checks"]["billing"]["ok"] is False and page.json["checks"]["auth"]["ok"] is True


def test_dev_mail_exists_only_in_dev():
    assert client(dev=False)[0].simulate_get("/dev/mail").status_code == 404


def test_dev_mail_names_each_link_by_where_it_leads():
    sign_in = {
        "id": "e1",
        "to": "demo@example.com",
        "subject": "Your sign-in link",
        "kind": "magic_link",
        "status": "sent",
        "created_at": "2026-11-23T12:00:00+00:00",
        "links": ["http://portal.test/auth/verify?token=a", "http://portal.test/not-me?token=b"],
    }
    page = client({("documents", "recent_emails"): [sign_in]})[0].simulate_get("/dev/mail")
    assert page.status_code == 200
    assert '<a href="http://portal.test/auth/verify?token=a">/auth/verify</a>' in page.text
    assert '<a href="http://portal.test/not-me?token=b">/not-me</a>' in page.text


def test_rate_limits_use_the_address_our_proxy_saw_not_a_forged_one():
    c, rpc = client({("auth", "request_link"): {"accepted": True}}, hops=1)
    c.simulate_post(
        "/login", body="email=demo@example.com", headers={**FORM, "X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    )
    assert rpc.calls[0][2][1] == "203.0.113.9"
    c, rpc = client({("auth", "request_link"): {"accepted": True}})  # no proxy: the header is ignored
    c.simulate_post("/login", body="email=demo@example.com", headers={**FORM, "X-Forwarded-For": "6.6.6.6"})
    assert rpc.calls[0][2][1] == "127.0.0.1"


def test_pdf_downloads_are_scoped_named_and_revalidated():
    import base64

    pdf = {"filename": "INV-2026-00042.pdf", "etag": "abc", "pdf": base64.b64encode(b"%PDF-1.7 x").decode()}
    c, rpc = client({("billing", "get_invoice"): {"id": "i1", "number": "N"}, ("documents", "render_document"): pdf})
    page = c.simulate_get("/invoices/i1/pdf", cookies=c.session_cookie)
    assert page.status_code == 200 and page.content == b"%PDF-1.7 x"
    assert page.headers["content-type"] == "application/pdf"
    assert page.headers["content-disposition"] == 'attachment; filename="INV-2026-00042.pdf"'
    assert page.headers["cache-control"] == "private, max-age=0, must-revalidate"
    assert rpc.calls[0][:3] == ("billing", "get_invoice", ("ws1", "i1"))  # client scope passed as a keyword
    again = c.simulate_get("/invoices/i1/pdf", cookies=c.session_cookie, headers={"If-None-Match": '"abc"'})
    assert again.status_code == 304 and not again.content


def test_forms_need_the_csrf_token_of_their_own_cookie():
    c, rpc = client({("auth", "request_link"): {"accepted": True}, ("auth", "end_session"): 1})
    page = c.simulate_get("/login")
    assert rpc.calls.pop()[:2] == ("auth", "passwords_offered")  # the page asks whether to offer passwords
    cookie = page.cookies["portal_csrf"]
    assert cookie.http_only and cookie.same_site == "Lax"
    token = sign(GatewayConfig.secret, cookie.value)
    assert f'name="csrf_token" value="{token}"' in page.text
    refused = [
        c.simulate_post("/login", csrf=False, body="email=demo@example.com", headers=FORM),  # no cookie, no token
        c.simulate_post(
            "/login",
            csrf=False,
            body=f"email=demo@example.com&csrf_token={token}",
            headers=FORM,
            cookies={"portal_csrf": "d" * 43},
        ),  # another browser's token
        c.simulate_post("/logout", csrf=False, cookies={**c.session_cookie, "portal_csrf": cookie.value}),
    ]
    assert [p.status_code for p in refused] == [403, 403, 403] and rpc.calls == []
    assert "reload it and try again" in refused[0].text
    ok = c.simulate_post(
        "/login",
        csrf=False,
        body=f"email=demo@example.com&csrf_token={token}",
        headers=FORM,
        cookies={"portal_csrf": cookie.value},
    )
    assert ok.status_code == 200 and [call[1] for call in rpc.calls] == ["request_link"]


def test_a_json_api_call_with_only_a_bearer_token_needs_no_csrf_token():
    c, rpc = client({("auth", "end_session"): 1})
    page = c.simulate_post("/api/portal/v1/session/logout", csrf=False, headers=c.bearer)
    assert page.status_code == 204 and rpc.calls[0][:3] == ("auth", "end_session", ("s1",))
    assert rpc.calls[0][4]["everywhere"] is False
    with_cookie = c.simulate_post("/api/portal/v1/session/logout", csrf=False, cookies=c.session_cookie)
    assert with_cookie.status_code == 403


def test_pages_wear_the_business_brand_with_readable_colours():
    import base64

    from services.gateway import branding

    png = "data:image/png;base64," + base64.b64encode(b"\x89PNG fake").decode()
    c, _ = client(
        {
            ("billing", "client_dashboard"): DASHBOARD,
            ("billing", "get_workspace"): {**WORKSPACE, "id": "ws-brand", "logo_url": png},
        },
        session={**SESSION, "workspace_id": "ws-brand"},
    )
    page = c.simulate_get("/dashboard", cookies=c.session_cookie)
    assert '<img src="/brand/ws-brand/logo?v=' in page.text and 'alt="Acme"' in page.text
    css = c.simulate_get("/brand/ws-brand.css")
    brand = css.text.split("--brand: ")[1][:7]
    assert css.headers["content-type"].startswith("text/css") and brand != "#fde047"  # yellow fails on white
    assert branding.contrast(brand, "#ffffff") >= 4.5
    logo = c.simulate_get("/brand/ws-brand/logo")
    assert logo.content == b"\x89PNG fake" and logo.headers["content-type"] == "image/png"


def test_an_svg_logo_is_never_served():
    from services.gateway import branding

    assert branding._logo("data:image/svg+xml;base64,PHN2Zz48c2NyaXB0Lz48L3N2Zz4=") is None


def test_text_no_database_can_store_is_refused_before_any_call():
    """NUL (%00, \\u0000) and unpaired surrogates: a 400 for the address or a form, a 422 naming the field
    for a JSON body (schemathesis found them reaching PostgreSQL as 5xx)."""
    c, rpc = client()
    for path, params in (
        ("/invoices/%00", None),
        ("/invoices", {"search": "a\x00"}),
        ("/api/portal/v1/invoices", {"search": "\x00"}),
    ):
        page = c.simulate_get(path, params=params, cookies=c.session_cookie)
        assert page.status_code == 400, path
    assert (
        c.simulate_post("/contact", body="subject=a%00&message=b", headers=FORM, cookies=c.session_cookie).status_code
        == 400
    )
    for body in ('{"rating": 4, "message": "a\\u0000"}', '{"rating": 4, "message": "\\ud800"}'):
        api = c.simulate_post(
            "/api/portal/v1/reviews", body=body, headers={"Content-Type": "application/json"}, cookies=c.session_cookie
        )
        assert api.status_code == 422 and "message" in api.json["errors"], api.text
    assert rpc.calls == []  # nothing reached a service


def test_verify_is_rate_limited_with_a_readable_429():
    c, rpc = client({("auth", "link_state"): RateLimited("Too many."), ("auth", "consume_link"): RateLimited("x")})
    for page in (
        c.simulate_get("/login/verify", params={"token": "t"}),
        c.simulate_post("/login/verify", body="token=t", headers=FORM),
    ):
        assert page.status_code == 429 and page.headers["retry-after"] == "900"
    assert [call[4]["client_ip"] for call in rpc.calls] == ["127.0.0.1", "127.0.0.1"]  # auth is told the address


@pytest.mark.parametrize(
    "error,status",
    [
        (BadQuery("limit is a number.", limit="not a number"), 400),
        (NotFound("No such invoice."), 404),
        (Invalid("Bad."), 422),
        (Conflict("Taken."), 409),
        (RateLimited("Slow down."), 429),
        (Unauthorized("unknown"), 401),
        (Unavailable("Stripe is away."), 503),
    ],
)
def test_each_business_error_is_its_http_status_with_its_fields(error, status):
    c, _ = client({("billing", "client_dashboard"): error})
    answer = c.simulate_get("/api/portal/v1/dashboard", cookies=c.session_cookie)
    assert answer.status_code == status and answer.json["status"] == status
    assert answer.json.get("errors", {}) == error.fields


def test_the_einvoice_xml_is_the_clients_own_invoice_and_refused_where_the_business_issues_none():
    from chassis.errors import Conflict

    invoice = {"id": "i1", "number": "INV-1", "client_id": "c1"}
    xml = {"filename": "INV-1.xml", "content_type": "application/xml", "xml": "<rsm:CrossIndustryInvoice/>"}
    c, rpc = client({("billing", "get_invoice"): invoice, ("documents", "einvoice"): xml})
    for path in ("/invoices/i1/xml", "/api/portal/v1/invoices/i1/xml"):
        answer = c.simulate_get(path, cookies=c.session_cookie)
        assert answer.status_code == 200 and answer.text == xml["xml"]
        assert answer.headers["content-type"] == "application/xml"
        assert answer.headers["content-disposition"] == 'attachment; filename="INV-1.xml"'
    lookups = [call for call in rpc.calls if call[:2] == ("billing", "get_invoice")]
    assert [(call[2], call[4]["client_id"]) for call in lookups] == [(("ws1", "i1"), SESSION["client_id"])] * 2
    assert [call[2] for call in rpc.calls if call[0] == "documents"] == [("invoice", "ws1", invoice)] * 2

    refused = Conflict("This business issues no e-invoices: its VAT id is not set.", vat_id="not set")
    c, _ = client({("billing", "get_invoice"): invoice, ("documents", "einvoice"): refused})
    page = c.simulate_get("/invoices/i1/xml", cookies=c.session_cookie)
    assert page.status_code == 409 and "VAT id is not set" in page.text
    api = c.simulate_get("/api/portal/v1/invoices/i1/xml", cookies=c.session_cookie)
    assert api.status_code == 409 and api.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "path, method, done",
    [
        ("/profile/sign-in-links/l1/end", "end_sign_in_link", "link"),
        ("/profile/document-links/l1/end", "end_document_link", "document"),
    ],
)
def test_ending_a_link_ends_the_signed_in_contacts_own_and_says_so(path, method, done):
    c, rpc = client({("auth", method): 1})
    page = c.simulate_post(path, cookies=c.session_cookie)
    assert page.status_code == 303 and page.headers["location"] == f"/profile/sessions?done={done}"
    assert [(s, m, args) for s, m, args, *_ in rpc.calls if s == "auth"] == [("auth", method, ("c1", "l1"))]
    c, _ = client({("auth", method): 0})  # ended already, or another contact's
    assert c.simulate_post(path, cookies=c.session_cookie).status_code == 404


def test_forgot_password_refuses_a_bad_address_in_words_whether_the_gateway_or_auth_finds_it():
    c, rpc = client({("auth", "request_password_reset"): Invalid("Not an address.")})
    malformed = c.simulate_post("/password/forgot", body="email=not-an-address", headers=FORM)
    assert malformed.status_code == 400 and "Enter a valid email address" in malformed.text
    assert rpc.calls == []
    refused_by_auth = c.simulate_post("/password/forgot", body="email=a%40example.com", headers=FORM)
    assert refused_by_auth.status_code == 400 and "Enter a valid email address" in refused_by_auth.text
    assert 'value="a@example.com"' in refused_by_auth.text


def test_a_signed_in_contacts_error_page_carries_its_business_s_name_and_a_server_error_asks_nothing():
    from services.gateway import branding

    branding._cache.clear()
    c, rpc = client(
        {("billing", "view_invoice"): NotFound("No such invoice."), ("billing", "get_workspace"): WORKSPACE}
    )
    missing = c.simulate_get("/invoices/nope", cookies=c.session_cookie)
    assert missing.status_code == 404 and '<span class="brand">Acme</span>' in missing.text
    branding._cache.clear()
    c, rpc = client({("billing", "view_invoice"): Unavailable("billing is restarting")})
    down = c.simulate_get("/invoices/nope", cookies=c.session_cookie)
    assert down.status_code == 503 and '<span class="brand">Client portal</span>' in down.text
    assert not [call for call in rpc.calls if call[1] == "get_workspace"]

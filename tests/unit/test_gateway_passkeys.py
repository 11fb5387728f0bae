"""The gateway's passkey routes on a fake RPC pool: what reaches auth, the proof that goes into the
session credential, payments' step-up refusal turned into the step-up page, and refusals in words."""

from datetime import timedelta

from chassis import credentials
from chassis.errors import Invalid, Unauthorized
from services.gateway.app import GatewayConfig
from services.gateway.pages.passkeys import safe_next
from tests.unit.test_gateway import NOW, WORKSPACE, client

ANSWER = {"id": "cred", "rawId": "cred", "type": "public-key", "response": {"clientDataJSON": "e30"}}
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
STEP_UP = Unauthorized("Confirm it is you before paying.", step_up="required")


def session_of(cookie_header: str) -> credentials.Session:
    return credentials.read(cookie_header, GatewayConfig().session_keys)


def test_passkey_sign_in_sets_the_session_auth_opened():
    issued = {"credential": "signed-by-auth", "session_id": "s9"}
    c, rpc = client({("auth", "passkey_sign_in"): issued})
    answer = c.simulate_post("/login/passkey", json={"credential": ANSWER}, headers=JSON)
    assert answer.status_code == 200 and answer.json == {"next": "/dashboard"}
    assert answer.cookies["portal_session"].value == "signed-by-auth"
    [(service, method, args, _, _)] = rpc.calls
    assert (service, method, args[:2]) == ("auth", "passkey_sign_in", (ANSWER, "http://portal.test"))


def test_a_passkey_sign_in_leads_to_the_page_asked_for_signed_out():
    c, _ = client({("auth", "passkey_sign_in"): {"credential": "signed-by-auth", "session_id": "s9"}})
    remembered = c.simulate_get("/statement").cookies["portal_return_to"].value
    answer = c.simulate_post(
        "/login/passkey", json={"credential": ANSWER}, headers=JSON, cookies={"portal_return_to": remembered}
    )
    assert answer.status_code == 200 and answer.json == {"next": "/statement"}


def test_a_refused_answer_is_a_401_in_words_and_sets_no_cookie():
    c, _ = client({("auth", "passkey_sign_in"): Unauthorized("challenge")})
    answer = c.simulate_post("/login/passkey", json={"credential": ANSWER}, headers=JSON)
    assert answer.status_code == 401 and "expired or was already used" in answer.json["detail"]
    assert "portal_session" not in answer.cookies


def test_a_body_without_a_credential_is_a_422_and_calls_nothing():
    c, rpc = client()
    answer = c.simulate_post("/login/passkey", json={"credential": "x"}, headers=JSON)
    assert answer.status_code == 422 and rpc.calls == []
    answer = c.simulate_post("/login/passkey", body="credential=x", headers={"Content-Type": "text/plain"})
    assert answer.status_code == 400 and rpc.calls == []


def test_a_step_up_puts_the_proof_in_the_session_credential():
    proved = (NOW + timedelta(seconds=3)).isoformat()
    c, rpc = client({("auth", "passkey_step_up"): {"proved_at": proved}})
    answer = c.simulate_post(
        "/step-up", json={"credential": ANSWER, "next": "/pay?invoice=i1"}, headers=JSON, cookies=c.session_cookie
    )
    assert answer.status_code == 200 and answer.json["next"] == "/pay?invoice=i1"
    assert session_of(answer.cookies["portal_session"].value).proved_at == NOW + timedelta(seconds=3)
    [(_, method, args, _, kwargs)] = rpc.calls
    assert method == "passkey_step_up" and args[:2] == ("c1", "s1") and kwargs["scope"].client_id == "cl1"


def test_a_step_up_by_the_api_hands_the_new_token_in_the_header():
    proved = NOW.isoformat()
    c, _ = client({("auth", "passkey_step_up"): {"proved_at": proved}})
    answer = c.simulate_post("/api/portal/v1/me/step-up", json={"credential": ANSWER}, headers={**JSON, **c.bearer})
    assert answer.status_code == 200 and answer.json == {"proved_at": proved}
    assert session_of(answer.headers["X-Session-Token"]).proved_at == NOW


def test_payments_step_up_refusal_sends_a_page_to_confirm_and_back():
    c, _ = client(
        {("billing", "get_client"): {"currency": "USD", "locale": "en_US"}, ("payments", "start_payment"): STEP_UP}
    )
    page = c.simulate_post(
        "/pay",
        body="invoice=i1&key=k1",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Referer": "http://portal.test/pay?invoice=i1"},
        cookies=c.session_cookie,
    )
    assert page.status_code == 303 and page.headers["Location"] == "/step-up?next=%2Fpay%3Finvoice%3Di1"


def test_payments_step_up_refusal_to_a_script_is_problem_json_with_where_to_go():
    c, _ = client({("payments", "card_setup"): STEP_UP})
    answer = c.simulate_post("/payment-methods/setup", json={}, headers=JSON, cookies=c.session_cookie)
    assert answer.status_code == 401 and answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json["errors"] == {"step_up": "required"} and answer.json["step_up_url"].startswith("/step-up")


def test_the_proof_reaches_the_services_in_the_scope():
    c, rpc = client({("auth", "list_passkeys"): []})
    c.simulate_get("/api/portal/v1/me/passkeys", headers=c.bearer)
    assert rpc.calls[0][4]["scope"].proved_at is None  # the fixture's session proved nothing
    # a session that proved presence carries the time to every service it calls
    session = session_of(c.bearer["Authorization"].split()[1])
    from dataclasses import replace

    token = credentials.issue(replace(session, proved_at=NOW), GatewayConfig().session_keys)
    c.simulate_get("/api/portal/v1/me/passkeys", headers={"Authorization": f"Bearer {token}"})
    assert rpc.calls[-1][4]["scope"].proved_at == NOW.isoformat()


def test_renaming_with_a_bad_name_shows_the_page_again():
    c, _ = client(
        {
            ("auth", "rename_passkey"): Invalid("Give the passkey a name.", name="required"),
            ("auth", "list_passkeys"): [],
            ("billing", "get_client"): {"locale": "en_US", "timezone": "UTC", "contacts": []},
            ("billing", "get_workspace"): WORKSPACE,
        }
    )
    page = c.simulate_post(
        "/profile/passkeys/p1/rename",
        body="name=",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        cookies=c.session_cookie,
    )
    assert page.status_code == 422 and "Give the passkey a name." in page.text


def test_next_is_only_ever_a_path_here():
    assert safe_next("/pay?invoice=1") == "/pay?invoice=1"
    for outside in ("//evil.example", "https://evil.example/", "/\\evil.example", "", None, "pay"):
        assert safe_next(outside) == "/dashboard"

"""The portal's JSON API: a bearer token from a magic link, everything the pages show, CSRF on cookie calls."""

import time

import pytest
import requests

from tests.conftest import SIGN_IN, Browser, link_token, new_portal_client, refused_within, sign_in

pytestmark = pytest.mark.e2e
API = "/api/portal/v1"


def bearer_token(stack, email: str) -> str:
    before = stack.outbox.count(email, SIGN_IN)
    Browser(stack.url).post(f"{stack.url}/login", data={"email": email})
    token = link_token(stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1])
    answer = requests.post(f"{stack.url}{API}/session", json={"token": token})
    assert answer.status_code == 201, answer.text
    assert requests.post(f"{stack.url}{API}/session", json={"token": token}).status_code == 401  # used once
    return answer.json()["access_token"]


def test_a_bearer_client_reads_and_acts_through_the_api(stack):
    made = new_portal_client(stack, "Api User Co", "api-user@example.org", invoices=2, quotes=2)
    auth = {"Authorization": f"Bearer {bearer_token(stack, 'api-user@example.org')}"}

    def api(method, path, expect=200, **kwargs):
        response = requests.request(method, f"{stack.url}{API}{path}", headers=auth, timeout=20, **kwargs)
        assert response.status_code == expect, (method, path, response.text)
        return response.json() if response.content and "json" in response.headers["content-type"] else response

    me = api("GET", "/me")
    assert me["client_id"] == made["client"]["id"] and me["email"] == "api-user@example.org"
    dashboard = api("GET", "/dashboard")
    assert dashboard["outstanding"] == {"amount": 30000, "currency": "USD"}
    listed = api("GET", "/invoices", params={"status": "unpaid", "sort": "amount"})
    assert [i["total"] for i in listed["items"]] == [10000, 20000]
    invoice = api("GET", f"/invoices/{listed['items'][0]['id']}")
    assert invoice["lines"][0]["description"] == "Api User Co work 0"
    assert api("GET", f"/invoices/{invoice['id']}/pdf").content.startswith(b"%PDF-")
    posted = [
        api(
            "POST",
            f"/invoices/{invoice['id']}/comments",
            201,
            json={"body": "Via the API", "idempotency_key": "retry-1"},
        )
        for _ in range(2)
    ]  # a retry with the same key posts once
    assert posted[0]["id"] == posted[1]["id"]
    assert [c["body"] for c in api("GET", f"/invoices/{invoice['id']}/comments")] == ["Via the API"]
    api("POST", f"/invoices/{invoice['id']}/forward", 202, json={"to": "books@example.org"})
    stack.outbox.wait_for("books@example.org", subject=invoice["number"])

    quotes = api("GET", "/quotes", params={"status": "pending"})["items"]
    assert len(quotes) == 2
    assert (
        api("POST", f"/quotes/{quotes[0]['id']}/accept", json={"signature_name": "Api User", "version": 1})["status"]
        == "accepted"
    )
    assert api("POST", f"/quotes/{quotes[1]['id']}/reject", json={"reason": "No", "version": 1})["status"] == "rejected"
    api("POST", f"/quotes/{quotes[1]['id']}/accept", 409, json={"signature_name": "Api User", "version": 1})

    profile = api("PATCH", "/profile", json={"phone": "+1 555 0199", "company": "Api User Company"})
    assert profile["client"]["name"] == "Api User Company" and profile["contact"]["phone"] == "+1 555 0199"
    assert api("GET", "/profile")["name"] == "Api User Company"
    assert api("GET", "/payments") == [] and api("GET", "/statement")["closing_balance"] == 30000
    assert api("GET", "/statement.pdf").content.startswith(b"%PDF-")
    api("POST", "/messages", 202, json={"subject": "From the API", "message": "Hello", "idempotency_key": "k1"})
    api("POST", "/messages", 202, json={"subject": "From the API", "message": "Hello", "idempotency_key": "k1"})
    stack.outbox.wait_for("billing@acme.example", subject="From the API")
    time.sleep(1)  # a second email, were there one, would be delivered by now
    assert stack.outbox.count("billing@acme.example", "From the API") == 1
    api("POST", "/reviews", 201, json={"rating": 5, "message": "Great"})

    bookings = api("GET", "/bookings")
    link = bookings["links"][0]["id"]
    slot = api("GET", f"/booking-links/{link}/slots")["slots"][0]
    booking = api("POST", "/bookings", 201, json={"link_id": link, "start": slot})
    assert [b["id"] for b in api("GET", "/bookings")["upcoming"]] == [booking["id"]]
    assert api("POST", f"/bookings/{booking['id']}/cancel")["status"] == "cancelled"

    api("DELETE", "/session", 204)
    refused_within(lambda: requests.get(f"{stack.url}{API}/me", headers=auth, timeout=20))  # on every worker


def test_bad_api_input_is_a_problem_and_changes_nothing(stack):
    new_portal_client(stack, "Api Strict Co", "api-strict@example.org")
    auth = {"Authorization": f"Bearer {bearer_token(stack, 'api-strict@example.org')}"}
    before = requests.get(f"{stack.url}{API}/profile", headers=auth).json()
    for method, path, body, status in (
        ("PATCH", "/profile", {"company": ""}, 422),
        ("PATCH", "/profile", {"name": "  "}, 422),
        ("PATCH", "/profile", {"name": None}, 422),
        ("PATCH", "/profile", {"email": "new@example.org"}, 422),
        ("POST", "/reviews", {"rating": 6}, 422),
        ("POST", "/bookings", {"link_id": "x"}, 422),
        ("GET", "/invoices?status=bogus", None, 400),
        ("POST", "/session", {"token": "forged"}, 401),
    ):
        answer = requests.request(method, f"{stack.url}{API}{path}", headers=auth, json=body)
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    text = requests.patch(f"{stack.url}{API}/profile", headers={**auth, "Content-Type": "text/plain"}, data="x")
    assert text.status_code == 415
    assert requests.get(f"{stack.url}{API}/profile", headers=auth).json() == before
    assert requests.get(f"{stack.url}{API}/dashboard", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_cookie_calls_need_the_csrf_token_from_me(stack):
    browser = sign_in(stack, "other@example.com")
    refused = browser.patch(f"{stack.url}{API}/profile", json={"phone": "+1 555 0100"})
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/problem+json"
    token = browser.get(f"{stack.url}{API}/me").json()["csrf_token"]
    accepted = browser.patch(
        f"{stack.url}{API}/profile", json={"phone": "+1 555 0100"}, headers={"X-CSRF-Token": token}
    )
    assert accepted.status_code == 200, accepted.text


def test_the_openapi_document_lists_every_portal_route(stack):
    from services.gateway.portal_api import ROUTES

    document = requests.get(f"{stack.url}{API}/openapi.json").json()
    listed = {(method.upper(), path[len(API) :]) for path, ops in document["paths"].items() for method in ops}
    assert listed == {(r.method, r.path) for r in ROUTES}

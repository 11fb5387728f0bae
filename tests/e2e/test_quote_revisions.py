"""Quote revisions through the running system: the client asks for changes, the business answers and
issues version 2, the portal shows what changed, a decision on the replaced version is refused and
changes nothing, the newest one is accepted and recorded; another client reaches none of it."""

import json
import re

import psycopg2
import pytest
import requests

from tests.conftest import new_portal_client, sign_in
from tests.e2e.test_browser import browser, check  # noqa: F401 - the real-browser fixture and axe check
from tests.integration.test_admin_api import Api, portalctl

pytestmark = pytest.mark.e2e

LINES = [
    {"description": "Website design", "quantity": 2, "unit_price": 50000},
    {"description": "Hosting (months)", "quantity": 12, "unit_price": 2000},
]
REVISED = [
    {"description": "Website design", "quantity": 2, "unit_price": 50000},
    {"description": "Hosting (months)", "quantity": 6, "unit_price": 2000},
    {"description": "Training session", "quantity": 1, "unit_price": 15000},
]


def events(stack, event_type: str, quote_id: str) -> list[dict]:
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT body FROM outbox WHERE event_type = %s ORDER BY seq", (event_type,))
        bodies = [json.loads(row[0]) for row in cur.fetchall()]
    return [b["data"] for b in bodies if b["data"]["id"] == quote_id]


def quote_state(stack, quote_id: str) -> tuple:
    """The quote's row, its kept versions and its comments, and how many events billing published about it."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT q::text FROM quotes q WHERE id = %s", (quote_id,))
        row = cur.fetchone()
        cur.execute("SELECT count(*) FROM quote_versions WHERE quote_id = %s", (quote_id,))
        versions = cur.fetchone()
        cur.execute("SELECT count(*) FROM comments WHERE document_id = %s", (quote_id,))
        comments = cur.fetchone()
        cur.execute("SELECT count(*) FROM outbox WHERE body LIKE %s", (f"%{quote_id}%",))  # its events
        published = cur.fetchone()
    return row, versions, comments, published


@pytest.fixture(scope="module")
def business(stack):
    made = new_portal_client(stack, "Revision Works Ltd", "revisions@example.org", invoices=0)
    key = portalctl(stack, "key", "create", "--workspace", made["workspace_id"], "--name", "revisions")["key"]
    admin = Api(stack.url, key)
    quote = admin("POST", "/quotes", {"client_id": made["client"]["id"], "lines": LINES, "send": True}, expect=201)
    return {**made, "admin": admin, "key": key, "quote": quote.json()}


def test_changes_requested_revised_and_the_newest_version_accepted(stack, business):
    admin, quote = business["admin"], business["quote"]
    qid, number = quote["id"], quote["number"]
    browser = sign_in(stack, "revisions@example.org")

    # the client asks for changes on the quote page
    page = browser.get(f"{stack.url}/quotes/{qid}")
    assert f'action="/quotes/{qid}/changes"' in page.text and 'name="version" value="1"' in page.text
    asked = browser.post(
        f"{stack.url}/quotes/{qid}/changes",
        data={"message": "Could hosting be 6 months, and add a training session?", "version": "1", "nonce": "n-1"},
    )
    assert asked.status_code == 200 and "Changes requested" in asked.text
    assert "Could hosting be 6 months, and add a training session?" in asked.text  # in the thread
    listed = browser.get(f"{stack.url}/quotes").text  # the list says so too
    assert f'href="/quotes/{qid}"' in listed and "Changes requested" in listed
    [event] = events(stack, "quote.changes_requested", qid)
    assert (event["version"], event["requested_by"], event["number"]) == (1, "revisions@example.org", number)
    thread = admin("GET", f"/quotes/{qid}/comments", expect=200).json()
    assert [(c["author_kind"], c["id"]) for c in thread] == [("client", event["comment_id"])]
    activity = admin("GET", f"/clients/{business['client']['id']}/activity", expect=200).json()
    assert "quote.changes_requested" in [a["kind"] for a in activity]

    # the business answers in the thread and issues version 2 (a retry with the same key issues it once)
    admin("POST", f"/quotes/{qid}/comments", {"body": "Done: six months and a session."}, expect=201)
    revise = [
        requests.post(
            f"{stack.url}/api/admin/v1/quotes/{qid}/revisions",
            json={"lines": REVISED, "terms": "Valid for 30 days."},
            headers={"Authorization": f"Bearer {business['key']}", "Idempotency-Key": "revise-1"},
            timeout=30,
        )
        for _ in range(2)
    ]
    assert [r.status_code for r in revise] == [201, 201] and revise[0].json() == revise[1].json()
    revised = revise[0].json()
    assert (revised["version"], revised["number"], revised["total"]) == (2, f"{number}-2", 127000)
    assert not revised["changes_requested"]
    versions = admin("GET", f"/quotes/{qid}/versions", expect=200).json()
    assert [(v["version"], v["number"], v["total"]) for v in versions["versions"]] == [
        (1, number, 124000),
        (2, f"{number}-2", 127000),
    ]
    [revised_event] = events(stack, "quote.revised", qid)
    assert (revised_event["version"], revised_event["previous_number"]) == (2, number)
    stack.outbox.wait_for("revisions@example.org", subject=f"{number}-2")  # the usual quote email

    # the portal shows the history with what changed
    page = browser.get(f"{stack.url}/quotes/{qid}").text
    assert "Version history" in page and f"From {number} to {number}-2" in page
    assert "Changed: Hosting (months)" in page and re.search(r"Quantity: 12 → 6", page)
    assert "Added: Training session" in page and "Total: $1,240.00 → $1,270.00" in page
    assert "Done: six months and a session." in page and 'name="version" value="2"' in page
    api_versions = browser.get(f"{stack.url}/api/portal/v1/quotes/{qid}/versions").json()
    assert [c["change"] for c in api_versions["changes"][0]["lines"]] == ["changed", "added"]

    # accepting the version the client saw before the revision: 409, nothing changes
    before = quote_state(stack, qid)
    csrf = browser.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
    stale = browser.post(
        f"{stack.url}/api/portal/v1/quotes/{qid}/accept",
        json={"signature_name": "Rita Revision", "version": 1},
        headers={"X-CSRF-Token": csrf},
    )
    assert stale.status_code == 409 and stale.headers["content-type"] == "application/problem+json"
    assert stale.json()["newest_version"] == 2 and stale.json()["newest"] == f"/api/portal/v1/quotes/{qid}"
    stale_page = browser.post(
        f"{stack.url}/quotes/{qid}/accept", data={"signature_name": "Rita Revision", "confirmed": "yes", "version": "1"}
    )
    assert stale_page.status_code == 409 and "you saw version 1, the newest is version 2" in stale_page.text
    declined = browser.post(f"{stack.url}/quotes/{qid}/reject", data={"reason": "x", "version": "1"})
    assert declined.status_code == 409
    assert quote_state(stack, qid) == before

    # accepting the newest version records it
    accepted = browser.post(
        f"{stack.url}/api/portal/v1/quotes/{qid}/accept",
        json={"signature_name": "Rita Revision", "version": 2},
        headers={"X-CSRF-Token": csrf},
    )
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["status"], accepted.json()["accepted_version"]) == ("accepted", 2)
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, accepted_version, number FROM quotes WHERE id = %s", (qid,))
        assert cur.fetchone() == ("accepted", 2, f"{number}-2")
    [accepted_event] = events(stack, "quote.accepted", qid)
    assert (accepted_event["version"], accepted_event["number"]) == (2, f"{number}-2")
    assert "(version 2)" in browser.get(f"{stack.url}/quotes/{qid}").text
    admin("POST", f"/quotes/{qid}/revisions", {"lines": REVISED}, expect=409)  # an accepted quote stays


def test_another_client_can_neither_ask_for_changes_nor_see_the_versions(stack, business):
    admin = business["admin"]
    quote = admin(
        "POST", "/quotes", {"client_id": business["client"]["id"], "lines": LINES, "send": True}, expect=201
    ).json()
    admin("POST", f"/quotes/{quote['id']}/revisions", {"lines": REVISED}, expect=201)
    new_portal_client(stack, "Nosy Neighbour Ltd", "nosy@example.org", invoices=0)
    nosy = sign_in(stack, "nosy@example.org")
    csrf = nosy.get(f"{stack.url}/api/portal/v1/me").json()["csrf_token"]
    before = quote_state(stack, quote["id"])
    api = f"{stack.url}/api/portal/v1/quotes/{quote['id']}"
    answers = [
        nosy.post(f"{api}/request-changes", json={"message": "Cheaper!", "version": 2}, headers={"X-CSRF-Token": csrf}),
        nosy.get(f"{api}/versions"),
        nosy.get(f"{api}/comments"),
        nosy.post(f"{stack.url}/quotes/{quote['id']}/changes", data={"message": "Cheaper!", "version": "2"}),
        nosy.get(f"{stack.url}/quotes/{quote['id']}"),
    ]
    assert [a.status_code for a in answers] == [404] * 5
    assert not [a for a in answers if quote["number"] in a.text or "Website design" in a.text]
    assert quote_state(stack, quote["id"]) == before


def test_the_change_request_and_the_history_in_a_real_browser(stack, browser):
    """The forms and the version history as a person uses them, checked with axe-core."""
    made = new_portal_client(stack, "Browser Revisions Ltd", "browser-revisions@example.org", invoices=0)
    key = portalctl(stack, "key", "create", "--workspace", made["workspace_id"], "--name", "browser-revisions")["key"]
    admin = Api(stack.url, key)
    quote = admin("POST", "/quotes", {"client_id": made["client"]["id"], "lines": LINES, "send": True}, expect=201)
    qid, number = quote.json()["id"], quote.json()["number"]
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    cookies = sign_in(stack, "browser-revisions@example.org").cookies
    context.add_cookies([{"name": c.name, "value": c.value, "url": stack.url} for c in cookies])

    page.goto(f"{stack.url}/quotes/{qid}")
    page.fill("#changes", "Six months of hosting, please.")
    page.click("button:has-text('Request changes')")
    page.wait_for_selector("[data-testid=changes-requested]")
    assert "Six months of hosting, please." in page.inner_text("section[aria-labelledby=comments]")
    check(page, "30-quote-changes-requested")

    admin("POST", f"/quotes/{qid}/revisions", {"lines": REVISED}, expect=201)
    page.reload()
    page.wait_for_selector("[data-testid=version-change]")
    assert f"From {number} to {number}-2" in page.inner_text("[data-testid=version-change]")
    check(page, "31-quote-version-history")
    page.fill("#signature_name", "Bo Browser")
    page.click("button:has-text('Accept')")
    page.click("button:has-text('Confirm acceptance')")
    page.wait_for_selector(".badge.accepted")
    assert "(version 2)" in page.inner_text("[data-testid=accepted]")
    context.close()

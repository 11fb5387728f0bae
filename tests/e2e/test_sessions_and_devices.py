"""The sessions and devices page through the running stack: a contact signed in on two devices sees both
(browser and OS from the user agent, the address, the current one marked) and its unused sign-in links;
ending one session, or all others, is refused by the gateway at once; the sign-in email names the
device that asked and its "this wasn't me" link only asks on GET and ends everything on POST; a sign-in
from a new device is emailed; and session events reach a workspace's webhooks without the IP address
and user agent unless the workspace opts in."""

from __future__ import annotations

import json
import re
import uuid

import psycopg2
import pytest
import requests

from tests.conftest import SIGN_IN, Browser, link_token, new_portal_client, refused_within, services_rpc, sign_in
from tests.e2e.payments_support import wait_until
from tests.integration.test_admin_api import Api, portalctl
from tests.unit.test_webhooks import Receiver

pytestmark = pytest.mark.e2e

LAPTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Mobile/15E148 Safari/604.1"
)
TABLET = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
NEW_DEVICE = "New sign-in"


def device(stack, agent: str) -> Browser:
    browser = Browser(stack.url)
    browser.headers["User-Agent"] = agent
    return browser


def signed_in(stack, email: str, agent: str) -> Browser:
    return sign_in(stack, email, device(stack, agent))


def me(stack, browser: requests.Session):
    return lambda: requests.get(
        f"{stack.url}/api/portal/v1/me", cookies={"portal_session": browser.cookies["portal_session"]}, timeout=5
    )


def listed(stack, browser: Browser) -> dict:
    answer = browser.get(f"{stack.url}/api/portal/v1/sessions")
    assert answer.status_code == 200, answer.text
    return answer.json()


def text_of(message) -> str:
    return message.get_body(("plain",)).get_content()


def auth_rows(stack, sql: str, *args) -> list:
    with psycopg2.connect(stack.databases["auth"]) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def contact_state(stack, contact_id: str) -> tuple:
    """Everything auth holds for the contact that ending could change."""
    return (
        auth_rows(stack, "SELECT id, revoked_at FROM sessions WHERE contact_id = %s ORDER BY id", contact_id),
        auth_rows(
            stack, "SELECT id, expires_at, used_at FROM link_tokens WHERE contact_id = %s ORDER BY id", contact_id
        ),
    )


def test_the_page_lists_both_devices_and_the_unused_link_and_a_new_device_is_emailed(stack):
    email = f"devices-{uuid.uuid4().hex[:6]}@example.org"
    new_portal_client(stack, "Devices Ltd", email)
    laptop = signed_in(stack, email, LAPTOP)
    assert stack.outbox.count(email, NEW_DEVICE) == 0  # the first sign-in: nothing to compare with
    phone = signed_in(stack, email, PHONE)
    [notice] = stack.outbox.wait_for(email, 1, subject=NEW_DEVICE)
    assert "Mobile Safari on iOS" in text_of(notice) and "/profile/sessions" in text_of(notice)
    signed_in(stack, email, LAPTOP.replace("140.0.0.0", "141.0.0.0"))  # the same laptop, its browser updated
    device(stack, PHONE).post(f"{stack.url}/login", data={"email": email})  # asked for, never used
    request = stack.outbox.wait_for(email, 4, subject=SIGN_IN)[-1]
    assert "Mobile Safari on iOS" in text_of(request) and "/not-me?token=" in text_of(request)
    assert stack.outbox.count(email, NEW_DEVICE) == 1

    page = laptop.get(f"{stack.url}/profile/sessions")
    assert page.status_code == 200
    assert "Chrome on Linux" in page.text and "Mobile Safari on iOS" in page.text and "127.0.0.1" in page.text
    assert page.text.count('data-current="true"') == 1
    data = listed(stack, phone)
    assert len(data["sessions"]) == 3
    [current] = [s for s in data["sessions"] if s["current"]]
    assert (current["browser"], current["os"], current["ip"]) == ("Mobile Safari", "iOS", "127.0.0.1")
    [link] = data["sign_in_links"]
    assert (link["browser"], link["os"]) == ("Mobile Safari", "iOS")
    assert "/profile/sessions" in laptop.get(f"{stack.url}/profile").text  # linked from the profile


def test_ending_one_session_and_then_all_others_is_refused_by_the_gateway(stack):
    email = f"end-{uuid.uuid4().hex[:6]}@example.org"
    new_portal_client(stack, "Ending Ltd", email)
    laptop, phone = signed_in(stack, email, LAPTOP), signed_in(stack, email, PHONE)
    [phone_session] = [s["id"] for s in listed(stack, phone)["sessions"] if s["current"]]

    ended = laptop.post(f"{stack.url}/profile/sessions/{phone_session}/end", allow_redirects=False)
    assert ended.status_code == 303 and ended.headers["Location"].endswith("done=session")
    refused_within(me(stack, phone))
    again = laptop.post(f"{stack.url}/profile/sessions/{phone_session}/end", allow_redirects=False)
    assert again.status_code == 404  # ended already: a clear page, nothing changes
    assert me(stack, laptop)().status_code == 200

    tablet = signed_in(stack, email, TABLET)
    answer = requests.post(f"{stack.url}/api/portal/v1/session", json={"token": _fresh_token(stack, email)})
    bearer = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    assert laptop.post(f"{stack.url}/profile/sessions/end-others", allow_redirects=False).status_code == 303
    refused_within(me(stack, tablet))
    refused_within(lambda: requests.get(f"{stack.url}/api/portal/v1/me", headers=bearer, timeout=5))
    assert me(stack, laptop)().status_code == 200
    assert [s["current"] for s in listed(stack, laptop)["sessions"]] == [True]


def test_a_contact_cannot_end_another_contacts_session(stack):
    mine, theirs = (f"{who}-{uuid.uuid4().hex[:6]}@example.org" for who in ("mine", "theirs"))
    new_portal_client(stack, "Mine Ltd", mine)
    new_portal_client(stack, "Theirs Ltd", theirs)
    me_browser, them = signed_in(stack, mine, LAPTOP), signed_in(stack, theirs, LAPTOP)
    [their_session] = [s["id"] for s in listed(stack, them)["sessions"]]
    answer = me_browser.post(f"{stack.url}/api/portal/v1/sessions/{their_session}/end")
    assert answer.status_code == 404 and answer.headers["Content-Type"].startswith("application/problem+json")
    assert me(stack, them)().status_code == 200


def _fresh_token(stack, email: str) -> str:
    before = stack.outbox.count(email, SIGN_IN)
    Browser(stack.url).post(f"{stack.url}/login", data={"email": email})
    return link_token(stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1])


def test_this_wasnt_me_asks_on_get_and_ends_every_session_and_link_on_post(stack):
    email = f"notme-{uuid.uuid4().hex[:6]}@example.org"
    made = new_portal_client(stack, "Not Me Ltd", email)
    laptop, phone = signed_in(stack, email, LAPTOP), signed_in(stack, email, PHONE)
    before = stack.outbox.count(email, SIGN_IN)
    device(stack, TABLET).post(f"{stack.url}/login", data={"email": email})
    message = stack.outbox.wait_for(email, before + 1, subject=SIGN_IN)[-1]
    unused = link_token(message)
    assert "Firefox on Windows" in text_of(message)
    report = re.search(r"(/not-me\?token=[A-Za-z0-9_-]+)", text_of(message)).group(1)
    state = contact_state(stack, made["contact_id"])

    scanner = requests.get(f"{stack.url}{report}", timeout=10)  # what a mail scanner does
    assert scanner.status_code == 200 and email in scanner.text and "End all my sessions and links" in scanner.text
    assert contact_state(stack, made["contact_id"]) == state  # a GET changes nothing
    assert me(stack, laptop)().status_code == 200 and me(stack, phone)().status_code == 200

    contact = Browser(stack.url)
    assert contact.get(f"{stack.url}{report}").status_code == 200
    done = contact.post(f"{stack.url}/not-me", data={"token": report.split("=", 1)[1]})
    assert done.status_code == 200 and 'data-testid="not-me-done"' in done.text
    refused_within(me(stack, laptop))
    refused_within(me(stack, phone))
    refused = Browser(stack.url).post(f"{stack.url}/login/verify", data={"token": unused}, allow_redirects=False)
    assert refused.status_code == 410  # the unused sign-in link no longer works
    sessions, links = contact_state(stack, made["contact_id"])
    assert all(revoked is not None for _, revoked in sessions)
    assert all(used is not None or expires is not None for _, expires, used in links)

    bad = requests.post(f"{stack.url}/not-me", data={"token": "not-a-token"}, timeout=10)
    assert bad.status_code in (400, 403)  # a forged token (or no CSRF token) is refused, changing nothing


def test_session_webhooks_carry_no_ip_or_user_agent_unless_the_workspace_opts_in(stack):
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM workspaces WHERE name = 'Acme Studio'")
        workspace_id = cur.fetchone()[0]
    api = Api(stack.url, portalctl(stack, "key", "create", "--workspace", workspace_id, "--name", "devices")["key"])
    email = f"hooks-{uuid.uuid4().hex[:6]}@example.org"
    made = new_portal_client(stack, "Hooked Ltd", email)
    with Receiver() as receiver:
        created = api(
            "POST", "/webhooks", {"url": receiver.url("/sessions"), "event_types": ["session.*"]}, expect=201
        ).json()
        receiver.secrets["/sessions"] = created["secret"]
        try:

            def started() -> list[dict]:
                events = [json.loads(r["body"]) for r in receiver.received if r["verified"]]
                return [
                    e
                    for e in events
                    if e["type"] == "session.started" and e["data"]["contact_id"] == made["contact_id"]
                ]

            signed_in(stack, email, LAPTOP)
            wait_until(lambda: len(started()) == 1, timeout=30, what="the session.started webhook")
            [plain] = started()
            assert "ip" not in plain["data"] and "user_agent" not in plain["data"]
            assert (plain["data"]["browser"], plain["data"]["os"]) == ("Chrome", "Linux")

            api("PATCH", "/workspace", {"settings": {"webhooks_include_device_details": True}}, expect=200)
            wait_until(lambda: _documents_knows_opt_in(stack, workspace_id), timeout=30, what="documents' copy")
            signed_in(stack, email, PHONE)
            wait_until(lambda: len(started()) == 2, timeout=30, what="the second session.started webhook")
            detailed = started()[1]
            assert (detailed["data"]["ip"], detailed["data"]["user_agent"]) == ("127.0.0.1", PHONE)
        finally:
            api("PATCH", "/workspace", {"settings": {"webhooks_include_device_details": False}}, expect=200)
            api("DELETE", f"/webhooks/{created['id']}", expect=204)


def _documents_knows_opt_in(stack, workspace_id: str) -> bool:
    with psycopg2.connect(stack.databases["documents"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT branding FROM workspaces WHERE id = %s", (workspace_id,))
        row = cur.fetchone()
    return bool(row) and row[0].get("webhook_device_details") is True


def test_document_links_are_named_by_number_and_an_archived_invoice_is_not_linked(stack):
    email = f"numbers-{uuid.uuid4().hex[:6]}@example.org"
    made = new_portal_client(stack, "Numbered Ltd", email, invoices=2, quotes=1)
    kept, archived = made["invoices"]
    [quote] = made["quotes"]
    for document in (kept, archived, quote):  # each email carries a one-document link
        stack.outbox.wait_for(email, subject=document["number"], timeout=30)
    with services_rpc(stack, made["workspace_id"]) as rpc:
        rpc.billing.archive_invoice(made["workspace_id"], archived["id"])
    laptop = signed_in(stack, email, LAPTOP)

    page = laptop.get(f"{stack.url}/profile/sessions")
    assert page.status_code == 200
    assert f'<a href="/invoices/{kept["id"]}">Invoice {kept["number"]}</a>' in page.text
    assert f'<a href="/quotes/{quote["id"]}">Quote {quote["number"]}</a>' in page.text
    assert f"Invoice {archived['number']} <span" in page.text and "(no longer available)" in page.text
    assert f'href="/invoices/{archived["id"]}"' not in page.text
    # what is linked opens; what is not would have been a page that is not there
    assert laptop.get(f"{stack.url}/invoices/{kept['id']}").status_code == 200
    assert laptop.get(f"{stack.url}/quotes/{quote['id']}").status_code == 200
    assert laptop.get(f"{stack.url}/invoices/{archived['id']}").status_code == 404

    named = {
        link["document_id"]: (link["number"], link["available"]) for link in listed(stack, laptop)["document_links"]
    }
    assert named == {
        kept["id"]: (kept["number"], True),
        archived["id"]: (archived["number"], False),
        quote["id"]: (quote["number"], True),
    }
    with services_rpc(stack, made["workspace_id"]) as rpc:  # back in the portal: linked again
        rpc.billing.archive_invoice(made["workspace_id"], archived["id"], archived=False)
    again = laptop.get(f"{stack.url}/profile/sessions").text
    assert f'<a href="/invoices/{archived["id"]}">Invoice {archived["number"]}</a>' in again
    assert "(no longer available)" not in again

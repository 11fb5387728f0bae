"""Quotes in the portal: filters, accepting with a confirmation step, declining with a reason,
and no second decision."""

import re

import psycopg2
import pytest

from tests.conftest import services_rpc, sign_in

pytestmark = pytest.mark.e2e


def quote_links(html: str) -> list[str]:
    return re.findall(r'<a href="/quotes/([0-9a-f-]{36})">', html)


def test_quote_filters_accept_and_decline(stack):
    demo = sign_in(stack, "demo@example.com")
    counts = {
        status: len(quote_links(demo.get(f"{stack.url}/quotes", params={"status": status}).text))
        for status in ("all", "pending", "accepted", "rejected", "expired")
    }
    assert counts == {"all": 4, "pending": 1, "accepted": 1, "rejected": 1, "expired": 1}  # the draft never shows
    [pending] = quote_links(demo.get(f"{stack.url}/quotes", params={"status": "pending"}).text)

    step_one = demo.post(f"{stack.url}/quotes/{pending}/accept", data={"signature_name": "Dana Demo"})
    assert step_one.status_code == 200 and "Confirm acceptance" in step_one.text
    assert "pending" in demo.get(f"{stack.url}/quotes/{pending}").text  # nothing accepted yet
    done = demo.post(
        f"{stack.url}/quotes/{pending}/accept", data={"signature_name": "Dana Demo", "confirmed": "yes", "version": "1"}
    )
    assert done.status_code == 200 and "Dana Demo" in done.text and "Confirm acceptance" not in done.text
    again = demo.post(f"{stack.url}/quotes/{pending}/reject", data={"reason": "changed my mind", "version": "1"})
    assert again.status_code == 409 and "This quote is no longer open" in again.text
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT status, signature_name, accepted_by, workspace_id, client_id FROM quotes WHERE id = %s", (pending,)
        )
        status, signature, by, workspace_id, client_id = cur.fetchone()
    assert (status, signature, by) == ("accepted", "Dana Demo", "demo@example.com")

    with services_rpc(stack, workspace_id, timeout=20) as rpc:
        fresh = rpc.billing.create_quote(
            workspace_id,
            {"client_id": client_id, "send": True, "lines": [{"description": "Second idea", "unit_price": 5000}]},
        )
    declined = demo.post(
        f"{stack.url}/quotes/{fresh['id']}/reject", data={"reason": "Not this quarter", "version": "1"}
    )
    assert declined.status_code == 200 and "Not this quarter" in declined.text
    assert demo.get(f"{stack.url}/quotes/{fresh['id']}/pdf").content.startswith(b"%PDF-")


def test_another_clients_quote_is_404(stack):
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT q.id FROM quotes q JOIN clients c ON c.id = q.client_id WHERE c.name = 'Other Corp'")
        [other] = [row[0] for row in cur.fetchall()]
    demo = sign_in(stack, "demo@example.com")
    for method, path in (
        ("GET", f"/quotes/{other}"),
        ("POST", f"/quotes/{other}/reject"),
        ("POST", f"/quotes/{other}/accept"),
    ):
        response = demo.request(
            method, stack.url + path, data={"signature_name": "x", "confirmed": "yes", "version": "1"}
        )
        assert response.status_code == 404 and "Secret phase two" not in response.text

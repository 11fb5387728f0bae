"""The portal's invoice pages over HTTP as the demo client: filters, search, detail, comments,
forwarding, and nothing of anyone else's."""

import re
import time
from datetime import timedelta
from urllib.parse import quote, unquote, urlparse

import psycopg2
import pytest
import requests

from chassis import signing
from chassis.clock import utcnow
from deploy.devstack import management_url, wait_for
from tests.conftest import free_port, new_portal_client, services_rpc, sign_in
from tests.e2e.test_observability import sample, scrape
from tests.integration.test_services import wait_until

pytestmark = pytest.mark.e2e


def numbers(html: str) -> list[str]:
    return re.findall(r'<a href="/invoices/[0-9a-f-]+">([A-Z]+-\d{4}-\d{5})</a>', html)


@pytest.fixture(scope="module")
def demo(stack):
    return sign_in(stack, "demo@example.com")


def test_filters_search_and_sort(stack, demo):
    everything = numbers(demo.get(f"{stack.url}/invoices").text)
    assert len(everything) == 7  # sent, viewed, partial, overdue, paid, void, retainer; no draft, no archived
    overdue = numbers(demo.get(f"{stack.url}/invoices", params={"status": "overdue"}).text)
    paid = numbers(demo.get(f"{stack.url}/invoices", params={"status": "paid"}).text)
    unpaid = numbers(demo.get(f"{stack.url}/invoices", params={"status": "unpaid"}).text)
    partial = numbers(demo.get(f"{stack.url}/invoices", params={"status": "partially_paid"}).text)
    assert len(overdue) == 1 and set(overdue) <= set(unpaid) and set(partial) <= set(unpaid)
    assert len(paid) == 2 and not set(paid) & set(unpaid)  # the brand workshop and the retainer
    by_amount = numbers(demo.get(f"{stack.url}/invoices", params={"sort": "-amount"}).text)
    assert sorted(by_amount) == sorted(everything) and by_amount != everything
    assert numbers(demo.get(f"{stack.url}/invoices", params={"q": overdue[0][-3:]}).text) == overdue
    empty = demo.get(f"{stack.url}/invoices", params={"q": "no-such-number"})
    assert "No invoices here" in empty.text
    assert demo.get(f"{stack.url}/invoices", params={"status": "bogus"}).status_code == 400


def test_detail_comment_and_forward(stack, demo):
    listing = demo.get(f"{stack.url}/invoices", params={"status": "overdue"}).text
    invoice_id = re.search(r'href="/invoices/([0-9a-f-]{36})"', listing).group(1)
    page = demo.get(f"{stack.url}/invoices/{invoice_id}")
    assert page.status_code == 200 and "Photography day rate" in page.text
    assert re.search(r'data-testid="balance">\$850\.00<', page.text)  # 900.00 less a 50.00 credit
    assert "Could you add our PO number 4471" in page.text  # the seeded thread, both sides
    nonce = re.search(r'/comments">.*?name="nonce" value="([0-9a-f]{32})"', page.text, re.S).group(1)
    for _ in range(2):  # a double submit of the same form posts once
        posted = demo.post(
            f"{stack.url}/invoices/{invoice_id}/comments", data={"body": "Paying on Friday.", "nonce": nonce}
        )
    assert posted.status_code == 200 and posted.text.count("Paying on Friday.") == 1
    before = stack.outbox.count("books@example.org")
    forwarded = demo.post(
        f"{stack.url}/invoices/{invoice_id}/forward", data={"to": "books@example.org", "note": "For Q4"}
    )
    assert forwarded.status_code == 200 and "on its way to books@example.org" in forwarded.text
    [message] = stack.outbox.wait_for("books@example.org", before + 1)[-1:]
    assert "Dana Demo forwarded you invoice" in message["Subject"]
    assert [p.get_filename() for p in message.iter_attachments()][0].endswith(".pdf")
    assert demo.post(f"{stack.url}/invoices/{invoice_id}/forward", data={"to": "nope"}).status_code == 400


def test_other_clients_and_hidden_invoices_are_404(stack, demo):
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.id FROM invoices i JOIN clients c ON c.id = i.client_id "
            "WHERE c.name <> 'Demo Client Ltd' OR i.status = 'draft' OR i.archived_at IS NOT NULL"
        )
        hidden = [row[0] for row in cur.fetchall()]
    assert hidden
    for invoice_id in hidden:
        for method, path, data in (
            ("GET", f"/invoices/{invoice_id}", None),
            ("POST", f"/invoices/{invoice_id}/comments", {"body": "hi"}),
            ("POST", f"/invoices/{invoice_id}/forward", {"to": "x@example.org"}),
        ):
            response = demo.request(method, stack.url + path, data=data, allow_redirects=False)
            assert response.status_code == 404, (method, path)
            assert "Secret project" not in response.text


def downloads_in_the_timeline(stack, invoice_id: str) -> int:
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM activities WHERE kind = 'document.downloaded' AND data->>'document_id' = %s",
            (invoice_id,),
        )
        return cur.fetchone()[0]


def demo_open_invoice(stack) -> tuple[str, str]:
    """(id, workspace id) of the demo client's first invoice still to pay."""
    with psycopg2.connect(stack.databases["billing"]) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT i.id, i.workspace_id FROM invoices i JOIN contacts c ON c.client_id = i.client_id "
            "WHERE c.email = 'demo@example.com' AND i.status IN ('sent', 'viewed', 'partially_paid') "
            "ORDER BY i.number LIMIT 1"
        )
        return cur.fetchone()


def billing_asked(stack) -> float:
    """How often the gateway has asked billing for an invoice (its own /metrics)."""
    return sample(
        scrape(stack.url),
        "portal_gateway_rpc_duration_seconds_count",
        service="billing",
        method="get_invoice",
        outcome="ok",
    )


def settled_downloads(stack, invoice_id: str) -> int:
    """The timeline's downloads of the invoice, once announcements on their way have landed: the
    count held still for a second."""
    seen = [downloads_in_the_timeline(stack, invoice_id)]

    def still() -> bool:
        time.sleep(1.0)
        seen.append(downloads_in_the_timeline(stack, invoice_id))
        return seen[-1] == seen[-2]

    wait_for(still, 20, "the announced downloads to settle")
    return seen[-1]


def test_a_clients_unchanged_pdf_is_fetched_again_without_billing_until_the_client_changes(stack, demo):
    invoice_id, _ = demo_open_invoice(stack)
    url = f"{stack.url}/invoices/{invoice_id}/pdf"
    announced = downloads_in_the_timeline(stack, invoice_id)
    first = demo.get(url)  # the long way: billing, then documents, which records the render as the client's
    assert first.status_code == 200 and first.content.startswith(b"%PDF-")
    assert first.headers["Content-Length"] == str(len(first.content))
    wait_for(lambda: downloads_in_the_timeline(stack, invoice_id) > announced, 15, "the download announced")

    def fetch() -> tuple[requests.Response, bool]:
        """A download, and whether documents served it alone (the gateway did not ask billing)."""
        asked = billing_asked(stack)
        answer = demo.get(url)
        assert answer.status_code == 200 and answer.content.startswith(b"%PDF-")
        return answer, billing_asked(stack) == asked

    # an event about the demo client (from an earlier test, or a timer's) may come at any time: then
    # the long way records the render again, and the fetches after it are served from documents
    def served_alone_twice_and_not_announced() -> bool:
        before = settled_downloads(stack, invoice_id)
        (again, alone), (once_more, still_alone) = fetch(), fetch()
        asked = billing_asked(stack)
        not_modified = demo.get(url, headers={"If-None-Match": again.headers["ETag"]})
        if not (alone and still_alone and billing_asked(stack) == asked):
            return False
        assert once_more.content == again.content and once_more.headers["ETag"] == again.headers["ETag"]
        assert again.headers["Content-Type"] == "application/pdf"
        assert again.headers["Content-Length"] == str(len(again.content))
        assert 'filename="' in again.headers["Content-Disposition"]
        assert again.headers["Cache-Control"] == "private, max-age=0, must-revalidate"
        assert not_modified.status_code == 304 and not_modified.headers["ETag"] == again.headers["ETag"]
        # the same unchanged document again within minutes: no second download in the timeline
        assert settled_downloads(stack, invoice_id) == before
        return True

    wait_for(served_alone_twice_and_not_announced, 60, "fetches served by documents alone")
    before = settled_downloads(stack, invoice_id)

    # the client comments on the invoice: billing's event reaches documents, and the next fetch goes
    # through billing again (the comment does not change the PDF)
    page = demo.get(f"{stack.url}/invoices/{invoice_id}").text
    nonce = re.search(r'/comments">.*?name="nonce" value="([0-9a-f]{32})"', page, re.S).group(1)
    posted = demo.post(f"{stack.url}/invoices/{invoice_id}/comments", data={"body": "Got it.", "nonce": nonce})
    assert posted.status_code == 200
    wait_for(lambda: not fetch()[1], 15, "billing asked again once the client changed")
    wait_for(lambda: downloads_in_the_timeline(stack, invoice_id) > before, 15, "the new download announced")


class Broker:
    """The stack's vhost as RabbitMQ's management API shows it (its figures a few seconds behind)."""

    def __init__(self, stack):
        parsed = urlparse(stack.env["AMQP_URI"])
        self.api = management_url(stack.env["AMQP_URI"])
        self.vhost = quote(unquote(parsed.path.lstrip("/")) or "/", safe="")
        self.auth = (parsed.username or "guest", parsed.password or "guest")

    def queues(self) -> list[dict]:
        answer = requests.get(f"{self.api}/api/queues/{self.vhost}", auth=self.auth, timeout=10)
        answer.raise_for_status()
        return answer.json()

    def change_feeds(self) -> dict[str, int]:
        """documents' queues of changes that a process reads now, each with how many events it was given."""
        return {
            queue["name"]: queue.get("message_stats", {}).get("deliver_get", 0)
            for queue in self.queues()
            if queue["name"].startswith("documents.changes.") and queue.get("consumers", 0) > 0
        }

    def close_connection_of(self, queue_name: str) -> None:
        """Close the connection that reads the queue, as a network fault would."""
        url = f"{self.api}/api/queues/{self.vhost}/{quote(queue_name, safe='')}"

        def owners() -> set[str]:
            queue = requests.get(url, auth=self.auth, timeout=10).json()
            return {consumer["channel_details"]["connection_name"] for consumer in queue["consumer_details"]}

        # the queue's list may count a consumer a few seconds before its details name the connection
        [owner] = wait_until(owners, 30, f"the management API to name the connection reading {queue_name}")
        answer = requests.delete(f"{self.api}/api/connections/{quote(owner, safe='')}", auth=self.auth, timeout=10)
        answer.raise_for_status()


def test_every_documents_process_hears_every_change_on_a_queue_of_its_own(stack):
    """Each documents process keeps its clients' current renders in its memory, next to the files: a
    change must reach every replica, not the one a competing queue would give it to. A second process
    gets a queue of its own, and a change billing makes reaches both; a queue lost with its broken
    connection is declared again on a new one."""
    broker = Broker(stack)
    wait_for(broker.change_feeds, 60, "the stack's documents process to read its queue of changes")
    before = broker.change_feeds()
    stack.start_service("documents", "documents-replica", http_address=f"127.0.0.1:{free_port()}")
    try:
        wait_for(lambda: len(broker.change_feeds()) == len(before) + 1, 60, "the new process's queue of changes")
        given = broker.change_feeds()
        new_portal_client(stack, "Feed Ltd", "feed@example.com", invoices=1)  # client.created, invoice.sent, ...
        wait_for(
            lambda: all(count > given[name] for name, count in broker.change_feeds().items()),
            60,
            "both processes to hear the new client's events",
        )
        [replicas] = set(given) - set(before)
        broker.close_connection_of(replicas)
        wait_for(
            lambda: len(broker.change_feeds()) == len(before) + 1 and replicas not in broker.change_feeds(),
            60,
            "the replica's queue of changes declared again on a new connection",
        )
        given = broker.change_feeds()
        new_portal_client(stack, "Feed Again Ltd", "feed-again@example.com", invoices=1)
        wait_for(
            lambda: all(count > given[name] for name, count in broker.change_feeds().items()),
            60,
            "both processes to hear the events again",
        )
    finally:
        stack.stop_process("documents-replica")


def test_a_cached_pdf_is_streamed_from_documents_by_a_reference_that_documents_alone_accepts(stack, demo):
    invoice_id, workspace_id = demo_open_invoice(stack)
    with services_rpc(stack, workspace_id) as rpc:
        invoice = rpc.billing.get_invoice(workspace_id, invoice_id)
        answer = rpc.documents.render_document("invoice", workspace_id, invoice, purpose="check", by_reference=True)
    assert "pdf" not in answer and answer["size"] > 1000
    documents = stack.http_url("documents")
    secret = stack.env.get("PDF_FETCH_SECRET", "dev-only-pdf-fetch-secret").encode()
    payload = signing.read(secret, answer["reference"])
    assert payload["u"] == documents  # this documents process: its cache holds the file
    fetched = requests.get(f"{documents}/pdf/{answer['reference']}", timeout=10)
    assert (
        fetched.status_code == 200 and fetched.content.startswith(b"%PDF-") and len(fetched.content) == answer["size"]
    )

    body, signature = answer["reference"].split(".")
    now = utcnow()
    refused = {
        "another secret": signing.issue(b"guessed", {"k": payload["k"], "u": documents}, now, timedelta(minutes=1)),
        "altered": f"{signing.issue(secret, {'k': 'ab' * 32, 'u': documents}, now, timedelta(minutes=1)).split('.')[0]}"
        f".{signature}",
        "expired": signing.issue(
            secret, {"k": payload["k"], "u": documents}, now - timedelta(minutes=2), timedelta(minutes=1)
        ),
    }
    for why, reference in refused.items():
        answer = requests.get(f"{documents}/pdf/{reference}", timeout=10)
        assert answer.status_code == 403 and b"%PDF" not in answer.content, why
    unknown = signing.issue(secret, {"k": "ab" * 32, "u": documents}, now, timedelta(minutes=1))
    assert requests.get(f"{documents}/pdf/{unknown}", timeout=10).status_code == 404

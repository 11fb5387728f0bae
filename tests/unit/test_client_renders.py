"""A client's cached PDFs fetched without asking billing: documents' read model of which renders are
current (services/documents/renders.py), the HTTP endpoint that serves them for a grant the gateway
signed, and the gateway's side (services/gateway/pdf_fetch.py, downloads.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import falcon
import falcon.testing
import pytest
from nameko.testing.services import worker_factory
from werkzeug.test import EnvironBuilder

from chassis import signing
from chassis.clock import utcnow
from chassis.events import envelope
from chassis.nameko_ext import DatabaseHandle
from clients.documents import CURRENT_PDF_GRANT, EVENTS
from services.documents import pdf as pdfmod
from services.documents import renders
from services.documents.service import BRANDING_TTL, CHANGES, ChangesFeed, DocumentsService, PdfFetch
from services.documents.storage import FileStorage
from services.gateway import pdf_fetch
from services.gateway.downloads import document_pdf, render_pdf, send_current_pdf
from services.gateway.rpc import ContractViolation

SECRET = b"unit-pdf-fetch-secret"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)  # 10:00 in New York
KEY = "ab" * 32
WS, CLIENT, OTHER = "ws-1", "client-1", "client-2"


@pytest.fixture
def docs_db(sqlite_engine):
    return DatabaseHandle(sqlite_engine("documents"))


def listening(since=NOW - timedelta(hours=1)):
    """A read model whose queue of changes has been read since `since`."""
    kept = renders.CurrentRenders()
    kept.listening(since)
    return kept


@pytest.fixture
def kept():
    return listening()


def record(kept, read_at=NOW, client=CLIENT, document="inv-1", timezone_name="America/New_York"):
    kept.record(
        workspace_id=WS,
        client_id=client,
        kind="invoice",
        document_id=document,
        cache_key=KEY,
        filename="INV-1.pdf",
        read_at=read_at,
        timezone=timezone_name,
    )


def changed(kept, at, client_id=CLIENT, workspace_id=WS):
    kept.changed(at, workspace_id, client_id)


def current(kept, now=NOW, client=CLIENT, kind="invoice", document="inv-1"):
    render = kept.current(now, WS, client, kind, document)
    return None if render is None else (render.cache_key, render.filename)


def test_a_render_is_current_until_anything_about_its_client_changes(kept):
    record(kept)
    assert current(kept) == (KEY, "INV-1.pdf")
    assert current(kept, client=OTHER) is None  # another client's fetch finds nothing of this one's
    assert current(kept, kind="quote") is None and current(kept, document="inv-2") is None
    changed(kept, NOW - timedelta(minutes=1))  # a change billing was asked after: already in the render
    assert current(kept) == (KEY, "INV-1.pdf")
    changed(kept, NOW + timedelta(seconds=30), client_id=OTHER)  # another client's payment
    assert current(kept) == (KEY, "INV-1.pdf")
    changed(kept, NOW + timedelta(seconds=30))  # this client's: the long way from now on
    assert current(kept, now=NOW + timedelta(seconds=31)) is None
    record(kept, read_at=NOW + timedelta(minutes=1))  # the long way recorded the render afresh
    assert current(kept, now=NOW + timedelta(minutes=1)) == (KEY, "INV-1.pdf")
    changed(kept, NOW + timedelta(minutes=2), client_id=None)  # naming no client: the whole workspace
    assert current(kept, now=NOW + timedelta(minutes=2)) is None


def test_a_change_that_came_while_the_render_was_on_its_way_is_not_missed(kept):
    # The gateway asked billing at NOW; a payment committed a moment later and its event reached
    # documents before the render was recorded. The render may show the invoice unpaid: never current.
    changed(kept, NOW + timedelta(milliseconds=300))
    record(kept, read_at=NOW)
    assert current(kept, now=NOW + timedelta(seconds=1)) is None
    # the margin covers the two machines' clocks: a change a few seconds "before" the read still counts
    changed(kept, NOW + timedelta(minutes=1) - renders.CLOCK_MARGIN + timedelta(seconds=1))
    record(kept, read_at=NOW + timedelta(minutes=1))
    assert current(kept, now=NOW + timedelta(minutes=1)) is None
    # an older change is not: only a later one does
    record(kept, read_at=NOW + timedelta(minutes=2))
    assert current(kept, now=NOW + timedelta(minutes=2)) == (KEY, "INV-1.pdf")
    changed(kept, NOW - timedelta(hours=1))  # arriving late, older than what is kept: kept as it was
    assert current(kept, now=NOW + timedelta(minutes=2)) == (KEY, "INV-1.pdf")


def test_a_render_is_current_for_ten_minutes_and_never_past_the_businesss_midnight(kept):
    record(kept)
    assert current(kept, now=NOW + renders.CURRENT_FOR - timedelta(seconds=1)) is not None
    assert current(kept, now=NOW + renders.CURRENT_FOR) is None
    late = datetime(2026, 11, 24, 4, 55, tzinfo=timezone.utc)  # 23:55 in New York
    record(kept, read_at=late)
    assert renders.valid_until(late, "America/New_York") == datetime(2026, 11, 24, 5, 0, tzinfo=timezone.utc)
    assert current(kept, now=late + timedelta(minutes=4)) is not None
    assert current(kept, now=late + timedelta(minutes=5)) is None  # a new day: it may be overdue now
    assert renders.valid_until(late, None) == late + renders.CURRENT_FOR  # UTC: midnight is further


def test_only_renders_of_data_read_while_the_queue_of_changes_was_there_are_served():
    kept = renders.CurrentRenders()
    record(kept)
    assert current(kept) is None  # the queue is not bound yet: a change could pass unheard
    kept.listening(NOW - timedelta(minutes=1))
    assert current(kept) == (KEY, "INV-1.pdf")
    kept.deaf()  # the connection broke: the queue went with it
    assert current(kept) is None
    kept.listening(NOW + timedelta(minutes=1))  # back: what was read before may have missed a change
    assert current(kept, now=NOW + timedelta(minutes=1)) is None
    record(kept, read_at=NOW + timedelta(minutes=1) + renders.CLOCK_MARGIN)
    assert current(kept, now=NOW + timedelta(minutes=2)) == (KEY, "INV-1.pdf")


def test_what_can_no_longer_matter_is_forgotten_and_a_kept_change_still_counts(kept):
    record(kept, document="old")
    changed(kept, NOW, client_id=OTHER)
    later = NOW + renders.CURRENT_FOR + renders.CLOCK_MARGIN + 2 * renders.PRUNE_EVERY
    record(kept, read_at=NOW + timedelta(minutes=3), document="inv-2")
    changed(kept, NOW + timedelta(minutes=4))  # this client changed after inv-2 was read
    kept.heard({"type": "invoice.sent", "workspace_id": WS, "data": {"client_id": "client-3"}}, later)
    assert ("ws-1", "client-1", "invoice", "old") not in kept._renders  # past its limit
    assert (WS, OTHER) not in kept._clients_changed  # older than any render still current was read
    assert (WS, CLIENT) in kept._clients_changed
    assert current(kept, now=NOW + timedelta(minutes=5), document="inv-2") is None


def test_an_event_names_its_client_or_else_the_whole_workspace(kept):
    record(kept)
    at = NOW + timedelta(seconds=30)
    kept.heard({"type": "client.updated", "workspace_id": WS, "data": {"id": OTHER, "name": "B"}}, at)
    assert current(kept, now=at) is not None  # a client's own events name it by its id: another one
    kept.heard({"type": "payment.succeeded", "workspace_id": WS, "data": {"client_id": CLIENT}}, at)
    assert current(kept, now=at) is None
    record(kept, read_at=at + timedelta(minutes=1))
    later = at + timedelta(minutes=1)
    kept.heard({"type": "invoice.sent", "workspace_id": "ws-2", "data": {"client_id": CLIENT}}, later)
    assert current(kept, now=later) is not None  # another workspace's client
    kept.heard({"type": "workspace.updated", "workspace_id": WS, "data": {"name": "Acme"}}, later)
    assert current(kept, now=later) is None
    for nothing in (None, "text", {"type": "x"}, {"type": "x", "workspace_id": None, "data": {"client_id": CLIENT}}):
        kept.heard(nothing, at + timedelta(minutes=2))  # nothing to go by: nothing changes


def documents(db, tmp_path, now):
    fetch = PdfFetch()
    fetch.secret, fetch.base_url = SECRET, "http://127.0.0.1:9104"
    storage = FileStorage(tmp_path / "cache")
    storage.put(KEY, b"%PDF-1.7 cached")
    renderer = pdfmod.Renderer(storage, concurrency=1)
    return worker_factory(
        DocumentsService,
        db=db,
        pdf_fetch=fetch,
        renderer=renderer,
        current_renders=listening(),
        clock=lambda: now[0],
    )


def grant(client=CLIENT, kind="invoice", document="inv-1", secret=SECRET, at=NOW, **extra):
    wanted = {"grant": CURRENT_PDF_GRANT, "w": WS, "c": client, "kind": kind, "d": document, **extra}
    return signing.issue(secret, wanted, at, pdf_fetch.GRANT_TTL)


def test_documents_serves_a_current_render_only_for_a_grant_the_gateway_signed(docs_db, tmp_path):
    now = [NOW]
    service = documents(docs_db, tmp_path, now)

    def get(reference):
        answer = service.http_current_pdf(EnvironBuilder(path=f"/current/{reference}").get_request(), reference)
        if isinstance(answer, tuple):
            return answer[0], answer[2].encode(), {}
        return answer.status_code, b"".join(answer.response), answer.headers

    assert get(grant())[0] == 404  # never rendered for the client: the gateway goes through billing
    record(service.current_renders, read_at=NOW - timedelta(seconds=20))
    status, body, headers = get(grant())
    assert (status, body) == (200, b"%PDF-1.7 cached")
    assert headers["ETag"] == f'"{KEY[:32]}"' and headers["X-Filename"] == "INV-1.pdf"
    request = EnvironBuilder(path="/current/x", headers={"If-None-Match": f'"{KEY[:32]}"'}).get_request()
    status, headers, body = service.http_current_pdf(request, grant())  # the client has it: no file opened
    assert (status, headers["ETag"], body) == (304, f'"{KEY[:32]}"', "")
    assert get(grant(client=OTHER))[0] == 404  # signed for another client: not this one's render
    assert get(grant(secret=b"guessed"))[:2] == (403, b"refused: forged\n")
    assert get(grant(at=NOW - pdf_fetch.GRANT_TTL))[:2] == (403, b"refused: expired\n")
    assert get(grant(kind="statement"))[0] == 403  # a kind without current renders
    assert get(grant(client=""))[0] == 403
    file_reference = service.pdf_fetch.reference(KEY, NOW)  # documents' own, for GET /pdf/: not a grant
    assert get(file_reference)[0] == 403
    assert (
        get(
            signing.issue(
                SECRET,
                {"grant": "something else", "w": WS, "c": CLIENT, "kind": "invoice", "d": "inv-1"},
                NOW,
                timedelta(minutes=1),
            )
        )[0]
        == 403
    )  # noqa: E501
    changed(service.current_renders, NOW - timedelta(seconds=1))  # the client paid: the long way again
    assert get(grant())[0] == 404
    record(service.current_renders, read_at=NOW, document="gone")  # recorded, but no longer in the cache
    assert get(grant(document="gone"))[0] == 404
    service.pdf_fetch.secret = None  # no secret configured here: nothing is served this way
    assert get(grant())[0] == 403


def test_render_document_records_a_clients_download_and_announces_it(docs_db, tmp_path):
    now = [NOW]
    service = documents(docs_db, tmp_path, now)
    service.renderer.ensure = lambda kind, context: (KEY, 15, False)  # in the cache already
    service.renderer.get = lambda kind, context: (b"%PDF-1.7 cached", KEY, False)
    service._branding_cache[WS] = {"timezone": "America/New_York"}
    invoice = {"id": "inv-1", "number": "INV-1", "client_id": CLIENT, "client": {}}
    later = (NOW + timedelta(hours=1)).isoformat()  # the caller's clock ahead of ours: ours is taken
    answer = service.render_document("invoice", WS, invoice, by_reference=True, for_client=CLIENT, read_at=later)
    assert "cache_key" not in answer and answer["etag"] == KEY[:32]
    assert current(service.current_renders, now=NOW + timedelta(seconds=1)) == (KEY, "INV-1.pdf")
    with docs_db.engine.connect() as conn:
        announced = conn.exec_driver_sql("SELECT event_type FROM outbox").scalars().all()
    assert announced == ["document.downloaded"]
    # billing's data for another client (a bad caller) is not recorded as this one's
    service.render_document(
        "invoice", WS, {**invoice, "id": "inv-2"}, by_reference=True, for_client=OTHER, read_at=later
    )
    assert current(service.current_renders, client=OTHER, document="inv-2", now=NOW + timedelta(seconds=1)) is None
    # a render for the business (no download), or without the read's time, is not recorded
    service.render_document("invoice", WS, {**invoice, "id": "inv-3"}, purpose="fallback", for_client=CLIENT)
    service.render_document("invoice", WS, {**invoice, "id": "inv-4"}, by_reference=True, for_client=CLIENT)
    assert current(service.current_renders, document="inv-3") is None
    assert current(service.current_renders, document="inv-4") is None


class _Delivered:
    """What kombu hands the feed's callback beside the body: where the event was published to."""

    def __init__(self, event_type):
        self.delivery_info = {"routing_key": event_type}


def heard(feed, event):
    feed.heard(event, _Delivered(event["type"]))


def test_billings_and_payments_events_end_a_clients_current_renders_in_every_process():
    """Each process reads a queue of its own bound to each public event of billing's and payments'
    (auth's are not: signing in changes no document); heard() is what each event in it does."""
    bound = {(b.exchange.name, b.routing_key) for b in CHANGES}
    assert bound == {(f"{source}.events", t) for source in ("billing", "payments") for t in EVENTS[source]}
    assert ("billing.events", "invoice.paid") in bound and ("payments.events", "payment.succeeded") in bound
    now = [NOW + timedelta(seconds=30)]
    feed = ChangesFeed()
    feed.renders, feed.clock = listening(), lambda: now[0]
    kept = feed.renders
    record(kept)
    heard(feed, envelope("client.updated", WS, {"id": OTHER, "name": "B"}, occurred_at=now[0]))
    assert current(kept, now=now[0]) is not None  # a client's own events name it by its id: another one
    heard(feed, envelope("client.updated", WS, {"id": CLIENT, "name": "A"}, occurred_at=now[0]))
    assert current(kept, now=now[0]) is None
    now[0] += timedelta(minutes=1)
    record(kept, read_at=now[0] - timedelta(seconds=10))
    heard(feed, envelope("payment.succeeded", WS, {"client_id": CLIENT}, occurred_at=now[0]))
    assert current(kept, now=now[0]) is None  # payments' events too
    now[0] += timedelta(minutes=1)
    record(kept, read_at=now[0] - timedelta(seconds=10))
    branding = {"id": WS, "name": "Acme", "version": 2, "settings": {}}
    heard(feed, envelope("workspace.updated", WS, branding, occurred_at=now[0]))
    assert current(kept, now=now[0]) is None  # the branding: every client's renders
    # a render made while a replica may still hold the old branding (its few seconds' cache) is not current
    record(kept, read_at=now[0] + BRANDING_TTL)
    assert current(kept, now=now[0] + BRANDING_TTL) is None
    record(kept, read_at=now[0] + BRANDING_TTL + renders.CLOCK_MARGIN + timedelta(seconds=1))
    assert current(kept, now=now[0] + BRANDING_TTL + timedelta(seconds=15)) is not None


def test_the_change_times_older_processes_read_are_still_kept_while_an_upgrade_rolls_out(docs_db, tmp_path):
    now = [NOW]
    service = documents(docs_db, tmp_path, now)
    service.webhooks_session_started(envelope("session.started", WS, {"client_id": CLIENT}, occurred_at=now[0]))
    service.webhooks_client_updated(envelope("client.updated", WS, {"id": OTHER, "name": "B"}, occurred_at=now[0]))
    now[0] += timedelta(seconds=1)
    service.webhooks_payment_succeeded(envelope("payment.succeeded", WS, {"client_id": CLIENT}, occurred_at=now[0]))
    branding = {"id": WS, "name": "Acme", "version": 2, "settings": {}}
    service.on_workspace_updated(envelope("workspace.updated", WS, branding, occurred_at=now[0]))
    with docs_db.engine.connect() as conn:
        clients = dict(conn.exec_driver_sql("SELECT client_id, changed_at FROM client_changes").all())
        workspaces = conn.exec_driver_sql("SELECT workspace_id FROM workspace_changes").scalars().all()
    assert set(clients) == {OTHER, CLIENT}  # auth's events are not about documents
    assert workspaces == [WS]


class _Upstream:
    """What the fetcher's GET answers with, for the gateway's side without a documents process."""

    def __init__(self, status, body=b"%PDF-1.7 cached", headers=None):
        self.status, self.body, self.closed = status, body, False
        self.headers = headers or {}
        self.length = len(body)

    def header(self, name):
        return self.headers.get(name)

    def read(self, size):
        body, self.body = self.body, b""
        return body

    def discard(self):
        self.body = b""

    def close(self):
        self.closed = True


def gateway_app(fetcher):
    app = falcon.App()

    class Pdf:
        def on_get(self, req, resp):
            session = {"workspace_id": WS, "client_id": CLIENT}
            if not send_current_pdf(req, resp, fetcher, "invoice", session, "inv-1"):
                resp.status, resp.text = 299, "the long way"

    app.add_route("/invoices/inv-1/pdf", Pdf())
    return falcon.testing.TestClient(app)


def test_the_gateway_streams_a_current_render_or_goes_the_long_way(monkeypatch):
    fetcher = pdf_fetch.PdfFetcher(SECRET, documents_url="http://documents:9100/", clock=utcnow)
    asked = []

    def answer_with(upstream):
        def get(url, headers=None, timeouts=None):
            asked.append((url, headers))
            return upstream

        monkeypatch.setattr(fetcher, "_get", get)

    ok = _Upstream(200, headers={"ETag": '"abc"', "X-Filename": "INV-1.pdf", "Content-Length": "15"})
    answer_with(ok)
    got = gateway_app(fetcher).simulate_get("/invoices/inv-1/pdf")
    assert got.status_code == 200 and got.content == b"%PDF-1.7 cached"
    assert got.headers["etag"] == '"abc"' and 'filename="INV-1.pdf"' in got.headers["content-disposition"]
    assert got.headers["cache-control"] == "private, max-age=0, must-revalidate"
    assert not ok.closed  # read to the end: the connection is kept for the next fetch
    wanted = signing.check(SECRET, asked[-1][0].rsplit("/", 1)[1], utcnow())
    assert asked[-1][0].startswith("http://documents:9100/current/")
    assert {k: wanted[k] for k in ("grant", "w", "c", "kind", "d")} == {
        "grant": "client_pdf",
        "w": WS,
        "c": CLIENT,
        "kind": "invoice",
        "d": "inv-1",
    }
    answer_with(_Upstream(304, b"", headers={"ETag": '"abc"'}))
    not_modified = gateway_app(fetcher).simulate_get("/invoices/inv-1/pdf", headers={"If-None-Match": '"abc"'})
    assert not_modified.status_code == 304 and not_modified.headers["etag"] == '"abc"'
    assert asked[-1][1] == {"If-None-Match": '"abc"'}  # documents decides, without opening the file
    for refused in (404, 403, 503):
        answer_with(_Upstream(refused, b"no"))
        assert gateway_app(fetcher).simulate_get("/invoices/inv-1/pdf").status_code == 299
    # without DOCUMENTS_URL, or without a secret, documents is not asked at all
    for off in (
        pdf_fetch.PdfFetcher(SECRET, clock=utcnow),
        pdf_fetch.PdfFetcher(None, documents_url="http://documents:9100", clock=utcnow),
    ):
        assert off.current("invoice", WS, CLIENT, "inv-1") is None
    assert fetcher.current("statement", WS, CLIENT, "") is None


def test_the_gateway_goes_the_long_way_when_documents_does_not_answer():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fetcher = pdf_fetch.PdfFetcher(SECRET, documents_url=f"http://127.0.0.1:{port}", clock=utcnow)
    assert fetcher.current("invoice", WS, CLIENT, "inv-1") is None


DOCUMENTS_STAND_IN = """
import http.server, sys

class Documents(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        found = self.path.startswith("/current/")
        body = b"%PDF" + b"x" * 300000 if found else b"not current here"
        self.send_response(200 if found else 404)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"abc"')
        self.end_headers()
        try:
            self.wfile.write(body)
        except ConnectionError:
            pass
        if self.path == "/idle-too-long":  # closed after the answer without saying so, as an idle timeout does
            self.close_connection = True

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Documents)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_the_gateways_connections_to_documents_are_reused_unless_a_fetch_was_left_half_read():
    """With a real HTTP server (its own process): a body read to its end, or a refusal, leaves its
    keep-alive connection for the thread's next fetch; a client that left mid-PDF gets its connection
    closed, and one documents closed while it was idle is replaced without the fetch failing."""
    import subprocess
    import sys

    server = subprocess.Popen([sys.executable, "-c", DOCUMENTS_STAND_IN], stdout=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        fetcher = pdf_fetch.PdfFetcher(SECRET, documents_url=base, clock=utcnow)

        def kept() -> int | None:  # the local port of this thread's open connection to documents, if any
            [conn] = fetcher._connections.by_address.values()
            return None if conn.sock is None else conn.sock.getsockname()[1]

        whole = fetcher.current("invoice", WS, CLIENT, "inv-1")
        assert b"".join(whole.chunks).startswith(b"%PDF") and whole.etag == '"abc"'
        whole.chunks.close()
        first = kept()
        assert first is not None
        refused = fetcher._get(f"{base}/elsewhere")
        assert refused.status == 404
        refused.discard()
        assert kept() == first
        half = fetcher.current("invoice", WS, CLIENT, "inv-1")
        assert kept() == first  # the same connection served all three
        next(iter(half.chunks))
        half.chunks.close()  # the client went away mid-PDF
        assert kept() is None  # its socket is closed: the next fetch connects afresh
        again = fetcher.current("invoice", WS, CLIENT, "inv-1")
        assert b"".join(again.chunks).startswith(b"%PDF")
        again.chunks.close()
        second = kept()
        assert second not in (None, first)
        fetcher._get(f"{base}/idle-too-long").discard()  # documents closes it once answered
        time.sleep(0.2)
        after_idle = fetcher.current("invoice", WS, CLIENT, "inv-1")  # sent again, on a new connection
        assert after_idle is not None and b"".join(after_idle.chunks).startswith(b"%PDF")
        assert kept() not in (None, second)
        assert fetcher.current("quote", WS, CLIENT, "") is None  # nothing asked: no document named
    finally:
        server.kill()
        server.wait()


def test_a_documents_process_older_than_the_gateway_still_renders_the_pdf():
    """While an upgrade rolls out, an older documents refuses the arguments it does not know: the
    gateway asks again without them (the PDF, not recorded as the client's)."""
    calls = []

    def call(service, method, *args, **kwargs):
        calls.append(kwargs)
        if "for_client" in kwargs:
            raise ContractViolation("documents.render_document: unexpected keyword argument 'for_client'")
        return {"etag": "abc", "reference": "ref", "filename": "INV-1.pdf"}

    session = {"workspace_id": WS, "client_id": CLIENT}
    data = {"id": "inv-1", "client_id": CLIENT}
    answer = render_pdf(
        lambda *a, **k: data if a[0] == "billing" else call(*a, **k),
        "invoice",
        session,
        "inv-1",
        {},
        by_reference=True,
        read_at=NOW,
    )
    assert answer["reference"] == "ref"
    assert calls == [{"by_reference": True, "for_client": CLIENT, "read_at": NOW.isoformat()}, {"by_reference": True}]

    def refuses(service, method, *args, **kwargs):
        raise ContractViolation("documents.render_document: a bug")

    for recorded in ({}, {"for_client": CLIENT, "read_at": "x"}):  # a refusal not of the new arguments: a bug
        with pytest.raises(ContractViolation):
            document_pdf(refuses, "invoice", WS, data, by_reference=True, **recorded)

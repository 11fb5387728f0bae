"""The sessions and devices page's rules: devices from user agents, new-device notices, a contact ending
its own sessions and links (never another's), the "this wasn't me" link, and session events reaching
outbound webhooks without the device's IP and user agent unless the workspace opts in."""

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork, joined
from chassis.errors import Unauthorized
from chassis.events import OUTBOX
from clients.billing import DOCUMENT_NUMBERS_MAX
from services.auth import domain, handlers
from services.auth.tables import link_tokens, sessions
from services.documents import handlers as documents
from services.documents import webhooks
from services.gateway.revocations import RevocationList
from tests.unit.test_auth_handlers import KEYS, NOW, POLICY, committed, contact
from tests.unit.test_gateway import FORM, SESSION, WORKSPACE, client

CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36"
CHROME_LINUX_NEWER = CHROME_LINUX.replace("140.0.0.0", "141.0.0.0")
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


def test_a_user_agent_names_the_browser_and_the_os_by_family():
    assert domain.describe_device(CHROME_LINUX) == domain.Device("Chrome", "Linux")
    assert domain.describe_device(FIREFOX_WINDOWS) == domain.Device("Firefox", "Windows")
    assert domain.describe_device(None) == domain.Device(None, None)
    assert domain.describe_device("") == domain.Device(None, None)
    assert domain.describe_device("x" * 10_000) == domain.Device(None, None)  # unknown, and no error


def test_a_device_is_new_only_when_the_contact_signed_in_before_but_never_with_it():
    chrome, firefox = domain.Device("Chrome", "Linux"), domain.Device("Firefox", "Windows")
    assert domain.is_new_device(chrome, []) is False  # the first sign-in ever: nothing to compare
    assert domain.is_new_device(chrome, [chrome]) is False
    assert domain.is_new_device(firefox, [chrome]) is True


@pytest.fixture
def engine(sqlite_engine):
    engine = sqlite_engine("auth")
    with engine.begin() as conn, joined(conn) as uow:
        handlers.apply_contact(uow, contact(), NOW)
        handlers.apply_contact(uow, contact("c2", "other@example.com", client="cl2"), NOW)
    return engine


def sign_in(engine, email="demo@example.com", agent=CHROME_LINUX, ip="10.0.0.1", now=NOW) -> dict:
    with committed(engine) as uow:
        [link] = handlers.request_links(uow, email, ip, now, POLICY, agent)
    with committed(engine) as uow:
        return handlers.consume_link(uow, link["token"], None, now, ip, POLICY, KEYS, agent)


def run(engine, function, *args):
    with committed(engine) as uow:
        return function(uow, NOW, *args)


def test_the_sign_in_email_names_the_asking_device_and_carries_a_report_token(engine):
    with committed(engine) as uow:
        [link] = handlers.request_links(uow, "demo@example.com", "203.0.113.9", NOW, POLICY, FIREFOX_WINDOWS)
    assert (link["browser"], link["os"], link["ip"]) == ("Firefox", "Windows", "203.0.113.9")
    assert link["report_token"] and link["report_token"] != link["token"]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(link_tokens.c.report_hash)).scalar_one()
    assert stored == domain.hash_secret(link["report_token"])  # only its digest is kept


def test_a_sign_in_from_another_browser_and_os_is_a_new_device_and_says_so(engine):
    first = sign_in(engine)
    assert first["new_device"] is None
    assert sign_in(engine, agent=CHROME_LINUX_NEWER)["new_device"] is None  # a browser update is no new device
    notice = sign_in(engine, agent=FIREFOX_WINDOWS, ip="198.51.100.7")["new_device"]
    assert notice == {
        "email": "demo@example.com",
        "name": "Dana",
        "locale": None,
        "browser": "Firefox",
        "os": "Windows",
        "ip": "198.51.100.7",
    }
    with engine.connect() as conn:
        started = [
            json.loads(body)["data"]
            for body in conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "session.started"))
            .scalars()
            .all()
        ]
    assert [event["new_device"] for event in started] == [False, False, True]
    assert started[2]["ip"] == "198.51.100.7" and started[2]["user_agent"] == FIREFOX_WINDOWS


def test_the_list_shows_the_contacts_own_sessions_and_unused_links_with_the_current_one_marked(engine):
    laptop = sign_in(engine)
    phone = sign_in(engine, agent=FIREFOX_WINDOWS, ip="198.51.100.7")
    sign_in(engine, email="other@example.com")  # another client's contact: never listed
    with committed(engine) as uow:
        handlers.request_links(uow, "demo@example.com", "192.0.2.1", NOW, POLICY, FIREFOX_WINDOWS)  # unused
    listed = run(engine, handlers.list_devices, "c1", laptop["session_id"], POLICY)
    assert {(s["id"], s["current"], s["browser"], s["os"], s["ip"]) for s in listed["sessions"]} == {
        (laptop["session_id"], True, "Chrome", "Linux", "10.0.0.1"),
        (phone["session_id"], False, "Firefox", "Windows", "198.51.100.7"),
    }
    assert [(link["browser"], link["ip"]) for link in listed["sign_in_links"]] == [("Firefox", "192.0.2.1")]


def test_last_seen_is_what_the_gateways_reported(engine):
    session = sign_in(engine)
    seen = NOW + timedelta(minutes=3)
    with committed(engine) as uow:  # a gateway's batched report (services/gateway/sessions.py SeenReports)
        assert handlers.sessions_seen(uow, seen, {session["session_id"]: seen.isoformat()}) == 1
    with UnitOfWork(engine) as uow:
        [listed] = handlers.list_devices(uow, seen, "c1", session["session_id"], POLICY)["sessions"]
    assert (listed["started_at"], listed["last_seen_at"]) == (NOW.isoformat(), seen.isoformat())


def test_a_session_idle_past_its_limit_is_not_listed(engine):
    session = sign_in(engine)
    later = NOW + POLICY.session_idle + timedelta(seconds=1)
    with UnitOfWork(engine) as uow:
        assert handlers.list_devices(uow, later, "c1", session["session_id"], POLICY)["sessions"] == []


def test_a_contact_ends_its_own_session_but_never_another_contacts(engine):
    mine, theirs = sign_in(engine), sign_in(engine, email="other@example.com")
    assert run(engine, handlers.end_contact_session, "c1", theirs["session_id"], POLICY) == 0
    assert run(engine, handlers.end_contact_session, "c1", mine["session_id"], POLICY) == 1
    assert run(engine, handlers.end_contact_session, "c1", mine["session_id"], POLICY) == 0  # once
    with engine.connect() as conn:
        revoked = dict(conn.execute(sa.select(sessions.c.id, sessions.c.revoked_at)).all())
    assert revoked[int(theirs["session_id"])] is None and revoked[int(mine["session_id"])] == NOW
    with engine.connect() as conn:
        ended = [
            json.loads(b)["data"]
            for b in conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "session.ended")).scalars()
        ]
    assert [(e["session_id"], e["reason"]) for e in ended] == [(mine["session_id"], "ended_by_contact")]


def test_ending_all_others_keeps_only_the_asking_session(engine):
    here, there, elsewhere = sign_in(engine), sign_in(engine), sign_in(engine, agent=FIREFOX_WINDOWS)
    other_contact = sign_in(engine, email="other@example.com")
    assert run(engine, handlers.end_other_sessions, "c1", here["session_id"], POLICY) == 2
    listed = run(engine, handlers.list_devices, "c1", here["session_id"], POLICY)
    assert [s["id"] for s in listed["sessions"]] == [here["session_id"]]
    assert run(engine, handlers.list_devices, "c2", other_contact["session_id"], POLICY)["sessions"]
    assert {there["session_id"], elsewhere["session_id"]}.isdisjoint(s["id"] for s in listed["sessions"])


def test_an_ended_sign_in_link_no_longer_signs_in(engine):
    with committed(engine) as uow:
        [link] = handlers.request_links(uow, "demo@example.com", "10.0.0.1", NOW, POLICY, CHROME_LINUX)
    [listed] = run(engine, handlers.list_devices, "c1", None, POLICY)["sign_in_links"]
    assert run(engine, handlers.end_sign_in_link, "c2", listed["id"]) == 0  # not the other contact's to end
    assert run(engine, handlers.end_sign_in_link, "c1", listed["id"]) == 1
    with UnitOfWork(engine) as uow, pytest.raises(Unauthorized):
        handlers.consume_link(uow, link["token"], None, NOW, None, POLICY, KEYS)


def issue_document_link(engine, contact_id: str | None, client_id="cl1") -> dict:
    with committed(engine) as uow:
        return handlers.issue_document_link(
            uow, NOW, "ws1", client_id, "invoice", "inv-1", timedelta(days=60), contact_id=contact_id
        )


def test_a_document_link_emailed_to_the_contact_is_listed_and_can_be_turned_off(engine):
    link = issue_document_link(engine, "c1")
    issue_document_link(engine, "c2", "cl2")  # someone else's: not listed, not endable
    [listed] = run(engine, handlers.list_devices, "c1", None, POLICY)["document_links"]
    assert (listed["kind"], listed["document_id"]) == ("invoice", "inv-1")
    [theirs] = run(engine, handlers.list_devices, "c2", None, POLICY)["document_links"]
    assert run(engine, handlers.end_document_link, "c1", theirs["id"]) == 0
    assert run(engine, handlers.end_document_link, "c1", listed["id"]) == 1
    with UnitOfWork(engine) as uow, pytest.raises(Unauthorized, match="revoked"):
        handlers.resolve_document_link(uow, NOW, link["token"])


def test_the_report_link_shows_what_it_would_do_and_changes_nothing_until_posted(engine):
    laptop = sign_in(engine)
    issue_document_link(engine, "c1")
    with committed(engine) as uow:
        [link] = handlers.request_links(uow, "demo@example.com", "192.0.2.1", NOW, POLICY, FIREFOX_WINDOWS)
    before = run(engine, handlers.list_devices, "c1", laptop["session_id"], POLICY)

    assert run(engine, handlers.report_state, link["report_token"]) == {
        "state": "valid",
        "email": "demo@example.com",
        "locale": None,
        "workspace_id": "ws1",
    }
    assert run(engine, handlers.list_devices, "c1", laptop["session_id"], POLICY) == before  # nothing changed

    other = sign_in(engine, email="other@example.com")
    assert run(engine, handlers.report_not_me, link["report_token"], POLICY) == {
        "sessions": 1,
        "sign_in_links": 1,
        "document_links": 1,
    }
    after = run(engine, handlers.list_devices, "c1", laptop["session_id"], POLICY)
    assert after == {"sessions": [], "sign_in_links": [], "document_links": []}
    assert run(engine, handlers.list_devices, "c2", other["session_id"], POLICY)["sessions"]  # untouched
    with UnitOfWork(engine) as uow, pytest.raises(Unauthorized):
        handlers.consume_link(uow, link["token"], None, NOW, None, POLICY, KEYS)


@pytest.mark.parametrize("token", ["", "nope", "x" * 300])
def test_an_unknown_report_token_is_refused(engine, token):
    assert run(engine, handlers.report_state, token) == {"state": "unknown"}
    with pytest.raises(Unauthorized):
        run(engine, handlers.report_not_me, token, POLICY)


def test_a_report_link_stops_working_after_30_days(engine):
    with committed(engine) as uow:
        [link] = handlers.request_links(uow, "demo@example.com", "10.0.0.1", NOW, POLICY)
    with UnitOfWork(engine) as uow:
        assert handlers.report_state(uow, NOW + timedelta(days=31), link["report_token"]) == {"state": "unknown"}


# --- outbound webhooks --------------------------------------------------------------------------------


@pytest.fixture
def documents_engine(sqlite_engine):
    return sqlite_engine("documents")


def workspace(engine, settings: dict) -> None:
    with UnitOfWork(engine) as uow:
        documents.apply_workspace(uow, {"id": "ws1", "name": "Acme", "version": 1, "settings": settings}, NOW)
        uow.commit()


def started_event() -> dict:
    return {
        "id": "e1",
        "type": "session.started",
        "version": 1,
        "occurred_at": NOW.isoformat(),
        "workspace_id": "ws1",
        "data": {"session_id": "1", "contact_id": "c1", "client_id": "cl1", "ip": "10.0.0.1", "user_agent": "UA"},
    }


def delivered(engine) -> dict:
    with UnitOfWork(engine) as uow:
        webhooks.create_subscription(
            uow, NOW, "ws1", {"url": "https://hooks.example.com/x", "event_types": ["session.*"]}
        )
        assert webhooks.fan_out(uow, NOW, started_event()) == 1
        uow.commit()
    with engine.connect() as conn:
        return json.loads(conn.execute(sa.select(webhooks.webhook_deliveries.c.body)).scalar_one())


def test_session_webhooks_leave_out_ip_and_user_agent_by_default(documents_engine):
    workspace(documents_engine, {})
    data = delivered(documents_engine)["data"]
    assert "ip" not in data and "user_agent" not in data and data["contact_id"] == "c1"


def test_a_workspace_that_opts_in_gets_ip_and_user_agent_in_its_webhooks(documents_engine):
    workspace(documents_engine, {"webhooks_include_device_details": True})
    data = delivered(documents_engine)["data"]
    assert (data["ip"], data["user_agent"]) == ("10.0.0.1", "UA")


def test_a_workspace_documents_does_not_know_yet_gets_no_device_details(documents_engine):
    with UnitOfWork(documents_engine) as uow:
        assert "ip" not in webhooks.outbound(uow, started_event())["data"]


# --- the gateway ----------------------------------------------------------------------------------

DEVICES = {
    "sessions": [
        {
            "id": "s1",
            "current": True,
            "started_at": NOW.isoformat(),
            "last_seen_at": NOW.isoformat(),
            "browser": "Chrome",
            "os": "Linux",
            "ip": "10.0.0.1",
        },
        {
            "id": "s2",
            "current": False,
            "started_at": NOW.isoformat(),
            "last_seen_at": NOW.isoformat(),
            "browser": "Firefox",
            "os": "Windows",
            "ip": "198.51.100.7",
        },
    ],
    "sign_in_links": [],
    "document_links": [],
}
CLIENT = {"id": "cl1", "name": "Demo", "locale": "en_US", "timezone": "America/New_York", "contacts": []}


def test_the_page_lists_sessions_in_the_clients_time_zone_with_the_current_one_marked():
    c, rpc = client(
        {("auth", "list_devices"): DEVICES, ("billing", "get_client"): CLIENT, ("billing", "get_workspace"): WORKSPACE}
    )
    page = c.simulate_get("/profile/sessions", cookies=c.session_cookie)
    assert page.status_code == 200
    assert "Chrome on Linux" in page.text and "Firefox on Windows" in page.text and "198.51.100.7" in page.text
    assert 'data-session="s1" data-current="true"' in page.text
    assert "7:00:00" in page.text  # 12:00 UTC in New York
    [call] = [call for call in rpc.calls if call[1] == "list_devices"]
    assert call[2] == ("c1",) and call[4]["current_session_id"] == "s1"  # the credential's, never the request's


def test_ending_another_session_is_refused_by_this_worker_at_once():
    revocations = RevocationList(ready=True)
    c, rpc = client({("auth", "end_contact_session"): 1}, revocations=revocations)
    answer = c.simulate_post("/profile/sessions/s2/end", cookies=c.session_cookie, headers=FORM)
    assert answer.status_code == 303 and answer.headers["location"].endswith("/profile/sessions?done=session")
    assert [call[2] for call in rpc.calls if call[1] == "end_contact_session"] == [("c1", "s2")]
    assert revocations._sessions.keys() == {"s2"}


def test_ending_a_session_that_is_not_yours_or_over_is_a_404():
    c, _ = client({("auth", "end_contact_session"): 0})
    assert c.simulate_post("/profile/sessions/s9/end", cookies=c.session_cookie, headers=FORM).status_code == 404
    api = c.simulate_post("/api/portal/v1/sessions/s9/end", headers=c.bearer)
    assert api.status_code == 404 and api.headers["content-type"].startswith("application/problem+json")


def test_the_json_api_lists_and_ends_all_others():
    c, rpc = client({("auth", "list_devices"): DEVICES, ("auth", "end_other_sessions"): 1})
    assert c.simulate_get("/api/portal/v1/sessions", headers=c.bearer).json == DEVICES
    assert c.simulate_post("/api/portal/v1/sessions/end-others", headers=c.bearer).json == {"ended": 1}
    assert [call[2] for call in rpc.calls if call[1] == "end_other_sessions"] == [("c1", "s1")]


REPORT = {"state": "valid", "email": "demo@example.com", "locale": "de_DE", "workspace_id": "ws1"}


def test_the_not_me_link_get_only_asks_and_changes_nothing():
    c, rpc = client({("auth", "report_state"): REPORT, ("billing", "get_workspace"): WORKSPACE})
    page = c.simulate_get("/not-me", params={"token": "t" * 43})
    assert page.status_code == 200 and "demo@example.com" in page.text and 'action="/not-me"' in page.text
    assert "report_not_me" not in [call[1] for call in rpc.calls]


def test_the_not_me_post_ends_everything():
    c, rpc = client({("auth", "report_state"): REPORT, ("auth", "report_not_me"): {"sessions": 2}})
    page = c.simulate_post("/not-me", body=f"token={'t' * 43}", headers=FORM)
    assert page.status_code == 200 and 'data-testid="not-me-done"' in page.text
    assert [call[2] for call in rpc.calls if call[1] == "report_not_me"] == [("t" * 43,)]


def test_an_unknown_not_me_token_is_a_clear_page_that_changes_nothing():
    c, rpc = client({("auth", "report_state"): {"state": "unknown"}})
    assert c.simulate_get("/not-me", params={"token": "bad"}).status_code == 400
    assert c.simulate_post("/not-me", body="token=bad", headers=FORM).status_code == 400
    assert c.simulate_get("/not-me").status_code == 400
    assert "report_not_me" not in [call[1] for call in rpc.calls]


def document_link(link_id: str, kind: str, document_id: str) -> dict:
    return {
        "id": link_id,
        "kind": kind,
        "document_id": document_id,
        "sent_at": NOW.isoformat(),
        "expires_at": (NOW + timedelta(days=60)).isoformat(),
    }


WITH_DOCUMENTS = {
    **DEVICES,
    "document_links": [
        document_link("4", "invoice", "inv-open"),
        document_link("3", "invoice", "inv-archived"),
        document_link("2", "quote", "quo-1"),
        document_link("1", "invoice", "inv-open"),  # the same invoice emailed again: asked for once
        document_link("0", "invoice", "inv-unknown"),
    ],
}
NUMBERS = {
    "invoices": {
        "inv-open": {"number": "INV-2026-00042", "available": True},
        "inv-archived": {"number": "INV-2026-00007", "available": False},
    },
    "quotes": {"quo-1": {"number": "QUO-2026-00003", "available": True}},
}


def documents_page(locale: str | None = None):
    c, rpc = client(
        {
            ("auth", "list_devices"): WITH_DOCUMENTS,
            ("billing", "document_numbers"): NUMBERS,
            ("billing", "get_client"): CLIENT,
            ("billing", "get_workspace"): WORKSPACE,
        },
        session={**SESSION, **({"locale": locale} if locale else {})},
    )
    page = c.simulate_get("/profile/sessions", cookies=c.session_cookie)
    assert page.status_code == 200
    rows = {
        link: " ".join(re.sub(r"<[^>]+>", " ", html).split())
        for link, html in re.findall(r'<tr data-document-link="(\d+)">(.*?)</tr>', page.text, re.S)
    }
    return page.text, rows, rpc


def test_each_document_link_names_its_document_and_links_only_one_the_client_can_still_open():
    html, rows, rpc = documents_page()
    assert '<a href="/invoices/inv-open">Invoice INV-2026-00042</a>' in html
    assert '<a href="/quotes/quo-1">Quote QUO-2026-00003</a>' in html
    assert 'href="/invoices/inv-archived"' not in html and 'href="/invoices/inv-unknown"' not in html
    assert rows["3"].startswith("Invoice INV-2026-00007 (no longer available)")
    assert rows["0"].startswith("Invoice (no longer available)")  # billing names it as none of the client's
    assert all("Turn off link" in row for row in rows.values())  # each can still be turned off
    [call] = [call for call in rpc.calls if call[1] == "document_numbers"]
    # one call for the page, for the session's client, each document once
    assert call[2] == ("ws1", "cl1", ["inv-open", "inv-archived", "inv-unknown"], ["quo-1"])


def test_a_german_reader_reads_the_document_links_in_german():
    _, rows, _ = documents_page("de_DE")
    assert rows["4"].startswith("Rechnung INV-2026-00042")
    assert rows["3"].startswith("Rechnung INV-2026-00007 (nicht mehr verfügbar)")
    assert rows["2"].startswith("Angebot QUO-2026-00003")


def test_the_json_api_gives_each_document_links_number_and_whether_it_opens():
    c, rpc = client({("auth", "list_devices"): WITH_DOCUMENTS, ("billing", "document_numbers"): NUMBERS})
    listed = c.simulate_get("/api/portal/v1/sessions", headers=c.bearer).json["document_links"]
    assert [(link["id"], link["number"], link["available"]) for link in listed] == [
        ("4", "INV-2026-00042", True),
        ("3", "INV-2026-00007", False),
        ("2", "QUO-2026-00003", True),
        ("1", "INV-2026-00042", True),
        ("0", None, False),
    ]
    assert len([call for call in rpc.calls if call[1] == "document_numbers"]) == 1


def test_without_document_links_billing_is_not_asked_for_numbers():
    c, rpc = client({("auth", "list_devices"): DEVICES})
    assert c.simulate_get("/api/portal/v1/sessions", headers=c.bearer).json == DEVICES
    assert "document_numbers" not in [call[1] for call in rpc.calls]


def test_more_document_links_than_one_call_takes_are_named_in_batches():
    many = [document_link(str(i), "invoice", f"inv-{i}") for i in range(DOCUMENT_NUMBERS_MAX + 1)]

    def numbers(workspace_id, client_id, invoice_ids, quote_ids):
        assert len(invoice_ids) <= DOCUMENT_NUMBERS_MAX
        return {"invoices": {i: {"number": i.upper(), "available": True} for i in invoice_ids}, "quotes": {}}

    c, rpc = client(
        {("auth", "list_devices"): {**DEVICES, "document_links": many}, ("billing", "document_numbers"): numbers}
    )
    listed = c.simulate_get("/api/portal/v1/sessions", headers=c.bearer).json["document_links"]
    assert [link["number"] for link in listed] == [f"INV-{i}" for i in range(DOCUMENT_NUMBERS_MAX + 1)]
    assert len([call for call in rpc.calls if call[1] == "document_numbers"]) == 2

"""Quote revisions: the diff between versions and the version rules (plain Python), the handlers on an
embedded database (request changes, revise, accept or decline only the newest version), and the
gateway's answers to a decision on a replaced version."""

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa

from chassis.db import UnitOfWork
from chassis.errors import Conflict, Invalid, NotFound
from chassis.events import OUTBOX
from chassis.scope import ROLES
from services.billing import handlers as h
from services.billing import revisions
from tests.unit.test_gateway import FORM, client
from tests.unit.test_gateway_i18n import portal

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
LATER = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def line(description, quantity="1", unit_price=10000, **more):
    return {"description": description, "quantity": quantity, "unit_price": unit_price, **more}


def version(number, lines, n, total, **more):
    totals = {"subtotal": total, "discount_total": 0, "tax_total": 0, "total": total}
    return {"version": n, "number": number, "currency": "EUR", "lines": lines, **totals, **more}


# ---------------------------------------------------------------- the domain


def test_a_line_added_removed_and_changed_is_each_listed_once():
    before = [line("Design", "2", 5000), line("Hosting", "12", 1000), line("Support", "1", 3000)]
    after = [line("Design", "3", 5000), line("Support", "1", 3000), line("Training", "1", 8000)]
    changes = revisions.diff_lines(before, after)
    assert [(c["change"], (c["after"] or c["before"])["description"], c["fields"]) for c in changes] == [
        ("changed", "Design", ["quantity"]),
        ("added", "Training", []),
        ("removed", "Hosting", []),
    ]
    changed = changes[0]
    assert (changed["before"]["quantity"], changed["after"]["quantity"]) == ("2", "3")


def test_a_new_wording_in_the_same_place_is_a_changed_description_not_a_swap():
    before = [line("Design", "1", 5000), line("Logo sketches", "1", 2000)]
    after = [line("Design", "1", 5000), line("Logo sketches, three rounds", "1", 2500)]
    [change] = revisions.diff_lines(before, after)
    assert change["change"] == "changed" and change["fields"] == ["description", "unit_price"]
    assert (change["before"]["unit_price"], change["after"]["unit_price"]) == (2000, 2500)


def test_the_same_quantity_written_differently_is_no_change():
    before = [line("Design", "2.0000", 5000, tax_rate="19.0000", discount_percent="0")]
    after = [line("Design", "2", 5000, tax_rate="19", discount_percent="0.00")]
    assert revisions.diff_lines(before, after) == []


def test_repeated_descriptions_pair_in_order():
    before = [line("Hour", "1", 100), line("Hour", "2", 100)]
    after = [line("Hour", "1", 100), line("Hour", "5", 100)]
    [change] = revisions.diff_lines(before, after)
    assert change["position"] == 2 and change["fields"] == ["quantity"]


def test_the_history_diffs_each_pair_of_consecutive_versions_with_totals():
    v1 = version("Q-7", [line("Design", "2", 5000)], 1, 10000, terms="30 days")
    v2 = version("Q-7-2", [line("Design", "3", 5000)], 2, 15000, terms="30 days")
    v3 = version("Q-7-3", [line("Design", "3", 5000), line("Print", "1", 500)], 3, 15500, terms="14 days")
    first, second = revisions.history([v3, v1, v2])  # in any order
    assert (first["from_version"], first["to_version"], first["to_number"]) == (1, 2, "Q-7-2")
    assert (first["totals_before"]["total"], first["totals_after"]["total"], first["total_difference"]) == (
        10000,
        15000,
        5000,
    )
    assert first["texts_changed"] == [] and second["texts_changed"] == ["terms"]
    assert [c["change"] for c in second["lines"]] == ["added"]
    assert revisions.history([v1]) == []


def test_versions_are_numbered_with_a_suffix_from_the_second():
    assert [revisions.version_number("Q-0007", n) for n in (1, 2, 3)] == ["Q-0007", "Q-0007-2", "Q-0007-3"]


def test_only_the_newest_version_can_be_decided_on():
    revisions.check_newest(None, 3, "Q-7-3")  # no version sent: the caller decides on the current one
    revisions.check_newest(3, 3, "Q-7-3")
    with pytest.raises(Conflict) as stale:
        revisions.check_newest(2, 3, "Q-7-3")
    assert stale.value.fields["newest_version"] == "3" and stale.value.fields["newest_number"] == "Q-7-3"
    for bad in (0, -1, True, "2", 2.0, 10**7):
        with pytest.raises(Invalid):
            revisions.seen_version(bad)


def test_who_may_ask_for_changes_and_on_what():
    class Contact:
        def __init__(self, access, role="approver"):
            self.portal_access, self.role = access, role

    assert revisions.may_request_changes(Contact(True)) and not revisions.may_request_changes(Contact(False))
    # owners and approvers decide on quotes; payers and viewers do not, nor a contact without access
    assert [r for r in ROLES if revisions.may_request_changes(Contact(True, r))] == ["owner", "approver"]
    assert not revisions.may_request_changes(Contact(False, "owner"))
    assert [
        s for s in ("draft", "sent", "viewed", "accepted", "rejected", "expired") if revisions.open_for_changes(s)
    ] == [
        "sent",
        "viewed",
    ]


# ---------------------------------------------------------------- the handlers


@pytest.fixture
def db(sqlite_engine):
    engine = sqlite_engine("billing")

    def run(fn, *args, now=NOW, **kwargs):
        with UnitOfWork(engine, lambda: now) as uow:
            result = fn(uow, now, *args, **kwargs)
            uow.commit()
            return result

    run.engine = engine
    return run


@pytest.fixture
def quote(db):
    ws = db(h.create_workspace, {"name": "Acme", "email": "acme@example.com", "timezone": "Europe/Berlin"})["id"]
    cl = db(h.create_client, ws, {"name": "Client One", "currency": "EUR"})["id"]
    contact = db(
        h.add_contact, ws, cl, {"email": "one@example.com", "name": "Una", "portal_access": True, "role": "approver"}
    )["id"]
    lines = [line("Design", "2", 5000), line("Hosting", "12", 1000)]
    made = db(h.create_quote, ws, {"client_id": cl, "lines": lines, "send": True, "terms": "30 days"})
    return {"ws": ws, "client": cl, "contact": contact, "id": made["id"], "number": made["number"]}


def published(db, event_type):
    with db.engine.connect() as conn:
        bodies = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == event_type)).scalars().all()
    return [json.loads(b)["data"] for b in bodies]


def table_counts(db):
    with db.engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()  # noqa: S608 - fixed names
            for t in ("outbox", "comments", "activities", "quote_versions")
        }


def test_requesting_changes_comments_flags_the_quote_and_tells_the_business(db, quote):
    q = quote
    seen = db(h.request_quote_changes, q["ws"], q["client"], q["contact"], q["id"], "  Fewer hosting months?  ", 1)
    assert seen["changes_requested"] and seen["display_status"] == "sent"
    [comment] = db(h.list_comments, q["ws"], "quote", q["id"], client_id=q["client"])
    assert (comment["author_kind"], comment["author_name"], comment["body"]) == (
        "client",
        "Una",
        "Fewer hosting months?",
    )
    [event] = published(db, "quote.changes_requested")
    assert (event["version"], event["comment_id"], event["requested_by"]) == (1, comment["id"], "one@example.com")
    kinds = [a["kind"] for a in db(h.list_activity, q["ws"], q["client"])]
    assert "quote.changes_requested" in kinds


def test_a_bad_change_request_changes_nothing(db, quote):
    q = quote
    before = table_counts(db)
    for message, version, error in (
        ("   ", 1, Invalid),
        ("x" * 5001, 1, Invalid),
        ("Please", 0, Invalid),
        ("Please", 2, Conflict),  # a version the quote never had is not the newest
    ):
        with pytest.raises(error):
            db(h.request_quote_changes, q["ws"], q["client"], q["contact"], q["id"], message, version)
    other = db(h.create_client, q["ws"], {"name": "Other"})["id"]
    with pytest.raises(NotFound):  # another client's contact, or the quote seen from another client
        db(h.request_quote_changes, q["ws"], other, q["contact"], q["id"], "Please", 1)
    db(h.accept_quote, q["ws"], q["id"], "one@example.com", version=1)
    after_accept = table_counts(db)
    with pytest.raises(Conflict):
        db(h.request_quote_changes, q["ws"], q["client"], q["contact"], q["id"], "Too late", 1)
    assert table_counts(db) == after_accept
    assert before["comments"] == after_accept["comments"] == 0


def test_a_revision_keeps_the_old_version_and_renumbers_the_quote(db, quote):
    q = quote
    db(h.request_quote_changes, q["ws"], q["client"], q["contact"], q["id"], "Fewer hosting months?", 1)
    revised = db(
        h.revise_quote,
        q["ws"],
        q["id"],
        {"lines": [line("Design", "2", 5000), line("Hosting", "6", 1000), line("Training", "1", 4000)]},
        now=LATER,
    )
    assert (revised["version"], revised["number"], revised["total"]) == (2, q["number"] + "-2", 20000)
    assert not revised["changes_requested"] and revised["terms"] == "30 days"  # texts left out are kept
    assert [v["number"] for v in revised["versions"]] == [q["number"], q["number"] + "-2"]
    [change] = revised["changes"]
    assert [(c["change"], c["fields"]) for c in change["lines"]] == [("changed", ["quantity"]), ("added", [])]
    assert (change["totals_before"]["total"], change["totals_after"]["total"]) == (22000, 20000)

    history = db(h.list_quote_versions, q["ws"], q["id"], client_id=q["client"])
    first = history["versions"][0]
    assert (first["version"], first["total"], first["current"]) == (1, 22000, False)
    assert [(x["description"], Decimal(x["quantity"]), x["total"]) for x in first["lines"]] == [
        ("Design", 2, 10000),
        ("Hosting", 12, 12000),
    ]
    [event] = published(db, "quote.revised")
    assert (event["version"], event["previous_version"], event["previous_total"], event["number"]) == (
        2,
        1,
        22000,
        q["number"] + "-2",
    )
    assert published(db, "quote.sent")[-1]["number"] == q["number"] + "-2"  # the usual email, new version

    third = db(h.revise_quote, q["ws"], q["id"], {"lines": [line("Design", "2", 5000)], "terms": None}, now=LATER)
    assert (third["number"], third["terms"], len(third["changes"])) == (q["number"] + "-3", "", 2)


def test_a_bad_revision_changes_nothing(db, quote):
    q = quote
    before = table_counts(db)
    for data, error in (
        ({}, Invalid),
        ({"lines": []}, Invalid),
        ({"lines": [line("Design")], "expiry_date": "2026-01-01"}, Invalid),
        ({"lines": [line("Design")], "client_id": "x"}, Invalid),
    ):
        with pytest.raises(error):
            db(h.revise_quote, q["ws"], q["id"], data)
    assert table_counts(db) == before
    draft = db(h.create_quote, q["ws"], {"client_id": q["client"], "lines": [line("Draft")]})
    with pytest.raises(Conflict):
        db(h.revise_quote, q["ws"], draft["id"], {"lines": [line("Draft")]})


def test_accepting_a_replaced_version_is_refused_and_the_newest_is_recorded(db, quote):
    q = quote
    db(h.revise_quote, q["ws"], q["id"], {"lines": [line("Design", "3", 5000)]})
    before = table_counts(db)
    for decide in (
        lambda: db(h.accept_quote, q["ws"], q["id"], "one@example.com", "", "Una", q["client"], 1),
        lambda: db(h.reject_quote, q["ws"], q["id"], "one@example.com", "No", q["client"], 1),
    ):
        with pytest.raises(Conflict) as stale:
            decide()
        assert stale.value.fields["newest_version"] == "2"
    assert table_counts(db) == before
    assert db(h.get_quote, q["ws"], q["id"])["status"] == "sent"

    accepted = db(h.accept_quote, q["ws"], q["id"], "one@example.com", "", "Una", q["client"], 2)
    assert (accepted["status"], accepted["accepted_version"]) == ("accepted", 2)
    [event] = published(db, "quote.accepted")
    assert (event["version"], event["number"]) == (2, q["number"] + "-2")
    with pytest.raises(Conflict):  # an accepted quote is not revised
        db(h.revise_quote, q["ws"], q["id"], {"lines": [line("Design")]})


def test_declining_records_the_version_declined(db, quote):
    q = quote
    declined = db(h.reject_quote, q["ws"], q["id"], "one@example.com", "Over budget", q["client"], 1)
    assert (declined["status"], declined["rejected_version"]) == ("rejected", 1)
    assert published(db, "quote.rejected")[0]["version"] == 1


# ---------------------------------------------------------------- the gateway

QUOTE = {
    "id": "q1",
    "number": "Q-7-2",
    "version": 2,
    "display_status": "sent",
    "status": "sent",
    "issue_date": "2026-11-01",
    "expiry_date": None,
    "accepted_at": None,
    "rejected_at": None,
    "lines": [],
    "currency": "EUR",
    "subtotal": 12000,
    "tax_total": 0,
    "tax_breakdown": [],
    "total": 12000,
    "locale": "en_US",
    "timezone": "Europe/Berlin",
    "versions": [],
    "changes": [],
}
STALE = Conflict("You saw version 1.", version="not the newest version", newest_version="2", newest_number="Q-7-2")


def test_the_api_answers_a_replaced_version_with_a_409_that_links_to_the_newest():
    c, rpc = client({("billing", "accept_quote"): STALE, ("billing", "reject_quote"): STALE})
    for path, body in (("accept", {"signature_name": "Dana", "version": 1}), ("reject", {"version": 1})):
        answer = c.simulate_post(f"/api/portal/v1/quotes/q1/{path}", json=body, csrf=False, headers=c.bearer)
        assert answer.status_code == 409 and answer.headers["content-type"] == "application/problem+json"
        assert answer.json["newest_version"] == 2 and answer.json["newest"] == "/api/portal/v1/quotes/q1"
        assert answer.json["errors"]["version"] == "not the newest version"
    assert [call[4]["version"] for call in rpc.calls if call[1] in ("accept_quote", "reject_quote")] == [1, 1]


def test_the_api_needs_the_version_to_decide():
    c, rpc = client()
    answer = c.simulate_post(
        "/api/portal/v1/quotes/q1/accept", json={"signature_name": "Dana"}, csrf=False, headers=c.bearer
    )
    assert answer.status_code == 422 and "version" in answer.json["errors"]
    assert not [call for call in rpc.calls if call[0] == "billing"]


def test_the_page_answers_a_replaced_version_with_the_newest_and_a_409():
    c, rpc = portal(
        "en_US",
        answers={("billing", "accept_quote"): STALE, ("billing", "view_quote"): {"quote": QUOTE, "comments": []}},
    )
    page = c.simulate_post(
        "/quotes/q1/accept",
        body="signature_name=Dana&confirmed=yes&version=1",
        headers=FORM,
        cookies=c.session_cookie,
    )
    assert page.status_code == 409
    assert "you saw version 1, the newest is version 2 (Q-7-2)" in page.text
    assert 'name="version" value="2"' in page.text  # the forms now carry the newest version
    missing = c.simulate_post("/quotes/q1/reject", body="reason=No", headers=FORM, cookies=c.session_cookie)
    assert missing.status_code == 400 and "This page is out of date" in missing.text
    assert [call[1] for call in rpc.calls if call[1] == "reject_quote"] == []


def test_the_change_request_form_posts_once_per_nonce_and_refuses_an_empty_message():
    c, rpc = client(
        {("billing", "request_quote_changes"): QUOTE, ("billing", "view_quote"): {"quote": QUOTE, "comments": []}}
    )
    empty = c.simulate_post(
        "/quotes/q1/changes", body="message=+&version=2&nonce=n1", headers=FORM, cookies=c.session_cookie
    )
    assert empty.status_code == 400 and not [call for call in rpc.calls if call[1] == "request_quote_changes"]
    done = c.simulate_post(
        "/quotes/q1/changes", body="message=Fewer+months&version=2&nonce=n1", headers=FORM, cookies=c.session_cookie
    )
    assert done.status_code == 303 and done.headers["location"].endswith("/quotes/q1#comments")
    [call] = [call for call in rpc.calls if call[1] == "request_quote_changes"]
    assert call[2] == ("ws1", "cl1", "c1", "q1", "Fewer months")
    assert (call[4]["version"], call[4]["idempotency_key"]) == (2, "quote-changes:c1:n1")


@pytest.mark.parametrize(
    ("locale", "form", "typed", "says"),
    [
        ("en_US", "accept", "signature_name=+++&version=2", "Type your full name to accept."),
        ("de_DE", "accept", "signature_name=+++&version=2", "Geben Sie zum Annehmen Ihren vollständigen Namen ein."),
        ("en_US", "accept", "signature_name=+++&confirmed=yes&version=2", "Type your full name to accept."),
        ("en_US", "changes", "message=+%0A+&version=2&nonce=n1", "A message is 1 to 5000 characters."),
        ("de_DE", "changes", "message=+%0A+&version=2&nonce=n1", "Eine Nachricht hat 1 bis 5000 Zeichen."),
    ],
)
def test_a_refused_acceptance_or_change_request_is_the_quote_page_again_with_what_was_typed(locale, form, typed, says):
    c, rpc = client({("billing", "view_quote"): {"quote": {**QUOTE, "locale": locale}, "comments": []}})
    page = c.simulate_post(f"/quotes/q1/{form}", body=typed, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 400 and "Q-7-2" in page.text and 'action="/quotes/q1/changes"' in page.text
    assert "Back to the portal" not in page.text and "Zurück zum Portal" not in page.text  # not the error page
    assert f'<p id="{form}-error" class="error" role="alert">{says}</p>' in page.text
    invalid = f' aria-invalid="true" aria-describedby="{form}-error" autofocus'
    if form == "accept":  # the name form again, not its confirmation step
        assert f'autocomplete="name" value="   "{invalid}>' in page.text and 'name="confirmed"' not in page.text
    else:
        assert f'rows="3"{invalid}> \n </textarea>' in page.text
    assert page.text.count("aria-invalid") == 1  # only the form refused says so
    assert [call[1] for call in rpc.calls if call[0] == "billing"] == ["view_quote"]  # nothing accepted or sent


# ---------------------------------------------------------------- what the client accepts

TERMS = "Payment within 14 days; work starts on acceptance."
WORDED = {**QUOTE, "discount_total": 0, "notes": "Includes two rounds of edits.", "terms": TERMS}


def test_the_quote_page_shows_its_notes_and_terms_above_the_acceptance_form():
    c, _ = client({("billing", "view_quote"): {"quote": WORDED, "comments": []}})
    page = c.simulate_get("/quotes/q1", cookies=c.session_cookie)
    assert page.status_code == 200
    notes = page.text.index("Includes two rounds of edits.")
    terms = page.text.index("Payment within 14 days; work starts on acceptance.")
    assert notes < terms < page.text.index('name="signature_name"')  # read before signing
    c, _ = client({("billing", "view_quote"): {"quote": QUOTE, "comments": []}})
    bare = c.simulate_get("/quotes/q1", cookies=c.session_cookie).text
    assert 'data-testid="notes"' not in bare and 'data-testid="terms"' not in bare  # no empty headings


def test_the_quote_page_says_how_the_notes_and_terms_changed_from_one_version_to_the_next():
    first = {**WORDED, "version": 1, "number": "Q-7", "current": False, "notes": "", "terms": "Payment within 30 days."}
    second = {**WORDED, "version": 2, "number": "Q-7-2", "current": True}
    change = revisions.diff_versions(first, second)
    assert change["texts_changed"] == ["notes", "terms"]
    quote = {**WORDED, "versions": [first, second], "changes": [change]}
    c, _ = portal("de_DE", answers={("billing", "view_quote"): {"quote": quote, "comments": []}})
    page = c.simulate_get("/quotes/q1", cookies=c.session_cookie).text
    assert f"Bedingungen: Payment within 30 days. → {TERMS}" in page
    assert "Hinweise: — → Includes two rounds of edits." in page
    assert "Die Hinweise oder Bedingungen haben sich geändert." not in page


def test_the_emailed_link_to_a_quote_shows_its_notes_and_terms():
    link = {"workspace_id": "ws1", "client_id": "cl1", "kind": "quote", "document_id": "q1"}
    c, _ = client({("auth", "resolve_document_link"): link, ("billing", "get_quote"): WORDED})
    page = c.simulate_get("/i/a-one-document-token")
    assert page.status_code == 200
    assert "Includes two rounds of edits." in page.text and TERMS in page.text


DECLINED = {**QUOTE, "display_status": "rejected", "status": "rejected", "rejected_at": "2026-11-20T10:00:00+00:00"}
CLOSED = Conflict("This quote is rejected and cannot be acted on.", status="rejected")


@pytest.mark.parametrize(
    "locale, says",
    [
        ("en_US", "This quote is no longer open, so it cannot be accepted or declined now. Nothing was changed."),
        ("de_DE", "Dieses Angebot ist nicht mehr offen und kann jetzt weder angenommen noch abgelehnt werden."),
    ],
)
@pytest.mark.parametrize(
    "path, body",
    [
        ("accept", "signature_name=Dana"),  # the first step: nothing to confirm
        ("accept", "signature_name=Dana&confirmed=yes&version=2"),
        ("reject", "reason=No&version=2"),
    ],
)
def test_a_decision_on_a_quote_no_longer_open_is_its_page_again_saying_so_in_the_readers_words(
    locale, says, path, body
):
    c, _ = portal(
        locale,
        answers={
            ("billing", "accept_quote"): CLOSED,
            ("billing", "reject_quote"): CLOSED,
            ("billing", "view_quote"): {"quote": DECLINED, "comments": []},
        },
    )
    page = c.simulate_post(f"/quotes/q1/{path}", body=body, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 409 and says in page.text
    assert "cannot be acted on" not in page.text and "Confirm acceptance" not in page.text

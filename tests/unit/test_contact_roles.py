"""Roles inside a client's organisation: owner, payer, approver, viewer. Billing keeps them (and at least
one owner), sessions carry them, and the service that owns an action refuses a role that may not do it."""

import json
from datetime import datetime, timezone

import jwt
import pytest
import sqlalchemy as sa

from chassis import credentials
from chassis.db import UnitOfWork, joined
from chassis.errors import Conflict, Forbidden, Invalid, NotFound
from chassis.events import OUTBOX
from chassis.scope import ROLES, Scope, acting_for, from_context
from services.auth import domain
from services.auth import handlers as auth
from services.auth.tables import sessions
from services.billing import handlers as h
from services.billing.tables import contacts, quotes
from services.gateway.revocations import RevocationList
from services.payments.handlers import cards, charging, payment_attempts
from tests.unit.test_auth_handlers import committed
from tests.unit.test_gateway import DASHBOARD, client

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
LINE = [{"description": "Work", "quantity": 1, "unit_price": 10000}]
KEYS = credentials.Keys.parse("test:" + "k" * 40)


@pytest.fixture
def db(sqlite_engine):
    engine = sqlite_engine("billing")

    def run(fn, *args, now=NOW, scope=None, **kwargs):
        with acting_for(scope), UnitOfWork(engine, lambda: now) as uow:
            result = fn(uow, now, *args, **kwargs)
            uow.commit()
            return result

    run.engine = engine
    return run


@pytest.fixture
def org(db):
    """A client with an owner (Olga) and a payer (Pia), both with portal access."""
    ws = db(h.create_workspace, {"name": "Acme", "email": "acme@example.com"})["id"]
    cl = db(h.create_client, ws, {"name": "Client One"})["id"]
    owner = db(h.add_contact, ws, cl, {"email": "olga@example.com", "portal_access": True, "role": "owner"})["id"]
    payer = db(h.add_contact, ws, cl, {"email": "pia@example.com", "portal_access": True})["id"]
    return {"ws": ws, "client": cl, "owner": owner, "payer": payer}


def as_role(org, role):
    return Scope(org["ws"], org["client"], role=role)


def role_of(db, contact_id):
    with db.engine.connect() as conn:
        return conn.execute(
            sa.select(contacts.c.role, contacts.c.portal_access).where(contacts.c.id == contact_id)
        ).one()


def _body(stored):
    return stored if isinstance(stored, dict) else json.loads(stored)


def contact_events(db):
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(OUTBOX.c.event_type, OUTBOX.c.body).where(OUTBOX.c.event_type.like("contact.%"))
        ).all()
    return [(t, _body(b)["data"]) for t, b in rows]


# ---------------------------------------------------------------- the scope and the credential


def test_the_role_travels_in_the_scope_and_a_bad_one_sees_nothing():
    scope = Scope("ws1", "cl1", role="approver")
    assert scope.to_context() == {"workspace_id": "ws1", "client_id": "cl1", "role": "approver"}
    assert from_context(scope.to_context()) == scope
    assert from_context({"workspace_id": "ws1", "client_id": "cl1", "role": "admin"}) == Scope("")
    assert from_context({"workspace_id": "ws1", "role": "owner"}) == Scope("")  # a role belongs to a client's contact
    assert Scope("ws1").allows(("owner",))  # the business, through its API key
    assert not Scope("ws1", "cl1").allows(ROLES)  # a client scope without a role (a document link) only reads
    assert [r for r in ROLES if Scope("ws1", "cl1", role=r).allows(("owner", "payer"))] == ["owner", "payer"]


def test_a_credential_carries_the_role_and_one_without_a_role_is_refused():
    session = credentials.Session("1", "c1", "cl1", "ws1", "a@b.c", "", None, NOW, NOW, role="payer")
    assert credentials.read(credentials.issue(session, KEYS), KEYS).role == "payer"
    assert session.view(credentials.Limits())["role"] == "payer"
    claims = jwt.decode(credentials.issue(session, KEYS), options={"verify_signature": False})
    for role in (None, "admin"):
        forged = jwt.encode({**claims, "role": role}, KEYS.secrets["test"], algorithm="HS256", headers={"kid": "test"})
        with pytest.raises(credentials.Refused):
            credentials.read(forged, KEYS)


# ---------------------------------------------------------------- billing keeps the roles


def test_contacts_the_business_adds_are_payers_unless_it_names_a_role(db, org):
    assert role_of(db, org["payer"]).role == "payer"
    viewer = db(h.add_contact, org["ws"], org["client"], {"email": "v@example.com", "role": "viewer"})
    assert viewer["role"] == "viewer"
    with pytest.raises(Invalid):
        db(h.add_contact, org["ws"], org["client"], {"email": "x@example.com", "role": "admin"})
    created = [data for kind, data in contact_events(db) if kind == "contact.created"]
    assert {d["email"]: d["role"] for d in created} == {
        "olga@example.com": "owner",
        "pia@example.com": "payer",
        "v@example.com": "viewer",
    }


def test_the_last_owner_cannot_be_demoted_or_removed(db, org):
    with pytest.raises(Conflict):
        db(h.update_contact, org["ws"], org["owner"], {"role": "payer"})  # the business, too
    with pytest.raises(Conflict):
        db(
            h.change_contact_role,
            org["ws"],
            org["client"],
            org["owner"],
            org["owner"],
            "viewer",
            scope=as_role(org, "owner"),
        )
    with pytest.raises(Conflict):
        db(h.remove_contact, org["ws"], org["client"], org["owner"], org["owner"], scope=as_role(org, "owner"))
    assert tuple(role_of(db, org["owner"])) == ("owner", True)
    # with a second owner, the first may step down; its sessions end (role_changed) and it is recorded
    db(
        h.change_contact_role,
        org["ws"],
        org["client"],
        org["owner"],
        org["payer"],
        "owner",
        scope=as_role(org, "owner"),
    )
    db(
        h.change_contact_role,
        org["ws"],
        org["client"],
        org["owner"],
        org["owner"],
        "viewer",
        scope=as_role(org, "owner"),
    )
    assert role_of(db, org["owner"]).role == "viewer" and role_of(db, org["payer"]).role == "owner"
    changed = [d for kind, d in contact_events(db) if kind == "contact.updated" and d.get("role_changed")]
    assert [(d["email"], d["role"]) for d in changed] == [("pia@example.com", "owner"), ("olga@example.com", "viewer")]


def test_only_an_owner_manages_contacts_both_by_session_and_by_its_current_role(db, org):
    ws, cl = org["ws"], org["client"]
    for role in ("payer", "approver", "viewer"):
        with pytest.raises(Forbidden):
            db(h.list_team, ws, cl, org["payer"], scope=as_role(org, role))
        with pytest.raises(Forbidden):
            db(
                h.invite_contact,
                ws,
                cl,
                org["payer"],
                {"email": "n@example.com", "role": "viewer"},
                scope=as_role(org, role),
            )
    # a session that still says owner, for a contact billing has since made a payer, is refused too
    with pytest.raises(Forbidden):
        db(h.change_contact_role, ws, cl, org["payer"], org["owner"], "viewer", scope=as_role(org, "owner"))
    assert [c["email"] for c in db(h.list_team, ws, cl, org["owner"], scope=as_role(org, "owner"))] == [
        "olga@example.com",
        "pia@example.com",
    ]
    assert role_of(db, org["owner"]).role == "owner"


def test_an_owner_invites_by_email_and_auth_is_told_to_send_the_link(db, org):
    owner = as_role(org, "owner")
    ws, cl = org["ws"], org["client"]
    invited = db(
        h.invite_contact,
        ws,
        cl,
        org["owner"],
        {"email": "Amy@Example.com", "name": "Amy", "role": "approver"},
        scope=owner,
    )
    assert (invited["email"], invited["role"], invited["portal_access"]) == ("amy@example.com", "approver", True)
    [created] = [d for kind, d in contact_events(db) if kind == "contact.created" and d["id"] == invited["id"]]
    assert created["invited"] is True and created["role"] == "approver"
    with pytest.raises(Conflict):  # already has access
        db(h.invite_contact, ws, cl, org["owner"], {"email": "amy@example.com", "role": "viewer"}, scope=owner)
    other = db(h.create_client, ws, {"name": "Client Two"})["id"]
    db(h.add_contact, ws, other, {"email": "bob@example.com"})
    with pytest.raises(Conflict):  # another client's contact: refused, and not moved
        db(h.invite_contact, ws, cl, org["owner"], {"email": "bob@example.com", "role": "viewer"}, scope=owner)
    for bad in (
        {"email": "not an email", "role": "viewer"},
        {"email": "c@example.com"},
        {"email": "c@example.com", "role": "boss"},
    ):
        with pytest.raises(Invalid):
            db(h.invite_contact, ws, cl, org["owner"], bad, scope=owner)
    assert [c["email"] for c in db(h.list_team, ws, cl, org["owner"], scope=owner)] == [
        "amy@example.com",  # in the order they joined, then by email
        "olga@example.com",
        "pia@example.com",
    ]
    # removing takes access away; inviting again gives it back with the new role
    db(h.remove_contact, ws, cl, org["owner"], invited["id"], scope=owner)
    assert tuple(role_of(db, invited["id"])) == ("approver", False)
    back = db(h.invite_contact, ws, cl, org["owner"], {"email": "amy@example.com", "role": "viewer"}, scope=owner)
    assert (back["id"], back["role"], back["portal_access"]) == (invited["id"], "viewer", True)


def test_another_clients_contact_is_not_found_by_an_owner(db, org):
    other = db(h.create_client, org["ws"], {"name": "Client Two"})["id"]
    stranger = db(h.add_contact, org["ws"], other, {"email": "s@example.com", "portal_access": True})["id"]
    with pytest.raises(NotFound):
        db(
            h.change_contact_role,
            org["ws"],
            org["client"],
            org["owner"],
            stranger,
            "viewer",
            scope=as_role(org, "owner"),
        )
    with pytest.raises(NotFound):
        db(h.remove_contact, org["ws"], org["client"], org["owner"], stranger, scope=as_role(org, "owner"))
    assert tuple(role_of(db, stranger)) == ("payer", True)


# ---------------------------------------------------------------- billing and payments refuse by role


def test_only_owners_and_approvers_decide_on_quotes(db, org):
    ws, cl = org["ws"], org["client"]
    quote = db(h.create_quote, ws, {"client_id": cl, "lines": LINE, "send": True})["id"]
    for role in ("payer", "viewer"):
        scope = as_role(org, role)
        with pytest.raises(Forbidden):
            db(h.accept_quote, ws, quote, "pia@example.com", client_id=cl, scope=scope)
        with pytest.raises(Forbidden):
            db(h.reject_quote, ws, quote, "pia@example.com", "no", client_id=cl, scope=scope)
        with pytest.raises(Forbidden):
            db(h.request_quote_changes, ws, cl, org["payer"], quote, "cheaper?", scope=scope)
    with db.engine.connect() as conn:
        assert conn.execute(
            sa.select(quotes.c.status, quotes.c.changes_requested_at).where(quotes.c.id == quote)
        ).one() == (
            "sent",
            None,
        )
    # the contact's current role counts too: a payer whose session says approver cannot ask for changes
    with pytest.raises(Forbidden):
        db(h.request_quote_changes, ws, cl, org["payer"], quote, "cheaper?", scope=as_role(org, "approver"))
    assert (
        db(h.accept_quote, ws, quote, "olga@example.com", client_id=cl, scope=as_role(org, "approver"))["status"]
        == "accepted"
    )


@pytest.mark.parametrize("role", ["approver", "viewer"])
def test_payments_refuses_charges_and_card_changes_before_touching_anything(role):
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"{name} was reached")

    nothing = Untouchable()
    with acting_for(Scope("ws1", "cl1", role=role)):
        calls = [
            lambda: payment_attempts.start_payment(
                nothing, NOW, nothing, "ws1", "cl1", {"invoice_ids": ["i1"]}, "key-1"
            ),
            lambda: cards.card_setup(nothing, NOW, nothing, nothing, "ws1", "cl1"),
            lambda: charging.confirm_attempt(nothing, NOW, nothing, "ws1", "cl1", "a1"),
            lambda: charging.refresh_attempt(nothing, NOW, nothing, "ws1", "cl1", "a1"),
            lambda: cards.save_card(nothing, NOW, nothing, "ws1", "cl1", "seti_1"),
            lambda: cards.set_default_card(nothing, NOW, nothing, "ws1", "cl1", "pm_1"),
            lambda: cards.remove_card(nothing, NOW, nothing, "ws1", "cl1", "pm_1"),
        ]
        for call in calls:
            with pytest.raises(Forbidden):
                call()


# ---------------------------------------------------------------- auth and the gateways end sessions


def auth_contact(role, version, access=True):
    return {
        "id": "c1",
        "workspace_id": "ws1",
        "client_id": "cl1",
        "email": "a@example.com",
        "name": "A",
        "portal_access": access,
        "role": role,
        "version": version,
    }


def test_auth_writes_the_role_into_sessions_and_a_new_role_ends_them(sqlite_engine):
    engine = sqlite_engine("auth")
    with engine.begin() as conn, joined(conn) as uow:
        auth.apply_contact(uow, auth_contact("approver", 1), NOW)
    with committed(engine) as uow:
        [link] = auth.request_links(uow, "a@example.com", "10.0.0.1", NOW, domain.Policy())
    with committed(engine) as uow:
        session = auth.consume_link(uow, link["token"], None, NOW, None, domain.Policy(), KEYS)
    assert session["role"] == "approver" and credentials.read(session["credential"], KEYS).role == "approver"
    with (
        engine.begin() as conn,
        joined(conn) as uow,
    ):  # the same role again (another change of the contact): the session stays
        auth.apply_contact(uow, auth_contact("approver", 2), NOW)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sessions.c.revoked_at)).scalar_one() is None
    with engine.begin() as conn, joined(conn) as uow:  # as an event consumer runs them: events written at the end
        auth.apply_contact(uow, auth_contact("viewer", 3), NOW)
        auth.apply_contact(uow, auth_contact("owner", 2), NOW)  # older: ignored
    with engine.connect() as conn:
        assert conn.execute(sa.select(sessions.c.revoked_at)).scalar_one() == NOW
        ended = conn.execute(sa.select(OUTBOX.c.body).where(OUTBOX.c.event_type == "session.ended")).scalars().all()
    assert [_body(b)["data"]["reason"] for b in ended] == ["role_changed"]


def test_a_gateway_refuses_sessions_begun_before_a_role_change():
    revocations = RevocationList(ready=True)
    before = credentials.Session("1", "c1", "cl1", "ws1", "a@b.c", "", None, NOW, NOW, role="owner")
    later = credentials.Session(
        "2", "c1", "cl1", "ws1", "a@b.c", "", None, NOW.replace(hour=16), NOW.replace(hour=16), role="payer"
    )
    revocations.apply(
        "contact.updated",
        {
            "occurred_at": NOW.replace(minute=30).isoformat(),
            "data": {"id": "c1", "portal_access": True, "role": "owner"},
        },
    )
    assert revocations.refuses(before) is None  # another change (a new name): nothing ends
    revocations.apply(
        "contact.updated",
        {
            "occurred_at": NOW.replace(minute=30).isoformat(),
            "data": {"id": "c1", "portal_access": True, "role": "payer", "role_changed": True},
        },
    )
    assert revocations.refuses(before) == "no_access" and revocations.refuses(later) is None


def test_a_viewer_reads_only_and_only_an_owner_changes_the_company(db, org):
    ws, cl = org["ws"], org["client"]
    invoice = db(h.create_invoice, ws, {"client_id": cl, "lines": LINE, "send": True})["id"]
    viewer = as_role(org, "viewer")
    with pytest.raises(Forbidden):
        db(h.add_comment, ws, "invoice", invoice, "client", "Pia", "hello", client_id=cl, scope=viewer)
    with pytest.raises(Forbidden):
        db(h.raise_invoice_dispute, ws, cl, org["payer"], "Pia", invoice, "wrong", scope=viewer)
    with pytest.raises(Forbidden):
        db(h.add_review, ws, cl, org["payer"], "Pia", 5, "", scope=viewer)
    assert db(h.list_comments, ws, "invoice", invoice, client_id=cl) == []
    for role in ("payer", "approver"):  # the other roles write to the business
        db(h.add_comment, ws, "invoice", invoice, "client", "Pia", f"as {role}", client_id=cl, scope=as_role(org, role))
    # one's own name is anyone's to change; the company's details only an owner's
    company = {"company": "Client One", "address": "", "company_phone": ""}
    saved = db(h.update_profile, ws, cl, org["payer"], {"name": "Pia P", **company}, scope=viewer)
    assert saved["contact"]["name"] == "Pia P"
    for role in ("payer", "approver", "viewer"):
        with pytest.raises(Forbidden):
            db(h.update_profile, ws, cl, org["payer"], {**company, "company": "Renamed"}, scope=as_role(org, role))
    assert db(h.get_client, ws, cl)["name"] == "Client One"
    renamed = db(h.update_profile, ws, cl, org["owner"], {**company, "company": "Renamed"}, scope=as_role(org, "owner"))
    assert renamed["client"]["name"] == "Renamed"


# ---------------------------------------------------------------- the contacts page and its JSON routes


def team_client(answers):
    base = {
        ("billing", "get_client"): DASHBOARD["client"],
        ("billing", "get_workspace"): {"id": "ws1", "name": "Acme", "logo_url": "", "brand_color": "#1d4ed8"},
    }
    return client({**base, **answers})


FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}
TEAM = [
    {"id": "c1", "email": "demo@example.com", "name": "Dana", "role": "owner", "portal_access": True},
    {"id": "c2", "email": "pia@example.com", "name": "", "role": "payer", "portal_access": True},
    {"id": "c3", "email": "old@example.com", "name": "Old", "role": "viewer", "portal_access": False},
]


def test_the_contacts_page_lists_roles_and_sends_changes_to_billing():
    c, rpc = team_client({("billing", "list_team"): TEAM, ("billing", "change_contact_role"): TEAM[1]})
    page = c.simulate_get("/team", cookies=c.session_cookie)
    assert page.status_code == 200
    assert page.text.count('data-testid="team-contact"') == 3 and "Cannot sign in" in page.text
    assert 'action="/team/c2/role"' in page.text and 'action="/team/c3/role"' not in page.text
    answer = c.simulate_post("/team/c2/role", cookies=c.session_cookie, body="role=approver", headers=FORM_HEADERS)
    assert answer.status_code == 303 and answer.headers["location"].endswith("/team?done=role")
    assert ("billing", "change_contact_role", ("ws1", "cl1", "c1", "c2", "approver")) in [
        call[:3] for call in rpc.calls
    ]


def test_a_refusal_is_a_clear_403_page_and_problem_and_a_last_owner_409_shows_the_page():
    refused = Forbidden("Only an owner of your organisation can manage its contacts.", role="not allowed")
    c, _ = team_client({("billing", "list_team"): refused})
    page = c.simulate_get("/team", cookies=c.session_cookie)
    assert page.status_code == 403 and "Not allowed for your role" in page.text and "only an owner" in page.text.lower()
    api = c.simulate_get("/api/portal/v1/contacts", headers=c.bearer)
    assert api.status_code == 403 and api.headers["content-type"] == "application/problem+json"
    assert api.json["errors"] == {"role": "not allowed"}
    last = Conflict("This is the organisation's last owner. Make another contact an owner first.", role="last owner")
    c, _ = team_client({("billing", "list_team"): TEAM, ("billing", "remove_contact"): last})
    page = c.simulate_post("/team/c1/remove", cookies=c.session_cookie, body="", headers=FORM_HEADERS)
    assert page.status_code == 409 and "last owner" in page.text and page.text.count('data-testid="team-contact"') == 3
    c, _ = team_client({("billing", "list_team"): TEAM, ("billing", "invite_contact"): Invalid("Choose a role.")})
    page = c.simulate_post(
        "/team", cookies=c.session_cookie, body="email=new%40example.com&name=Nu", headers=FORM_HEADERS
    )
    assert page.status_code == 422 and "Choose a role." in page.text and 'value="new@example.com"' in page.text


def test_the_portal_api_invites_and_changes_roles_with_checked_bodies():
    c, rpc = team_client({("billing", "invite_contact"): TEAM[1], ("billing", "change_contact_role"): TEAM[1]})
    made = c.simulate_post(
        "/api/portal/v1/contacts", headers=c.bearer, json={"email": "pia@example.com", "role": "payer"}
    )
    assert made.status_code == 201 and made.json["role"] == "payer"
    bad = c.simulate_patch("/api/portal/v1/contacts/c2", headers=c.bearer, json={"role": "admin"})
    assert bad.status_code == 422
    assert [call[1] for call in rpc.calls if call[0] == "billing"] == ["invite_contact"]  # the bad one sent nothing

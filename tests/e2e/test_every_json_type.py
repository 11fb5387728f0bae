"""Every JSON type (null, boolean, integer, float, string, list, object) sent to every writable field of the
JSON APIs' changes, and of the portal's form posts, then the row read back from the database: either the
request was refused (422, or the form's error page) and the row is unchanged, or the row holds exactly the
value sent. Nothing is ever stored as Python's spelling of another value ("None", "True", "[...]")."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg2
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway.admin import PREFIX as ADMIN
from services.gateway.admin import openapi_document as admin_openapi
from services.gateway.portal_api import PREFIX as PORTAL
from services.gateway.portal_api import portal_openapi
from tests.conftest import new_portal_client, services_rpc, sign_in
from tests.e2e.test_portal_api import bearer_token
from tests.integration.test_admin_api import portalctl

pytestmark = pytest.mark.e2e

# Values of every JSON type, and some a field can hold (so the accepted path runs too)
HOLDABLE = [
    "",
    "Jana Novak",
    "  spaced  ",
    "None",
    "True",
    "+49 30 1234",
    "EUR",
    "de_DE",
    "Europe/Berlin",
    "2027-01-15",
    "#112233",
    "ana@example.org",
    "Ünïcödé ✓",
]
JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 400),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(HOLDABLE),
    st.text(max_size=12),
    st.lists(st.sampled_from(["a", 1, None]), max_size=2),
    st.dictionaries(st.sampled_from(["a", "name"]), st.sampled_from([1, "x"]), max_size=2),
)
RUN = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
EMAILS = {"email"}
TRIMMED = {("comments", "body"), ("reviews", "message")}


def row(url: str, table: str, columns: list[str], where: str, *args):
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(columns)} FROM {table} WHERE {where}", args)
        return cur.fetchone()


def as_sent(table: str, column: str, sent, stored) -> bool:
    """Whether `stored` is exactly `sent` (null: cleared; an email in its normal form; a trimmed text)."""
    if sent is None:
        return stored in ("", None)
    if isinstance(sent, bool) or isinstance(stored, bool):
        return type(sent) is type(stored) and sent == stored
    if isinstance(stored, (date, datetime)):
        return isinstance(sent, str) and stored.isoformat()[: len(sent)] == sent
    if isinstance(stored, (int, Decimal)) and not isinstance(stored, bool):
        return isinstance(sent, (int, float, str)) and not isinstance(sent, bool) and Decimal(str(sent)) == stored
    if not isinstance(sent, str):
        return False
    if column in EMAILS:
        return stored == sent.lower()
    return stored == (sent.strip() if (table, column) in TRIMMED else sent)


def check(answer, before, after, table: str, column: str, sent, ok=(200, 201, 303)) -> None:
    """Refused with the row unchanged, or stored exactly as sent."""
    assert answer.status_code < 500, answer.text
    if answer.status_code in ok:
        assert as_sent(table, column, sent, after[0]), (column, sent, after, answer.status_code)
    else:
        assert answer.status_code in (400, 409, 422), answer.text
        assert after == before, (column, sent, answer.status_code)
    assert "None" not in {v for v in after if isinstance(v, str)} - ({sent} if isinstance(sent, str) else set()) - {
        v for v in before if isinstance(v, str)
    }


@pytest.fixture(scope="module")
def world(stack):
    made = new_portal_client(stack, "Types Ltd", "types@example.org", invoices=1, quotes=2)
    ws = portalctl(stack, "workspace", "create", "--name", "Types Admin", "--email", "types@admin.example.org")["id"]
    key = portalctl(stack, "key", "create", "--workspace", ws, "--name", "types")["key"]
    admin = {"Authorization": f"Bearer {key}"}
    client = requests.post(
        f"{stack.url}{ADMIN}/clients",
        headers=admin,
        json={"name": "Typed Client", "contacts": [{"email": "typed@example.org"}]},
    ).json()
    recurring = requests.post(
        f"{stack.url}{ADMIN}/recurring-invoices",
        headers=admin,
        json={
            "client_id": client["id"],
            "frequency": "monthly",
            "start_date": (date.today() + timedelta(days=30)).isoformat(),
            "lines": [{"description": "Care", "unit_price": 100}],
        },
    ).json()
    draft = requests.post(
        f"{stack.url}{ADMIN}/invoices",
        headers=admin,
        json={"client_id": client["id"], "lines": [{"description": "Draft", "unit_price": 100}]},
    ).json()
    with services_rpc(stack, made["workspace_id"]) as rpc:
        slots = rpc.billing.booking_options(made["workspace_id"], "consultation-30")["slots"]
    return {
        "made": made,
        "admin": admin,
        "client": client,
        "contact": client["contacts"][0]["id"],
        "recurring": recurring["id"],
        "draft": draft["id"],
        "slots": slots,
        "bearer": {"Authorization": f"Bearer {bearer_token(stack, 'types@example.org')}"},
        "browser": sign_in(stack, "types@example.org"),
    }


def body_fields(document: dict, path: str, method: str) -> list[str]:
    ref = document["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return sorted(document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"])


# (API, method, path, table, id, {field: column}): each writable field of the changes read back here
def targets(world) -> list[tuple]:
    made = world["made"]
    return [
        (
            PORTAL,
            "patch",
            "/profile",
            {
                "name": ("contacts", made["contact_id"], "name"),
                "phone": ("contacts", made["contact_id"], "phone"),
                "company": ("clients", made["client"]["id"], "name"),
                "address": ("clients", made["client"]["id"], "address"),
                "company_phone": ("clients", made["client"]["id"], "phone"),
            },
        ),
        (
            ADMIN,
            "patch",
            "/clients/{id}",
            {
                f: ("clients", world["client"]["id"], f)
                for f in (
                    "name",
                    "address",
                    "phone",
                    "currency",
                    "locale",
                    "timezone",
                    "tax_id",
                    "country",
                    "vat_id",
                    "buyer_reference",
                )
            },
        ),
        (
            ADMIN,
            "patch",
            "/contacts/{id}",
            {
                f: ("contacts", world["contact"], f)
                for f in ("email", "name", "phone", "locale", "is_primary", "portal_access", "role")
            },
        ),
        (
            ADMIN,
            "patch",
            "/recurring-invoices/{id}",
            {
                f: ("recurring_invoices", world["recurring"], f)
                for f in ("end_date", "payment_terms_days", "notes", "autopay", "active", "lines")
            },
        ),
        (
            ADMIN,
            "patch",
            "/invoices/{id}",
            {
                **{
                    f: ("invoices", world["draft"], f)
                    for f in (
                        "issue_date",
                        "due_date",
                        "payment_terms_days",
                        "notes",
                        "terms",
                        "supply_date",
                        "service_period_start",
                        "service_period_end",
                        "tax_exemption_reason",
                    )
                },
                "lines": ("invoices", world["draft"], "total"),
            },
        ),
        (
            ADMIN,
            "patch",
            "/workspace",
            {
                f: ("workspaces", None, f)
                for f in (  # the key's workspace
                    "name",
                    "email",
                    "phone",
                    "address",
                    "currency",
                    "locale",
                    "timezone",
                    "tax_id",
                    "logo_url",
                    "brand_color",
                    "accent_color",
                    "settings",
                )
            },
        ),
    ]


def test_the_targets_cover_every_field_of_the_documented_changes(world):
    for prefix, method, path, fields in targets(world):
        document = portal_openapi() if prefix == PORTAL else admin_openapi()
        assert sorted(fields) == body_fields(document, prefix + path, method), path


def workspace_of(stack, client_id: str) -> str:
    return row(stack.databases["billing"], "clients", ["workspace_id"], "id = %s", client_id)[0]


@given(data=st.data())
@RUN
def test_every_json_type_in_every_changed_field(stack, world, data):
    prefix, method, path, fields = data.draw(st.sampled_from(targets(world)), label="operation")
    field = data.draw(st.sampled_from(sorted(fields)), label="field")
    value = data.draw(JSON_VALUES, label="value")
    table, row_id, column = fields[field]
    if table == "workspaces":
        row_id = workspace_of(stack, world["client"]["id"])
    url = stack.databases["billing"]
    before = row(url, table, [column], "id = %s", row_id)
    target = path.replace("{id}", str(row_id))
    headers = world["bearer"] if prefix == PORTAL else world["admin"]
    answer = requests.request(method, f"{stack.url}{prefix}{target}", json={field: value}, headers=headers, timeout=30)
    after = row(url, table, [column], "id = %s", row_id)
    if field in ("lines", "settings"):  # structured: refused unchanged, or a list or object that was accepted
        assert answer.status_code in (200, 422), answer.text
        assert after == before or (answer.status_code == 200 and isinstance(value, (list, dict)))
        return
    if answer.status_code == 409:  # a well-formed date the stored other one contradicts
        assert after == before
        return
    check(answer, before, after, table, column, value, ok=(200,))
    if answer.status_code == 422:
        assert answer.headers["content-type"] == "application/problem+json"
        assert field in answer.json()["errors"] or any(k.startswith(field) for k in answer.json()["errors"])


@given(data=st.data())
@RUN
def test_every_json_type_in_the_created_objects(stack, world, data):
    """The creating bodies: a new client, contact, comment or review holds exactly what was sent."""
    kind = data.draw(st.sampled_from(["client", "contact", "comment", "review", "admin comment"]), label="kind")
    value = data.draw(JSON_VALUES, label="value")
    url, made = stack.databases["billing"], world["made"]
    unique = f"new{abs(hash((kind, repr(value)))) % 10**9}@example.org"
    if kind == "client":
        field = data.draw(st.sampled_from(body_fields(admin_openapi(), ADMIN + "/clients", "post")), label="field")
        body = {"name": "Created", field: value}
        answer = requests.post(f"{stack.url}{ADMIN}/clients", json=body, headers=world["admin"], timeout=30)
        table, columns, created = "clients", field, answer.status_code == 201
    elif kind == "contact":
        field = data.draw(
            st.sampled_from(body_fields(admin_openapi(), ADMIN + "/clients/{id}/contacts", "post")), label="field"
        )
        body = {"email": unique, field: value}
        answer = requests.post(
            f"{stack.url}{ADMIN}/clients/{world['client']['id']}/contacts",
            json=body,
            headers=world["admin"],
            timeout=30,
        )
        table, columns, created = "contacts", field, answer.status_code == 201
    elif kind in ("comment", "admin comment"):
        field = "body" if kind == "comment" else data.draw(st.sampled_from(["body", "author_name"]), label="field")
        body = {"body": "Typed comment", field: value}
        if kind == "comment":
            answer = requests.post(
                f"{stack.url}{PORTAL}/invoices/{made['invoices'][0]['id']}/comments",
                json=body,
                headers=world["bearer"],
                timeout=30,
            )
        else:
            answer = requests.post(
                f"{stack.url}{ADMIN}/invoices/{world['draft']}/comments", json=body, headers=world["admin"], timeout=30
            )
        table, columns, created = "comments", field, answer.status_code == 201
    else:
        field = data.draw(st.sampled_from(["rating", "message"]), label="field")
        body = {"rating": 4, field: value}
        answer = requests.post(f"{stack.url}{PORTAL}/reviews", json=body, headers=world["bearer"], timeout=30)
        table, columns, created = "reviews", field, answer.status_code == 201
    assert answer.status_code < 500, answer.text
    if not created:
        assert answer.status_code in (404, 409, 422), answer.text
        return
    column = columns
    if column == "contacts":
        assert isinstance(value, list)
        return
    if column in ("author_name",) and value == "":  # documented: the business's name when left empty
        [workspace_id] = row(url, table, ["workspace_id"], "id = %s", answer.json()["id"])
        [value] = row(url, "workspaces", ["name"], "id = %s", workspace_id)
    stored = row(url, table, [column], "id = %s", answer.json()["id"])
    assert as_sent(table, column, value, stored[0]), (kind, field, value, stored)


def form_value(value):
    """A JSON value as a form posts it: null leaves the field out, a list repeats it, others are their JSON
    text (a string as itself)."""
    if value is None or value == []:  # an empty list sends nothing: the field is left out
        return None
    if isinstance(value, list):  # one value is the field sent once; more are the field sent again
        texts = [v if isinstance(v, str) else json.dumps(v) for v in value]
        return texts[0] if len(texts) == 1 else texts
    return value if isinstance(value, str) else json.dumps(value)


FORMS = {  # form: (fields, what it writes: table, column per field, how to find the row)
    "profile": ["name", "phone", "company", "address", "company_phone"],
    "comment": ["body"],
    "review": ["rating", "message"],
    "reject": ["reason"],
    "accept": ["signature_name"],
    "booking": ["link_id", "start"],
    "message": ["subject", "message"],
    "login": ["email"],
}


@given(data=st.data())
@RUN
def test_every_json_type_in_the_portals_forms(stack, world, data):
    form = data.draw(st.sampled_from(sorted(FORMS)), label="form")
    field = data.draw(st.sampled_from(FORMS[form]), label="field")
    value = data.draw(JSON_VALUES, label="value")
    sent = form_value(value)
    browser, made, url = world["browser"], world["made"], stack.databases["billing"]
    contact, client = made["contact_id"], made["client"]["id"]
    invoice, (accept_quote, reject_quote) = made["invoices"][0]["id"], [q["id"] for q in made["quotes"]]
    base = {
        "profile": {"company": "Types Ltd"},
        "comment": {"body": "A comment"},
        "review": {"rating": "4"},
        "reject": {"reason": "Too dear", "version": "1"},
        "accept": {"signature_name": "Jana", "confirmed": "yes", "version": "1"},
        "booking": {"link_id": "consultation-30", "start": world["slots"][-1]},
        "message": {"subject": "Hello", "message": "A question"},
        "login": {"email": "types@example.org"},
    }[form]
    fields = {k: v for k, v in base.items() if k != field}
    if sent is not None:
        fields[field] = sent
    profile_column = {
        "name": "name",
        "phone": "phone",
        "company": "name",
        "address": "address",
        "company_phone": "phone",
    }.get(field)
    where = {
        "profile": (
            "contacts" if field in ("name", "phone") else "clients",
            profile_column,
            contact if field in ("name", "phone") else client,
        ),
        "comment": ("comments", "count(*)", invoice),
        "review": ("reviews", "count(*)", client),
        "reject": ("quotes", "rejection_reason", reject_quote),
        "accept": ("quotes", "signature_name", accept_quote),
        "booking": ("bookings", "count(*)", client),
        "message": None,
        "login": None,
    }[form]
    key = "document_id" if form == "comment" else "client_id" if form in ("review", "booking") else "id"
    read = (lambda: row(url, where[0], [where[1]], f"{key} = %s", where[2])) if where else (lambda: None)
    before = read()
    path = {
        "profile": "/profile",
        "comment": f"/invoices/{invoice}/comments",
        "review": "/review",
        "reject": f"/quotes/{reject_quote}/reject",
        "accept": f"/quotes/{accept_quote}/accept",
        "booking": "/bookings",
        "message": "/contact",
        "login": "/login",
    }[form]
    answer = browser.post(f"{stack.url}{path}", data=fields, allow_redirects=False, timeout=30)
    after = read()
    assert answer.status_code < 500, answer.text
    refused = answer.status_code in (400, 404, 409, 422, 429)  # 429: sign-in links are rate-limited
    assert refused or answer.status_code in (200, 303), answer.status_code
    if refused:
        assert "text/html" in answer.headers["content-type"]
        assert after == before, (form, field, value)
        return
    assert not isinstance(sent, list), (form, field, value)  # a field sent twice is never joined into text
    if where is None:
        return
    if where[1] == "count(*)":
        assert after[0] == before[0] + 1, (form, field, value)
    elif sent is None:  # left out: the profile keeps it; a quote declined without a reason has none
        assert after == (before if form == "profile" else ("",)), (form, field, after)
    else:
        assert after == (sent,), (form, field, value, after)

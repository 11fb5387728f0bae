"""Schemathesis against the live portal and admin APIs: generated requests (valid and invalid, from each
OpenAPI document as served) never get a 5xx, and every answer is one the document declares, with its
content type and schema. Each API runs as a dedicated account (a new portal client; a new workspace with
its own key), so what the fuzzing creates or changes touches nothing another test looks at.

Path ids are half the time the account's real objects (so the handlers past the lookup run too) and
half the time generated (so the 404 path runs). Runs are derandomized: the same cases every time."""

from __future__ import annotations

import json
import re
import time
import zlib
from datetime import date, timedelta

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation

from services.gateway.admin import (
    PREFIX as ADMIN,
)
from services.gateway.admin import (
    ROUTES as ADMIN_ROUTES,
)
from services.gateway.admin import (
    URL as URL_PATTERN,
)
from services.gateway.admin import (
    openapi_document as admin_openapi,
)
from services.gateway.portal_api import PREFIX as PORTAL
from services.gateway.portal_api import portal_openapi
from tests.conftest import new_portal_client, refused_within, services_rpc, sign_in
from tests.e2e.auth_support import forget_guesses
from tests.e2e.test_portal_api import bearer_token
from tests.integration.test_admin_api import Api, _card_payment, portalctl, snapshot

pytestmark = pytest.mark.e2e

EXAMPLES = 10  # per operation, in the fuzzing phase; the coverage phase adds its boundary cases on top
# The whole session rides on one access token: ending it mid-run would turn every later case into a 401.
# Both sign-out operations are therefore fuzzed by nothing and checked by test_sign_out_operations below.
SIGN_OUT = ("DELETE /api/portal/v1/session", "POST /api/portal/v1/session/logout")
LOCAL_HOOK = "http://127.0.0.1:9/fuzz-hook"  # the discard port: nothing listens, nothing leaves this machine
URL = re.compile(URL_PATTERN)
VALID_IDS = {"vat_id": "DE136695976", "iban": "DE89370400440532013000", "bic": "COBADEFFXXX"}
VALID_PHONE = "+1 212 555 0100"  # with its country code: one a phone could dial in any client's country
EXERCISED: dict[str, int] = {}  # "METHOD path": the cases sent to it


SENT: dict[str, int] = {}  # "METHOD path": the cases sent


def credential(case, token: str) -> dict:
    """The run's credential, except on a case whose point is a header left out or made invalid (a missing
    Authorization among them): that one goes as generated."""
    meta = case.meta
    negative_header = meta is not None and any(
        location == ParameterLocation.HEADER and component.mode.is_negative
        for location, component in meta.components.items()
    )
    return {} if negative_header else {"Authorization": f"Bearer {token}"}


def with_valid_ids_and_phones(body: dict) -> None:
    """Each id given its check digits, and each phone number one a phone could dial (`format: phone`)."""
    legal = (body.get("settings") or {}).get("legal") if isinstance(body.get("settings"), dict) else None
    for holder, key in [
        (body, "vat_id"),
        (body, "iban"),
        *((legal, k) for k in ("vat_id", "iban", "bic") if isinstance(legal, dict)),
    ]:
        if isinstance(holder.get(key), str) and holder[key]:
            holder[key] = VALID_IDS[key]
    contacts = body.get("contacts") if isinstance(body.get("contacts"), list) else []
    for holder in (body, *(c for c in contacts if isinstance(c, dict))):
        for key in ("phone", "company_phone"):
            if isinstance(holder.get(key), str) and holder[key]:
                holder[key] = VALID_PHONE


def exercise(case) -> bool:
    """Counts the case against its operation, and makes a generated valid request valid by the rules the
    document states in words because JSON Schema cannot: a period's or a document's dates in order, a
    booking window starting before it ends, ids with their check digits, phone numbers."""
    label = f"{case.operation.method.upper()} {case.operation.path}"
    EXERCISED[label] = EXERCISED.get(label, 0) + 1
    meta = case.meta
    SENT[label] = SENT.get(label, 0) + 1
    positive = meta is not None and meta.generation.mode.is_positive
    if not positive:
        return True
    query = case.query or {}
    if isinstance(query.get("from"), str) and isinstance(query.get("to"), str) and query["from"] > query["to"]:
        query["from"], query["to"] = query["to"], query["from"]
    body = case.body if isinstance(case.body, dict) else {}
    for first, then in (("issue_date", "due_date"), ("issue_date", "expiry_date"), ("start_date", "end_date")):
        if isinstance(body.get(first), str) and isinstance(body.get(then), str) and body[first] > body[then]:
            body[first], body[then] = body[then], body[first]
        elif isinstance(body.get(then), str) and first not in body and first != "start_date":
            body[first] = body[then]  # a due or expiry date alone is measured from today: it dates the document
    for line in body.get("lines") or [] if isinstance(body.get("lines"), list) else ():
        if isinstance(line, dict) and isinstance(line.get("tax_category"), str):
            # a VAT category goes with its rate (S taxed, the others 0%), and reverse charge needs VAT ids
            line["tax_category"] = "Z" if line["tax_category"] == "AE" else line["tax_category"]
            taxed = line["tax_category"] == "S"
            try:
                rated = float(line.get("tax_rate") or 0) > 0
            except (TypeError, ValueError):
                continue  # not a number: the request is refused on that, as it should be
            if taxed != rated:
                line["tax_rate"] = "19" if taxed else "0"
    with_valid_ids_and_phones(body)
    weekly = (
        ((body.get("settings") or {}).get("booking") or {}).get("weekly")
        if isinstance(body.get("settings"), dict)
        else None
    )
    for day, windows in (weekly or {}).items() if isinstance(weekly, dict) else ():
        weekly[day] = [w if w.split("-")[0] < w.split("-")[1] else "09:00-17:00" for w in windows]  # start first
    return True


def config(max_examples: int = EXAMPLES) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20261123,
            "generation": {"max-examples": max_examples, "deterministic": True},
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": True},  # every check schemathesis has (the CLI's --checks all)
            "warnings": False,
        }
    )


@pytest.fixture(scope="module")
def portal_account(stack):
    """A new client of the seeded workspace with one object of every kind its API has ids for."""
    made = new_portal_client(stack, "Fuzz Portal Ltd", "fuzz-portal@example.org", invoices=2, quotes=2)
    ws, client, contact = made["workspace_id"], made["client"]["id"], made["contact_id"]
    with services_rpc(stack, ws) as rpc:
        payment = rpc.billing.record_payment(
            ws, {"invoice_id": made["invoices"][1]["id"], "amount": 5000, "method": "cash"}
        )
        slots = rpc.billing.booking_options(ws, "consultation-30")["slots"]
        booking = rpc.billing.book_slot(ws, client, contact, "consultation-30", slots[-3])
        credit_note = rpc.billing.issue_credit_note(
            ws, {"client_id": client, "invoice_id": made["invoices"][0]["id"], "amount": 700, "reason": "Fuzzing"}
        )
    yield {
        "token": bearer_token(stack, "fuzz-portal@example.org"),
        "ids": {
            "invoices": made["invoices"][0]["id"],
            "quotes": made["quotes"][0]["id"],
            "credit-notes": credit_note["id"],
            "payments": payment["id"],
            "bookings": booking["id"],
            "booking-links": "consultation-30",
        },
    }
    forget_guesses(stack)  # POST /session was fuzzed with made-up tokens: auth counted them against us


@pytest.fixture(scope="module")
def admin_account(stack):
    """A workspace of its own, made as an operator makes one, with a key and one object of every kind."""
    ws = portalctl(stack, "workspace", "create", "--name", "Fuzz Admin", "--email", "fuzz@admin.example.org")["id"]
    key = portalctl(stack, "key", "create", "--workspace", ws, "--name", "schemathesis")["key"]
    api = Api(stack.url, key)
    client = api(
        "POST",
        "/clients",
        {"name": "Fuzz Client", "contacts": [{"email": "fuzz-client@example.org", "portal_access": True}]},
        expect=201,
    ).json()
    invoice = api(
        "POST",
        "/invoices",
        {
            "client_id": client["id"],
            "send": True,
            "lines": [{"description": "Fuzzing", "quantity": 2, "unit_price": 5000}],
        },
        expect=201,
    ).json()
    quote = api(
        "POST",
        "/quotes",
        {"client_id": client["id"], "send": True, "lines": [{"description": "Plan", "unit_price": 900}]},
        expect=201,
    ).json()
    recurring = api(
        "POST",
        "/recurring-invoices",
        {
            "client_id": client["id"],
            "frequency": "monthly",
            "start_date": (date.today() + timedelta(days=30)).isoformat(),
            "lines": [{"description": "Care", "unit_price": 100}],
        },
        expect=201,
    ).json()
    api(
        "PATCH",
        "/workspace",
        {"settings": {"booking_links": [{"id": "fuzz", "name": "Fuzz call", "duration_minutes": 20}]}},
        expect=200,
    )
    with services_rpc(stack, ws) as rpc:
        slot = rpc.billing.booking_options(ws, "fuzz")["slots"][0]
        booking = rpc.billing.book_slot(ws, client["id"], client["contacts"][0]["id"], "fuzz", slot)
        card = _card_payment(stack, rpc, ws, client["id"])  # /payments/{id} are card payments (refunds)
        dispute = rpc.billing.raise_invoice_dispute(
            ws, client["id"], client["contacts"][0]["id"], "Fuzz", invoice["id"], "Fuzzing the resolution"
        )
    ids = {
        "clients": client["id"],
        "contacts": client["contacts"][0]["id"],
        "invoices": invoice["id"],
        "payments": card["id"],
        "quotes": quote["id"],
        "recurring-invoices": recurring["id"],
        "bookings": booking["id"],
        "invoice-disputes": dispute["id"],
    }
    webhooks = any(route.path == "/webhooks" for route in ADMIN_ROUTES)
    if webhooks:
        ids["webhooks"] = api("POST", "/webhooks", {"url": LOCAL_HOOK, "event_types": ["*"]}, expect=201).json()["id"]
    yield {"key": key, "workspace_id": ws, "ids": ids}
    if webhooks:  # no deliveries keep retrying after the run
        hooks = api("GET", "/webhooks", expect=200).json()
        for hook in hooks if isinstance(hooks, list) else hooks["items"]:
            api("DELETE", f"/webhooks/{hook['id']}")


# The documents are built in-process from the same route tables the gateway serves them from (and
# test_the_served_documents_are_the_ones_fuzzed checks they are the same), so the operations are known when
# pytest collects: one test per operation. (Schemathesis' lazy `from_fixture` loader does not run on pytest 9.)
portal = schemathesis.openapi.from_dict(portal_openapi(), config=config()).exclude(
    func=lambda ctx: f"{ctx.operation.method.upper()} {ctx.operation.path}" in SIGN_OUT
)
admin = schemathesis.openapi.from_dict(admin_openapi(), config=config())


def use_real_id(case, ids: dict, prefix: str) -> None:
    """Half the generated {id}s (picked by a hash of the id, so runs repeat) become the account's own
    object of the path's kind (its first segment names it); a kind without one keeps generated ids.
    (Not a @given strategy: with one, schemathesis skips its coverage phase of boundary values.)"""
    generated = (case.path_parameters or {}).get("id")
    kind = case.path.removeprefix(prefix).split("/")[1]
    if isinstance(generated, str) and kind in ids and zlib.crc32(generated.encode("utf-8", "surrogatepass")) % 2:
        case.path_parameters["id"] = ids[kind]


@portal.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_portal_api_conforms_to_its_document(case, stack, portal_account):
    use_real_id(case, portal_account["ids"], PORTAL)
    if exercise(case):
        case.call_and_validate(base_url=stack.url, headers=credential(case, portal_account["token"]), timeout=30)


def keep_webhooks_local(case) -> None:
    """documents POSTs events to every webhook URL a workspace subscribes: a made-up URL could be any host
    on the internet, so a subscription the fuzzing creates or changes always points at loopback. (A URL the
    document refuses stays as it is: the server refuses it, and nothing is subscribed.)"""
    if isinstance(case.body, dict) and isinstance(case.body.get("url"), str) and URL.match(case.body["url"]):
        case.body["url"] = LOCAL_HOOK


@admin.parametrize()
@settings(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_admin_api_conforms_to_its_document(case, stack, admin_account):
    use_real_id(case, admin_account["ids"], ADMIN)
    keep_webhooks_local(case)
    if exercise(case):
        case.call_and_validate(base_url=stack.url, headers=credential(case, admin_account["key"]), timeout=30)


@pytest.mark.parametrize("prefix,document", [(PORTAL, portal_openapi), (ADMIN, admin_openapi)])
def test_the_served_documents_are_the_ones_fuzzed(stack, prefix, document):
    served = requests.get(f"{stack.url}{prefix}/openapi.json")
    assert served.status_code == 200 and served.json() == json.loads(json.dumps(document()))


def test_sign_out_operations(stack):
    """The two operations the fuzzing leaves out: each ends its own session, on every gateway worker
    within a second, and only it."""
    new_portal_client(stack, "Fuzz Sign Out Ltd", "fuzz-signout@example.org")
    tokens = [bearer_token(stack, "fuzz-signout@example.org") for _ in range(3)]
    auth = [{"Authorization": f"Bearer {t}"} for t in tokens]
    me = f"{stack.url}{PORTAL}/me"
    gone = requests.delete(f"{stack.url}{PORTAL}/session", headers=auth[0])
    assert gone.status_code == 204 and not gone.content
    refused_within(lambda: requests.get(me, headers=auth[0]))
    assert requests.get(me, headers=auth[1]).status_code == 200  # only that session ended
    assert requests.post(f"{stack.url}{PORTAL}/session/logout", headers=auth[1]).status_code == 204
    refused_within(lambda: requests.get(me, headers=auth[1]))
    assert requests.get(me, headers=auth[2]).status_code == 200
    bad = requests.delete(f"{stack.url}{PORTAL}/session", headers=auth[2], params={"everywhere": "maybe"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json"
    assert requests.get(me, headers=auth[2]).status_code == 200
    assert (
        requests.delete(f"{stack.url}{PORTAL}/session", headers=auth[2], params={"everywhere": "true"}).status_code
        == 204
    )
    refused_within(lambda: requests.get(me, headers=auth[2]))
    for path, method in (("/session", "DELETE"), ("/session/logout", "POST")):  # a spent token: 401, not 5xx
        answer = refused_within(lambda: requests.request(method, f"{stack.url}{PORTAL}{path}", headers=auth[0]))
        assert answer.status_code == 401 and answer.headers["content-type"] == "application/problem+json"


def stored(stack) -> dict:
    """What the refused requests below would have written (refunds the fuzzing made may still be
    arriving in billing's other tables, by event)."""
    return {
        table: digest
        for table, digest in snapshot(stack.databases["billing"]).items()
        if table in ("reviews", "comments", "clients", "contacts")
    }


def test_what_the_fuzzing_found_stays_fixed(stack, portal_account, admin_account):
    """Each was a 5xx or an undocumented answer: now a clear 4xx problem that changes nothing."""
    portal_auth = {"Authorization": f"Bearer {portal_account['token']}"}
    admin_api = Api(stack.url, admin_account["key"])
    # an empty PATCH was an UPDATE with nothing to SET (500): now it changes nothing and says so
    recurring = f"/recurring-invoices/{admin_account['ids']['recurring-invoices']}"
    assert admin_api("PATCH", recurring, {}, expect=200).json() == admin_api("GET", recurring, expect=200).json()
    before = stored(stack)
    # NUL (and unpaired surrogates) in JSON text reached PostgreSQL, which cannot store them (502)
    for method, url, body, field in (
        ("POST", f"{PORTAL}/reviews", '{"rating": 4, "message": "a\\u0000b"}', "message"),
        ("POST", f"{PORTAL}/invoices/{portal_account['ids']['invoices']}/comments", '{"body": "\\ud800"}', "body"),
        ("PATCH", f"{ADMIN}/clients/{admin_account['ids']['clients']}", '{"name": "x\\u0000"}', "name"),
    ):
        auth = portal_auth if url.startswith(PORTAL) else {"Authorization": f"Bearer {admin_account['key']}"}
        answer = requests.request(
            method, stack.url + url, data=body, headers={**auth, "Content-Type": "application/json"}
        )
        assert answer.status_code == 422, (url, answer.text)
        assert answer.headers["content-type"] == "application/problem+json" and field in answer.json()["errors"]
    # ...and %00 in a path or a query string, for the APIs and the pages alike
    for url, headers in (
        (f"{PORTAL}/invoices/%00", portal_auth),
        (f"{PORTAL}/invoices?search=a%00", portal_auth),
        (f"{ADMIN}/invoices?search=%00", {"Authorization": f"Bearer {admin_account['key']}"}),
    ):
        answer = requests.get(stack.url + url, headers=headers)
        assert answer.status_code == 400 and answer.headers["content-type"] == "application/problem+json", url
    browser = sign_in(stack, "fuzz-portal@example.org")
    assert browser.get(f"{stack.url}/invoices?search=%00").status_code == 400
    sent = stack.outbox.count("billing@acme.example")
    form = browser.post(f"{stack.url}/contact", data={"subject": "Hi\x00", "message": "there"})
    assert form.status_code == 400 and "text/html" in form.headers["content-type"]
    # a value outside a query parameter's enum is a 400 the document now declares
    answer = requests.get(f"{stack.url}{PORTAL}/invoices", params={"status": "bogus"}, headers=portal_auth)
    assert answer.status_code == 400 and "400" in portal_openapi()["paths"][f"{PORTAL}/invoices"]["get"]["responses"]
    assert stored(stack) == before
    time.sleep(0.5)  # an email, were one sent, would be in the outbox by now
    assert stack.outbox.count("billing@acme.example") == sent


def test_every_operation_but_the_sign_outs_was_fuzzed():
    """Runs after the fuzzing tests above (pytest keeps the file's order): each documented operation of both
    APIs got its generated cases, except the two that end the session the run rides on."""
    documented = {
        f"{method.upper()} {path}"
        for document in (portal_openapi(), admin_openapi())
        for path, operations in document["paths"].items()
        for method in operations
    }
    assert set(SIGN_OUT) <= documented
    print(
        f"\n{sum(EXERCISED.values())} cases generated, {sum(SENT.values())} sent, over {len(EXERCISED)} of "
        f"{len(documented)} operations"
    )
    assert set(EXERCISED) == documented - set(SIGN_OUT)
    assert len(EXERCISED) == len(documented) - len(SIGN_OUT)

"""Paying by bank (SEPA Direct Debit) end to end, over HTTP, against the running services, RabbitMQ,
PostgreSQL and localstripe with its SEPA adapter (deploy/localstripe_sepa.py): a debit is processing
until the test lets the bank settle it, so nothing here races a timer. Good and failing IBANs, a bad
IBAN refused before Stripe, mandate records, saved accounts, autopay with its pre-notification, and
Stripe's events in any order and repeated. After every test, billing's ledger equals what localstripe
charged, per client."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.conftest import business_today, services_rpc, sign_in
from tests.e2e.payments_support import (
    assert_ledger_matches_stripe,
    attempt_status,
    deliver,
    query,
    start,
    stripe_client,
    wait_until,
)
from tests.e2e.test_portal_api import API, bearer_token

pytestmark = pytest.mark.e2e

IBAN_OK, IBAN_FAILS = "DE89 3704 0044 0532 0130 00", "DE62370400440532013001"


@pytest.fixture(autouse=True)
def held_debits(stack):
    """Debits stay processing until `settle` lets the bank answer; then the ledger check."""
    requests.post(f"{stack.env['STRIPE_API_BASE']}/_config/sepa", json={"hold": True}, timeout=10).raise_for_status()
    yield
    requests.post(f"{stack.env['STRIPE_API_BASE']}/_config/sepa", json={"hold": False}, timeout=10)
    assert_ledger_matches_stripe(stack)


def settle(stack, attempt_id: str) -> None:
    [(intent,)] = query(stack, "payments", "SELECT payment_intent_id FROM attempts WHERE id = %s", attempt_id)
    assert intent, "the debit has no PaymentIntent"
    url = f"{stack.env['STRIPE_API_BASE']}/_config/sepa/settle/{intent}"
    requests.post(url, timeout=10).raise_for_status()


def euro_client(stack, name: str, email: str, invoices: int = 1, amount: int = 12000) -> dict:
    """A EUR client of the seeded workspace with a portal contact and sent invoices."""
    workspace_id = query(stack, "billing", "SELECT id FROM workspaces WHERE name = 'Acme Studio'")[0][0]
    with services_rpc(stack, workspace_id) as rpc:
        client = rpc.billing.create_client(
            workspace_id,
            {
                "name": name,
                "currency": "EUR",
                "contacts": [{"email": email, "name": name.split()[0], "is_primary": True, "portal_access": True}],
            },
        )
        made = {
            "workspace_id": workspace_id,
            "client": client,
            "invoices": [
                rpc.billing.create_invoice(
                    workspace_id,
                    {
                        "client_id": client["id"],
                        "send": True,
                        "lines": [{"description": f"{name} work {i}", "quantity": 1, "unit_price": amount}],
                    },
                )
                for i in range(invoices)
            ],
        }
    wait_until(
        lambda: query(stack, "auth", "SELECT count(*) FROM contacts WHERE email = %s AND portal_access", email)[0][0],
        what="auth to learn the contact",
    )
    return made


def attempt_of(response) -> str:
    assert response.status_code == 303, response.text
    return response.headers["Location"].rsplit("/", 1)[1]


def pay_by_bank(session, stack, attempt_id: str, iban: str = IBAN_OK, **extra) -> requests.Response:
    form = {
        "holder_name": "Erika Mustermann",
        "email": "erika@example.com",
        "iban": iban,
        "accept_mandate": "1",
        **extra,
    }
    return session.post(f"{stack.url}/pay/{attempt_id}/bank", data=form, allow_redirects=False)


def invoice_page(session, stack, invoice_id: str) -> str:
    return session.get(f"{stack.url}/invoices/{invoice_id}").text


def debit_status(stack, invoice_id: str) -> str:
    return query(stack, "billing", "SELECT status FROM invoices WHERE id = %s", invoice_id)[0][0]


def test_a_good_iban_is_processing_until_the_bank_settles_then_the_invoice_is_paid(stack):
    made = euro_client(stack, "Gutbank GmbH", "gutbank@example.com")
    invoice = made["invoices"][0]
    session = sign_in(stack, "gutbank@example.com")
    attempt_id = attempt_of(start(session, stack, invoice=invoice["id"]))
    page = session.get(f"{stack.url}/pay/{attempt_id}").text
    assert "SEPA Direct Debit" in page and "Acme Studio and Stripe" in page  # the mandate names the creditor
    answer = pay_by_bank(session, stack, attempt_id, save="1")
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/pay/{attempt_id}/done")
    assert attempt_status(session, stack, attempt_id) == "processing"
    # Processing on the invoice, the payments page and the dashboard, and the outstanding figure apart.
    wait_until(lambda: "processing with your bank" in invoice_page(session, stack, invoice["id"]), what="billing")
    page = invoice_page(session, stack, invoice["id"])
    assert "Pay now" not in page and "€120.00" in page
    assert "Processing" in session.get(f"{stack.url}/payments").text
    dashboard = session.get(f"{stack.url}/dashboard").text
    assert re.search(r"Of which €120.00 is processing", dashboard)
    # A second payment of the invoice while the debit is with the bank is refused, and nothing starts.
    again = session.get(f"{stack.url}/pay", params={"invoice": invoice["id"]})
    assert again.status_code == 409 and "still processing" in again.text
    # The mandate: recorded, emailed with its reference.
    [(reference, ip, agent, version, status)] = query(
        stack,
        "payments",
        "SELECT reference, ip_address, user_agent, text_version, status FROM mandates WHERE client_id = %s",
        made["client"]["id"],
    )
    assert ip and agent.startswith("python-requests") and version == "sepa-core-2026-12" and status == "active"
    [copy] = stack.outbox.wait_for("gutbank@example.com", subject="direct debit mandate")
    assert reference in copy.get_body(("plain",)).get_content()
    assert not stack.outbox.count("gutbank@example.com", "Payment received")
    settle(stack, attempt_id)
    wait_until(lambda: debit_status(stack, invoice["id"]) == "paid", what="the debit to settle")
    wait_until(lambda: attempt_status(session, stack, attempt_id) == "succeeded", what="the attempt")
    assert "processing with your bank" not in invoice_page(session, stack, invoice["id"])
    stack.outbox.wait_for("gutbank@example.com", subject="Payment received", timeout=60)  # a PDF is rendered
    [(method,)] = query(stack, "billing", "SELECT method FROM payments WHERE id = %s", attempt_id)
    assert method == "sepa_debit"


def test_the_failing_iban_settles_as_a_failure_and_the_invoice_reopens_with_an_email(stack):
    made = euro_client(stack, "Pleite KG", "pleite@example.com")
    invoice = made["invoices"][0]
    session = sign_in(stack, "pleite@example.com")
    attempt_id = attempt_of(start(session, stack, invoice=invoice["id"]))
    assert pay_by_bank(session, stack, attempt_id, iban=IBAN_FAILS).status_code == 303
    wait_until(lambda: "processing with your bank" in invoice_page(session, stack, invoice["id"]), what="billing")
    settle(stack, attempt_id)
    wait_until(lambda: attempt_status(session, stack, attempt_id) == "failed", what="the bank's failure")
    [mail] = stack.outbox.wait_for("pleite@example.com", subject="did not go through")
    text = mail.get_body(("plain",)).get_content()
    assert "insufficient funds" in text and f"/pay?invoice={invoice['id']}" in text
    wait_until(
        lambda: "processing with your bank" not in invoice_page(session, stack, invoice["id"]),
        what="the invoice to reopen",
    )
    assert f'href="/pay?invoice={invoice["id"]}"' in invoice_page(session, stack, invoice["id"])  # Pay now, again
    assert debit_status(stack, invoice["id"]) in ("sent", "viewed")
    # Open again: it can be paid (a new attempt), and nothing was recorded in the ledger.
    assert start(session, stack, invoice=invoice["id"]).status_code == 303
    assert query(stack, "billing", "SELECT count(*) FROM payments WHERE client_id = %s", made["client"]["id"]) == [(0,)]


def test_a_bad_iban_or_no_accepted_mandate_is_refused_before_stripe_is_called(stack):
    made = euro_client(stack, "Tippfehler AG", "tippfehler@example.com")
    session = sign_in(stack, "tippfehler@example.com")
    attempt_id = attempt_of(start(session, stack, invoice=made["invoices"][0]["id"]))
    stripe = stripe_client(stack)
    before = (
        len(stripe.v1.setup_intents.list({"limit": 100}).data),
        len(stripe.v1.customers.list({"limit": 100}).data),
    )
    cases = {
        "checksum": ({"iban": "DE89 3704 0044 0532 0130 01"}, "IBAN is not valid"),
        "gibberish": ({"iban": "not an iban"}, "IBAN is not valid"),
        "outside SEPA": ({"iban": "BR1500000000000010932840814P2"}, "SEPA"),
        "no mandate": ({"accept_mandate": ""}, "Accept the direct debit mandate"),
        "no holder": ({"holder_name": " "}, "account holder"),
        "bad email": ({"email": "nobody"}, "email"),
    }
    for name, (override, words) in cases.items():
        answer = pay_by_bank(session, stack, attempt_id, **override)
        assert answer.status_code == 422, (name, answer.status_code)
        assert words in answer.text, name
    after = (len(stripe.v1.setup_intents.list({"limit": 100}).data), len(stripe.v1.customers.list({"limit": 100}).data))
    assert after == before
    assert query(stack, "payments", "SELECT count(*) FROM mandates WHERE client_id = %s", made["client"]["id"]) == [
        (0,)
    ]
    assert attempt_status(session, stack, attempt_id) == "open"
    # A USD invoice is not offered a bank account, and the payments service refuses one.
    with services_rpc(stack, made["workspace_id"]) as rpc:
        usd = rpc.billing.create_client(made["workspace_id"], {"name": "Dollar Inc", "currency": "USD"})
        with pytest.raises(Exception, match="EUR only"):
            rpc.payments.add_bank_account(
                made["workspace_id"],
                usd["id"],
                {"holder_name": "A", "email": "a@example.com", "iban": IBAN_OK},
                {"accepted": True, "ip_address": "127.0.0.1", "user_agent": "test"},
            )


def test_saved_bank_account_mandate_record_default_and_removal(stack, api_key):
    made = euro_client(stack, "Sparkasse Kunde", "sparer@example.com", invoices=0)
    session = sign_in(stack, "sparer@example.com")
    page = session.get(f"{stack.url}/payment-methods").text
    key = re.search(r'name="key" value="([0-9a-f]+)"', page).group(1)
    form = {
        "key": key,
        "holder_name": "Sven Sparer",
        "email": "sven@example.com",
        "iban": IBAN_OK,
        "accept_mandate": "1",
    }
    saved = session.post(f"{stack.url}/payment-methods/bank", data=form, allow_redirects=False)
    assert saved.status_code == 303, saved.text
    again = session.post(f"{stack.url}/payment-methods/bank", data=form, allow_redirects=False)  # a double submit
    assert again.status_code == 303
    page = session.get(f"{stack.url}/payment-methods").text
    [(pm_id, reference, contact_id)] = query(
        stack,
        "payments",
        "SELECT payment_method_id, reference, contact_id FROM mandates WHERE client_id = %s",
        made["client"]["id"],
    )
    assert reference in page and "Sven Sparer ending in 3000" in page and "Default" in page
    assert contact_id == made["client"]["contacts"][0]["id"]
    # The admin API lists the client's mandates.
    listed = requests.get(
        f"{stack.url}/api/admin/v1/clients/{made['client']['id']}/mandates",
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=15,
    )
    assert listed.status_code == 200, listed.text
    [mandate] = listed.json()
    assert mandate["reference"] == reference and mandate["status"] == "active"
    assert mandate["text_version"] == "sepa-core-2026-12" and mandate["accepted_at"]
    # Each mandate has its own reference (the fake gave every one the same).
    other = euro_client(stack, "Zweitbank GmbH", "zweit@example.com", invoices=0)
    second = sign_in(stack, "zweit@example.com")
    second_key = re.search(r'name="key" value="([0-9a-f]+)"', second.get(f"{stack.url}/payment-methods").text)
    second.post(
        f"{stack.url}/payment-methods/bank",
        data={**form, "key": second_key.group(1)},
        allow_redirects=False,
    )
    [(other_reference,)] = query(
        stack, "payments", "SELECT reference FROM mandates WHERE client_id = %s", other["client"]["id"]
    )
    assert other_reference != reference
    removed = session.post(f"{stack.url}/payment-methods/{pm_id}/remove", allow_redirects=False)
    assert removed.status_code == 303
    [(status, cancelled_at)] = query(
        stack, "payments", "SELECT status, cancelled_at FROM mandates WHERE payment_method_id = %s", pm_id
    )
    assert status == "cancelled" and cancelled_at is not None
    assert "1 cancelled mandate" in session.get(f"{stack.url}/payment-methods").text


@pytest.fixture(scope="module")
def api_key(stack):
    workspace_id = query(stack, "billing", "SELECT id FROM workspaces WHERE name = 'Acme Studio'")[0][0]
    with services_rpc(stack, workspace_id) as rpc:
        return rpc.billing.create_api_key(workspace_id, "bank debit tests")["key"]


@pytest.mark.parametrize("iban", [IBAN_OK, IBAN_FAILS])
def test_autopay_by_the_default_bank_account_announces_the_debit_first(stack, iban):
    fails = iban == IBAN_FAILS
    email = f"autodebit-{'fail' if fails else 'ok'}@example.com"
    made = euro_client(stack, f"Autodebit {'Fail' if fails else 'Ok'}", email, invoices=0)
    workspace_id = made["workspace_id"]
    session = sign_in(stack, email)
    key = re.search(r'name="key" value="([0-9a-f]+)"', session.get(f"{stack.url}/payment-methods").text).group(1)
    form = {"key": key, "holder_name": "Auto Debit", "email": email, "iban": iban, "accept_mandate": "1"}
    assert session.post(f"{stack.url}/payment-methods/bank", data=form, allow_redirects=False).status_code == 303
    with services_rpc(stack, workspace_id) as rpc:
        ws = rpc.billing.get_workspace(workspace_id)
        rpc.billing.update_workspace(workspace_id, {"settings": {**ws["settings"], "debit_notice_days": 0}})
        try:
            rpc.billing.create_recurring(
                workspace_id,
                {
                    "client_id": made["client"]["id"],
                    "frequency": "monthly",
                    "start_date": business_today().isoformat(),
                    "autopay": True,
                    "lines": [{"description": "Wartung", "quantity": 1, "unit_price": 4900}],
                },
            )
            [(invoice_id,)] = wait_until(
                lambda: query(stack, "billing", "SELECT id FROM invoices WHERE client_id = %s", made["client"]["id"]),
                what="the recurring invoice",
            )
            # The pre-notification: amount and date, before the debit is collected.
            [notice] = stack.outbox.wait_for(email, subject="will debit")
            text = notice.get_body(("plain",)).get_content()
            assert "€49.00" in text and "on or after" in text
            attempt_id = wait_until(
                lambda: query(
                    stack,
                    "payments",
                    "SELECT id FROM attempts WHERE request_key = %s AND status = 'processing'",
                    f"autopay:{invoice_id}",
                ),
                what="autopay to collect the debit",
            )[0][0]
        finally:
            rpc.billing.update_workspace(workspace_id, {"settings": ws["settings"]})
    settle(stack, attempt_id)
    if not fails:
        wait_until(lambda: debit_status(stack, invoice_id) == "paid", what="the debit to settle")
        return
    stack.outbox.wait_for(email, subject="did not go through")
    time.sleep(3)  # autopay runs every second in the test stack: it must not try again on its own
    assert query(stack, "payments", "SELECT status, tries FROM attempts WHERE id = %s", attempt_id) == [("failed", 1)]
    assert debit_status(stack, invoice_id) in ("sent", "viewed")


def test_a_debit_announced_with_lead_time_is_not_collected_before_its_date(stack):
    email = "leadtime@example.com"
    made = euro_client(stack, "Vorlauf GmbH", email, invoices=0)
    session = sign_in(stack, email)
    key = re.search(r'name="key" value="([0-9a-f]+)"', session.get(f"{stack.url}/payment-methods").text).group(1)
    form = {"key": key, "holder_name": "Vor Lauf", "email": email, "iban": IBAN_OK, "accept_mandate": "1"}
    assert session.post(f"{stack.url}/payment-methods/bank", data=form, allow_redirects=False).status_code == 303
    with services_rpc(stack, made["workspace_id"]) as rpc:  # the workspace's default lead time: 3 days
        rpc.billing.create_recurring(
            made["workspace_id"],
            {
                "client_id": made["client"]["id"],
                "frequency": "monthly",
                "start_date": business_today().isoformat(),
                "autopay": True,
                "lines": [{"description": "Wartung", "quantity": 1, "unit_price": 4900}],
            },
        )
    [notice] = stack.outbox.wait_for(email, subject="will debit")
    [(invoice_id,)] = query(stack, "billing", "SELECT id FROM invoices WHERE client_id = %s", made["client"]["id"])
    time.sleep(2)  # two autopay ticks
    [(status, collect_at, created_at)] = query(
        stack,
        "payments",
        "SELECT status, collect_at, created_at FROM attempts WHERE request_key = %s",
        f"autopay:{invoice_id}",
    )
    assert status == "open" and round((collect_at - created_at).total_seconds() / 86400) == 3
    assert collect_at.date().strftime("%b") in notice.get_body(("plain",)).get_content()


def test_stripe_events_in_any_order_and_repeated_give_one_payment_and_one_receipt(stack):
    made = euro_client(stack, "Reihenfolge AG", "order@example.com")
    invoice = made["invoices"][0]
    session = sign_in(stack, "order@example.com")
    attempt_id = attempt_of(start(session, stack, invoice=invoice["id"]))
    assert pay_by_bank(session, stack, attempt_id).status_code == 303
    [(intent_id,)] = query(stack, "payments", "SELECT payment_intent_id FROM attempts WHERE id = %s", attempt_id)
    intent = stripe_client(stack).v1.payment_intents.retrieve(intent_id).to_dict()

    def event(kind: str, n: int, status: str) -> dict:
        return {
            "id": f"evt_debit_{kind}_{n}_{attempt_id[:8]}",
            "object": "event",
            "type": f"payment_intent.{kind}",
            "data": {"object": {**intent, "status": status}},
        }

    # succeeded first (built and signed here, as Stripe would send it once the bank settles), then
    # processing late, and each again: the invoice is paid once and never goes back to Processing.
    settle(stack, attempt_id)
    wait_until(lambda: attempt_status(session, stack, attempt_id) == "succeeded", what="the settlement")
    for n, (kind, status) in enumerate(
        [("succeeded", "succeeded"), ("processing", "processing"), ("succeeded", "succeeded")] * 2
    ):
        assert deliver(stack, event(kind, n, status)).status_code == 200
    wait_until(
        lambda: (
            query(
                stack,
                "payments",
                "SELECT count(*) FROM stripe_events WHERE id LIKE %s AND processed_at IS NULL",
                f"evt_debit_%_{attempt_id[:8]}",
            )[0][0]
            == 0
        ),
        what="the events to be processed",
    )
    wait_until(lambda: debit_status(stack, invoice["id"]) == "paid", what="the payment")
    time.sleep(1)
    assert query(stack, "billing", "SELECT count(*) FROM payments WHERE id = %s", attempt_id) == [(1,)]
    assert "processing with your bank" not in invoice_page(session, stack, invoice["id"])
    assert query(
        stack,
        "billing",
        "SELECT count(*) FROM processing_payments WHERE payment_id = %s AND settled_at IS NULL",
        attempt_id,
    ) == [(0,)]
    assert len(stack.outbox.wait_for("order@example.com", subject="Payment received", timeout=60)) == 1
    time.sleep(1)
    assert stack.outbox.count("order@example.com", "Payment received") == 1


def test_the_portal_json_api_adds_a_bank_account_and_lists_mandates_and_processing(stack):
    made = euro_client(stack, "Json Bank GmbH", "jsonbank@example.com")
    auth = {"Authorization": f"Bearer {bearer_token(stack, 'jsonbank@example.com')}"}

    def api(method, path, **kwargs):
        return requests.request(method, f"{stack.url}{API}{path}", headers=auth, timeout=20, **kwargs)

    body = {"holder_name": "Jana Json", "email": "jana@example.com", "iban": IBAN_OK, "accept_mandate": True}
    bad = api("POST", "/bank-accounts", json={**body, "iban": "DE00 0000 0000 0000 0000 00"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    assert "IBAN is not valid" in bad.json()["detail"]
    refused = api("POST", "/bank-accounts", json={**body, "accept_mandate": False})
    assert refused.status_code == 422 and "accept_mandate" in refused.json()["errors"]  # the schema: true only
    assert api("GET", "/mandates").json() == []
    added = [api("POST", "/bank-accounts", json={**body, "idempotency_key": "once"}) for _ in range(2)]
    assert [a.status_code for a in added] == [201, 201] and added[0].json() == added[1].json()  # added once
    mandate = added[0].json()
    assert mandate["status"] == "active" and mandate["iban_last4"] == "3000" and mandate["reference"]
    assert [m["id"] for m in api("GET", "/mandates").json()] == [mandate["id"]]
    [method] = api("GET", "/payment-methods").json()
    assert method["type"] == "sepa_debit" and method["default"] is True and method["id"] == mandate["payment_method_id"]
    # Pay the invoice with it (the HTML pay flow), then see it processing through the API.
    session = sign_in(stack, "jsonbank@example.com")
    attempt_id = attempt_of(start(session, stack, invoice=made["invoices"][0]["id"]))
    paid = session.post(
        f"{stack.url}/pay/{attempt_id}/bank", data={"bank_account": method["id"]}, allow_redirects=False
    )
    assert paid.status_code == 303, paid.text
    [debit] = wait_until(lambda: api("GET", "/processing-payments").json(), what="billing to see the debit")
    assert debit["payment_id"] == attempt_id and debit["amount"] == 12000 and debit["currency"] == "EUR"
    assert api("GET", "/dashboard").json()["processing"] == {"amount": 12000, "currency": "EUR"}
    settle(stack, attempt_id)
    wait_until(lambda: api("GET", "/processing-payments").json() == [], what="the debit to settle")
    wait_until(lambda: debit_status(stack, made["invoices"][0]["id"]) == "paid", what="the payment")


def test_pay_part_by_debit_then_pay_all_leaves_out_what_is_processing(stack):
    made = euro_client(stack, "Teilzahler GmbH", "teil@example.com", invoices=0)
    session = sign_in(stack, "teil@example.com")  # before three invoice emails with PDFs queue up ahead
    with services_rpc(stack, made["workspace_id"]) as rpc:
        first, second, third = (
            rpc.billing.create_invoice(
                made["workspace_id"],
                {
                    "client_id": made["client"]["id"],
                    "send": True,
                    "lines": [{"description": f"Teil {i}", "quantity": 1, "unit_price": 12000}],
                },
            )
            for i in range(3)
        )
    part = attempt_of(start(session, stack, invoice=first["id"], amount="50.00"))
    assert pay_by_bank(session, stack, part, save="1").status_code == 303
    [(amount,)] = query(stack, "payments", "SELECT amount FROM attempts WHERE id = %s", part)
    assert amount == 5000
    wait_until(lambda: "processing with your bank" in invoice_page(session, stack, first["id"]), what="billing")
    # Pay all: the invoice a debit is paying already is left out; the saved account pays the rest.
    rest = attempt_of(start(session, stack, all="1"))
    [(allocations,)] = query(stack, "payments", "SELECT allocations FROM attempts WHERE id = %s", rest)
    assert sorted(a["invoice_id"] for a in allocations) == sorted([second["id"], third["id"]])
    [(bank,)] = query(
        stack, "payments", "SELECT id FROM payment_methods WHERE client_id = %s AND saved", made["client"]["id"]
    )
    assert (
        session.post(f"{stack.url}/pay/{rest}/bank", data={"bank_account": bank}, allow_redirects=False).status_code
        == 303
    )
    for attempt_id in (part, rest):
        wait_until(lambda a=attempt_id: attempt_status(session, stack, a) == "processing", what="the debit")
        settle(stack, attempt_id)
    wait_until(lambda: debit_status(stack, third["id"]) == "paid", what="the debits to settle")
    assert debit_status(stack, first["id"]) == "partially_paid" and debit_status(stack, second["id"]) == "paid"


def test_another_clients_payment_or_bank_account_is_missing_and_nothing_changes(stack):
    mine = euro_client(stack, "Eigen GmbH", "eigen@example.com")
    theirs = euro_client(stack, "Fremd GmbH", "fremd@example.com")
    me, them = sign_in(stack, "eigen@example.com"), sign_in(stack, "fremd@example.com")
    their_attempt = attempt_of(start(them, stack, invoice=theirs["invoices"][0]["id"]))
    key = re.search(r'name="key" value="([0-9a-f]+)"', them.get(f"{stack.url}/payment-methods").text).group(1)
    form = {"key": key, "holder_name": "Fremd", "email": "f@example.com", "iban": IBAN_OK, "accept_mandate": "1"}
    assert them.post(f"{stack.url}/payment-methods/bank", data=form, allow_redirects=False).status_code == 303
    [(their_bank,)] = query(
        stack, "payments", "SELECT payment_method_id FROM mandates WHERE client_id = %s", theirs["client"]["id"]
    )
    before = query(stack, "payments", "SELECT count(*) FROM mandates")[0][0]
    intents = len(stripe_client(stack).v1.payment_intents.list({"limit": 100}).data)
    my_attempt = attempt_of(start(me, stack, invoice=mine["invoices"][0]["id"]))
    for answer in (
        pay_by_bank(me, stack, their_attempt),  # a new account, for their payment
        me.post(f"{stack.url}/pay/{their_attempt}/bank", data={"bank_account": their_bank}, allow_redirects=False),
        me.post(f"{stack.url}/pay/{my_attempt}/bank", data={"bank_account": their_bank}, allow_redirects=False),
        me.post(f"{stack.url}/payment-methods/{their_bank}/remove", allow_redirects=False),
        me.post(f"{stack.url}/payment-methods/{their_bank}/default", allow_redirects=False),
    ):
        assert answer.status_code == 404, (answer.request.url, answer.status_code)
        assert "Fremd" not in answer.text
    assert query(stack, "payments", "SELECT count(*) FROM mandates")[0][0] == before
    assert query(stack, "payments", "SELECT status FROM mandates WHERE payment_method_id = %s", their_bank) == [
        ("active",)
    ]
    assert attempt_status(them, stack, their_attempt) == "open" and attempt_status(me, stack, my_attempt) == "open"
    assert len(stripe_client(stack).v1.payment_intents.list({"limit": 100}).data) == intents
    assert "Fremd" not in me.get(f"{stack.url}/payment-methods").text

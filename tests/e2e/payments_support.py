"""What the payment tests share: the Stripe SDK pointed at the stack's localstripe, what Stripe.js
does in a browser (confirming a SetupIntent with a card), signed webhook deliveries, and the ledger
check (payments recorded in billing == what localstripe charged, per client)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import psycopg2
import requests
import stripe

from tests.integration.test_services import wait_until  # noqa: F401 - shared with the payment tests

CARD_OK, CARD_DECLINED, CARD_3DS = "4242424242424242", "4000000000000341", "4000002760003184"


def stripe_client(stack) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_localstripe", base_addresses={"api": stack.env["STRIPE_API_BASE"]})


def confirm_setup(stack, client_secret: str, number: str) -> dict:
    """Stripe.js's confirmCardSetup, as localstripe's stand-in does it: with the publishable key."""
    seti = client_secret.split("_secret_")[0]
    url = f"{stack.env['STRIPE_API_BASE']}/v1/setup_intents/{seti}/confirm"
    body = {
        "key": "pk_test_localstripe",
        "client_secret": client_secret,
        "use_stripe_sdk": True,
        "payment_method_data": {
            "type": "card",
            "card": {"number": number, "exp_month": "12", "exp_year": "2031", "cvc": "123"},
        },
    }
    answer = requests.post(url, data=json.dumps(body), timeout=10).json()
    if answer.get("status") == "requires_action":  # 3-D Secure: "Complete authentication"
        answer = requests.post(url, data=json.dumps({k: body[k] for k in ("key", "client_secret")}), timeout=10).json()
    return answer


def csrf_of(session, page_url: str) -> str:
    """The token a page hands its script (data-csrf), as pay.js reads it."""
    return re.search(r'data-csrf="([0-9a-f]+)"', session.get(page_url).text).group(1)


def start(session, stack, **form) -> requests.Response:
    """The review page, then "Proceed to payment" with the page's own key."""
    query = {"invoice": form.pop("invoice", None), "all": form.pop("all", None)}
    review = session.get(f"{stack.url}/pay", params={k: v for k, v in query.items() if v})
    assert review.status_code == 200, review.text
    key = re.search(r'name="key" value="([0-9a-f]+)"', review.text).group(1)
    data = {"key": key, **{k: v for k, v in query.items() if v}, **form}
    return session.post(f"{stack.url}/pay", data=data, allow_redirects=False)


def pay_card(session, stack, attempt_id: str, number: str = CARD_OK, save: bool = False) -> dict:
    """What pay.js does: a SetupIntent, Stripe.js confirms it with the card, then our confirm."""
    page = f"{stack.url}/pay/{attempt_id}"
    headers = {"X-CSRF-Token": csrf_of(session, page), "Accept": "application/json"}
    setup = session.post(f"{page}/setup", json={}, headers=headers)
    assert setup.status_code == 200, setup.text
    confirmed = confirm_setup(stack, setup.json()["client_secret"], number)
    if confirmed.get("status") != "succeeded":
        return {"status": "setup_failed", "error": confirmed.get("error", {})}
    answer = session.post(f"{page}/confirm", json={"setup_intent": confirmed["id"], "save": save}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def paid_by_card(session, stack, invoice_id: str) -> str:
    """Pay one invoice with a new card and wait for Stripe's event to settle it; the attempt id."""
    attempt_id = start(session, stack, invoice=invoice_id).headers["Location"].rsplit("/", 1)[1]
    pay_card(session, stack, attempt_id)
    wait_until(lambda: attempt_status(session, stack, attempt_id) == "succeeded", what="the webhook")
    return attempt_id


def save_card(session, stack, number: str) -> dict:
    headers = {"X-CSRF-Token": csrf_of(session, f"{stack.url}/payment-methods"), "Accept": "application/json"}
    setup = session.post(f"{stack.url}/payment-methods/setup", json={}, headers=headers).json()
    confirmed = confirm_setup(stack, setup["client_secret"], number)
    answer = session.post(f"{stack.url}/payment-methods", json={"setup_intent": confirmed["id"]}, headers=headers)
    assert answer.status_code == 201, answer.text
    return answer.json()


def attempt_status(session, stack, attempt_id: str) -> str:
    return session.get(f"{stack.url}/pay/{attempt_id}/status").json()["status"]


def signed(stack, event: dict, timestamp: int | None = None, secret: str | None = None) -> tuple[bytes, dict]:
    """A webhook delivery as Stripe signs it: HMAC-SHA256 of "<t>.<body>" with the endpoint secret."""
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if timestamp is None else timestamp
    secret = secret or stack.env["STRIPE_WEBHOOK_SECRET"]
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={timestamp},v1={signature}", "Content-Type": "application/json"}


def deliver(stack, event: dict) -> requests.Response:
    body, headers = signed(stack, event)
    return requests.post(f"{stack.url}/webhooks/stripe", data=body, headers=headers, timeout=10)


def query(stack, service: str, sql: str, *args) -> list:
    with psycopg2.connect(stack.databases[service]) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall()


def recorded_by_client(stack) -> dict[str, int]:
    return dict(
        query(
            stack, "billing", "SELECT client_id, sum(amount) FROM payments WHERE source = 'stripe' GROUP BY client_id"
        )
    )


def charged_by_client(stack) -> dict[str, int]:
    """What localstripe says each client's Stripe Customer was charged (succeeded charges)."""
    client = stripe_client(stack)
    totals = {}
    for client_id, customer in query(stack, "payments", "SELECT client_id, stripe_customer_id FROM customers"):
        charges = client.v1.charges.list({"customer": customer, "limit": 100}).data
        total = sum(c.amount for c in charges if c.status == "succeeded")
        if total:
            totals[client_id] = total
    return totals


def assert_ledger_matches_stripe(stack, timeout: float = 20) -> None:
    """Every charge reaches billing's ledger exactly once: compared per client, after settling."""
    deadline = time.monotonic() + timeout
    while True:
        recorded, charged = recorded_by_client(stack), charged_by_client(stack)
        if recorded == charged or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert recorded == charged, f"billing recorded {recorded}, localstripe charged {charged}"

"""Paying invoices by card in the portal, saved cards, and Stripe's webhook.

The pages: review what will be paid (`/pay`), enter or choose a card (`/pay/<attempt>`), and the
confirmation that shows the real state until Stripe's event is processed (`/pay/<attempt>/done`).
Card details never touch our servers: Stripe.js collects them into a SetupIntent, and the payments
service charges the resulting card with a PaymentIntent.
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import falcon
import stripe
from babel.numbers import NumberFormatError, get_currency_precision, get_decimal_symbol, get_group_symbol, parse_decimal

from chassis.errors import Invalid
from chassis.i18n import Message
from chassis.money import Money
from services.gateway.forms import field
from services.gateway.pages.base import Portal
from services.gateway.views import reading_locale


def _json_body(req) -> dict:
    body = req.get_media(default_when_empty={}) if (req.content_type or "").startswith("application/json") else {}
    if not isinstance(body, dict):
        raise falcon.HTTPBadRequest(title="Send a JSON object")
    return body


def _json_text(body: dict, name: str) -> str | None:
    """A text field of the pay page's JSON (None when left out or empty), or a 422 naming it."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise Invalid(f"{name} is text.", fields={name: "not text"})
    return value or None


def _json_flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise Invalid(f"{name} is true or false.", fields={name: "not a boolean"})
    return value


# What the amount field takes, by the currency's decimals (Babel's): shown as the field's error.
AMOUNT_FORMATS = {
    0: "Enter the amount as a whole number, like 150.",
    2: "Enter the amount as a number with at most two decimals, like 150.00.",
    3: "Enter the amount as a number with at most three decimals, like 150.000.",
    4: "Enter the amount as a number with at most four decimals, like 150.0000.",
}
AMOUNT_DIGITS = 12  # before the decimals: far above any balance, and no number of a thousand digits


# billing's field errors for an amount it refuses (payment_plans._card_amount)
AMOUNT_REFUSALS = ("more than the balance", "below the minimum")


def amount_format(currency: str) -> str:
    return AMOUNT_FORMATS.get(get_currency_precision(currency), AMOUNT_FORMATS[2])


# A German "10.50", or an English page's "10,50": the other language's decimal separator, refused
# with the amount written the page's way
MISPLACED_SEPARATOR = "Enter the amount written like %(amount)s, with “%(separator)s” before the decimals."


# "0" or "0,00": the field's hint says to leave it empty for the whole balance
NO_AMOUNT = "Enter an amount above zero, or leave the field empty to pay the whole balance."


def parse_amount(text: str, currency: str, locale: str) -> int | None:
    """ "1,500.00" (or "1.500,00" in German) to minor units; empty means the whole balance. Only digits,
    the locale's decimal separator with at most the currency's decimals, and its thousands separator
    where it belongs (Babel's strict parsing): nothing is rounded away, and what Decimal or Babel would
    also read (1e3, -5, nan, 1,2,3) is refused. A German "10.50" is neither ten and a half nor a
    thousand and fifty: it is refused with the amount written the page's way ("10,50")."""
    text = (text or "").strip()
    if not text:
        return None
    places = get_currency_precision(currency)
    decimal, group = get_decimal_symbol(locale), get_group_symbol(locale)
    value = _strict_amount(text, locale, places, decimal, group)
    if value is None:
        swapped = text.translate(str.maketrans(decimal + group, group + decimal))
        if places and decimal in swapped and _strict_amount(swapped, locale, places, decimal, group) is not None:
            raise Invalid(Message(MISPLACED_SEPARATOR, amount=swapped, separator=decimal), amount="not an amount")
        raise Invalid(amount_format(currency), amount="not an amount")
    if not value:
        raise Invalid(NO_AMOUNT, amount="must be positive")
    return Money.from_decimal(value, currency).amount


def _strict_amount(text: str, locale: str, places: int, decimal: str, group: str) -> Decimal | None:
    """The amount `text` writes in the locale's way, or None: a digit first, then digits and the
    thousands separator, then at most `places` decimals after the decimal separator; the grouping
    as the locale groups (Babel's strict parsing), and at most AMOUNT_DIGITS digits before them."""
    decimals = f"(?:{re.escape(decimal)}[0-9]{{1,{places}}})?" if places else ""
    if not re.fullmatch(f"[0-9][0-9{re.escape(group)}]*{decimals}", text):
        return None
    if sum(c.isdigit() for c in text.split(decimal)[0]) > AMOUNT_DIGITS:
        return None
    try:
        return parse_decimal(text, locale=locale, strict=True)
    except NumberFormatError:
        return None


def payment_request(params: dict, currency: str | None = None, locale: str = "en_US") -> dict:
    """The selection from the pay page's query or form: invoice ids, or all; an amount; balance use."""
    invoices = params.get("invoice") or []
    invoices = [invoices] if isinstance(invoices, str) else list(invoices)
    if len(invoices) > 100 or not all(isinstance(i, str) and 0 < len(i) <= 64 for i in invoices):
        raise Invalid("Choose the invoices to pay.", invoice="not invoice ids")
    request: dict[str, Any] = {
        "invoice_ids": invoices or None,
        "apply_balance": params.get("apply_balance") in ("1", "on", "true"),
    }
    if request["invoice_ids"] is None and params.get("all") != "1":
        raise Invalid("Choose the invoices to pay.", invoice="required")
    if currency and params.get("amount"):
        if not isinstance(params["amount"], str):
            raise Invalid(amount_format(currency), amount="not an amount")
        request["amount"] = parse_amount(params["amount"], currency, locale)
    return request


class PayReview(Portal):
    """Step 1: what will be paid, with a partial amount and credit where allowed; nothing is charged."""

    def _review(
        self, req, resp, session, params: dict, status: int = 200, error: str | None = None, refusal: str | None = None
    ):
        ws, client_id = session["workspace_id"], session["client_id"]
        client = self.billing(req).get_client(ws, client_id)
        request = payment_request({**params, "amount": None})
        plan = self.billing(req).plan_payment(ws, client_id, {**request, "apply_balance": False})
        apply_balance = params.get("apply_balance") in ("1", "on")
        self.page(
            req,
            resp,
            "pay_review.html",
            session,
            status=status,
            client=client,
            plan=plan,
            error=error,
            refusal=refusal,
            # what is owed once the credit the client ticked is used: the most a card pays
            owed=plan["amount"] - (plan.get("balance_usable", 0) if apply_balance else 0),
            key=uuid.uuid4().hex,
            selection=params,
            amount=params.get("amount", ""),
            apply_balance=apply_balance,
        )

    def on_get(self, req, resp):
        session = self.session(req, resp)
        params = {"invoice": req.get_param_as_list("invoice") or [], "all": req.get_param("all") or ""}
        self._review(req, resp, session, params)

    def on_post(self, req, resp):
        session = self.session(req, resp)
        form = self.form(req)
        client = self.billing(req).get_client(session["workspace_id"], session["client_id"])
        try:
            # the amount as typed on the page, with the separators the page showed
            reader = reading_locale(session.get("locale"), client["locale"])
            request = payment_request(form, client["currency"], reader)
            attempt = self.payments(req).start_payment(
                session["workspace_id"],
                session["client_id"],
                request,
                field(form, "key", 100),
            )
        except Invalid as exc:  # shown on the review page, with what the client entered
            params = {k: form.get(k) for k in ("invoice", "all", "amount", "apply_balance")}
            params["invoice"] = params["invoice"] or []
            # billing's refusals of the amount, which the page words in its own language with its figures
            refusal = exc.fields.get("amount") if exc.fields.get("amount") in AMOUNT_REFUSALS else None
            return self._review(req, resp, session, params, status=422, error=exc.detail, refusal=refusal)
        if attempt["status"] != "succeeded":  # the receipt will be this contact's own, whatever it chose
            self.billing(req).note_payment_payer(
                session["workspace_id"], session["client_id"], attempt["id"], session["contact_id"]
            )
        done = attempt["status"] == "succeeded"
        raise falcon.HTTPSeeOther(f"/pay/{attempt['id']}" + ("/done" if done else ""))


class PayCard(Portal):
    """Step 2: enter a card (Stripe.js) or pick a saved one, then pay."""

    def on_get(self, req, resp, attempt_id: str):
        session = self.session(req, resp)
        ws, client_id = session["workspace_id"], session["client_id"]
        attempt = self.payments(req).get_attempt(ws, attempt_id, client_id)
        if attempt["status"] not in ("open", "failed"):
            raise falcon.HTTPSeeOther(f"/pay/{attempt_id}/done")
        methods = self.payments(req).list_cards(ws, client_id)
        cards = [m for m in methods if m.get("type", "card") == "card"]
        banks = [m for m in methods if m.get("type") == "sepa_debit"]  # offered for EUR payments
        self.page(
            req, resp, "pay_card.html", session, attempt=attempt, cards=cards, banks=banks, stripe=self.config.stripe
        )


class PayAction(Portal):
    """The pay page's script calls these with JSON: a fresh SetupIntent, the charge, and a re-check
    after the bank's authentication step."""

    def on_post_setup(self, req, resp, attempt_id: str):
        session = self.session(req, resp)
        resp.media = self.payments(req).card_setup(session["workspace_id"], session["client_id"], attempt_id)

    def on_post_confirm(self, req, resp, attempt_id: str):
        session = self.session(req, resp)
        body = _json_body(req)
        attempt = self.payments(req).confirm_attempt(
            session["workspace_id"],
            session["client_id"],
            attempt_id,
            _json_text(body, "setup_intent"),
            _json_text(body, "payment_method"),
            _json_flag(body, "save"),
        )
        resp.media = {**attempt, "next": f"/pay/{attempt_id}/done"}

    def on_post_refresh(self, req, resp, attempt_id: str):
        session = self.session(req, resp)
        attempt = self.payments(req).refresh_attempt(session["workspace_id"], session["client_id"], attempt_id)
        resp.media = {**attempt, "next": f"/pay/{attempt_id}/done"}

    def on_get_status(self, req, resp, attempt_id: str):
        session = self.session(req, resp)
        attempt = self.payments(req).get_attempt(session["workspace_id"], attempt_id, session["client_id"])
        resp.media = {"status": attempt["status"], "failure_message": attempt["failure_message"]}


class PayDone(Portal):
    """Step 3: the real state; the page script re-checks until Stripe's event has been processed."""

    def on_get(self, req, resp, attempt_id: str):
        session = self.session(req, resp)
        attempt = self.payments(req).get_attempt(session["workspace_id"], attempt_id, session["client_id"])
        self.page(req, resp, "pay_done.html", session, attempt=attempt)


class Cards(Portal):
    """Saved cards: list, add (Stripe.js SetupIntent), make default, remove."""

    def on_get(self, req, resp):
        session = self.session(req, resp)
        methods = self.payments(req).list_cards(session["workspace_id"], session["client_id"])
        self.page(
            req,
            resp,
            "cards.html",
            session,
            cards=[m for m in methods if m.get("type", "card") == "card"],
            banks=[m for m in methods if m.get("type") == "sepa_debit"],
            mandates=self.payments(req).list_mandates(session["workspace_id"], session["client_id"]),
            bank_key=uuid.uuid4().hex,
            stripe=self.config.stripe,
            notice=req.get_param("notice"),
        )

    def on_post(self, req, resp):
        session = self.session(req, resp)
        body = _json_body(req)
        card = self.payments(req).save_card(
            session["workspace_id"],
            session["client_id"],
            _json_text(body, "setup_intent") or "",
        )
        resp.status = 201
        resp.media = card

    def on_post_setup(self, req, resp):
        session = self.session(req, resp)
        resp.media = self.payments(req).card_setup(session["workspace_id"], session["client_id"])

    def on_post_default(self, req, resp, card_id: str):
        session = self.session(req, resp)
        self.payments(req).set_default_card(session["workspace_id"], session["client_id"], card_id)
        raise falcon.HTTPSeeOther("/payment-methods?" + urlencode({"notice": "default"}))

    def on_post_remove(self, req, resp, card_id: str):
        session = self.session(req, resp)
        self.payments(req).remove_card(session["workspace_id"], session["client_id"], card_id)
        raise falcon.HTTPSeeOther("/payment-methods?" + urlencode({"notice": "removed"}))


class StripeWebhook:
    """Stripe's events: the signature is checked on the raw body (and its timestamp must be recent),
    then payments processes and stores the event, once, before it answers (an event whose handling
    calls Stripe back is stored, and processed after the answer)."""

    public = True  # Stripe signs its events; there is no session

    def __init__(self, rpc, secret: str | None, tolerance: int = 300):
        self.rpc = rpc
        self.secret = secret
        self.tolerance = tolerance

    def on_post(self, req, resp):
        if not self.secret:
            raise falcon.HTTPServiceUnavailable(
                title="Webhooks not configured", description="STRIPE_WEBHOOK_SECRET is not set."
            )
        payload = req.bounded_stream.read()
        try:
            stripe.WebhookSignature.verify_header(
                payload.decode("utf-8"), req.get_header("Stripe-Signature") or "", self.secret, self.tolerance
            )
            event = json.loads(payload)
        except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError):
            raise falcon.HTTPBadRequest(
                title="Invalid signature", description="The Stripe-Signature header does not match this body."
            ) from None
        stored = self.rpc.call("payments", "receive_stripe_event", event, request_id=req.context.request_id)
        resp.media = {"received": True, "duplicate": not stored}


def add_payment_routes(app: falcon.App, rpc, config) -> None:
    app.add_route("/pay", PayReview(rpc, config))
    app.add_route("/pay/{attempt_id}", PayCard(rpc, config))
    action = PayAction(rpc, config)
    app.add_route("/pay/{attempt_id}/setup", action, suffix="setup")
    app.add_route("/pay/{attempt_id}/confirm", action, suffix="confirm")
    app.add_route("/pay/{attempt_id}/refresh", action, suffix="refresh")
    app.add_route("/pay/{attempt_id}/status", action, suffix="status")
    app.add_route("/pay/{attempt_id}/done", PayDone(rpc, config))
    cards = Cards(rpc, config)
    app.add_route("/payment-methods", cards)
    app.add_route("/payment-methods/setup", cards, suffix="setup")
    app.add_route("/payment-methods/{card_id}/default", cards, suffix="default")
    app.add_route("/payment-methods/{card_id}/remove", cards, suffix="remove")
    app.add_route("/webhooks/stripe", StripeWebhook(rpc, config.stripe.get("webhook_secret")))

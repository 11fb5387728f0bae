"""Paying by bank (SEPA Direct Debit) in the portal: a plain form, no script needed.

The client types the account holder, an email and the IBAN, and ticks the mandate text (which names
the business and Stripe as the creditor). The form posts to us, the payments service checks the IBAN
before it calls Stripe, and records the mandate with the address and browser it came from. A wrong
IBAN shows the form again with the reason, and nothing is created.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import falcon

from chassis.errors import Conflict, Invalid
from services.gateway import usecases
from services.gateway.forms import field
from services.gateway.pages.base import Portal

DEBIT_CURRENCY = "EUR"


def split_methods(methods: list[dict]) -> tuple[list[dict], list[dict]]:
    """Saved payment methods as (cards, bank accounts)."""
    cards = [m for m in methods if m.get("type", "card") == "card"]
    return cards, [m for m in methods if m.get("type") == "sepa_debit"]


def bank_form(form: dict) -> tuple[dict, bool]:
    details = {
        "holder_name": field(form, "holder_name", 200),
        "email": field(form, "email", 254),
        "iban": field(form, "iban", 64),
    }
    return details, field(form, "accept_mandate", 10) in ("1", "on", "true")


class BankForm(Portal):
    """What both bank-account forms do with a new account: add it under a new mandate, or show the
    form again with what was typed."""

    def add_account(self, req, session: dict, form: dict, **extra) -> None:
        details, accepted = bank_form(form)
        usecases.add_bank_account(
            self.payments(req),
            session,
            details,
            accepted,
            ip=self.client_ip(req),
            user_agent=req.user_agent,
            request_key=usecases.request_key(field(form, "key", 100), req.context.request_id),
            **extra,
        )

    @staticmethod
    def as_typed(form: dict) -> dict:
        return {k: form.get(k) if isinstance(form.get(k), str) else "" for k in ("holder_name", "email", "iban")}


class BankDebit(BankForm):
    """POST /pay/<attempt>/bank: debit a saved bank account, or a new one under a new mandate."""

    def _pay_page(self, req, resp, session, attempt_id: str, error: str, form: dict, status: int):
        ws, client_id = session["workspace_id"], session["client_id"]
        attempt = self.payments(req).get_attempt(ws, attempt_id, client_id)
        cards, banks = split_methods(self.payments(req).list_cards(ws, client_id))
        self.page(
            req,
            resp,
            "pay_card.html",
            session,
            status=status,
            attempt=attempt,
            cards=cards,
            banks=banks,
            stripe=self.config.stripe,
            bank_error=error,
            bank=form,
        )

    def on_post(self, req, resp, attempt_id: str):
        session = self.session(req, resp)
        ws, client_id = session["workspace_id"], session["client_id"]
        form = self.form(req)
        saved = field(form, "bank_account", 64)
        try:
            if saved and saved != "new":
                self.payments(req).confirm_attempt(ws, client_id, attempt_id, None, saved, False)
            else:
                self.add_account(req, session, form, attempt_id=attempt_id, save=field(form, "save", 10) in ("1", "on"))
        except (Invalid, Conflict) as exc:
            status = 422 if isinstance(exc, Invalid) else 409
            return self._pay_page(req, resp, session, attempt_id, exc.detail, self.as_typed(form), status)
        raise falcon.HTTPSeeOther(f"/pay/{attempt_id}/done")


class BankAccounts(BankForm):
    """POST /payment-methods/bank: save a bank account under a new mandate (for EUR clients)."""

    def on_post(self, req, resp):
        session = self.session(req, resp)
        ws, client_id = session["workspace_id"], session["client_id"]
        form = self.form(req)
        try:
            self.add_account(req, session, form)
        except Invalid as exc:
            cards, banks = split_methods(self.payments(req).list_cards(ws, client_id))
            return self.page(
                req,
                resp,
                "cards.html",
                session,
                status=422,
                cards=cards,
                banks=banks,
                mandates=self.payments(req).list_mandates(ws, client_id),
                stripe=self.config.stripe,
                notice=None,
                bank_error=exc.detail,
                bank=self.as_typed(form),
                bank_key=uuid.uuid4().hex,
            )
        raise falcon.HTTPSeeOther("/payment-methods?" + urlencode({"notice": "bank_added"}))


def add_bank_debit_routes(app: falcon.App, rpc, config) -> None:
    app.add_route("/pay/{attempt_id}/bank", BankDebit(rpc, config))
    app.add_route("/payment-methods/bank", BankAccounts(rpc, config))

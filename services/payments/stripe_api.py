"""The Stripe calls the payments service makes, through the official SDK.

Every create call carries an idempotency key derived from our own ids, so a retried call (by the
SDK, by a redelivered message, by a double click) returns the first result instead of charging
again. Calls run on the workspace's connected account when it has one (Stripe Connect). Results are
plain dicts, so the handlers can be tested with a fake of this class.
"""

from __future__ import annotations

import stripe

from chassis import settings
from chassis.errors import Invalid, Unavailable


class CardDeclined(Exception):
    """The card or the bank said no (declined, needs authentication off session, expired...)."""

    def __init__(self, message: str, code: str = "card_declined", payment_intent_id: str | None = None):
        super().__init__(message)
        self.message, self.code, self.payment_intent_id = message, code, payment_intent_id


class StripeUnavailable(Unavailable):
    """Stripe could not be reached or failed; whether the call took effect is unknown, so it is
    retried later with the same idempotency key."""


def _options(key: str | None, account: str | None) -> dict:
    options = {}
    if key:
        options["idempotency_key"] = key
    if account:
        options["stripe_account"] = account
    return options


def _id(value) -> str | None:
    """Stripe returns an id, or the object when expanded (localstripe always expands latest_charge)."""
    if value is None or isinstance(value, str):
        return value
    return value.get("id")


def payment_intent_view(pi) -> dict:
    error = pi.get("last_payment_error") or {}
    return {
        "id": pi["id"],
        "status": pi["status"],
        "amount": pi["amount"],
        "currency": pi["currency"].upper(),
        "client_secret": pi.get("client_secret"),
        "payment_method": _id(pi.get("payment_method")),
        "latest_charge": _id(pi.get("latest_charge")),
        "metadata": dict(pi.get("metadata") or {}),
        "error": error.get("message") or "",
    }


def card_view(pm) -> dict:
    card = pm.get("card") or {}
    return {
        "id": pm["id"],
        "customer": _id(pm.get("customer")),
        "brand": card.get("brand", ""),
        "last4": card.get("last4", ""),
        "exp_month": card.get("exp_month", 0),
        "exp_year": card.get("exp_year", 0),
    }


def bank_view(pm) -> dict:
    bank = pm.get("sepa_debit") or {}
    return {
        "id": pm["id"],
        "customer": _id(pm.get("customer")),
        "last4": bank.get("last4", ""),
        "country": bank.get("country", ""),
        "bank_code": bank.get("bank_code", "") or "",
    }


class StripeApi:
    def __init__(self, secret_key: str, api_base: str | None = None):
        self.client = stripe.StripeClient(
            secret_key, base_addresses={"api": api_base} if api_base else {}, max_network_retries=2
        )

    @classmethod
    def from_env(cls) -> StripeApi:
        default = "sk_test_localstripe" if settings.is_dev() else None
        secret = settings.env("STRIPE_SECRET_KEY", default)
        if not secret:
            raise RuntimeError("STRIPE_SECRET_KEY is not set")
        return cls(secret, settings.env("STRIPE_API_BASE") or None)

    def _call(self, fn, *args):
        try:
            result = fn(*args)
            return result.to_dict() if hasattr(result, "to_dict") else result  # plain dicts, all the way down
        except stripe.CardError as exc:
            pi = (exc.error and getattr(exc.error, "payment_intent", None)) or {}
            raise CardDeclined(
                exc.user_message or "Your card was declined.", exc.code or "card_declined", _id(pi)
            ) from None
        except stripe.InvalidRequestError as exc:
            raise Invalid(exc.user_message or "The payment provider refused the request.") from None
        except stripe.StripeError as exc:  # connection, rate limit, 5xx: outcome unknown
            raise StripeUnavailable(str(exc.user_message or exc) or "Stripe did not answer.") from None

    def create_customer(self, *, name: str, email: str, metadata: dict, key: str, account: str | None) -> str:
        params = {"name": name, "email": email, "metadata": metadata}
        return self._call(self.client.v1.customers.create, params, _options(key, account))["id"]

    def create_setup_intent(
        self, *, customer: str, metadata: dict, key: str, account: str | None, payment_method_types: list | None = None
    ) -> dict:
        params = {"customer": customer, "usage": "off_session", "metadata": metadata}
        if payment_method_types:
            params["payment_method_types"] = payment_method_types
        seti = self._call(self.client.v1.setup_intents.create, params, _options(key, account))
        return {"id": seti["id"], "client_secret": seti["client_secret"]}

    def setup_intent(self, setup_intent_id: str, account: str | None) -> dict:
        seti = self._call(self.client.v1.setup_intents.retrieve, setup_intent_id, {}, _options(None, account))
        return {
            "id": seti["id"],
            "status": seti["status"],
            "payment_method": _id(seti.get("payment_method")),
            "customer": _id(seti.get("customer")),
            "metadata": dict(seti.get("metadata") or {}),
        }

    def create_bank_account(self, *, iban: str, name: str, email: str, account: str | None) -> dict:
        """A sepa_debit PaymentMethod from the IBAN the client entered (already checked by us)."""
        params = {"type": "sepa_debit", "sepa_debit": {"iban": iban}, "billing_details": {"name": name, "email": email}}
        return bank_view(self._call(self.client.v1.payment_methods.create, params, _options(None, account)))

    def confirm_mandate(
        self, setup_intent_id: str, *, payment_method: str, acceptance: dict, account: str | None
    ) -> dict:
        """Confirm a debit's SetupIntent with the customer's acceptance; Stripe makes the mandate."""
        params = {"payment_method": payment_method, "mandate_data": {"customer_acceptance": acceptance}}
        seti = self._call(self.client.v1.setup_intents.confirm, setup_intent_id, params, _options(None, account))
        return {"id": seti["id"], "status": seti["status"], "mandate": _id(seti.get("mandate"))}

    def mandate(self, mandate_id: str, account: str | None) -> dict:
        mandate = self._call(self.client.v1.mandates.retrieve, mandate_id, {}, _options(None, account))
        details = (mandate.get("payment_method_details") or {}).get("sepa_debit") or {}
        return {"id": mandate["id"], "status": mandate.get("status", ""), "reference": details.get("reference", "")}

    def payment_method(self, payment_method_id: str, account: str | None) -> dict:
        return card_view(
            self._call(self.client.v1.payment_methods.retrieve, payment_method_id, {}, _options(None, account))
        )

    def attach(self, payment_method_id: str, customer: str, account: str | None) -> dict:
        return card_view(
            self._call(
                self.client.v1.payment_methods.attach,
                payment_method_id,
                {"customer": customer},
                _options(None, account),
            )
        )

    def detach(self, payment_method_id: str, account: str | None) -> None:
        self._call(self.client.v1.payment_methods.detach, payment_method_id, {}, _options(None, account))

    def set_default(self, customer: str, payment_method_id: str | None, account: str | None) -> None:
        params = {"invoice_settings": {"default_payment_method": payment_method_id or ""}}
        self._call(self.client.v1.customers.update, customer, params, _options(None, account))

    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str,
        payment_method: str,
        metadata: dict,
        off_session: bool,
        key: str,
        account: str | None,
        mandate: str | None = None,
    ) -> dict:
        params = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "confirm": True,
            "metadata": metadata,
        }
        if off_session:
            params["off_session"] = True
        if mandate:  # a bank debit, collected under the mandate its account was set up with
            params["payment_method_types"] = ["sepa_debit"]
            params["mandate"] = mandate
        return payment_intent_view(self._call(self.client.v1.payment_intents.create, params, _options(key, account)))

    def payment_intent(self, payment_intent_id: str, account: str | None) -> dict:
        return payment_intent_view(
            self._call(self.client.v1.payment_intents.retrieve, payment_intent_id, {}, _options(None, account))
        )

    def create_refund(self, *, payment_intent: str, amount: int, metadata: dict, key: str, account: str | None) -> dict:
        params = {"payment_intent": payment_intent, "amount": amount, "metadata": metadata}
        refund = self._call(self.client.v1.refunds.create, params, _options(key, account))
        return {"id": refund["id"], "status": refund["status"], "amount": refund["amount"]}

"""localstripe, with SEPA Direct Debit made to behave like Stripe's; development and tests only.

`python -m deploy.localstripe_sepa --port 8420 [--from-scratch]` runs localstripe after patching the
places where its `sepa_debit` support falls short of what the payments service sends to real Stripe:

- confirming a SetupIntent takes `mandate_data` (Stripe requires it for a debit) and creates a Mandate,
  retrievable at `GET /v1/mandates/<id>`, each with its own reference (the fake used one for all);
- a PaymentIntent takes `mandate` (the mandate a saved bank account was set up with);
- a debit's PaymentIntent sends `payment_intent.processing` as soon as it is confirmed;
- settlement waits for `POST /_config/sepa/settle/<payment intent>` while a test holds debits
  (`POST /_config/sepa` with `{"hold": true}`), so a test decides when a debit settles instead of
  racing a timer; otherwise it settles after 0.5 s, as before. The IBAN DE62370400440532013001 still
  settles as a failure.

The payments service's code is unchanged by any of this: it is what real Stripe needs.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from localstripe import resources
from localstripe.errors import UserError
from localstripe.resources import (
    BalanceTransaction,
    Charge,
    Event,
    PaymentIntent,
    PaymentMethod,
    SetupIntent,
    StripeObject,
    random_id,
    schedule_webhook,
)

HOLD = {"on": False}
GATES: dict[str, asyncio.Event] = {}  # payment intent id -> released when the test settles it


def _gate(charge) -> asyncio.Event:
    return GATES.setdefault(charge.payment_intent or charge.id, asyncio.Event())


async def _settlement(charge) -> None:
    if HOLD["on"]:
        await _gate(charge).wait()
    else:
        await asyncio.sleep(0.5)


class Mandate(StripeObject):
    object = "mandate"
    _id_prefix = "mandate_"

    def __init__(self, payment_method: str, customer_acceptance: dict):
        super().__init__()
        reference = random_id(16).upper()
        self.payment_method = payment_method
        self.customer_acceptance = customer_acceptance
        self.status = "active"
        self.type = "multi_use"
        self.payment_method_details = {
            "type": "sepa_debit",
            "sepa_debit": {"reference": reference, "url": f"https://localstripe.invalid/mandates/{reference}"},
        }


def _mandate_from(payment_method_id: str, mandate_data) -> Mandate:
    try:
        acceptance = mandate_data["customer_acceptance"]
        assert acceptance["type"] in ("online", "offline")
        if acceptance["type"] == "online":
            assert acceptance["online"]["ip_address"] and acceptance["online"]["user_agent"]
    except (AssertionError, KeyError, TypeError):
        raise UserError(400, "Bad request: mandate_data.customer_acceptance") from None
    mandate = Mandate(payment_method_id, acceptance)
    pm = PaymentMethod._api_retrieve(payment_method_id)
    details = mandate.payment_method_details["sepa_debit"]
    pm.sepa_debit = {**pm.sepa_debit, "mandate_reference": details["reference"], "mandate_url": details["url"]}
    return mandate


_setup_confirm = SetupIntent._api_confirm.__func__


@classmethod
def _setup_intent_confirm(cls, id, mandate_data=None, **kwargs):
    obj = _setup_confirm(cls, id, **kwargs)
    pm = PaymentMethod._api_retrieve(obj.payment_method) if obj.payment_method else None
    if pm is not None and pm.type == "sepa_debit":
        if mandate_data is None:  # as Stripe: a debit needs the customer's acceptance
            obj.status = "requires_confirmation"
            raise UserError(400, "mandate_data is required to confirm a sepa_debit SetupIntent")
        obj.mandate = _mandate_from(pm.id, mandate_data).id
    return obj


_pi_init = PaymentIntent.__init__


def _payment_intent_init(self, mandate=None, mandate_data=None, **kwargs):
    _pi_init(self, **kwargs)
    if mandate is not None:
        found = store_get("mandate", mandate)
        if found is None or found.payment_method != self.payment_method:
            raise UserError(400, "No such mandate for this payment method")
    self.mandate = mandate
    self._mandate_data = mandate_data


def store_get(kind: str, id: str):
    return resources.store.get(f"{kind}:{id}")


_create_charge = PaymentIntent._create_charge


def _payment_intent_create_charge(self, on_failure_now):
    _create_charge(self, on_failure_now)
    if self.latest_charge is not None and self.latest_charge._is_async_payment_method():
        schedule_webhook(Event("payment_intent.processing", self))


def _trigger_payment(self, on_success=None):
    if not self._is_async_payment_method():
        return _original_trigger(self, on_success)

    async def settle():
        await _settlement(self)
        txn = BalanceTransaction(
            amount=self.amount,
            currency=self.currency,
            description=self.description,
            exchange_rate=1.0,
            reporting_category="charge",
            source=self.id,
            type="charge",
        )
        self.balance_transaction = txn.id
        self.status = "succeeded"
        if on_success:
            on_success()

    self.status = "pending"  # a debit is pending until it settles
    asyncio.ensure_future(settle())


def _initialize_charge(self, on_success=None, on_failure_now=None, on_failure_later=None):
    if self._authorized or not self._is_async_payment_method():
        return _original_initialize(self, on_success, on_failure_now, on_failure_later)

    async def fail():
        await _settlement(self)
        self.status = "failed"
        self.failure_code = "insufficient_funds"
        self.failure_message = "The bank account has insufficient funds."
        if on_failure_later:
            on_failure_later()

    asyncio.ensure_future(fail())


_original_trigger = Charge._trigger_payment
_original_initialize = Charge._initialize_charge


async def config_sepa(request):
    data = await request.json() if request.can_read_body else {}
    HOLD["on"] = bool(data.get("hold"))
    return web.json_response({"hold": HOLD["on"]})


async def settle_debit(request):
    GATES.setdefault(request.match_info["id"], asyncio.Event()).set()
    return web.json_response({"settled": request.match_info["id"], "at": int(time.time())})


def patch():
    """Patch the resources, then import the server (its routes bind the patched methods)."""
    SetupIntent._api_confirm = _setup_intent_confirm
    resources.extra_apis[:] = [
        (method, url, SetupIntent._api_confirm if url == "/v1/setup_intents/{id}/confirm" else func)
        for method, url, func in resources.extra_apis
    ]
    PaymentIntent.__init__ = _payment_intent_init
    PaymentIntent._create_charge = _payment_intent_create_charge
    Charge._trigger_payment = _trigger_payment
    Charge._initialize_charge = _initialize_charge
    from localstripe import server

    app = server.app
    app.router.add_get("/v1/mandates/{id}", server.api_retrieve(Mandate, "/v1/mandates/{id}"))
    app.router.add_post("/_config/sepa", config_sepa)
    app.router.add_post("/_config/sepa/settle/{id}", settle_debit)
    return server


if __name__ == "__main__":
    patch().start()

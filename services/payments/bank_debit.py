"""Bank accounts as a payment method: SEPA Direct Debit through Stripe, with mandates.

How a debit flows:
1. The client enters the account holder, an email and the IBAN, and accepts the mandate text shown
   (which names the business and Stripe). The IBAN is checked here (schwifty) before Stripe is called.
2. `add_bank_account` makes a sepa_debit PaymentMethod, attaches it to the client's Customer and
   confirms a SetupIntent with the acceptance (`mandate_data`): Stripe makes the mandate, and it is
   recorded here (who, when, address, browser, text version) and emailed to the client (`mandate.accepted`).
3. A debit is charged like a card (handlers/charging.py), under that mandate. It is `processing` for days;
   `payment.processing` tells billing, and only `payment_intent.succeeded` records money. A late
   `payment_intent.payment_failed` reopens the invoice and emails the client (`late` in payment.failed).
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from sqlalchemy.exc import IntegrityError

from chassis.errors import Conflict, Invalid
from chassis.fields import text
from chassis.scope import require_role
from services.payments.handlers.cards import _set_default
from services.payments.handlers.charging import charge
from services.payments.handlers.common import PAYING_DETAIL, PAYING_ROLES, iso
from services.payments.handlers.payment_attempts import _attempt
from services.payments.handlers.stripe_customers import _account_of, _customer, ensure_customer
from services.payments.tables import card_setups, mandates, payment_methods

# The mandate text shown beside the IBAN field (services/gateway/templates/_bank_form.html); a change of
# its wording gets a new version, so each mandate records which one the client accepted.
MANDATE_TEXT_VERSION = "sepa-core-2026-12"
DEBIT_CURRENCY = "EUR"


def check_bank_details(details) -> dict:
    """The account holder's name, an email and a SEPA IBAN; refused before anything reaches Stripe."""
    if not isinstance(details, dict):
        raise Invalid("Enter the account holder, an email and the IBAN.", bank_account="not an object")
    if not isinstance(details.get("holder_name"), str) or not details["holder_name"].strip():
        raise Invalid("Enter the account holder's name.", holder_name="required")
    name = details["holder_name"]
    text(name, "holder_name", 200)  # refuses an overlong name or a NUL
    raw_email = details.get("email")
    if not isinstance(raw_email, str) or not raw_email.strip():
        raise Invalid("Enter an email for the mandate.", email="required")
    try:
        email = validate_email(
            raw_email.strip(), check_deliverability=False, globally_deliverable=False, test_environment=True
        ).normalized
    except EmailNotValidError:
        raise Invalid("That email address is not valid.", email="not an email") from None
    raw_iban = details.get("iban")
    if not isinstance(raw_iban, str) or not raw_iban.strip():
        raise Invalid("Enter the IBAN.", iban="required")
    try:
        iban = IBAN(raw_iban)
    except SchwiftyException:
        raise Invalid(
            "That IBAN is not valid; check it against your bank statement.", iban="not a valid IBAN"
        ) from None
    if not iban.in_sepa_zone:
        raise Invalid("Only bank accounts in the SEPA area can be debited.", iban="outside SEPA")
    return {"holder_name": name.strip(), "email": email, "iban": iban.compact}


def check_acceptance(acceptance) -> dict:
    if not isinstance(acceptance, dict) or acceptance.get("accepted") is not True:
        raise Invalid("Accept the direct debit mandate to pay by bank.", mandate="not accepted")
    return {
        "contact_id": acceptance.get("contact_id"),
        "ip_address": text(acceptance.get("ip_address") or "unknown", "ip_address", 64),
        "user_agent": text(acceptance.get("user_agent") or "unknown", "user_agent", 500),
    }


def mandate_view(row) -> dict:
    return {
        "id": row.id,
        "reference": row.reference,
        "status": row.status,
        "payment_method_id": row.payment_method_id,
        "client_id": row.client_id,
        "contact_id": row.contact_id,
        "holder_name": row.holder_name,
        "email": row.email,
        "iban_last4": row.iban_last4,
        "country": row.country,
        "accepted_at": iso(row.accepted_at),
        "ip_address": row.ip_address,
        "user_agent": row.user_agent,
        "text_version": row.text_version,
        "cancelled_at": iso(row.cancelled_at),
    }


def list_mandates(uow, now, workspace_id: str, client_id: str) -> list[dict]:
    rows = uow.execute(
        sa.select(mandates)
        .where(mandates.c.workspace_id == workspace_id, mandates.c.client_id == client_id)
        .order_by(mandates.c.accepted_at.desc(), mandates.c.id)
    ).all()
    return [mandate_view(r) for r in rows]


def add_bank_account(
    uow,
    now,
    stripe,
    billing,
    workspace_id: str,
    client_id: str,
    details: dict,
    acceptance: dict,
    attempt_id: str | None = None,
    save: bool = True,
) -> dict:
    """Set up a bank account under a new mandate; with `attempt_id`, then debit it for that payment."""
    require_role(PAYING_ROLES, PAYING_DETAIL)  # an approver or a viewer neither pays nor adds accounts
    # Whose payment it is comes first (another client's is missing), then the input, then Stripe.
    attempt = _attempt(uow, workspace_id, attempt_id, client_id) if attempt_id is not None else None
    details, acceptance = check_bank_details(details), check_acceptance(acceptance)
    if attempt is not None:
        if attempt.off_session:
            raise Conflict("This automatic payment is charged by the system.")
        if attempt.status not in ("open", "failed"):
            raise Conflict("This payment is no longer waiting for a payment method.")
        if attempt.currency != DEBIT_CURRENCY:
            raise Conflict("A bank account can pay invoices in EUR only.", currency=attempt.currency)
        account = attempt.stripe_account
    else:
        client = billing.get_client(workspace_id, client_id)
        if client.get("currency") != DEBIT_CURRENCY:
            raise Conflict("A bank account can pay invoices in EUR only.", currency=str(client.get("currency")))
        account = _account_of(billing, workspace_id)
    customer = ensure_customer(uow, now, stripe, billing, workspace_id, client_id, account)
    bank = stripe.create_bank_account(
        iban=details["iban"], name=details["holder_name"], email=details["email"], account=customer.stripe_account
    )
    if bank["customer"] is None:
        stripe.attach(bank["id"], customer.stripe_customer_id, customer.stripe_account)
    setup_id = str(uuid.uuid4())
    intent = stripe.create_setup_intent(
        customer=customer.stripe_customer_id,
        key=f"setup:{setup_id}",
        account=customer.stripe_account,
        payment_method_types=["sepa_debit"],
        metadata={"workspace_id": workspace_id, "client_id": client_id, "setup_id": setup_id, "attempt_id": ""},
    )
    uow.execute(
        card_setups.insert().values(
            id=setup_id,
            workspace_id=workspace_id,
            client_id=client_id,
            attempt_id=attempt_id,
            setup_intent_id=intent["id"],
            client_secret=intent["client_secret"],
            created_at=now,
        )
    )
    confirmed = stripe.confirm_mandate(
        intent["id"],
        payment_method=bank["id"],
        account=customer.stripe_account,
        acceptance={
            "type": "online",
            "accepted_at": int(now.timestamp()),
            "online": {"ip_address": acceptance["ip_address"], "user_agent": acceptance["user_agent"]},
        },
    )
    if confirmed["status"] != "succeeded" or not confirmed["mandate"]:
        raise Invalid("The bank account was not accepted; check its details.", iban=confirmed["status"])
    mandate = stripe.mandate(confirmed["mandate"], customer.stripe_account)
    try:
        with uow.conn.begin_nested():
            uow.execute(
                payment_methods.insert().values(
                    id=bank["id"],
                    workspace_id=workspace_id,
                    client_id=client_id,
                    type="sepa_debit",
                    brand="",
                    last4=bank["last4"],
                    exp_month=0,
                    exp_year=0,
                    holder_name=details["holder_name"],
                    country=bank["country"],
                    bank_code=bank["bank_code"][:20],
                    mandate_id=mandate["id"],
                    saved=bool(save),
                    created_at=now,
                )
            )
    except IntegrityError:
        pass  # a retried call: the same account, recorded already
    mandate_row_id = str(uuid.uuid4())
    try:
        with uow.conn.begin_nested():
            uow.execute(
                mandates.insert().values(
                    id=mandate_row_id,
                    workspace_id=workspace_id,
                    client_id=client_id,
                    payment_method_id=bank["id"],
                    stripe_mandate_id=mandate["id"],
                    reference=mandate["reference"],
                    status="active",
                    contact_id=acceptance["contact_id"],
                    holder_name=details["holder_name"],
                    email=details["email"],
                    iban_last4=bank["last4"],
                    country=bank["country"],
                    accepted_at=now,
                    ip_address=acceptance["ip_address"],
                    user_agent=acceptance["user_agent"],
                    text_version=MANDATE_TEXT_VERSION,
                )
            )
    except IntegrityError:
        pass
    row = uow.execute(sa.select(mandates).where(mandates.c.stripe_mandate_id == mandate["id"])).one()
    if row.id == mandate_row_id:
        uow.publish("mandate.accepted", workspace_id, {**mandate_view(row), "creditor": "Stripe"})
    customer = _customer(uow, workspace_id, client_id)
    if save and not customer.default_payment_method:
        _set_default(uow, stripe, customer, bank["id"])
    uow.commit()
    if attempt_id is not None:
        return {"mandate": mandate_view(row), "attempt": charge(uow, now, stripe, attempt_id, bank["id"])}
    return {"mandate": mandate_view(row), "attempt": None}

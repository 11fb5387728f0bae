"""Workspace settings: validated with pydantic, stored as JSON beside the workspace's core columns."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from chassis.errors import Invalid, field_errors
from chassis.fields import COUNTRIES
from clients.billing import BookingLink
from services.billing import availability, domain, legal_ids

PaymentMethod = Literal["card", "bank_transfer"]


def _card_only() -> list[PaymentMethod]:
    return ["card"]


class BookingRules(BaseModel):
    """When clients may book: weekly windows in the workspace's time zone, how far ahead, how soon."""

    model_config = ConfigDict(extra="forbid")
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], list[str]] = Field(
        default_factory=lambda: {day: ["09:00-12:00", "13:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
    )
    slot_step_minutes: int = Field(default=30, ge=5, le=240, multiple_of=5)
    min_notice_hours: int = Field(default=12, ge=0, le=24 * 14)
    horizon_days: int = Field(default=21, ge=1, le=90)

    @field_validator("weekly")
    @classmethod
    def _windows(cls, weekly: dict[str, list[str]]) -> dict[str, list[str]]:
        for windows in weekly.values():
            if len(windows) > 6:
                raise ValueError("at most 6 windows a day")
            for window in windows:
                availability.parse_window(window)
        return weekly


class Reminders(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    days_before: list[int] = Field(default_factory=lambda: [3])
    on_due: bool = True
    days_after: list[int] = Field(default_factory=lambda: [1, 7, 14])

    @field_validator("days_before", "days_after")
    @classmethod
    def _days(cls, days: list[int]) -> list[int]:
        if any(d < 1 or d > 365 for d in days) or len(days) > 10:
            raise ValueError("days are 1 to 365, at most 10 of them")
        return sorted(set(days))


class Legal(BaseModel):
    """What invoice law asks a seller's documents to state, and the e-invoice profile they follow."""

    model_config = ConfigDict(extra="forbid")
    country: str = Field(default="", description="ISO 3166 alpha-2 (empty: not set)")
    vat_id: str = Field(default="", max_length=20, description="Checked by its check digits; stored compact")
    iban: str = Field(default="", max_length=42, description="Printed with the payment terms; stored compact")
    bic: str = Field(default="", max_length=11)
    einvoice_profile: Literal["en16931", "xrechnung"] = "en16931"

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if value and value not in COUNTRIES:
            raise ValueError("an ISO 3166 alpha-2 country code, such as DE")
        return value

    @field_validator("vat_id")
    @classmethod
    def _vat_id(cls, value: str) -> str:
        return legal_ids.vat_id(value) if value else ""

    @field_validator("iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        return legal_ids.iban(value) if value else ""

    @field_validator("bic")
    @classmethod
    def _bic(cls, value: str) -> str:
        return legal_ids.bic(value) if value else ""


class WorkspaceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    portal_enabled: bool = True
    # contacts may also sign in with a password (set from the profile or by "Forgot your password?")
    passwords_enabled: bool = False
    allow_partial_payments: bool = True
    partial_payment_minimum: int = Field(default=0, ge=0)
    # days between the pre-notification of an automatic bank debit and its collection (SEPA rules)
    debit_notice_days: int = Field(default=3, ge=0, le=14)
    payment_methods: list[PaymentMethod] = Field(default_factory=_card_only)
    stripe_account: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9]+$")  # a Stripe Connect account
    booking_links: list[BookingLink] = Field(default_factory=list, max_length=20)
    booking: BookingRules = Field(default_factory=BookingRules)
    invoice_number_pattern: str = "INV-{YYYY}-{seq:05}"
    retainer_number_pattern: str = "RET-{YYYY}-{seq:05}"
    quote_number_pattern: str = "QUO-{YYYY}-{seq:05}"
    credit_number_pattern: str = "CN-{YYYY}-{seq:05}"
    default_payment_terms_days: int = Field(default=30, ge=0, le=365)
    reminders: Reminders = Field(default_factory=Reminders)
    auto_convert_accepted_quotes: bool = False
    refund_policy: Literal["reopen", "credit"] = "reopen"
    # step-up for money: a contact proves presence again (passkey or sign-in link, within the last
    # 10 minutes) before paying or changing payment methods; payments checks it
    step_up_for_payments: bool = False
    paper_size: Literal["A4", "Letter"] = "A4"
    attach_pdf_to_emails: bool = True
    # outbound webhooks of session events carry the contact's IP address and user agent (personal data)
    webhooks_include_device_details: bool = False
    legal: Legal = Field(default_factory=Legal)

    @field_validator(
        "invoice_number_pattern", "retainer_number_pattern", "quote_number_pattern", "credit_number_pattern"
    )
    @classmethod
    def _pattern(cls, pattern: str) -> str:
        try:
            return domain.validate_pattern(pattern)
        except Invalid as exc:
            raise ValueError(exc.detail) from None


def parse_settings(data: dict) -> WorkspaceSettings:
    try:
        return WorkspaceSettings.model_validate(data, strict=True)  # stored as sent: no "true" for true
    except ValidationError as exc:
        raise Invalid("Some settings are not valid.", fields=field_errors(exc)) from None

"""How a payment was made, as billing writes it in English, read in the reader's language: the portal's
pages (the gateway's `payment_label` filter) and the documents' PDFs and emails say it alike.

Billing writes a method key ("card", "sepa_debit", ...) or what a payment through Stripe was paid with
(payments.paid_with: the card brand or "Card", or "SEPA Direct Debit", and the last digits; a business
recording a payment may write the same). Each catalogue that shows these carries the msgids below."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def N_(message: str) -> str:
    """Marks a msgid (translated where it is shown; the gateway lists these in views.CODE_MESSAGES for
    `pybabel extract`, the documents' catalogue carries them by hand)."""
    return message


PAID_WITH = re.compile(r"(?P<means>[A-Za-z][A-Za-z ]{0,40}) ending (?P<last4>[0-9]{2,4})")
PAID_WITH_MEANS = (N_("Card"), N_("SEPA Direct Debit"))  # a card brand is a name, the same in every language
PAID_WITH_ENDING = N_("%(brand)s ending in %(last4)s")
METHOD_LABELS = {
    "card": N_("card"),
    "sepa_debit": N_("direct debit"),
    "bank_transfer": N_("bank transfer"),
    "cash": N_("cash"),
    "cheque": N_("cheque"),
    "other": N_("other"),
}


def names_how_paid(text: object) -> bool:
    """Whether a payment's reference is itself a card's or bank account's label ("Card ending 4242"),
    which says the method already."""
    return isinstance(text, str) and PAID_WITH.fullmatch(text) is not None


def payment_label(text: T, gettext: Callable[[str], str], language: str) -> T | str:
    """`text` (a method key, "Visa ending 4242", "SEPA Direct Debit ending 3000") in `language`, with
    that language's catalogue's `gettext`; any other reference translated if the catalogue knows it, else
    as it is; anything not text as it is."""
    if not isinstance(text, str) or not text:  # gettext("") is the catalogue's header
        return text
    if text in METHOD_LABELS:
        return gettext(METHOD_LABELS[text])
    ending = PAID_WITH.fullmatch(text) if language != "en" else None  # English: billing's words as they are
    if ending:
        return gettext(PAID_WITH_ENDING) % {"brand": gettext(ending.group("means")), "last4": ending.group("last4")}
    return gettext(text)

"""How a payment was made, as billing writes it in English, read in the reader's language: one
function (chassis.payment_labels) behind the portal's pages and the documents' PDFs and emails."""

from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from chassis.i18n import translations
from chassis.payment_labels import METHOD_LABELS, PAID_WITH_ENDING, PAID_WITH_MEANS, payment_label
from services.documents import i18n as documents_i18n
from services.gateway import views

CATALOGUES = {"gateway": views.LOCALE_DIR, "documents": documents_i18n.LOCALE_DIR}


def german(service: str):
    return translations("de", CATALOGUES[service]).gettext


def english(service: str):
    return translations("en", CATALOGUES[service]).gettext


@pytest.mark.parametrize(
    "text",
    ["Visa ending 4242", "Card ending 4242", "SEPA Direct Debit ending 3000", "American Express ending 0005", "Card"],
)
def test_english_reads_billings_words_as_they_are(text):
    for service in CATALOGUES:
        assert payment_label(text, english(service), "en") == text


@pytest.mark.parametrize(
    "text, german_text",
    [
        ("Visa ending 4242", "Visa mit Endziffern 4242"),
        ("Card ending 4242", "Karte mit Endziffern 4242"),
        ("SEPA Direct Debit ending 3000", "SEPA-Lastschrift mit Endziffern 3000"),
        ("American Express ending 0005", "American Express mit Endziffern 0005"),
        ("Card", "Karte"),
        ("SEPA Direct Debit", "SEPA-Lastschrift"),
    ],
)
def test_german_reads_the_card_or_bank_account_in_german_on_pages_and_documents_alike(text, german_text):
    for service in CATALOGUES:
        assert payment_label(text, german(service), "de") == german_text, service


@pytest.mark.parametrize(
    "key, german_text",
    [("card", "Karte"), ("sepa_debit", "Lastschrift"), ("bank_transfer", "Überweisung"), ("cheque", "Scheck")],
)
def test_a_method_key_reads_as_its_word(key, german_text):
    for service in CATALOGUES:
        assert payment_label(key, german(service), "de") == german_text, service
    assert payment_label("bank_transfer", translations("en", views.LOCALE_DIR).gettext, "en") == "bank transfer"


@pytest.mark.parametrize("text", ["INV-2026-0042 wire", "Transfer ending soon", "Cheque 001234", "pi_3Nx ending 12345"])
def test_any_other_reference_stays_as_the_business_wrote_it(text):
    for service in CATALOGUES:
        assert payment_label(text, german(service), "de") == text, service


@pytest.mark.parametrize("value", [None, 4242, "", ["Visa ending 4242"]])
def test_what_is_not_text_or_is_empty_passes_through(value):
    assert payment_label(value, german("documents"), "de") == value  # "" is not the catalogue's header


def test_both_catalogues_word_every_payment_label_message_the_same():
    msgids = [*METHOD_LABELS.values(), *PAID_WITH_MEANS, PAID_WITH_ENDING]
    worded = {}
    for service, locale_dir in CATALOGUES.items():
        with (Path(locale_dir) / "de" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
            catalogue = read_po(handle, locale="de")
        worded[service] = {msgid: getattr(catalogue.get(msgid), "string", "") for msgid in msgids}
        assert all(worded[service].values()), (service, worded[service])
    assert worded["documents"] == worded["gateway"]

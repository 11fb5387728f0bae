"""The pay page's partial amount: digits, the locale's thousands separator where it belongs and its
decimal separator with at most the currency's decimals (Babel's), or refused with a message saying so;
never rounded, nor read as Python or loose Babel would."""

from urllib.parse import urlencode

import pytest
from babel.numbers import get_currency_precision

from chassis.errors import Invalid
from services.gateway.jsonapi import CURRENCIES
from services.gateway.pages.payments import AMOUNT_FORMATS, parse_amount, payment_request
from tests.unit.test_gateway import FORM, SESSION, WORKSPACE, client

TWO_DECIMALS = "Enter the amount as a number with at most two decimals, like 150.00."


@pytest.mark.parametrize(
    ("text", "currency", "locale", "minor"),
    [
        ("10.50", "USD", "en_US", 1050),
        ("10.5", "USD", "en_US", 1050),
        (" 10 ", "USD", "en_US", 1000),
        ("0010.01", "USD", "en_US", 1001),
        ("10,50", "EUR", "de_DE", 1050),
        ("1.000,00", "EUR", "de_DE", 100000),
        ("1.000", "EUR", "de_DE", 100000),
        ("12.345.678,9", "EUR", "de_DE", 1234567890),
        ("1000,00", "EUR", "de_DE", 100000),
        ("1,000.00", "USD", "en_US", 100000),
        ("1,000", "USD", "en_US", 100000),
        ("1,234,567.89", "USD", "en_US", 123456789),
        ("1,000", "JPY", "en_US", 1000),
        ("10", "JPY", "ja_JP", 10),
        ("10", "JPY", "en_US", 10),
        ("1.234", "BHD", "en_US", 1234),
        ("", "USD", "en_US", None),
        ("  ", "USD", "en_US", None),
    ],
)
def test_an_amount_is_read_exactly_in_minor_units(text, currency, locale, minor):
    assert parse_amount(text, currency, locale) == minor


@pytest.mark.parametrize(
    "text",
    ["10.001", "1e3", "1E3", "-5", "+5", "nan", "NaN", "inf", "Infinity", "1,2,3", "1,00,000.00", "1,0000", "10.", ".5",
     "10 50", "0x10", "1_000", "٣", "10.5.0", "9" * 2000, "9" * 13, "9,999,999,999,999", ",100", "1,000.001"],
)  # fmt: skip
def test_odd_amounts_are_refused_with_what_the_field_takes(text):
    with pytest.raises(Invalid) as refused:
        parse_amount(text, "USD", "en_US")
    assert (refused.value.detail, refused.value.fields) == (TWO_DECIMALS, {"amount": "not an amount"})


@pytest.mark.parametrize(("text", "currency", "locale"), [("10.5", "JPY", "en_US"), ("10,5", "JPY", "de_DE")])
def test_a_currency_without_decimals_takes_whole_numbers_only(text, currency, locale):
    with pytest.raises(Invalid, match="Enter the amount as a whole number, like 150."):
        parse_amount(text, currency, locale)


@pytest.mark.parametrize("text", ["10,505", "1.00,00", "10.5000", "1.0000,00"])
def test_a_german_amount_takes_its_decimal_comma_and_its_grouping_only_where_it_belongs(text):
    with pytest.raises(Invalid, match="two decimals"):
        parse_amount(text, "EUR", "de_DE")


@pytest.mark.parametrize(
    ("text", "locale", "written"),
    [("10.50", "de_DE", "10,50"), ("1.5", "de_DE", "1,5"), ("1,000.00", "de_DE", "1.000,00"),
     ("10,50", "en_US", "10.50"), ("1.000,00", "en_US", "1,000.00")],
)  # fmt: skip
def test_the_other_languages_decimal_separator_is_refused_showing_the_amount_written_the_pages_way(
    text, locale, written
):
    """In German "." groups thousands: 10.50 is neither ten and a half nor a thousand and fifty."""
    with pytest.raises(Invalid) as refused:
        parse_amount(text, "EUR", locale)
    decimal = "," if locale == "de_DE" else "."
    assert (
        refused.value.detail
        == f"Enter the amount written like {written}, with \u201c{decimal}\u201d before the decimals."
    )
    assert refused.value.fields == {"amount": "not an amount"}


def test_every_currency_babel_knows_has_a_message_for_its_decimals():
    assert {get_currency_precision(code) for code in CURRENCIES} <= set(AMOUNT_FORMATS)


def test_an_amount_that_is_not_text_is_refused_alike():
    with pytest.raises(Invalid, match="two decimals"):
        payment_request({"invoice": ["i1"], "amount": ["10", "20"]}, "USD")


PAY = {
    ("billing", "get_workspace"): WORKSPACE,
    ("billing", "plan_payment"): {
        "invoices": [],
        "currency": "USD",
        "amount": 10000,
        "balance_usable": 0,
        "allow_partial": True,
        "minimum": 0,
    },
}


def pay_client(locale: str):
    answers = {
        **PAY,
        ("billing", "get_client"): {
            "id": "cl1",
            "name": "Demo",
            "currency": "USD",
            "locale": locale,
            "timezone": "UTC",
        },
    }
    return client(answers, session={**SESSION, "locale": locale})


@pytest.mark.parametrize("amount", ["10.001", "1e3", "-5", "nan", "1,2,3"])
def test_the_pay_page_refuses_an_odd_amount_and_starts_no_payment(amount):
    c, rpc = pay_client("en_US")
    body = urlencode({"invoice": "i1", "amount": amount, "key": "k1"})
    page = c.simulate_post("/pay", body=body, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 422 and TWO_DECIMALS in page.text
    assert not [call for call in rpc.calls if call[1] == "start_payment"]


def test_the_pay_page_says_it_in_german_for_a_german_client():
    c, rpc = pay_client("de_DE")
    body = "invoice=i1&amount=10%2C001&key=k1"  # 10,001: three decimals
    page = c.simulate_post("/pay", body=body, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 422
    assert "Geben Sie den Betrag als Zahl mit höchstens zwei Nachkommastellen ein, etwa 150,00." in page.text
    assert not [call for call in rpc.calls if call[1] == "start_payment"]


@pytest.mark.parametrize(
    ("locale", "amount", "minor"),
    [("de_DE", "1.000,00", 100000), ("en_US", "1,000.00", 100000), ("de_DE", "10,50", 1050)],
)
def test_the_pay_page_takes_the_thousands_separator_of_its_language(locale, amount, minor):
    c, rpc = pay_client(locale)
    rpc.answers[("payments", "start_payment")] = {"id": "pa1", "status": "open"}
    rpc.answers[("billing", "note_payment_payer")] = None
    body = urlencode({"invoice": "i1", "amount": amount, "key": "k1"})
    page = c.simulate_post("/pay", body=body, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 303 and page.headers["location"] == "/pay/pa1"
    [call] = [call for call in rpc.calls if call[1] == "start_payment"]
    assert call[2][2]["amount"] == minor


@pytest.mark.parametrize(
    ("locale", "amount", "message"),
    [
        ("de_DE", "10.50", "Geben Sie den Betrag in der Form 10,50 ein, mit \u201e,\u201c vor den Nachkommastellen."),
        ("en_US", "10,50", "Enter the amount written like 10.50, with \u201c.\u201d before the decimals."),
        # zero: in the page's words, not billing's English "amount must be positive."
        ("de_DE", "0", "Geben Sie einen Betrag über null ein, oder lassen Sie das Feld leer, um den gesamten Betrag"),
        ("de_DE", "0,00", "Geben Sie einen Betrag über null ein"),
        ("en_US", "0.00", "Enter an amount above zero, or leave the field empty to pay the whole balance."),
    ],
)
def test_the_pay_page_says_what_is_wrong_with_an_amount_in_its_language(locale, amount, message):
    c, rpc = pay_client(locale)
    body = urlencode({"invoice": "i1", "amount": amount, "key": "k1"})
    page = c.simulate_post("/pay", body=body, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 422 and message in page.text
    assert not [call for call in rpc.calls if call[1] == "start_payment"]


def test_the_pay_page_charges_an_amount_with_two_decimals():
    c, rpc = pay_client("en_US")
    rpc.answers[("payments", "start_payment")] = {"id": "pa1", "status": "open"}
    rpc.answers[("billing", "note_payment_payer")] = None
    body = "invoice=i1&amount=10.50&key=k1"
    page = c.simulate_post("/pay", body=body, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 303 and page.headers["location"] == "/pay/pa1"
    [call] = [call for call in rpc.calls if call[1] == "start_payment"]
    assert call[2][2]["amount"] == 1050


DEBIT_NOTE = "A direct debit takes a few business days to reach the business"


@pytest.mark.parametrize(("method", "says_debit"), [("card", False), (None, False), ("sepa_debit", True)])
def test_the_done_page_speaks_of_a_direct_debit_only_for_a_bank_debit(method, says_debit):
    c, rpc = pay_client("en_US")
    attempt = {"id": "pa1", "status": "processing", "amount": 10000, "currency": "USD", "failure_message": ""}
    rpc.answers[("payments", "get_attempt")] = {**attempt, "method": method}
    page = c.simulate_get("/pay/pa1/done", cookies=c.session_cookie)
    assert page.status_code == 200 and "is being confirmed" in page.text
    assert (DEBIT_NOTE in page.text) is says_debit


@pytest.mark.parametrize(
    ("locale", "by_source", "label"),
    [
        ("en_US", {"credit": 10000, "retainer": 50000}, "Use my credit ($100.00) and retainer ($500.00) first"),
        ("en_US", {"credit": 10000, "retainer": 0}, "Use my credit ($100.00) first"),
        ("en_US", {"credit": 0, "retainer": 50000}, "Use my retainer ($500.00) first"),
        (
            "de_DE",
            {"credit": 10000, "retainer": 50000},
            "Zuerst mein Guthaben (100,00\xa0$) und meinen Vorschuss (500,00\xa0$) verwenden",
        ),
        ("de_DE", {"credit": 10000, "retainer": 0}, "Zuerst mein Guthaben (100,00\xa0$) verwenden"),
        ("de_DE", {"credit": 0, "retainer": 50000}, "Zuerst meinen Vorschuss (500,00\xa0$) verwenden"),
    ],
)
def test_the_pay_page_names_the_credit_and_the_retainer_it_would_use_as_the_dashboard_does(locale, by_source, label):
    c, rpc = pay_client(locale)
    plan = rpc.answers[("billing", "plan_payment")]
    usable = sum(by_source.values())
    rpc.answers[("billing", "plan_payment")] = {**plan, "balance_usable": usable, "balance_usable_by_source": by_source}
    page = c.simulate_get("/pay", params={"invoice": "i1"}, cookies=c.session_cookie)
    assert page.status_code == 200
    assert label in page.text and "$600.00" not in page.text and "600,00" not in page.text
    assert "available credit" not in page.text and "verfügbares Guthaben" not in page.text


@pytest.mark.parametrize(
    ("locale", "refusal", "apply_balance", "says"),
    [
        ("de_DE", "below the minimum", False, "Eine Teilzahlung beträgt mindestens 10,00\xa0€."),
        ("de_DE", "more than the balance", False, "Der Betrag ist höher als die offenen 539,49\xa0€."),
        ("de_DE", "more than the balance", True, "Der Betrag ist höher als die offenen 439,49\xa0€."),  # after credit
        ("en_US", "more than the balance", False, "The amount is more than the €539.49 owed."),
    ],
)
def test_billing_s_refusal_of_the_amount_is_worded_in_the_page_s_language(locale, refusal, apply_balance, says):
    english = {
        "below the minimum": "A partial payment is at least €10.00.",
        "more than the balance": "The amount is more than the €539.49 owed.",
    }[refusal]
    c, rpc = client(
        {
            ("billing", "get_workspace"): WORKSPACE,
            ("billing", "plan_payment"): {
                "invoices": [],
                "currency": "EUR",
                "amount": 53949,
                "balance_usable": 10000,
                "allow_partial": True,
                "minimum": 1000,
            },
            ("billing", "get_client"): {
                "id": "cl1",
                "name": "Euro",
                "currency": "EUR",
                "locale": "de_DE",
                "timezone": "UTC",
            },
            ("payments", "start_payment"): Invalid(english, amount=refusal),
        },
        session={**SESSION, "locale": locale},
    )
    form = {"invoice": "i1", "amount": "5", "key": "k1"}
    body = urlencode({**form, **({"apply_balance": "1"} if apply_balance else {})})
    page = c.simulate_post("/pay", body=body, headers=FORM, cookies=c.session_cookie)
    assert page.status_code == 422
    assert f'<p class="error" role="alert">{says}</p>' in page.text
    if locale == "de_DE":
        assert "payment is at least" not in page.text and "owed" not in page.text


@pytest.mark.parametrize(
    ("locale", "applied", "says"),
    [
        ("en_US", {"credit": 10000}, "$100.00 of your credit was applied to INV-5; $250.00 remains"),
        ("en_US", {"retainer": 50000}, "$500.00 of your retainer was applied to INV-5; $250.00 remains"),
        ("en_US", {"credit": 10000, "retainer": 50000}, "$600.00 of your credit and retainer was applied to INV-5"),
        ("de_DE", {"retainer": 50000}, "Ihres Vorschusses wurden auf INV-5 angerechnet"),
        ("de_DE", {"credit": 10000, "retainer": 50000}, "Ihres Guthabens und Vorschusses wurden auf INV-5"),
    ],
)
def test_the_card_page_names_what_was_applied_first_credit_retainer_or_both(locale, applied, says):
    c, rpc = pay_client(locale)
    rpc.answers[("payments", "get_attempt")] = {
        "id": "pa1",
        "status": "open",
        "amount": 25000,
        "currency": "USD",
        "failure_message": "",
        "allocations": [{"invoice_id": "i5", "number": "INV-5", "amount": 25000}],
        "applied": {**applied, "invoices": ["INV-5"]},
    }
    rpc.answers[("payments", "list_cards")] = []
    page = c.simulate_get("/pay/pa1", cookies=c.session_cookie)
    assert page.status_code == 200
    assert says in " ".join(page.text.replace("\xa0", " ").split())

from datetime import date
from decimal import Decimal

import pytest

from chassis.errors import Invalid
from chassis.money import Money
from services.billing import domain


def test_money_refuses_to_mix_currencies():
    with pytest.raises(ValueError):
        Money(100, "USD") + Money(100, "EUR")


def test_money_formats_by_locale_and_currency_precision():
    assert Money(237500, "USD").format("en_US") == "$2,375.00"
    assert Money(237500, "EUR").format("de_DE") == "2.375,00\xa0€"
    assert Money(1234, "JPY").format("ja_JP") == "￥1,234"


def test_decimal_amounts_round_half_even_to_minor_units():
    assert Money.from_decimal("0.125", "USD").amount == 12
    assert Money.from_decimal("0.135", "USD").amount == 14


def invoice(*lines, paid=0, status="sent"):
    return domain.Invoice("USD", date(2026, 1, 1), date(2026, 1, 31), list(lines), status=status, amount_paid=paid)


def test_invoice_total_is_the_sum_of_rounded_lines():
    inv = invoice(domain.Line("a", Decimal("12.5"), 6000), domain.Line("b", Decimal("0.333"), 100))
    assert [line.total for line in inv.lines] == [75000, 33]
    assert inv.total == 75033


def test_payments_move_status_to_partially_paid_then_paid():
    inv = invoice(domain.Line("a", Decimal(1), 1000))
    inv.apply_payment(400)
    assert (inv.status, inv.balance) == ("partially_paid", 600)
    inv.apply_payment(600)
    assert (inv.status, inv.balance) == ("paid", 0)


@pytest.mark.parametrize("amount", [0, -1, 1001])
def test_a_payment_must_be_positive_and_within_the_balance(amount):
    inv = invoice(domain.Line("a", Decimal(1), 1000))
    with pytest.raises(Invalid):
        inv.apply_payment(amount)
    assert inv.amount_paid == 0


def test_void_invoices_take_no_payment():
    with pytest.raises(Invalid):
        invoice(domain.Line("a", Decimal(1), 1000), status="void").apply_payment(1)


def test_overdue_is_derived_from_due_date_and_balance():
    assert domain.display_status("sent", date(2026, 1, 31), 100, date(2026, 2, 1)) == "overdue"
    assert domain.display_status("sent", date(2026, 1, 31), 100, date(2026, 1, 31)) == "sent"
    assert domain.display_status("paid", date(2026, 1, 31), 0, date(2026, 2, 1)) == "paid"


def test_outstanding_only_sums_the_client_currency():
    total = domain.outstanding([Money(100, "USD"), Money(50, "EUR"), Money(25, "USD")], "USD")
    assert total == Money(125, "USD")

"""Money and invoice rules, including property-based checks of the ledger arithmetic."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chassis.errors import Conflict, Invalid
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


def test_line_discount_and_tax_round_half_even_per_line():
    line = domain.Line("Design", Decimal(10), 9500, tax_rate=Decimal(20), discount_percent=Decimal(10))
    assert (line.gross, line.discount, line.subtotal, line.tax, line.total) == (95000, 9500, 85500, 17100, 102600)
    half = domain.Line("x", Decimal("0.5"), 5)  # 2.5 cents rounds to the even 2
    assert half.total == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"description": "", "quantity": 1, "unit_price": 1},
        {"description": "x", "quantity": 0, "unit_price": 1},
        {"description": "x", "quantity": 1, "unit_price": -1},
        {"description": "x", "quantity": 1, "unit_price": 1.5},
        {"description": "x", "quantity": "abc", "unit_price": 1},
        {"description": "x", "quantity": 1, "unit_price": 1, "tax_rate": 101},
        {"description": "x", "quantity": 1, "unit_price": 1, "discount_percent": -1},
        {"description": "x", "quantity": "1.23456", "unit_price": 100000},
        {"description": "x", "quantity": 1, "unit_price": 1, "tax_rate": "19.00001"},
        {"description": "x", "quantity": "1e12", "unit_price": 1},
        {"quantity": 1, "unit_price": 1},
    ],
)
def test_bad_lines_are_rejected(bad):
    with pytest.raises(Invalid):
        domain.Line.from_dict(bad)


lines_strategy = st.lists(
    st.builds(
        domain.Line,
        description=st.just("item"),
        quantity=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4),
        unit_price=st.integers(min_value=0, max_value=10_000_000),
        tax_rate=st.decimals(min_value=0, max_value=100, places=2),
        discount_percent=st.decimals(min_value=0, max_value=100, places=2),
    ),
    min_size=1,
    max_size=20,
)


@given(lines_strategy)
def test_totals_read_top_to_bottom_with_tax_rounded_once_per_rate(lines):
    totals = domain.Totals.of(lines)
    assert totals.subtotal == sum(line.subtotal for line in lines)  # the line amounts add up to the subtotal
    assert sum(band.base for band in totals.breakdown) == totals.subtotal
    assert totals.tax == sum(band.tax for band in totals.breakdown)
    assert totals.total == totals.subtotal + totals.tax
    assert all(isinstance(v, int) for v in (totals.subtotal, totals.tax, totals.total, totals.discount))
    keys = [(band.category, band.rate) for band in totals.breakdown]
    assert len(keys) == len(set(keys))  # one row per category and rate
    assert [band.rate for band in totals.breakdown] == sorted((band.rate for band in totals.breakdown), reverse=True)
    for band in totals.breakdown:  # EN 16931: the rate's net base times the rate, rounded once
        assert band.base == sum(
            line.subtotal for line in lines if (line.tax_category, line.tax_rate) == (band.category, band.rate)
        )
        assert abs(band.tax - band.base * band.rate / 100) <= Decimal("0.5")
    for line in lines:  # two half-cent roundings: the gross, then the discount
        exact = line.quantity * line.unit_price * (1 - line.discount_percent / 100)
        assert abs(line.subtotal - exact) <= 1
    assert domain.Totals.of(list(reversed(lines))) == totals


def test_the_seeded_invoice_adds_up_on_its_face():
    lines = [
        domain.Line("Website design (hours)", Decimal(10), 9500, Decimal(0), Decimal(10)),
        domain.Line("Hosting, first month", Decimal(1), 2500, Decimal(20)),
    ]
    totals = domain.Totals.of(lines)
    assert [line.subtotal for line in lines] == [85500, 2500]
    assert (totals.subtotal, totals.tax, totals.total, totals.discount) == (88000, 500, 88500, 9500)
    assert [band.as_dict() for band in totals.breakdown] == [
        {"category": "S", "rate": "20", "base": 2500, "tax": 500},
        {"category": "Z", "rate": "0", "base": 85500, "tax": 0},
    ]


def test_tax_is_rounded_per_rate_not_per_line():
    three_lines = [domain.Line("item", Decimal(1), 5, Decimal(10))] * 3  # 0.5 cent of tax each
    totals = domain.Totals.of(three_lines)
    assert [line.tax for line in three_lines] == [0, 0, 0]  # half-even per line would lose the cent
    assert (totals.tax, totals.total) == (2, 17)  # round(15 x 10%) = round(1.5) = 2


def test_a_document_totalled_per_line_keeps_the_breakdown_it_was_issued_with():
    stored = [{"tax_rate": "10.0000", "subtotal": 5, "tax": 0}] * 3  # issued when tax was rounded per line
    assert domain.stored_tax_breakdown(stored, 0) == [{"category": "S", "rate": "10", "base": 15, "tax": 0}]
    assert domain.stored_tax_breakdown(stored, 2) == [{"category": "S", "rate": "10", "base": 15, "tax": 2}]


settlements = st.lists(st.tuples(st.sampled_from(["paid", "credited"]), st.integers(-100, 200_000)), max_size=30)


@given(total=st.integers(1, 1_000_000), operations=settlements)
def test_balance_is_total_less_payments_and_credits_and_never_negative(total, operations):
    status, paid, credited = "sent", 0, 0
    for kind, amount in operations:
        owed = domain.balance(total, paid, credited)
        try:
            domain.check_settlement(status, amount, owed)
        except Invalid:
            assert amount <= 0
            continue
        except Conflict:  # a well-formed amount the invoice cannot take now
            assert amount > owed or status == "paid"
            continue
        if kind == "paid":
            paid += amount
        else:
            credited += amount
        status = domain.status_after_settlement(status, total, paid, credited)
    assert domain.balance(total, paid, credited) == total - paid - credited >= 0
    assert status == ("paid" if paid + credited == total else "partially_paid" if paid + credited else "sent")


entries = st.lists(
    st.builds(
        domain.StatementEntry,
        on=st.dates(date(2026, 1, 1), date(2026, 12, 31)),
        kind=st.sampled_from(["invoice", "payment", "credit", "refund"]),
        reference=st.text(min_size=1, max_size=5),
        amount=st.integers(1, 1_000_000),
    ),
    max_size=40,
)


@given(opening=st.integers(-1_000_000, 1_000_000), entries=entries)
def test_statement_closing_is_opening_plus_charges_less_payments_and_credits(opening, entries):
    result = domain.statement(opening, entries)

    def of(kind):
        return sum(e.amount for e in entries if e.kind == kind)

    assert result["closing_balance"] == opening + of("invoice") - of("payment") - of("credit") + of("refund")
    running = [row["balance"] for row in result["entries"]]
    assert (running[-1] if running else opening) == result["closing_balance"]
    assert [row["date"] for row in result["entries"]] == sorted(row["date"] for row in result["entries"])


def test_a_days_entries_run_charge_payment_refund_credit_so_a_refund_never_comes_before_its_payment():
    day = date(2026, 11, 20)
    result = domain.statement(
        0,
        [
            domain.StatementEntry(day, "credit", "Refund of card payment", 20000),
            domain.StatementEntry(day, "refund", "Refund of card payment", 20000),
            domain.StatementEntry(day, "payment", "card payment", 20000),
            domain.StatementEntry(day, "invoice", "INV-0009", 20000),
        ],
    )
    assert [(row["kind"], row["balance"]) for row in result["entries"]] == [
        ("invoice", 20000),
        ("payment", 0),
        ("refund", 20000),
        ("credit", 0),
    ]


def test_overdue_is_derived_from_due_date_and_balance():
    assert domain.display_status("sent", date(2026, 1, 31), 100, date(2026, 2, 1)) == "overdue"
    assert domain.display_status("sent", date(2026, 1, 31), 100, date(2026, 1, 31)) == "sent"
    assert domain.display_status("paid", date(2026, 1, 31), 0, date(2026, 2, 1)) == "paid"
    assert domain.quote_display_status("sent", date(2026, 1, 31), date(2026, 2, 1)) == "expired"
    assert domain.quote_display_status("accepted", date(2026, 1, 31), date(2026, 2, 1)) == "accepted"


@pytest.mark.parametrize(
    "pattern,seq,on,expected",
    [
        ("INV-{YYYY}-{seq:05}", 42, date(2026, 3, 1), "INV-2026-00042"),
        ("{YY}{MM}-{seq}", 7, date(2026, 3, 1), "2603-7"),
        ("Q{seq:3}", 12, date(2026, 3, 1), "Q012"),
    ],
)
def test_number_patterns(pattern, seq, on, expected):
    assert domain.format_number(pattern, seq, on) == expected


def test_counters_restart_by_the_pattern_period():
    assert domain.counter_period("INV-{YYYY}-{seq}", date(2026, 3, 1)) == "2026"
    assert domain.counter_period("INV-{YYYY}{MM}-{seq}", date(2026, 3, 1)) == "2026-03"
    assert domain.counter_period("INV-{seq}", date(2026, 3, 1)) == ""


@pytest.mark.parametrize("pattern", ["INV-{YYYY}", "INV-{seq}-{DD}", ""])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(Invalid):
        domain.validate_pattern(pattern)


def test_monthly_schedule_counts_from_the_start_so_month_ends_do_not_drift():
    schedule = domain.Schedule("monthly", 1, date(2026, 1, 31))
    assert [schedule.occurrence(n) for n in range(4)] == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
    ]
    assert domain.Schedule("weekly", 2, date(2026, 1, 1), date(2026, 1, 20)).occurrence(2) is None


def test_reminders_fall_due_once_in_their_window():
    policy = domain.ReminderPolicy([3], True, [1, 7])
    due = date(2026, 5, 10)
    assert policy.due(due, due - timedelta(days=3)) == ["before_3"]
    assert policy.due(due, due) == ["on_due"]
    assert policy.due(due, due + timedelta(days=8)) == ["after_7"]
    assert policy.due(due, due + timedelta(days=60)) == []  # no flood of stale reminders

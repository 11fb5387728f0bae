"""The invoice and quote aggregates on their own: every transition they allow, every one they refuse
(with the error the API answers), the events they return and the columns they ask the handler to
write. No database, no broker."""

from __future__ import annotations

from dataclasses import fields
from datetime import date, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chassis.errors import Conflict, Invalid
from services.billing import domain
from services.billing.lifecycle import (
    Invoice,
    InvoiceArchived,
    InvoiceRefunded,
    InvoiceSent,
    InvoiceSettled,
    InvoiceUnarchived,
    InvoiceViewed,
    InvoiceVoided,
    Quote,
    QuoteAccepted,
    QuoteChangesRequested,
    QuoteRejected,
    QuoteRevised,
    QuoteSent,
)

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc)
EARLIER = NOW - timedelta(days=3)
TODAY = date(2026, 11, 23)


def invoice(status: str = "sent", total: int = 10_000, paid: int = 0, credited: int = 0, **more) -> Invoice:
    return Invoice(
        id="inv-1",
        number="INV-0001",
        status=status,
        total=total,
        amount_paid=paid,
        amount_credited=credited,
        sent_at=None if status == "draft" else EARLIER,
        **more,
    )


def quote(status: str = "sent", version: int = 1, number: str = "Q-0001", expiry=TODAY, **more) -> Quote:
    return Quote(
        id="q-1",
        number=number,
        status=status,
        version=version,
        issue_date=TODAY - timedelta(days=10),
        expiry_date=expiry,
        subtotal=1_000,
        discount_total=0,
        tax_total=200,
        total=1_200,
        sent_at=None if status == "draft" else EARLIER,
        **more,
    )


def refused(error: type, call, detail: str, **fields: str):
    with pytest.raises(error) as caught:
        call()
    assert type(caught.value) is error
    assert caught.value.detail == detail
    assert caught.value.fields == fields


# ---------------------------------------------------------------- building


def test_an_aggregate_is_built_from_a_row_with_more_columns_than_it_needs():
    row = SimpleNamespace(
        id="inv-9",
        workspace_id="ws",
        number="INV-0009",
        status="viewed",
        total=500,
        amount_paid=100,
        amount_credited=50,
        sent_at=EARLIER,
        viewed_at=EARLIER,
        voided_at=None,
        archived_at=None,
        currency="USD",
    )
    built = Invoice.from_row(row)
    assert (built.id, built.status, built.balance) == ("inv-9", "viewed", 350)
    assert built.changes() == {}


def test_a_quote_is_built_from_a_row():
    original = quote("accepted", accepted_by="ann@example.com", accepted_version=1)
    row = SimpleNamespace(**{f.name: getattr(original, f.name) for f in fields(Quote) if f.init}, workspace_id="ws")
    assert Quote.from_row(row) == original


# ---------------------------------------------------------------- invoices: send, view, void, archive


def test_sending_a_draft_issues_it():
    draft = invoice("draft")
    assert draft.send(NOW) == [InvoiceSent("inv-1", "INV-0001", issued=True)]
    assert (draft.status, draft.sent_at) == ("sent", NOW)
    assert draft.changes() == {"status": "sent", "sent_at": NOW}


@pytest.mark.parametrize("status", ["sent", "viewed", "partially_paid", "paid"])
def test_sending_an_issued_invoice_again_changes_nothing_on_it(status):
    issued = invoice(status)
    assert issued.send(NOW) == [InvoiceSent("inv-1", "INV-0001", issued=False)]
    assert (issued.status, issued.sent_at, issued.changes()) == (status, EARLIER, {})


def test_a_void_invoice_cannot_be_sent():
    void = invoice("void")
    refused(Conflict, lambda: void.send(NOW), "A void invoice cannot be sent.", status="void")
    assert void.changes() == {}


def test_the_first_view_of_a_sent_invoice_makes_it_viewed():
    sent = invoice("sent")
    assert sent.view(NOW) == [InvoiceViewed("inv-1", "INV-0001")]
    assert sent.changes() == {"status": "viewed", "viewed_at": NOW}


@pytest.mark.parametrize("status", ["viewed", "partially_paid", "paid", "void"])
def test_later_views_change_nothing(status):
    seen = invoice(status, viewed_at=EARLIER)
    assert seen.view(NOW) == []
    assert (seen.status, seen.viewed_at, seen.changes()) == (status, EARLIER, {})


@pytest.mark.parametrize("status", ["draft", "sent", "viewed"])
def test_an_invoice_without_money_on_it_can_be_voided(status):
    unpaid = invoice(status)
    assert unpaid.void(NOW) == [InvoiceVoided("inv-1", "INV-0001")]
    assert unpaid.changes() == {"status": "void", "voided_at": NOW}


def test_voiding_a_void_invoice_changes_nothing():
    void = invoice("void", voided_at=EARLIER)
    assert void.void(NOW) == []
    assert (void.voided_at, void.changes()) == (EARLIER, {})


@pytest.mark.parametrize(
    ("status", "paid", "credited"), [("partially_paid", 100, 0), ("partially_paid", 0, 100), ("paid", 9_000, 1_000)]
)
def test_an_invoice_with_payments_or_credits_cannot_be_voided(status, paid, credited):
    settled = invoice(status, paid=paid, credited=credited)
    refused(
        Conflict,
        lambda: settled.void(NOW),
        "This invoice has payments or credits applied; refund or reverse them before voiding.",
        status=status,
    )
    assert settled.changes() == {}


@pytest.mark.parametrize("status", ["draft", "sent", "paid", "void"])
def test_any_invoice_can_be_archived_and_brought_back(status):
    kept = invoice(status)
    assert kept.archive(NOW) == [InvoiceArchived("inv-1")]
    assert kept.changes() == {"archived_at": NOW}
    assert kept.unarchive() == [InvoiceUnarchived("inv-1")]
    assert (kept.status, kept.changes()) == (status, {"archived_at": None})


# ---------------------------------------------------------------- invoices: settle and reverse


def test_a_part_payment_leaves_it_partly_paid():
    sent = invoice("sent")
    assert sent.settle(paid=4_000) == [InvoiceSettled("inv-1", 4_000, 0, "partially_paid")]
    assert (sent.amount_paid, sent.balance) == (4_000, 6_000)
    assert sent.changes() == {"amount_paid": 4_000, "amount_credited": 0, "status": "partially_paid"}


def test_payment_and_credit_of_the_whole_balance_settle_it():
    viewed = invoice("viewed", paid=2_500, credited=2_500, viewed_at=EARLIER)
    assert viewed.settle(credited=5_000) == [InvoiceSettled("inv-1", 0, 5_000, "paid")]
    assert (viewed.status, viewed.balance, viewed.amount_credited) == ("paid", 0, 7_500)


def test_settling_writes_the_status_even_when_it_stays_the_same():
    partly = invoice("partially_paid", paid=1_000)
    partly.settle(paid=1_000)
    assert partly.changes() == {"amount_paid": 2_000, "amount_credited": 0, "status": "partially_paid"}


@pytest.mark.parametrize(
    ("status", "what", "detail"),
    [
        ("draft", "payment", "A draft invoice cannot take a payment."),
        ("paid", "payment", "A paid invoice cannot take a payment."),
        ("void", "credit", "A void invoice cannot take a credit."),
        ("draft", "credit", "A draft invoice cannot take a credit."),
    ],
)
def test_only_an_open_invoice_takes_money(status, what, detail):
    closed = invoice(status, paid=10_000 if status == "paid" else 0)
    amount = {"paid": 100} if what == "payment" else {"credited": 100}
    refused(Conflict, lambda: closed.settle(**amount), detail, status=status)
    assert closed.changes() == {}


@pytest.mark.parametrize("amount", [0, -1])
def test_the_amount_settled_must_be_positive(amount):
    sent = invoice("sent")
    refused(Invalid, lambda: sent.settle(paid=amount), "The amount must be positive.", amount="must be positive")


def test_no_more_than_the_balance_can_be_settled():
    partly = invoice("partially_paid", paid=9_000)
    refused(
        Conflict,
        lambda: partly.settle(credited=1_001),
        "The amount is more than the invoice balance.",
        amount="more than the balance",
    )
    assert (partly.amount_credited, partly.changes()) == (0, {})


@pytest.mark.parametrize(("viewed_at", "reopened"), [(None, "sent"), (EARLIER, "viewed")])
def test_a_refund_under_reopen_makes_the_money_owed_again(viewed_at, reopened):
    paid = invoice("paid", paid=10_000, viewed_at=viewed_at)
    assert paid.reverse(10_000, "reopen") == [InvoiceRefunded("inv-1", 10_000, credited_back=False)]
    assert (paid.status, paid.balance) == (reopened, 10_000)
    assert paid.changes() == {"amount_paid": 0, "amount_credited": 0, "status": reopened}


def test_a_partial_refund_under_reopen_leaves_it_partly_paid():
    paid = invoice("paid", paid=10_000)
    paid.reverse(3_000, "reopen")
    assert (paid.status, paid.amount_paid, paid.balance) == ("partially_paid", 7_000, 3_000)


def test_refunding_the_payment_leaves_the_credits_on_it():
    paid = invoice("paid", paid=6_000, credited=4_000)
    paid.reverse(6_000, "reopen")
    assert (paid.status, paid.amount_paid, paid.amount_credited) == ("partially_paid", 0, 4_000)


def test_a_refund_under_credit_keeps_the_invoice_settled_by_a_credit_of_the_same_amount():
    paid = invoice("paid", paid=10_000)
    assert paid.reverse(4_000, "credit") == [InvoiceRefunded("inv-1", 4_000, credited_back=True)]
    assert (paid.status, paid.amount_paid, paid.amount_credited, paid.balance) == ("paid", 6_000, 4_000, 0)
    assert paid.changes() == {"amount_paid": 6_000, "amount_credited": 4_000, "status": "paid"}


# ---------------------------------------------------------------- invoices: properties

OPEN_START = st.sampled_from(["sent", "viewed"])
SETTLEMENTS = st.lists(
    st.tuples(st.sampled_from(["paid", "credited"]), st.integers(min_value=-100, max_value=25_000)), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(start=OPEN_START, total=st.integers(min_value=1, max_value=20_000), settlements=SETTLEMENTS)
def test_settling_never_takes_more_than_is_owed_and_the_status_follows_the_money(start, total, settlements):
    inv = invoice(start, total=total)
    for kind, amount in settlements:
        before = (inv.status, inv.amount_paid, inv.amount_credited)
        try:
            (event,) = inv.settle(**{kind: amount})
        except (Conflict, Invalid):
            assert (inv.status, inv.amount_paid, inv.amount_credited) == before  # a refusal changes nothing
            continue
        assert event.status == inv.status
        assert 0 < amount <= total - before[1] - before[2]
        assert inv.amount_paid + inv.amount_credited <= inv.total  # the balance never goes below zero
    assert inv.status == domain.status_after_settlement(start, total, inv.amount_paid, inv.amount_credited)
    assert inv.balance == total - inv.amount_paid - inv.amount_credited


@settings(max_examples=200, deadline=None)
@given(
    viewed=st.booleans(),
    total=st.integers(min_value=1, max_value=20_000),
    share=st.floats(min_value=0.01, max_value=1.0),
)
def test_a_payment_refunded_under_reopen_puts_the_invoice_back_as_it_was(viewed, total, share):
    start = "viewed" if viewed else "sent"
    inv = invoice(start, total=total, viewed_at=EARLIER if viewed else None)
    amount = max(1, int(total * share))
    inv.settle(paid=amount)
    inv.reverse(amount, "reopen")
    assert (inv.status, inv.amount_paid, inv.amount_credited, inv.balance) == (start, 0, 0, total)


# ---------------------------------------------------------------- quotes: send and state


def test_sending_a_draft_quote_issues_it():
    draft = quote("draft")
    assert draft.send(NOW) == [QuoteSent("q-1", "Q-0001", 1, issued=True)]
    assert draft.changes() == {"status": "sent", "sent_at": NOW}


def test_a_sent_quote_can_be_sent_again():
    sent = quote("sent")
    assert sent.send(NOW) == [QuoteSent("q-1", "Q-0001", 1, issued=False)]
    assert sent.changes() == {}


@pytest.mark.parametrize("status", ["accepted", "rejected", "expired"])
def test_a_decided_quote_cannot_be_sent(status):
    decided = quote(status)
    refused(Conflict, lambda: decided.send(NOW), f"A {status} quote cannot be sent.", status=status)


def test_a_sent_quote_is_expired_the_day_after_its_expiry_date():
    assert quote("sent", expiry=TODAY).state(TODAY) == "sent"
    assert quote("sent", expiry=TODAY - timedelta(days=1)).state(TODAY) == "expired"
    assert quote("sent", expiry=None).state(TODAY) == "sent"
    assert quote("accepted", expiry=TODAY - timedelta(days=1)).state(TODAY) == "accepted"


# ---------------------------------------------------------------- quotes: accept, reject, ask for changes


def test_accepting_records_who_where_and_the_signature():
    sent = quote("sent", version=2, number="Q-0001-2")
    assert sent.accept(NOW, TODAY, 2, "ann@example.com", "203.0.113.9", "Ann Smith") == [
        QuoteAccepted("q-1", 2, "ann@example.com")
    ]
    assert sent.changes() == {
        "status": "accepted",
        "accepted_at": NOW,
        "accepted_by": "ann@example.com",
        "accepted_ip": "203.0.113.9",
        "signature_name": "Ann Smith",
        "accepted_version": 2,
    }


def test_accepting_without_a_version_or_a_signature():
    sent = quote("sent")
    sent.accept(NOW, TODAY, None, "ann@example.com", "", None)
    assert (sent.status, sent.signature_name, sent.accepted_version) == ("accepted", None, 1)


def test_rejecting_records_who_and_why():
    sent = quote("sent")
    assert sent.reject(NOW, TODAY, 1, "bob@example.com", "Too dear") == [QuoteRejected("q-1", 1, "Too dear")]
    assert sent.changes() == {
        "status": "rejected",
        "rejected_at": NOW,
        "rejected_by": "bob@example.com",
        "rejection_reason": "Too dear",
        "rejected_version": 1,
    }


def test_asking_for_changes_marks_the_quote_until_a_revision():
    sent = quote("sent")
    assert sent.request_changes(NOW, TODAY, 1) == [QuoteChangesRequested("q-1", 1)]
    assert sent.changes() == {"changes_requested_at": NOW}


DECISIONS = {
    "accept": lambda q, seen: q.accept(NOW, TODAY, seen, "ann@example.com", "", None),
    "reject": lambda q, seen: q.reject(NOW, TODAY, seen, "ann@example.com", ""),
    "request changes": lambda q, seen: q.request_changes(NOW, TODAY, seen),
    "check": lambda q, seen: q.check_decidable(TODAY, seen),
}


@pytest.mark.parametrize("decision", DECISIONS)
@pytest.mark.parametrize(
    ("status", "expiry", "shown"),
    [
        ("draft", TODAY, "draft"),
        ("accepted", TODAY, "accepted"),
        ("rejected", TODAY, "rejected"),
        ("expired", TODAY, "expired"),
        ("sent", TODAY - timedelta(days=1), "expired"),
    ],
)
def test_only_a_sent_unexpired_quote_can_be_decided_on(decision, status, expiry, shown):
    closed = quote(status, expiry=expiry)
    refused(
        Conflict,
        lambda: DECISIONS[decision](closed, None),
        f"This quote is {shown} and cannot be acted on.",
        status=shown,
    )
    assert (closed.status, closed.changes()) == (status, {})


@pytest.mark.parametrize("decision", DECISIONS)
def test_a_decision_on_a_version_a_revision_replaced_is_refused(decision):
    revised = quote("sent", version=3, number="Q-0001-3")
    refused(
        Conflict,
        lambda: DECISIONS[decision](revised, 2),
        "This quote has changed since you opened it: you saw version 2, the newest is version 3 (Q-0001-3). "
        "Review the newest version, then decide.",
        version="not the newest version",
        newest_version="3",
        newest_number="Q-0001-3",
    )
    assert (revised.status, revised.changes()) == ("sent", {})


# ---------------------------------------------------------------- quotes: revise

TOTALS = domain.Totals(subtotal=2_000, discount=100, tax=380, total=2_280)


def never_taken(number: str) -> bool:
    return False


def test_a_revision_is_the_next_version_sent_again():
    sent = quote("sent", changes_requested_at=EARLIER)
    expiry = TODAY + timedelta(days=30)
    revised, resent = sent.revise(NOW, TODAY, expiry, TOTALS, "Q-0001", never_taken)
    assert revised == QuoteRevised(
        "q-1", 2, "Q-0001-2", previous_version=1, previous_number="Q-0001", previous_total=1_200
    )
    assert resent == QuoteSent("q-1", "Q-0001-2", 2, issued=False)
    assert sent.changes() == {
        "version": 2,
        "number": "Q-0001-2",
        "issue_date": TODAY,
        "expiry_date": expiry,
        "subtotal": 2_000,
        "discount_total": 100,
        "tax_total": 380,
        "total": 2_280,
        "sent_at": NOW,
        "changes_requested_at": None,
    }


def test_later_revisions_number_from_the_first_version():
    third = quote("sent", version=2, number="Q-0001-2")
    revised, _ = third.revise(NOW, TODAY, TODAY, TOTALS, "Q-0001", never_taken)
    assert (revised.number, revised.previous_number, third.number, third.version) == (
        "Q-0001-3",
        "Q-0001-2",
        "Q-0001-3",
        3,
    )


def test_an_expired_quote_can_be_revised():
    expired = quote("sent", expiry=TODAY - timedelta(days=5))
    expired.revise(NOW, TODAY, TODAY + timedelta(days=30), TOTALS, "Q-0001", never_taken)
    assert expired.state(TODAY) == "sent"


@pytest.mark.parametrize("status", ["draft", "accepted", "rejected", "expired"])
def test_only_a_sent_quote_can_be_revised(status):
    unsent = quote(status)
    detail = f"Only a sent quote can be revised; this one is {status}."
    refused(Conflict, unsent.check_revisable, detail, status=status)
    refused(Conflict, lambda: unsent.revise(NOW, TODAY, TODAY, TOTALS, "Q-0001", never_taken), detail, status=status)
    assert unsent.changes() == {}


def test_a_revision_cannot_expire_before_it_is_issued():
    sent = quote("sent")
    refused(
        Invalid,
        lambda: sent.revise(NOW, TODAY, TODAY - timedelta(days=1), TOTALS, "Q-0001", never_taken),
        "The expiry date cannot be before today, the revision's issue date.",
        expiry_date="in the past",
    )
    assert sent.changes() == {}


def test_a_revision_needs_a_free_number_that_fits():
    sent = quote("sent")
    asked = []

    def taken(number: str) -> bool:
        asked.append(number)
        return True

    refused(
        Conflict,
        lambda: sent.revise(NOW, TODAY, TODAY, TOTALS, "Q-0001", taken),
        "The revision's number Q-0001-2 is taken or too long.",
        number="not available",
    )
    assert asked == ["Q-0001-2"]
    long_first = "Q" * 49
    refused(
        Conflict,
        lambda: sent.revise(NOW, TODAY, TODAY, TOTALS, long_first, never_taken),
        f"The revision's number {long_first}-2 is taken or too long.",
        number="not available",
    )
    assert (sent.version, sent.changes()) == (1, {})

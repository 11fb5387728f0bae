"""The lifecycles of invoices and quotes as plain-Python aggregates.

An aggregate is built from the columns a handler loaded (under a row lock), and each of its commands
either refuses the transition with a business error from chassis/errors.py or changes the aggregate's
fields and returns the domain events that happened. The handler then writes `changes()` (exactly the
columns the command set) and turns the events into the outbox events it publishes. No framework, no
database, no broker: the rules of money and status come from domain.py and revisions.py.

Invoice: draft -> sent -> viewed -> partially_paid -> paid, void from any state without money on it,
refunds moving a settled invoice back; archiving hides an invoice from listings whatever its state.
Quote: draft -> sent -> accepted or rejected; a sent quote past its expiry date is expired (derived,
never stored), and a sent quote can be revised (the next version, sent again) or asked to change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any, Self

from chassis.errors import Conflict, Invalid
from services.billing import domain, revisions

NUMBER_LENGTH = 50  # the longest document number the database keeps


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class InvoiceSent:
    invoice_id: str
    number: str
    issued: bool  # the first send of a draft (a re-send changes nothing on the invoice)


@dataclass(frozen=True)
class InvoiceViewed:
    invoice_id: str
    number: str


@dataclass(frozen=True)
class InvoiceSettled:
    invoice_id: str
    paid: int
    credited: int
    status: str


@dataclass(frozen=True)
class InvoiceRefunded:
    invoice_id: str
    amount: int
    credited_back: bool  # the refund policy "credit": a credit of the same amount keeps it settled


@dataclass(frozen=True)
class InvoiceVoided:
    invoice_id: str
    number: str


@dataclass(frozen=True)
class InvoiceArchived:
    invoice_id: str


@dataclass(frozen=True)
class InvoiceUnarchived:
    invoice_id: str


InvoiceEvent = (
    InvoiceSent | InvoiceViewed | InvoiceSettled | InvoiceRefunded | InvoiceVoided | InvoiceArchived | InvoiceUnarchived
)


@dataclass(frozen=True)
class QuoteSent:
    quote_id: str
    number: str
    version: int
    issued: bool  # the first send of a draft


@dataclass(frozen=True)
class QuoteAccepted:
    quote_id: str
    version: int
    accepted_by: str


@dataclass(frozen=True)
class QuoteRejected:
    quote_id: str
    version: int
    reason: str


@dataclass(frozen=True)
class QuoteChangesRequested:
    quote_id: str
    version: int


@dataclass(frozen=True)
class QuoteRevised:
    quote_id: str
    version: int
    number: str
    previous_version: int
    previous_number: str
    previous_total: int


QuoteEvent = QuoteSent | QuoteAccepted | QuoteRejected | QuoteChangesRequested | QuoteRevised


# ---------------------------------------------------------------- aggregates


@dataclass
class _Aggregate:
    # The columns the commands set, in order: written back even when a value did not change, so the
    # handler's UPDATE is the one the transition means.
    _changed: dict[str, None] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Any) -> Self:
        """From anything with the aggregate's columns as attributes (a database row)."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(cls) if f.init})

    def _set(self, **values: object) -> None:
        for name, value in values.items():
            setattr(self, name, value)
            self._changed[name] = None

    def changes(self) -> dict[str, object]:
        """The columns the commands so far have set, with their new values."""
        return {name: getattr(self, name) for name in self._changed}


@dataclass(kw_only=True)
class Invoice(_Aggregate):
    id: str
    number: str
    status: str
    total: int
    amount_paid: int = 0
    amount_credited: int = 0
    sent_at: datetime | None = None
    viewed_at: datetime | None = None
    voided_at: datetime | None = None
    archived_at: datetime | None = None

    @property
    def balance(self) -> int:
        return domain.balance(self.total, self.amount_paid, self.amount_credited)

    def send(self, now: datetime) -> list[InvoiceSent]:
        """Issue a draft, or send an issued invoice again (its email); a void one is refused."""
        if self.status == "void":
            raise Conflict("A void invoice cannot be sent.", status="void")
        issued = self.status == "draft"
        if issued:
            self._set(status="sent", sent_at=now)
        return [InvoiceSent(self.id, self.number, issued)]

    def view(self, now: datetime) -> list[InvoiceViewed]:
        """The client opened it: the first view of a sent invoice makes it viewed; later ones change nothing."""
        if self.status != "sent":
            return []
        self._set(status="viewed", viewed_at=now)
        return [InvoiceViewed(self.id, self.number)]

    def settle(self, *, paid: int = 0, credited: int = 0) -> list[InvoiceSettled]:
        """Money paid or credited onto an open invoice, never more than it owes."""
        domain.check_settlement(self.status, paid + credited, self.balance, "payment" if paid else "credit")
        new_paid, new_credited = self.amount_paid + paid, self.amount_credited + credited
        status = domain.status_after_settlement(self.status, self.total, new_paid, new_credited)
        self._set(amount_paid=new_paid, amount_credited=new_credited, status=status)
        return [InvoiceSettled(self.id, paid, credited, status)]

    def reverse(self, amount: int, policy: str) -> list[InvoiceRefunded]:
        """Refunded money taken off: under "credit" a credit of the same amount keeps the invoice as it is;
        otherwise ("reopen") it is owed again."""
        paid, credited, status = self.amount_paid - amount, self.amount_credited, self.status
        credited_back = policy == "credit"
        if credited_back:
            credited += amount
        else:
            status = domain.status_after_refund(self.status, self.total, paid, credited, self.viewed_at is not None)
        self._set(amount_paid=paid, amount_credited=credited, status=status)
        return [InvoiceRefunded(self.id, amount, credited_back)]

    def void(self, now: datetime) -> list[InvoiceVoided]:
        """Cancel an invoice nothing was paid or credited on; voiding a void invoice changes nothing."""
        if self.status == "void":
            return []
        if self.amount_paid or self.amount_credited:
            raise Conflict(
                "This invoice has payments or credits applied; refund or reverse them before voiding.",
                status=self.status,
            )
        self._set(status="void", voided_at=now)
        return [InvoiceVoided(self.id, self.number)]

    def archive(self, now: datetime) -> list[InvoiceArchived]:
        """Hide it from the listings and the portal, in whatever state it is."""
        self._set(archived_at=now)
        return [InvoiceArchived(self.id)]

    def unarchive(self) -> list[InvoiceUnarchived]:
        self._set(archived_at=None)
        return [InvoiceUnarchived(self.id)]


@dataclass(kw_only=True)
class Quote(_Aggregate):
    id: str
    number: str
    status: str
    version: int
    issue_date: date
    expiry_date: date | None
    subtotal: int
    discount_total: int
    tax_total: int
    total: int
    sent_at: datetime | None = None
    accepted_at: datetime | None = None
    accepted_by: str | None = None
    accepted_ip: str | None = None
    signature_name: str | None = None
    accepted_version: int | None = None
    rejected_at: datetime | None = None
    rejected_by: str | None = None
    rejection_reason: str | None = None
    rejected_version: int | None = None
    changes_requested_at: datetime | None = None

    def state(self, today: date) -> str:
        """The status the client sees: a sent quote past its expiry date is expired."""
        return domain.quote_display_status(self.status, self.expiry_date, today)

    def send(self, now: datetime) -> list[QuoteSent]:
        """Issue a draft, or send a sent quote again; a decided one is refused."""
        if self.status not in ("draft", "sent"):
            raise Conflict(f"A {self.status} quote cannot be sent.", status=self.status)
        issued = self.status == "draft"
        if issued:
            self._set(status="sent", sent_at=now)
        return [QuoteSent(self.id, self.number, self.version, issued)]

    def check_decidable(self, today: date, seen_version: int | None) -> None:
        """A client can accept or decline only a sent, unexpired quote, and only the newest version of it.
        The handlers ask this before they read the decision's input, so such a quote answers 409 whatever
        the input."""
        state = self.state(today)
        if state != "sent":
            raise Conflict(f"This quote is {state} and cannot be acted on.", status=state)
        revisions.check_newest(seen_version, self.version, self.number)

    def accept(
        self, now: datetime, today: date, seen_version: int | None, by: str, ip: str, signature_name: str | None
    ) -> list[QuoteAccepted]:
        """`signature_name`: None when the client did not sign."""
        self.check_decidable(today, seen_version)
        self._set(
            status="accepted",
            accepted_at=now,
            accepted_by=by,
            accepted_ip=ip,
            signature_name=signature_name,
            accepted_version=self.version,
        )
        return [QuoteAccepted(self.id, self.version, by)]

    def reject(self, now: datetime, today: date, seen_version: int | None, by: str, reason: str) -> list[QuoteRejected]:
        self.check_decidable(today, seen_version)
        self._set(
            status="rejected", rejected_at=now, rejected_by=by, rejection_reason=reason, rejected_version=self.version
        )
        return [QuoteRejected(self.id, self.version, reason)]

    def request_changes(self, now: datetime, today: date, seen_version: int | None) -> list[QuoteChangesRequested]:
        """The client asks for changes to the newest version of a quote it can still decide on; the quote
        shows it until a revision answers."""
        state = self.state(today)
        if not revisions.open_for_changes(state):
            raise Conflict(f"This quote is {state} and cannot be acted on.", status=state)
        revisions.check_newest(seen_version, self.version, self.number)
        self._set(changes_requested_at=now)
        return [QuoteChangesRequested(self.id, self.version)]

    def check_revisable(self) -> None:
        """Only a sent quote can be revised (an expired one too: the revision gives it a new expiry date).
        The handler asks this before it reads the revision's lines, so such a quote answers 409 whatever
        they are."""
        if self.status != "sent":
            raise Conflict(f"Only a sent quote can be revised; this one is {self.status}.", status=self.status)

    def revise(
        self,
        now: datetime,
        issue_date: date,
        expiry_date: date,
        totals: domain.Totals,
        first_number: str,
        is_number_taken: Callable[[str], bool],
    ) -> tuple[QuoteRevised, QuoteSent]:
        """Issue the next version, sent at once: it takes the first version's number with the version as a
        suffix (`first_number` is that number), the new lines' totals and a fresh expiry date, and clears
        any request for changes."""
        self.check_revisable()
        if expiry_date < issue_date:
            raise Invalid(
                "The expiry date cannot be before today, the revision's issue date.", expiry_date="in the past"
            )
        version = self.version + 1
        number = revisions.version_number(first_number, version)
        if is_number_taken(number) or len(number) > NUMBER_LENGTH:
            raise Conflict(f"The revision's number {number[:60]} is taken or too long.", number="not available")
        revised = QuoteRevised(self.id, version, number, self.version, self.number, self.total)
        self._set(
            version=version,
            number=number,
            issue_date=issue_date,
            expiry_date=expiry_date,
            subtotal=totals.subtotal,
            discount_total=totals.discount,
            tax_total=totals.tax,
            total=totals.total,
            sent_at=now,
            changes_requested_at=None,
        )
        return revised, QuoteSent(self.id, number, version, issued=False)

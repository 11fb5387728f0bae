"""Invoice arithmetic and status rules in plain Python; money in integer minor units."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from chassis.errors import Invalid
from chassis.money import Money

OPEN_STATUSES = {"sent", "viewed", "partially_paid"}
STATUSES = {"draft", "sent", "viewed", "partially_paid", "paid", "void"}


@dataclass(frozen=True)
class Line:
    description: str
    quantity: Decimal
    unit_price: int  # minor units

    @property
    def total(self) -> int:
        """Rounded per line, half-even, so the invoice total is the sum of what is printed."""
        return int((self.quantity * self.unit_price).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@dataclass
class Invoice:
    currency: str
    issue_date: date
    due_date: date
    lines: list[Line] = field(default_factory=list)
    status: str = "draft"
    amount_paid: int = 0

    def __post_init__(self) -> None:
        if self.due_date < self.issue_date:
            raise Invalid("The due date cannot be before the issue date.", due_date="before issue date")
        if not self.lines:
            raise Invalid("An invoice needs at least one line.", lines="empty")

    @property
    def total(self) -> int:
        return sum(line.total for line in self.lines)

    @property
    def balance(self) -> int:
        return max(self.total - self.amount_paid, 0)

    def apply_payment(self, amount: int) -> None:
        if self.status not in OPEN_STATUSES:
            raise Invalid(f"A {self.status} invoice cannot take payments.", status=self.status)
        if amount <= 0 or amount > self.balance:
            raise Invalid("The amount must be positive and no more than the balance.", amount="out of range")
        self.amount_paid += amount
        self.status = "paid" if self.balance == 0 else "partially_paid"


def is_overdue(status: str, due_date: date, balance: int, today: date) -> bool:
    return status in OPEN_STATUSES and balance > 0 and due_date < today


def display_status(status: str, due_date: date, balance: int, today: date) -> str:
    return "overdue" if is_overdue(status, due_date, balance, today) else status


def outstanding(balances: list[Money], currency: str) -> Money:
    """Totals never mix currencies: only balances in `currency` are summed."""
    total = Money.zero(currency)
    for amount in balances:
        if amount.currency == currency:
            total = total + amount
    return total

"""Invoice disputes in plain Python: which invoices a client may dispute, which of their lines, and what
an adjustment may credit. (Card disputes, chargebacks raised with the bank, are another thing: see
handlers/card_disputes.py.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chassis.errors import Conflict, Invalid

DISPUTABLE = frozenset({"sent", "viewed", "partially_paid"})  # owed: issued and not settled
OUTCOMES = {"adjust": "adjusted", "reject": "rejected"}


def check_disputable(status: str, balance: int, archived: bool, kind: str) -> None:
    """Only an invoice the client owes on can be disputed."""
    if archived or kind != "standard" or status not in DISPUTABLE or balance <= 0:
        shown = "paid" if status == "paid" or (status in DISPUTABLE and balance <= 0) else status
        raise Conflict(f"Only an invoice with a balance owed can be disputed; this one is {shown}.", status=shown)


def disputed_lines(raw: object, line_count: int) -> list[int]:
    """The positions (1 to line_count) of the lines disputed, sorted and each once; none or all of them
    is the whole invoice ([])."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in raw):
        raise Invalid("lines is a list of line numbers.", lines="not a list of line numbers")
    for i, number in enumerate(raw):
        if number < 1:
            raise Invalid("Line numbers start at 1.", fields={f"lines.{i}": "no such line"})
        if number > line_count:  # a well-formed number this invoice has no line for
            raise Conflict(f"The invoice has lines 1 to {line_count}.", fields={f"lines.{i}": "no such line"})
    positions = sorted(set(raw))
    return [] if len(positions) == line_count else positions


def check_outcome(outcome: str) -> str:
    if outcome not in OUTCOMES:
        raise Invalid("The outcome is adjust or reject.", outcome="adjust or reject")
    return OUTCOMES[outcome]


def check_adjustment(amount: object, total: int) -> int:
    """An adjustment is a credit note for a positive amount of at most the invoice's total. It is applied
    to what the invoice still owes; any rest (the invoice was paid meanwhile) is the client's credit."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise Invalid("amount is an integer in minor units (cents).", amount="not an integer")
    if amount <= 0:
        raise Invalid("amount must be positive.", amount="must be positive")
    if amount > total:  # well-formed, but more than this invoice can be credited
        raise Conflict("An adjustment credits at most the invoice's total.", amount="more than the invoice total")
    return amount


def dispute_view(row: Any, number: str | None = None) -> dict[str, Any]:
    """A dispute as the APIs show it (times in UTC, ISO 8601); `row` is the dispute's database row."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": row.id,
        "invoice_id": row.invoice_id,
        "invoice_number": number,
        "client_id": row.client_id,
        "status": row.status,
        "reason": row.reason,
        "lines": list(row.lines or []),
        "raised_by": row.raised_by,
        "raised_at": iso(row.raised_at),
        "resolution_message": row.resolution_message,
        "credit_note_id": row.credit_note_id,
        "credit_amount": row.credit_amount,
        "resolved_at": iso(row.resolved_at),
    }

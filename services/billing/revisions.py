"""Quote revisions as plain rules: how a version is numbered, which quotes a client may ask to change,
whether the version a client acted on is still the newest, and what changed between two versions.

No framework, no database: the handlers pass in plain dicts (a version as its view shows it) and get
plain, JSON-ready data back."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from chassis.errors import Conflict, Invalid

# What a line is compared by; the amounts (subtotal, tax, total) follow from these.
LINE_FIELDS = ("description", "quantity", "unit_price", "discount_percent", "tax_rate", "tax_category")
TOTAL_FIELDS = ("subtotal", "discount_total", "tax_total", "total")
TEXT_FIELDS = ("notes", "terms")
MAX_VERSION = 1_000_000


def version_number(first_number: str, version: int) -> str:
    """Version 1 keeps the quote's number; later versions add "-<version>" (Q-0007, Q-0007-2, Q-0007-3)."""
    return first_number if version == 1 else f"{first_number}-{version}"


# The roles that decide on quotes: accept, decline, ask for changes (chassis/scope.py lists the roles).
DECIDING_ROLES = ("owner", "approver")
DECIDING_DETAIL = "Only an owner or an approver of your organisation can accept, decline or ask to change quotes."


def may_request_changes(contact: object) -> bool:
    """Whether this contact of the client may ask for changes to its quotes: with portal access, as an
    owner or an approver."""
    return bool(getattr(contact, "portal_access", False)) and getattr(contact, "role", None) in DECIDING_ROLES


def open_for_changes(display_status: str) -> bool:
    """Changes can be asked for on a quote the client can still decide on: sent (or viewed), not
    accepted, declined or expired."""
    return display_status in ("sent", "viewed")


def seen_version(value: object) -> int | None:
    """The version a client says it saw, checked: None (not sent) or a whole number from 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise Invalid("version is the quote's version number, from 1.", version="not a version number")
    return value


def check_newest(seen: int | None, newest: int, newest_number: str) -> None:
    """Acting on a version that a revision has replaced changes nothing: the client must look at the newest
    version first (a 409 that says which it is)."""
    if seen is not None and seen != newest:
        raise Conflict(
            f"This quote has changed since you opened it: you saw version {seen}, the newest is "
            f"version {newest} ({newest_number}). Review the newest version, then decide.",
            version="not the newest version",
            newest_version=str(newest),
            newest_number=newest_number,
        )


def _quantity(value: object) -> Decimal:
    try:
        return Decimal(str(value)).normalize()
    except (InvalidOperation, ValueError):
        return Decimal(0)


def _same(field: str, before: object, after: object) -> bool:
    if field in ("quantity", "discount_percent", "tax_rate"):
        return _quantity(before) == _quantity(after)  # "2" and "2.0000" are one quantity
    return before == after


def _changed_fields(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return [f for f in LINE_FIELDS if not _same(f, before.get(f), after.get(f))]


def _line(line: dict[str, Any]) -> dict[str, Any]:
    return {key: line.get(key) for key in (*LINE_FIELDS, "total")}


def diff_lines(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What happened to each line from one version to the next, in the new version's order, then the
    removed lines in the old order.

    Lines are paired first by identical description (in order, for repeated descriptions), then an
    unpaired old line and an unpaired new line at the same position are one line whose description was
    changed; whatever is left was removed or added. A paired line that differs in nothing is not listed.
    """
    paired: dict[int, int] = {}  # new index -> old index
    free_old = list(range(len(before)))
    for j, line in enumerate(after):
        for i in free_old:
            if before[i].get("description") == line.get("description"):
                paired[j] = i
                free_old.remove(i)
                break
    for j in range(len(after)):
        if j not in paired and j in free_old:  # same place, new wording
            paired[j] = j
            free_old.remove(j)
    changes = []
    for j, line in enumerate(after):
        if j not in paired:
            changes.append({"change": "added", "position": j + 1, "before": None, "after": _line(line), "fields": []})
            continue
        old = before[paired[j]]
        fields = _changed_fields(old, line)
        if fields:
            changes.append(
                {"change": "changed", "position": j + 1, "before": _line(old), "after": _line(line), "fields": fields}
            )
    for i in free_old:
        changes.append(
            {"change": "removed", "position": i + 1, "before": _line(before[i]), "after": None, "fields": []}
        )
    return changes


def diff_versions(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The changes from one version of a quote to the next: lines added, removed or changed, the texts
    changed, and the totals before and after (minor units, in the quote's currency)."""
    return {
        "from_version": before["version"],
        "to_version": after["version"],
        "from_number": before["number"],
        "to_number": after["number"],
        "currency": after["currency"],
        "lines": diff_lines(before.get("lines") or [], after.get("lines") or []),
        "texts_changed": [f for f in TEXT_FIELDS if (before.get(f) or "") != (after.get(f) or "")],
        "totals_before": {f: before[f] for f in TOTAL_FIELDS},
        "totals_after": {f: after[f] for f in TOTAL_FIELDS},
        "total_difference": after["total"] - before["total"],
    }


def history(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The diff of each consecutive pair of versions, oldest first (versions sorted by number)."""
    ordered = sorted(versions, key=lambda v: v["version"])
    return [diff_versions(a, b) for a, b in zip(ordered, ordered[1:])]

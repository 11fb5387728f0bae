"""The invoice listing: filtered by client, status (the derived 'overdue' and 'unpaid' too) and part
of a number, sorted, paged by offset or by cursor.

A portal page (one client, paged by number) is one prepared statement per filter, sort and set of
fields: the client and its business's today, the count and the page's rows as JSON, so that a page
view costs one round trip that PostgreSQL neither parses nor plans again (chassis/prepared.py).
Other listings (the admin API, pages after a cursor) build their statements as they are asked.

The indexes behind the listing: ix_invoices_client_listing (a client's, by date), ix_invoices_listing
(a workspace's, by date), ix_invoices_open (unpaid and overdue), ix_invoice_number_suffixes_search
(part of a number)."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from chassis.errors import Invalid, NotFound
from chassis.prepared import Prepared
from chassis.sql import json_rows, local_date, rows_from_json
from chassis.sqltypes import UtcDateTime
from services.billing import domain
from services.billing.handlers.common import page_bounds, today_in
from services.billing.handlers.documents import (
    INVOICE_LISTING_COLUMNS,
    _listing,
    _listing_query,
    invoice_listing_view,
    invoice_view_with_code,
    portal_visible,
)
from services.billing.handlers.verification import code_column
from services.billing.tables import clients, invoice_number_suffixes, invoices, workspaces

__all__ = ["list_invoices"]

SORTS = {
    "date": invoices.c.issue_date,
    "due_date": invoices.c.due_date,
    "amount": invoices.c.total,
    "number": invoices.c.number,
}
# Above every character a number can hold: suffix >= term and < term + this is "starts with term".
LAST_CHARACTER = "\U0010ffff"


# What each item carries: the whole invoice, or what a list of invoices shows of it. A list prints no
# verification code, so "listing" reads none: one lookup a row less for the portal's page.
FIELDS = {"all": invoice_view_with_code, "listing": invoice_listing_view}


def _code_column(fields: str) -> tuple[sa.Label, ...]:
    return (code_column("invoice", invoices.c.id),) if fields == "all" else ()


def _sort_keys(sort: str) -> tuple[list, bool]:
    """The columns a listing is ordered by and whether descending: the sort's column, then the number
    (unique in a workspace) in the same direction, so that each order is one range of an index, read
    forwards or backwards, and a page can start right after any row."""
    column = SORTS.get(sort.removeprefix("-")) if isinstance(sort, str) else None
    if column is None:
        raise Invalid("Unknown sort.", sort=f"one of {', '.join(SORTS)}, optionally with a leading -")
    return ([column] if column is invoices.c.number else [column, invoices.c.number]), sort.startswith("-")


def _cursor(sort: str, row) -> str:
    """An opaque token for "the rows after this one" in this sort: its sort keys."""
    keys, _ = _sort_keys(sort)
    values = [getattr(row, key.name) for key in keys]
    raw = json.dumps([sort, *(v.isoformat() if isinstance(v, date) else v for v in values)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _after(cursor, sort: str) -> list:
    """The sort keys a cursor from an earlier page of the same listing holds."""
    keys, _ = _sort_keys(sort)
    try:
        raw = base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4))
        cursor_sort, *values = json.loads(raw)
        if cursor_sort != sort or len(values) != len(keys):
            raise ValueError("another listing's cursor")
        typed: list[date | int | str] = []
        for key, value in zip(keys, values):
            if isinstance(key.type, sa.Date):
                typed.append(date.fromisoformat(value))
            elif (
                isinstance(key.type, sa.Integer)
                and isinstance(value, int)
                and not isinstance(value, bool)
                and -(2**63) <= value < 2**63
            ):
                typed.append(value)
            elif (
                isinstance(key.type, sa.String) and isinstance(value, str) and len(value) <= 50 and "\x00" not in value
            ):
                typed.append(value)
            else:
                raise ValueError("a key of the wrong type")
        return typed
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        # an opaque reference to a page this listing never gave, like an unknown id: not found
        raise NotFound(
            "There is no such page: after is the next_cursor of an earlier page with the same sort.",
            after="not a page of this listing",
        ) from None


def list_invoices(uow, now: datetime, workspace_id: str, filters: dict | None = None) -> dict:
    """Filter by client, status (including derived 'overdue' and 'unpaid'), number search; sorted, paged.

    Two ways to page: `after`, the `next_cursor` of the previous page (keyset: the page starts in the
    index where the last one ended, however deep; its `total` is None, as counting would read every
    row), or `offset` (page numbers; the rows before it are still read).

    `fields`: "all" (the default) gives each invoice whole, with its verification code; "listing" only
    what a list of them shows (invoice_listing_view, no code), which the portal's page reads and
    renders for less."""
    filters = filters or {}
    status = filters.get("status") or "all"
    if status not in STATUSES:
        raise Invalid("Unknown status filter.", status=f"one of {', '.join(STATUSES)}")
    sort = filters.get("sort") or "-date"  # a leading - sorts descending; newest first by default
    keys, descending = _sort_keys(sort)  # a known sort, or Invalid
    limit, offset = page_bounds(filters.get("limit", 20), filters.get("offset", 0), 100)
    search = str(filters.get("search") or "")[:50].lower()
    fields = filters.get("fields") or "all"
    if not isinstance(fields, str) or fields not in FIELDS:
        raise Invalid("Unknown fields.", {"fields": f"one of {', '.join(FIELDS)}"})
    if filters.get("portal") and filters.get("client_id") and not filters.get("after") and not filters.get("kind"):
        return _portal_page(uow, now, workspace_id, filters["client_id"], status, sort, search, fields, limit, offset)
    reader = None
    if filters.get("portal") and filters.get("client_id"):  # the reader and the business's today, read together
        reader = _portal_reader(uow, workspace_id, filters["client_id"])
        query, today = _listing_query(invoices, workspace_id, filters), today_in(reader.business_timezone, now)
    else:
        query, today = _listing(uow, now, invoices, workspace_id, filters)
    if not filters.get("portal") and not filters.get("include_archived"):
        query = query.where(invoices.c.archived_at.is_(None))
    if filters.get("kind"):
        query = query.where(invoices.c.kind == filters["kind"])
    if search:
        query = query.where(_number_contains(workspace_id, search, search + LAST_CHARACTER))
    if status != "all":
        query = query.where(_status_is(status, today))
    total = None  # a page by cursor does not count again: counting reads every row the first page counted
    if filters.get("after"):  # with an offset too, that many rows after the cursor are skipped
        after = _after(filters["after"], sort)
        position = sa.tuple_(*keys) if len(keys) > 1 else keys[0]
        start = tuple(after) if len(keys) > 1 else after[0]
        query = query.where(position < start if descending else position > start)
    else:
        total = uow.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar_one()
    # one more than the page: is there a next? Any verification codes come in the same statement.
    page_query = query.add_columns(*_code_column(fields)).order_by(*_order(sort)).limit(limit + 1)
    page = _page(uow.execute(page_query.offset(offset)).all(), today, sort, total, limit, offset, FIELDS[fields])
    if reader is not None:  # how the reader formats: one call renders the page
        page["client"] = {name: getattr(reader, name) for name in _READER}
    return page


STATUSES = ("all", "paid", "unpaid", "partially_paid", "overdue", "draft", "sent", "viewed", "void")


def _status_is(status: str, today: date | sa.ColumnElement[date]) -> sa.ColumnElement[bool]:
    """The condition for a status filter other than "all", as of the business's `today` (a date, or
    the statement's own expression for it)."""
    owed = invoices.c.total - invoices.c.amount_paid - invoices.c.amount_credited
    open_ = invoices.c.status.in_(sorted(domain.OPEN_STATUSES))
    if status == "unpaid":
        return open_ & (owed > 0)
    if status == "overdue":
        return open_ & (owed > 0) & (invoices.c.due_date < today)
    return invoices.c.status == status


def _number_contains(workspace_id, start, end) -> sa.ColumnElement[bool]:
    """Invoices whose number has an ending from `start` up to `end`: those containing the term."""
    endings = invoice_number_suffixes.c
    return invoices.c.id.in_(
        sa.select(endings.invoice_id).where(
            endings.workspace_id == workspace_id, endings.suffix >= start, endings.suffix < end
        )
    )


def _order(sort: str) -> list[sa.UnaryExpression[Any]]:
    keys, descending = _sort_keys(sort)
    return [key.desc() if descending else key.asc() for key in keys]


def _page(rows, today: date, sort: str, total: int | None, limit: int, offset: int, view) -> dict[str, Any]:
    """The listing's answer from up to limit + 1 rows (one more tells that there is a next page), each
    item as `view` shows it."""
    return {
        "items": [view(r, today) for r in rows[:limit]],
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_cursor": _cursor(sort, rows[limit - 1]) if len(rows) > limit else None,
    }


# A portal page's values, named as _portal_page passes them.
_client: sa.BindParameter[str] = sa.bindparam("of_client")
_workspace: sa.BindParameter[str] = sa.bindparam("of_workspace")
_now = sa.bindparam("now", type_=UtcDateTime)
_search_from = sa.bindparam("search_from", type_=sa.String)
_search_to = sa.bindparam("search_to", type_=sa.String)
_rows = sa.bindparam("page_rows", type_=sa.Integer)
_skip = sa.bindparam("page_offset", type_=sa.Integer)
_business_today = local_date(
    _now, sa.select(workspaces.c.timezone).where(workspaces.c.id == _workspace).scalar_subquery()
)
_READER = ("name", "currency", "locale", "timezone")


@functools.cache
def _portal_statement(status: str, sort: str, searching: bool, fields: str) -> tuple[Prepared, sa.Select[Any]]:
    """One portal page in one statement: the client (NotFound when not in the workspace), its
    business's today, how many invoices match, and the page (one row more) as JSON, with every column
    or only a listing's; and the query whose columns the JSON rows have."""
    matching = [invoices.c.workspace_id == _workspace, invoices.c.client_id == _client, *portal_visible(invoices)]
    if searching:
        matching.append(_number_contains(_workspace, _search_from, _search_to))
    if status != "all":
        matching.append(_status_is(status, _business_today))
    columns = INVOICE_LISTING_COLUMNS if fields == "listing" else (invoices,)
    page = sa.select(*columns, *_code_column(fields)).where(*matching)
    name = f"billing_invoices_{status}_{sort.replace('-', 'desc_')}{'_search' if searching else ''}"
    name += "_listing" if fields == "listing" else ""
    statement = (
        sa.select(
            *(clients.c[column] for column in _READER),
            _business_today.label("today"),
            sa.select(sa.func.count()).select_from(invoices).where(*matching).scalar_subquery().label("total"),
            json_rows(page, _order(sort), _rows, offset=_skip).label("page"),
        )
        .join(workspaces, workspaces.c.id == clients.c.workspace_id)
        .where(clients.c.id == _client, clients.c.workspace_id == _workspace)
    )
    return Prepared(name, statement), page


def _portal_page(uow, now, workspace_id, client_id, status, sort, search, fields, limit, offset) -> dict[str, Any]:
    statement, page_query = _portal_statement(status, sort, bool(search), fields)
    row = uow.read_row(
        statement,
        {
            "of_workspace": workspace_id,
            "of_client": client_id,
            "now": now,
            "search_from": search,
            "search_to": search + LAST_CHARACTER,
            "page_rows": limit + 1,
            "page_offset": offset,
        },
    )
    if row is None:
        raise NotFound("No such client.")
    rows = rows_from_json(page_query, row.page)
    page = _page(rows, row.today, sort, int(row.total), limit, offset, FIELDS[fields])
    page["client"] = {name: getattr(row, name) for name in _READER}  # how the reader formats: one call renders it
    return page


def _portal_reader(uow, workspace_id: str, client_id: str):
    """The client a portal listing is for (its name, currency, locale and time zone) and its business's
    time zone, in one statement; NotFound for a client not in the workspace."""
    row = uow.execute(
        sa.select(*(clients.c[column] for column in _READER), workspaces.c.timezone.label("business_timezone"))
        .join(workspaces, workspaces.c.id == clients.c.workspace_id)
        .where(clients.c.id == client_id, clients.c.workspace_id == workspace_id)
    ).first()
    if row is None:
        raise NotFound("No such client.")
    return row

"""The portal's dashboard for one client, read in one prebuilt statement: the client and its business,
the client's summary row (summaries.py), what is overdue and its aging as of the business's today,
what bank debits in flight are paying, and the recent invoices, quotes and activity (or, in brief,
the recent invoices alone). Both statements are built once at import, so that a page view skips
SQLAlchemy's construction work; their grouped read
of open invoices by due date (`OPEN_BY_DUE`) also gives a statement of account its aging."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime
from types import SimpleNamespace

import sqlalchemy as sa

from chassis.errors import Invalid, NotFound
from chassis.prepared import Prepared
from chassis.sql import json_array_agg, json_object, json_rows, local_date, rows_from_json
from chassis.sqltypes import UtcDateTime
from services.billing.aging import OpenByDue, aging, past_due
from services.billing.handlers.activity import _activity_view
from services.billing.handlers.common import iso
from services.billing.handlers.documents import (
    INVOICE_LISTING_COLUMNS,
    PORTAL_QUOTES,
    QUOTE_ORDER,
    invoice_listing_view,
    invoice_view_with_code,
    quote_view,
)
from services.billing.handlers.summaries import OPEN, OWED, params
from services.billing.handlers.verification import code_column, grouped
from services.billing.tables import (
    activities,
    client_summaries,
    clients,
    invoices,
    processing_payments,
    quotes,
    workspaces,
)

__all__ = ["client_dashboard", "OPEN_BY_DUE"]

log = logging.getLogger(__name__)

# named as in summaries.params
_client: sa.BindParameter[str] = sa.bindparam("of_client")
_workspace: sa.BindParameter[str] = sa.bindparam("of_workspace")
_now = sa.bindparam("now", type_=UtcDateTime)
_ws = workspaces.alias("business")
_summary = client_summaries
# What the client owes on its open invoices (ix_invoices_open), per currency and due date (few rows:
# one per distinct due date), as one JSON array: the overdue figures and the aging buckets are summed
# from it in plain Python (aging.py), as of the business's today that the statement also reads.
OPEN_BY_DUE = (
    sa.select(
        invoices.c.currency,
        invoices.c.due_date,
        sa.func.count().label("invoices"),
        sa.func.sum(OWED).label("owed"),
    )
    .where(*OPEN)
    .group_by(invoices.c.currency, invoices.c.due_date)
    .subquery("open_by_due")
)
_OPEN_BY_DUE_ROWS = (
    sa.select(
        json_array_agg(
            json_object(
                *(
                    part
                    for name in ("currency", "due_date", "owed", "invoices")
                    for part in (sa.literal_column(f"'{name}'"), OPEN_BY_DUE.c[name])
                )
            )
        )
    )
    .select_from(OPEN_BY_DUE)
    .scalar_subquery()
    .label("open_by_due")
)


def _open_by_due(value) -> list[OpenByDue]:
    """The open_by_due JSON array as rows (NULL or [] when nothing is open)."""
    items = json.loads(value) if isinstance(value, str) else (value or [])
    return [
        OpenByDue(i["currency"], date.fromisoformat(str(i["due_date"])[:10]), int(i["owed"]), int(i["invoices"]))
        for i in items
        if i
    ]


# The recent lists as the portal sees them: issued, not archived, newest first.
_RECENT = (
    invoices.c.client_id == _client,
    invoices.c.workspace_id == _workspace,
    invoices.c.status != "draft",
    invoices.c.archived_at.is_(None),
)
_RECENT_INVOICES = sa.select(invoices, code_column("invoice", invoices.c.id)).where(*_RECENT)
_RECENT_INVOICES_LISTED = sa.select(*INVOICE_LISTING_COLUMNS).where(*_RECENT)  # as a list shows them: no codes
_RECENT_QUOTES = sa.select(quotes, code_column("quote", quotes.c.id)).where(
    quotes.c.client_id == _client, quotes.c.workspace_id == _workspace, *PORTAL_QUOTES
)
_RECENT_ACTIVITY = sa.select(
    activities.c.kind, activities.c.summary, activities.c.data, activities.c.occurred_at
).where(activities.c.workspace_id == _workspace, activities.c.client_id == _client)
# What bank debits in flight are paying (kept from payments' events), in the dashboard's one statement.
_PROCESSING = (
    sa.select(sa.func.coalesce(sa.func.sum(processing_payments.c.amount), 0))
    .where(
        processing_payments.c.workspace_id == _workspace,
        processing_payments.c.client_id == _client,
        processing_payments.c.settled_at.is_(None),
    )
    .scalar_subquery()
    .label("processing")
)
_BUSINESS = ("name", "email", "phone", "address", "logo_url", "brand_color")
_NOTHING = sa.null()  # a section the brief dashboard leaves out


def _dashboard(statement_name: str, brief: bool) -> Prepared:
    """The whole dashboard, or in brief: the same figures, the recent invoices as a list shows them,
    and no recent quotes or activity (neither is read)."""
    recent_invoices = _RECENT_INVOICES_LISTED if brief else _RECENT_INVOICES
    order = (invoices.c.issue_date.desc(), invoices.c.number.desc())
    activity_order = (activities.c.occurred_at.desc(), activities.c.id.desc())
    return Prepared(
        statement_name,
        sa.select(
            clients.c.id,
            clients.c.name,
            clients.c.address,
            clients.c.phone,
            clients.c.currency,
            clients.c.locale,
            clients.c.timezone,
            *(getattr(_ws.c, name).label(f"business_{name}") for name in _BUSINESS),
            local_date(_now, _ws.c.timezone).label("today"),
            _summary.c.currency.label("summary_currency"),
            _summary.c.outstanding,
            _summary.c.credit_available,
            _summary.c.retainer_available,
            _summary.c.last_payment_amount,
            _summary.c.last_payment_currency,
            _summary.c.last_payment_received_at,
            _OPEN_BY_DUE_ROWS,
            _PROCESSING,
            json_rows(recent_invoices, order, 5).label("recent_invoices"),
            (_NOTHING if brief else json_rows(_RECENT_QUOTES, QUOTE_ORDER, 5)).label("recent_quotes"),
            (_NOTHING if brief else json_rows(_RECENT_ACTIVITY, activity_order, 10)).label("recent_activity"),
        )
        .select_from(
            clients.join(_ws, _ws.c.id == clients.c.workspace_id).outerjoin(
                _summary, (_summary.c.client_id == clients.c.id) & (_summary.c.workspace_id == clients.c.workspace_id)
            )
        )
        .where(clients.c.id == _client, clients.c.workspace_id == _workspace),
        # Planned once without the client's values, the policies make every client look as if it held
        # a few invoices: sorting them all for the newest five then looks as cheap as reading five in
        # the listing index's order, and for a client of thousands it is not. No sort where an index
        # gives the order; and no JIT, which the cost a sort with no alternative is then given would
        # otherwise set off on every call (a second's compiling for a read of a millisecond).
        planner={"enable_sort": "off", "jit": "off"},
    )


# What `fields` asks for: the whole dashboard (the portal's API answers it), or in brief (all the
# portal's page shows).
_DASHBOARDS = {
    "all": _dashboard("billing_client_dashboard", brief=False),
    "brief": _dashboard("billing_client_dashboard_brief", brief=True),
}


def client_dashboard(uow, now: datetime, workspace_id: str, client_id: str, fields: str = "all") -> dict:
    """What the portal's dashboard shows, scoped to one client of one workspace, in one statement:
    the client and its business, the client's summary row (handlers/summaries.py: kept by every
    change to its money, never summed here), the overdue figures from its open invoices as of the
    business's today, and the recent invoices, quotes and activity as JSON lists.

    `fields`: "all" (the default); or "brief", the same without the recent quotes and activity, and
    each recent invoice as a list shows it (invoice_listing_view)."""
    statement = _DASHBOARDS.get(fields) if isinstance(fields, str) else None
    if statement is None:
        raise Invalid("Unknown fields.", {"fields": f"one of {', '.join(_DASHBOARDS)}"})
    row = uow.read_row(statement, {**params(workspace_id, client_id), "now": now})
    if row is None:
        raise NotFound("No such client.")
    summary = row
    if row.summary_currency != row.currency:  # none yet, or made before a change of currency
        log.warning(
            "client summary missing; portalctl summaries repair rebuilds it",
            extra={"workspace_id": workspace_id, "client_id": client_id},
        )
        summary = SimpleNamespace(outstanding=0, credit_available=0, retainer_available=0, last_payment_amount=None)
    money = lambda amount: {"amount": int(amount), "currency": row.currency}  # noqa: E731
    today = row.today
    open_by_due = _open_by_due(row.open_by_due)
    overdue_count, overdue_amount = past_due(open_by_due, today, row.currency)
    dashboard = {
        "client": {
            "id": row.id,
            "name": row.name,
            "address": row.address,
            "phone": row.phone,
            "currency": row.currency,
            "locale": row.locale,
            "timezone": row.timezone,
        },
        "business": {name: getattr(row, f"business_{name}") for name in _BUSINESS},
        "outstanding": money(summary.outstanding),
        # of the outstanding, what bank debits are paying already (settled or failed within days)
        "processing": money(int(row.processing)),
        "overdue": {"count": overdue_count, **money(overdue_amount)},
        # what is owed by days past due (the business's today), per currency, the client's first
        "aging": aging(((o.currency, o.due_date, o.owed) for o in open_by_due), today, first=row.currency),
        "credit_available": money(summary.credit_available),
        "retainer_available": money(summary.retainer_available),
        "last_payment": None
        if summary.last_payment_amount is None
        else {
            "amount": summary.last_payment_amount,
            "currency": summary.last_payment_currency,
            "received_at": iso(summary.last_payment_received_at),
        },
    }
    if fields == "brief":
        dashboard["recent_invoices"] = [
            invoice_listing_view(r, today) for r in rows_from_json(_RECENT_INVOICES_LISTED, row.recent_invoices)
        ]
        return dashboard
    dashboard["recent_invoices"] = [
        invoice_view_with_code(r, today) for r in rows_from_json(_RECENT_INVOICES, row.recent_invoices)
    ]
    dashboard["recent_quotes"] = [
        {**quote_view(r, today), "verification_code": grouped(r.verification_code)}
        for r in rows_from_json(_RECENT_QUOTES, row.recent_quotes)
    ]
    dashboard["recent_activity"] = [_activity_view(r) for r in rows_from_json(_RECENT_ACTIVITY, row.recent_activity)]
    return dashboard

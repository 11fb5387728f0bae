"""Helpers shared by the billing handlers: ids, scoped lookups, numbering, lines, activity."""

from __future__ import annotations

import functools
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from chassis.errors import Invalid, NotFound
from chassis.fields import check_locale, check_timezone
from chassis.money import check_currency
from chassis.prepared import Prepared, bound
from services.billing import domain
from services.billing.settings_model import WorkspaceSettings, parse_settings
from services.billing.tables import activities, clients, contacts, counters, line_items, workspaces


def new_id() -> str:
    return str(uuid.uuid4())


def check_fields(data, allowed: set) -> None:
    """Refuse anything but an object of known fields, naming each unknown one."""
    if not isinstance(data, dict):
        raise Invalid("Expected an object.", body="not an object")
    unknown = set(data) - allowed
    if unknown:
        raise Invalid("Unknown fields.", fields={k: "unknown field" for k in sorted(unknown)})


def check_regional(values: dict) -> None:
    """Currency, locale and time zone, where given, must be real ones."""
    for key, check in (("currency", check_currency), ("locale", check_locale), ("timezone", check_timezone)):
        if key in values:
            if not isinstance(values[key], str):
                raise Invalid(
                    f"{key} is text.", fields={key: "not text" if values[key] is not None else "null is not allowed"}
                )
            check(values[key])


def page_bounds(limit, offset, most: int) -> tuple[int, int]:
    """limit 1..most and offset >= 0 from whatever arrived (query strings are text)."""
    try:
        return max(1, min(int(limit), most)), max(0, int(offset))
    except (TypeError, ValueError):
        raise Invalid("limit and offset are whole numbers.", limit="not a number") from None


def get_scoped(
    uow, table: sa.Table, workspace_id: str, object_id: str, what: str, lock: bool = False, client_id: str | None = None
):
    """Every lookup is scoped to a workspace (and a client for the portal); outside it, NotFound."""
    scope = {"of_id": str(object_id), "of_workspace": workspace_id}
    if client_id is not None:
        scope["of_client"] = client_id
    row = uow.execute(_by_id(table, client_id is not None, lock), scope).first()
    if row is None:
        raise NotFound(f"No such {what}.")
    return row


@functools.cache
def _by_id(table: sa.Table, of_client: bool, lock: bool) -> Prepared:
    """get_scoped's statement for one table, built once and prepared (chassis/prepared.py): most calls
    that change something start with one."""
    query = sa.select(table).where(
        table.c.id == sa.bindparam("of_id", type_=table.c.id.type),
        table.c.workspace_id == sa.bindparam("of_workspace", type_=sa.String),
    )
    if of_client:
        query = query.where(table.c.client_id == sa.bindparam("of_client", type_=sa.String))
    if lock:
        query = query.with_for_update()
    return Prepared(f"billing_{table.name}_by_id{'_of_client' if of_client else ''}{'_locked' if lock else ''}", query)


def workspace_row(uow, workspace_id: str, lock: bool = False):
    query = sa.select(workspaces).where(workspaces.c.id == workspace_id)
    row = uow.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("No such workspace.")
    return row


def settings_of(ws_row) -> WorkspaceSettings:
    return parse_settings(ws_row.settings or {})


def workspace_today(ws_row, now: datetime) -> date:
    return today_in(ws_row.timezone, now)


def today_in(timezone: str, now: datetime) -> date:
    """The date it is now in a time zone: due dates fall due by the business's calendar."""
    return now.astimezone(ZoneInfo(timezone)).date()


def parse_date(value, name: str, label: str | None = None) -> date | None:
    """A date, or Invalid under the field's `name`; the message says `label` (what a page calls the field),
    else the name."""
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Invalid(f"{label or name} must be a date like 2026-11-23.", fields={name: "not a date"}) from None


def allocate_number(uow, workspace_id: str, kind: str, pattern: str, on: date) -> str:
    """The next gapless number. The counter row is written in the caller's transaction, so a rolled
    back document gives its number back; on PostgreSQL the row lock orders concurrent creators."""
    period = domain.counter_period(pattern, on)
    key = (counters.c.workspace_id == workspace_id) & (counters.c.kind == kind) & (counters.c.period == period)
    dialect = uow.conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(counters)
        uow.execute(
            insert.values(workspace_id=workspace_id, kind=kind, period=period, value=0).on_conflict_do_nothing()
        )
    value = uow.execute(
        counters.update().where(key).values(value=counters.c.value + 1).returning(counters.c.value)
    ).scalar_one()
    return domain.format_number(pattern, value, on)


def parse_lines(raw_lines) -> list[domain.Line]:
    if not isinstance(raw_lines, list) or not raw_lines:
        raise Invalid("A document needs at least one line.", lines="empty")
    if len(raw_lines) > 200:
        raise Invalid("A document has at most 200 lines.", lines="too many")
    lines = []
    for i, raw in enumerate(raw_lines):
        if not isinstance(raw, dict):
            raise Invalid("Each line is an object.", fields={f"lines.{i}": "not an object"})
        try:
            lines.append(domain.Line.from_dict(raw))
        except Invalid as exc:
            raise Invalid(exc.detail, fields={f"lines.{i}.{k}": v for k, v in exc.fields.items()}) from None
    return lines


def check_reverse_charge(ws, client, lines: list[domain.Line]) -> list[domain.Line]:
    """A reverse-charge line (AE) is only lawful between two VAT-registered businesses: the invoice
    must name both VAT ids, so it is refused where it is written, not where it is received."""
    if any(line.tax_category == "AE" for line in lines):
        if not client.vat_id:
            raise Invalid("Reverse charge (AE) needs the client's VAT id.", vat_id="required for reverse charge")
        if not settings_of(ws).legal.vat_id:
            raise Invalid(
                "Reverse charge (AE) needs the workspace's VAT id (settings.legal.vat_id).",
                vat_id="required for reverse charge",
            )
    return lines


def save_lines(uow, kind: str, document_id: str, lines: list[domain.Line]) -> None:
    uow.execute(line_items.delete().where(line_items.c.document_kind == kind, line_items.c.document_id == document_id))
    uow.execute(
        line_items.insert(),
        [
            {
                "document_kind": kind,
                "document_id": document_id,
                "position": i,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "tax_rate": line.tax_rate,
                "discount_percent": line.discount_percent,
                "subtotal": line.subtotal,
                "tax": line.tax,
                "line_total": line.total,
                "tax_category": line.tax_category,
            }
            for i, line in enumerate(lines, start=1)
        ],
    )


def load_lines(uow, kind: str, document_id: str) -> list[dict]:
    rows = uow.execute(
        sa.select(line_items)
        .where(line_items.c.document_kind == kind, line_items.c.document_id == document_id)
        .order_by(line_items.c.position)
    ).all()
    return lines_of(rows)


def lines_of(rows) -> list[dict]:
    """line_items rows as a document's view shows them."""
    # the stored amounts are what the document was totalled from: show those, never recompute
    return [
        {
            **domain.Line(
                r.description,
                Decimal(r.quantity),
                r.unit_price,
                Decimal(r.tax_rate),
                Decimal(r.discount_percent),
                r.tax_category or "",
            ).as_dict(),
            "subtotal": r.subtotal,
            "tax": r.tax,
            "total": r.line_total,
        }
        for r in rows
    ]


def lines_and_taxes(uow, kind: str, document_id: str, tax_total: int) -> dict:
    """A document's lines and its tax breakdown (one row per rate), as every view of it shows them."""
    lines = load_lines(uow, kind, document_id)
    return {"lines": lines, "tax_breakdown": domain.stored_tax_breakdown(lines, tax_total)}


PRIMARY_FIRST = (contacts.c.is_primary.desc(), contacts.c.created_at)  # the contact a document is addressed to


def client_snapshot(uow, client_row) -> dict:
    primary = uow.execute(
        sa.select(contacts).where(contacts.c.client_id == client_row.id).order_by(*PRIMARY_FIRST)
    ).first()
    return snapshot_of(client_row, primary)


CLIENT_AS_PRINTED = ("name", "address", "phone", "tax_id", "country", "vat_id", "buyer_reference")


def snapshot_of(client_row, primary) -> dict:
    """The client as a document shows it (name, address, tax ids, its primary contact, if any)."""
    return {
        **{name: getattr(client_row, name) for name in CLIENT_AS_PRINTED},
        "contact_name": primary.name if primary else "",
        "contact_email": primary.email if primary else "",
    }


# Prepared (chassis/prepared.py): every payment, invoice and reminder the client is told of sends it.
_PORTAL_RECIPIENTS = Prepared(
    "billing_portal_recipients",
    sa.select(
        contacts.c.id,
        contacts.c.email,
        contacts.c.name,
        contacts.c.locale,
        clients.c.locale.label("client_locale"),
        clients.c.timezone.label("client_timezone"),
    )
    .join(clients, clients.c.id == contacts.c.client_id)
    .where(contacts.c.client_id == sa.bindparam("of_client", type_=sa.String), contacts.c.portal_access.is_(True)),
)


def portal_recipients(uow, client_id: str) -> list[dict]:
    """The client's contacts with portal access, as the events that email them name them: the contact's
    own locale (null: it has none), and the client's locale and time zone, the language of the email
    to a contact without a locale of its own and the zone any time in it is given in."""
    rows = uow.execute(_PORTAL_RECIPIENTS, {"of_client": client_id}).all()
    return [
        {
            "contact_id": r.id,
            "email": r.email,
            "name": r.name,
            "locale": r.locale,
            "client_locale": r.client_locale,
            "timezone": r.client_timezone,
        }
        for r in rows
    ]


def record_activity(
    uow, now: datetime, workspace_id: str, client_id: str, kind: str, summary: str, data: dict | None = None
) -> None:
    """A line of the client's activity, written as the transaction commits, with the others it records
    (nothing reads activity back in the transaction that records it)."""
    row = {
        "workspace_id": workspace_id,
        "client_id": client_id,
        "kind": kind,
        "summary": summary[:300],
        "data": data or {},
        "occurred_at": now,
    }
    uow.insert_at_commit(activities, row, _ACTIVITY)


# Built once and prepared (chassis/prepared.py): most changes a client sees record one.
_ACTIVITY = Prepared(
    "billing_activity_new",
    activities.insert().values(
        bound(activities, "workspace_id", "client_id", "kind", "summary", "data", "occurred_at")
    ),
)


def client_row(uow, workspace_id: str, client_id: str, lock: bool = False):
    return get_scoped(uow, clients, workspace_id, client_id, "client", lock=lock)


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def occurred(event: dict, now: datetime) -> datetime:
    """When the event happened (its envelope), not when it reached us: retries and a backlog must
    not make a failure look recent. Falls back to now for an envelope without a usable time."""
    try:
        at = datetime.fromisoformat(event["occurred_at"])
    except (KeyError, TypeError, ValueError):
        return now
    return at if at.tzinfo is not None else at.replace(tzinfo=timezone.utc)

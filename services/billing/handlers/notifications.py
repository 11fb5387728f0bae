"""Notification preferences per contact (the rules: services/billing/notifications.py), the monthly
statement they can ask for, and who paid a card payment (so that its receipt is the payer's own)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from services.billing import notifications as rules
from services.billing.handlers.clients import update_contact
from services.billing.handlers.common import client_row, get_scoped, iso, record_activity, today_in
from services.billing.tables import (
    clients,
    contacts,
    monthly_statements,
    notification_preferences,
    payment_payers,
    workspaces,
)

__all__ = [
    "get_notification_preferences",
    "list_notification_preferences",
    "update_notification_preferences",
    "note_payment_payer",
    "payer_of",
    "workspaces_with_statements_wanted",
    "run_monthly_statements",
]

# Who changed them, as the activity timeline says it.
VIA = {"portal": "from the portal", "unsubscribe": "by an email's unsubscribe link", "business": "by the business"}


def _view(contact, row) -> dict:
    """A contact's choices: the stored ones, else the defaults."""
    chosen = {c: getattr(row, c) for c in rules.CATEGORIES} if row is not None else dict(rules.DEFAULTS)
    return {
        "contact_id": contact.id,
        "client_id": contact.client_id,
        "email": contact.email,
        **chosen,
        "email_locale": contact.locale,
        "version": row.version if row is not None else 0,
        "updated_at": iso(row.updated_at) if row is not None else None,
    }


def _row(uow, contact_id: str, lock: bool = False):
    query = sa.select(notification_preferences).where(notification_preferences.c.contact_id == contact_id)
    return uow.execute(query.with_for_update() if lock else query).first()


def get_notification_preferences(
    uow, now: datetime, workspace_id: str, contact_id: str, client_id: str | None = None
) -> dict:
    contact = get_scoped(uow, contacts, workspace_id, contact_id, "contact", client_id=client_id)
    return _view(contact, _row(uow, contact.id))


def list_notification_preferences(uow, now: datetime, workspace_id: str, client_id: str) -> list[dict]:
    """Each contact's choices, for the business (read-only there)."""
    client_row(uow, workspace_id, client_id)
    found = uow.execute(
        sa.select(contacts)
        .where(contacts.c.workspace_id == workspace_id, contacts.c.client_id == client_id)
        .order_by(contacts.c.is_primary.desc(), contacts.c.created_at)
    ).all()
    chosen = {
        r.contact_id: r
        for r in uow.execute(
            sa.select(notification_preferences).where(notification_preferences.c.client_id == client_id)
        ).all()
    }
    return [_view(c, chosen.get(c.id)) for c in found]


def update_notification_preferences(
    uow,
    now: datetime,
    workspace_id: str,
    contact_id: str,
    data: dict,
    client_id: str | None = None,
    via: str = "portal",
) -> dict:
    """Change what a contact gets emailed; only the fields sent change. Published whole (with a version)
    so documents' copy converges whatever order the events arrive in."""
    if via not in VIA:
        via = "portal"
    values = rules.clean(data)
    contact = get_scoped(uow, contacts, workspace_id, contact_id, "contact", client_id=client_id, lock=True)
    if "email_locale" in values:  # the contact's locale is the language of its emails (and its pages)
        if values["email_locale"] != contact.locale:
            update_contact(uow, now, workspace_id, contact_id, {"locale": values["email_locale"]})
        del values["email_locale"]
    row = _row(uow, contact_id, lock=True)
    current = {c: getattr(row, c) for c in rules.CATEGORIES} if row is not None else dict(rules.DEFAULTS)
    changed = sorted(k for k, v in values.items() if current[k] != v)
    if row is None:
        uow.execute(
            notification_preferences.insert().values(
                contact_id=contact_id,
                workspace_id=workspace_id,
                client_id=contact.client_id,
                **{**current, **values},
                version=1,
                updated_at=now,
            )
        )
    elif changed:
        uow.execute(
            notification_preferences.update()
            .where(notification_preferences.c.contact_id == contact_id)
            .values(**values, version=notification_preferences.c.version + 1, updated_at=now)
        )
    contact = get_scoped(uow, contacts, workspace_id, contact_id, "contact")
    view = _view(contact, _row(uow, contact_id))
    if changed or row is None or "email_locale" in data:
        uow.publish(
            "contact.notification_preferences_changed",
            workspace_id,
            {
                **{k: view[k] for k in ("contact_id", "client_id", *rules.CATEGORIES, "email_locale", "version")},
                "changed": changed,
                "via": via,
            },
        )
    if changed:
        turned = ", ".join(f"{c.replace('_', ' ')} {'on' if values[c] else 'off'}" for c in changed)
        record_activity(
            uow,
            now,
            workspace_id,
            contact.client_id,
            "notifications.changed",
            f"Email notifications for {contact.email} changed {VIA[via]}: {turned}",
            {"contact_id": contact_id, "changed": changed, "via": via},
        )
    return view


def note_payment_payer(uow, now: datetime, workspace_id: str, client_id: str, payment_id: str, contact_id: str) -> dict:
    """Remember which of the client's contacts started a card payment (the gateway passes the attempt id
    payments gave it for this client); the first note stands, a repeat changes nothing."""
    get_scoped(uow, contacts, workspace_id, contact_id, "contact", client_id=client_id)
    insert = (postgresql.insert if uow.conn.dialect.name == "postgresql" else sqlite.insert)(payment_payers)
    uow.execute(
        insert.values(
            payment_id=str(payment_id)[:36],
            workspace_id=workspace_id,
            client_id=client_id,
            contact_id=contact_id,
            created_at=now,
        ).on_conflict_do_nothing()
    )
    return {"payment_id": str(payment_id)[:36], "contact_id": payer_of(uow, str(payment_id)[:36])}


def payer_of(uow, payment_id: str) -> str | None:
    return uow.execute(
        sa.select(payment_payers.c.contact_id).where(payment_payers.c.payment_id == payment_id)
    ).scalar_one_or_none()


def workspaces_with_statements_wanted(uow, now: datetime) -> list[str]:
    """The workspaces with a contact who asked for the monthly statement (the sweep's cross-workspace step)."""
    return list(
        uow.execute(
            sa.select(notification_preferences.c.workspace_id)
            .distinct()
            .where(notification_preferences.c.monthly_statement.is_(True))
        ).scalars()
    )


def run_monthly_statements(uow, now: datetime, workspace_id: str) -> int:
    """Announce last month's statement (in the workspace's calendar) to each contact with portal access
    who asked for it and has not had it. The row in monthly_statements is written in the same transaction
    as the event, and its primary key lets only one of any competing runs through."""
    tz = uow.execute(sa.select(workspaces.c.timezone).where(workspaces.c.id == workspace_id)).scalar_one()
    first, last, period = rules.statement_period(today_in(tz, now))
    wanted = uow.execute(
        sa.select(contacts, clients.c.locale.label("client_locale"))
        .join(notification_preferences, notification_preferences.c.contact_id == contacts.c.id)
        .join(clients, clients.c.id == contacts.c.client_id)
        .outerjoin(
            monthly_statements,
            (monthly_statements.c.contact_id == contacts.c.id) & (monthly_statements.c.period == period),
        )
        .where(
            contacts.c.workspace_id == workspace_id,
            contacts.c.portal_access.is_(True),
            notification_preferences.c.monthly_statement.is_(True),
            monthly_statements.c.contact_id.is_(None),
        )
    ).all()
    uow.rollback()  # each contact in a transaction of its own: one failure holds up no other
    dialect = uow.conn.dialect.name
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(monthly_statements)
    sent = 0
    for contact in wanted:
        claimed = uow.execute(
            insert.values(
                contact_id=contact.id,
                period=period,
                workspace_id=workspace_id,
                client_id=contact.client_id,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(monthly_statements.c.contact_id)
        ).first()
        if claimed is None:  # another run (a retry, another replica) announced it
            uow.rollback()
            continue
        uow.publish(
            "statement.monthly",
            workspace_id,
            {
                "client_id": contact.client_id,
                "period": period,
                "from": first.isoformat(),
                "to": last.isoformat(),
                "recipient": {
                    "contact_id": contact.id,
                    "email": contact.email,
                    "name": contact.name,
                    "locale": contact.locale or contact.client_locale,
                },
            },
        )
        uow.commit()
        sent += 1
    return sent

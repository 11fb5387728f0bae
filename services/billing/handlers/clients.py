"""Clients and their contacts."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email

from chassis.errors import Conflict, Forbidden, Invalid
from chassis.fields import REFUSE, check_country, check_locale, check_phone, flag, region_of, text
from chassis.scope import ROLES, require_role
from services.billing import domain, legal_ids
from services.billing.handlers.balances import client_balances
from services.billing.handlers.common import (
    check_fields,
    check_regional,
    client_row,
    get_scoped,
    iso,
    new_id,
    page_bounds,
    record_activity,
    workspace_row,
)
from services.billing.handlers.summaries import money_moved
from services.billing.tables import clients, contacts, credit_notes, invoices, payments, quotes

__all__ = [
    "update_profile",
    "create_client",
    "update_client",
    "get_client",
    "list_clients",
    "add_contact",
    "update_contact",
    "set_portal_access",
    "republish_contacts",
    "client_view",
    "list_team",
    "invite_contact",
    "change_contact_role",
    "remove_contact",
]

CLIENT_FIELDS = {
    "name",
    "address",
    "phone",
    "currency",
    "locale",
    "timezone",
    "tax_id",
    "country",
    "vat_id",
    "buyer_reference",
}
# What a client may change about itself from the portal; the rest is the business's to set.
PORTAL_EDITABLE = {"name", "address", "phone"}
CONTACT_FIELDS = {"email", "name", "phone", "locale", "is_primary", "portal_access", "role"}
DEFAULT_ROLE = "payer"  # a contact the business adds without naming a role: pays, sees everything


LIMITS = {"name": 200, "address": 2000, "phone": 50, "tax_id": 50, "country": 2, "vat_id": 30, "buyer_reference": 100}


def _clean_client(data: dict, partial: bool, current=None, locale: str | None = None) -> dict:
    """The client's fields as sent, or a field error. Changing one, null clears a text field other than
    the name; a new client takes its defaults from what is left out, never from a null. `current`: the
    client's row when it is changed (a phone it already has is not checked again); `locale`: the
    language a new client takes when it names none."""
    values = dict(data)
    if not partial and "name" not in values:
        raise Invalid("name is required.", name="required")
    for key, limit in LIMITS.items():
        if key in values:
            values[key] = text(
                values[key], key, limit, required=key == "name", null="" if partial and key != "name" else REFUSE
            )
    check_regional(values)
    if values.get("country"):  # "" leaves it unset
        check_country(values["country"])
    if values.get("phone") and values["phone"] != getattr(current, "phone", None):
        country = values.get("country", getattr(current, "country", ""))
        region = region_of(country, values.get("locale", getattr(current, "locale", locale)))
        values["phone"] = check_phone(values["phone"], "phone", region)
    if values.get("vat_id"):
        try:
            values["vat_id"] = legal_ids.vat_id(values["vat_id"])
        except ValueError as exc:
            raise Invalid(f"The VAT id is {exc}.", vat_id="invalid") from None
    return values


def client_view(uow, row) -> dict:
    contact_rows = uow.execute(
        sa.select(contacts)
        .where(contacts.c.client_id == row.id)
        .order_by(contacts.c.is_primary.desc(), contacts.c.created_at)
    ).all()
    return {
        "id": row.id,
        "name": row.name,
        "address": row.address,
        "phone": row.phone,
        "currency": row.currency,
        "locale": row.locale,
        "timezone": row.timezone,
        "tax_id": row.tax_id,
        "country": row.country,
        "vat_id": row.vat_id,
        "buyer_reference": row.buyer_reference,
        "created_at": iso(row.created_at),
        "contacts": [contact_view(c) for c in contact_rows],
    }


def contact_view(row) -> dict:
    return {
        "id": row.id,
        "client_id": row.client_id,
        "email": row.email,
        "name": row.name,
        "phone": row.phone,
        "locale": row.locale,
        "is_primary": row.is_primary,
        "portal_access": row.portal_access,
        "role": row.role,
    }


def create_client(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    check_fields(data, CLIENT_FIELDS | {"contacts"})
    ws = workspace_row(uow, workspace_id)
    values = _clean_client({k: v for k, v in data.items() if k in CLIENT_FIELDS}, partial=False, locale=ws.locale)
    client_id = new_id()
    defaults = {
        "address": "",
        "phone": "",
        "tax_id": "",
        "country": "",
        "vat_id": "",
        "buyer_reference": "",
        "currency": ws.currency,
        "locale": ws.locale,
        "timezone": ws.timezone,
    }
    uow.execute(
        clients.insert().values(id=client_id, workspace_id=workspace_id, created_at=now, **{**defaults, **values})
    )
    money_moved(uow, now, workspace_id, client_id)  # its first summary: nothing owed, nothing held
    uow.publish("client.created", workspace_id, {"id": client_id, "name": values["name"]})
    record_activity(uow, now, workspace_id, client_id, "client.created", "Client account created")
    for contact in data.get("contacts") or []:
        add_contact(uow, now, workspace_id, client_id, contact)
    return get_client(uow, now, workspace_id, client_id)


def update_client(uow, now: datetime, workspace_id: str, client_id: str, data: dict, from_portal: bool = False) -> dict:
    """Changes apply to future invoices only: issued ones keep their snapshot of these details."""
    check_fields(data, PORTAL_EDITABLE if from_portal else CLIENT_FIELDS)
    current = client_row(uow, workspace_id, client_id, lock=True)
    values = _clean_client(data, partial=True, current=current)
    if values.get("currency", current.currency) != current.currency and _has_documents(uow, client_id):
        # Amounts are minor units of a currency: re-labelling them would change what is owed.
        raise Conflict(
            "This client already has documents in its currency; create a new client for another currency.",
            currency="client has documents",
        )
    if values:
        uow.execute(clients.update().where(clients.c.id == client_id).values(**values))
    if values.get("currency", current.currency) != current.currency:
        money_moved(uow, now, workspace_id, client_id)  # its summary is in the client's currency
    if values.get("locale", current.locale) != current.locale:
        _announce_contacts_speaking_the_clients(uow, workspace_id, client_id)
    uow.publish(
        "client.updated",
        workspace_id,
        {"id": client_id, "changed": sorted(values), "by": "client" if from_portal else "business"},
    )
    record_activity(
        uow,
        now,
        workspace_id,
        client_id,
        "profile.changed",
        "Profile updated " + ("from the portal" if from_portal else "by the business"),
        {"fields": sorted(values)},
    )
    return get_client(uow, now, workspace_id, client_id)


def _announce_contacts_speaking_the_clients(uow, workspace_id: str, client_id: str) -> None:
    """The client's locale changed: its contacts without a locale of their own now speak the new one.
    Each that can sign in is announced again with a new version, so auth's copy (the language of sign-in
    emails and of the sessions it starts) takes it; a contact with its own locale is not concerned, and
    one without portal access is announced when it is given access."""
    speaking_the_clients = (
        (contacts.c.client_id == client_id) & contacts.c.locale.is_(None) & contacts.c.portal_access.is_(True)
    )
    uow.execute(contacts.update().where(speaking_the_clients).values(version=contacts.c.version + 1))
    for row in uow.execute(sa.select(contacts).where(speaking_the_clients).order_by(contacts.c.id)).all():
        uow.publish("contact.updated", workspace_id, _contact_event(uow, row))


def _has_documents(uow, client_id: str) -> bool:
    return any(
        uow.execute(sa.select(t.c.id).where(t.c.client_id == client_id).limit(1)).first()
        for t in (invoices, quotes, credit_notes, payments)
    )


def get_client(uow, now: datetime, workspace_id: str, client_id: str) -> dict:
    row = client_row(uow, workspace_id, client_id)
    return {**client_view(uow, row), "balances": client_balances(uow, now, workspace_id, client_id)}


def list_clients(uow, now: datetime, workspace_id: str, limit: int = 100, offset: int = 0) -> list[dict]:
    limit, offset = page_bounds(limit, offset, 500)
    rows = uow.execute(
        sa.select(clients)
        .where(clients.c.workspace_id == workspace_id)
        .order_by(clients.c.name)
        .limit(limit)
        .offset(offset)
    ).all()
    return [client_view(uow, r) for r in rows]


def _normal_email(raw) -> str:
    """The address as it is compared and stored: email_validator's normal form, in lower case."""
    raw = text(raw, "email", 254)
    try:
        return validate_email(
            raw, check_deliverability=False, globally_deliverable=False, test_environment=True
        ).normalized.lower()
    except EmailNotValidError:
        raise Invalid("Enter a valid email address.", email="invalid") from None


def _contact_event(uow, row, **extra) -> dict:
    """A contact as consumers see it; its locale falls back to the client's (the language of its emails).
    `extra`: role_changed (its sessions end), invited (auth emails it a sign-in link)."""
    client_locale = uow.execute(sa.select(clients.c.locale).where(clients.c.id == row.client_id)).scalar_one()
    return {
        **extra,
        "id": row.id,
        "workspace_id": row.workspace_id,
        "client_id": row.client_id,
        "email": row.email,
        "name": row.name,
        "locale": row.locale or client_locale,
        "portal_access": row.portal_access,
        "is_primary": row.is_primary,
        "role": row.role,
        "version": row.version,
    }


def _only_primary(uow, workspace_id: str, client_id: str, contact_id: str) -> None:
    """One primary contact per client: demote the others, and tell consumers."""
    demoted = (
        uow.execute(
            sa.select(contacts.c.id).where(
                contacts.c.client_id == client_id, contacts.c.id != contact_id, contacts.c.is_primary.is_(True)
            )
        )
        .scalars()
        .all()
    )
    for other_id in demoted:
        uow.execute(
            contacts.update().where(contacts.c.id == other_id).values(is_primary=False, version=contacts.c.version + 1)
        )
        uow.publish(
            "contact.updated",
            workspace_id,
            _contact_event(uow, get_scoped(uow, contacts, workspace_id, other_id, "contact")),
        )


def _contact_values(data: dict, creating: bool) -> dict:
    """A contact's own fields as sent. Changing one, null clears the name or phone, and the locale (the
    contact then reads its client's language); a new contact leaves out what it does not have."""
    values: dict[str, object] = {}
    for key, limit in (("name", 200), ("phone", 50)):
        if key in data:
            values[key] = text(data[key], key, limit, null=REFUSE if creating else "")
    if "locale" in data:
        values["locale"] = None if data["locale"] is None else check_locale(text(data["locale"], "locale", 20))
    for key in ("is_primary", "portal_access"):
        if key in data:
            values[key] = flag(data[key], key)
    if "role" in data:
        values["role"] = _role(data["role"])
    return values


def _check_contact_phone(values: dict, client, locale: str | None = None) -> None:
    """A contact's new phone, when it has one, read as dialled where its client is (see check_phone)."""
    if values.get("phone"):
        region = region_of(client.country, values.get("locale") or locale or client.locale)
        values["phone"] = check_phone(values["phone"], "phone", region)


def _role(value) -> str:
    if value not in ROLES:
        raise Invalid(f"role is one of {', '.join(ROLES)}.", role=f"one of {', '.join(ROLES)}")
    return value


def _keep_an_owner(uow, client_id: str, contact_id: str) -> None:
    """Refuse to leave a client that has an owner without one. The caller holds the client row's lock,
    so two owners demoting each other at once are serialized: the second sees the first's change."""
    owners = set(
        uow.execute(
            sa.select(contacts.c.id).where(
                contacts.c.client_id == client_id, contacts.c.role == "owner", contacts.c.portal_access.is_(True)
            )
        )
        .scalars()
        .all()
    )
    if owners == {contact_id}:
        raise Conflict(
            "This is the organisation's last owner. Make another contact an owner first.",
            role="last owner",
        )


def add_contact(uow, now: datetime, workspace_id: str, client_id: str, data: dict, invited: bool = False) -> dict:
    check_fields(data, CONTACT_FIELDS)
    client = client_row(uow, workspace_id, client_id)
    email = _normal_email(data.get("email"))
    values = _contact_values(data, creating=True)
    _check_contact_phone(values, client)
    if uow.execute(
        sa.select(contacts.c.id).where(contacts.c.workspace_id == workspace_id, contacts.c.email == email)
    ).first():
        raise Conflict("A contact with this email already exists in this workspace.", email="taken")
    first = not uow.execute(sa.select(contacts.c.id).where(contacts.c.client_id == client_id)).first()
    contact_id = new_id()
    uow.execute(
        contacts.insert().values(
            id=contact_id,
            workspace_id=workspace_id,
            client_id=client_id,
            email=email,
            name=values.get("name", ""),
            phone=values.get("phone", ""),
            locale=values.get("locale"),
            is_primary=values.get("is_primary", first),
            portal_access=values.get("portal_access", False),
            role=values.get("role", DEFAULT_ROLE),
            version=1,
            created_at=now,
        )
    )
    if values.get("is_primary"):
        _only_primary(uow, workspace_id, client_id, contact_id)
    row = get_scoped(uow, contacts, workspace_id, contact_id, "contact")
    uow.publish("contact.created", workspace_id, _contact_event(uow, row, **({"invited": True} if invited else {})))
    return contact_view(row)


def update_contact(
    uow, now: datetime, workspace_id: str, contact_id: str, data: dict, actor: str = "", invited: bool = False
) -> dict:
    """`actor`: the owner who changed it from the portal (the business otherwise); `invited`: the change
    grants portal access by an invitation, which auth answers with a sign-in link."""
    check_fields(data, CONTACT_FIELDS)
    values = _contact_values(data, creating=False)
    if "role" in values:  # the client first, as every change of roles locks it: one at a time per client
        client_row(uow, workspace_id, get_scoped(uow, contacts, workspace_id, contact_id, "contact").client_id, True)
    row = get_scoped(uow, contacts, workspace_id, contact_id, "contact", lock=True)
    if values.get("phone") and values["phone"] != row.phone:
        _check_contact_phone(values, client_row(uow, workspace_id, row.client_id), values.get("locale", row.locale))
    role_changed = values.get("role", row.role) != row.role
    if role_changed and row.role == "owner":
        _keep_an_owner(uow, row.client_id, contact_id)
    if "email" in data:
        values["email"] = _normal_email(data["email"])
        clash = uow.execute(
            sa.select(contacts.c.id).where(
                contacts.c.workspace_id == workspace_id,
                contacts.c.email == values["email"],
                contacts.c.id != contact_id,
            )
        ).first()
        if clash:
            raise Conflict("A contact with this email already exists in this workspace.", email="taken")
    uow.execute(contacts.update().where(contacts.c.id == contact_id).values(version=contacts.c.version + 1, **values))
    if values.get("is_primary"):
        _only_primary(uow, workspace_id, row.client_id, contact_id)
    updated = get_scoped(uow, contacts, workspace_id, contact_id, "contact")
    extra = {"role_changed": True} if role_changed else {}
    if invited:
        extra["invited"] = True
    uow.publish("contact.updated", workspace_id, _contact_event(uow, updated, **extra))
    if role_changed:
        record_activity(
            uow,
            now,
            workspace_id,
            row.client_id,
            "contact.role_changed",
            f"Role of {row.email} changed from {row.role} to {updated.role}"
            + (f" by {actor}" if actor else " by the business"),
            {"contact_id": contact_id, "from": row.role, "to": updated.role},
        )
    if "portal_access" in values:
        record_activity(
            uow,
            now,
            workspace_id,
            row.client_id,
            "portal_access.changed",
            f"Portal access {'enabled' if values['portal_access'] else 'disabled'} for {row.email}",
        )
    return contact_view(updated)


def set_portal_access(uow, now: datetime, workspace_id: str, contact_id: str, enabled: bool) -> dict:
    return update_contact(uow, now, workspace_id, contact_id, {"portal_access": enabled})


def republish_contacts(uow, now: datetime, workspace_id: str) -> int:
    """Re-announce every contact of the workspace (e.g. to a fresh auth database); consumers ignore
    versions they have."""
    rows = uow.execute(sa.select(contacts).where(contacts.c.workspace_id == workspace_id)).all()
    for row in rows:
        uow.publish("contact.updated", row.workspace_id, _contact_event(uow, row))
    return len(rows)


def update_profile(uow, now: datetime, workspace_id: str, client_id: str, contact_id: str, data: dict) -> dict:
    """The portal's profile form in one transaction: the contact's own name and phone, and the
    company's name, address and phone (for future invoices). The email is not the client's to change."""
    check_fields(data, {"name", "phone", "company", "address", "company_phone"})
    if "name" in data and not (isinstance(data["name"], str) and data["name"].strip()):
        # the portal greets and signs with this name: a contact may change it, not clear it
        raise Invalid("Enter your name.", name="required")
    contact = get_scoped(uow, contacts, workspace_id, contact_id, "contact", client_id=client_id)
    mine = _contact_values({k: data[k] for k in ("name", "phone") if k in data}, creating=False)
    company = {
        field: text(data[key], key, LIMITS[field], required=key == "company", null=REFUSE if key == "company" else "")
        for key, field in (("company", "name"), ("address", "address"), ("company_phone", "phone"))
        if key in data
    }  # checked under the form's names
    contact_changes = {k: v for k, v in mine.items() if v != getattr(contact, k)}
    current = client_row(uow, workspace_id, client_id)
    if company.get("phone") and company["phone"] != current.phone:  # refused under the form's name
        company["phone"] = check_phone(company["phone"], "company_phone", region_of(current.country, current.locale))
    if any(value != getattr(current, field) for field, value in company.items()):  # the form resends them all
        require_role(domain.COMPANY_ROLES, domain.COMPANY_DETAIL)
    if contact_changes:
        update_contact(uow, now, workspace_id, contact_id, contact_changes)
    update_client(uow, now, workspace_id, client_id, company, from_portal=True)
    return {
        "contact": contact_view(get_scoped(uow, contacts, workspace_id, contact_id, "contact")),
        "client": get_client(uow, now, workspace_id, client_id),
    }


# ---------------------------------------------------------------- the organisation's contacts, by its owners

MANAGE_DETAIL = "Only an owner of your organisation can manage its contacts."


def _owner(uow, workspace_id: str, client_id: str, actor_id: str):
    """The signed-in contact, an owner both in its session's scope and in the contacts table now (its
    role may have changed since it signed in)."""
    require_role(("owner",), MANAGE_DETAIL)
    actor = get_scoped(uow, contacts, workspace_id, actor_id, "contact", client_id=client_id)
    if actor.role != "owner" or not actor.portal_access:
        raise Forbidden(MANAGE_DETAIL, role="not allowed")
    return actor


def list_team(uow, now: datetime, workspace_id: str, client_id: str, actor_id: str) -> list[dict]:
    """The client's contacts, for an owner: who may sign in, and as what."""
    _owner(uow, workspace_id, client_id, actor_id)
    rows = uow.execute(
        sa.select(contacts).where(contacts.c.client_id == client_id).order_by(contacts.c.created_at, contacts.c.email)
    ).all()
    return [contact_view(r) for r in rows]


def invite_contact(uow, now: datetime, workspace_id: str, client_id: str, actor_id: str, data: dict) -> dict:
    """An owner gives another person portal access with a role; auth emails it a sign-in link. A contact
    of the client without access gets it back; an address of another client is refused."""
    check_fields(data, {"email", "name", "role"})
    client_row(uow, workspace_id, client_id, lock=True)
    actor = _owner(uow, workspace_id, client_id, actor_id)
    email = _normal_email(data.get("email"))
    if "role" not in data:
        raise Invalid("Choose a role.", role="required")
    role = _role(data["role"])
    name = text(data.get("name", ""), "name", 200, null="")
    existing = uow.execute(
        sa.select(contacts).where(contacts.c.workspace_id == workspace_id, contacts.c.email == email)
    ).first()
    if existing is not None and existing.client_id != client_id:
        raise Conflict("This address cannot be invited. Ask the business to add it.", email="taken")
    if existing is not None and existing.portal_access:
        raise Conflict("This person can already sign in.", email="has access")
    if existing is not None:
        changes = {"portal_access": True, "role": role, **({"name": name} if name else {})}
        view = update_contact(uow, now, workspace_id, existing.id, changes, actor=actor.email, invited=True)
    else:
        data = {"email": email, "name": name, "role": role, "portal_access": True}
        view = add_contact(uow, now, workspace_id, client_id, data, invited=True)
    record_activity(
        uow,
        now,
        workspace_id,
        client_id,
        "contact.invited",
        f"{email} invited as {role} by {actor.email}",
        {"contact_id": view["id"], "role": role},
    )
    return view


def change_contact_role(
    uow, now: datetime, workspace_id: str, client_id: str, actor_id: str, contact_id: str, role: str
) -> dict:
    """An owner changes a contact's role (its own too, while another owner remains); the contact's
    sessions end, so its next sign-in carries the new role."""
    client_row(uow, workspace_id, client_id, lock=True)
    actor = _owner(uow, workspace_id, client_id, actor_id)
    role = _role(role)
    target = get_scoped(uow, contacts, workspace_id, contact_id, "contact", client_id=client_id)
    if target.role == role:
        return contact_view(target)  # nothing changes, and no session ends
    return update_contact(uow, now, workspace_id, contact_id, {"role": role}, actor=actor.email)


def remove_contact(uow, now: datetime, workspace_id: str, client_id: str, actor_id: str, contact_id: str) -> dict:
    """An owner takes a contact's portal access away (its sessions end); the business keeps the contact
    for its records. The last owner stays."""
    client_row(uow, workspace_id, client_id, lock=True)
    actor = _owner(uow, workspace_id, client_id, actor_id)
    target = get_scoped(uow, contacts, workspace_id, contact_id, "contact", client_id=client_id)
    if not target.portal_access:
        return contact_view(target)
    if target.role == "owner":
        _keep_an_owner(uow, client_id, contact_id)
    return update_contact(uow, now, workspace_id, contact_id, {"portal_access": False}, actor=actor.email)

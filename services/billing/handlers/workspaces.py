"""Workspaces (the business), their settings and their admin API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

import sqlalchemy as sa

from chassis.errors import Invalid, NotFound, Unauthorized
from chassis.fields import REFUSE, text
from services.billing.handlers.common import check_fields, check_regional, iso, new_id, settings_of, workspace_row
from services.billing.settings_model import parse_settings
from services.billing.tables import api_keys, workspaces

__all__ = [
    "create_workspace",
    "get_workspace",
    "update_workspace",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "authenticate_api_key",
]

LOGO = re.compile(r"^data:image/(png|jpeg|svg\+xml);base64,[A-Za-z0-9+/=]+$")
COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
WORKSPACE_FIELDS = {
    "name",
    "email",
    "phone",
    "address",
    "currency",
    "locale",
    "timezone",
    "tax_id",
    "logo_url",
    "brand_color",
    "accent_color",
}


LIMITS = {
    "name": 200,
    "email": 254,
    "phone": 50,
    "address": 2000,
    "tax_id": 50,
    "logo_url": 300_000,
    "brand_color": 7,
    "accent_color": 7,
}
CLEARABLE = {"phone", "address", "tax_id", "logo_url"}  # null clears them when changing a workspace


def _clean_workspace(data: dict, partial: bool) -> dict:
    check_fields(data, WORKSPACE_FIELDS | {"settings"})
    values = {k: v for k, v in data.items() if k in WORKSPACE_FIELDS}
    if not partial:
        for required in ("name", "email"):
            if required not in values:
                raise Invalid(f"{required} is required.", fields={required: "required"})
    for key, limit in LIMITS.items():
        if key in values:
            values[key] = text(
                values[key],
                key,
                limit,
                required=key in ("name", "email"),
                null="" if partial and key in CLEARABLE else REFUSE,
            )
    check_regional(values)
    if values.get("logo_url") and not LOGO.fullmatch(values["logo_url"]):
        # Embedded so documents never fetch from the network: a data: URI of a PNG, JPEG or SVG.
        raise Invalid(
            "The logo is a data: URI of a PNG, JPEG or SVG image, at most about 200 KB.",
            logo_url="not a data: image URI",
        )
    for color in ("brand_color", "accent_color"):
        if color in values and not COLOR.fullmatch(values[color]):
            raise Invalid("Colours are hex like #1d4ed8.", fields={color: "not a hex colour"})
    return values


def workspace_view(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "email": row.email,
        "phone": row.phone,
        "address": row.address,
        "currency": row.currency,
        "locale": row.locale,
        "timezone": row.timezone,
        "tax_id": row.tax_id,
        "logo_url": row.logo_url,
        "brand_color": row.brand_color,
        "accent_color": row.accent_color,
        "settings": settings_of(row).model_dump(mode="json"),
        "created_at": iso(row.created_at),
    }


def _publish_workspace(uow, event_type: str, row) -> None:
    view = workspace_view(row)
    uow.publish(event_type, row.id, {**view, "version": row.version})


def create_workspace(uow, now: datetime, data: dict) -> dict:
    values = _clean_workspace(data, partial=False)
    settings = parse_settings(data.get("settings") or {})
    ws_id = new_id()
    defaults = {
        "phone": "",
        "address": "",
        "currency": "USD",
        "locale": "en_US",
        "timezone": "UTC",
        "tax_id": "",
        "logo_url": "",
        "brand_color": "#1d4ed8",
        "accent_color": "#0f766e",
    }
    uow.execute(
        workspaces.insert().values(
            id=ws_id, version=1, created_at=now, settings=settings.model_dump(mode="json"), **{**defaults, **values}
        )
    )
    row = workspace_row(uow, ws_id)
    _publish_workspace(uow, "workspace.created", row)
    return workspace_view(row)


def get_workspace(uow, now: datetime, workspace_id: str) -> dict:
    return workspace_view(workspace_row(uow, workspace_id))


def update_workspace(uow, now: datetime, workspace_id: str, data: dict) -> dict:
    row = workspace_row(uow, workspace_id, lock=True)
    values = _clean_workspace(data, partial=True)
    if "settings" in data:
        if not isinstance(data["settings"], dict):
            raise Invalid("settings is an object of the settings to change.", settings="not an object")
        current = settings_of(row).model_dump(mode="json")
        merged = {**current, **data["settings"]}
        if isinstance(data["settings"].get("legal"), dict):  # the legal details sent change; the others stay
            merged["legal"] = {**current["legal"], **data["settings"]["legal"]}
        values["settings"] = parse_settings(merged).model_dump(mode="json")
    uow.execute(
        workspaces.update().where(workspaces.c.id == workspace_id).values(version=workspaces.c.version + 1, **values)
    )
    row = workspace_row(uow, workspace_id)
    _publish_workspace(uow, "workspace.updated", row)
    return workspace_view(row)


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(uow, now: datetime, workspace_id: str, name: str) -> dict:
    workspace_row(uow, workspace_id)
    if not name or len(name) > 100:
        raise Invalid("A key needs a name of at most 100 characters.", name="required")
    prefix = secrets.token_hex(4)
    key = f"bp_{prefix}_{secrets.token_urlsafe(32)}"
    key_id = new_id()
    uow.execute(
        api_keys.insert().values(
            id=key_id, workspace_id=workspace_id, name=name, prefix=prefix, key_hash=_hash_key(key), created_at=now
        )
    )
    return {"id": key_id, "name": name, "prefix": prefix, "key": key}  # the only time the key is shown


def list_api_keys(uow, now: datetime, workspace_id: str) -> list[dict]:
    rows = uow.execute(
        sa.select(api_keys).where(api_keys.c.workspace_id == workspace_id).order_by(api_keys.c.created_at)
    ).all()
    return [
        {
            "id": r.id,
            "name": r.name,
            "prefix": r.prefix,
            "created_at": iso(r.created_at),
            "revoked_at": iso(r.revoked_at),
        }
        for r in rows
    ]


def revoke_api_key(uow, now: datetime, workspace_id: str, key_id: str) -> dict:
    done = uow.execute(
        api_keys.update()
        .where(api_keys.c.id == key_id, api_keys.c.workspace_id == workspace_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    if done != 1:
        raise NotFound("No such active key.")
    return {"id": key_id, "revoked": True}


def authenticate_api_key(uow, now: datetime, key: str) -> str:
    if not key or len(key) > 200:
        raise Unauthorized("missing")
    row = uow.execute(
        sa.select(api_keys.c.workspace_id).where(api_keys.c.key_hash == _hash_key(key), api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None:
        raise Unauthorized("unknown")
    return row.workspace_id

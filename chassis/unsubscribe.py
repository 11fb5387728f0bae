"""One-click unsubscribe links (RFC 8058): a token naming one contact and one email category, signed
with HMAC-SHA256 (chassis/signing.py) under `UNSUBSCRIBE_SECRET`, which documents (it puts the link in
each email it may) and every gateway (it checks the link, without a session) share.

The token holds the workspace, client and contact ids and the category; a token that was altered or
signed with another secret is refused. It lasts a long time on purpose: an old email's link must still
work, and the worst it can do is turn one category of email off for the contact it was sent to."""

from __future__ import annotations

from datetime import datetime, timedelta

from chassis import settings, signing

DEV_SECRET = "dev-only-unsubscribe-secret-change-me"
TTL = timedelta(days=400)  # past a year of monthly statements
Refused = signing.Refused


def secret() -> bytes | None:
    """UNSUBSCRIBE_SECRET; a fixed one in development. None outside development when it is not set:
    documents then sends no unsubscribe link and the gateway refuses every one (503)."""
    value = settings.env("UNSUBSCRIBE_SECRET") or (DEV_SECRET if settings.is_dev() else None)
    return value.encode() if value else None


def issue(key: bytes, workspace_id: str, client_id: str, contact_id: str, category: str, now: datetime) -> str:
    return signing.issue(key, {"w": workspace_id, "c": client_id, "p": contact_id, "k": category}, now, TTL)


def check(key: bytes, token: str, now: datetime) -> dict[str, str]:
    """{workspace_id, client_id, contact_id, category} of a token we signed that has not expired;
    Refused otherwise."""
    payload = signing.check(key, token, now)
    names = {"w": "workspace_id", "c": "client_id", "p": "contact_id", "k": "category"}
    if not all(isinstance(payload.get(short), str) and 0 < len(payload[short]) <= 64 for short in names):
        raise Refused("malformed")
    return {name: payload[short] for short, name in names.items()}

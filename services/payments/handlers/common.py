"""What the payments handlers share: who in a client's organisation may pay and change its payment
methods, and the small helpers for the views (times as ISO text) and for the portal links put into
emails. Nothing here touches the database or Stripe."""

from __future__ import annotations

from chassis import settings

# Who in the client's organisation may pay and change its cards (the roles: chassis/scope.py).
PAYING_ROLES = ("owner", "payer")
PAYING_DETAIL = "Only an owner or a payer of your organisation can pay or change its cards."


def iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def portal_url(path: str) -> str:
    return settings.env("PORTAL_URL", "http://localhost:8000").rstrip("/") + path

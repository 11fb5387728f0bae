"""Short-lived signed references: a small payload and its expiry, signed with HMAC-SHA256 under a
secret that two processes share, so one can hand the other a capability for one exact thing (the
documents service signs which cached PDF may be fetched, and from where; the gateway presents it back).

A reference is `<payload>.<signature>`, both base64url without padding; the payload is JSON with the
expiry in `exp` (Unix seconds). It is opaque to anyone without the secret, and a reference that was
altered, signed with another secret, or has expired is refused. Callers pass the time (`now`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any


class Refused(Exception):
    """The reference is not one we signed ("forged"), is malformed ("malformed"), or is too old ("expired")."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, payload: str) -> bytes:
    return hmac.new(secret, payload.encode("ascii"), hashlib.sha256).digest()


def issue(secret: bytes, payload: dict[str, Any], now: datetime, ttl: timedelta) -> str:
    """A reference to `payload` that works until now + ttl."""
    if not secret:
        raise ValueError("signing needs a secret")
    body = _b64(
        json.dumps({**payload, "exp": int((now + ttl).timestamp())}, separators=(",", ":"), sort_keys=True).encode()
    )
    return f"{body}.{_b64(_mac(secret, body))}"


def read(secret: bytes, reference: str) -> dict[str, Any]:
    """The payload of a reference signed with `secret`, whatever its age (the holder that serves it
    checks the expiry with `check`). Refused otherwise."""
    if not secret or not isinstance(reference, str) or len(reference) > 2000 or reference.count(".") != 1:
        raise Refused("malformed")
    body, signature = reference.split(".")
    try:
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        raise Refused("malformed") from None
    if not hmac.compare_digest(given, _mac(secret, body)):
        raise Refused("forged")
    try:
        payload = json.loads(_unb64(body))
    except (binascii.Error, ValueError):
        raise Refused("malformed") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int):
        raise Refused("malformed")
    return payload


def check(secret: bytes, reference: str, now: datetime) -> dict[str, Any]:
    """The payload of a reference signed with `secret` that has not expired at `now`; Refused otherwise."""
    payload = read(secret, reference)
    if now.timestamp() >= payload["exp"]:
        raise Refused("expired")
    return payload

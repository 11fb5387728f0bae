"""Session credentials: what auth issues at sign-in, and what the gateway checks on every request
without asking auth.

A credential is a JWT (RFC 7519, HS256) naming one session of one contact: who it is (contact,
client, workspace, its role in the client's organisation, and the name, email and language pages
show), when the session began and when the client was last active. Auth and every gateway share the
signing keys (`SESSION_KEYS`); each key has an id (`kid`), so a new key can be added, made the
signing one, and the old one dropped once every credential signed with it has expired (12 hours).
The limits are checked against the clock the caller passes; a credential carries no expiry of its own
for a library to check against the wall clock.

Ending a session early (sign-out, portal access turned off, a new role) is not in the credential: auth and
billing publish it, and every gateway keeps the list (services/gateway/revocations.py).
"""

from __future__ import annotations

import base64
import functools
import json
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from chassis import settings
from chassis.scope import ROLES

ALGORITHM = "HS256"
DEV_KEYS = "dev:dev-only-session-signing-key-change-me"
MIN_SECRET_BYTES = 32  # HS256 wants a key at least as long as its output


class _OwnKeysHMAC(HMACAlgorithm):
    """HS256 whose key check runs once per key, not on every credential: PyJWT checks each key it is
    handed that it is no PEM, SSH or DER public key (by trying to load it as one), which cost the
    gateway more than verifying the signature. Our keys are the configured secrets, checked as
    SESSION_KEYS is parsed, and few."""

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one instance for the process, few keys
    def prepare_key(self, key: str | bytes) -> bytes:
        return super().prepare_key(key)


# The signature layer only: the claims are ours to check (read), against the caller's clock.
_JWS = jwt.PyJWS(algorithms=[])
_JWS.register_algorithm(ALGORITHM, _OwnKeysHMAC(HMACAlgorithm.SHA256))


class Refused(Exception):
    """The credential is not (or no longer) a session: forged, idle, expired, revoked or elsewhere."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Keys:
    signing_kid: str
    secrets: dict[str, bytes]  # every key id still accepted, the signing one included

    @classmethod
    def parse(cls, text: str) -> Keys:
        """`kid:secret,kid:secret`: the first signs new credentials, all of them verify."""
        pairs = [item.split(":", 1) for item in text.split(",") if item.strip()]
        if not pairs or any(len(pair) != 2 or not pair[0].strip() or not pair[1] for pair in pairs):
            raise ValueError("SESSION_KEYS is `kid:secret[,kid:secret...]`")
        secrets = {kid.strip(): secret.encode() for kid, secret in pairs}
        if any(len(secret) < MIN_SECRET_BYTES for secret in secrets.values()):
            raise ValueError(f"each SESSION_KEYS secret needs at least {MIN_SECRET_BYTES} characters")
        return cls(pairs[0][0].strip(), secrets)

    @classmethod
    def from_env(cls) -> Keys:
        text = settings.env("SESSION_KEYS")
        if not text and not settings.is_dev():
            raise RuntimeError("SESSION_KEYS must be set outside development (the same for auth and every gateway)")
        return cls.parse(text or DEV_KEYS)


@dataclass(frozen=True)
class Limits:
    idle: timedelta = timedelta(minutes=30)
    absolute: timedelta = timedelta(hours=12)
    refresh_after: timedelta = timedelta(seconds=60)  # how stale "last seen" may get before a new credential
    skew: timedelta = timedelta(seconds=30)  # clocks of auth and the gateways may differ this much

    @classmethod
    def from_env(cls) -> Limits:
        return cls(
            idle=timedelta(minutes=settings.env_int("AUTH_SESSION_IDLE_MINUTES", 30)),
            absolute=timedelta(minutes=settings.env_int("AUTH_SESSION_ABSOLUTE_MINUTES", 12 * 60)),
        )


@dataclass(frozen=True)
class Session:
    session_id: str
    contact_id: str
    client_id: str
    workspace_id: str
    email: str
    name: str
    locale: str | None
    started_at: datetime
    seen_at: datetime
    role: str = "viewer"  # the contact's role in its organisation (chassis/scope.py); least power by default
    # when the contact last proved presence, by passkey or magic link: payments' step-up for money
    proved_at: datetime | None = None

    def state(self, now: datetime, limits: Limits) -> str:
        """active, expired (past the absolute limit) or idle; a credential from the future is forged."""
        if self.started_at > now + limits.skew or self.seen_at > now + limits.skew:
            return "forged"
        if now >= self.started_at + limits.absolute + limits.skew:
            return "expired"
        if now >= self.seen_at + limits.idle + limits.skew:
            return "idle"
        return "active"

    def expires_at(self, limits: Limits) -> datetime:
        return min(self.seen_at + limits.idle, self.started_at + limits.absolute)

    def seen(self, now: datetime) -> Session:
        return replace(self, seen_at=max(now, self.seen_at))

    def view(self, limits: Limits) -> dict[str, Any]:
        """What pages and the API show of the session (and auth's sign-in answer)."""
        return {
            "session_id": self.session_id,
            "contact_id": self.contact_id,
            "client_id": self.client_id,
            "workspace_id": self.workspace_id,
            "email": self.email,
            "name": self.name,
            "locale": self.locale,
            "role": self.role,
            "proved_at": self.proved_at.isoformat() if self.proved_at else None,
            "created_at": self.started_at.isoformat(),
            "last_seen_at": self.seen_at.isoformat(),
            "expires_at": self.expires_at(limits).isoformat(),
        }


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)


def _epoch_to_the_millisecond(moment: datetime) -> float:
    """When a session began, to the millisecond and never later than it did (a NumericDate may have a
    fraction). A contact's sessions are barred from a moment (services/gateway/revocations.py): in
    whole seconds, a session begun just after the bar, in the same second, would read as begun before
    it and be refused. Counted in whole milliseconds, so a credential issued again from one it was
    read from carries the same value."""
    return ((moment - _EPOCH) // _MILLISECOND) / 1000


def _moment(value: object) -> datetime:
    """A NumericDate: whole seconds, as a credential's other times are, or with a fraction, as when its
    session began is."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Refused("forged")
    return datetime.fromtimestamp(value, timezone.utc)


def issue(session: Session, keys: Keys) -> str:
    claims = {
        "sid": session.session_id,
        "sub": session.contact_id,
        "cli": session.client_id,
        "ws": session.workspace_id,
        "email": session.email,
        "name": session.name,
        "loc": session.locale,
        "role": session.role,
        "prv": _epoch(session.proved_at) if session.proved_at else None,
        "iat": _epoch_to_the_millisecond(session.started_at),
        "seen": _epoch(session.seen_at),
    }
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return _JWS.encode(payload, keys.secrets[keys.signing_kid], algorithm=ALGORITHM, headers={"kid": keys.signing_kid})


def _key_id(token: str) -> object:
    """The `kid` of the token's header, unverified: it only chooses the key the signature is checked
    with (the header is signed too). Parsed here, as PyJWT would parse the whole token for it."""
    segment = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):  # not base64, not JSON, or JSON nested too deep to read
        raise Refused("forged") from None
    return header.get("kid") if isinstance(header, dict) else None


def read(token: str, keys: Keys) -> Session:
    """The session a credential names, if one of `keys` signed it; Refused("forged") otherwise. The
    limits are the caller's to check (Session.state), with its own clock."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise Refused("forged")
    kid = _key_id(token)
    secret = keys.secrets.get(kid) if isinstance(kid, str) else None
    if secret is None:
        raise Refused("forged")
    return _verified(token, secret)


# A browser sends the same credential with every request until it is renewed (once a minute), so the
# signature check and the claims' parsing, a tenth of a gateway's CPU per page, are done once per
# credential and key, as edge proxies cache verified JWTs. Only what verified is kept (an exception is
# never cached), the key is part of the entry, and a Session is immutable; its limits and the
# revocations are still checked on every request by the caller.
@functools.lru_cache(maxsize=4096)
def _verified(token: str, secret: bytes) -> Session:
    try:
        claims = json.loads(_JWS.decode_complete(token, secret, algorithms=[ALGORITHM])["payload"])
    except (jwt.PyJWTError, ValueError):
        raise Refused("forged") from None
    if not isinstance(claims, dict) or "iat" not in claims:
        raise Refused("forged")
    try:
        texts = [
            claims["sid"],
            claims["sub"],
            claims["cli"],
            claims["ws"],
            claims.get("email") or "",
            claims.get("name") or "",
        ]
    except KeyError:
        raise Refused("forged") from None
    locale = claims.get("loc")
    if not all(isinstance(text, str) for text in texts) or not (locale is None or isinstance(locale, str)):
        raise Refused("forged")
    session_id, contact_id, client_id, workspace_id, email, name = texts
    role = claims.get("role")
    if role not in ROLES:  # a credential from before roles, or a made-up role: sign in again
        raise Refused("forged")
    proved = claims.get("prv")
    return Session(
        session_id,
        contact_id,
        client_id,
        workspace_id,
        email,
        name,
        locale,
        _moment(claims["iat"]),
        _moment(claims.get("seen", claims["iat"])),
        role=role,
        proved_at=None if proved is None else _moment(proved),
    )

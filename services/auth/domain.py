"""Magic-link and session rules, in plain Python: no database, no broker."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import ua_parser
from email_validator import EmailNotValidError, validate_email

from chassis import credentials
from chassis.errors import Invalid

TOKEN_BYTES = 32  # 256 random bits for link tokens and session ids


def new_secret() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_secret(secret: str) -> str:
    """Only this digest is stored: a database leak gives no usable links or sessions."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


def normalise_email(raw: str) -> str:
    if not isinstance(raw, str) or len(raw) > 254:
        raise Invalid("Enter a valid email address.", email="invalid")
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise Invalid("Enter a valid email address.", email=str(exc)) from None


@dataclass(frozen=True)
class Policy:
    link_ttl: timedelta = timedelta(hours=24)
    session_idle: timedelta = timedelta(minutes=30)
    session_absolute: timedelta = timedelta(hours=12)
    # last_seen is written at most this often, so a busy session is not a write per request
    touch_every: timedelta = timedelta(seconds=60)
    links_per_email: int = 5
    links_per_ip: int = 20
    # sign-in link tokens we never issued, per address and window, before it is refused (guessing)
    verify_failures_per_ip: int = 30
    rate_window: timedelta = timedelta(minutes=15)

    @property
    def limits(self) -> credentials.Limits:
        """The same limits, as every gateway checks them on the session's credential."""
        return credentials.Limits(idle=self.session_idle, absolute=self.session_absolute)


@dataclass(frozen=True)
class LinkToken:
    contact_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def state(self, now: datetime) -> str:
        if self.used_at is not None:
            return "used"
        if now >= self.expires_at:
            return "expired"
        return "valid"


def issue_link(contact_id: str, now: datetime, policy: Policy) -> tuple[str, LinkToken]:
    return new_secret(), LinkToken(contact_id, now, now + policy.link_ttl)


@dataclass(frozen=True)
class Session:
    contact_id: str
    client_id: str
    workspace_id: str
    created_at: datetime
    last_seen_at: datetime
    revoked_at: datetime | None = None

    def expires_at(self, policy: Policy) -> datetime:
        return min(self.last_seen_at + policy.session_idle, self.created_at + policy.session_absolute)

    def state(self, now: datetime, policy: Policy) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.created_at + policy.session_absolute:
            return "expired"
        if now >= self.last_seen_at + policy.session_idle:
            return "idle"
        return "active"

    def needs_touch(self, now: datetime, policy: Policy) -> bool:
        return now - self.last_seen_at >= policy.touch_every


@dataclass(frozen=True)
class Device:
    """What a user agent says of the device: the browser and the operating system, by family (a
    version changes with every update, so it would make a known device look new)."""

    browser: str | None
    os: str | None

    @property
    def known(self) -> bool:
        return self.browser is not None or self.os is not None


USER_AGENT_LIMIT = 500  # what is kept of a user agent; longer ones are cut, never refused


def describe_device(user_agent: str | None) -> Device:
    """Browser and OS families from a user agent (ua-parser's maintained rules); None where unknown."""
    if not user_agent:
        return Device(None, None)
    result = ua_parser.parse(user_agent[:USER_AGENT_LIMIT])
    browser = result.user_agent.family if result.user_agent and result.user_agent.family != "Other" else None
    os = result.os.family if result.os and result.os.family != "Other" else None
    return Device(browser, os)


def is_new_device(device: Device, earlier: list[Device]) -> bool:
    """A sign-in from a browser and OS the contact never signed in from before. The very first
    sign-in is not "new": there is nothing to tell the contact that they do not know."""
    return bool(earlier) and device not in earlier

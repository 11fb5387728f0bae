"""Outbound webhooks, for a workspace's systems that cannot speak AMQP.

A workspace subscribes a URL to event types. Each public event from billing or payments becomes one
pending delivery per matching subscription (`fan_out`, run by the event consumers: fast and
idempotent). A timer claims due deliveries, POSTs the event envelope signed with the subscription's
secret, and records the outcome: 2xx is success, anything else is retried with exponential backoff
for up to 24 hours, then the delivery is `failed`. The admin API lists each delivery's attempts and
can replay one.

Delivery is at least once: a replay, or a crash between the POST and recording its outcome, sends
an event again, so receivers dedupe by `Portal-Event-Id`. Order is not guaranteed either.

Plain functions over a unit of work (and a requests session for the POST), so they are tested
without a broker; the documents service's entrypoints are thin wrappers.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterable
from urllib.parse import urlsplit

import requests
import sqlalchemy as sa

from chassis.errors import Conflict, Invalid, NotFound
from clients.documents import EVENT_TYPES
from services.documents.tables import webhook_attempts, webhook_deliveries, webhook_subscriptions, workspaces

MAX_SUBSCRIPTIONS = 20  # per workspace
MAX_EVENT_TYPES = 50  # per subscription
RETRY_WINDOW = timedelta(hours=24)  # retries stop this long after the first attempt (or a replay)
MAX_DELAY = timedelta(hours=1)  # the backoff's cap: at worst an hour between attempts
LEASE = timedelta(minutes=2)  # a claimed delivery is due again after this if its sender died
TIMEOUT = (3, 10)  # seconds to connect, and to wait for the answer's headers
CONCURRENCY = 10  # POSTs in flight per delivery run, so one slow receiver does not hold up the rest
STATUSES = ("pending", "succeeded", "failed")


# --- subscriptions -------------------------------------------------------------------------------


def matches(pattern: str, event_type: str) -> bool:
    """`*` is every type, `invoice.*` every type starting `invoice.`; anything else is exact."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def clean_event_types(values) -> list[str]:
    """Known types and patterns that match at least one known type; duplicates dropped, order kept."""
    if not isinstance(values, list) or not values:
        raise Invalid("Subscribe to at least one event type.", event_types="at least one event type is required")
    if len(values) > MAX_EVENT_TYPES:
        raise Invalid(f"At most {MAX_EVENT_TYPES} event types.", event_types=f"more than {MAX_EVENT_TYPES}")
    errors = {}
    for i, value in enumerate(values):
        well_formed = isinstance(value, str) and "*" not in value.removesuffix("*")
        if not well_formed or not any(matches(value, known) for known in EVENT_TYPES):
            errors[f"event_types.{i}"] = "not a known event type, or a pattern like invoice.* that matches one"
    if errors:
        raise Invalid("Some event types are unknown.", errors)
    return list(dict.fromkeys(values))


def clean_url(url, allow_private: bool) -> str:
    url = url if isinstance(url, str) and url == url.strip() else ""  # stored as sent, or refused
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        raise Invalid("The URL's port is not valid.", url="invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("The URL must start with http:// or https:// and name a host.", url="not an http(s) URL")
    if len(url) > 2000:
        raise Invalid("The URL is too long.", url="at most 2000 characters")
    if not allow_private and _internal_host(parts.hostname):
        raise Invalid("The URL points into a private network.", url="a private, loopback or link-local address")
    return url


def _internal_host(host: str) -> bool:
    """A host that names this machine or a private network outright (not what a name resolves to)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return False


def _clean_text(data: dict, name: str, limit: int) -> str:
    value = data.get(name, "")
    if not isinstance(value, str) or len(value) > limit:
        raise Invalid(
            f"{name} must be text of at most {limit} characters.", fields={name: f"at most {limit} characters"}
        )
    return value


def _clean_active(data: dict) -> bool:
    if not isinstance(data.get("active", True), bool):
        raise Invalid("active must be true or false.", active="not a boolean")
    return data.get("active", True)


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)  # 32 random bytes


def subscription_view(row) -> dict:
    """Everything but the secret, which is shown once, when the subscription is created."""
    return {
        "id": row.id,
        "url": row.url,
        "description": row.description,
        "event_types": list(row.event_types),
        "active": row.active,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def create_subscription(uow, now: datetime, workspace_id: str, data: dict, allow_private: bool = False) -> dict:
    _refuse_unknown(data, {"url", "event_types", "secret", "description", "active"})
    url = clean_url(data.get("url"), allow_private)
    event_types = clean_event_types(data.get("event_types"))
    description = _clean_text(data, "description", 500)
    active = _clean_active(data)
    secret = data.get("secret")
    if secret is None:
        secret = new_secret()
    elif not isinstance(secret, str) or not 16 <= len(secret) <= 200 or not secret.isprintable():
        raise Invalid(
            "A secret is 16 to 200 printable characters; leave it out to get a random one.",
            secret="16 to 200 printable characters",
        )
    count = uow.execute(
        sa.select(sa.func.count())
        .select_from(webhook_subscriptions)
        .where(webhook_subscriptions.c.workspace_id == workspace_id)
    ).scalar_one()
    if count >= MAX_SUBSCRIPTIONS:
        raise Conflict(f"A workspace may have at most {MAX_SUBSCRIPTIONS} webhook subscriptions.")
    subscription_id = str(uuid.uuid4())
    uow.execute(
        webhook_subscriptions.insert().values(
            id=subscription_id,
            workspace_id=workspace_id,
            url=url,
            description=description,
            event_types=event_types,
            secret=secret,
            active=active,
            created_at=now,
            updated_at=now,
        )
    )
    return {**get_subscription(uow, workspace_id, subscription_id), "secret": secret}


def _refuse_unknown(data, allowed: set[str]) -> None:
    if not isinstance(data, dict):
        raise Invalid("The body must be a JSON object.", body="not an object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise Invalid("Some fields are not known.", {name: "unknown field" for name in unknown})


def _subscription_row(uow, workspace_id: str, subscription_id: str, lock: bool = False):
    s = webhook_subscriptions
    query = sa.select(s).where(s.c.id == subscription_id, s.c.workspace_id == workspace_id)
    row = uow.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise NotFound("No such webhook subscription.")
    return row


def get_subscription(uow, workspace_id: str, subscription_id: str) -> dict:
    return subscription_view(_subscription_row(uow, workspace_id, subscription_id))


def list_subscriptions(uow, workspace_id: str) -> list[dict]:
    s = webhook_subscriptions
    rows = uow.execute(sa.select(s).where(s.c.workspace_id == workspace_id).order_by(s.c.created_at, s.c.id)).all()
    return [subscription_view(row) for row in rows]


def update_subscription(
    uow, now: datetime, workspace_id: str, subscription_id: str, data: dict, allow_private: bool = False
) -> dict:
    _refuse_unknown(data, {"url", "event_types", "description", "active"})
    values: dict = {}
    if "url" in data:
        values["url"] = clean_url(data["url"], allow_private)
    if "event_types" in data:
        values["event_types"] = clean_event_types(data["event_types"])
    if "description" in data:
        values["description"] = _clean_text(data, "description", 500)
    if "active" in data:
        values["active"] = _clean_active(data)
    _subscription_row(uow, workspace_id, subscription_id, lock=True)
    uow.execute(
        webhook_subscriptions.update()
        .where(webhook_subscriptions.c.id == subscription_id)
        .values(**values, updated_at=now)
    )
    return get_subscription(uow, workspace_id, subscription_id)


def delete_subscription(uow, workspace_id: str, subscription_id: str) -> None:
    """The subscription, its deliveries and their log; a POST in flight has its outcome dropped."""
    _subscription_row(uow, workspace_id, subscription_id, lock=True)
    d = webhook_deliveries
    deliveries = sa.select(d.c.id).where(d.c.subscription_id == subscription_id)
    uow.execute(webhook_attempts.delete().where(webhook_attempts.c.delivery_id.in_(deliveries)))
    uow.execute(d.delete().where(d.c.subscription_id == subscription_id))
    uow.execute(webhook_subscriptions.delete().where(webhook_subscriptions.c.id == subscription_id))


# --- fan-out: one pending delivery per matching subscription ------------------------------------


def encode(event: dict) -> str:
    """The body every attempt sends: the event envelope (id, type, version, occurred_at, workspace_id,
    data) as compact JSON."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


# Personal data about a contact's device, in auth's session events: sent to a workspace's URLs only
# when the workspace turns on `webhooks_include_device_details` (documents' copy of its settings).
DEVICE_FIELDS = ("ip", "user_agent")


def outbound(uow, event: dict) -> dict:
    """The event as a workspace's URLs receive it: without the device's IP and user agent unless the
    workspace opted in. Fails closed: an unknown workspace or setting gets them left out."""
    data = event.get("data")
    if not isinstance(data, dict) or not any(name in data for name in DEVICE_FIELDS):
        return event
    branding = uow.execute(
        sa.select(workspaces.c.branding).where(workspaces.c.id == event.get("workspace_id"))
    ).scalar()
    if isinstance(branding, dict) and branding.get("webhook_device_details") is True:
        return event
    return {**event, "data": {key: value for key, value in data.items() if key not in DEVICE_FIELDS}}


def fan_out(uow, now: datetime, event: dict) -> int:
    """Queue the event for each active subscription of its workspace that wants its type. Run again
    for the same event (a redelivery) it queues nothing: (subscription, event id) is unique."""
    workspace_id, event_type = event.get("workspace_id"), event["type"]
    if not workspace_id:
        return 0
    s, d = webhook_subscriptions, webhook_deliveries
    subscriptions = uow.execute(
        sa.select(s.c.id, s.c.event_types).where(s.c.workspace_id == workspace_id, s.c.active.is_(True))
    ).all()
    wanted = [row.id for row in subscriptions if any(matches(p, event_type) for p in row.event_types)]
    if not wanted:
        return 0
    done = set(
        uow.execute(
            sa.select(d.c.subscription_id).where(d.c.event_id == event["id"], d.c.subscription_id.in_(wanted))
        ).scalars()
    )
    body = encode(outbound(uow, event))
    rows = [
        {
            "id": str(uuid.uuid4()),
            "subscription_id": subscription_id,
            "workspace_id": workspace_id,
            "event_id": event["id"],
            "event_type": event_type,
            "body": body,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "retry_until": now + RETRY_WINDOW,
            "created_at": now,
        }
        for subscription_id in wanted
        if subscription_id not in done
    ]
    if rows:
        uow.execute(d.insert(), rows)
    return len(rows)


# --- signing and backoff ------------------------------------------------------------------------


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<body>")>`, as Stripe signs its webhooks: the
    timestamp is signed too, so a receiver can refuse an old (replayed) request."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def request_headers(delivery_id: str, event_id: str, event_type: str, secret: str, timestamp: int, body: bytes) -> dict:
    return {
        "Content-Type": "application/json",
        "User-Agent": "BillingPortal-Webhooks/1",
        "Portal-Webhook-Id": delivery_id,
        "Portal-Event-Id": event_id,
        "Portal-Event-Type": event_type,
        "Portal-Timestamp": str(timestamp),
        "Portal-Signature": signature(secret, timestamp, body),
    }


def retry_delay(failures: int, base: float, rng: Callable[[], float] = random.random) -> timedelta:
    """Wait before the next attempt after `failures` failed ones: base x 2^(failures-1), capped at an
    hour, with "equal jitter" (a random point in the upper half), so deliveries that failed together
    (a receiver's outage) do not all come back at once, yet each wait is at least half the nominal
    one. With the default 30 s base: ~30 s, 1 min, 2 min, ... 32 min, then hourly."""
    nominal = min(base * 2 ** min(failures - 1, 30), MAX_DELAY.total_seconds())
    return timedelta(seconds=nominal / 2 + rng() * nominal / 2)


def after_failure(
    now: datetime, failures: int, retry_until: datetime, base: float, rng: Callable[[], float] = random.random
) -> tuple[str, datetime]:
    """(status, next attempt): retried until `retry_until`, with one last attempt right at it."""
    if now >= retry_until:
        return "failed", now
    return "pending", min(now + retry_delay(failures, base, rng), retry_until)


# --- delivery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A due delivery taken by one delivery run, with what the POST needs."""

    delivery_id: str
    token: str
    url: str
    secret: str
    event_id: str
    event_type: str
    body: str


@dataclass(frozen=True)
class Outcome:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def workspaces_with_deliveries_due(uow, now: datetime) -> list[str]:
    """The workspaces with a delivery due: the delivery timer's step that looks across workspaces."""
    d = webhook_deliveries
    return list(
        uow.execute(
            sa.select(d.c.workspace_id).distinct().where(d.c.status == "pending", d.c.next_attempt_at <= now)
        ).scalars()
    )


def claim_due(
    uow, now: datetime, batch: int = 50, lease: timedelta = LEASE, workspace_id: str | None = None
) -> list[Claim]:
    """Take due deliveries of active subscriptions by pushing their next attempt a lease ahead. The
    caller commits before sending, so no transaction stays open during the POSTs; SKIP LOCKED on
    PostgreSQL lets replicas take different rows, and the lease makes a row whose sender died due
    again. A paused subscription's deliveries wait for it."""
    d, s = webhook_deliveries, webhook_subscriptions
    query = (
        sa.select(d.c.id, d.c.event_id, d.c.event_type, d.c.body, s.c.url, s.c.secret)
        .join(s, s.c.id == d.c.subscription_id)
        .where(d.c.status == "pending", d.c.next_attempt_at <= now, s.c.active.is_(True))
        .order_by(d.c.next_attempt_at)
        .limit(batch)
    )
    if workspace_id is not None:
        query = query.where(d.c.workspace_id == workspace_id)
    if uow.conn.dialect.name == "postgresql":
        query = query.with_for_update(of=d, skip_locked=True)
    rows = uow.execute(query).all()
    if not rows:
        return []
    token = str(uuid.uuid4())
    uow.execute(
        d.update().where(d.c.id.in_([row.id for row in rows])).values(claim_token=token, next_attempt_at=now + lease)
    )
    return [Claim(row.id, token, row.url, row.secret, row.event_id, row.event_type, row.body) for row in rows]


class Refused(Exception):
    """The URL resolves to an address webhooks may not reach."""


def refuse_internal(url: str) -> None:
    """Refuse a host that resolves to a private, loopback or link-local address: a subscription must not
    make the portal probe its own network. (A name can still change between this lookup and the
    connection; a network egress policy is the complete answer.)"""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP):
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if not address.is_global:
            raise Refused(f"{parts.hostname} resolves to {address}, which is not a public address")


def send(http, claim: Claim, now: datetime, allow_private: bool = False, timeout=TIMEOUT) -> Outcome:
    """One signed POST. Redirects are not followed (a 3xx is a failure); of the answer only the status
    and the start of the body (for the log) are read."""
    body = claim.body.encode()
    timestamp = int(now.timestamp())
    headers = request_headers(claim.delivery_id, claim.event_id, claim.event_type, claim.secret, timestamp, body)
    started = time.monotonic()
    status_code, error = None, None
    try:
        if not allow_private:
            refuse_internal(claim.url)
        with http.post(
            claim.url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
        ) as response:
            status_code = response.status_code
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}: {_start_of(response)}".strip()
    except requests.Timeout:
        error = f"no answer within {timeout[0]} s (connect) / {timeout[1]} s (response)"
    except (requests.RequestException, OSError, Refused, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return Outcome(now, status_code, error, int((time.monotonic() - started) * 1000))


def _start_of(response, limit: int = 300) -> str:
    try:
        return next(response.iter_content(limit), b"")[:limit].decode("utf-8", "replace")
    except (requests.RequestException, OSError):
        return ""


def record(
    uow, now: datetime, claim: Claim, outcome: Outcome, base: float, rng: Callable[[], float] = random.random
) -> str | None:
    """Log the attempt and decide what comes next. If the delivery was replayed (or its lease ran out
    and another run took it) while this POST was in flight, the newer claim decides its state; the
    attempt is still logged. Returns the delivery's status, or None if it was deleted meanwhile."""
    d = webhook_deliveries
    query = sa.select(d).where(d.c.id == claim.delivery_id)
    row = uow.execute(query.with_for_update() if uow.conn.dialect.name == "postgresql" else query).first()
    if row is None:  # its subscription was deleted while we were sending
        return None
    uow.execute(
        webhook_attempts.insert().values(
            delivery_id=row.id,
            at=outcome.at,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
        )
    )
    attempts = row.attempts + 1
    values: dict = {"attempts": attempts, "last_status_code": outcome.status_code, "last_error": outcome.error}
    status = row.status
    if row.claim_token == claim.token:
        if outcome.ok:
            status = "succeeded"
            values.update(delivered_at=now)
        else:  # the backoff counts the failures since the window opened (created, or replayed)
            a = webhook_attempts
            failures = uow.execute(
                sa.select(sa.func.count())
                .select_from(a)
                .where(a.c.delivery_id == row.id, a.c.at >= row.retry_until - RETRY_WINDOW)
            ).scalar_one()
            status, values["next_attempt_at"] = after_failure(now, max(failures, 1), row.retry_until, base, rng)
        values.update(status=status, claim_token=None)
    uow.execute(d.update().where(d.c.id == row.id).values(**values))
    return status


def deliver_due(
    new_uow,
    http,
    clock: Callable[[], datetime],
    *,
    base: float,
    batch: int = 50,
    lease: timedelta = LEASE,
    allow_private: bool = False,
    map_fn: Callable = map,
    rng: Callable[[], float] = random.random,
    workspace_id: str | None = None,
) -> int:
    """One delivery run (of one workspace, or of all the transactions can see): claim (one short
    transaction), POST them all (`map_fn` may run them concurrently, e.g. a green pool's imap), then
    record each outcome in its own transaction."""
    with new_uow() as uow:
        claims = claim_due(uow, clock(), batch, lease, workspace_id)
        uow.commit()
    outcomes: Iterable[Outcome] = map_fn(lambda claim: send(http, claim, clock(), allow_private), claims)
    for claim, outcome in zip(claims, outcomes):
        with new_uow() as uow:
            record(uow, clock(), claim, outcome, base, rng)
            uow.commit()
    return len(claims)


# --- the delivery log and replays ---------------------------------------------------------------


def delivery_view(row, log: list[dict]) -> dict:
    return {
        "id": row.id,
        "subscription_id": row.subscription_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at.isoformat() if row.status == "pending" else None,
        "retry_until": row.retry_until.isoformat(),
        "last_status_code": row.last_status_code,
        "last_error": row.last_error,
        "created_at": row.created_at.isoformat(),
        "delivered_at": row.delivered_at.isoformat() if row.delivered_at else None,
        "attempt_log": log,
    }


def _attempt_logs(uow, delivery_ids: list[str]) -> dict[str, list[dict]]:
    a = webhook_attempts
    logs: dict[str, list[dict]] = {delivery_id: [] for delivery_id in delivery_ids}
    if delivery_ids:
        for row in uow.execute(sa.select(a).where(a.c.delivery_id.in_(delivery_ids)).order_by(a.c.id)).all():
            logs[row.delivery_id].append(
                {
                    "at": row.at.isoformat(),
                    "status_code": row.status_code,
                    "error": row.error,
                    "duration_ms": row.duration_ms,
                }
            )
    return logs


def list_deliveries(uow, workspace_id: str, subscription_id: str, limit=50) -> list[dict]:
    """A subscription's deliveries, newest first, each with its attempts (oldest first)."""
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= 200:
        raise Invalid("limit is a number from 1 to 200.", limit="1 to 200")
    _subscription_row(uow, workspace_id, subscription_id)
    d = webhook_deliveries
    rows = uow.execute(
        sa.select(d)
        .where(d.c.subscription_id == subscription_id, d.c.workspace_id == workspace_id)
        .order_by(d.c.created_at.desc(), d.c.id.desc())
        .limit(limit)
    ).all()
    logs = _attempt_logs(uow, [row.id for row in rows])
    return [delivery_view(row, logs[row.id]) for row in rows]


def replay(uow, now: datetime, workspace_id: str, delivery_id: str) -> dict:
    """Send a delivery again now, whatever its state, with a fresh 24-hour retry window. The body is
    the one first sent (same event id), so a receiver that dedupes sees it as the same event."""
    d, s = webhook_deliveries, webhook_subscriptions
    row = uow.execute(
        sa.select(d, s.c.active)
        .join(s, s.c.id == d.c.subscription_id)
        .where(d.c.id == delivery_id, d.c.workspace_id == workspace_id)
    ).first()
    if row is None:
        raise NotFound("No such webhook delivery.")
    if not row.active:
        raise Conflict("The subscription is paused: activate it (PATCH active: true) before replaying.")
    uow.execute(
        d.update()
        .where(d.c.id == delivery_id)
        .values(
            status="pending", next_attempt_at=now, retry_until=now + RETRY_WINDOW, claim_token=None, delivered_at=None
        )
    )
    row = uow.execute(sa.select(d).where(d.c.id == delivery_id)).first()
    return delivery_view(row, _attempt_logs(uow, [delivery_id])[delivery_id])

"""Auth use cases. Each takes a unit of work and the current time and returns plain data."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from chassis import credentials
from chassis.errors import Invalid, RateLimited, Unauthorized
from chassis.scope import ROLES
from services.auth import domain
from services.auth.tables import contacts, document_links, link_tokens, rate_hits, sessions


def _hit_rate_limit(uow, key: str, limit: int, now: datetime, policy: domain.Policy) -> bool:
    since = now - policy.rate_window
    uow.execute(rate_hits.delete().where(rate_hits.c.key == key, rate_hits.c.at < since))
    count = uow.execute(
        sa.select(sa.func.count()).select_from(rate_hits).where(rate_hits.c.key == key, rate_hits.c.at >= since)
    ).scalar_one()
    return count >= limit


def request_links(
    uow, raw_email: str, client_ip: str, now: datetime, policy: domain.Policy, user_agent: str | None = None
) -> list[dict]:
    """Issue a link for each portal-enabled contact with this email.

    Returns what to email (never shown to the requester, whose answer is always the same): the link,
    the device that asked for it, and a "this wasn't me" token that ends the contact's sessions.
    Raises Invalid for a malformed address and RateLimited past the per-email or per-IP limit.
    """
    email = domain.normalise_email(raw_email)
    limited = _hit_rate_limit(uow, f"ip:{client_ip}", policy.links_per_ip, now, policy) or _hit_rate_limit(
        uow, f"email:{email}", policy.links_per_email, now, policy
    )
    if limited:
        raise RateLimited("Too many sign-in links were requested. Wait a few minutes and try again.")
    uow.execute(rate_hits.insert(), [{"key": f"ip:{client_ip}", "at": now}, {"key": f"email:{email}", "at": now}])
    rows = uow.execute(sa.select(contacts).where(contacts.c.email == email, contacts.c.portal_access.is_(True))).all()
    to_send = []
    user_agent = (user_agent or "")[: domain.USER_AGENT_LIMIT] or None
    device = domain.describe_device(user_agent)
    for contact in rows:
        token, link = domain.issue_link(contact.id, now, policy)
        report = domain.new_secret()
        uow.execute(
            link_tokens.insert().values(
                token_hash=domain.hash_secret(token),
                contact_id=contact.id,
                created_at=link.created_at,
                expires_at=link.expires_at,
                ip=_ip(client_ip),
                user_agent=user_agent,
                report_hash=domain.hash_secret(report),
            )
        )
        to_send.append(
            {
                "token": token,
                "report_token": report,
                "browser": device.browser,
                "os": device.os,
                "ip": _ip(client_ip),
                "email": contact.email,
                "name": contact.name,
                "contact_id": contact.id,
                "locale": contact.locale,
                "client_id": contact.client_id,
                "workspace_id": contact.workspace_id,
                "expires_at": link.expires_at.isoformat(),
            }
        )
    return to_send


def _token_state(uow, token: str, now: datetime) -> str:
    if not token or len(token) > 200:
        return "unknown"
    row = uow.execute(sa.select(link_tokens).where(link_tokens.c.token_hash == domain.hash_secret(token))).first()
    if row is None:
        return "unknown"
    return domain.LinkToken(row.contact_id, row.created_at, row.expires_at, row.used_at).state(now)


def _check_guessing(uow, client_ip: str | None, now: datetime, policy: domain.Policy | None) -> None:
    """An address that sent too many tokens we never issued (someone guessing) is refused for the rate
    window, even with a real link: a lucky guess then gets nothing either."""
    if client_ip and policy and _hit_rate_limit(uow, f"verify:{client_ip}", policy.verify_failures_per_ip, now, policy):
        raise RateLimited(
            "Too many sign-in links that do not work came from your network. "
            "Wait a few minutes, then use the link from your latest email."
        )


def _count_guess(uow, client_ip: str | None, now: datetime, policy: domain.Policy | None) -> None:
    if client_ip and policy:
        uow.execute(rate_hits.insert().values(key=f"verify:{client_ip}", at=now))
        uow.commit()  # a trace kept whatever follows (a read, a refusal): the guess stays counted


def link_state(
    uow, token: str, now: datetime, client_ip: str | None = None, policy: domain.Policy | None = None
) -> str:
    """'valid', 'used', 'expired' or 'unknown', without consuming anything. With the requester's address,
    unknown tokens count against it and RateLimited refuses it past `policy.verify_failures_per_ip`."""
    _check_guessing(uow, client_ip, now, policy)
    state = _token_state(uow, token, now)
    if state == "unknown":
        _count_guess(uow, client_ip, now, policy)
    return state


def consume_link(
    uow,
    token: str,
    previous_session_id: str | None,
    now: datetime,
    client_ip: str | None,
    policy: domain.Policy,
    keys: credentials.Keys,
    user_agent: str | None = None,
) -> dict:
    """Use a link once (atomically, even under concurrent posts) and open a new session.

    Returns the session with its signed credential (`credential`), which the gateway sets as the
    cookie or hands out as the API's bearer token, and `new_device` (what to tell the contact, or
    None); raises Unauthorized with the link state, or RateLimited when the address is guessing
    (see link_state).
    """
    state = link_state(uow, token, now, client_ip, policy)
    if state != "valid":
        raise Unauthorized(state)
    token_hash = domain.hash_secret(token)
    # The conditional UPDATE is the single-use guarantee: only one transaction can flip used_at.
    claimed = uow.execute(
        link_tokens.update()
        .where(link_tokens.c.token_hash == token_hash, link_tokens.c.used_at.is_(None), link_tokens.c.expires_at > now)
        .values(used_at=now)
    ).rowcount
    if claimed != 1:
        raise Unauthorized("used")
    contact = uow.execute(
        sa.select(contacts)
        .join(link_tokens, link_tokens.c.contact_id == contacts.c.id)
        .where(link_tokens.c.token_hash == token_hash)
    ).one()
    if not contact.portal_access:
        uow.commit()  # a trace kept through the refusal: the link stays used
        raise Unauthorized("no_access")
    # a magic link proves presence: step-up for money counts from it
    opened = open_session(uow, now, contact, previous_session_id, client_ip, user_agent, policy, keys, proved_at=now)
    return opened


def open_session(
    uow,
    now: datetime,
    contact,
    previous_session_id: str | None,
    client_ip: str | None,
    user_agent: str | None,
    policy: domain.Policy,
    keys: credentials.Keys,
    proved_at: datetime | None = None,
) -> dict:
    """A new session for `contact`, however it signed in (the entrypoint commits): the browser's previous
    session ends (no fixation), the device is recorded and announced (`session.started`), and the
    answer carries the signed credential and `new_device`, what to tell the contact (or None)."""
    if previous_session_id:
        _end(uow, now, sessions.c.id == _int(previous_session_id), "signed_in_again", policy)
    device, new_device = session_device(uow, contact.id, client_ip, user_agent)
    session_id = uow.execute(
        sessions.insert()
        .values(
            sid_hash=domain.hash_secret(domain.new_secret()),  # a unique key the schema keeps; never handed out
            contact_id=contact.id,
            client_id=contact.client_id,
            workspace_id=contact.workspace_id,
            created_at=now,
            last_seen_at=now,
            **device,
        )
        .returning(sessions.c.id)
    ).scalar_one()
    uow.publish("auth.signed_in", contact.workspace_id, {"contact_id": contact.id, "client_id": contact.client_id})
    notice = session_started(uow, now, contact, session_id, device, new_device)
    session = credentials.Session(
        str(session_id),
        contact.id,
        contact.client_id,
        contact.workspace_id,
        contact.email,
        contact.name,
        contact.locale,
        now,
        now,
        role=contact.role,
        proved_at=proved_at,
    )
    return {"credential": credentials.issue(session, keys), **session.view(policy.limits), "new_device": notice}


def session_device(uow, contact_id: str, client_ip: str | None, user_agent: str | None) -> tuple[dict, bool]:
    """What a new session records of the device it starts on (its `sessions` columns), and whether the
    contact never signed in with that browser and OS before. Every way of signing in calls it."""
    user_agent = (user_agent or "")[: domain.USER_AGENT_LIMIT] or None
    device = domain.describe_device(user_agent)
    earlier = [
        domain.Device(row.browser, row.os)
        for row in uow.execute(
            sa.select(sessions.c.browser, sessions.c.os).where(sessions.c.contact_id == contact_id).distinct()
        )
    ]
    columns = {"ip": _ip(client_ip), "user_agent": user_agent, "browser": device.browser, "os": device.os}
    return columns, domain.is_new_device(device, earlier)


def session_started(uow, now: datetime, contact, session_id, device: dict, new_device: bool) -> dict | None:
    """Announce a new session (`session.started`) and return the new-device notice to email, if any."""
    uow.publish(
        "session.started",
        contact.workspace_id,
        {
            "session_id": str(session_id),
            "contact_id": contact.id,
            "client_id": contact.client_id,
            "started_at": now.isoformat(),
            "browser": device["browser"],
            "os": device["os"],
            "new_device": new_device,
            # documents leaves these two out of outbound webhooks unless the workspace opts in
            "ip": device["ip"],
            "user_agent": device["user_agent"],
        },
    )
    if not new_device:
        return None
    return {
        "email": contact.email,
        "name": contact.name,
        "locale": contact.locale,
        **{key: device[key] for key in ("browser", "os", "ip")},
    }


def _ip(value: str | None) -> str | None:
    """An address as the gateway gave it, if it fits an IPv6 address's length; else not kept."""
    return value if value and value != "unknown" and len(value) <= 45 else None


def _int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1  # matches no session


def _end(uow, now: datetime, which, reason: str, policy: domain.Policy) -> int:
    """End the sessions `which` selects that are still open, announcing each (every gateway keeps a
    list of ended sessions until their credentials would have expired anyway)."""
    ended = uow.execute(
        sa.select(
            sessions.c.id, sessions.c.contact_id, sessions.c.client_id, sessions.c.workspace_id, sessions.c.created_at
        ).where(which, sessions.c.revoked_at.is_(None))
    ).all()
    if not ended:
        return 0
    uow.execute(sessions.update().where(sessions.c.id.in_([row.id for row in ended])).values(revoked_at=now))
    for row in ended:
        uow.publish(
            "session.ended",
            row.workspace_id,
            {
                "session_id": str(row.id),
                "contact_id": row.contact_id,
                "client_id": row.client_id,
                "reason": reason,
                "ended_at": now.isoformat(),
                "remember_until": (row.created_at + policy.session_absolute).isoformat(),
            },
        )
    return len(ended)


def end_session(
    uow, now: datetime, session_id: str, everywhere: bool = False, policy: domain.Policy | None = None
) -> int:
    """End this session, or (everywhere) every session of its contact, on all devices. Returns how
    many sessions ended."""
    policy = policy or domain.Policy()
    this = sessions.c.id == _int(session_id)
    reason = "signed_out"
    if everywhere:
        contact_id = uow.execute(sa.select(sessions.c.contact_id).where(this)).scalar()
        if contact_id is None:
            return 0
        this, reason = sessions.c.contact_id == contact_id, "signed_out_everywhere"
    ended = _end(uow, now, this, reason, policy)
    return ended


def check_session(uow, now: datetime, session_id: str) -> str:
    """What auth's records say of a session: active, revoked, no_access or unknown. The gateway asks
    only while it has no revocation list (starting up, or after losing the broker)."""
    row = uow.execute(
        sa.select(sessions.c.revoked_at, contacts.c.portal_access)
        .join(contacts, contacts.c.id == sessions.c.contact_id)
        .where(sessions.c.id == _int(session_id))
    ).first()
    if row is None:
        return "unknown"
    if row.revoked_at is not None:
        return "revoked"
    return "active" if row.portal_access else "no_access"


def revocations(uow, now: datetime, policy: domain.Policy) -> dict:
    """What a gateway must refuse although the credential is signed and in time: sessions ended early
    (until they would have expired anyway) and contacts without portal access (sessions begun before)."""
    ended = uow.execute(
        sa.select(sessions.c.id, sessions.c.created_at).where(
            sessions.c.revoked_at.is_not(None), sessions.c.created_at > now - policy.session_absolute
        )
    ).all()
    barred = uow.execute(sa.select(contacts.c.id, contacts.c.updated_at).where(contacts.c.portal_access.is_(False)))
    return {
        "sessions": [[str(row.id), (row.created_at + policy.session_absolute).isoformat()] for row in ended],
        "contacts": [[row.id, row.updated_at.isoformat()] for row in barred],
    }


def sessions_seen(uow, now: datetime, seen: dict) -> int:
    """When each session was last active, as the gateways report it now and then (for a sessions list,
    not for the limits: the gateways hold those on the credential)."""
    updated = 0
    for session_id, at in (seen or {}).items():
        try:
            moment = datetime.fromisoformat(at)
        except (TypeError, ValueError):
            continue
        if moment.tzinfo is None or moment > now + timedelta(minutes=5):
            continue
        updated += uow.execute(
            sessions.update()
            .where(sessions.c.id == _int(session_id), sessions.c.last_seen_at < moment)
            .values(last_seen_at=moment)
        ).rowcount
    return updated


def apply_contact(uow, data: dict, now: datetime, policy: domain.Policy | None = None) -> None:
    """Upsert auth's copy of a billing contact. Versions order the events: an older one, even one
    racing a newer one on another worker, never overwrites (the update is conditional on version).
    Losing portal access, or a new role, ends the contact's sessions at once (its next sign-in carries
    the new role)."""
    role = data.get("role")
    if role not in ROLES:
        role = "viewer"  # an event without a role (from before roles, or malformed) grants the least
    values = {
        "workspace_id": data["workspace_id"],
        "client_id": data["client_id"],
        "email": data["email"].lower(),
        "name": data.get("name") or "",
        "locale": data.get("locale"),
        "portal_access": bool(data["portal_access"]),
        "role": role,
        "version": data["version"],
        "updated_at": now,
    }
    before = uow.execute(sa.select(contacts.c.role).where(contacts.c.id == data["id"])).scalar()
    updated = uow.execute(
        contacts.update().where(contacts.c.id == data["id"], contacts.c.version < data["version"]).values(**values)
    ).rowcount
    if not updated:
        if uow.execute(sa.select(contacts.c.id).where(contacts.c.id == data["id"])).first():
            return  # we already have this version or a newer one
        uow.execute(contacts.insert().values(id=data["id"], **values))  # a racing insert fails and is retried
    if not values["portal_access"]:
        _end(uow, now, sessions.c.contact_id == data["id"], "access_removed", policy or domain.Policy())
    elif before is not None and before != role:
        _end(uow, now, sessions.c.contact_id == data["id"], "role_changed", policy or domain.Policy())


def invitation_link(uow, contact_id: str, now: datetime, policy: domain.Policy) -> dict | None:
    """A sign-in link for a contact an owner just invited (its invitation email), or None when the
    contact has no portal access (any more). Not rate-limited: only an owner's invitation issues one."""
    contact = uow.execute(
        sa.select(contacts).where(contacts.c.id == contact_id, contacts.c.portal_access.is_(True))
    ).first()
    if contact is None:
        return None
    token, link = domain.issue_link(contact.id, now, policy)
    uow.execute(
        link_tokens.insert().values(
            token_hash=domain.hash_secret(token),
            contact_id=contact.id,
            created_at=link.created_at,
            expires_at=link.expires_at,
        )
    )
    return {
        "token": token,
        "email": contact.email,
        "name": contact.name,
        "locale": contact.locale,
        "client_id": contact.client_id,
        "workspace_id": contact.workspace_id,
        "expires_at": link.expires_at.isoformat(),
    }


DOCUMENT_KINDS = {"invoice", "quote"}


def issue_document_link(
    uow,
    now: datetime,
    workspace_id: str,
    client_id: str,
    kind: str,
    document_id: str,
    ttl: timedelta,
    contact_id: str | None = None,
) -> dict:
    """A token that opens one document for one client, without signing in; revocable and expiring.
    `contact_id` is the recipient, whose sessions page lists the link."""
    if kind not in DOCUMENT_KINDS:
        raise Invalid("Links open invoices or quotes.", kind="unknown")
    token = domain.new_secret()
    uow.execute(
        document_links.insert().values(
            token_hash=domain.hash_secret(token),
            workspace_id=workspace_id,
            client_id=client_id,
            document_kind=kind,
            document_id=document_id,
            created_at=now,
            expires_at=now + ttl,
            contact_id=contact_id,
        )
    )
    return {"token": token, "expires_at": (now + ttl).isoformat()}


def resolve_document_link(uow, now: datetime, token: str) -> dict:
    """The one document a link opens, or Unauthorized('unknown' | 'expired' | 'revoked')."""
    if not token or len(token) > 200:
        raise Unauthorized("unknown")
    row = uow.execute(sa.select(document_links).where(document_links.c.token_hash == domain.hash_secret(token))).first()
    if row is None:
        raise Unauthorized("unknown")
    if row.revoked_at is not None:
        raise Unauthorized("revoked")
    if now >= row.expires_at:
        raise Unauthorized("expired")
    return {
        "workspace_id": row.workspace_id,
        "client_id": row.client_id,
        "kind": row.document_kind,
        "document_id": row.document_id,
        "expires_at": row.expires_at.isoformat(),
    }


def revoke_document_links(uow, now: datetime, workspace_id: str, document_id: str) -> int:
    revoked = uow.execute(
        document_links.update()
        .where(
            document_links.c.workspace_id == workspace_id,
            document_links.c.document_id == document_id,
            document_links.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    ).rowcount
    return revoked


# --- the contact's sessions and devices page ------------------------------------------------------

REPORT_TTL = timedelta(days=30)  # how long a sign-in email's "this wasn't me" link works


def _active_sessions(contact_id: str, now: datetime, policy: domain.Policy):
    """The contact's sessions that a credential could still use (auth's view: the idle limit uses the
    last-seen time the gateways reported, which may lag by a minute)."""
    return sa.and_(
        sessions.c.contact_id == contact_id,
        sessions.c.revoked_at.is_(None),
        sessions.c.created_at > now - policy.session_absolute,
        sessions.c.last_seen_at > now - policy.session_idle,
    )


def list_devices(uow, now: datetime, contact_id: str, current_session_id: str | None, policy: domain.Policy) -> dict:
    """What the contact is signed in with and can still sign in with: active sessions (the current one
    marked), unused sign-in links and active one-document links emailed to it. Newest first."""
    rows = uow.execute(
        sa.select(sessions).where(_active_sessions(contact_id, now, policy)).order_by(sessions.c.created_at.desc())
    ).all()
    links = uow.execute(
        sa.select(link_tokens)
        .where(link_tokens.c.contact_id == contact_id, link_tokens.c.used_at.is_(None), link_tokens.c.expires_at > now)
        .order_by(link_tokens.c.created_at.desc())
    ).all()
    documents = uow.execute(
        sa.select(document_links)
        .where(
            document_links.c.contact_id == contact_id,
            document_links.c.revoked_at.is_(None),
            document_links.c.expires_at > now,
        )
        .order_by(document_links.c.created_at.desc())
    ).all()
    return {
        "sessions": [
            {
                "id": str(row.id),
                "current": str(row.id) == str(current_session_id),
                "started_at": row.created_at.isoformat(),
                "last_seen_at": row.last_seen_at.isoformat(),
                "browser": row.browser,
                "os": row.os,
                "ip": row.ip,
            }
            for row in rows
        ],
        "sign_in_links": [
            {
                "id": str(row.id),
                "requested_at": row.created_at.isoformat(),
                "expires_at": row.expires_at.isoformat(),
                **dict(zip(("browser", "os"), _device_of(row.user_agent))),
                "ip": row.ip,
            }
            for row in links
        ],
        "document_links": [
            {
                "id": str(row.id),
                "kind": row.document_kind,
                "document_id": row.document_id,
                "sent_at": row.created_at.isoformat(),
                "expires_at": row.expires_at.isoformat(),
            }
            for row in documents
        ],
    }


def _device_of(user_agent: str | None) -> tuple[str | None, str | None]:
    device = domain.describe_device(user_agent)
    return device.browser, device.os


def end_contact_session(uow, now: datetime, contact_id: str, session_id: str, policy: domain.Policy) -> int:
    """End one of the contact's own sessions (another contact's is never matched). Returns 0 or 1."""
    ended = _end(
        uow,
        now,
        sa.and_(sessions.c.id == _int(session_id), sessions.c.contact_id == contact_id),
        "ended_by_contact",
        policy,
    )
    return ended


def end_other_sessions(uow, now: datetime, contact_id: str, current_session_id: str, policy: domain.Policy) -> int:
    """End every session of the contact but the one asking. Returns how many ended."""
    which = sa.and_(sessions.c.contact_id == contact_id, sessions.c.id != _int(current_session_id))
    ended = _end(uow, now, which, "ended_by_contact", policy)
    return ended


def end_sign_in_link(uow, now: datetime, contact_id: str, link_id: str) -> int:
    """An unused sign-in link of the contact stops working (it then reads as expired). Returns 0 or 1."""
    ended = uow.execute(
        link_tokens.update()
        .where(
            link_tokens.c.id == _int(link_id),
            link_tokens.c.contact_id == contact_id,
            link_tokens.c.used_at.is_(None),
            link_tokens.c.expires_at > now,
        )
        .values(expires_at=now)
    ).rowcount
    return ended


def end_document_link(uow, now: datetime, contact_id: str, link_id: str) -> int:
    """A one-document link emailed to the contact stops working. Returns 0 or 1."""
    ended = uow.execute(
        document_links.update()
        .where(
            document_links.c.id == _int(link_id),
            document_links.c.contact_id == contact_id,
            document_links.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    ).rowcount
    return ended


def _report_row(uow, token: str, now: datetime):
    if not token or len(token) > 200:
        return None
    return uow.execute(
        sa.select(link_tokens.c.contact_id, contacts.c.email, contacts.c.locale, contacts.c.workspace_id)
        .join(contacts, contacts.c.id == link_tokens.c.contact_id)
        .where(link_tokens.c.report_hash == domain.hash_secret(token), link_tokens.c.created_at > now - REPORT_TTL)
    ).first()


def report_state(uow, now: datetime, token: str) -> dict:
    """What a "this wasn't me" link would act on, without acting (mail scanners open links):
    {'state': 'valid', 'email', 'locale', 'workspace_id'} or {'state': 'unknown'}."""
    row = _report_row(uow, token, now)
    if row is None:
        return {"state": "unknown"}
    return {"state": "valid", "email": row.email, "locale": row.locale, "workspace_id": row.workspace_id}


def report_not_me(uow, now: datetime, token: str, policy: domain.Policy) -> dict:
    """The contact did not ask for a sign-in link: end every session of the contact, every unused
    sign-in link and every one-document link emailed to it, in one transaction. Raises
    Unauthorized('unknown') for a token that is not a live report link."""
    row = _report_row(uow, token, now)
    if row is None:
        raise Unauthorized("unknown")
    contact_id = row.contact_id
    ended = _end(uow, now, sessions.c.contact_id == contact_id, "reported_not_me", policy)
    links = uow.execute(
        link_tokens.update()
        .where(link_tokens.c.contact_id == contact_id, link_tokens.c.used_at.is_(None), link_tokens.c.expires_at > now)
        .values(expires_at=now)
    ).rowcount
    documents = uow.execute(
        document_links.update()
        .where(document_links.c.contact_id == contact_id, document_links.c.revoked_at.is_(None))
        .values(revoked_at=now)
    ).rowcount
    return {"sessions": ended, "sign_in_links": links, "document_links": documents}

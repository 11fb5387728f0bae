"""Auth use cases. Each takes a unit of work and the current time and returns plain data."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from chassis import credentials
from chassis.errors import Invalid, RateLimited, Unauthorized
from services.auth import domain
from services.auth.tables import contacts, document_links, link_tokens, rate_hits, sessions


def _hit_rate_limit(uow, key: str, limit: int, now: datetime, policy: domain.Policy) -> bool:
    since = now - policy.rate_window
    uow.execute(rate_hits.delete().where(rate_hits.c.key == key, rate_hits.c.at < since))
    count = uow.execute(
        sa.select(sa.func.count()).select_from(rate_hits).where(rate_hits.c.key == key, rate_hits.c.at >= since)
    ).scalar_one()
    return count >= limit


def request_links(uow, raw_email: str, client_ip: str, now: datetime, policy: domain.Policy) -> list[dict]:
    """Issue a link for each portal-enabled contact with this email.

    Returns what to email (never shown to the requester, whose answer is always the same).
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
    for contact in rows:
        token, link = domain.issue_link(contact.id, now, policy)
        uow.execute(
            link_tokens.insert().values(
                token_hash=domain.hash_secret(token),
                contact_id=contact.id,
                created_at=link.created_at,
                expires_at=link.expires_at,
            )
        )
        to_send.append(
            {
                "token": token,
                "email": contact.email,
                "name": contact.name,
                "contact_id": contact.id,
                "locale": contact.locale,
                "client_id": contact.client_id,
                "workspace_id": contact.workspace_id,
                "expires_at": link.expires_at.isoformat(),
            }
        )
    uow.commit()
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
        uow.commit()


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
) -> dict:
    """Use a link once (atomically, even under concurrent posts) and open a new session.

    Returns the session with its signed credential (`credential`), which the gateway sets as the
    cookie or hands out as the API's bearer token; raises Unauthorized with the link state, or
    RateLimited when the address is guessing (see link_state).
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
        uow.rollback()
        raise Unauthorized("used")
    contact = uow.execute(
        sa.select(contacts)
        .join(link_tokens, link_tokens.c.contact_id == contacts.c.id)
        .where(link_tokens.c.token_hash == token_hash)
    ).one()
    if not contact.portal_access:
        uow.commit()  # the link stays used
        raise Unauthorized("no_access")
    if previous_session_id:  # a new session every sign-in: the one the browser had (fixation) ends
        _end(uow, now, sessions.c.id == _int(previous_session_id), "signed_in_again", policy)
    session_id = uow.execute(
        sessions.insert()
        .values(
            sid_hash=domain.hash_secret(domain.new_secret()),  # a unique key the schema keeps; never handed out
            contact_id=contact.id,
            client_id=contact.client_id,
            workspace_id=contact.workspace_id,
            created_at=now,
            last_seen_at=now,
        )
        .returning(sessions.c.id)
    ).scalar_one()
    uow.publish("auth.signed_in", contact.workspace_id, {"contact_id": contact.id, "client_id": contact.client_id})
    uow.commit()
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
    )
    return {"credential": credentials.issue(session, keys), **session.view(policy.limits)}


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
    uow.commit()
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
    uow.commit()
    return updated


def apply_contact(uow, data: dict, now: datetime, policy: domain.Policy | None = None) -> None:
    """Upsert auth's copy of a billing contact. Versions order the events: an older one, even one
    racing a newer one on another worker, never overwrites (the update is conditional on version).
    Losing portal access revokes the contact's sessions at once."""
    values = {
        "workspace_id": data["workspace_id"],
        "client_id": data["client_id"],
        "email": data["email"].lower(),
        "name": data.get("name") or "",
        "locale": data.get("locale"),
        "portal_access": bool(data["portal_access"]),
        "version": data["version"],
        "updated_at": now,
    }
    updated = uow.execute(
        contacts.update().where(contacts.c.id == data["id"], contacts.c.version < data["version"]).values(**values)
    ).rowcount
    if not updated:
        if uow.execute(sa.select(contacts.c.id).where(contacts.c.id == data["id"])).first():
            return  # we already have this version or a newer one
        uow.execute(contacts.insert().values(id=data["id"], **values))  # a racing insert fails and is retried
    if not values["portal_access"]:
        _end(uow, now, sessions.c.contact_id == data["id"], "access_removed", policy or domain.Policy())


DOCUMENT_KINDS = {"invoice", "quote"}


def issue_document_link(
    uow, now: datetime, workspace_id: str, client_id: str, kind: str, document_id: str, ttl: timedelta
) -> dict:
    """A token that opens one document for one client, without signing in; revocable and expiring."""
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
        )
    )
    uow.commit()
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
    uow.commit()
    return revoked

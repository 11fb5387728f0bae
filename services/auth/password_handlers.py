"""Password use cases, for workspaces that allow passwords. Each takes a unit of work and the current
time and returns plain data; hashing goes through a `passwords.Hasher` (off the event loop in the service).

Nothing here tells an email with an account from one without: a wrong password, an unknown email, a
workspace without passwords and a contact without a password all get the same refusal after the same
work (one argon2id verification at least), and "Forgot your password?" always answers the same."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from chassis import credentials
from chassis.errors import Conflict, Invalid, RateLimited, Unauthorized
from services.auth import domain, passwords
from services.auth.handlers import (
    _check_guessing,
    _count_guess,
    _end,
    _hit_rate_limit,
    _int,
    open_session,
)
from services.auth.tables import contacts, password_reset_tokens, rate_hits, sessions, workspace_passwords
from services.auth.tables import passwords as password_rows

REFUSED = "wrong_password"  # the one refusal of a password sign-in, whatever the reason
PASSWORDS_OFF = "passwords_off"  # no workspace here allows passwords: nothing about any email


def _lookup_email(raw: str) -> str:
    """The address to look contacts up by. One email_validator refuses (a special-use domain such as
    .test, which the API's schema and billing accept) is still looked up as typed, lower-cased: it then
    matches nothing, or the contact billing stored, and the answer stays the same as for any address."""
    try:
        return domain.normalise_email(raw)
    except Invalid:
        if isinstance(raw, str) and "@" in raw and len(raw.strip()) <= 254:
            return raw.strip().lower()
        raise


def apply_workspace(uow, data: dict, now: datetime) -> None:
    """Keep whether a workspace allows passwords, from billing's workspace events (ordered by version)."""
    enabled = bool((data.get("settings") or {}).get("passwords_enabled", False))
    values = {"enabled": enabled, "version": data["version"], "updated_at": now}
    updated = uow.execute(
        workspace_passwords.update()
        .where(workspace_passwords.c.workspace_id == data["id"], workspace_passwords.c.version < data["version"])
        .values(**values)
    ).rowcount
    if (
        not updated
        and not uow.execute(
            sa.select(workspace_passwords.c.workspace_id).where(workspace_passwords.c.workspace_id == data["id"])
        ).first()
    ):
        uow.execute(workspace_passwords.insert().values(workspace_id=data["id"], **values))


def passwords_offered(uow) -> bool:
    """Whether any workspace allows passwords: the sign-in page offers the password form only then."""
    return (
        uow.execute(sa.select(workspace_passwords.c.workspace_id).where(workspace_passwords.c.enabled).limit(1)).first()
        is not None
    )


def _workspace_allows(uow, workspace_id: str) -> bool:
    return bool(
        uow.execute(
            sa.select(workspace_passwords.c.enabled).where(workspace_passwords.c.workspace_id == workspace_id)
        ).scalar()
    )


def password_status(uow, contact_id: str) -> dict:
    """For the profile: whether the contact's workspace allows passwords and whether one is set."""
    contact = uow.execute(sa.select(contacts).where(contacts.c.id == contact_id)).first()
    if contact is None:
        return {"enabled": False, "has_password": False, "set_at": None}
    row = uow.execute(sa.select(password_rows.c.set_at).where(password_rows.c.contact_id == contact_id)).first()
    return {
        "enabled": _workspace_allows(uow, contact.workspace_id),
        "has_password": row is not None,
        "set_at": row.set_at.isoformat() if row else None,
    }


def _failures_limited(uow, email: str, client_ip: str, now, policy, password_policy) -> bool:
    return _hit_rate_limit(
        uow, f"password:ip:{client_ip}", password_policy.failures_per_ip, now, policy
    ) or _hit_rate_limit(uow, f"password:email:{email}", password_policy.failures_per_account, now, policy)


def _open_session(uow, contact, previous_session_id, now, policy, keys, client_ip=None, user_agent=None) -> dict:
    """A session as a sign-in link opens one, but a password proves no presence for step-up."""
    return open_session(uow, now, contact, previous_session_id, client_ip, user_agent, policy, keys)


def sign_in(
    uow,
    raw_email: str,
    password: str,
    client_ip: str,
    previous_session_id: str | None,
    now: datetime,
    policy: domain.Policy,
    password_policy: passwords.PasswordPolicy,
    hasher: passwords.Hasher,
    keys: credentials.Keys,
    user_agent: str | None = None,
) -> dict:
    """Sign in with an email and a password. The contacts with this email, portal access, a password and
    a workspace that allows passwords are tried, most recently set first; the first match opens a session.

    Raises Unauthorized('passwords_off') when no workspace allows passwords, Unauthorized('wrong_password')
    for every other refusal, RateLimited past the failures per account or per address."""
    email = _lookup_email(raw_email)
    if not passwords_offered(uow):
        raise Unauthorized(PASSWORDS_OFF)
    if _failures_limited(uow, email, client_ip, now, policy, password_policy):
        raise RateLimited(
            "Too many failed password sign-ins. Wait 15 minutes, or sign in with an emailed link instead."
        )
    candidates = uow.execute(
        sa.select(contacts, password_rows.c.hash)
        .join(password_rows, password_rows.c.contact_id == contacts.c.id)
        .join(workspace_passwords, workspace_passwords.c.workspace_id == contacts.c.workspace_id)
        .where(contacts.c.email == email, contacts.c.portal_access.is_(True), workspace_passwords.c.enabled)
        .order_by(password_rows.c.set_at.desc())
        .limit(password_policy.max_candidates)
    ).all()
    matched = next((row for row in candidates if hasher.verify(row.hash, password)), None)
    if not candidates:
        hasher.verify(None, password)  # the same work as for a real account
    if matched is None:
        uow.execute(
            rate_hits.insert(),
            [{"key": f"password:ip:{client_ip}", "at": now}, {"key": f"password:email:{email}", "at": now}],
        )
        uow.commit()  # a trace kept through the refusal: the failed guess stays counted
        raise Unauthorized(REFUSED)
    if hasher.needs_rehash(matched.hash):  # parameters raised since: upgrade while we hold the password
        uow.execute(
            password_rows.update()
            .where(password_rows.c.contact_id == matched.id, password_rows.c.hash == matched.hash)
            .values(hash=hasher.hash(passwords.normalise(password)))
        )
    return _open_session(uow, matched, previous_session_id, now, policy, keys, client_ip, user_agent)


def set_password(
    uow,
    now: datetime,
    session_id: str,
    contact_id: str,
    current_password: str | None,
    new_password: str,
    policy: domain.Policy,
    password_policy: passwords.PasswordPolicy,
    hasher: passwords.Hasher,
) -> dict:
    """Set (first time) or change the signed-in contact's password. Changing needs the current one (who
    forgot it uses "Forgot your password?"). The contact's other sessions end; this one stays.

    Raises Conflict when the workspace does not allow passwords or the password changed meanwhile
    (another tab), Invalid for a refused new password or a wrong current one, RateLimited past the
    failures per account."""
    contact = uow.execute(sa.select(contacts).where(contacts.c.id == contact_id)).first()
    if contact is None or not contact.portal_access:
        raise Unauthorized("no_access")
    if not _workspace_allows(uow, contact.workspace_id):
        raise Conflict("Passwords are turned off for this portal. Sign in with an emailed link.", passwords="disabled")
    existing = uow.execute(sa.select(password_rows.c.hash).where(password_rows.c.contact_id == contact_id)).scalar()
    if existing is not None:
        key = f"password:email:{contact.email}"
        if _hit_rate_limit(uow, key, password_policy.failures_per_account, now, policy):
            raise RateLimited("Too many wrong passwords. Wait 15 minutes and try again.")
        if not hasher.verify(existing, current_password or ""):
            uow.execute(rate_hits.insert().values(key=key, at=now))
            uow.commit()  # a trace kept through the refusal: the wrong guess stays counted
            raise Invalid("Your current password is not right.", current_password="wrong")
    new_password = passwords.check_new_password(new_password, contact.email)
    hashed = hasher.hash(new_password)
    changed_elsewhere = Conflict(
        "Your password was changed at the same time somewhere else. Reload the page and try again.",
        password="changed",
    )
    try:
        if existing is None:
            uow.execute(
                password_rows.insert().values(
                    contact_id=contact_id,
                    workspace_id=contact.workspace_id,
                    client_id=contact.client_id,
                    hash=hashed,
                    set_at=now,
                )
            )
        else:  # only over the hash we checked: a change from another tab in between wins, this one stops
            changed = uow.execute(
                password_rows.update()
                .where(password_rows.c.contact_id == contact_id, password_rows.c.hash == existing)
                .values(hash=hashed, set_at=now)
            ).rowcount
            if changed != 1:
                raise changed_elsewhere
    except IntegrityError:  # the first password, set from two tabs at once: one insert wins
        raise changed_elsewhere from None
    ended = _end(
        uow,
        now,
        sa.and_(sessions.c.contact_id == contact_id, sessions.c.id != _int(session_id)),
        "password_changed",
        policy,
    )
    uow.publish(
        "password.set",
        contact.workspace_id,
        {
            "contact_id": contact_id,
            "client_id": contact.client_id,
            "changed": existing is not None,
            "sessions_ended": ended,
            "set_at": now.isoformat(),
        },
    )
    return {"has_password": True, "set_at": now.isoformat(), "sessions_ended": ended}


def request_reset(
    uow, raw_email: str, client_ip: str, now: datetime, policy: domain.Policy, password_policy
) -> list[dict]:
    """Issue a "Forgot your password?" link for each contact with this email, portal access and a workspace
    that allows passwords. Returns what to email; the requester's answer is always the same. Limited
    like sign-in links, per email and per address."""
    email = _lookup_email(raw_email)
    limited = _hit_rate_limit(uow, f"reset:ip:{client_ip}", policy.links_per_ip, now, policy) or _hit_rate_limit(
        uow, f"reset:email:{email}", policy.links_per_email, now, policy
    )
    if limited:
        raise RateLimited("Too many password reset links were requested. Wait a few minutes and try again.")
    uow.execute(
        rate_hits.insert(), [{"key": f"reset:ip:{client_ip}", "at": now}, {"key": f"reset:email:{email}", "at": now}]
    )
    rows = uow.execute(
        sa.select(contacts)
        .join(workspace_passwords, workspace_passwords.c.workspace_id == contacts.c.workspace_id)
        .where(contacts.c.email == email, contacts.c.portal_access.is_(True), workspace_passwords.c.enabled)
    ).all()
    to_send = []
    for contact in rows:
        token, expires_at = domain.new_secret(), now + password_policy.reset_ttl
        uow.execute(
            password_reset_tokens.insert().values(
                token_hash=domain.hash_secret(token),
                contact_id=contact.id,
                workspace_id=contact.workspace_id,
                client_id=contact.client_id,
                created_at=now,
                expires_at=expires_at,
            )
        )
        to_send.append(
            {
                "token": token,
                "email": contact.email,
                "name": contact.name,
                "locale": contact.locale,
                "client_id": contact.client_id,
                "workspace_id": contact.workspace_id,
                "expires_at": expires_at.isoformat(),
            }
        )
    return to_send


def _reset_row(uow, token: str):
    if not token or len(token) > 200:
        return None
    return uow.execute(
        sa.select(password_reset_tokens).where(password_reset_tokens.c.token_hash == domain.hash_secret(token))
    ).first()


def reset_state(uow, token: str, now: datetime, client_ip: str | None, policy: domain.Policy) -> str:
    """'valid', 'used', 'expired' or 'unknown', consuming nothing (mail scanners open links). Unknown
    tokens count against the address like guessed sign-in links."""
    _check_guessing(uow, client_ip, now, policy)
    row = _reset_row(uow, token)
    if row is None:
        _count_guess(uow, client_ip, now, policy)
        return "unknown"
    return domain.LinkToken(row.contact_id, row.created_at, row.expires_at, row.used_at).state(now)


def reset_password(
    uow,
    token: str,
    new_password: str,
    previous_session_id: str | None,
    client_ip: str | None,
    now: datetime,
    policy: domain.Policy,
    hasher: passwords.Hasher,
    keys: credentials.Keys,
    user_agent: str | None = None,
) -> dict:
    """Set a new password by a "Forgot your password?" link, once: every session of the contact ends and a
    new one opens here. A refused password leaves the link unused; Unauthorized carries the link's state."""
    state = reset_state(uow, token, now, client_ip, policy)
    if state != "valid":
        raise Unauthorized(state)
    row = _reset_row(uow, token)
    contact = uow.execute(sa.select(contacts).where(contacts.c.id == row.contact_id)).one()
    new_password = passwords.check_new_password(new_password, contact.email)
    hashed = hasher.hash(new_password)
    claimed = uow.execute(  # the single-use guarantee, as for sign-in links
        password_reset_tokens.update()
        .where(
            password_reset_tokens.c.id == row.id,
            password_reset_tokens.c.used_at.is_(None),
            password_reset_tokens.c.expires_at > now,
        )
        .values(used_at=now)
    ).rowcount
    if claimed != 1:
        raise Unauthorized("used")
    if not contact.portal_access or not _workspace_allows(uow, contact.workspace_id):
        uow.commit()  # a trace kept through the refusal: the link stays used
        raise Unauthorized("no_access")
    values = {"hash": hashed, "set_at": now}
    replaced = uow.execute(password_rows.update().where(password_rows.c.contact_id == contact.id).values(**values))
    if not replaced.rowcount:
        uow.execute(
            password_rows.insert().values(
                contact_id=contact.id, workspace_id=contact.workspace_id, client_id=contact.client_id, **values
            )
        )
    ended = _end(uow, now, sessions.c.contact_id == contact.id, "password_reset", policy)
    uow.publish(
        "password.reset",
        contact.workspace_id,
        {"contact_id": contact.id, "client_id": contact.client_id, "sessions_ended": ended, "set_at": now.isoformat()},
    )
    return _open_session(uow, contact, previous_session_id, now, policy, keys, client_ip, user_agent)

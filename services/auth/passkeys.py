"""Passkeys (WebAuthn): registering them, signing in with them, proving presence again before money
moves (step-up), naming and removing them. Each use case takes a unit of work and the current time.

Every ceremony answers a challenge auth issued: single-use (a conditional UPDATE claims it), bound to
its purpose (and, for registration and step-up, to the contact and session that asked), expiring in
minutes. The authenticator's signature counter must grow with every use, so a cloned key is refused.
The relying party is the portal's own host: `portal_url` is the gateway's configured address.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlparse

import sqlalchemy as sa
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from chassis import credentials
from chassis.errors import Conflict, Invalid, NotFound, RateLimited, Unauthorized
from services.auth import domain, handlers
from services.auth.tables import contacts, link_tokens, passkey_challenges, passkeys, rate_hits

CHALLENGE_TTL = timedelta(minutes=5)
NAME_LIMIT = 100
MAX_PASSKEYS = 20  # per contact: enough for every device, not a table anyone can fill
CREDENTIAL_LIMIT = 48 * 1024  # the browser's answer, as JSON text (the portal API allows ~34 KB of fields)
PURPOSES = ("register", "sign_in", "step_up")


def relying_party(portal_url: str) -> tuple[str, str]:
    """(rp id, origin) of the portal: passkeys are bound to its host name."""
    parsed = urlparse(portal_url or "")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise Invalid("The portal's address is not set.", portal_url="invalid")
    origin = f"{parsed.scheme}://{parsed.netloc}"
    return parsed.hostname, origin


def _options(options) -> dict:
    return json.loads(options_to_json(options))


def _new_challenge(uow, now: datetime, purpose: str, challenge: bytes, **owner) -> None:
    # answered or not, a challenge is of no use after it expires: the table holds only live ones
    uow.execute(passkey_challenges.delete().where(passkey_challenges.c.expires_at < now - CHALLENGE_TTL))
    uow.execute(
        passkey_challenges.insert().values(
            challenge=bytes_to_base64url(challenge),
            purpose=purpose,
            created_at=now,
            expires_at=now + CHALLENGE_TTL,
            **owner,
        )
    )


def _parse(credential) -> dict:
    """The browser's PublicKeyCredential as JSON (an object, or its text), bounded."""
    if isinstance(credential, str):
        if len(credential) > CREDENTIAL_LIMIT:
            raise Invalid("The passkey's answer is too long.", credential="too long")
        try:
            credential = json.loads(credential)
        except ValueError:
            raise Invalid("The passkey's answer is not JSON.", credential="not JSON") from None
    if not isinstance(credential, dict) or not isinstance(credential.get("id"), str):
        raise Invalid("The passkey's answer is not a credential.", credential="not a credential")
    if len(json.dumps(credential)) > CREDENTIAL_LIMIT:
        raise Invalid("The passkey's answer is too long.", credential="too long")
    return credential


def _answered_challenge(credential: dict) -> str:
    """The challenge the browser signed, read from its clientDataJSON (verified again by webauthn). An
    answer that names none answers no challenge of ours: Unauthorized('challenge'), like a used one."""
    try:
        data = (credential.get("response") or {}).get("clientDataJSON") or ""
        client_data = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        challenge = client_data["challenge"]
    except (AttributeError, ValueError, KeyError, TypeError, binascii.Error):
        raise Unauthorized("challenge") from None
    if not isinstance(challenge, str) or len(challenge) > 100:
        raise Unauthorized("challenge")
    return challenge


def _claim(uow, now: datetime, credential: dict, purpose: str, **owner):
    """Use the challenge this answer signed, once. Unauthorized('challenge') when it is unknown, used,
    expired, or was issued for something (or someone) else: a replayed answer ends here."""
    challenge = _answered_challenge(credential)
    where = [
        passkey_challenges.c.challenge == challenge,
        passkey_challenges.c.purpose == purpose,
        passkey_challenges.c.used_at.is_(None),
        passkey_challenges.c.expires_at > now,
    ]
    where += [getattr(passkey_challenges.c, key) == value for key, value in owner.items()]
    claimed = uow.execute(passkey_challenges.update().where(*where).values(used_at=now)).rowcount
    if claimed != 1:
        raise Unauthorized("challenge")
    return base64url_to_bytes(challenge)


def passkey_view(row) -> dict:
    return {
        "id": row.id,
        "name": row.name,
        "created_at": row.created_at.isoformat(),
        "last_used_at": row.last_used_at.isoformat() if row.last_used_at else None,
    }


def _contact(uow, contact_id: str):
    row = uow.execute(sa.select(contacts).where(contacts.c.id == contact_id)).first()
    if row is None or not row.portal_access:
        raise Unauthorized("no_access")
    return row


def _descriptors(uow, contact_id: str) -> list[PublicKeyCredentialDescriptor]:
    rows = uow.execute(
        sa.select(passkeys.c.credential_id, passkeys.c.transports).where(passkeys.c.contact_id == contact_id)
    ).all()
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(row.credential_id)) for row in rows]


# ---------------------------------------------------------------- registering


def registration_options(uow, now: datetime, contact_id: str, portal_url: str, business: str) -> dict:
    """What the browser's navigator.credentials.create() needs: a discoverable credential (the
    sign-in page then needs no email), user verification if the device can."""
    contact = _contact(uow, contact_id)
    rp_id, _ = relying_party(portal_url)
    existing = _descriptors(uow, contact_id)
    if len(existing) >= MAX_PASSKEYS:
        raise Conflict(f"You have {MAX_PASSKEYS} passkeys already; remove one first.", passkeys="too many")
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=(business or "Client portal")[:100],
        user_name=contact.email,
        user_id=contact.id.encode(),  # the contact's id: no personal data in the authenticator's handle
        user_display_name=contact.name or contact.email,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=existing,  # the same authenticator is not registered twice
    )
    _new_challenge(
        uow,
        now,
        "register",
        options.challenge,
        workspace_id=contact.workspace_id,
        client_id=contact.client_id,
        contact_id=contact.id,
    )
    return _options(options)


def clean_name(name) -> str:
    if name is None:
        return ""
    if not isinstance(name, str):
        raise Invalid("The name is text.", name="not text")
    name = " ".join(name.split())
    if len(name) > NAME_LIMIT:
        raise Invalid(f"A passkey's name is at most {NAME_LIMIT} characters.", name="too long")
    return name


def register(uow, now: datetime, contact_id: str, credential, name, portal_url: str) -> dict:
    """Check the browser's new credential against the challenge this contact was given, and keep its
    public key. Raises Unauthorized('challenge') for an answer to no open challenge of this contact,
    Invalid for one that does not verify (the challenge is used either way)."""
    contact = _contact(uow, contact_id)
    name = clean_name(name) or "Passkey"
    credential = _parse(credential)
    rp_id, origin = relying_party(portal_url)
    challenge = _claim(uow, now, credential, "register", contact_id=contact.id)
    try:
        verified = verify_registration_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        uow.commit()  # a trace kept through the refusal: the challenge stays used
        raise Invalid("The passkey could not be checked. Try again.", credential=str(exc)[:200]) from None
    credential_id = bytes_to_base64url(verified.credential_id)
    if uow.execute(sa.select(passkeys.c.id).where(passkeys.c.credential_id == credential_id)).first():
        uow.commit()  # a trace kept through the refusal: the challenge stays used
        raise Conflict("This passkey is registered already.", credential="registered")
    transports = (credential.get("response") or {}).get("transports") or []
    passkey_id = str(uuid.uuid4())
    uow.execute(
        passkeys.insert().values(
            id=passkey_id,
            workspace_id=contact.workspace_id,
            client_id=contact.client_id,
            contact_id=contact.id,
            credential_id=credential_id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            transports=",".join(t for t in transports if isinstance(t, str))[:200],
            name=name,
            created_at=now,
        )
    )
    uow.publish(
        "passkey.added",
        contact.workspace_id,
        {"id": passkey_id, "contact_id": contact.id, "client_id": contact.client_id, "name": name},
    )
    row = uow.execute(sa.select(passkeys).where(passkeys.c.id == passkey_id)).one()
    return passkey_view(row)


# ---------------------------------------------------------------- using a passkey


def _verify_use(uow, now: datetime, credential: dict, challenge: bytes, portal_url: str, row) -> None:
    """Verify an assertion by this passkey and move its counter forward; a counter that did not grow
    (a cloned authenticator) or a racing use of the same count is refused."""
    rp_id, origin = relying_party(portal_url)
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=row.public_key,
            credential_current_sign_count=row.sign_count,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError):
        uow.commit()  # a trace kept through the refusal: the challenge stays used
        raise Unauthorized("passkey") from None
    moved = uow.execute(
        passkeys.update()
        .where(passkeys.c.id == row.id, passkeys.c.sign_count == row.sign_count)
        .values(sign_count=verified.new_sign_count, last_used_at=now)
    ).rowcount
    if moved != 1:
        uow.commit()  # a trace kept through the refusal: the challenge stays used
        raise Unauthorized("passkey")


def _passkey_of(uow, credential: dict, contact_id: str | None = None):
    where = [passkeys.c.credential_id == credential["id"]]
    if contact_id is not None:
        where.append(passkeys.c.contact_id == contact_id)
    return uow.execute(sa.select(passkeys).where(*where)).first()


def sign_in_options(
    uow, now: datetime, portal_url: str, client_ip: str | None = None, policy: domain.Policy | None = None
) -> dict:
    """A challenge for any passkey of this portal: the browser offers the ones it holds (discoverable
    credentials), so no email is asked for. Anyone may ask, so each address may ask as often as it may
    ask for sign-in links (RateLimited past that)."""
    rp_id, _ = relying_party(portal_url)
    if client_ip and policy:
        key = f"passkey:{client_ip}"
        if handlers._hit_rate_limit(uow, key, policy.links_per_ip, now, policy):
            raise RateLimited("Too many passkey sign-ins were started. Wait a few minutes and try again.")
        uow.execute(rate_hits.insert().values(key=key, at=now))
    options = generate_authentication_options(rp_id=rp_id, user_verification=UserVerificationRequirement.PREFERRED)
    _new_challenge(uow, now, "sign_in", options.challenge)
    return _options(options)


def sign_in(
    uow,
    now: datetime,
    credential,
    portal_url: str,
    previous_session_id: str | None,
    client_ip: str | None,
    policy: domain.Policy,
    keys: credentials.Keys,
    user_agent: str | None = None,
) -> dict:
    """Open a session for the contact whose passkey answered a sign-in challenge. The answer stands in
    for a sign-in link: one is issued and used in the same transaction, so a passkey session starts
    exactly as a magic-link one does (the same events, the same credential)."""
    credential = _parse(credential)
    challenge = _claim(uow, now, credential, "sign_in")
    row = _passkey_of(uow, credential)
    if row is None:
        uow.commit()  # a trace kept through the refusal: the challenge stays used
        raise Unauthorized("passkey")
    _verify_use(uow, now, credential, challenge, portal_url, row)
    token = domain.new_secret()
    uow.execute(
        link_tokens.insert().values(
            token_hash=domain.hash_secret(token),
            contact_id=row.contact_id,
            created_at=now,
            expires_at=now + CHALLENGE_TTL,
        )
    )
    device = {"user_agent": user_agent} if user_agent else {}
    return handlers.consume_link(uow, token, previous_session_id, now, client_ip, policy, keys, **device)


def step_up_options(uow, now: datetime, contact_id: str, session_id: str, portal_url: str) -> dict:
    """A challenge only this contact's passkeys can answer, for this session."""
    contact = _contact(uow, contact_id)
    rp_id, _ = relying_party(portal_url)
    allowed = _descriptors(uow, contact_id)
    if not allowed:
        raise Conflict("You have no passkey yet. Confirm with a sign-in link instead.", passkeys="none")
    options = generate_authentication_options(
        rp_id=rp_id, allow_credentials=allowed, user_verification=UserVerificationRequirement.PREFERRED
    )
    _new_challenge(
        uow,
        now,
        "step_up",
        options.challenge,
        workspace_id=contact.workspace_id,
        client_id=contact.client_id,
        contact_id=contact.id,
        session_id=str(session_id),
    )
    return _options(options)


def step_up(uow, now: datetime, contact_id: str, session_id: str, credential, portal_url: str) -> dict:
    """Check that the contact of this session is present now: its own passkey answered the challenge
    this session was given. Returns when (`proved_at`), for the gateway to put in the credential."""
    _contact(uow, contact_id)
    credential = _parse(credential)
    challenge = _claim(uow, now, credential, "step_up", contact_id=contact_id, session_id=str(session_id))
    row = _passkey_of(uow, credential, contact_id)
    if row is None:
        uow.commit()  # a trace kept through the refusal: the challenge stays used
        raise Unauthorized("passkey")
    _verify_use(uow, now, credential, challenge, portal_url, row)
    return {"proved_at": now.isoformat(), "passkey_id": row.id}


# ---------------------------------------------------------------- managing passkeys


def list_passkeys(uow, now: datetime, contact_id: str) -> list[dict]:
    rows = uow.execute(
        sa.select(passkeys).where(passkeys.c.contact_id == contact_id).order_by(passkeys.c.created_at, passkeys.c.id)
    ).all()
    return [passkey_view(row) for row in rows]


def _own(uow, contact_id: str, passkey_id: str):
    if not isinstance(passkey_id, str) or len(passkey_id) > 36:
        raise NotFound("There is no such passkey.")
    row = uow.execute(
        sa.select(passkeys).where(passkeys.c.id == passkey_id, passkeys.c.contact_id == contact_id)
    ).first()
    if row is None:
        raise NotFound("There is no such passkey.")
    return row


def rename_passkey(uow, now: datetime, contact_id: str, passkey_id: str, name) -> dict:
    _own(uow, contact_id, passkey_id)
    name = clean_name(name)
    if not name:
        raise Invalid("Give the passkey a name.", name="required")
    uow.execute(passkeys.update().where(passkeys.c.id == passkey_id).values(name=name))
    return passkey_view(_own(uow, contact_id, passkey_id))


def remove_passkey(uow, now: datetime, contact_id: str, passkey_id: str) -> list[dict]:
    """Remove one of the contact's passkeys (the magic link always remains the way back in). Removing
    one already removed (two tabs) is NotFound, and nothing else changes."""
    row = _own(uow, contact_id, passkey_id)
    removed = uow.execute(passkeys.delete().where(passkeys.c.id == passkey_id)).rowcount
    if removed != 1:
        raise NotFound("There is no such passkey.")
    uow.publish(
        "passkey.removed",
        row.workspace_id,
        {"id": row.id, "contact_id": row.contact_id, "client_id": row.client_id, "name": row.name},
    )
    return list_passkeys(uow, now, contact_id)

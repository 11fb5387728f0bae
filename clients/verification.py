"""Verification codes: what every printed invoice, quote, credit note and receipt carries (as text and
as a QR code) so that anyone holding the paper can open `/verify/<code>` on the portal and compare it
with the business's own record. Billing issues the codes; the gateway, documents and the APIs share
this one definition of what a code looks like.

A code is 28 characters of the RFC 4648 base32 alphabet (A-Z, 2-7), 140 random bits: unguessable, so
the page needs no sign-in, and short enough to type. It is shown in seven groups of four
("K7QM-3XRT-..."); typing it in lower case, with spaces or without dashes, or with 0, 1 or 8 for the
letters O, I or B (digits the alphabet leaves out for that reason) reads the same.
"""

from __future__ import annotations

import base64
import re
import secrets

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
LENGTH = 28  # characters; 5 bits each
GROUP = 4
PATH = "/verify/"
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})
_SEPARATORS = re.compile(r"[\s-]+")
_CANONICAL = re.compile(f"^[{ALPHABET}]{{{LENGTH}}}$")
_MAX_INPUT = 64  # anything longer is no code, and is refused before any work


def new_code() -> str:
    """A fresh code: 160 random bits drawn, the first 140 kept (each character stays uniform)."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii")[:LENGTH]


def grouped(code: str) -> str:
    """The code as people read and type it: groups of four joined by dashes (grouped again, the same)."""
    code = code.replace("-", "")
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def parse(text) -> str | None:
    """The canonical code (28 characters, no dashes) a typed or scanned text stands for, or None when
    it cannot be one (the caller answers "not verified" without looking anything up)."""
    if not isinstance(text, str) or len(text) > _MAX_INPUT:
        return None
    code = _SEPARATORS.sub("", text).upper().translate(_LOOKALIKES)
    return code if _CANONICAL.match(code) else None


def path(code: str) -> str:
    """The portal path that verifies a document: /verify/ and the grouped code."""
    return PATH + grouped(code)


def url(portal_url: str, code: str) -> str:
    """The full address printed on the document and put in its QR code."""
    return portal_url.rstrip("/") + path(code)

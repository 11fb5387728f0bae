"""Password rules (NIST SP 800-63B) and argon2id hashing, in plain Python: no database, no broker.

Hashing is deliberately slow and memory-hard, so the service runs it off the eventlet hub (see
`Hasher.run`): argon2-cffi's C code releases the GIL, and a green semaphore bounds how many hashes
(and how many times their memory) run at once, while other RPCs and the AMQP heartbeats go on.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Protocol, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from chassis.errors import Invalid

MIN_LENGTH = 12  # NIST SP 800-63B (rev. 4): at least 15 without a second factor, 8 with; the product asks 12
MAX_LENGTH = 128  # NIST: accept at least 64; a bound keeps one request's hashing cost bounded
COMMON_LIST = Path(__file__).parent / "assets" / "common-passwords.txt"

_T = TypeVar("_T")


@dataclass(frozen=True)
class PasswordPolicy:
    # failed password sign-ins within auth's rate window before the account (email) or the address is refused
    failures_per_account: int = 10
    failures_per_ip: int = 50
    reset_ttl: timedelta = timedelta(hours=1)
    # at most this many contacts sharing one email are tried, so one attempt costs a bounded number of hashes
    max_candidates: int = 5


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (assets/README.md says where it comes from)."""
    lines = COMMON_LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


def normalise(password: str) -> str:
    """NFKC, as NIST asks, so the same password typed on another keyboard or OS still matches."""
    return unicodedata.normalize("NFKC", password)


def check_new_password(password: object, email: str | None = None) -> str:
    """The password to store, normalised; Invalid says why one is refused. Length, the common list, the
    contact's own email and one repeated character are checked; no composition rules (NIST 5.1.1.2)."""
    if not isinstance(password, str) or not password:
        raise Invalid("Enter a password.", password="required")
    password = normalise(password)
    if len(password) < MIN_LENGTH:
        raise Invalid(f"Use at least {MIN_LENGTH} characters.", password="too_short")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"Use at most {MAX_LENGTH} characters.", password="too_long")
    lowered = password.lower()
    if lowered in common_passwords() or lowered.strip() in common_passwords():
        raise Invalid(
            "This password is one of the most common ones. Choose another, for example a few unrelated words.",
            password="common",
        )
    if email and (lowered == email.lower() or lowered == email.split("@", 1)[0].lower()):
        raise Invalid("Choose a password that is not your email address.", password="email")
    if len(set(lowered)) < 4:  # "aaaaaaaaaaaa", "abababababab": NIST's repetitive or sequential values
        raise Invalid("This password repeats too few characters. Choose another.", password="repetitive")
    return password


class Runner(Protocol):
    """Runs `fn(*args)` and answers its result, wherever it runs it."""

    def __call__(self, fn: Callable[..., _T], *args: Any) -> _T: ...


def _direct(fn: Callable[..., _T], *args: Any) -> _T:
    return fn(*args)


class Hasher:
    """argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane). `run(fn, *args)` runs the hashing;
    the service passes one that runs it in eventlet's thread pool."""

    def __init__(
        self,
        run: Runner = _direct,
        time_cost: int = 2,
        memory_cost: int = 19 * 1024,
        parallelism: int = 1,
    ):
        self.run = run
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        # verifying against this costs the same as against a real hash: unknown emails take as long
        self.dummy = self._hasher.hash("not a password anyone has: " + "x" * MIN_LENGTH)

    def hash(self, password: str) -> str:
        return self.run(self._hasher.hash, password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches `stored`; with no stored hash, the same work and False."""
        if not isinstance(password, str) or not password or len(password) > 4 * MAX_LENGTH:
            password = "-"  # still hashed: a refusal takes as long as a wrong password
        try:
            return bool(self.run(self._hasher.verify, stored or self.dummy, normalise(password))) and bool(stored)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)

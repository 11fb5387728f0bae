"""Business errors: plain exceptions the domain and the handlers raise, with no framework in them.

The edges map them: services list them as nameko's `expected_exceptions` (not logged as crashes) and
chassis/remote_errors.py registers them with nameko, so a caller (the gateway, the CLI) receives the
same exception, field errors included; the gateway answers each with its HTTP status
(services/gateway/app.py).
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    title = "Internal error"

    def __init__(self, detail: str = "", fields: dict[str, Any] | None = None, **more_fields: Any) -> None:
        self.detail = detail
        self.fields = {str(k): str(v) for k, v in {**(fields or {}), **more_fields}.items()}
        super().__init__(detail, self.fields)  # args travel over RPC and rebuild the instance

    def __str__(self) -> str:
        return self.detail


class NotFound(ServiceError):
    title = "Not found"


class Invalid(ServiceError):
    title = "Invalid input"


class Conflict(ServiceError):
    title = "Conflict"


class RateLimited(ServiceError):
    title = "Too many requests"


class Unauthorized(ServiceError):
    title = "Not signed in"


class Forbidden(ServiceError):
    """Signed in, but the contact's role in its organisation does not allow this (chassis/scope.py)."""

    title = "Not allowed for your role"


class Unavailable(ServiceError):
    """Something outside us (Stripe) did not answer; the outcome is unknown and a retry is safe."""

    title = "Temporarily unavailable"


EXPECTED = (NotFound, Invalid, Conflict, RateLimited, Unauthorized, Forbidden, Unavailable)
_BY_NAME = {cls.__name__: cls for cls in EXPECTED}


def from_remote(exc_type: str, value: str) -> ServiceError | None:
    """The ServiceError a RemoteError stands for (from a peer without the registry), else None."""
    cls = _BY_NAME.get(exc_type)
    return cls(value) if cls else None


def field_errors(exc: Any) -> dict[str, str]:
    """A pydantic ValidationError as {"field.path": "message"}, for problem+json."""
    return {".".join(str(p) for p in err["loc"]) or "body": err["msg"] for err in exc.errors()}

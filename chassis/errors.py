"""Business errors shared over RPC.

Services raise these and list them as `expected_exceptions`, so nameko does not log them as crashes.
They are registered with nameko's `deserialize_to_instance`, so a caller (the gateway, the CLI)
receives the same exception, field errors included, instead of a bare RemoteError.
"""

from __future__ import annotations

from nameko.exceptions import deserialize_to_instance


class ServiceError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "", fields: dict | None = None, **more_fields):
        self.detail = detail
        self.fields = {str(k): str(v) for k, v in {**(fields or {}), **more_fields}.items()}
        super().__init__(detail, self.fields)  # args travel over RPC and rebuild the instance

    def __str__(self) -> str:
        return self.detail


@deserialize_to_instance
class NotFound(ServiceError):
    status = 404
    title = "Not found"


@deserialize_to_instance
class Invalid(ServiceError):
    status = 422
    title = "Invalid input"


@deserialize_to_instance
class Conflict(ServiceError):
    status = 409
    title = "Conflict"


@deserialize_to_instance
class RateLimited(ServiceError):
    status = 429
    title = "Too many requests"


@deserialize_to_instance
class Unauthorized(ServiceError):
    status = 401
    title = "Not signed in"


@deserialize_to_instance
class Unavailable(ServiceError):
    """Something outside us (Stripe) did not answer; the outcome is unknown and a retry is safe."""

    status = 503
    title = "Temporarily unavailable"


EXPECTED = (NotFound, Invalid, Conflict, RateLimited, Unauthorized, Unavailable)
_BY_NAME = {cls.__name__: cls for cls in EXPECTED}


def from_remote(exc_type: str, value: str) -> ServiceError | None:
    """The ServiceError a RemoteError stands for (from a peer without the registry), else None."""
    cls = _BY_NAME.get(exc_type)
    return cls(value) if cls else None


def field_errors(exc) -> dict:
    """A pydantic ValidationError as {"field.path": "message"}, for problem+json."""
    return {".".join(str(p) for p in err["loc"]) or "body": err["msg"] for err in exc.errors()}

"""Business errors shared over RPC, and their mapping back from nameko's RemoteError.

Services raise these and list them as `expected_exceptions`, so nameko does not log them as
crashes; the gateway turns the RemoteError it receives back into the class by name.
"""
from __future__ import annotations


class ServiceError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "", **fields):
        super().__init__(detail)
        self.detail = detail
        self.fields = fields


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Invalid(ServiceError):
    status = 422
    title = "Invalid input"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class RateLimited(ServiceError):
    status = 429
    title = "Too many requests"


class Unauthorized(ServiceError):
    status = 401
    title = "Not signed in"


EXPECTED = (NotFound, Invalid, Conflict, RateLimited, Unauthorized)
_BY_NAME = {cls.__name__: cls for cls in EXPECTED}


def from_remote(exc_type: str, value: str) -> ServiceError | None:
    """The ServiceError a RemoteError stands for, or None for an unexpected crash."""
    cls = _BY_NAME.get(exc_type)
    return cls(value) if cls else None

"""JSON logging with a correlation (request) id that follows a request across services."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from pythonjsonlogger.json import JsonFormatter

# Under eventlet, contextvars are per-greenlet, so each nameko worker sees its own id.
QUIET_LOGGERS = ("amqp", "kombu", "alembic")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
REQUEST_ID_LENGTH = 64  # the request_id columns' size


def current_request_id() -> str | None:
    """The id of the request under way, to keep with work done for it later (an outbox row, a stored
    Stripe event, a queued email). Any caller's header: cut to the column's size rather than fail."""
    value = request_id_var.get()
    return str(value)[:REQUEST_ID_LENGTH] if value else None


@contextmanager
def request_context(request_id: str | None) -> Iterator[None]:
    """Run a timer's work for an earlier request under that request's id: its log lines, and the
    events it records, carry the id the request came in with."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


class RequestIdFilter(logging.Filter):
    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.request_id = request_id_var.get()
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = json_handler(service)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kombu/amqp are chatty at INFO about reconnects; keep warnings.
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def json_handler(service: str) -> logging.Handler:
    """Factory for logging.config.dictConfig (nameko's LOGGING setting)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(request_id)s",
            rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(RequestIdFilter(service))
    return handler

"""Every change the portal makes to nameko itself, put in place by one call, `apply()`, that each
service process makes as it starts (its service module, which `nameko run` loads).

They replace methods of nameko 2.14's classes and lean on its private attributes, so they are tied to
the version they were written for, `WRITTEN_FOR` (the pin in pyproject.toml): `apply()` refuses any
other, and an upgrade fails loudly at start-up instead of quietly running without them, or half-patched.

- `QueueConsumer.ack_message` / `requeue_message` survive a broker connection that has just gone away
  (`tolerate_lost_connection`).
- RPC replies take the fast path of chassis/fast_rpc.py: `Responder`, `Rpc.check_signature` and
  `QueueConsumer.handle_message` are replaced (its docstring says why). HTTP entrypoints check their
  arguments with the same once-computed signature (`HttpRequestHandler.check_signature`): nameko's
  own worked the method's signature out anew on every request.
- `WebServer.process_request` answers with Nagle's algorithm off (`without_nagle`).
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import socket
from collections.abc import Callable
from typing import Any

import nameko.rpc
import nameko.web.handlers
import nameko.web.server
from nameko.messaging import QueueConsumer

from chassis import fast_rpc

log = logging.getLogger(__name__)

WRITTEN_FOR = "2.14.1"  # keep equal to the nameko pin in pyproject.toml (tests/unit/test_nameko_patches.py)

_applied = False


class UnsupportedNameko(RuntimeError):
    """The installed nameko is not the version the patches were written for."""


def installed_nameko() -> str:
    return importlib.metadata.version("nameko")


def check_version() -> None:
    installed = installed_nameko()
    if installed != WRITTEN_FOR:
        raise UnsupportedNameko(
            f"chassis.nameko_patches was written for nameko {WRITTEN_FOR}, but nameko {installed} is installed: "
            "check each patch in chassis/nameko_patches.py and chassis/fast_rpc.py against the new version, "
            "then update WRITTEN_FOR"
        )


def tolerate_lost_connection(method: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """nameko 2.14 acks (or requeues) a message after its worker, ignoring only amqp's ConnectionError.
    When the broker has just gone away, the socket raises ConnectionResetError instead, which kills
    the whole service container (the process exits). The broker has reclaimed the unacked message and
    will deliver it again, and every consumer dedupes by event id, so losing the ack is harmless."""

    @functools.wraps(method)
    def tolerant(self: Any, message: Any) -> Any:
        try:
            return method(self, message)
        except OSError as exc:
            log.warning(
                "message not acked: the broker connection is gone; it will be redelivered", extra={"error": repr(exc)}
            )
            return None

    return tolerant


def without_nagle(process_request: Callable[..., Any]) -> Callable[..., Any]:
    """nameko's web server leaves Nagle's algorithm on. A response goes out as several writes (the
    headers, then the body), so the body's first write waited for the client to acknowledge the
    headers, which a client delays by up to 40 ms: a small cached PDF took 20-60 ms to fetch."""

    @functools.wraps(process_request)
    def answer(self: Any, sock: Any, address: Any) -> Any:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # not TCP (a Unix socket): nothing to turn off
            pass
        return process_request(self, sock, address)

    return answer


def apply() -> None:
    """Check nameko's version, then patch it (once: a second call changes nothing)."""
    global _applied
    check_version()
    if _applied:
        return
    QueueConsumer.ack_message = tolerate_lost_connection(QueueConsumer.ack_message)
    QueueConsumer.requeue_message = tolerate_lost_connection(QueueConsumer.requeue_message)
    # RPC replies: one connection, no confirms, direct reply-to; requests handed straight on.
    nameko.rpc.Responder = fast_rpc.FastResponder  # RpcConsumer looks `Responder` up per reply
    nameko.rpc.Rpc.check_signature = fast_rpc.check_signature
    nameko.web.handlers.HttpRequestHandler.check_signature = fast_rpc.check_signature
    QueueConsumer.handle_message = fast_rpc.handle_message
    nameko.web.server.WebServer.process_request = without_nagle(nameko.web.server.WebServer.process_request)
    _applied = True

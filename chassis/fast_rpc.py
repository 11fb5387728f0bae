"""The service side of a fast RPC: how a service publishes its answers.

nameko 2.14's `Responder` publishes every reply through kombu's producer pool (a `Connection` object
parsed per reply, pool lookups, retry wrappers) with publisher confirms: one more broker round trip
per call, after the work is done and before the caller can see the answer. `FastResponder` keeps
nameko's reply format (the same `{"result", "error"}` body, serializer and correlation id) but:

- publishes on one long-lived connection per process, without confirms. A reply is worth nothing
  once its caller has given up, and every caller waits with a timeout (the gateway's `RPC_TIMEOUT`,
  `TimedRpcProxy`'s `SERVICE_RPC_TIMEOUT`, portalctl's `RPC_TIMEOUT`) and may retry; a reply lost
  with the broker is a timeout, which callers already handle (so is one that cannot be sent within
  ~2 s of reconnecting: it is logged and dropped, never raised, as a raise would kill the service's
  container). Events are not affected: the outbox relay publishes them with confirms
  (chassis/confirmed_publish.py) and marks them published only then.
- sends a reply addressed to RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to.*`, what the
  gateway's `RpcPool` asks for) to the default exchange, as direct reply-to requires; a reply to a
  classic nameko reply queue still goes to the RPC exchange.

Two more changes on the way in, where nameko spent ~170 us of a ~500 us echo (measured in the
service, docs/decisions.md "The gateway's RPC"):

- An RPC request is handed to its entrypoint in the consumer's green thread when the worker pool has
  room, instead of through one more green thread first (nameko spawns it so that a full pool cannot
  block the consumer: with room, `spawn_worker` cannot block). The worker itself still runs in its
  own green thread; events and a full pool take nameko's path unchanged.
- The arguments are checked against the method with a cached `inspect.Signature.bind` instead of
  `inspect.getcallargs` per call (~30 us); a mismatch is still nameko's `IncorrectSignature`.

`chassis.nameko_patches.apply()`, called as each service process starts, puts all three in place.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, cast

import amqp
import kombu
import kombu.serialization
import nameko.rpc
from eventlet import patcher
from kombu.exceptions import OperationalError
from nameko.exceptions import IncorrectSignature, UnserializableValueError, serialize
from nameko.messaging import QueueConsumer

from chassis.json_text import message_body

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
BROKER_ERRORS = (OSError, amqp.exceptions.AMQPError, OperationalError)
TRANSIENT = 1  # a reply is never worth keeping across a broker restart: its caller is gone by then
_select = patcher.original("select").select  # a zero-timeout poll, never a switch to the eventlet hub

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class _Broker(Protocol):
    """What this module uses of a kombu.Connection, typed (kombu leaves these unannotated)."""

    @property
    def connection(self) -> Any: ...  # py-amqp's connection (untyped): its socket and channels

    def ensure_connection(
        self, *, max_retries: int, interval_start: float, interval_step: float, interval_max: float
    ) -> object: ...

    def collect(self) -> None: ...


class BrokerLink:
    """One broker connection of the process, used by one caller at a time, replaced when found gone."""

    def __init__(self, amqp_uri: str, ssl: object = None, login_method: str | None = None) -> None:
        self.amqp_uri = amqp_uri
        self.ssl = ssl
        self.login_method = login_method
        # threading.Lock is green under `nameko run` (monkey-patched), a real lock elsewhere.
        self._lock = threading.Lock()
        self._connection: _Broker | None = None
        self._channel: Any = None  # py-amqp's channel

    def _usable(self) -> bool:
        """Connected, and nothing waiting to be read. A link only publishes (and, confirming, reads
        nothing between batches), so anything readable is the broker closing it (connection.close, or
        EOF after a restart): publishing into it would lose the message without an error, so it is
        replaced first."""
        if self._channel is None or self._connection is None or not self._channel.is_open:
            return False
        try:
            readable, _, _ = _select([self._connection.connection.sock], [], [], 0)
        except (OSError, ValueError, AttributeError):
            return False
        return not readable

    def _reconnect(self) -> None:
        self._close()
        connect = cast(Callable[..., _Broker], kombu.Connection)
        connection = connect(self.amqp_uri, ssl=self.ssl, login_method=self.login_method)
        try:
            connection.ensure_connection(max_retries=3, interval_start=0.2, interval_step=0.4, interval_max=1.0)
            self._connection, self._channel = connection, connection.connection.channel()
            self._opened(self._channel)
        except BaseException:
            connection.collect()
            self._connection, self._channel = None, None
            raise

    def _sent_once_more_if_lost(self, send: Callable[[], None], what: str) -> None:
        """`send()` on a usable connection, one caller at a time; when the connection turns out to be
        lost on the way, once more on a new one (raising one of BROKER_ERRORS if that fails too)."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    if not self._usable():
                        self._reconnect()
                    send()
                    return
                except BROKER_ERRORS as exc:
                    self._close()
                    if attempt == 2:
                        raise
                    log.info(f"{what} connection lost; reconnecting", extra={"error": repr(exc)})

    def _opened(self, channel: Any) -> None:
        """What a new channel needs before its first message (nothing, for replies)."""

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.collect()  # drop the socket; no close handshake with a broker that may be gone
            except Exception:  # noqa: BLE001 - it is being discarded anyway
                pass


class ReplyPublisher(BrokerLink):
    """The process's connection that publishes RPC replies, without confirms."""

    def publish(
        self,
        body: bytes | str,
        content_type: str,
        content_encoding: str,
        exchange: str,
        routing_key: str,
        correlation_id: str | None,
    ) -> None:
        """Publish one reply; raises one of BROKER_ERRORS when the broker stays out of reach (about
        two seconds of retries: a restart's blip is ridden out, an outage is not waited for)."""
        message = amqp.Message(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            correlation_id=correlation_id,
            delivery_mode=TRANSIENT,
        )
        self._sent_once_more_if_lost(
            lambda: self._channel.basic_publish(message, exchange=exchange, routing_key=routing_key), "reply"
        )


_publishers: dict[tuple[str, str, str | None], ReplyPublisher] = {}
_publishers_lock = threading.Lock()


def reply_publisher(amqp_uri: str, ssl: object = None, login_method: str | None = None) -> ReplyPublisher:
    key = (amqp_uri, repr(ssl), login_method)
    with _publishers_lock:
        if key not in _publishers:
            _publishers[key] = ReplyPublisher(amqp_uri, ssl, login_method)
        return _publishers[key]


def reply_exchange(reply_to: str, rpc_exchange: str) -> str:
    """Direct reply-to addresses are reachable only through the default exchange ("")."""
    return "" if reply_to.startswith(DIRECT_REPLY_TO) else rpc_exchange


class FastResponder(nameko.rpc.Responder):
    """nameko's Responder, publishing as described in the module docstring."""

    def send_response(self, result: Any, exc_info: ExcInfo | None) -> tuple[Any, ExcInfo | None]:
        error = serialize(exc_info[1]) if exc_info is not None else None
        properties = self.message.properties
        # answer in the encoding of the request, as nameko does
        serializer = kombu.serialization.registry.type_to_name[properties["content_type"]]
        try:
            content_type, encoding, body = message_body({"result": result, "error": error}, serializer)
        except Exception as exc:  # noqa: BLE001 - nameko's rule: an unserializable result is the caller's error
            exc_info = (type(exc), exc, exc.__traceback__)
            error, result = serialize(UnserializableValueError(result)), None
            content_type, encoding, body = message_body({"result": None, "error": error}, serializer)
        reply_to = properties["reply_to"]
        publisher = reply_publisher(self.amqp_uri, self.ssl, self.login_method)
        try:
            publisher.publish(
                body,
                content_type,
                encoding,
                reply_exchange(reply_to, self.exchange.name),
                reply_to,
                properties.get("correlation_id"),
            )
        except BROKER_ERRORS as exc:
            # The broker is gone: the caller times out, as it would had the broker lost the reply. Raising
            # here would kill the service container (nameko treats a failing worker thread as fatal).
            log.warning("reply not sent: the broker is out of reach", extra={"error": repr(exc)})
        return result, exc_info


_signatures: dict[tuple[type, str], inspect.Signature] = {}


def check_signature(self: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """nameko's `Entrypoint.check_signature` (an RPC's, an HTTP request's) with the method's signature
    computed once."""
    key = (self.container.service_cls, self.method_name)
    signature = _signatures.get(key)
    if signature is None:
        signature = _signatures[key] = inspect.signature(getattr(self.container.service_cls, self.method_name))
    try:
        signature.bind(None, *args, **kwargs)  # None: the unbound method's `self`, as nameko passes it
    except TypeError as exc:
        raise IncorrectSignature(str(exc)) from None


_spawning_handle_message = QueueConsumer.handle_message


def handle_message(self: Any, provider: Any, body: Any, message: Any) -> None:
    """QueueConsumer's callback: an RPC request with room in the worker pool goes straight on."""
    if isinstance(provider, nameko.rpc.RpcConsumer) and self.container._worker_pool.free() > 0:
        provider.handle_message(body, message)  # checks, then spawns the worker; never blocks with room
        return
    _spawning_handle_message(self, provider, body, message)

"""The gateway's RPC client: a pool of broker connections with timeouts, safe to share between
gunicorn threads, speaking nameko's RPC protocol.

A call is what nameko's standalone proxy sends (the same exchange, routing key `<service>.<method>`,
`{"args", "kwargs"}` body and `nameko.*` context headers, so the services see no difference), with
three changes that take it from ~3.5x to ~1.5x a raw AMQP round trip (docs/benchmarks.md):

- **Connections are reused.** Each `RpcClient` holds one connection and channel for its lifetime; a
  thread checks one out per call. Nothing is declared per call.
- **Direct reply-to.** Answers come back through RabbitMQ's `amq.rabbitmq.reply-to` pseudo-queue on
  the calling channel: no reply queue exists at all, so none is declared, bound, or left to expire.
  (The services send such replies to the default exchange: chassis/fast_rpc.py.)
- **No publisher confirm.** nameko waits for the broker to confirm each request, mainly to learn that
  no queue took it (`UnknownService`). Here the request is published `mandatory`; an unroutable one
  comes back as `basic.return` on the same channel, before any answer could, so an unknown service
  is still told apart from a slow one. A request lost with the broker ends in the call's timeout.

The reply is matched to the call by correlation id; anything else that arrives is dropped, and a
client whose call timed out or lost its connection is thrown away: a late reply is never read as
the next call's answer.
"""

from __future__ import annotations

import logging
import queue
import select
import socket
import threading
import time
import uuid
from contextlib import contextmanager

import amqp
import kombu
import kombu.serialization
from kombu.exceptions import OperationalError
from nameko.constants import (
    AMQP_SSL_CONFIG_KEY,
    AMQP_URI_CONFIG_KEY,
    DEFAULT_SERIALIZER,
    HEADER_PREFIX,
    LOGIN_METHOD_CONFIG_KEY,
    RPC_EXCHANGE_CONFIG_KEY,
    SERIALIZER_CONFIG_KEY,
)
from nameko.exceptions import IncorrectSignature, RemoteError, RpcTimeout, UnknownService, deserialize

from chassis import (
    json_text,
    remote_errors,  # noqa: F401 - business errors arrive as themselves
)
from chassis.errors import ServiceError, from_remote
from chassis.scope import CONTEXT_KEY as SCOPE_KEY
from chassis.scope import Scope

log = logging.getLogger(__name__)

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
# A request lives only as long as someone can hear its answer: the reply goes to this connection's
# direct reply-to, which a broker restart ends, so a request kept on disk through the restart would run
# with nobody waiting (a payment after its caller was told the service was unavailable). Transient, it
# costs the broker no disk write either.
TRANSIENT = 1


class ServiceUnavailable(Exception):
    """The broker or the service cannot be reached (503)."""

    def __init__(self, message: str, service: str | None = None):
        super().__init__(message)
        self.service = service  # None when the broker itself is out of reach


class ServiceTimeout(ServiceUnavailable):
    """The service did not answer within the timeout (504)."""


class ServiceCrashed(Exception):
    """The service raised an unexpected error (502)."""


class ContractViolation(Exception):
    """The call did not match the service's signature, so nameko refused it before any handler ran:
    a bug in the caller or its stub, not the service's failure (500)."""


BROKER_ERRORS = (OSError, OperationalError, amqp.exceptions.AMQPError)


def _body_of(reply: amqp.Message, accept: set[str]) -> dict:
    """A reply's body. JSON without kombu's typed values (`{"__type__": "datetime", ...}`) is read by
    json_text in about half the time kombu's reader takes, which calls back into Python for every
    object in it; anything else is read as kombu reads it."""
    content_type, body = reply.properties.get("content_type"), reply.body  # py-amqp decodes it to text
    if content_type == "application/json" and content_type in accept:
        if (b'"__type__"' if isinstance(body, bytes) else '"__type__"') not in body:
            return json_text.loads(body)
    return kombu.serialization.loads(
        body, content_type, reply.properties.get("content_encoding", "utf-8"), accept=accept
    )


class RpcClient:
    """One broker connection and channel making nameko RPC calls, by one thread at a time.

    `call` raises nameko's own exceptions (RpcTimeout, UnknownService, RemoteError or a registered
    business error) and the broker's (BROKER_ERRORS); RpcPool maps them for the gateway.
    """

    def __init__(self, config: dict, timeout: float):
        self.timeout = timeout
        self.exchange = config.get(RPC_EXCHANGE_CONFIG_KEY, "nameko-rpc")
        self.serializer = config.get(SERIALIZER_CONFIG_KEY, DEFAULT_SERIALIZER)
        self._accept = {kombu.serialization.registry.name_to_type[self.serializer]}
        self._connection = kombu.Connection(
            config[AMQP_URI_CONFIG_KEY],
            ssl=config.get(AMQP_SSL_CONFIG_KEY),
            login_method=config.get(LOGIN_METHOD_CONFIG_KEY),
            connect_timeout=min(timeout, 5),
        )
        self._waiting_for: str | None = None
        self._reply: amqp.Message | None = None
        self._returned = False
        try:
            self._connection.ensure_connection(max_retries=0)  # one try: a broker that is down is a 503 now
            self._amqp = self._connection.connection
            self._channel = self._amqp.channel()
            # what every nameko service declares; declared here too, so a call to a broker no service
            # has used yet is an unknown service rather than a channel error
            self._channel.exchange_declare(self.exchange, "topic", durable=True, auto_delete=False)
            self._channel.basic_consume(DIRECT_REPLY_TO, no_ack=True, callback=self._on_reply)
            self._channel.events["basic_return"].add(self._on_return)
        except BaseException:
            self.close()
            raise

    def call(self, service: str, method: str, args: tuple, kwargs: dict, context: dict | None = None):
        correlation_id = uuid.uuid4().hex
        content_type, encoding, body = json_text.message_body({"args": args, "kwargs": kwargs}, self.serializer)
        headers = {f"{HEADER_PREFIX}.{key}": value for key, value in (context or {}).items() if value is not None}
        headers[f"{HEADER_PREFIX}.call_id_stack"] = [f"gateway.{service}.{method}.{correlation_id}"]
        message = amqp.Message(
            body,
            content_type=content_type,
            content_encoding=encoding,
            correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO,
            delivery_mode=TRANSIENT,
            application_headers=headers,
        )
        self._waiting_for, self._reply, self._returned = correlation_id, None, False
        try:
            self._channel.basic_publish(
                message, exchange=self.exchange, routing_key=f"{service}.{method}", mandatory=True
            )
            reply = self._wait(service)
        finally:
            self._waiting_for = None
        answer = _body_of(reply, self._accept)
        if answer.get("error"):
            raise deserialize(answer["error"])
        return answer.get("result")

    def _wait(self, service: str) -> amqp.Message:
        deadline = time.monotonic() + self.timeout
        while self._reply is None:
            if self._returned:
                raise UnknownService(service)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcTimeout(self.timeout)
            try:
                self._amqp.drain_events(timeout=remaining)
            except socket.timeout:
                raise RpcTimeout(self.timeout) from None
        reply, self._reply = self._reply, None
        return reply

    def _on_reply(self, message: amqp.Message) -> None:
        if self._waiting_for is not None and message.properties.get("correlation_id") == self._waiting_for:
            self._reply = message
        else:  # an answer to nobody (cannot happen on a client that never timed out): dropped
            log.debug("reply to an unknown call dropped")

    def _on_return(self, exc, exchange, routing_key, message) -> None:
        if message.properties.get("correlation_id") == self._waiting_for:
            self._returned = True  # no queue is bound for `<service>.*`: the service never ran here

    def usable(self) -> bool:
        """Open, and nothing unread on the socket. Between calls nothing should arrive; something
        readable is the broker closing the connection (or EOF after a restart)."""
        try:
            if not self._channel.is_open:
                return False
            readable, _, _ = select.select([self._amqp.sock], [], [], 0)
        except (OSError, ValueError, AttributeError):
            return False
        return not readable

    def close(self) -> None:
        try:
            self._connection.collect()  # drop the socket: no close handshake with a broker that may be gone
        except Exception:  # noqa: BLE001 - it is being discarded anyway
            pass


class RpcPool:
    def __init__(self, config: dict, timeout: float, size: int = 8):
        self.config = config
        self.timeout = timeout
        self.size = size
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()

    def _new_client(self) -> RpcClient:
        return RpcClient(self.config, self.timeout)

    def _checkout(self) -> RpcClient:
        while True:
            try:
                client = self._idle.get_nowait()
            except queue.Empty:
                break
            if client.usable():
                return client
            self._forget(client)  # the broker closed it while it was idle (a restart): make a new one
        with self._lock:
            may_create = self._created < self.size
            if may_create:
                self._created += 1
        if not may_create:
            try:
                return self._idle.get(timeout=self.timeout)
            except queue.Empty:
                raise ServiceTimeout("all RPC connections are busy") from None
        try:
            return self._new_client()
        except Exception as exc:
            with self._lock:
                self._created -= 1
            raise ServiceUnavailable(f"message broker unreachable: {exc}") from exc

    def _forget(self, client: RpcClient) -> None:
        with self._lock:
            self._created -= 1
        client.close()

    @contextmanager
    def _client(self):
        client = self._checkout()
        healthy = False
        try:
            yield client
            healthy = True
        except (RemoteError, ServiceError, UnknownService, IncorrectSignature):
            healthy = True  # the broker or the service answered; the connection is fine
            raise
        finally:
            if healthy:
                self._idle.put(client)
            else:
                self._forget(client)

    def call(
        self, service: str, method: str, *args, request_id: str | None = None, scope: Scope | None = None, **kwargs
    ):
        """`scope`: the signed-in client (portal) or the API key's workspace (admin API); None when the
        caller is not known yet (sign-in, webhooks, health)."""
        # nameko context data, sent as `nameko.*` headers: the services log this request id, and their
        # database enforces the caller's scope (row-level security, chassis/scope.py).
        context: dict[str, object] = {"request_id": request_id}
        if scope is not None:
            context[SCOPE_KEY] = scope.to_context()
        try:
            with self._client() as client:
                return client.call(service, method, args, kwargs, context)
        except RemoteError as exc:
            mapped = from_remote(exc.exc_type, exc.value)
            if mapped is not None:
                raise mapped from None
            log.error("service error", extra={"service": service, "method": method, "error": str(exc)})
            raise ServiceCrashed(f"{service}.{method} failed") from None
        except IncorrectSignature as exc:  # nameko's own check, before the handler
            log.error("contract bug: call refused", extra={"service": service, "method": method, "error": str(exc)})
            raise ContractViolation(f"{service}.{method}: {exc}") from None
        except RpcTimeout:
            raise ServiceTimeout(f"{service} did not answer within {self.timeout:g}s", service) from None
        except UnknownService:
            raise ServiceUnavailable(f"{service} is not running", service) from None
        except BROKER_ERRORS as exc:
            raise ServiceUnavailable(f"message broker unreachable: {exc}") from None

"""The outbox relay's publisher: a batch of events sent on one connection, confirmed by the broker once.

The relay (chassis/events.py) marks outbox rows published only after the broker confirmed their
messages. nameko's EventDispatcher confirms each message before it sends the next, through kombu's
producer pool and retry wrappers: a broker round trip and about half a millisecond of the service's
CPU per event (billing publishes three per card payment). `ConfirmedPublisher` keeps the guarantee
and the messages, and pays the round trip once per batch:

- one long-lived connection per process, its channel in confirm mode;
- every message of the batch sent, then one wait until the broker has confirmed them all (RabbitMQ
  confirms several at once with `multiple`);
- a nack, or a confirm that does not come within `timeout`, raises Unconfirmed; a connection lost
  on the way sends the batch once more on a new one, then raises. The relay's transaction then leaves
  every row of the batch unmarked and its next run sends them again (at least once; consumers drop a
  repeat by event id, as they do after any relay crash).

The messages are those nameko publishes: the service's events exchange (declared on every new
connection, as nameko declares it), the event type as routing key, the body in the container's
serializer, nameko's context headers, persistent delivery.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import amqp
import kombu

from chassis.fast_rpc import BrokerLink
from chassis.json_text import message_body

PERSISTENT = 2


class Unconfirmed(Exception):
    """The broker refused a message of the batch (a nack) or did not confirm it in time."""


@dataclass(frozen=True)
class Outgoing:
    """One event to publish: its type (the routing key), the event itself and the message's headers."""

    event_type: str
    event: dict[str, Any]
    headers: dict[str, Any]


class ConfirmedPublisher(BrokerLink):
    def __init__(
        self,
        amqp_uri: str,
        exchange: kombu.Exchange,
        serializer: str = "json",
        ssl: object = None,
        login_method: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(amqp_uri, ssl, login_method)
        self.exchange = exchange
        self.serializer = serializer
        self.timeout = timeout
        self._next_tag = 1  # the delivery tag the broker gives the channel's next message
        self._unconfirmed: set[int] = set()
        self._refused = False

    def publish_all(self, batch: Sequence[Outgoing]) -> None:
        """Send every event of the batch and return once the broker confirmed them all; raises
        Unconfirmed or one of BROKER_ERRORS otherwise (a lost connection is replaced and the batch
        sent once more first)."""
        if not batch:
            return
        messages = [(outgoing.event_type, self._message(outgoing)) for outgoing in batch]

        def send() -> None:
            try:
                self._send_and_confirm(messages)
            except BaseException:
                self._close()  # the tags still awaited would be mistaken for the next batch's
                raise

        self._sent_once_more_if_lost(send, "event")

    def _message(self, outgoing: Outgoing) -> amqp.Message:
        content_type, content_encoding, body = message_body(outgoing.event, self.serializer)
        return amqp.Message(
            body,
            content_type=content_type,
            content_encoding=content_encoding,
            application_headers=outgoing.headers,
            delivery_mode=PERSISTENT,
        )

    def _send_and_confirm(self, messages: list[tuple[str, amqp.Message]]) -> None:
        assert self._connection is not None  # publish_all made sure of it
        for routing_key, message in messages:
            # awaited before it is sent: py-amqp reads what the broker sent so far (confirms included)
            # while it publishes, so a confirm can come before the batch is all out
            self._unconfirmed.add(self._next_tag)
            self._next_tag += 1
            self._channel.basic_publish(message, exchange=self.exchange.name, routing_key=routing_key)
        deadline = time.monotonic() + self.timeout
        while self._unconfirmed and not self._refused:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                self._connection.connection.drain_events(timeout=remaining)
            except TimeoutError:  # socket.timeout: the broker is slow, not gone; sending again would not help
                raise Unconfirmed(f"{len(self._unconfirmed)} of {len(messages)} events not confirmed in time") from None
        if self._refused:
            raise Unconfirmed("the broker refused an event of the batch (nack)")

    def _opened(self, channel: Any) -> None:
        channel.confirm_select()
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        self._next_tag, self._unconfirmed, self._refused = 1, set(), False
        if not self.exchange.no_declare:
            channel.exchange_declare(
                exchange=self.exchange.name,
                type=self.exchange.type,
                durable=self.exchange.durable,
                auto_delete=self.exchange.auto_delete,
            )

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._unconfirmed = {tag for tag in self._unconfirmed if tag > delivery_tag}
        else:
            self._unconfirmed.discard(delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._refused = True

"""The raw AMQP baseline: an echo server and a client on py-amqp, no nameko, no kombu messaging.

The server consumes a queue and answers each request on its reply-to address through the default
exchange, then acks it (as a nameko service does); the client publishes to that queue and waits for
the answer on RabbitMQ's direct reply-to, matched by correlation id. One round trip is the least any
request/reply over this broker can cost: the floor the nameko RPC benchmark is measured against.

Server: `python -m bench.raw_echo AMQP_URI QUEUE` (prints "ready" once consuming).
"""

from __future__ import annotations

import json
import sys
import uuid
from urllib.parse import unquote, urlparse

import amqp

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


def connect(amqp_uri: str) -> amqp.Connection:
    url = urlparse(amqp_uri)
    connection = amqp.Connection(
        f"{url.hostname or 'localhost'}:{url.port or 5672}",
        userid=url.username or "guest",
        password=url.password or "guest",
        virtual_host=unquote(url.path[1:]) or "/",
    )
    connection.connect()
    return connection


def serve(amqp_uri: str, queue: str) -> None:
    connection = connect(amqp_uri)
    channel = connection.channel()
    channel.queue_declare(queue, durable=False, auto_delete=True)
    channel.basic_qos(0, 10, False)

    def answer(message: amqp.Message) -> None:
        channel.basic_publish(
            amqp.Message(
                message.body,
                content_type=message.properties.get("content_type"),
                correlation_id=message.properties.get("correlation_id"),
            ),
            exchange="",
            routing_key=message.properties["reply_to"],
        )
        channel.basic_ack(message.delivery_tag)

    channel.basic_consume(queue, callback=answer)
    print("ready", flush=True)
    while True:
        connection.drain_events()


class RawClient:
    """One connection; `call()` sends a JSON body like nameko's and returns the echoed one."""

    def __init__(self, amqp_uri: str, queue: str, timeout: float = 10):
        self.queue = queue
        self.timeout = timeout
        self.connection = connect(amqp_uri)
        self.channel = self.connection.channel()
        self.replies: dict[str, bytes] = {}
        self.channel.basic_consume(DIRECT_REPLY_TO, no_ack=True, callback=self._on_reply)

    def _on_reply(self, message: amqp.Message) -> None:
        self.replies[message.properties["correlation_id"]] = message.body

    def call(self, value="hello"):
        correlation_id = uuid.uuid4().hex
        body = json.dumps({"args": [value], "kwargs": {}})
        self.channel.basic_publish(
            amqp.Message(
                body, content_type="application/json", correlation_id=correlation_id, reply_to=DIRECT_REPLY_TO
            ),
            exchange="",
            routing_key=self.queue,
        )
        while correlation_id not in self.replies:
            self.connection.drain_events(timeout=self.timeout)
        return json.loads(self.replies.pop(correlation_id))["args"][0]

    def close(self) -> None:
        self.connection.collect()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])

"""The outbox relay's publisher (chassis/confirmed_publish.py) against the real broker: a batch arrives
whole, in order and as nameko publishes events, once publish_all has returned; a message the broker
refuses fails the batch; a connection found dead is replaced before the batch goes out."""

from __future__ import annotations

import socket
import uuid

import kombu
import pytest

from chassis.confirmed_publish import ConfirmedPublisher, Outgoing, Unconfirmed

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(amqp_uri):
    """A topic exchange of the test's own, bound to a queue (`arguments` for the queue) the test reads."""
    made = []

    def make(**arguments):
        exchange = kombu.Exchange(f"test-confirm-{uuid.uuid4().hex[:8]}", type="topic", durable=True)
        queue = kombu.Queue(
            f"test-confirm-{uuid.uuid4().hex[:8]}", exchange, routing_key="#", durable=True, queue_arguments=arguments
        )
        with kombu.Connection(amqp_uri) as conn:
            queue(conn.channel()).declare()
        made.append((exchange, queue))
        return exchange, queue

    yield make
    with kombu.Connection(amqp_uri) as conn:
        for exchange, queue in made:
            queue(conn.channel()).delete()
            exchange(conn.channel()).delete()


def drain(amqp_uri: str, queue: kombu.Queue) -> list:
    """Every message waiting in the queue, in order (basic.get: none are left unacked)."""
    got = []
    with kombu.Connection(amqp_uri) as conn:
        bound = queue(conn.channel())
        while (message := bound.get(accept=["json"])) is not None:
            message.ack()
            got.append(message)
    return got


def batch(n: int, first: int = 0) -> list[Outgoing]:
    return [
        Outgoing("invoice.paid", {"id": f"e{i}", "data": {"n": i}}, {"nameko.request_id": f"rid-{i}"})
        for i in range(first, first + n)
    ]


def test_a_batch_is_in_the_queue_in_order_and_as_nameko_publishes_it_once_confirmed(amqp_uri, broker):
    exchange, queue = broker()
    publisher = ConfirmedPublisher(amqp_uri, exchange)
    try:
        publisher.publish_all(batch(250))
        got = drain(amqp_uri, queue)  # confirmed: routed to the queue before publish_all returned
    finally:
        publisher.close()
    assert [m.payload["id"] for m in got] == [f"e{i}" for i in range(250)]
    first = got[0]
    assert first.payload == {"id": "e0", "data": {"n": 0}}
    assert first.delivery_info["routing_key"] == "invoice.paid"
    assert first.delivery_info["exchange"] == exchange.name
    assert first.headers == {"nameko.request_id": "rid-0"}
    assert first.content_type == "application/json"
    assert first.properties["delivery_mode"] == 2  # persistent: kept across a broker restart


def test_a_refused_message_fails_the_batch_and_the_next_batch_goes_through(amqp_uri, broker):
    exchange, queue = broker(**{"x-max-length": 2, "x-overflow": "reject-publish"})
    publisher = ConfirmedPublisher(amqp_uri, exchange)
    try:
        with pytest.raises(Unconfirmed):
            publisher.publish_all(batch(3))  # the third does not fit: the broker nacks it
        assert [m.payload["id"] for m in drain(amqp_uri, queue)] == ["e0", "e1"]
        publisher.publish_all(batch(2, first=3))
        assert [m.payload["id"] for m in drain(amqp_uri, queue)] == ["e3", "e4"]
    finally:
        publisher.close()


def test_a_connection_found_dead_is_replaced_before_the_batch_goes_out(amqp_uri, broker):
    exchange, queue = broker()
    publisher = ConfirmedPublisher(amqp_uri, exchange)
    try:
        publisher.publish_all(batch(1))
        publisher._connection.connection.sock.shutdown(socket.SHUT_RDWR)  # as a broker restart leaves it
        publisher.publish_all(batch(2, first=1))
        assert [m.payload["id"] for m in drain(amqp_uri, queue)] == ["e0", "e1", "e2"]
    finally:
        publisher.close()


def test_an_empty_batch_opens_no_connection(amqp_uri, broker):
    exchange, _ = broker()
    publisher = ConfirmedPublisher(amqp_uri, exchange)
    publisher.publish_all([])
    assert publisher._connection is None

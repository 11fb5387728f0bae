"""The outbox relay's publisher (chassis/confirmed_publish.py) without a broker: which messages it still
waits for, whatever order and grouping the broker's confirms come in. The broker itself is in
tests/integration/test_confirmed_publish.py."""

from __future__ import annotations

from types import SimpleNamespace

import kombu
import pytest

from chassis.confirmed_publish import ConfirmedPublisher, Outgoing, Unconfirmed


class Channel:
    """A channel in confirm mode whose broker confirms (or refuses) each message as `answer` says, at
    once: py-amqp reads those confirms while it is still publishing the rest of the batch."""

    def __init__(self, answer):
        self.answer = answer  # tag -> ("ack" | "nack" | None, multiple)
        self.events = {"basic_ack": set(), "basic_nack": set()}
        self.is_open = True
        self.sent = []

    def confirm_select(self):
        pass

    def exchange_declare(self, **kwargs):
        pass

    def basic_publish(self, message, exchange, routing_key):
        self.sent.append(routing_key)
        tag = len(self.sent)
        kind, multiple = self.answer(tag)
        if kind is not None:
            for callback in self.events[f"basic_{kind}"]:
                callback(tag, multiple)


def publisher(answer, drained=()):
    """A publisher on `Channel(answer)`; each read of the connection delivers the next of `drained`,
    then times out. A reconnection gets a channel whose broker confirms everything at once."""
    made = ConfirmedPublisher("amqp://unused/", kombu.Exchange("unit.events", type="topic"), timeout=0.2)
    later = list(drained)

    def connect(channel):
        def drain_events(timeout):
            if not later:
                raise TimeoutError("timed out")  # as py-amqp's read does
            tag, multiple = later.pop(0)
            for callback in channel.events["basic_ack"]:
                callback(tag, multiple)

        made._connection = SimpleNamespace(connection=SimpleNamespace(drain_events=drain_events))
        made._channel = channel
        made._opened(channel)
        return channel

    made._usable = lambda: made._channel is not None
    made._reconnect = lambda: made.channels.append(connect(Channel(lambda tag: ("ack", False))))
    made.channels = [connect(Channel(answer))]
    return made, made.channels[0]


def batch(n):
    return [Outgoing("thing.happened", {"id": f"e{i}"}, {}) for i in range(n)]


def test_confirms_that_come_while_the_batch_is_still_going_out_count():
    made, channel = publisher(lambda tag: ("ack", False))
    made.publish_all(batch(5))
    assert channel.sent == ["thing.happened"] * 5
    assert len(made.channels) == 1  # confirmed on the first try, not sent again


def test_confirms_that_come_later_and_together_count():
    made, _ = publisher(lambda tag: (None, False), drained=[(2, True), (4, False), (3, False)])
    made.publish_all(batch(4))
    assert len(made.channels) == 1


def test_the_next_batch_awaits_only_its_own_messages():
    made, _ = publisher(lambda tag: ("ack", False) if tag <= 3 else (None, False), drained=[(5, True)])
    made.publish_all(batch(3))
    made.publish_all(batch(2))
    assert len(made.channels) == 1


def test_a_confirm_that_does_not_come_fails_the_batch_without_sending_it_again():
    made, first = publisher(lambda tag: ("ack", False) if tag != 2 else (None, False))
    with pytest.raises(Unconfirmed):
        made.publish_all(batch(3))
    assert len(first.sent) == 3 and len(made.channels) == 1  # a slow broker is not sent the batch twice
    assert made._channel is None  # the next batch starts on a new connection, its tags counted anew


def test_a_connection_lost_while_waiting_sends_the_batch_again_on_a_new_connection():
    made, first = publisher(lambda tag: (None, False))

    def lost(timeout):
        raise ConnectionResetError("broker gone")

    made._connection.connection.drain_events = lost
    made.publish_all(batch(2))
    [_, second] = made.channels
    assert len(first.sent) == 2 and len(second.sent) == 2  # at least once: consumers drop the repeats


def test_an_unexpected_error_drops_the_connection_so_no_tag_is_awaited_twice():
    made, first = publisher(lambda tag: ("ack", False))

    def broken(message, exchange, routing_key):
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "a header that cannot be sent")

    first.basic_publish = broken
    with pytest.raises(UnicodeEncodeError):
        made.publish_all(batch(1))
    assert made._channel is None
    made.publish_all(batch(2))  # a new connection, counting from its first tag
    assert len(made.channels) == 2


def test_a_refused_message_fails_the_batch():
    made, _ = publisher(lambda tag: ("nack", False) if tag == 2 else ("ack", False))
    with pytest.raises(Unconfirmed):
        made.publish_all(batch(3))
    assert made._channel is None  # the next batch starts on a new connection, its tags counted anew

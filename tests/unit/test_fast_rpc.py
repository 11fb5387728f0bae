"""How the services answer RPCs (chassis/fast_rpc.py), without a broker: the reply's address and body,
and nameko's argument check."""

import json
from types import SimpleNamespace

import pytest
from kombu import Exchange
from nameko.exceptions import IncorrectSignature

from chassis import fast_rpc


class RecordingPublisher:
    def __init__(self):
        self.sent = []

    def publish(self, body, content_type, content_encoding, exchange, routing_key, correlation_id):
        self.sent.append(
            {
                "body": body,
                "content_type": content_type,
                "exchange": exchange,
                "routing_key": routing_key,
                "correlation_id": correlation_id,
            }
        )


@pytest.fixture
def publisher(monkeypatch):
    recording = RecordingPublisher()
    monkeypatch.setattr(fast_rpc, "reply_publisher", lambda *args: recording)
    return recording


def responder(reply_to: str) -> fast_rpc.FastResponder:
    message = SimpleNamespace(
        properties={"content_type": "application/json", "reply_to": reply_to, "correlation_id": "c1"}
    )
    return fast_rpc.FastResponder("amqp://broker/", Exchange("nameko-rpc", type="topic"), "json", message)


def test_a_direct_reply_to_answer_goes_to_the_default_exchange(publisher):
    result, exc_info = responder("amq.rabbitmq.reply-to.g1h2AA==").send_response({"ok": True}, None)
    assert (result, exc_info) == ({"ok": True}, None)
    [sent] = publisher.sent
    assert sent["exchange"] == "" and sent["routing_key"] == "amq.rabbitmq.reply-to.g1h2AA=="
    assert sent["correlation_id"] == "c1" and sent["content_type"] == "application/json"
    assert json.loads(sent["body"]) == {"result": {"ok": True}, "error": None}


def test_a_classic_reply_queue_is_still_reached_through_the_rpc_exchange(publisher):
    responder("9f3c-routing-key").send_response(1, None)
    assert publisher.sent[0]["exchange"] == "nameko-rpc" and publisher.sent[0]["routing_key"] == "9f3c-routing-key"


def test_an_error_and_an_unserializable_result_are_answered_as_nameko_does(publisher):
    try:
        raise ValueError("boom")
    except ValueError as exc:
        responder("q").send_response(None, (ValueError, exc, exc.__traceback__))
    error = json.loads(publisher.sent[0]["body"])["error"]
    assert (error["exc_type"], error["value"]) == ("ValueError", "boom")
    result, exc_info = responder("q").send_response(object(), None)
    assert result is None and exc_info[0].__name__ == "EncodeError"  # kombu's, as in nameko
    assert json.loads(publisher.sent[1]["body"])["error"]["exc_type"] == "UnserializableValueError"


def test_a_reply_the_broker_cannot_take_is_dropped_not_raised(monkeypatch):
    class Unreachable:
        def publish(self, *args):
            raise ConnectionRefusedError(111, "ECONNREFUSED")

    monkeypatch.setattr(fast_rpc, "reply_publisher", lambda *args: Unreachable())
    # raising would kill the service's container; the caller times out instead
    assert responder("amq.rabbitmq.reply-to.x").send_response("answer", None) == ("answer", None)


class Service:
    def method(self, a, b=2, *, c=None):
        return a


def test_the_argument_check_accepts_what_the_method_accepts_and_refuses_the_rest():
    entrypoint = SimpleNamespace(container=SimpleNamespace(service_cls=Service), method_name="method")
    fast_rpc.check_signature(entrypoint, (1,), {})
    fast_rpc.check_signature(entrypoint, (1, 2), {"c": 3})
    with pytest.raises(IncorrectSignature):
        fast_rpc.check_signature(entrypoint, (), {})
    with pytest.raises(IncorrectSignature):
        fast_rpc.check_signature(entrypoint, (1,), {"d": 4})

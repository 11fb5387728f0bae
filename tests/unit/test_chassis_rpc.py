"""A call between services waits for its answer until its timeout, and no longer than STOPPING_WAIT
once its own service has begun to stop."""

from __future__ import annotations

import time

import eventlet
import eventlet.event
import pytest
from nameko.rpc import RpcReply

from chassis.errors import Unavailable
from chassis.rpc import SERVICE_STOPPING, STOPPING_WAIT, _TimedMethod


class _Peer:
    """A method of another service, as a timed call uses nameko's proxy of it: the reply events it
    keeps by correlation id, and the reply of each call, which comes when the test sends it."""

    def __init__(self) -> None:
        self.reply_listener = self  # nameko's ReplyListener keeps the pending replies
        self._reply_events: dict[str, eventlet.event.Event] = {}

    def call_async(self, *args, **kwargs) -> RpcReply:
        event = eventlet.event.Event()
        self._reply_events[f"call-{len(self._reply_events)}"] = event
        return RpcReply(event)

    def answer(self, result) -> None:
        for event in self._reply_events.values():
            event.send({"result": result, "error": None})


@pytest.fixture
def peer():
    yield _Peer()
    SERVICE_STOPPING.clear()


def test_an_answer_is_taken_however_many_times_the_call_looked_at_the_stop_meanwhile(peer):
    eventlet.spawn_after(1.2, peer.answer, "paid")
    assert _TimedMethod(peer, "billing", "get_invoice", timeout=30)() == "paid"


def test_an_unanswered_call_gives_up_at_its_timeout_and_forgets_the_reply(peer):
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"billing.get_invoice did not answer within 0.7s"):
        _TimedMethod(peer, "billing", "get_invoice", timeout=0.7)()
    assert 0.7 <= time.monotonic() - started < 0.95  # at its timeout, not at the next look at the stop
    assert peer._reply_events == {}  # a late answer is dropped, not kept forever


def test_once_its_service_begins_to_stop_a_waiting_call_gives_up_stopping_wait_later(peer):
    """Its peer may be stopping too: the call's worker hands its event back instead of holding the
    stop up for the full timeout."""
    eventlet.spawn_after(0.3, SERVICE_STOPPING.set)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="this service is stopping"):
        _TimedMethod(peer, "documents", "render", timeout=30)()
    assert 0.3 + STOPPING_WAIT - 0.05 <= time.monotonic() - started < 0.3 + STOPPING_WAIT + 0.5  # not 30 s
    assert peer._reply_events == {}


def test_an_answer_that_comes_within_the_stopping_wait_is_taken(peer):
    eventlet.spawn_after(0.1, SERVICE_STOPPING.set)
    eventlet.spawn_after(0.1 + STOPPING_WAIT / 2, peer.answer, "rendered")
    assert _TimedMethod(peer, "documents", "render", timeout=30)() == "rendered"


def test_a_call_made_after_the_stop_began_still_waits_the_stopping_wait(peer):
    SERVICE_STOPPING.set()
    eventlet.sleep(0.2)
    eventlet.spawn_after(STOPPING_WAIT / 2, peer.answer, "sent")
    assert _TimedMethod(peer, "billing", "get_client", timeout=30)() == "sent"

"""Group commit for an event consumer: events that arrive while a transaction of the same kind is
running are handled together in the next one.

A burst of one client's payments (twenty invoices paid at once, Stripe catching up after an outage)
otherwise costs a transaction each, and each one locks the same client's rows, refreshes the same
summary and commits in turn while the rest wait for those locks. Together they pay for the
transaction, the summary and the commit once. Nothing waits to fill a batch: an event that finds no
transaction of its kind running is handled at once, in a transaction of its own; only those that
would have queued behind it are gathered, into the next one.

Each event's worker still holds its own message and acknowledges it once its event's transaction
has committed, so a crash loses nothing (the broker delivers every message again, and the inbox
makes each count once). If a batch fails, every event in it is handled alone, with the consumer's
own retries and dead-letter table, so one bad event costs the others nothing but a second try.

Green threads only (nameko's workers): the bookkeeping below never yields between a check and the
change it guards."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import eventlet.event

from chassis.logs import current_request_id

log = logging.getLogger(__name__)

_LEAD = object()  # sent to the first waiting event when the transaction before it ends


@dataclass
class Waiting:
    """One worker's event, with the request id its records carry."""

    event: dict[str, Any]
    request_id: str | None = field(default_factory=current_request_id)
    answer: eventlet.event.Event = field(default_factory=eventlet.event.Event, repr=False)


class GroupCommit:
    """Batches by key: the consumer, the database, the workspace (one scope a transaction) and the
    consumer's own grouping (a client: other clients' events run beside it, as they did alone)."""

    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[Waiting]] = {}
        self._running: set[Hashable] = set()

    def handle(self, key: Hashable, event: dict[str, Any], run: Callable[[list[Waiting]], Sequence[Any]]) -> Any:
        """`event`'s answer from `run(batch)` (an event consumer's: whether it was handled now, False for
        a duplicate), once it has committed with those gathered with it; None when the caller must
        handle it alone (its batch of several failed). An event that came alone and failed raises its
        own error."""
        me = Waiting(event)
        self._waiting.setdefault(key, []).append(me)
        if key in self._running:
            try:
                answer = me.answer.wait()
            except BaseException:  # its worker was killed while it waited
                self._withdraw(key, me)
                raise
            if answer is not _LEAD:
                return answer
        self._running.add(key)
        batch = self._waiting.pop(key)  # this event first: the list was empty when it was added or led
        answers: list[Any] = [None] * len(batch)
        try:
            answers = list(run(batch))
        except Exception as exc:
            if len(batch) == 1:
                raise  # its own failure: the caller's retries take it from here
            log.warning(
                "events handled alone after their batch failed", extra={"events": len(batch), "error": repr(exc)}
            )
        finally:
            self._hand_over(key)
            for waiting, answer in zip(batch[1:], answers[1:]):
                waiting.answer.send(answer)
        return answers[0]

    def _hand_over(self, key: Hashable) -> None:
        """The key's transaction is over: the first that came meanwhile leads the next, with all of
        them; if none came, the key is free."""
        following = self._waiting.get(key)
        if following:
            following[0].answer.send(_LEAD)
        else:
            self._waiting.pop(key, None)
            self._running.discard(key)

    def _withdraw(self, key: Hashable, me: Waiting) -> None:
        """A waiting worker is gone: out of the queue, and the lead passed on if it had been given it.
        One already taken into a batch is its leader's to answer, to no one."""
        waiting = self._waiting.get(key, [])
        if me in waiting:
            waiting.remove(me)
            if me.answer.ready():  # it was told to lead: the next one does
                self._hand_over(key)

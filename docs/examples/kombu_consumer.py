#!/usr/bin/env python3
"""Subscribe to the billing portal's events from another system, with plain kombu.

    pip install kombu
    python kombu_consumer.py --amqp-uri amqp://guest:guest@localhost:5672/ \
        --queue crm.billing-events --bind billing.events:invoice.* --bind payments.events:payment.*

What it shows (see docs/events.asyncapi.yaml for every event and its fields):

- Your system declares its OWN durable queue and binds it to the portal's topic exchanges
  (`<service>.events`, routing key = event type; `invoice.*`, `payment.#`, `#` patterns work). The
  queue keeps collecting events while this program is stopped, and survives a broker restart, so
  nothing is missed between runs. RabbitMQ drops events that reach an exchange with no queue bound,
  so run this once before you rely on it, and do not delete the queue while you still want events.
- Delivery is AT LEAST ONCE: the portal may publish an event again after a crash, and the broker
  redelivers a message that was not acked. So each event is handled at most once by remembering its
  `id` (here in a small SQLite table, committed together with the handling; in your system, in the
  same database transaction as whatever you do with the event), and acked only after that.
- A lost connection (broker restart, network) is re-established and consuming resumes, with the
  queue and bindings declared again; kombu's ConsumerMixin does the retrying.

No nameko and nothing of the portal's code: any AMQP 0-9-1 client can do the same.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sqlite3
import sys
import time
from datetime import datetime, timedelta, timezone

from kombu import Connection, Exchange, Queue, binding
from kombu.mixins import ConsumerMixin

log = logging.getLogger("kombu_consumer")

DEFAULT_BINDINGS = ["billing.events:invoice.*", "payments.events:payment.*"]
ENVELOPE = ("id", "type", "version", "occurred_at", "workspace_id", "data")
FORGET_AFTER = timedelta(days=30)  # far longer than any redelivery takes


def event_exchange(name: str) -> Exchange:
    """The portal's exchanges exactly as its services (nameko) declare them, so declaring them here
    is a no-op if they exist and creates them if this runs first: topic, durable, not auto-delete."""
    return Exchange(name, type="topic", durable=True, auto_delete=False)


def subscription_queue(name: str, bindings: list[tuple[str, str]]) -> Queue:
    """A durable, non-exclusive, non-auto-delete queue of our own, bound with each routing key.
    (For production, consider `queue_arguments={"x-dead-letter-exchange": ...}` so rejected messages
    are kept somewhere, and `"x-queue-type": "quorum"` on a RabbitMQ cluster.)"""
    return Queue(
        name,
        durable=True,
        exclusive=False,
        auto_delete=False,
        bindings=[binding(event_exchange(exchange), routing_key=key) for exchange, key in bindings],
    )


class SeenEvents:
    """Event ids already handled, so a redelivered event is acked without being handled twice."""

    def __init__(self, path: str):
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, type TEXT, seen_at TEXT)")
        cutoff = (datetime.now(timezone.utc) - FORGET_AFTER).isoformat()
        self.db.execute("DELETE FROM seen WHERE seen_at < ?", (cutoff,))

    def handle_once(self, event: dict, handle) -> bool:
        """Run `handle(event)` unless this id was handled before; the id is recorded in the same
        transaction, so a crash in between means "not handled" and the redelivery does it."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if self.db.execute("SELECT 1 FROM seen WHERE id = ?", (event["id"],)).fetchone():
                self.db.execute("ROLLBACK")
                return False
            self.db.execute(
                "INSERT INTO seen VALUES (?, ?, ?)",
                (event["id"], event["type"], datetime.now(timezone.utc).isoformat()),
            )
            handle(event)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
        return True


def describe(event: dict) -> str:
    """One line per event. Money is in minor units next to its currency."""
    data = event["data"]
    parts = [
        f"event {event['type']} v{event['version']} id={event['id']} workspace={event['workspace_id']}",
        f"at={event['occurred_at']}",
    ]
    details = []
    for key in ("number", "client_id", "invoice_id", "payment_id", "status"):
        if data.get(key) is not None:
            details.append(f"{key}={data[key]}")
    for key in ("amount", "total", "balance"):
        if isinstance(data.get(key), int) and data.get("currency"):
            details.append(f"{key}={data[key]} {data['currency']}")
    return " ".join(parts) + (" | " + " ".join(details) if details else "")


def print_event(event: dict) -> None:
    """Your integration goes here (update the CRM, post to accounting, ...)."""
    print(describe(event), flush=True)


class EventConsumer(ConsumerMixin):
    def __init__(
        self,
        connection: Connection,
        queue: Queue,
        seen: SeenEvents,
        handle=print_event,
        max_events: int = 0,
        prefetch: int = 10,
    ):
        self.connection = connection
        self.queue = queue
        self.seen = seen
        self.handle = handle
        self.max_events = max_events
        self.prefetch = prefetch
        self.handled = 0

    def get_consumers(self, Consumer, channel):
        # Manual acks (no_ack=False): a message is only gone once we say so.
        return [
            Consumer(
                queues=[self.queue],
                callbacks=[self.on_message],
                accept=["json"],
                prefetch_count=self.prefetch,
                no_ack=False,
            )
        ]

    def on_consume_ready(self, connection, channel, consumers, **kwargs):
        keys = ",".join(sorted(f"{b.exchange.name}:{b.routing_key}" for b in self.queue.bindings))
        print(f"ready queue={self.queue.name} bindings={keys}", flush=True)

    def on_connection_error(self, exc, interval):
        log.warning("broker unreachable (%s); retrying in %.0fs", exc, interval)

    def on_decode_error(self, message, exc):
        log.error("dropping a message that is not JSON: %r", exc)
        message.reject()  # not requeued: it would fail again forever (dead-lettered, if configured)

    def on_message(self, body, message):
        if self.should_stop:  # past --max-events: leave it in the queue for the next run
            message.requeue()
            return
        if not isinstance(body, dict) or any(key not in body for key in ENVELOPE):
            log.error("dropping a message that is not an event envelope: %.200r", body)
            message.reject()
            return
        try:
            fresh = self.seen.handle_once(body, self.handle)
        except Exception:  # noqa: BLE001 - our own bug or an outage downstream: try again later
            log.exception("handling %s %s failed; it stays in the queue", body["type"], body["id"])
            time.sleep(1)  # not a hot loop of redeliveries while the cause lasts
            message.requeue()
            return
        message.ack()  # only after handling (and recording the id) succeeded
        if not fresh:
            print(f"duplicate id={body['id']} type={body['type']} (already handled; acked)", flush=True)
            return
        self.handled += 1
        if self.max_events and self.handled >= self.max_events:
            print(f"stopping after {self.handled} events", flush=True)
            self.should_stop = True


def parse_bindings(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        exchange, sep, key = value.partition(":")
        if not sep or not exchange or not key:
            raise argparse.ArgumentTypeError(
                f"--bind takes exchange:routing_key, e.g. billing.events:invoice.*; got {value!r}"
            )
        pairs.append((exchange, key))
    return pairs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Consume the billing portal's events from a durable queue of your own."
    )
    parser.add_argument("--amqp-uri", default=os.environ.get("AMQP_URI", "amqp://guest:guest@localhost:5672/"))
    parser.add_argument("--queue", default="crm.billing-events", help="your queue's name (default %(default)s)")
    parser.add_argument(
        "--bind",
        action="append",
        metavar="EXCHANGE:KEY",
        help=f"bind the queue (repeatable; default {' '.join(DEFAULT_BINDINGS)})",
    )
    parser.add_argument(
        "--max-events", type=int, default=0, help="exit after handling N new events (0: run until stopped)"
    )
    parser.add_argument(
        "--seen-db",
        default=":memory:",
        help="SQLite file of handled event ids, to dedupe across restarts (default: this run only)",
    )
    parser.add_argument("--prefetch", type=int, default=10, help="unacked messages in flight (default %(default)s)")
    args = parser.parse_args(argv)
    try:
        bindings = parse_bindings(args.bind or DEFAULT_BINDINGS)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")

    connection = Connection(
        args.amqp_uri,
        heartbeat=20,
        transport_options={"client_properties": {"connection_name": f"kombu-consumer-example {args.queue}"}},
    )
    consumer = EventConsumer(
        connection,
        subscription_queue(args.queue, bindings),
        SeenEvents(args.seen_db),
        max_events=args.max_events,
        prefetch=args.prefetch,
    )

    def stop(*_):
        consumer.should_stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    consumer.run()
    connection.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())

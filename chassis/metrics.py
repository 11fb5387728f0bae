"""Prometheus metrics of the nameko services, in the process's default registry.

Each service process serves them at `GET /metrics` on its own HTTP address (chassis/nameko_ext.py,
`ServiceBase`). The gateway has its own (services/gateway/metrics.py). Every series carries the
service name, so one dashboard can sum or split replicas and services alike.
"""

from __future__ import annotations

import logging

import prometheus_client
import sqlalchemy as sa
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Every name here is a classic one, so the 0.0.4 text format, which every Prometheus reads, says it all.
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE

from chassis import events

log = logging.getLogger(__name__)

# No `*_created` series: they double the output and no query here uses them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

# RPCs answer in milliseconds, renders and slow peers take seconds.
LATENCY_BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RENDER_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

RPC_DURATION = Histogram(
    "portal_rpc_duration_seconds",
    "Time a service took to answer an RPC call, reply included.",
    ["service", "method", "outcome"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_HANDLED = Counter(
    "portal_events_handled",
    "Events a consumer finished with: processed, duplicate (seen before), dead_lettered, or handed_back "
    "(its service stopping).",
    ["service", "consumer", "outcome"],
)
EVENT_BATCH_SIZE = Histogram(
    "portal_event_batch_size",
    "Events a consumer that handles a burst together took into one transaction (1: an event alone).",
    ["service", "consumer"],
    buckets=(1, 2, 4, 8, 16, 32),
)
EVENT_RETRIES = Counter(
    "portal_event_retries",
    "Failed tries of an event handler that were retried after a backoff.",
    ["service", "consumer"],
)
DEAD_LETTERED = Counter(
    "portal_dead_letters", "Events parked in the dead_letters table by this process.", ["service", "consumer"]
)
# A gauge may not share the counter's family name `portal_dead_letters` in one exposition.
DEAD_LETTERS_PARKED = Gauge(
    "portal_dead_letters_parked", "Letters in the service's dead_letters table now (read at scrape time).", ["service"]
)
OUTBOX_PENDING = Gauge("portal_outbox_pending", "Outbox rows not yet published (read at scrape time).", ["service"])
OUTBOX_OLDEST = Gauge(
    "portal_outbox_oldest_seconds",
    "Age of the oldest unpublished outbox row; 0 when none (read at scrape time).",
    ["service"],
)
PDF_RENDER = Histogram(
    "portal_pdf_render_seconds",
    "Time to render one PDF that was not cached, waiting for a render process included.",
    ["kind"],
    buckets=RENDER_BUCKETS,
)
TIMER_JOBS = Counter(
    "portal_timer_jobs",
    "Runs of a timer's job (billing's sweep: recurring invoices, reminders), by outcome.",
    ["service", "job", "outcome"],
)
PAYMENTS = Counter(
    "portal_payments", "Payment outcomes, counted when payments publishes the outcome's event.", ["outcome"]
)

OK, REFUSED, ERROR = "ok", "refused", "error"


def outcome_of(exc: BaseException | None, expected: type[BaseException] | tuple[type[BaseException], ...] = ()) -> str:
    """ok; refused: an expected (business) error the caller is told about; error: anything else."""
    if exc is None:
        return OK
    return REFUSED if expected and isinstance(exc, expected) else ERROR


def refresh_database_gauges(service: str, engine: sa.Engine) -> None:
    """Outbox lag and parked letters from the service's database, just before a scrape. All replicas
    of a service share a database and so report the same values: aggregate them with max()."""
    pending, oldest = events.outbox_lag(engine)
    OUTBOX_PENDING.labels(service).set(pending)
    OUTBOX_OLDEST.labels(service).set(oldest)
    DEAD_LETTERS_PARKED.labels(service).set(events.count_dead_letters(engine))


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """(body, content type) of a scrape."""
    return generate_latest(registry), CONTENT_TYPE

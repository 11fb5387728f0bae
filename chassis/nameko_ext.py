"""nameko glue shared by the services: database dependency, request-id propagation, the outbox
relay timer, idempotent event handlers with bounded retries, a ping for health checks, and each
process's HTTP endpoint for metrics, liveness and readiness. Importing it patches nothing in nameko:
its patches are chassis/nameko_patches.py, applied by each service module."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import eventlet
import eventlet.event
import sqlalchemy as sa
from nameko.constants import AMQP_SSL_CONFIG_KEY, LOGIN_METHOD_CONFIG_KEY
from nameko.containers import WorkerContext
from nameko.events import EventDispatcher, EventHandler
from nameko.extensions import DependencyProvider
from nameko.messaging import QueueConsumer
from nameko.rpc import Rpc, rpc
from nameko.timer import Timer
from nameko.web.handlers import http

from chassis import db as dbmod
from chassis import (
    events,
    idempotency,
    metrics,
    remote_errors,  # noqa: F401 - business errors from peers arrive as themselves
    settings,
)
from chassis.clock import Clock, utcnow
from chassis.confirmed_publish import ConfirmedPublisher, Outgoing
from chassis.errors import EXPECTED, NotFound, ServiceError, Unavailable
from chassis.group_commit import GroupCommit, Waiting
from chassis.logs import request_context, request_id_var
from chassis.rpc import SERVICE_STOPPING
from chassis.scope import CALLER, EVENT, OWN, SYSTEM, SYSTEM_WIDE, Scope, acting_for, db_scope, runs_in
from chassis.scope import CONTEXT_KEY as SCOPE_KEY
from chassis.scope import from_context as scope_from_context
from chassis.scope import of_event as scope_of_event

if TYPE_CHECKING:
    from werkzeug.wrappers import Request

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
Event = dict[str, Any]
HttpAnswer = tuple[int, dict[str, str], str]


def entrypoint(decorator: object) -> Callable[[F], F]:
    """A nameko entrypoint decorator (`rpc`, `timer(...)`, `http(...)`, `event_handler(...)`), typed:
    nameko has no annotations, and each of them registers the method and returns it unchanged."""
    return cast("Callable[[F], F]", decorator)


class OutboxRelayTimer(Timer):
    """nameko's timer that also fires as soon as a commit of this process has recorded events
    (events.on_outbox_commit), so they go out at once and the interval is only the safety net: a
    publish that failed, rows another process wrote. As nameko's does, it starts a run only once the
    last one is done, so commits during a run make one more run, not one each; and a woken run starts
    at least `GAP` after the last one started: under a stream of commits it runs as often as the
    relay's timer used to, publishing batches as large (a run costs about as much CPU as a consumed
    event), while an event after a quiet spell goes out at once."""

    GAP = 0.2  # seconds

    def __init__(self, interval: float, **kwargs: Any) -> None:
        super().__init__(interval, **kwargs)
        self._stopping = False
        self._due = eventlet.event.Event()  # sent by a commit (or stop), reset as a run starts
        self._forget: Callable[[], None] | None = None

    def start(self) -> None:
        self._forget = events.on_outbox_commit(self._nudge)
        super().start()

    def stop(self) -> None:
        self._stop_listening()
        self._stopping = True
        self._nudge()
        self.gt.wait()

    def kill(self) -> None:
        self._stop_listening()
        super().kill()

    def _stop_listening(self) -> None:
        forget, self._forget = self._forget, None
        if forget is not None:
            forget()

    def _nudge(self) -> None:
        if not self._due.ready():  # else a run is already due: it will see these rows too
            self._due.send()

    def _run(self) -> None:
        started = 0.0
        while not self._stopping:
            with eventlet.Timeout(self.interval, False):
                self._due.wait()
            eventlet.sleep(max(started + self.GAP - time.monotonic(), 0))
            if self._due.ready():
                self._due.reset()
            if self._stopping:
                return
            started = time.monotonic()
            self.handle_timer_tick()
            self.worker_complete.wait()
            self.worker_complete.reset()


relay_timer = OutboxRelayTimer.decorator


class ClockProvider(DependencyProvider):
    """The time, injected: entrypoints call `self.clock()` and hand it to handlers, and the service's
    units of work date their events with it, so one clock rules a whole call (chassis/clock.py)."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self.now = clock

    def get_dependency(self, worker_ctx: WorkerContext) -> Clock:
        return self.now


class DatabaseHandle:
    def __init__(self, engine: sa.Engine, clock: Clock = utcnow):
        self.engine = engine
        self.clock = clock

    def uow(self) -> dbmod.UnitOfWork:
        return dbmod.UnitOfWork(self.engine, self.clock)


class Database(DependencyProvider):
    """The service's own database: migrated to head when the container starts."""

    def __init__(self, service: str, migrations_dir: Path) -> None:
        self.service = service
        self.migrations_dir = migrations_dir
        self.engine: sa.Engine | None = None
        self.clock: Clock = utcnow

    def setup(self) -> None:
        url = self.container.config.get("DATABASE_URL") or settings.database_url(self.service)
        dbmod.upgrade(url, self.migrations_dir)
        workers = int(self.container.config.get("max_workers", 10))
        pool = self.container.config.get("DB_POOL_SIZE") or workers + 2  # a connection per worker by default
        self.engine = dbmod.make_engine(url, pool_size=int(pool))
        clocks = [dep.now for dep in self.container.dependencies if isinstance(dep, ClockProvider)]
        self.clock = clocks[0] if clocks else utcnow

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def get_dependency(self, worker_ctx: WorkerContext) -> DatabaseHandle:
        if self.engine is None:
            raise RuntimeError(f"{self.service}'s database is used before the container set it up")
        return DatabaseHandle(self.engine, self.clock)


class RequestContext(DependencyProvider):
    """Binds the caller's request id (nameko context data) to this worker's log records."""

    def get_dependency(self, worker_ctx: WorkerContext) -> str | None:
        return cast("str | None", worker_ctx.data.get("request_id"))

    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        request_id_var.set(worker_ctx.data.get("request_id"))

    def worker_teardown(self, worker_ctx: WorkerContext) -> None:
        request_id_var.set(None)


class ScopeHandle:
    """`self.scope` in an entrypoint: the scope it acts in now, and blocks that act for a workspace
    (or, on the allow-list, for the system). Inside a block the database and the RPCs the worker
    makes carry that scope; the system scope never travels to another service."""

    def __init__(self, worker_ctx: WorkerContext) -> None:
        self._worker_ctx = worker_ctx

    @property
    def current(self) -> Scope | None:
        return db_scope.get()

    @contextlib.contextmanager
    def workspace(self, workspace_id: str, client_id: str | None = None) -> Iterator[Scope]:
        with self._acting(Scope(workspace_id or "", client_id or None)) as scope:
            yield scope

    @contextlib.contextmanager
    def system(self) -> Iterator[Scope]:
        with self._acting(SYSTEM) as scope:
            yield scope

    @contextlib.contextmanager
    def _acting(self, scope: Scope) -> Iterator[Scope]:
        data = self._worker_ctx.data
        sent = data.get(SCOPE_KEY)
        if scope.system:
            data.pop(SCOPE_KEY, None)
        else:
            data[SCOPE_KEY] = scope.to_context()
        try:
            with acting_for(scope):
                yield scope
        finally:
            if sent is None:
                data.pop(SCOPE_KEY, None)
            else:
                data[SCOPE_KEY] = sent


def declared_scope(service_cls: type, method_name: str) -> str | None:
    kind = getattr(getattr(service_cls, method_name, None), "scope_kind", None)
    return kind if isinstance(kind, str) else None


class ScopeContext(DependencyProvider):
    """Binds each worker to the scope its entrypoint declares (chassis/scope.py): the caller's
    (nameko context data, from the gateway), the event's workspace, the system (allow-listed), or
    none until the entrypoint enters one. PostgreSQL's row-level security enforces it."""

    def get_dependency(self, worker_ctx: WorkerContext) -> ScopeHandle:
        return ScopeHandle(worker_ctx)

    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        scope: Scope | None
        kind = declared_scope(type(worker_ctx.service), worker_ctx.entrypoint.method_name)
        if kind == CALLER:
            scope = scope_from_context(worker_ctx.data.get(SCOPE_KEY))
        elif kind == EVENT:
            scope = scope_of_event(worker_ctx.args[0] if worker_ctx.args else {})
            worker_ctx.data[SCOPE_KEY] = scope.to_context()  # the RPCs it makes act for the same workspace
        elif kind == SYSTEM_WIDE:
            scope = SYSTEM
            worker_ctx.data.pop(SCOPE_KEY, None)
        else:  # OWN, or an entrypoint that declared nothing: no scope, so it sees nothing
            scope = None
            worker_ctx.data.pop(SCOPE_KEY, None)
        db_scope.set(scope)

    def worker_teardown(self, worker_ctx: WorkerContext) -> None:
        db_scope.set(None)


class RpcMetrics(DependencyProvider):
    """Times every RPC (histogram by method and outcome: the counts) and logs a line for it with the
    caller's request id, so a request can be followed through the services' logs. Reads that answered
    well and fast, the bulk of the traffic (every page), are logged one in RPC_LOG_SAMPLE; every call
    that changes something, fails or is slow (RPC_LOG_SLOW_MS) is logged."""

    QUIET = {"ping"}  # health checks call it every few seconds
    READS = (
        "get_",
        "list_",
        "client_dashboard",
        "client_balances",
        "statement",
        "booking_options",
        "check_session",
        "recent_emails",
    )

    def __init__(self) -> None:
        self._started: dict[WorkerContext, float] = {}
        self.sample = max(settings.env_int("RPC_LOG_SAMPLE", 10), 1)
        self.slow = float(settings.env("RPC_LOG_SLOW_MS", "250")) / 1000
        self._reads = itertools.count()

    def worker_setup(self, worker_ctx: WorkerContext) -> None:
        if isinstance(worker_ctx.entrypoint, Rpc):
            self._started[worker_ctx] = time.perf_counter()

    def worker_result(
        self, worker_ctx: WorkerContext, result: object = None, exc_info: tuple[Any, ...] | None = None
    ) -> None:
        started = self._started.pop(worker_ctx, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        entrypoint = worker_ctx.entrypoint
        outcome = metrics.outcome_of(exc_info[1] if exc_info else None, entrypoint.expected_exceptions)
        name = entrypoint.method_name
        metrics.RPC_DURATION.labels(self.container.service_name, name, outcome).observe(elapsed)
        if name in self.QUIET:
            level = logging.DEBUG
        elif (
            outcome == metrics.OK
            and elapsed < self.slow
            and name.startswith(self.READS)
            and next(self._reads) % self.sample
        ):
            return  # counted above; one in `sample` is logged
        else:
            level = logging.INFO if outcome != metrics.ERROR else logging.WARNING
        log.log(level, "rpc handled", extra={"method": name, "outcome": outcome, "ms": round(elapsed * 1000, 2)})

    def worker_teardown(self, worker_ctx: WorkerContext) -> None:
        self._started.pop(worker_ctx, None)


class OutboxDispatcher(EventDispatcher):
    """The outbox relay's publisher: nameko's event exchange and headers, a batch of events confirmed
    by the broker at once (chassis/confirmed_publish.py), and each event's request id from its outbox
    row, as the relay publishes from its own timer worker, not the request's."""

    confirmed: ConfirmedPublisher | None = None

    def setup(self) -> None:
        super().setup()  # declares the exchange, as nameko does
        self.confirmed = ConfirmedPublisher(
            self.amqp_uri,
            self.exchange,
            serializer=self.serializer,
            ssl=self.container.config.get(AMQP_SSL_CONFIG_KEY),
            login_method=self.container.config.get(LOGIN_METHOD_CONFIG_KEY),
        )

    def stop(self) -> None:
        if self.confirmed is not None:
            self.confirmed.close()

    def get_dependency(self, worker_ctx: WorkerContext) -> Callable[[events.Relayed], None]:
        headers = self.get_message_headers(worker_ctx)
        request_id_header = self._get_header_name("request_id")

        def publish_all(batch: events.Relayed) -> None:
            if self.confirmed is None:
                raise RuntimeError("the event publisher is used before the container set it up")
            self.confirmed.publish_all(
                [
                    Outgoing(event_type, event, {**headers, request_id_header: request_id} if request_id else headers)
                    for event_type, event, request_id in batch
                ]
            )

        return publish_all


class ContainerProbe(DependencyProvider):
    """The container itself, for /readyz: is its broker connection up?"""

    def get_dependency(self, worker_ctx: WorkerContext) -> ContainerProbe:
        return self

    def broker_connected(self) -> bool:
        """Whether the consumers (RPC requests, replies, events) hold an open broker channel. While the
        broker is away, kombu keeps reconnecting and the old channels stay closed."""
        queue_consumers = [ext for ext in self.container.subextensions if isinstance(ext, QueueConsumer)]
        channels = [c.channel for qc in queue_consumers for c in list(qc._consumers.values())]
        return bool(channels) and all(
            getattr(ch, "is_open", False) and getattr(ch.connection, "connected", False) for ch in channels
        )


def _json(status: int, body: dict[str, Any]) -> HttpAnswer:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


class ServiceBase:
    """Every service: a database with an outbox, a relay that publishes it, `ping`, and an HTTP
    endpoint (`WEB_SERVER_ADDRESS` in its config.yml) serving /metrics, /healthz and /readyz."""

    name: str  # each service's own, as nameko requires
    db: DatabaseHandle
    clock = ClockProvider()
    dispatch = OutboxDispatcher()
    request_id = RequestContext()
    scope = ScopeContext()
    rpc_metrics = RpcMetrics()
    probe = ContainerProbe()
    READY_TIMEOUT = 3.0  # seconds for the database to answer before /readyz says 503

    @runs_in(CALLER)
    @entrypoint(rpc)
    def ping(self) -> dict[str, Any]:
        with self.db.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"service": self.name, "ok": True}

    def _tx(self, handler: Callable[..., Any], *args: Any, idempotency_key: str | None = None, **kwargs: Any) -> Any:
        """Run `handler(uow, now, *args)` in one transaction, committed when it returns. With an
        idempotency key, a repeat of the same call returns the first answer and changes nothing."""
        with self.db.uow() as uow:
            if idempotency_key:
                key = f"{self.name}.{handler.__name__}:{idempotency_key}"
                fingerprint = idempotency.request_hash(key, args, kwargs)
                kept = idempotency.claim(uow, key, fingerprint)
                if kept is not idempotency.MISSING:
                    return kept
            result = handler(uow, self.clock(), *args, **kwargs)
            if idempotency_key:
                idempotency.keep(uow, key, result)
            uow.commit()
            return result

    @runs_in(CALLER)  # dead letters, like the outbox and inbox, belong to the service, not a workspace
    @entrypoint(rpc)
    def list_dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        return events.list_dead_letters(self.db.engine, int(limit))

    @runs_in(CALLER)
    @entrypoint(rpc(expected_exceptions=EXPECTED))
    def get_dead_letter(self, letter_id: int) -> dict[str, Any]:
        letter = events.get_dead_letter(self.db.engine, int(letter_id))
        if letter is None:
            raise NotFound(f"No dead letter {letter_id} in {self.name}.")
        return letter

    @runs_in(CALLER)
    @entrypoint(rpc(expected_exceptions=EXPECTED))
    def replay_dead_letter(self, letter_id: int) -> dict[str, Any]:
        """Hand a parked event to its consumer again. The consumer's inbox makes a replay of an event
        that meanwhile got through harmless; a replay that fails again is parked anew."""
        letter = events.claim_dead_letter(self.db.engine, int(letter_id))
        if letter is None:
            raise NotFound(f"No dead letter {letter_id} in {self.name}.")
        handled = self.replay_parked(letter["consumer"].split(".", 1)[1], letter["event"])
        return {
            "id": letter["id"],
            "consumer": letter["consumer"],
            "event_id": letter["event_id"],
            "handled": bool(handled),
        }

    def replay_parked(self, consumer: str, event: Event) -> object:
        """Run one consumer method (a `consumes` wrapper) on a parked event, in this worker."""
        handler = getattr(self, consumer, None)
        if handler is None or not getattr(handler, "is_consumer", False):
            raise NotFound(f"{self.name} has no consumer {consumer}.")
        with self.scope.workspace(scope_of_event(event).workspace_id):  # its RPCs act for the event's workspace
            return handler(event)

    @runs_in(OWN)  # the outbox belongs to the service: no workspace's rows are read
    @entrypoint(relay_timer(interval=float(settings.env("OUTBOX_RELAY_INTERVAL", "1"))))
    def relay_outbox(self) -> None:
        def publish(batch: events.Relayed) -> None:
            self.dispatch(batch)
            for event_type, event, _ in batch:
                self.published(event_type, event)

        events.relay_outbox(self.db.engine, publish)

    def published(self, event_type: str, event: Event) -> None:
        """Called once the broker took an event from the outbox (a committed fact): a service may count it."""

    @runs_in(OWN)
    @entrypoint(http("GET", "/metrics"))
    def http_metrics(self, request: Request) -> HttpAnswer:
        try:
            with eventlet.Timeout(self.READY_TIMEOUT):
                metrics.refresh_database_gauges(self.name, self.db.engine)
        except (Exception, eventlet.Timeout) as exc:  # noqa: BLE001 - the other metrics are still worth serving
            log.warning("database gauges not refreshed", extra={"error": repr(exc)})
        body, content_type = metrics.exposition()
        return 200, {"Content-Type": content_type}, body.decode()

    @runs_in(OWN)
    @entrypoint(http("GET", "/healthz"))
    def http_healthz(self, request: Request) -> HttpAnswer:
        """Liveness: answering at all means the process runs and its worker pool took this request."""
        return _json(200, {"service": self.name, "ok": True})

    @runs_in(OWN)
    @entrypoint(http("GET", "/readyz"))
    def http_readyz(self, request: Request) -> HttpAnswer:
        """Readiness: the database answers SELECT 1 and the broker connection is up."""
        checks = {"database": self._database_check(), "broker": {"ok": self.probe.broker_connected()}}
        ready = all(check["ok"] for check in checks.values())
        return _json(200 if ready else 503, {"service": self.name, "ready": ready, "checks": checks})

    def _database_check(self) -> dict[str, Any]:
        try:
            with eventlet.Timeout(self.READY_TIMEOUT):
                with self.db.engine.connect() as conn:
                    conn.execute(sa.text("SELECT 1"))
            return {"ok": True}
        except (Exception, eventlet.Timeout) as exc:  # noqa: BLE001 - any failure means not ready
            return {"ok": False, "error": repr(exc)[:300]}


class HandedBack(Exception):
    """An event given back to the broker unhandled, as its service stops: retried in place, it would
    hold the stop up (the peers it calls may be stopping too, each try then waiting for a timeout).
    The broker delivers it again, to another replica or to this one restarted; the inbox makes it
    count once."""


class EventConsumer(EventHandler):
    """nameko's event handler, aware of its service stopping: a message still delivered then is not
    started, and the consumers' retries hand their event back (HandedBack); both are requeued, not acked."""

    def start(self) -> None:
        SERVICE_STOPPING.clear()
        super().start()

    def stop(self) -> None:
        SERVICE_STOPPING.set()  # first: a worker between two tries sees it while the consumer is cancelled
        super().stop()

    def handle_message(self, body: Any, message: Any) -> None:
        if SERVICE_STOPPING.is_set():  # delivered as the consumer is being cancelled: not started here
            self.queue_consumer.requeue_message(message)
        else:
            super().handle_message(body, message)

    def handle_message_processed(self, message: Any, result: object = None, exc_info: Any = None) -> None:
        if exc_info is not None and isinstance(exc_info[1], HandedBack):
            self.queue_consumer.requeue_message(message)
        else:
            super().handle_message_processed(message, result, exc_info)


def _hand_back_if_stopping(service: str, consumer: str, event: Event, error: str) -> None:
    if SERVICE_STOPPING.is_set():
        metrics.EVENTS_HANDLED.labels(service, consumer, "handed_back").inc()
        log.warning(
            "event handed back to the broker: the service is stopping",
            extra={"consumer": consumer, "event_id": event.get("id"), "error": error},
        )
        raise HandedBack(error)


def consumes(
    source_service: str,
    event_type: str,
    max_attempts: int | None = None,
    base_delay: float | None = None,
    slots: eventlet.semaphore.BoundedSemaphore | None = None,
    together_by: Callable[[Event], Hashable] | None = None,
    read_together: Callable[[dbmod.UnitOfWork, list[Event]], None] | None = None,
) -> Callable[[Callable[..., None]], Callable[[Any, Event], bool]]:
    """Subscribe a method `fn(self, uow, now, event)` to an event, exactly once per event id. The unit
    of work joins the transaction that also records the event id, and commits with it; `now` is the
    service's clock, read once for the whole handling.

    Failures are retried in place with exponential backoff; after `max_attempts` the event goes to
    the dead-letter table instead of being silently dropped. The message is acked only after this
    returns, so a crash mid-way gets it redelivered. A business rule's refusal is parked at once;
    `Unavailable` (a peer or Stripe did not answer) is retried like any other failure. Once the
    service is stopping, a failed event is not tried again here: it goes back to the broker unacked
    (HandedBack), so the stop is not held up by the tries.

    `slots`, shared by consumers that wait on something slow (a PDF render) inside their transaction,
    is taken before the database connection: a burst of such events then holds a few of the pool's
    connections, not all of them, and an email a person is waiting for still finds one.

    `together_by(event)`: events of one workspace with the same answer (a client's id, say) that arrive
    while one of them is being handled are handled together in the next transaction
    (chassis/group_commit.py); events with different answers still run side by side. For a consumer
    whose events come in bursts and change the same rows; its handler must not depend on being alone
    in its transaction. `read_together(uow, events)`, run before a batch of several is handled, reads
    ahead what their handlers would each read, in one statement for all of them (UnitOfWork.read_ahead).
    """
    max_attempts = max_attempts or settings.env_int("EVENT_RETRY_ATTEMPTS", 5)
    base_delay = base_delay if base_delay is not None else float(settings.env("EVENT_RETRY_BASE_DELAY", "0.5"))

    def decorator(fn: Callable[..., None]) -> Callable[[Any, Event], bool]:
        @runs_in(EVENT)
        @entrypoint(EventConsumer.decorator(source_service, event_type, expected_exceptions=HandedBack))
        @functools.wraps(fn)
        def wrapper(self: Any, event: Event) -> bool:
            consumer = f"{self.name}.{fn.__name__}"
            started = time.perf_counter()
            for attempt in range(1, max_attempts + 1):
                if attempt > 1:  # the stop may have begun during the pause before this try
                    _hand_back_if_stopping(self.name, consumer, event, "not tried again")
                try:
                    with slots or contextlib.nullcontext(), acting_for(scope_of_event(event)):  # its workspace only
                        handled = (
                            _handled_together(fn, self, consumer, event, together_by(event), read_together)
                            if together_by and attempt == 1
                            else None
                        )
                        if handled is None:
                            now = self.clock()
                            handled = events.consume_once(
                                self.db.engine, consumer, event, lambda conn, e: _joined(fn, self, conn, now, e)
                            )
                    _handled(self.name, consumer, event, "processed" if handled else "duplicate", started)
                    return handled
                except Exception as exc:  # noqa: BLE001 - anything may fail; we retry then park it
                    refused = isinstance(exc, ServiceError) and not isinstance(exc, Unavailable)
                    if refused:  # a business rule said no: retrying cannot help, park it now
                        log.error(
                            "event refused by a business rule",
                            extra={"consumer": consumer, "event_id": event.get("id"), "error": repr(exc)},
                        )
                    else:
                        _hand_back_if_stopping(self.name, consumer, event, repr(exc))
                    if refused or not _retry_later(consumer, event, attempt, max_attempts, base_delay, repr(exc)):
                        events.dead_letter(self.db.engine, consumer, event, repr(exc))
                        metrics.DEAD_LETTERED.labels(self.name, consumer).inc()
                        _handled(self.name, consumer, event, "dead_lettered", started)
                        return False
                    metrics.EVENT_RETRIES.labels(self.name, consumer).inc()
            return False  # max_attempts < 1: not even tried

        setattr(wrapper, "is_consumer", True)  # replay_parked hands parked events only to these
        return wrapper

    return decorator


def _joined(fn: Callable[..., None], service: Any, conn: sa.Connection, now: datetime, event: Event) -> None:
    """A consumer's body in the inbox transaction, with the work it left for before the commit."""
    with dbmod.joined(conn, lambda: now) as uow:
        fn(service, uow, now, event)


_GROUP_COMMIT = GroupCommit()


def _handled_together(
    fn: Callable[..., None],
    service: Any,
    consumer: str,
    event: Event,
    group: Hashable,
    read_together: Callable[[dbmod.UnitOfWork, list[Event]], None] | None = None,
) -> bool | None:
    """The event handled with those of its workspace and `group` that came meanwhile
    (chassis/group_commit.py), in the transaction of whichever of their workers leads: its service
    instance, clock reading (taken once the batch is formed) and scope serve them all, and each
    event's records keep their own request id. None: handle it alone."""
    engine = service.db.engine

    def run(batch: list[Waiting]) -> list[bool]:
        by_id = {waiting.event["id"]: waiting.request_id for waiting in batch}
        now = service.clock()

        def handle_all(conn: sa.Connection, fresh: list[Event]) -> None:
            with dbmod.joined(conn, lambda: now) as uow:
                if read_together is not None and len(fresh) > 1:
                    read_together(uow, fresh)
                for each in fresh:
                    with request_context(by_id[each["id"]]):
                        fn(service, uow, now, each)

        answers = events.consume_together(engine, consumer, [waiting.event for waiting in batch], handle_all)
        metrics.EVENT_BATCH_SIZE.labels(service.name, consumer).observe(len(batch))
        return answers

    handled: bool | None = _GROUP_COMMIT.handle((engine, consumer, event.get("workspace_id"), group), event, run)
    return handled


def _handled(service: str, consumer: str, event: Event, outcome: str, started: float) -> None:
    metrics.EVENTS_HANDLED.labels(service, consumer, outcome).inc()
    log.info(
        "event handled",
        extra={
            "consumer": consumer,
            "event_type": event.get("type"),
            "event_id": event.get("id"),
            "outcome": outcome,
            "ms": round((time.perf_counter() - started) * 1000, 2),
        },
    )


def _retry_later(consumer: str, event: Event, attempt: int, max_attempts: int, base_delay: float, error: str) -> bool:
    """Log the failure and sleep before the next attempt (exponential backoff); False when out of tries."""
    log.warning(
        "event handler failed",
        extra={"consumer": consumer, "event_id": event.get("id"), "attempt": attempt, "error": error},
    )
    if attempt >= max_attempts:
        return False
    eventlet.sleep(base_delay * 2 ** (attempt - 1))
    return True

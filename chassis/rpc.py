"""RPC between services with a deadline.

nameko 2.14's in-service `RpcProxy` waits for a reply forever: a hung or stopped service would hang
its callers, and their callers, for good. `TimedRpcProxy` is a drop-in replacement whose calls give
up after `SERVICE_RPC_TIMEOUT` seconds (or the timeout given) with `Unavailable` (503), which the
gateway shows as "temporarily unavailable" and the event consumers retry, then dead-letter.

Once the calling service has begun to stop (`SERVICE_STOPPING`), a call still waiting gives up
within `STOPPING_WAIT`: the peers it waits on may be stopping too, and a full timeout for each call
of each worker would hold the stop up past what the process is given to stop in. A consumer's event
then goes back to the broker (chassis.nameko_ext.HandedBack), for another replica or this one
restarted.
"""

from __future__ import annotations

import time
from typing import Any

import eventlet
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy

from chassis import settings
from chassis.errors import Unavailable


class Stopping:
    """Whether this process's service has begun to stop, and since when (`time.monotonic()`)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def set(self) -> None:
        if self.since is None:
            self.since = time.monotonic()

    def clear(self) -> None:
        self.since = None

    def is_set(self) -> bool:
        return self.since is not None


# Set as this process's service begins to stop (chassis.nameko_ext.EventConsumer.stop); `nameko run`
# runs one service a process, so one flag serves it.
SERVICE_STOPPING = Stopping()
STOPPING_WAIT = 1.0  # seconds a call still waits for its answer once its service is stopping
_CHECK_EVERY = 0.5  # how often a waiting call looks at SERVICE_STOPPING


def default_timeout() -> float:
    return float(settings.env("SERVICE_RPC_TIMEOUT", "10"))


class _TimedMethod:
    def __init__(self, method_proxy: Any, service: str, method: str, timeout: float) -> None:
        self._method = method_proxy
        self._where = f"{service}.{method}"
        self._timeout = timeout

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            reply = self._method.call_async(*args, **kwargs)
        except UnknownService:
            raise Unavailable(f"{self._where}: the service is not running") from None
        started = time.monotonic()
        deadline = started + self._timeout
        while True:
            if SERVICE_STOPPING.since is not None:  # STOPPING_WAIT from the stop, or from a call made after it
                deadline = min(deadline, max(SERVICE_STOPPING.since, started) + STOPPING_WAIT)
            timer = eventlet.Timeout(max(min(deadline - time.monotonic(), _CHECK_EVERY), 0))
            try:
                return reply.result()
            except eventlet.Timeout as exc:
                if exc is not timer:
                    raise
                if time.monotonic() >= deadline:
                    # Forget the pending reply, so a late answer is dropped instead of kept forever.
                    _forget_reply(self._method.reply_listener, reply)
                    why = "; this service is stopping" if SERVICE_STOPPING.is_set() else f" within {self._timeout:g}s"
                    raise Unavailable(f"{self._where} did not answer{why}") from None
            finally:
                timer.cancel()

    def call_async(self, *args: Any, **kwargs: Any) -> Any:  # fire-and-forget callers keep nameko's own behaviour
        return self._method.call_async(*args, **kwargs)


def _forget_reply(listener: Any, reply: Any) -> None:
    """Drop the reply event nameko keeps by correlation id (the reply holds no reference to it)."""
    pending = listener._reply_events
    for correlation_id, event in list(pending.items()):
        if event is reply.reply_event:
            pending.pop(correlation_id, None)


class _TimedService:
    def __init__(self, proxy: Any, service: str, timeout: float) -> None:
        self._proxy = proxy
        self._service = service
        self._timeout = timeout

    def __getattr__(self, method: str) -> _TimedMethod:
        return _TimedMethod(getattr(self._proxy, method), self._service, method, self._timeout)


class TimedRpcProxy(RpcProxy):
    """`RpcProxy` whose synchronous calls time out (see the module docstring)."""

    def __init__(self, target_service: str, timeout: float | None = None, **options: Any) -> None:
        super().__init__(target_service, **options)
        self.timeout = timeout

    def get_dependency(self, worker_ctx: Any) -> _TimedService:
        return _TimedService(
            super().get_dependency(worker_ctx),
            self.target_service,
            self.timeout if self.timeout is not None else default_timeout(),
        )

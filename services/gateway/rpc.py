"""A pool of standalone nameko RPC proxies with timeouts, safe to share between gunicorn threads.

Each ClusterRpcProxy is single-threaded, so a thread checks one out for its call. A proxy that timed
out or lost its connection is thrown away (a late reply must not be read as the next call's).
"""
from __future__ import annotations

import logging
import queue
import threading
from contextlib import contextmanager

from kombu.exceptions import OperationalError
from nameko.exceptions import RemoteError, RpcTimeout, UnknownService
from nameko.standalone.rpc import ClusterRpcProxy

from chassis.errors import ServiceError, from_remote
from chassis.scope import CONTEXT_KEY as SCOPE_KEY
from chassis.scope import Scope

log = logging.getLogger(__name__)


class ServiceUnavailable(Exception):
    """The broker or the service cannot be reached (503)."""

    def __init__(self, message: str, service: str | None = None):
        super().__init__(message)
        self.service = service  # None when the broker itself is out of reach


class ServiceTimeout(ServiceUnavailable):
    """The service did not answer within the timeout (504)."""


class ServiceCrashed(Exception):
    """The service raised an unexpected error (502)."""


class RpcPool:
    def __init__(self, config: dict, timeout: float, size: int = 8):
        self.config = config
        self.timeout = timeout
        self.size = size
        self._idle: queue.LifoQueue = queue.LifoQueue()
        self._created = 0
        self._lock = threading.Lock()

    def _checkout(self) -> ClusterRpcProxy:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            may_create = self._created < self.size
            if may_create:
                self._created += 1
        if not may_create:
            try:
                return self._idle.get(timeout=self.timeout)
            except queue.Empty:
                raise ServiceTimeout("all RPC connections are busy") from None
        proxy = ClusterRpcProxy(self.config, timeout=self.timeout)
        try:
            proxy.start()
        except Exception as exc:
            self._forget(proxy)
            raise ServiceUnavailable(f"message broker unreachable: {exc}") from exc
        return proxy

    def _forget(self, proxy: ClusterRpcProxy) -> None:
        with self._lock:
            self._created -= 1
        try:
            proxy.stop()
        except Exception:  # noqa: BLE001 - it is being discarded anyway
            pass

    @contextmanager
    def _proxy(self, request_id: str | None, scope: Scope | None = None):
        proxy = self._checkout()
        # nameko sends worker context data as message headers: the services log this request id, and
        # their database enforces the caller's scope (row-level security, chassis/scope.py).
        proxy._worker_ctx.data["request_id"] = request_id
        if scope is None:
            proxy._worker_ctx.data.pop(SCOPE_KEY, None)  # the proxy is reused: no scope from a previous call
        else:
            proxy._worker_ctx.data[SCOPE_KEY] = scope.to_context()
        healthy = False
        try:
            yield proxy._proxy
            healthy = True
        except (RemoteError, ServiceError):
            healthy = True  # the service answered; the connection is fine
            raise
        finally:
            if healthy:
                self._idle.put(proxy)
            else:
                self._forget(proxy)

    def call(self, service: str, method: str, *args, request_id: str | None = None, scope: Scope | None = None,
             **kwargs):
        """`scope`: the signed-in client (portal) or the API key's workspace (admin API); None when the
        caller is not known yet (sign-in, webhooks, health)."""
        try:
            with self._proxy(request_id, scope) as cluster:
                return getattr(getattr(cluster, service), method)(*args, **kwargs)
        except RemoteError as exc:
            mapped = from_remote(exc.exc_type, exc.value)
            if mapped is not None:
                raise mapped from None
            log.error("service error", extra={"service": service, "method": method, "error": str(exc)})
            raise ServiceCrashed(f"{service}.{method} failed") from None
        except RpcTimeout:
            raise ServiceTimeout(f"{service} did not answer within {self.timeout:g}s", service) from None
        except UnknownService:
            raise ServiceUnavailable(f"{service} is not running", service) from None
        except (OSError, OperationalError) as exc:
            raise ServiceUnavailable(f"message broker unreachable: {exc}") from None

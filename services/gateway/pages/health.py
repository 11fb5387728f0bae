"""/healthz: whether the broker and every service answer."""

from __future__ import annotations

import concurrent.futures

import falcon

from services.gateway.metrics import broker_reachable
from services.gateway.pages.base import Base


class Health(Base):
    """200 only when the broker and every service answer a ping."""

    public = True

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {"broker": broker_reachable(self.config.amqp_uri)}
        with concurrent.futures.ThreadPoolExecutor(len(self.config.services)) as pool:
            futures = {name: pool.submit(self._ping, req.context.request_id, name) for name in self.config.services}
            checks.update({name: future.result() for name, future in futures.items()})
        healthy = all(check["ok"] for check in checks.values())
        resp.status = 200 if healthy else 503
        resp.media = {"status": "ok" if healthy else "degraded", "checks": checks}

    def _ping(self, request_id: str, name: str) -> dict:
        try:
            self.rpc.call(name, "ping", request_id=request_id)
            return {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means unhealthy, reported as text
            return {"ok": False, "error": str(exc) or type(exc).__name__}

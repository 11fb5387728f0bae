"""A nameko service for tests/integration/test_gateway_rpc.py: answers as the portal's services do
(chassis.nameko_ext installs chassis/fast_rpc.py), slowly, with a business error, or with a crash."""

import eventlet
from nameko.rpc import rpc

from chassis.errors import NotFound
from chassis.nameko_ext import RequestContext, ScopeContext  # noqa: F401 - also installs fast_rpc
from chassis.scope import CALLER, runs_in


class RpcProbe:
    name = "rpc_probe"
    request_id = RequestContext()
    scope = ScopeContext()

    @rpc
    def echo(self, value):
        return value

    @runs_in(CALLER)
    @rpc
    def context(self):
        current = self.scope.current
        return {"request_id": self.request_id, "scope": current.to_context() if current else None}

    @rpc
    def slow(self, seconds, value):
        eventlet.sleep(seconds)
        return value

    @rpc(expected_exceptions=NotFound)
    def missing(self):
        raise NotFound("No such thing.")

    @rpc
    def crash(self):
        raise ValueError("boom")

"""A nameko service for tests/integration/test_gateway_rpc.py: answers as the portal's services do
(chassis.nameko_ext installs chassis/fast_rpc.py), slowly, with a business error, or with a crash."""
import eventlet
from nameko.rpc import rpc

from chassis.errors import NotFound
from chassis.nameko_ext import RequestContext, ScopeContext  # noqa: F401 - also installs fast_rpc


class RpcProbe:
    name = "rpc_probe"
    request_id = RequestContext()
    scope = ScopeContext()

    @rpc
    def echo(self, value):
        return value

    @rpc
    def context(self):
        return {"request_id": self.request_id, "scope": self.scope.to_context() if self.scope else None}

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

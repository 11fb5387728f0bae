"""A nameko service for tests/integration/test_gateway_rpc.py: answers as the portal's services do
(nameko patched by chassis/nameko_patches.py), slowly, with a business error, or with a crash."""

import eventlet
from nameko.rpc import rpc

from chassis import nameko_patches
from chassis.errors import NotFound
from chassis.nameko_ext import RequestContext, ScopeContext
from chassis.scope import CALLER, runs_in

nameko_patches.apply()  # as the services' modules do

RECORDED: list = []  # what `record` was called with, in this process


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
    def record(self, value):
        RECORDED.append(value)

    @rpc
    def recorded(self):
        return RECORDED

    @rpc
    def crash(self):
        raise ValueError("boom")

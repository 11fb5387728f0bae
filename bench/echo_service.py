"""Two trivial nameko services for the RPC overhead benchmark: `bench_echo` answers the way the
portal's services do (nameko patched by chassis/nameko_patches.py, as their service modules do),
`bench_echo_stock` the way nameko 2.14 does out of the box (BENCH_STOCK_NAMEKO=1 keeps it so).
Run with `nameko run --broker AMQP_URI bench.echo_service:EchoService` (or StockEchoService)."""

import os

from nameko.rpc import rpc

if os.environ.get("BENCH_STOCK_NAMEKO") != "1":
    from chassis import nameko_patches

    nameko_patches.apply()


class EchoService:
    name = "bench_echo"

    @rpc
    def echo(self, value):
        return value


class StockEchoService:
    name = "bench_echo_stock"

    @rpc
    def echo(self, value):
        return value

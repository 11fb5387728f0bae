"""A nameko service for tests/integration/test_consumer_stop.py: one event consumer, as the portal's
services declare theirs (chassis.nameko_ext.consumes), whose handler fails while PROBE_FAILS=1, as one
does when the peers it calls are stopping. Each try is a line in PROBE_TRIES."""

import os
from pathlib import Path

from nameko.extensions import DependencyProvider

from chassis import db as dbmod
from chassis import nameko_patches
from chassis.clock import utcnow
from chassis.errors import Unavailable
from chassis.nameko_ext import DatabaseHandle, consumes

nameko_patches.apply()  # as the services' modules do
ROOT = Path(__file__).resolve().parents[2]


class ProbeDatabase(DependencyProvider):
    """A SQLite file with a service's inbox and dead letters (payments' migrations have both)."""

    def setup(self):
        url = os.environ["PROBE_DATABASE_URL"]
        dbmod.upgrade(url, ROOT / "services" / "payments" / "migrations")
        self.engine = dbmod.make_engine(url)

    def get_dependency(self, worker_ctx):
        return DatabaseHandle(self.engine)


class StoppingProbe:
    name = "stopping_probe"
    db = ProbeDatabase()
    clock = staticmethod(utcnow)

    @consumes("probe_source", "probe.happened", max_attempts=5, base_delay=3)
    def on_probe(self, uow, now, event):
        with open(os.environ["PROBE_TRIES"], "a") as tries:
            tries.write(event["id"] + "\n")
        if os.environ.get("PROBE_FAILS") == "1":
            raise Unavailable("a peer did not answer")

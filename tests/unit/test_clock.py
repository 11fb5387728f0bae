"""One clock: the product reads the wall clock in chassis/clock.py only, and rules take the time they
are given, so tests can put the calendar anywhere."""

import ast
from datetime import timedelta
from pathlib import Path

from chassis.clock import utcnow
from tests.unit.test_billing_handlers import NOW

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("chassis", "services", "deploy", "bench")
WALL_CLOCK_READS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"), ("datetime", "today")}
# Where the clock is wired in (the unit of work, the nameko clock, the outbox's own bookkeeping) and
# the command-line entry points, which are their own callers. Handlers and entrypoints take the time.
MAY_IMPORT_THE_CLOCK = {
    "chassis/clock.py",
    "chassis/db.py",
    "chassis/events.py",
    "chassis/idempotency.py",
    "chassis/nameko_ext.py",
    "services/billing/seed.py",
    "bench/run.py",
    "bench/users.py",
    "bench/monolith.py",
    "services/gateway/app.py",
}  # the gateway's wiring gives its session check the clock


def product_modules():
    for top in PRODUCT:
        for path in sorted((ROOT / top).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(), filename=str(path))


def test_only_the_clock_module_reads_the_wall_clock():
    found = []
    for name, tree in product_modules():
        if name == "chassis/clock.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, (ast.Name, ast.Attribute)):
                owner = node.value.id if isinstance(node.value, ast.Name) else node.value.attr
                if (owner, node.attr) in WALL_CLOCK_READS:
                    found.append(f"{name}:{node.lineno} {owner}.{node.attr}")
    assert found == []


def test_handlers_and_entrypoints_are_given_the_time_they_do_not_fetch_it():
    importers = set()
    for name, tree in product_modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "chassis.clock"
                and any(alias.name == "utcnow" for alias in node.names)
            ):
                importers.add(name)
            if isinstance(node, ast.Attribute) and node.attr == "utcnow" and name not in MAY_IMPORT_THE_CLOCK:
                importers.add(name)
    assert importers <= MAY_IMPORT_THE_CLOCK, sorted(importers - MAY_IMPORT_THE_CLOCK)


def test_the_unit_tier_runs_with_the_wall_clock_far_from_the_fixtures_clock():
    assert abs(utcnow() - NOW) >= timedelta(days=60)

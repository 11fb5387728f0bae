"""argon2id runs off the eventlet hub in auth: while 20 password checks run at once, a heartbeat greenlet
(standing in for other RPCs and the AMQP heartbeats) keeps running *while hashes are in flight*. Hashing
on the hub itself, the control, never lets it run until a hash is done. Each case runs in its own
monkey-patched interpreter, as `nameko run` does, so the test process's own clock and threads stay out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import eventlet
eventlet.monkey_patch()

import json, sys, time
from services.auth import passwords
from services.auth.service import PasswordHashing

if sys.argv[1] == "service":
    hashing = PasswordHashing()
    hashing.setup()
    hasher = hashing.hasher  # what AuthService's workers get
else:
    hasher = passwords.Hasher()  # the same parameters, hashed on the hub
stored = hasher.hash("correct horse battery staple")

in_flight, ticks, ticks_while_hashing, done = [0], [0], [0], [False]
hashing_on = hasher.run

def counted(fn, *args):
    in_flight[0] += 1
    try:
        return hashing_on(fn, *args)
    finally:
        in_flight[0] -= 1

hasher.run = counted

def heartbeat():
    while not done[0]:
        ticks[0] += 1
        if in_flight[0]:
            ticks_while_hashing[0] += 1
        eventlet.sleep(0.005)

beat = eventlet.spawn(heartbeat)
eventlet.sleep(0.02)
started = time.monotonic()
pool = eventlet.GreenPool(20)
def check(i):
    return hasher.verify(stored, "correct horse battery staple" if i % 2 else "wrong one")

results = list(pool.imap(check, range(20)))
elapsed = time.monotonic() - started
done[0] = True
beat.wait()
print(json.dumps({"results": results, "ticks_while_hashing": ticks_while_hashing[0], "elapsed": elapsed}))
"""


def run(mode: str) -> dict:
    answer = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AUTH_HASH_CONCURRENCY": "4"},
    )
    assert answer.returncode == 0, answer.stderr[-2000:]
    return json.loads(answer.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def off_the_hub():
    return run("service")


def test_twenty_concurrent_checks_give_the_right_answers(off_the_hub):
    assert off_the_hub["results"] == [i % 2 == 1 for i in range(20)]


def test_the_heartbeat_keeps_running_while_hashes_are_in_flight(off_the_hub):
    assert off_the_hub["ticks_while_hashing"] >= 10, off_the_hub
    assert off_the_hub["elapsed"] < 60  # a generous bound: 20 hashes of ~50 ms, four at a time, on 2 cores


def test_the_control_hashing_on_the_hub_starves_the_heartbeat():
    on_the_hub = run("hub")
    assert on_the_hub["results"] == [i % 2 == 1 for i in range(20)]
    assert on_the_hub["ticks_while_hashing"] == 0, on_the_hub

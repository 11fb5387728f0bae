"""What the benchmarks share: timing loops, wrk, the RabbitMQ management API, and process memory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

import requests

from deploy.devstack import management_url

HERE = Path(__file__).resolve().parent


def timed(fn, n: int) -> list[float]:
    """n sequential calls of fn(); milliseconds each."""
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def interleaved(calls: dict, rounds: int, per_round: int, warmup: int = 50) -> dict[str, list[float]]:
    """Each callable in turn, `per_round` calls at a time, for `rounds` rounds: a baseline and what is
    compared with it see the same moments of a noisy machine."""
    for fn in calls.values():
        timed(fn, warmup)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            samples[name] += timed(fn, per_round)
    return samples


# ---------------------------------------------------------------- wrk


def wrk(
    url: str,
    connections: int,
    seconds: float,
    threads: int = 2,
    headers: dict | None = None,
    cookies: Path | None = None,
) -> dict:
    """Run wrk against url; its figures in milliseconds and requests per second, and every error
    (socket errors, and any answer other than 200) counted. With `cookies` (a file of Cookie header
    values, one a line), each connection is a client of its own: one thread per connection, each
    sending its own line (wrk_report.lua)."""
    if cookies is not None:
        threads = connections
    argv = [
        "wrk",
        f"-t{min(threads, connections)}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "wrk_report.lua"),
    ]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    env = {**os.environ, "WRK_COOKIES": str(cookies) if cookies is not None else ""}
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True, env=env).stdout
    line = next(row for row in out.splitlines() if row.startswith("WRK_JSON "))
    raw = json.loads(line[len("WRK_JSON ") :])
    errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"] + raw["non200"]
    return {
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "requests": raw["requests"],
        "errors": errors,
        "p50": raw["p50_us"] / 1000,
        "p90": raw["p90_us"] / 1000,
        "p95": raw["p95_us"] / 1000,
        "p99": raw["p99_us"] / 1000,
        "mean": raw["mean_us"] / 1000,
        "connections": connections,
        "seconds": seconds,
        "threads": min(threads, connections),
        "distinct_cookies": cookies is not None,
        "error_detail": {k: raw[k] for k in ("connect", "read", "write", "timeout", "non200")},
    }


# ---------------------------------------------------------------- RabbitMQ management API


class Management:
    """Queue facts for the benchmarks: from the management API when it answers; otherwise a queue's
    consumers come over AMQP (a passive declare) and the listing of reply queues is not measured (None)."""

    def __init__(self, amqp_uri: str):
        url = urlparse(amqp_uri)
        self.amqp_uri = amqp_uri
        self.api = management_url(amqp_uri)
        self.auth = (url.username or "guest", url.password or "guest")
        self.vhost = unquote(url.path[1:]) or "/"
        try:
            self.available = requests.get(f"{self.api}/api/overview", auth=self.auth, timeout=5).status_code == 200
        except requests.RequestException:
            self.available = False

    def queues(self) -> list[dict]:
        answer = requests.get(
            f"{self.api}/api/queues/{quote(self.vhost, safe='')}",
            auth=self.auth,
            timeout=10,
            params={"columns": "name,consumers,messages"},
        )
        answer.raise_for_status()
        return answer.json()

    def reply_queues(self) -> int | None:
        """nameko's reply queues (`rpc.reply-*`) and any server-named ones (`amq.gen-*`); None without the API."""
        if not self.available:
            return None
        return sum(q["name"].startswith(("rpc.reply-", "amq.gen-")) for q in self.queues())

    def delete_unused_standalone_reply_queues(self) -> int | None:
        """Reply queues left by nameko's standalone proxies that have stopped (the benchmark's own
        comparison with nameko as shipped): without a consumer, nothing will ever read them. Without
        the API they stay until their x-expires (5 minutes) removes them; None."""
        if not self.available:
            return None
        gone = 0
        for q in self.queues():
            if q["name"].startswith("rpc.reply-standalone_rpc_proxy-") and not q.get("consumers"):
                requests.delete(
                    f"{self.api}/api/queues/{quote(self.vhost, safe='')}/{quote(q['name'], safe='')}",
                    auth=self.auth,
                    timeout=10,
                )
                gone += 1
        return gone

    def consumers(self, queue: str) -> int:
        if self.available:
            return next((q.get("consumers", 0) for q in self.queues() if q["name"] == queue), 0)
        import kombu

        with kombu.Connection(self.amqp_uri, connect_timeout=5) as connection:
            try:
                return connection.default_channel.queue_declare(queue, passive=True).consumer_count
            except Exception:  # noqa: BLE001 - a queue not declared yet has no consumers
                return 0


class Sampler(threading.Thread):
    """Calls fn() every `interval` seconds until stopped; keeps every value."""

    def __init__(self, fn, interval: float):
        super().__init__(daemon=True)
        self.fn = fn
        self.interval = interval
        self.values: list = []
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            try:
                self.values.append(self.fn())
            except Exception:  # noqa: BLE001 - a missed sample is not worth failing a benchmark
                pass
            self._stop_event.wait(self.interval)

    def stop(self) -> list:
        self._stop_event.set()
        self.join(10)
        return self.values


# ---------------------------------------------------------------- memory


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def tree(pid: int) -> list[int]:
    """A process and all its descendants."""
    children, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by a process tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for current in tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def cpu_seconds_of_command(command: str) -> float:
    """CPU time used so far by every process named `command` (/proc/<pid>/comm): the broker's
    beam.smp, PostgreSQL's server processes, wherever they were started from."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != command:
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (render workers, gunicorn workers), MB."""
    tree, total, todo = _children(), 0, [pid]
    while todo:
        current = todo.pop()
        todo += tree.get(current, [])
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(match.group(1)) if match else 0
    return total / 1024

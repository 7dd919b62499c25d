"""What every peer adapter shares: the payload, the tracker its handler
reports to, and small helpers. Runs in the peers' own virtual environment
(bench/.venv-peers), never in the project's: nothing here imports zizq.

An adapter module (bench/peers/<name>.py) provides:

    NAME, DIST            label in the table; the distribution whose version is shown
    BULK                  a short description of the batch enqueue API, or None
    WORKER                how its one worker process runs at concurrency 10
    setup(url, variant)   build the client (connection opened, scripts loaded)
    enqueue_single(items) one library call per item, sequentially
    enqueue_bulk(items)   the batch API, CHUNK items per call (when BULK)
    waiting()             jobs waiting, read from the library's own keys
    prepare_worker()      build the worker (not timed)
    run_worker(done)      run it in this (the main) thread; return once it has
                          stopped, gracefully, after ``done`` was set
    close()

The handler of every adapter calls ``TRACKER.hit(data)`` as its first and
only statement (``TRACKER.hit_redis`` where it runs in a forked child).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import redis

TEXT = ("zizq benchmark payload: " * 5)[:100]  # the ~100-byte string, as in bench/workloads.py
CHUNK = 1000  # items per batch-API call
CONCURRENCY = 10
QUEUE = "bench"
SEEN_KEY = "peers-bench:seen"  # hash n -> latency (ms), for handlers in forked children
HITS_KEY = "peers-bench:hits"


def items(n: int) -> list[dict[str, Any]]:
    """The payloads: a dict with an int and the ~100-byte string."""
    return [{"n": i, "s": TEXT} for i in range(n)]


class Tracker:
    """What the handlers saw: each job's ``n`` (distinct), how many calls in
    all (more calls than distinct jobs = a job ran twice), the latency of
    jobs that carry ``t`` (time.time() at enqueue), and the perf_counter time
    of the call that completed the target."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset(0)

    def reset(self, target: int) -> None:
        with self.lock:
            self.target = target
            self.calls = 0
            self.seen: dict[int, float] = {}
            self.t_done: float | None = None
            self.done = threading.Event()

    def hit(self, data: dict[str, Any]) -> None:
        now = time.time()
        with self.lock:
            self.calls += 1
            t = data.get("t")
            self.seen[data["n"]] = (now - t) * 1000 if t is not None else 0.0
            if self.t_done is None and self.target and len(self.seen) >= self.target:
                self.t_done = time.perf_counter()
                self.done.set()

    def hit_redis(self, conn: Any, data: dict[str, Any]) -> None:
        """For a handler running in a forked child: the same record, kept in
        Redis (one pipelined round trip), collected by ``poll_redis``."""
        now = time.time()
        t = data.get("t")
        pipe = conn.pipeline(transaction=False)
        pipe.hset(SEEN_KEY, str(data["n"]), (now - t) * 1000 if t is not None else 0.0)
        pipe.incr(HITS_KEY)
        pipe.execute()

    def poll_redis(self, conn: Any, stop: threading.Event, every: float = 0.002) -> None:
        """Fill this tracker from what ``hit_redis`` wrote; set ``done`` (the
        time is taken when the poll sees the target, within ``every``)."""
        while not stop.is_set():
            if int(conn.hlen(SEEN_KEY)) >= self.target:
                t = time.perf_counter()
                self.collect_redis(conn)
                with self.lock:
                    self.t_done = t
                self.done.set()
                return
            stop.wait(every)

    def collect_redis(self, conn: Any) -> None:
        seen = {int(k): float(v) for k, v in conn.hgetall(SEEN_KEY).items()}
        calls = int(conn.get(HITS_KEY) or 0)
        with self.lock:
            self.seen = seen
            self.calls = calls


TRACKER = Tracker()
WARNINGS: list[str] = []  # what went wrong without failing the run; shown under the table


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(f"check failed: {what}")


def wait_until(done: threading.Event, alive: Any = None, timeout: float = 240.0, every: float = 0.005) -> None:
    """Block until ``done`` is set; fail if ``alive()`` turns false first (the
    worker died) or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done.wait(every):
        if alive is not None and not alive():
            raise AssertionError("the worker stopped before the jobs were done")
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(TRACKER.seen)} of {TRACKER.target} jobs done in {timeout:.0f} s")


async def async_wait_until(done: threading.Event, task: Any = None, timeout: float = 240.0) -> None:
    """The asyncio twin of ``wait_until``: poll every 5 ms without blocking
    the loop; fail if ``task`` (the worker) finished first."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not done.is_set():
        if task is not None and task.done():
            task.result()
            raise AssertionError("the worker stopped before the jobs were done")
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(TRACKER.seen)} of {TRACKER.target} jobs done in {timeout:.0f} s")
        await asyncio.sleep(0.005)


def ping_rtt_us(url: str, count: int = 500) -> float:
    """Median PING round trip in µs: how fast this process and Redis happen
    to talk right now (on small VMs this depends on where the OS scheduler
    put the two processes, and it moves single-call results a lot)."""
    r = redis.Redis.from_url(url)
    r.ping()
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        r.ping()
        samples.append(time.perf_counter() - t0)
    r.close()
    return statistics.median(samples) * 1e6


def stored_memory(info: dict[str, Any]) -> int:
    """Redis's used_memory (from INFO memory) without the clients' connection
    buffers (mem_clients_normal): what the data takes, not what a producer's
    last big command left in its query buffer."""
    return int(info["used_memory"]) - int(info["mem_clients_normal"])

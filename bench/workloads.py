"""The zizq workloads, child side: one workload, one hot path, one run,
in a fresh process (``bench/run.py --child WORKLOAD``). Each checks that its
jobs really were stored, or really ran, and prints one result line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import redis
from harness import BENCH, CHILD_TIMEOUT_S, RESULT_MARK, RUN_PY, popen
from peers.common import ping_rtt_us, stored_memory

NAMESPACE = "bench"
CHUNK = 1000  # jobs per enqueue_many / per batched EVALSHA
CONCURRENCY = 10
LATENCY_JOBS = 200
LATENCY_GAP_S = 0.005
TEXT = ("zizq benchmark payload: " * 5)[:100]  # the ~100-byte string field

WORKLOADS = (
    "enqueue_single",
    "enqueue_bulk",
    "process",
    "handlers",
    "latency",
    "memory",
    "limits",
    "micro",
    "processes",
    "take",
    "otel",
    "curves",
)
HANDLER_JOBS = 3000  # the real-handler workload's job count (any --jobs)
BARE_HELD = 2 * CONCURRENCY  # jobs a bare take-and-ack loop holds: the worker's default prefetch
TAKE_KEYS = 1000  # keys of the per-key limit in the take workload
OTEL_SETTINGS = ("off", "noop", "sdk")  # the "otel" workload: zizq.otel not instrumented; with no SDK; with the SDK
PROCESSES = (1, 2)  # zizq worker -p N in the "processes" workload


def _kinds() -> tuple[type, type, type]:
    import zizq

    class BenchJob(zizq.JobKind):
        NAME = "bench"
        n: int
        s: str

    class UniqueBenchJob(zizq.JobKind):
        NAME = "bench_unique"
        n: int
        s: str

        def unique_key(self) -> zizq.UniqueKey:
            return zizq.UniqueKey.tagged_hash_of(self.NAME, {"n": self.n, "s": self.s})

    class LatencyJob(zizq.JobKind):
        NAME = "bench_latency"
        n: int
        s: str
        t: float  # time.time() at enqueue

    return BenchJob, UniqueBenchJob, LatencyJob


def _chunks(seq: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(f"check failed: {what}")


def _key(*parts: str) -> str:
    return "{" + NAMESPACE + "}:" + ":".join(parts)


def _warm_up(client: Any, kind: type) -> None:
    """Load the enqueue script and open the connection, then forget it all
    (FLUSHALL keeps loaded scripts)."""
    client.enqueue(kind(n=-1, s=TEXT))
    client.enqueue_many([kind(n=-2, s=TEXT), kind(n=-3, s=TEXT)])
    client.redis.flushall()


def _verify_stored(r: redis.Redis, ids: list[str], n: int) -> None:
    """Every id distinct, every job record present and ready, payloads intact."""
    _check(len(ids) == n, f"{len(ids)} results for {n} jobs")
    _check(len(set(ids)) == n, "job ids are distinct")
    records = [x for chunk in _chunks(ids, CHUNK) for x in r.hmget(_key("jobs"), chunk)]
    present = sum(x is not None for x in records)
    _check(present == n, f"{present} of {n} job records exist")
    ready = int(r.zcard(_key("ready", "default")))
    _check(ready == n, f"{ready} of {n} jobs in the ready set")
    for pos in (0, n // 2, n - 1):
        raw = msgpack.unpackb(records[pos]).get("d")
        _check(raw is not None and json.loads(raw) == {"n": pos, "s": TEXT}, f"payload of job #{pos}")


def child_enqueue_single(url: str, n: int) -> dict[str, Any]:
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _warm_up(client, bench_job)
    jobs = [bench_job(n=i, s=TEXT) for i in range(n)]
    enqueue = client.enqueue
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = [enqueue(job) for job in jobs]
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    _verify_stored(client.redis, [j.id for j in results], n)
    client.close()
    return {"jobs_per_s": n / elapsed, "seconds": elapsed, "cpu_us": cpu / n * 1e6}


def child_enqueue_bulk(url: str, n: int) -> dict[str, Any]:
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _warm_up(client, bench_job)
    chunks = list(_chunks([bench_job(n=i, s=TEXT) for i in range(n)], CHUNK))
    enqueue_many = client.enqueue_many
    client.redis.config_resetstat()
    t0 = time.perf_counter()
    results = [job for chunk in chunks for job in enqueue_many(chunk)]
    elapsed = time.perf_counter() - t0
    redis_us, calls = _redis_time(client.redis)
    _verify_stored(client.redis, [j.id for j in results], n)
    client.close()
    return {"jobs_per_s": n / elapsed, "seconds": elapsed, "redis_us_per_job": redis_us / n, "calls_per_job": calls / n}


# Commands a client sends itself; the others (HSET, ZADD, ...) are the
# scripts' own calls, whose time EVALSHA's already counts.
DIRECT = ("evalsha", "eval", "blpop", "smembers", "set", "get", "rpush", "del", "ping", "hello")


def _redis_time(r: redis.Redis) -> tuple[float, int]:
    """Since the last CONFIG RESETSTAT: the µs Redis spent in commands
    (INFO commandstats; a script's calls counted once, in its EVALSHA),
    and how many commands the scripts called."""
    stats = r.info("commandstats")
    spent = sum(v["usec"] for k, v in stats.items() if k.removeprefix("cmdstat_") in DIRECT)
    nested = sum(
        v["calls"]
        for k, v in stats.items()
        if k.removeprefix("cmdstat_") not in DIRECT and "|" not in k and k != "cmdstat_info"
    )
    return spent, nested


def _preload_scripts(r: redis.Redis, *names: str) -> None:
    from zizq._protocol.scripts import script

    for name in names:
        r.script_load(script(name).source)


def child_process(url: str, n: int) -> dict[str, Any]:
    import zizq
    from zizq._protocol.jobs import Core

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _warm_up(client, bench_job)
    for chunk in _chunks([bench_job(n=i, s=TEXT) for i in range(n)], CHUNK):
        client.enqueue_many(chunk)
    r = client.redis
    _check(int(r.zcard(_key("ready", "default"))) == n, f"{n} jobs ready before the worker starts")
    _preload_scripts(r, "take", "ack", "release")

    # Diagnostics only: count the take and ack calls the worker builds (a
    # few hundred ns each; the wrappers pass every argument through).
    counts = {"take": 0, "ack": 0}

    def counting(name: str) -> Any:
        original = getattr(Core, name)

        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return original(self, *args, **kwargs)

        return wrapper

    Core.take = counting("take")  # type: ignore[method-assign]
    Core.ack = counting("ack")  # type: ignore[method-assign]

    router = zizq.Router()

    async def noop(job: Any) -> None:
        return None

    router.route(bench_job, noop)
    r.config_resetstat()
    cpu = [0.0]  # the process's CPU seconds (every thread) while the jobs ran

    async def main() -> float:
        worker = zizq.Worker(client, router, concurrency=CONCURRENCY)
        cpu[0], t0 = time.process_time(), time.perf_counter()
        task = asyncio.create_task(worker.run_async())
        try:
            while worker.stats.completed + worker.stats.failed < n:
                if task.done():
                    task.result()
                    raise AssertionError("the worker stopped before finishing")
                if time.perf_counter() - t0 > CHILD_TIMEOUT_S - 30:
                    raise AssertionError(f"only {worker.stats.completed} of {n} jobs done in time")
                await asyncio.sleep(0.002)
            elapsed = time.perf_counter() - t0
            cpu[0] = time.process_time() - cpu[0]
        finally:
            worker.stop()
            await task
        _check(worker.stats.failed == 0, f"{worker.stats.failed} jobs failed")
        _check(worker.stats.completed == n, f"{worker.stats.completed} of {n} jobs completed")
        return elapsed

    elapsed = asyncio.run(main())
    # After a graceful stop every ack is flushed: with the default completed
    # retention of 0, every job record is gone and nothing is left in flight.
    left = int(r.hlen(_key("jobs")))
    _check(left == 0, f"{left} job records left after all jobs completed")
    _check(int(r.zcard(_key("ready", "default"))) == 0, "ready set empty")
    _check(int(r.zcard(_key("inflight"))) == 0, "nothing in flight")
    redis_us, calls = _redis_time(r)
    cmd = r.info("commandstats")
    evalsha = int(cmd.get("cmdstat_evalsha", {}).get("calls", 0))
    blpop = int(cmd.get("cmdstat_blpop", {}).get("calls", 0))
    client.close()
    return {
        "jobs_per_s": n / elapsed,
        "seconds": elapsed,
        "cpu_us": cpu[0] / n * 1e6,
        "take_calls": counts["take"],
        "ack_calls": counts["ack"],
        "jobs_per_take": n / max(counts["take"], 1),
        "jobs_per_ack": n / max(counts["ack"], 1),
        "evalsha_calls": evalsha,
        "blpop_calls": blpop,
        "redis_us_per_job": redis_us / n,
        "calls_per_job": calls / n,
    }


def _steady_rate(ends: list[float]) -> float:
    """Jobs/s between the end of the first job and the end of the last
    (``ends``: time.perf_counter() at each handler's return)."""
    ends = sorted(ends)
    return (len(ends) - 1) / (ends[-1] - ends[0])


def _in_threads(body: Callable[[], None]) -> None:
    """Run ``body`` in CONCURRENCY threads until each returns."""
    import threading

    threads = [threading.Thread(target=body) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _no_queue_threads(url: str, n: int) -> float:
    """The limit of a sync handler: 10 plain threads run the handler's body
    (one INCR) n times in all, with no queue."""
    import threading

    r = redis.Redis.from_url(url, max_connections=CONCURRENCY + 2)
    r.ping()
    left = iter(range(n))
    lock = threading.Lock()
    ends: list[float] = []

    def body() -> None:
        while True:
            with lock:
                if next(left, None) is None:
                    return
            r.incr("bench:counter")
            ends.append(time.perf_counter())

    _in_threads(body)
    r.close()
    _check(len(ends) == n, f"{len(ends)} of {n} bodies ran")
    return _steady_rate(ends)


def _no_queue_tasks(url: str, n: int) -> float:
    """The limit of an async handler: 10 asyncio tasks run its body (one
    INCR) n times in all, with no queue."""
    import redis.asyncio

    async def main() -> list[float]:
        r = redis.asyncio.Redis.from_url(url, max_connections=CONCURRENCY + 2)
        await r.ping()
        left = iter(range(n))
        ends: list[float] = []

        async def body() -> None:
            while next(left, None) is not None:
                await r.incr("bench:counter")
                ends.append(time.perf_counter())

        await asyncio.gather(*(body() for _ in range(CONCURRENCY)))
        await r.aclose()
        return ends

    ends = asyncio.run(main())
    _check(len(ends) == n, f"{len(ends)} of {n} bodies ran")
    return _steady_rate(ends)


def _handler_jobs(url: str, n: int) -> Any:
    """A client of the namespace where n jobs wait for the handlers."""
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    client.redis.delete(_key("jobs"))
    for chunk in _chunks([bench_job(n=i, s=TEXT) for i in range(n)], CHUNK):
        client.enqueue_many(chunk)
    _preload_scripts(client.redis, "take", "ack", "release")
    return client


def _handlers_done(client: Any, n: int, ends: list[float], seen: set[int]) -> float:
    """Check that the n jobs ran once each and are gone; their steady jobs/s."""
    _check(len(ends) == n and len(seen) == n, f"{len(seen)} distinct of {len(ends)} handler calls for {n} jobs")
    _check(int(client.redis.hlen(_key("jobs"))) == 0, "no job record left")
    client.close()
    return _steady_rate(ends)


def _bare_setup(url: str, n: int) -> tuple[Any, str]:
    """n jobs waiting, and a worker id that holds a lease (10 minutes): what
    the bare take-and-ack loops start from."""
    client = _handler_jobs(url, n)
    owner = "bare-loop"
    _check(not client.run(client.core.heartbeat(owner, "join", 600_000)).lost, "the bare loop holds a lease")
    return client, owner


def _bare_round(pipe: Any, core: Any, owner: str, done: list[Any], want: int) -> Callable[[list[Any]], list[Any]]:
    """Queue on ``pipe`` one round trip of a bare loop: the ack of the jobs
    ``done`` (if any) and a take of ``want`` more. Returns what turns the
    pipeline's replies into the jobs taken (checking every ack went in)."""
    ack = core.ack(owner, [j.id for j in done], [j.dequeued_at for j in done]) if done else None
    take = core.take(owner, want, [])
    for call in (ack, take) if ack else (take,):
        pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)

    def taken(replies: list[Any]) -> list[Any]:
        _check(not ack or replies[0] == [], "every ack accepted")
        return take.decode(replies[-1]).jobs

    return taken


def _bare_tasks(url: str, n: int) -> float:
    """What a worker built on redis-py could reach at best with zizq's
    scripts and the worker's default prefetch: 10 asyncio tasks run the
    handler's body (one INCR) for the jobs one loop takes with zizq's take
    script, acking the jobs done in the same round trip as its next take
    (BARE_HELD jobs held), and nothing else: no heartbeat, no bookkeeping,
    no task or context per job."""
    import redis.asyncio

    client, owner = _bare_setup(url, n)
    core = client.core
    bench_job, _, _ = _kinds()
    ends: list[float] = []
    seen: set[int] = set()

    async def main() -> None:
        r = redis.asyncio.Redis.from_url(url, max_connections=CONCURRENCY + 2)
        jobs: asyncio.Queue[Any] = asyncio.Queue()
        done: list[Any] = []
        ended = asyncio.Event()

        async def runner() -> None:
            while (job := await jobs.get()) is not None:
                payload = bench_job.from_payload(job.payload)  # the handler's typed job, as zizq gives it
                await r.incr("bench:counter")
                seen.add(payload.n)
                ends.append(time.perf_counter())
                done.append(job)
                ended.set()

        async def loop() -> None:
            held = acked = 0
            while acked < n:
                batch = done[:]
                done.clear()
                pipe = r.pipeline(transaction=False)
                decode = _bare_round(pipe, core, owner, batch, BARE_HELD - held + len(batch))
                taken = decode(await pipe.execute())
                for job in taken:
                    jobs.put_nowait(job)
                held += len(taken) - len(batch)
                acked += len(batch)
                _check(held > 0 or acked == n, f"{n - acked} jobs neither taken nor acked")
                ended.clear()
                if not done and acked < n:
                    await ended.wait()
            for _ in range(CONCURRENCY):
                jobs.put_nowait(None)

        await asyncio.gather(loop(), *(runner() for _ in range(CONCURRENCY)))
        await r.aclose()

    asyncio.run(main())
    return _handlers_done(client, n, ends, seen)


def _bare_threads(url: str, n: int) -> float:
    """The sync twin of :func:`_bare_tasks`: 10 threads run the handler's
    body; a thread that finds fewer than 10 jobs left, while no other is at
    it, sends the acks of the jobs done and a take in one pipelined round
    trip (as zizq's handler threads do), and nothing else."""
    import collections
    import threading

    client, owner = _bare_setup(url, n)
    core = client.core
    bench_job, _, _ = _kinds()
    r = redis.Redis.from_url(url, max_connections=CONCURRENCY + 2)
    jobs: collections.deque[Any] = collections.deque()
    done: list[Any] = []
    lock = threading.Lock()
    state = {"taking": False, "held": 0, "acked": 0}
    ends: list[float] = []
    seen: set[int] = set()

    def take_and_ack() -> None:
        with lock:
            batch = done[:]
            done.clear()
            want = BARE_HELD - state["held"] + len(batch)
        pipe = r.pipeline(transaction=False)
        taken = _bare_round(pipe, core, owner, batch, want)(pipe.execute())
        with lock:
            jobs.extend(taken)
            state["held"] += len(taken) - len(batch)
            state["acked"] += len(batch)
            state["taking"] = False

    def body() -> None:
        while True:
            with lock:
                if state["acked"] == n:
                    return
                job = jobs.popleft() if jobs else None
                mine = len(jobs) < CONCURRENCY and not state["taking"]
                state["taking"] = state["taking"] or mine
            if mine:
                take_and_ack()
            if job is None:
                if not mine:
                    time.sleep(0.0002)  # another thread is taking
                continue
            payload = bench_job.from_payload(job.payload)
            r.incr("bench:counter")
            seen.add(payload.n)
            ends.append(time.perf_counter())
            with lock:
                done.append(job)

    _in_threads(body)
    r.close()
    return _handlers_done(client, n, ends, seen)


def _zizq_incr(url: str, n: int, sync: bool) -> float:
    """zizq: one worker at concurrency 10 runs n jobs whose handler does one
    INCR (a sync handler with a redis.Redis, or an async one with a
    redis.asyncio.Redis); steady jobs/s from the first job's end."""
    import redis.asyncio

    import zizq

    bench_job, _, _ = _kinds()
    client = _handler_jobs(url, n)
    ends: list[float] = []
    seen: set[int] = set()
    router = zizq.Router()
    if sync:
        r = redis.Redis.from_url(url, max_connections=CONCURRENCY + 2)

        def incr(job: Any) -> None:
            r.incr("bench:counter")
            seen.add(job.n)
            ends.append(time.perf_counter())

        router.route(bench_job, incr)
    else:
        ar = redis.asyncio.Redis.from_url(url, max_connections=CONCURRENCY + 2)

        async def aincr(job: Any) -> None:
            await ar.incr("bench:counter")
            seen.add(job.n)
            ends.append(time.perf_counter())

        router.route(bench_job, aincr)

    async def main() -> None:
        worker = zizq.Worker(client, router, concurrency=CONCURRENCY)
        task = asyncio.create_task(worker.run_async())
        t0 = time.perf_counter()
        try:
            while worker.stats.completed + worker.stats.failed < n:
                if task.done():
                    task.result()
                    raise AssertionError("the worker stopped before finishing")
                _check(time.perf_counter() - t0 < CHILD_TIMEOUT_S / 4, f"only {len(ends)} of {n} jobs ran in time")
                await asyncio.sleep(0.005)
        finally:
            worker.stop()
            await task
            if not sync:
                await ar.aclose()
        _check(worker.stats.failed == 0, f"{worker.stats.failed} jobs failed")

    asyncio.run(main())
    if sync:
        r.close()
    return _handlers_done(client, n, ends, seen)


def child_handlers(url: str, n: int) -> dict[str, Any]:
    """A handler that does one Redis round trip (INCR), sync and async, at
    concurrency 10, beside the same body run with no queue (10 plain
    threads, 10 asyncio tasks) and fed by a bare take-and-ack loop (the
    ceiling of a worker on redis-py). Side by side in one process;
    HANDLER_JOBS jobs each."""
    n = HANDLER_JOBS
    out = {
        "threads_jobs_per_s": _no_queue_threads(url, n),
        "bare_threads_jobs_per_s": _bare_threads(url, n),
        "sync_jobs_per_s": _zizq_incr(url, n, sync=True),
        "tasks_jobs_per_s": _no_queue_tasks(url, n),
        "bare_tasks_jobs_per_s": _bare_tasks(url, n),
        "async_jobs_per_s": _zizq_incr(url, n, sync=False),
    }
    out["sync_ratio"] = out["sync_jobs_per_s"] / out["threads_jobs_per_s"]
    out["bare_sync_ratio"] = out["bare_threads_jobs_per_s"] / out["threads_jobs_per_s"]
    out["async_ratio"] = out["async_jobs_per_s"] / out["tasks_jobs_per_s"]
    out["bare_async_ratio"] = out["bare_tasks_jobs_per_s"] / out["tasks_jobs_per_s"]
    return out


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of sorted values."""
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def child_latency(url: str, n: int) -> dict[str, Any]:
    import zizq

    _, _, latency_job = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _preload_scripts(client.redis, "enqueue", "take", "ack", "release")
    seen: list[float] = []
    router = zizq.Router()

    async def record(job: Any) -> None:
        seen.append(time.time() - job.t)

    router.route(latency_job, record)

    async def main() -> None:
        worker = zizq.Worker(client, router, concurrency=CONCURRENCY)
        task = asyncio.create_task(worker.run_async())
        producer: subprocess.Popen[bytes] | None = None
        try:
            await asyncio.sleep(0.5)  # let the worker find nothing and block
            _check(not task.done(), "worker is running")
            _check(worker.stats.taken == 0, "worker idle before the first job")
            # The producer is its own process (same hot path: it inherits the
            # environment), so enqueueing never competes with the worker's loop.
            producer = subprocess.Popen(
                [sys.executable, str(RUN_PY), "--child", "latency_producer", "--url", url, "--jobs", str(n)],
                stdout=subprocess.PIPE,
            )
            deadline = time.monotonic() + 120
            while len(seen) + worker.stats.failed < n:
                if task.done():
                    task.result()
                    raise AssertionError("the worker stopped before finishing")
                rc = producer.poll()
                if rc not in (None, 0):
                    raise AssertionError(f"latency producer exited with {rc}")
                _check(time.monotonic() < deadline, f"only {len(seen)} of {n} latency jobs ran in time")
                await asyncio.sleep(0.01)
            out, _ = producer.communicate(timeout=30)
            _check(producer.returncode == 0, "latency producer succeeded")
            _check(int(out.decode().split()[-1]) == n, f"producer enqueued {n} jobs")
        finally:
            if producer is not None and producer.poll() is None:
                producer.kill()
                producer.wait()
            worker.stop()
            await task
        _check(worker.stats.failed == 0, f"{worker.stats.failed} latency jobs failed")
        _check(worker.stats.completed == n, f"{worker.stats.completed} of {n} latency jobs completed")

    asyncio.run(main())
    client.close()
    ms = sorted(x * 1000 for x in seen)
    return {"p50_ms": _percentile(ms, 50), "p99_ms": _percentile(ms, 99), "max_ms": ms[-1], "min_ms": ms[0]}


def child_latency_producer(url: str, n: int) -> None:
    import zizq

    _, _, latency_job = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    client.redis.ping()
    start = time.monotonic() + 0.05
    ids = set()
    for i in range(n):
        pause = start + i * LATENCY_GAP_S - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        ids.add(client.enqueue(latency_job(n=i, s=TEXT, t=time.time())).id)
    client.close()
    print(len(ids))


def child_memory(url: str, n: int) -> dict[str, Any]:
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _warm_up(client, bench_job)
    r = client.redis
    chunks = list(_chunks([bench_job(n=i, s=TEXT) for i in range(n)], CHUNK))
    before = r.info("memory")
    results = [job for chunk in chunks for job in client.enqueue_many(chunk)]
    after = r.info("memory")
    _verify_stored(r, [j.id for j in results], n)
    client.close()
    return {"bytes_per_job": (stored_memory(after) - stored_memory(before)) / n}


LIMIT_SINGLE = "return redis.call('HSET', KEYS[1], 'd', ARGV[1])"
LIMIT_BATCH = """
local P = KEYS[1]
for i = 1, #ARGV, 2 do redis.call('HSET', P .. ARGV[i], 'd', ARGV[i + 1]) end
return #ARGV / 2
"""


def child_limits(url: str, n: int) -> dict[str, Any]:
    import orjson

    r = redis.Redis.from_url(url)
    single, batch = r.script_load(LIMIT_SINGLE), r.script_load(LIMIT_BATCH)
    r.evalsha(single, 1, "warm", b"x")
    r.flushall()
    # The same payload bytes zizq stores; keys and payloads made beforehand:
    # this is the floor, one script call and one write per job.
    payloads = [orjson.dumps({"n": i, "s": TEXT}) for i in range(n)]
    prefix = "{limit}:job:"
    keys = [f"{prefix}{i}" for i in range(n)]
    evalsha = r.evalsha
    t0 = time.perf_counter()
    for key, payload in zip(keys, payloads, strict=True):
        evalsha(single, 1, key, payload)
    single_s = time.perf_counter() - t0
    _check(int(r.dbsize()) == n, f"{n} keys written one script call each")
    r.flushall()
    flat = [x for key_payload in zip([str(i) for i in range(n)], payloads, strict=True) for x in key_payload]
    t0 = time.perf_counter()
    for chunk in _chunks(flat, 2 * CHUNK):
        evalsha(batch, 1, prefix, *chunk)
    batch_s = time.perf_counter() - t0
    _check(int(r.dbsize()) == n, f"{n} keys written {CHUNK} per script call")
    _check(r.hget(f"{prefix}{n - 1}", "d") == payloads[-1], "batched payload intact")
    r.close()
    return {"single_jobs_per_s": n / single_s, "batch_jobs_per_s": n / batch_s}


def _time_us(fn: Callable[[], Any], per: int = 1) -> float:
    """Best of 5 timeit repeats, in µs per call (divided by ``per``)."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()  # enough calls for >= 0.2 s
    number = max(1, number // 2)
    return min(timer.repeat(repeat=5, number=number)) / number / per * 1e6


def child_micro(url: str, n: int) -> dict[str, Any]:
    import zizq
    from zizq import _hotpath
    from zizq._protocol.enqueue import enqueue_args
    from zizq._protocol.jobs import Core
    from zizq._protocol.lease import TakeResult

    bench_job, unique_job, _ = _kinds()
    ids = _hotpath.IdGenerator()
    core = Core(NAMESPACE)
    plain = bench_job(n=123456, s=TEXT)
    job = unique_job(n=123456, s=TEXT)
    payload = job.to_payload()
    encode_payload = _hotpath.encode_payload

    # A realistic take reply for 10 jobs (a take of 10), in the shape
    # take.lua returns ({now, next_due, more, id1, record1, ...}): the
    # records of 10 enqueued jobs, read through redis-py and hiredis, with
    # what a take writes (s, da, w) applied. Built by hand so the
    # micro-benchmark does not depend on the worker protocol (leases etc.).
    client = zizq.Client.from_url(url, NAMESPACE)
    enqueued = client.enqueue_many([bench_job(n=i, s=TEXT) for i in range(CONCURRENCY)])
    now = int(time.time() * 1000)
    reply: list[Any] = [now, -1, 0]
    for queued in enqueued:
        record = msgpack.unpackb(client.redis.hget(_key("jobs"), queued.id))
        record.update(s=3, da=now, w="bench-micro:1:00000000")  # 3: in_flight
        reply += [queued.id.encode(), msgpack.packb(record)]
    client.close()
    decoded = TakeResult.decode(reply)
    _check(len(decoded.jobs) == CONCURRENCY, f"take reply holds {CONCURRENCY} jobs")
    _check(all(j.status == "in_flight" and j.payload["s"] == TEXT for j in decoded.jobs), "take reply decodes")
    _check(len(enqueue_args(job, ids)) == 14, "enqueue_args gives the 14 script arguments")

    return {
        "id_us": _time_us(ids.generate),
        "payload_us": _time_us(lambda: encode_payload(payload)),
        "unique_us": _time_us(job.unique_key),
        "enqueue_args_us": _time_us(lambda: enqueue_args(plain, ids)),
        "enqueue_args_unique_us": _time_us(lambda: enqueue_args(job, ids)),
        "enqueue_call_us": _time_us(lambda: core.enqueue_calls([plain])),
        "take_decode_us": _time_us(lambda: TakeResult.decode(reply), per=CONCURRENCY),
    }


def child_processes(url: str, n: int) -> dict[str, Any]:
    """`zizq worker -p N` (the CLI, N worker processes under its supervisor,
    concurrency 10 each): jobs/s from the moment a paused queue of n jobs is
    resumed until every job is done. The workers start, join and go idle
    first, so process start-up is not counted."""
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _warm_up(client, bench_job)
    r = client.redis
    out: dict[str, Any] = {}
    for processes in PROCESSES:
        r.flushall()
        client.pause_queue("default")
        for chunk in _chunks([bench_job(n=i, s=TEXT) for i in range(n)], CHUNK):
            client.enqueue_many(chunk)
        command = [sys.executable, "-m", "zizq", "worker", "zizq_app:router", "-p", str(processes), "-c", "10"]
        command += ["--url", url, "--namespace", NAMESPACE, "--no-cron", "--log-level", "WARNING"]
        proc = popen(command, cwd=BENCH)
        try:
            deadline = time.monotonic() + 60
            while int(r.zcard(_key("workers"))) < processes or int(r.info("clients")["blocked_clients"]) < processes:
                _check(proc.poll() is None, f"zizq worker -p {processes} exited with {proc.returncode}")
                _check(time.monotonic() < deadline, f"zizq worker -p {processes} not idle within 60 s")
                time.sleep(0.01)
            t0 = time.perf_counter()
            client.resume_queue("default")
            while int(r.hlen(_key("jobs"))) > 0:
                _check(time.perf_counter() - t0 < CHILD_TIMEOUT_S - 60, f"-p {processes}: jobs left after the deadline")
                time.sleep(0.002)
            out[f"p{processes}_jobs_per_s"] = n / (time.perf_counter() - t0)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        _check(proc.returncode == 0, f"zizq worker -p {processes} exited with {proc.returncode} after SIGTERM")
        _check(int(r.zcard(_key("inflight"))) == 0, "nothing left in flight")
    client.close()
    return out


def child_take(url: str, n: int) -> dict[str, Any]:
    """Take throughput under limits (issue 15): n ready jobs taken 20 at a
    time (a worker's prefetch at concurrency 10) and acknowledged, by the
    script calls alone (no handlers): with no limit; with a limit that is
    never reached (concurrency 10^9); with a concurrency of 1 per key over
    TAKE_KEYS keys, the jobs' keys taking turns. Best of 3 per case, the
    cases interleaved; besides jobs/s, redis-server's CPU time per job (its
    INFO used_cpu_user + used_cpu_sys), which a loaded machine skews less."""
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    core, r = client.core, client.redis
    cases: list[tuple[str, zizq.Limit | None]] = [
        ("none", None),
        ("limit", zizq.Limit(concurrency=10**9)),
        ("keys", zizq.Limit(concurrency=1)),
    ]

    def cpu_s() -> float:
        info = r.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def once(case: str, limit: zizq.Limit | None) -> tuple[float, float]:
        r.flushall()
        items: list[Any] = [bench_job(n=i, s=TEXT) for i in range(n)]
        if limit is not None:
            client.set_limit("api", limit)
            key = (lambda i: f"k{i % TAKE_KEYS}") if case == "keys" else (lambda i: None)
            items = [zizq.Enqueue(job, limit="api", limit_key=key(i)) for i, job in enumerate(items)]
        for chunk in _chunks(items, CHUNK):
            client.enqueue_many(chunk)
        client.run(core.heartbeat("bench-take", "join", 600_000))
        taken = 0
        cpu0, t0 = cpu_s(), time.perf_counter()
        while taken < n:
            result = client.run(core.take("bench-take", 2 * CONCURRENCY, ["default"], 2 * CONCURRENCY))
            _check(bool(result.jobs), f"{case}: a take found nothing with {n - taken} jobs left")
            client.run(core.ack("bench-take", [job.id for job in result.jobs]))
            taken += len(result.jobs)
        wall, cpu = time.perf_counter() - t0, cpu_s() - cpu0
        _check(int(r.hlen(_key("jobs"))) == 0, f"{case}: every job taken and acknowledged")
        return n / wall, cpu / n * 1e6

    best: dict[str, tuple[float, float]] = {}
    for _ in range(3):
        for case, limit in cases:
            rate, cpu_us = once(case, limit)
            old = best.get(case, (0.0, float("inf")))
            best[case] = (max(old[0], rate), min(old[1], cpu_us))
    client.close()
    out: dict[str, Any] = {}
    for case, (rate, cpu_us) in best.items():
        out[f"{case}_jobs_per_s"] = rate
        out[f"{case}_redis_us"] = cpu_us
    return out


def child_otel(url: str, n: int) -> dict[str, Any]:
    """enqueue_single and process (as their own workloads measure them)
    with zizq.otel: not instrumented ("off", what every other workload
    runs); instrumented with the API's no-op providers ("noop": no SDK
    installed or set); instrumented with the SDK's providers, every span
    sampled and recorded but exported nowhere ("sdk")."""
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import NoOpTracerProvider

    import zizq.otel
    from zizq._protocol.jobs import Core

    r = redis.Redis.from_url(url)
    providers: dict[str, Any] = {
        "noop": (NoOpTracerProvider(), NoOpMeterProvider()),
        "sdk": (TracerProvider(), MeterProvider()),
    }
    take, ack = Core.take, Core.ack  # child_process wraps them: unwrap after each run
    out: dict[str, Any] = {}
    for setting in OTEL_SETTINGS:
        zizq.otel.uninstrument()
        if setting in providers:
            tracer_provider, meter_provider = providers[setting]
            zizq.otel.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        for what, child in (("enqueue", child_enqueue_single), ("process", child_process)):
            r.flushall()
            result = child(url, n)
            out[f"{setting}_{what}_per_s"], out[f"{setting}_{what}_cpu_us"] = result["jobs_per_s"], result["cpu_us"]
        Core.take, Core.ack = take, ack  # type: ignore[method-assign]
    zizq.otel.uninstrument()
    r.close()
    return out


CURVE_WAITING = (1_000, 10_000, 100_000)  # --big adds 1,000,000
CURVE_QUEUES = (1, 10, 100, 1000)
CURVE_WORKERS = (1, 10, 100)
CURVE_OPS = 1000  # jobs each operation is measured over, at every point
CURVE_TAKE = 10  # jobs per take and per ack, as a worker at concurrency 10
CURVE_BATCH = (1, 10, 50)  # jobs a call of enqueue, take and ack, in the "jobs a call" curve


def _evalsha_us(r: redis.Redis) -> float:
    return float(r.info("commandstats").get("cmdstat_evalsha", {}).get("usec", 0))


def _curve_point(
    client: Any, kind: type, queues: list[str], workers: int, per_call: int | None = None
) -> dict[str, float]:
    """Redis time (µs per job, INFO commandstats) of enqueue (100 a call),
    take and ack (CURVE_TAKE a call) over CURVE_OPS jobs, in the state
    the caller made (jobs waiting in ``queues``), with ``workers`` joined;
    with ``per_call``, that many jobs a call of all three."""
    import zizq

    take_n, enqueue_n = per_call or CURVE_TAKE, per_call or 100
    r, core = client.redis, client.core
    for w in range(workers):
        client.run(core.heartbeat(f"w{w}", "join", 600_000))
    fresh = [zizq.Enqueue(kind(n=-i, s=TEXT), queue=queues[i % len(queues)]) for i in range(CURVE_OPS)]
    r.config_resetstat()
    for chunk in _chunks(fresh, enqueue_n):
        client.enqueue_many(chunk)
    enqueue_us = _evalsha_us(r) / CURVE_OPS
    taken: list[list[Any]] = []
    r.config_resetstat()
    for _ in range(CURVE_OPS // take_n):
        taken.append(list(client.run(core.take("w0", take_n, [])).jobs))
    take_us = _evalsha_us(r) / CURVE_OPS
    _check(sum(map(len, taken)) == CURVE_OPS, f"{CURVE_OPS} jobs taken")
    r.config_resetstat()
    for jobs in taken:
        refused = client.run(core.ack("w0", [j.id for j in jobs], [j.dequeued_at for j in jobs]))
        _check(not refused, "every ack accepted")
    ack_us = _evalsha_us(r) / CURVE_OPS
    return {"enqueue_us": enqueue_us, "take_us": take_us, "ack_us": ack_us}


def _fill(client: Any, kind: type, waiting: int, queues: list[str]) -> None:
    import zizq

    for first in range(0, waiting, CHUNK):
        count = min(CHUNK, waiting - first)
        client.enqueue_many([zizq.Enqueue(kind(n=i, s=TEXT), queue=queues[i % len(queues)]) for i in range(count)])


def child_curves(url: str, n: int) -> dict[str, Any]:
    """Per-job Redis time of enqueue, take and ack as the waiting jobs
    (10³..10⁶), the queues (1..1000, one worker serving all) and the joined
    workers (1..100) grow; ``n`` >= 1,000,000 adds the 10⁶ point."""
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _warm_up(client, bench_job)
    _preload_scripts(client.redis, "take", "ack", "heartbeat")
    r = client.redis
    out: dict[str, Any] = {}
    waiting_points = CURVE_WAITING + ((1_000_000,) if n >= 1_000_000 else ())
    for waiting in waiting_points:
        r.flushall()
        _fill(client, bench_job, waiting, ["default"])
        out[f"waiting_{waiting}"] = _curve_point(client, bench_job, ["default"], 1)
    for count in CURVE_QUEUES:
        r.flushall()
        queues = [f"q{i}" for i in range(count)]
        _fill(client, bench_job, 10_000, queues)
        out[f"queues_{count}"] = _curve_point(client, bench_job, queues, 1)
    for workers in CURVE_WORKERS:
        r.flushall()
        _fill(client, bench_job, 10_000, ["default"])
        out[f"workers_{workers}"] = _curve_point(client, bench_job, ["default"], workers)
    for per_call in CURVE_BATCH:
        r.flushall()
        _fill(client, bench_job, 10_000, ["default"])
        out[f"batch_{per_call}"] = _curve_point(client, bench_job, ["default"], 1, per_call)
    client.close()
    return out


CHILDREN: dict[str, Callable[[str, int], Any]] = {
    "enqueue_single": child_enqueue_single,
    "enqueue_bulk": child_enqueue_bulk,
    "process": child_process,
    "handlers": child_handlers,
    "latency": child_latency,
    "latency_producer": child_latency_producer,
    "memory": child_memory,
    "limits": child_limits,
    "micro": child_micro,
    "processes": child_processes,
    "take": child_take,
    "otel": child_otel,
    "curves": child_curves,
}


def child_main(args: argparse.Namespace) -> int:
    rtt = ping_rtt_us(args.url) if args.child != "latency_producer" else 0.0
    result = CHILDREN[args.child](args.url, args.jobs)
    if result is None:  # the latency producer prints its own output
        return 0
    result["rtt_us"] = rtt
    import zizq

    result["zizq"] = f"{zizq.__version__} from {Path(zizq.__file__).parent}"
    from zizq import _hotpath

    result["extension"] = bool(_hotpath.EXTENSION)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0

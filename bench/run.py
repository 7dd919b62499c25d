#!/usr/bin/env python3
"""zizq benchmark harness: zizq alone, extension vs pure-Python hot path.

    .venv/bin/python bench/run.py                 # the full run (3 runs, 10,000 jobs)
    .venv/bin/python bench/run.py --quick         # smoke run (1 run, 2,000 jobs)
    .venv/bin/python bench/run.py --only process,latency --runs 5

The harness starts its own redis-server (free loopback port, no persistence),
flushes it before every measurement, and runs every measurement in a fresh
Python subprocess. The subprocess's environment decides which hot path zizq
loads: ``ZIZQ_NO_EXTENSIONS=1`` for the pure-Python twin, unset for the Cython
extension (a run that asks for the extension fails if it did not load).
Every workload checks that its jobs really were stored, or really ran.
Progress goes to stderr; the result table to stdout. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import msgpack
import redis
from peers.common import ping_rtt_us, stored_memory

HERE = Path(__file__).resolve()
RESULT_MARK = "ZIZQ-BENCH-RESULT "
NAMESPACE = "bench"
CHUNK = 1000  # jobs per enqueue_many / per batched EVALSHA
CONCURRENCY = 10
LATENCY_JOBS = 200
LATENCY_GAP_S = 0.005
TEXT = ("zizq benchmark payload: " * 5)[:100]  # the ~100-byte string field
CHILD_TIMEOUT_S = 300.0

WORKLOADS = ("enqueue_single", "enqueue_bulk", "process", "latency", "memory", "limits", "micro", "processes")
PROCESSES = (1, 2)  # zizq worker -p N in the "processes" workload
MODES = ("ext", "pure")


# ---------------------------------------------------------------------------
# Processes: every child dies with the harness (PDEATHSIG), and lives in its
# own process group so it can be stopped together with its own children.

try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux/glibc: fall back to explicit cleanup only
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _popen(args: list[str], cpus: set[int] | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
    def setup() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return subprocess.Popen(args, start_new_session=True, preexec_fn=setup, **kwargs)


def pinning(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """CPUs for (redis-server, benchmark processes): with ``--pin`` and two or
    more usable CPUs, Redis gets the first and the benchmark the rest."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _stop_group(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM the process group led by ``proc``, give it ``grace`` seconds,
    then SIGKILL what is left of the group. The leader is reaped last, so its
    id (the group's id) cannot have been reused when the group is signalled."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway redis-server: loopback only, no RDB, no AOF."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = tempfile.mkdtemp(prefix="zizq-bench-redis-")
        self.port = free_port()
        self.proc = _popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            cpus=cpus,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.conn = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.conn.ping()
                break
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Child side: one workload, one hot path, one run. Prints one result line.


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
    t0 = time.perf_counter()
    results = [enqueue(job) for job in jobs]
    elapsed = time.perf_counter() - t0
    _verify_stored(client.redis, [j.id for j in results], n)
    client.close()
    return {"jobs_per_s": n / elapsed, "seconds": elapsed}


def child_enqueue_bulk(url: str, n: int) -> dict[str, Any]:
    import zizq

    bench_job, _, _ = _kinds()
    client = zizq.Client.from_url(url, NAMESPACE)
    _warm_up(client, bench_job)
    chunks = list(_chunks([bench_job(n=i, s=TEXT) for i in range(n)], CHUNK))
    enqueue_many = client.enqueue_many
    t0 = time.perf_counter()
    results = [job for chunk in chunks for job in enqueue_many(chunk)]
    elapsed = time.perf_counter() - t0
    _verify_stored(client.redis, [j.id for j in results], n)
    client.close()
    return {"jobs_per_s": n / elapsed, "seconds": elapsed}


def _preload_scripts(r: redis.Redis, *names: str) -> None:
    from zizq._scripts import script

    for name in names:
        r.script_load(script(name).source)


def child_process(url: str, n: int) -> dict[str, Any]:
    import zizq
    from zizq._core import Core

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

    async def main() -> float:
        worker = zizq.Worker(client, router, concurrency=CONCURRENCY)
        t0 = time.perf_counter()
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
    cmd = r.info("commandstats")
    evalsha = int(cmd.get("cmdstat_evalsha", {}).get("calls", 0))
    blpop = int(cmd.get("cmdstat_blpop", {}).get("calls", 0))
    client.close()
    return {
        "jobs_per_s": n / elapsed,
        "seconds": elapsed,
        "take_calls": counts["take"],
        "ack_calls": counts["ack"],
        "jobs_per_take": n / max(counts["take"], 1),
        "jobs_per_ack": n / max(counts["ack"], 1),
        "evalsha_calls": evalsha,
        "blpop_calls": blpop,
    }


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
                [sys.executable, str(HERE), "--child", "latency_producer", "--url", url, "--jobs", str(n)],
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
    from zizq._core import TakeResult
    from zizq._enqueue import enqueue_args

    bench_job, unique_job, _ = _kinds()
    ids = _hotpath.IdGenerator()
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
        proc = _popen(command, cwd=BENCH)
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


CHILDREN: dict[str, Callable[[str, int], Any]] = {
    "enqueue_single": child_enqueue_single,
    "enqueue_bulk": child_enqueue_bulk,
    "process": child_process,
    "latency": child_latency,
    "latency_producer": child_latency_producer,
    "memory": child_memory,
    "limits": child_limits,
    "micro": child_micro,
    "processes": child_processes,
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


# ---------------------------------------------------------------------------
# The peers: their own virtual environment, one adapter each (bench/peers/).

BENCH = HERE.parent
PEERS_VENV = BENCH / ".venv-peers"
PEERS_REQUIREMENTS = BENCH / "requirements-peers.txt"
PEERS_REQUIREMENTS_NODEPS = BENCH / "requirements-peers-nodeps.txt"
PEER_LIBS = ("arq", "saq", "rq", "rq-fork", "dramatiq", "celery", "huey", "taskiq", "bullmq")
LIBS = ("zizq", *PEER_LIBS)
# rq-fork enqueues exactly as rq does (same Queue API), so those cells are
# measured once, in the rq row.
SAME_AS = {("rq-fork", "enqueue_single"): "rq", ("rq-fork", "enqueue_bulk"): "rq", ("rq-fork", "memory"): "rq"}
PEER_WORKLOADS = ("enqueue_single", "enqueue_bulk", "process", "latency", "memory")
RQ_FORK_PROCESS_DIVISOR = 10  # a fork per job: ~75 jobs/s here; 10,000 jobs would take over 2 min a run


def _requirements_stamp() -> str:
    import hashlib

    h = hashlib.sha256()
    for path in (PEERS_REQUIREMENTS, PEERS_REQUIREMENTS_NODEPS):
        h.update(path.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def ensure_peers_venv() -> Path:
    """bench/.venv-peers with the pinned peers, made once (and again when the
    requirement files change). Never the project's .venv: the peers' own
    dependencies (arq pins redis<6, Celery pulls kombu, ...) stay out of it."""
    py = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".bench-requirements"
    want = _requirements_stamp()
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    base = getattr(sys, "_base_executable", None) or sys.executable
    print(f"setting up {PEERS_VENV} (the peers' own virtual environment) ...", file=sys.stderr, flush=True)
    if PEERS_VENV.exists():
        shutil.rmtree(PEERS_VENV)
    subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(PEERS_REQUIREMENTS)], check=True)
    # arq 0.28.0 declares redis<6, which no other peer can share (bullmq 3.4
    # wants >=6.2, taskiq-redis 1.2 >=8); it runs on the redis-py 8.1 above.
    subprocess.run([*pip, "--no-deps", "-r", str(PEERS_REQUIREMENTS_NODEPS)], check=True)
    stamp.write_text(want)
    return py


def _peer_args(py: Path, lib: str, workload: str, url: str, jobs: int, *extra: str) -> list[str]:
    return [
        str(py),
        "-m",
        "peers.driver",
        "--lib",
        lib,
        "--workload",
        workload,
        "--url",
        url,
        "--jobs",
        str(jobs),
        *extra,
    ]


def _peer_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "ZIZQ_NO_EXTENSIONS", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def peer_info(py: Path, lib: str) -> dict[str, Any]:
    """Import the adapter (and so the library) once: version, batch API,
    worker set-up. Raises if it cannot be imported."""
    proc = subprocess.run(
        _peer_args(py, lib, "info", "redis://127.0.0.1:1/0", 0, "--versions"),
        cwd=BENCH,
        env=_peer_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
    info: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    return info


class ChildFailed(Exception):
    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def _communicate(proc: subprocess.Popen[Any], what: str) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise ChildFailed(f"{what}: no result in {CHILD_TIMEOUT_S:.0f} s (stopped)", timed_out=True) from None
    except BaseException:  # Ctrl-C: stop the child and its children
        _stop_group(proc)
        raise
    return out.decode(errors="replace"), err.decode(errors="replace")


def _last_error(err: str) -> str:
    lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no error output"


# ---------------------------------------------------------------------------
# Parent side: orchestration, medians, the tables.


def run_child(server: RedisServer, workload: str, mode: str | None, jobs: int, cpus: set[int] | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("ZIZQ_NO_EXTENSIONS", None)
    if mode == "pure":
        env["ZIZQ_NO_EXTENSIONS"] = "1"
    server.conn.flushall()
    args = [sys.executable, str(HERE), "--child", workload, "--url", server.url, "--jobs", str(jobs)]
    proc = _popen(args, cpus=cpus, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = _communicate(proc, f"zizq {workload} ({mode or 'no zizq'})")
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(err)
        raise ChildFailed(f"exit code {proc.returncode}: {_last_error(err)}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    if mode is not None and result["extension"] != (mode == "ext"):
        raise ChildFailed(
            f"{workload}: asked for the {mode} path but zizq loaded "
            f"{'the extension' if result['extension'] else 'the pure-Python twin'}"
        )
    return result


def run_peer_child(
    server: RedisServer, py: Path, lib: str, workload: str, jobs: int, cpus: set[int] | None
) -> dict[str, Any]:
    server.conn.flushall()
    proc = _popen(
        _peer_args(py, lib, workload, server.url, jobs),
        cpus=cpus,
        cwd=BENCH,
        env=_peer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = _communicate(proc, f"{lib} {workload}")
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise ChildFailed(f"exit code {proc.returncode}: {_last_error(err)}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    return result


# zizq-only table rows: label, workload, metric, unit, format. Ratio is ext/pure.
ROWS: list[tuple[str, str, str, str, str]] = [
    ("enqueue_single", "enqueue_single", "jobs_per_s", "jobs/s", "{:,.0f}"),
    ("enqueue_bulk (1,000/call)", "enqueue_bulk", "jobs_per_s", "jobs/s", "{:,.0f}"),
    ("process (c=10, no-op async)", "process", "jobs_per_s", "jobs/s", "{:,.0f}"),
    ("latency p50 (idle worker)", "latency", "p50_ms", "ms", "{:.2f}"),
    ("latency p99 (idle worker)", "latency", "p99_ms", "ms", "{:.2f}"),
    ("memory per waiting job", "memory", "bytes_per_job", "bytes/job", "{:,.0f}"),
    ("limit: EVALSHA per job", "limits", "single_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("limit: EVALSHA per 1,000 jobs", "limits", "batch_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("micro: make id", "micro", "id_us", "µs/job", "{:.3f}"),
    ("micro: encode payload", "micro", "payload_us", "µs/job", "{:.3f}"),
    ("micro: unique key hash", "micro", "unique_us", "µs/job", "{:.3f}"),
    ("micro: enqueue_args", "micro", "enqueue_args_us", "µs/job", "{:.3f}"),
    ("micro: enqueue_args, unique", "micro", "enqueue_args_unique_us", "µs/job", "{:.3f}"),
    ("micro: TakeResult.decode", "micro", "take_decode_us", "µs/job", "{:.3f}"),
    *[(f"process: zizq worker -p {p} (c=10)", "processes", f"p{p}_jobs_per_s", "jobs/s", "{:,.0f}") for p in PROCESSES],
]
MODELESS = {"limits"}  # plain redis-py: no zizq code, so no ext/pure split

# Comparison table columns: header, unit, workload, metric, format, higher is better.
COLUMNS: list[tuple[str, str, str, str, str, bool]] = [
    ("enqueue_single", "jobs/s", "enqueue_single", "jobs_per_s", "{:,.0f}", True),
    ("enqueue_bulk", "jobs/s", "enqueue_bulk", "jobs_per_s", "{:,.0f}", True),
    ("process c=10", "jobs/s", "process", "jobs_per_s", "{:,.0f}", True),
    ("latency p50", "ms", "latency", "p50_ms", "{:,.2f}", False),
    ("latency p99", "ms", "latency", "p99_ms", "{:,.2f}", False),
    ("memory", "bytes/job", "memory", "bytes_per_job", "{:,.0f}", False),
]

Key = tuple[str, str | None, str]  # (library, zizq hot path or None, workload)


def _summary(workload: str, result: dict[str, Any]) -> str:
    parts = [
        (fmt.format(result[metric]) + " " + unit)
        for _, w, metric, unit, fmt in ROWS
        if w == workload and metric in result
    ]
    if workload == "process" and "jobs_per_take" in result:
        parts.append(f"{result['jobs_per_take']:.1f} jobs/take, {result['jobs_per_ack']:.1f} jobs/ack")
    text = ", ".join(parts)
    if workload != "micro":
        text += f" (PING {result['rtt_us']:.0f} µs)"
    for warning in result.get("warnings") or ():
        text += f" [warning: {warning}]"
    return text


def machine() -> list[tuple[str, str]]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    exe = shutil.which("redis-server") or "redis-server"
    try:
        version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        redis_version = next((w[2:] for w in version.split() if w.startswith("v=")), version.strip())
    except (OSError, subprocess.SubprocessError):
        redis_version = "unknown"

    def ver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "missing"

    return [
        ("nproc", f"{usable} (of {os.cpu_count()})"),
        ("cpu", cpu),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("redis-server", redis_version),
        ("kernel", f"{platform.system()} {platform.release()} {platform.machine()}"),
        ("libraries", f"redis-py {ver('redis')}, hiredis {ver('hiredis')}, orjson {ver('orjson')} (zizq's .venv)"),
    ]


def _median(results: dict[Key, list[dict[str, Any]]], key: Key, metric: str) -> float | None:
    rs = results.get(key)
    return statistics.median(r[metric] for r in rs) if rs else None


def _render(rows: list[tuple[str, ...]], right_from: int = 1, header_rows: int = 1) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        cells = [f"{c:<{widths[j]}}" if j < right_from else f"{c:>{widths[j]}}" for j, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
        if i == header_rows - 1:
            lines.append("-" * max(len(line) for line in lines))
    return lines


def zizq_table(
    results: dict[Key, list[dict[str, Any]]], failed: dict[Key, list[str]], workloads: list[str]
) -> list[str]:
    def cell(key: Key, metric: str, fmt: str) -> tuple[float | None, str]:
        value = _median(results, key, metric)
        text = fmt.format(value) if value is not None else "FAILED"
        if key in failed and value is not None:
            text += f" ({len(failed[key])} FAILED)"
        return value, text

    rows: list[tuple[str, ...]] = [("workload", "extension", "pure", "ext/pure", "unit")]
    for label, workload, metric, unit, fmt in ROWS:
        if workload not in workloads:
            continue
        if workload in MODELESS:
            _, text = cell(("zizq", None, workload), metric, fmt)
            rows.append((label, text, text, "-", unit))
            continue
        ext, ext_text = cell(("zizq", "ext", workload), metric, fmt)
        pure, pure_text = cell(("zizq", "pure", workload), metric, fmt)
        ratio = f"{ext / pure:.2f}" if ext is not None and pure else "-"
        rows.append((label, ext_text, pure_text, ratio, unit))
    return _render(rows)


def _lib_label(lib: str, mode: str | None) -> str:
    if lib == "zizq":
        return {"ext": "zizq (Cython)", "pure": "zizq (pure)"}[mode or "ext"]
    return {"rq": "rq SimpleWorker", "rq-fork": "rq Worker (fork)"}.get(lib, lib)


def compare_rows(
    libs: list[str],
    workloads: list[str],
    results: dict[Key, list[dict[str, Any]]],
    failed: dict[Key, list[str]],
    info: dict[str, dict[str, Any]],
    process_jobs: dict[str, int],
    jobs: int,
) -> list[tuple[str, ...]]:
    cols = [c for c in COLUMNS if c[2] in workloads]
    rows: list[tuple[str, ...]] = [("library", "version", *(c[0] for c in cols)), ("", "", *(c[1] for c in cols))]
    entries: list[tuple[str, str | None]] = []
    for lib in libs:
        entries.extend([("zizq", "ext"), ("zizq", "pure")] if lib == "zizq" else [(lib, None)])
    for lib, mode in entries:
        version = info.get(lib, {}).get("version", "?")
        cells = []
        for _, _, workload, metric, fmt, _ in cols:
            key: Key = (lib, mode, workload)
            if (lib, workload) in SAME_AS:
                cells.append(f"= {SAME_AS[(lib, workload)]}")
            elif workload == "enqueue_bulk" and lib != "zizq" and not info.get(lib, {}).get("bulk"):
                cells.append("none")
            else:
                value = _median(results, key, metric)
                text = fmt.format(value) if value is not None else "-"
                cut = workload == "process" and process_jobs.get(lib, jobs) != jobs
                if cut and value is not None:
                    text += f" ({process_jobs[lib]:,} jobs)"
                if key in failed:  # a run failed a check: the cell says so, with the passing runs' median
                    runs = len(failed[key]) + len(results.get(key, ()))
                    text = "FAILED" if value is None else f"{text} ({len(failed[key])}/{runs} FAILED)"
                cells.append(text)
        rows.append((_lib_label(lib, mode), version, *cells))
    if "limits" in workloads and {"enqueue_single", "enqueue_bulk"} & {c[2] for c in cols}:
        single = _median(results, ("zizq", None, "limits"), "single_jobs_per_s")
        batch = _median(results, ("zizq", None, "limits"), "batch_jobs_per_s")
        cells = []
        for _, _, workload, _, fmt, _ in cols:
            value = single if workload == "enqueue_single" else batch if workload == "enqueue_bulk" else None
            cells.append(fmt.format(value) if value is not None else "")
        rows.append(("limit: redis-py", "EVALSHA", *cells))
    return rows


def ratio_lines(
    libs: list[str], workloads: list[str], results: dict[Key, list[dict[str, Any]]], failed: dict[Key, list[str]]
) -> list[str]:
    """zizq (Cython) against the best peer of this same run, column by column
    (a peer whose cell had a failed run still counts, marked with *)."""
    peers = [lib for lib in libs if lib != "zizq"]
    if "zizq" not in libs or not peers:
        return []
    rows: list[tuple[str, ...]] = [("workload", "zizq (Cython)", "best peer", "", "zizq vs best peer")]
    for header, unit, workload, metric, fmt, higher in COLUMNS:
        if workload not in workloads:
            continue
        mine = _median(results, ("zizq", "ext", workload), metric)
        scored = [(v, lib) for lib in peers if (v := _median(results, (lib, None, workload), metric)) is not None]
        if mine is None or not scored:
            continue
        best, who = max(scored) if higher else min(scored)
        factor = mine / best if higher else best / mine
        mark = "*" if (who, None, workload) in failed else ""
        rows.append(
            (
                f"{header} ({unit})",
                fmt.format(mine),
                fmt.format(best),
                _lib_label(who, None) + mark,
                f"{factor:.2f}x {'faster' if higher else 'lower'}"
                if factor >= 1
                else f"{1 / factor:.2f}x {'slower' if higher else 'higher'}",
            )
        )
    if "limits" in workloads:
        for workload, metric in (("enqueue_single", "single_jobs_per_s"), ("enqueue_bulk", "batch_jobs_per_s")):
            mine = _median(results, ("zizq", "ext", workload), metric="jobs_per_s")
            floor = _median(results, ("zizq", None, "limits"), metric)
            if mine is not None and floor:
                rows.append(
                    (
                        f"{workload} vs redis-py limit",
                        f"{mine:,.0f}",
                        f"{floor:,.0f}",
                        "EVALSHA",
                        f"{mine / floor:.2f}x of the limit",
                    )
                )
    return _render(rows, right_from=1) if len(rows) > 1 else []


def notes(
    results: dict[Key, list[dict[str, Any]]],
    failed: dict[Key, list[str]],
    workloads: list[str],
    libs: list[str],
    info: dict[str, dict[str, Any]],
    process_jobs: dict[str, int],
    jobs: int,
    runs: int,
) -> list[str]:
    out = []
    if "zizq" in libs and "process" in workloads:
        for mode in MODES:
            rs = results.get(("zizq", mode, "process"))
            if rs:
                out.append(
                    f"zizq process ({mode}): {statistics.median(r['jobs_per_take'] for r in rs):.1f} jobs per take "
                    f"call, {statistics.median(r['jobs_per_ack'] for r in rs):.1f} jobs per ack call, "
                    f"{statistics.median(r['evalsha_calls'] for r in rs):,.0f} EVALSHA and "
                    f"{statistics.median(r['blpop_calls'] for r in rs):,.0f} BLPOP calls in all (medians)"
                )
    if "latency" in workloads:
        for lib in libs:
            for mode in ("ext", "pure") if lib == "zizq" else (None,):
                rs = results.get((lib, mode, "latency"))
                if rs:
                    out.append(
                        f"latency {_lib_label(lib, mode)}: min {statistics.median(r['min_ms'] for r in rs):.2f} ms, "
                        f"max {statistics.median(r['max_ms'] for r in rs):.2f} ms (medians over runs)"
                    )
    for lib in libs:
        if lib != "zizq" and lib in info:
            bulk = info[lib].get("bulk") or "none"
            out.append(f"{_lib_label(lib, None)}: worker = {info[lib]['worker']}; batch API = {bulk}")
        if lib != "zizq" and process_jobs.get(lib, jobs) != jobs and "process" in workloads:
            out.append(
                f"{_lib_label(lib, None)}: process ran {process_jobs[lib]:,} jobs, not {jobs:,} "
                "(a fork per job; the full count would not fit the time budget)"
            )
    for key, rs in sorted(results.items(), key=lambda kv: str(kv[0])):
        for r in rs:
            for warning in r.get("warnings") or ():
                out.append(f"warning, {_lib_label(key[0], key[1])} {key[2]}: {warning}")
    for (lib, mode, workload), whys in sorted(failed.items(), key=lambda kv: str(kv[0])):
        passed = len(results.get((lib, mode, workload), ()))
        for why in sorted(set(whys)):
            out.append(
                f"FAILED {_lib_label(lib, mode)} {workload} ({whys.count(why)} of {len(whys) + passed} runs): {why}"
            )
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=None, help="runs per cell; the median is reported (3)")
    p.add_argument("--jobs", type=int, default=None, help="jobs per workload (10000); latency always uses 200")
    p.add_argument("--only", default=None, help="comma-separated workloads: " + ",".join(WORKLOADS))
    p.add_argument("--libs", default=None, help="comma-separated libraries (all): " + ",".join(LIBS))
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run, 2,000 jobs")
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin redis-server to the first CPU and the benchmark processes to the rest (for machines with 4+ CPUs)",
    )
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return args
    args.runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    args.jobs = args.jobs if args.jobs is not None else (2000 if args.quick else 10_000)
    if args.runs < 1 or args.jobs < 1:
        p.error("--runs and --jobs must be at least 1")
    args.workloads = list(WORKLOADS)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - set(WORKLOADS))
        if unknown:
            p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
        args.workloads = [w for w in WORKLOADS if w in wanted]
    args.libs_wanted = []
    if args.libs:
        args.libs_wanted = [x.strip() for x in args.libs.split(",") if x.strip()]
        unknown = sorted(set(args.libs_wanted) - set(LIBS))
        if unknown:
            p.error(f"unknown librar(y/ies) {', '.join(unknown)}; choose from {', '.join(LIBS)}")
    return args


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def build_plan(
    args: argparse.Namespace, libs: list[str], info: dict[str, dict[str, Any]]
) -> list[tuple[int, str, str, str | None]]:
    """(run, workload, library, zizq hot path) in the order they run: run by
    run, so drift on the machine spreads over every library; within a run
    and workload the library order alternates (and zizq's ext/pure order
    too), so no one always goes first."""
    plan = []
    for run in range(args.runs):
        for workload in args.workloads:
            cells: list[tuple[str, str | None]] = []
            for lib in libs:
                if lib == "zizq":
                    if workload in MODELESS:
                        cells.append(("zizq", None))
                    else:
                        cells.extend(("zizq", m) for m in (MODES if run % 2 == 0 else MODES[::-1]))
                elif workload in PEER_WORKLOADS and (lib, workload) not in SAME_AS:
                    if workload == "enqueue_bulk" and not info.get(lib, {}).get("bulk"):
                        continue  # no batch API: the table says "none"
                    cells.append((lib, None))
            if run % 2:
                cells.reverse()
            plan.extend((run, workload, lib, mode) for lib, mode in cells)
    return plan


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_interrupt)
    started = time.monotonic()
    when = dt.datetime.now(dt.UTC)
    libs = list(LIBS)
    if args.libs_wanted:
        libs = [lib for lib in LIBS if lib in args.libs_wanted]
    failed: dict[Key, list[str]] = {}
    info: dict[str, dict[str, Any]] = {}
    py: Path | None = None
    if any(lib != "zizq" for lib in libs):
        py = ensure_peers_venv()
        for lib in [lib for lib in libs if lib != "zizq"]:
            try:
                info[lib] = peer_info(py, lib)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                print(f"{lib}: cannot be imported in {PEERS_VENV}: {exc}", file=sys.stderr, flush=True)
                for workload in args.workloads:
                    if workload in PEER_WORKLOADS:
                        failed[(lib, None, workload)] = [f"cannot be imported: {exc}"]
    if "zizq" in libs:
        info["zizq"] = {"version": _zizq_version()}
    process_jobs = {"rq-fork": max(1, args.jobs // RQ_FORK_PROCESS_DIVISOR)}
    load_before = os.getloadavg()
    redis_cpus, bench_cpus = pinning(args.pin)
    server = RedisServer(redis_cpus)
    results: dict[Key, list[dict[str, Any]]] = {}
    skip = set(failed)  # the libraries that could not even be imported
    try:
        plan = build_plan(args, libs, info)
        for i, (run, workload, lib, mode) in enumerate(plan, 1):
            key: Key = (lib, mode, workload)
            if key in skip:
                continue  # timed out or cannot run: do not spend the time again
            jobs = LATENCY_JOBS if workload == "latency" else args.jobs
            if workload == "process":
                jobs = process_jobs.get(lib, jobs)
            try:
                if lib == "zizq":
                    result = run_child(server, workload, mode, jobs, bench_cpus)
                else:
                    assert py is not None
                    result = run_peer_child(server, py, lib, workload, jobs, bench_cpus)
            except ChildFailed as exc:
                failed.setdefault(key, []).append(str(exc))
                if exc.timed_out:
                    skip.add(key)
                print(
                    f"[{i:>3}/{len(plan)}] {workload:<14} {_lib_label(lib, mode):<17} run {run + 1}: FAILED {exc}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            results.setdefault(key, []).append(result)
            print(
                f"[{i:>3}/{len(plan)}] {workload:<14} {_lib_label(lib, mode):<17} run {run + 1}: "
                f"{_summary(workload, result)}",
                file=sys.stderr,
                flush=True,
            )
    except KeyboardInterrupt:
        print("\ninterrupted; stopping redis-server and every child", file=sys.stderr)
        return 130
    finally:
        server.stop()

    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    peer_versions = "; ".join(
        f"{lib} {info[lib]['version']}" for lib in libs if lib != "zizq" and lib in info and lib != "rq-fork"
    )
    peer_env = next((i for lib, i in info.items() if lib != "zizq"), None)
    out = [
        f"zizq and its peers, {when:%Y-%m-%d %H:%M} UTC: {args.runs} run(s) per cell, median shown; "
        f"{args.jobs:,} jobs per workload ({LATENCY_JOBS} for latency)",
        "",
        *(f"{k:<13} {v}" for k, v in machine()),
        f"{'zizq':<13} "
        + "; ".join(sorted({r["zizq"] for (lib, _, _), rs in results.items() if lib == "zizq" for r in rs})),
        *(
            [
                f"{'peers':<13} {peer_versions}",
                f"{'peers env':<13} {PEERS_VENV.relative_to(BENCH.parent)}: CPython {peer_env['python']}, "
                f"redis-py {peer_env['redis']}, hiredis {peer_env['hiredis']}",
            ]
            if peer_env
            else []
        ),
        f"{'pinning':<13} "
        + (
            f"redis-server on CPU {sorted(redis_cpus)}, benchmark on CPUs {sorted(bench_cpus or ())}"
            if redis_cpus
            else "none (the OS scheduler places every process)"
        ),
        f"{'load average':<13} {load_before[0]:.2f} at start, {load_after[0]:.2f} at end "
        "(1 min; anything else running skews the numbers)",
        "",
    ]
    compared = [w for w in args.workloads if w in PEER_WORKLOADS or w == "limits"]
    if any(w in PEER_WORKLOADS for w in compared):
        out += [
            *_render(
                compare_rows(libs, compared, results, failed, info, process_jobs, args.jobs),
                right_from=2,
                header_rows=2,
            ),
            "",
            "none = no batch enqueue API; '= rq' = the same enqueue code as the rq row; "
            "process = one worker process at concurrency 10 (see the notes for each library's set-up);",
            "(k/n FAILED) = k of n runs failed a check (reason in the notes), the value is the median of the others.",
            "",
            *ratio_lines(libs, compared, results, failed),
            "",
        ]
    if "zizq" in libs:
        out += [
            "zizq alone: Cython extension against the pure-Python twin",
            "",
            *zizq_table(results, failed, args.workloads),
            "",
            "ratio = extension / pure: above 1 is better for jobs/s, below 1 is better for ms, µs and bytes.",
        ]
        if "limits" in args.workloads:
            for workload, metric, how in (
                ("enqueue_single", "single_jobs_per_s", "one EVALSHA per job"),
                ("enqueue_bulk", "batch_jobs_per_s", f"one EVALSHA per {CHUNK:,} jobs"),
            ):
                floor = _median(results, ("zizq", None, "limits"), metric)
                got = [_median(results, ("zizq", m, workload), "jobs_per_s") for m in MODES]
                if floor and None not in got and workload in args.workloads:
                    out.append(
                        f"{workload} reaches {got[0] / floor:.0%} (ext) / {got[1] / floor:.0%} (pure) "  # type: ignore[operator]
                        f"of plain redis-py with {how}"
                    )
    out += [
        "",
        *notes(results, failed, args.workloads, libs, info, process_jobs, args.jobs, args.runs),
        f"total time {elapsed:.0f} s",
    ]
    print("\n".join(out))
    return 1 if failed else 0


def _zizq_version() -> str:
    try:
        return metadata.version("zizq")
    except metadata.PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())

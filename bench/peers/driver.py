"""One workload, one peer library, one run: the child side of bench/run.py
for the peers. Runs with bench/.venv-peers/bin/python, from bench/:

    python -m peers.driver --lib arq --workload process --url redis://... --jobs 10000

(run as a module from bench/, so that bench/peers/arq.py is ``peers.arq``
and ``import arq`` still finds the library). Prints one result line.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from importlib import metadata
from typing import Any

import redis

from peers.common import TEXT, TRACKER, WARNINGS, check, items, ping_rtt_us, stored_memory

RESULT_MARK = "ZIZQ-BENCH-RESULT "
LATENCY_GAP_S = 0.005
IDLE_S = 0.5

# Table key -> (adapter module, variant). Both RQ rows share one adapter.
LIBS: dict[str, tuple[str, str | None]] = {
    "arq": ("peers.arq", None),
    "saq": ("peers.saq", None),
    "rq": ("peers.rq", "simple"),
    "rq-fork": ("peers.rq", "fork"),
    "dramatiq": ("peers.dramatiq", None),
    "celery": ("peers.celery", None),
    "huey": ("peers.huey", None),
    "taskiq": ("peers.taskiq", None),
    "bullmq": ("peers.bullmq", None),
}


def load(lib: str) -> Any:
    module, _ = LIBS[lib]
    return importlib.import_module(module)


def _warm(adapter: Any) -> int:
    """Open connections and load scripts through the same calls the clock
    will see; returns how many jobs that left waiting."""
    adapter.enqueue_single([{"n": -1, "s": TEXT}])
    if adapter.BULK:
        adapter.enqueue_bulk([{"n": -2, "s": TEXT}, {"n": -3, "s": TEXT}])
        return 3
    return 1


def _enqueue(adapter: Any, url: str, n: int, bulk: bool) -> dict[str, Any]:
    check(not bulk or adapter.BULK is not None, "the library has a batch API")
    warm = _warm(adapter)
    check(adapter.waiting() == warm, f"{warm} warm-up jobs waiting")
    payloads = items(n)
    t0 = time.perf_counter()
    if bulk:
        adapter.enqueue_bulk(payloads)
    else:
        adapter.enqueue_single(payloads)
    elapsed = time.perf_counter() - t0
    got = adapter.waiting()
    check(got == n + warm, f"{got - warm} of {n} jobs waiting after the enqueue")
    return {"jobs_per_s": n / elapsed, "seconds": elapsed}


def w_enqueue_single(adapter: Any, url: str, n: int) -> dict[str, Any]:
    return _enqueue(adapter, url, n, bulk=False)


def w_enqueue_bulk(adapter: Any, url: str, n: int) -> dict[str, Any]:
    return _enqueue(adapter, url, n, bulk=True)


def w_memory(adapter: Any, url: str, n: int) -> dict[str, Any]:
    warm = _warm(adapter)
    r = redis.Redis.from_url(url)
    payloads = items(n)
    before = stored_memory(r.info("memory"))
    if adapter.BULK:
        adapter.enqueue_bulk(payloads)
    else:
        adapter.enqueue_single(payloads)
    after = stored_memory(r.info("memory"))
    got = adapter.waiting()
    check(got == n + warm, f"{got - warm} of {n} jobs waiting")
    r.close()
    return {"bytes_per_job": (after - before) / n}


def _check_all_ran(n: int) -> None:
    seen = TRACKER.seen
    check(len(seen) == n, f"{len(seen)} of {n} jobs ran")
    check(set(seen) == set(range(n)), "every job ran (each payload's n seen)")
    check(TRACKER.calls == n, f"{TRACKER.calls} handler calls for {n} jobs (a job ran twice)")


def w_process(adapter: Any, url: str, n: int) -> dict[str, Any]:
    payloads = items(n)
    if adapter.BULK:
        adapter.enqueue_bulk(payloads)
    else:
        adapter.enqueue_single(payloads)
    check(adapter.waiting() == n, f"{n} jobs waiting before the worker starts")
    adapter.prepare_worker()
    TRACKER.reset(n)
    t0 = time.perf_counter()
    adapter.run_worker(TRACKER.done)
    check(TRACKER.t_done is not None, "the worker finished the jobs")
    elapsed = TRACKER.t_done - t0  # type: ignore[operator]
    _check_all_ran(n)
    left = adapter.waiting()
    check(left == 0, f"{left} jobs still waiting after the worker stopped")
    return {"jobs_per_s": n / elapsed, "seconds": elapsed}


def _percentile(sorted_values: list[float], q: float) -> float:
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def w_latency(adapter: Any, url: str, n: int, lib: str) -> dict[str, Any]:
    adapter.prepare_worker()
    TRACKER.reset(n)
    problems: list[str] = []
    producer: list[subprocess.Popen[bytes]] = []

    def produce() -> None:
        try:
            time.sleep(IDLE_S)  # let the worker find nothing and go idle
            if TRACKER.calls:
                problems.append("the worker ran jobs before any was enqueued")
                return
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "peers.driver",
                    "--lib",
                    lib,
                    "--workload",
                    "latency_producer",
                    "--url",
                    url,
                    "--jobs",
                    str(n),
                ],
                stdout=subprocess.PIPE,
            )
            producer.append(proc)
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                problems.append(f"the latency producer exited with {proc.returncode}")
            elif int(out.decode().split()[-1]) != n:
                problems.append(f"the producer enqueued {out.decode().split()[-1]} jobs, not {n}")
        except Exception as exc:  # reported below, after the worker stops
            problems.append(f"producer: {exc!r}")
        finally:
            if problems:
                TRACKER.done.set()  # stop waiting: the run has failed

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        adapter.run_worker(TRACKER.done)
    finally:
        for proc in producer:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    thread.join(30)
    check(not problems, "; ".join(problems))
    _check_all_ran(n)
    ms = sorted(TRACKER.seen.values())
    return {"p50_ms": _percentile(ms, 50), "p99_ms": _percentile(ms, 99), "min_ms": ms[0], "max_ms": ms[-1]}


def w_latency_producer(adapter: Any, url: str, n: int) -> None:
    count = 0

    def paced() -> Any:
        nonlocal count
        start = time.monotonic() + 0.05
        for i in range(n):
            pause = start + i * LATENCY_GAP_S - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            count += 1
            yield {"n": i, "s": TEXT, "t": time.time()}  # stamped just before the library call

    adapter.enqueue_single(paced())
    print(count)


def worker_note(adapter: Any, variant: str | None) -> str:
    note = adapter.WORKER
    return note[variant] if isinstance(note, dict) else note


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "missing"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lib", required=True, choices=sorted(LIBS))
    p.add_argument("--workload", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--jobs", type=int, required=True)
    p.add_argument("--versions", action="store_true")
    args = p.parse_args()
    adapter = load(args.lib)
    if args.versions:
        print(
            RESULT_MARK
            + json.dumps(
                {
                    "version": version(adapter.DIST),
                    "redis": version("redis"),
                    "hiredis": version("hiredis"),
                    "python": sys.version.split()[0],
                    "bulk": adapter.BULK,
                    "worker": worker_note(adapter, LIBS[args.lib][1]),
                }
            ),
            flush=True,
        )
        return 0
    rtt = ping_rtt_us(args.url) if args.workload != "latency_producer" else 0.0
    adapter.setup(args.url, LIBS[args.lib][1])
    try:
        if args.workload == "latency_producer":
            w_latency_producer(adapter, args.url, args.jobs)
            return 0
        if args.workload == "latency":
            result = w_latency(adapter, args.url, args.jobs, args.lib)
        else:
            result = {
                "enqueue_single": w_enqueue_single,
                "enqueue_bulk": w_enqueue_bulk,
                "process": w_process,
                "memory": w_memory,
            }[args.workload](adapter, args.url, args.jobs)
    finally:
        with contextlib.suppress(Exception):
            adapter.close()
    result["rtt_us"] = rtt
    result["warnings"] = WARNINGS
    result["version"] = version(adapter.DIST)
    print(RESULT_MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    try:
        code = main()
    except BaseException:  # a failed check, a library error, Ctrl-C
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Some libraries leave non-daemon threads behind after a stop; the result
    # is printed and checked, so do not wait for them.
    os._exit(code)

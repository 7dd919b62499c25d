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
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import MODES, BenchServer, ChildFailed, pinning, run_child
from peer_env import (
    LIBS,
    PEER_WORKLOADS,
    PEERS_VENV,
    RQ_FORK_PROCESS_DIVISOR,
    SAME_AS,
    ensure_peers_venv,
    peer_info,
    run_peer_child,
)
from report import MODELESS, Key, full_report, lib_label, summary, zizq_version
from workloads import CHILDREN, LATENCY_JOBS, WORKLOADS, child_main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=None, help="runs per cell; the median is reported (3)")
    p.add_argument("--jobs", type=int, default=None, help="jobs per workload (10000); latency always uses 200")
    p.add_argument("--only", default=None, help="comma-separated workloads: " + ",".join(WORKLOADS))
    p.add_argument("--libs", default=None, help="comma-separated libraries (all): " + ",".join(LIBS))
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run, 2,000 jobs")
    p.add_argument("--big", action="store_true", help="add the 1,000,000-waiting-jobs point to the cost curves")
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
        info["zizq"] = {"version": zizq_version()}
    process_jobs = {"rq-fork": max(1, args.jobs // RQ_FORK_PROCESS_DIVISOR)}
    load_before = os.getloadavg()
    redis_cpus, bench_cpus = pinning(args.pin)
    server = BenchServer(redis_cpus)
    results: dict[Key, list[dict[str, Any]]] = {}
    skip = set(failed)  # the libraries that could not even be imported
    try:
        plan = build_plan(args, libs, info)
        for i, (run, workload, lib, mode) in enumerate(plan, 1):
            key: Key = (lib, mode, workload)
            if key in skip:
                continue  # timed out or cannot run: do not spend the time again
            jobs = LATENCY_JOBS if workload == "latency" else args.jobs
            if workload == "curves":
                jobs = 1_000_000 if args.big else 10_000  # 1,000,000 adds the 10⁶ point
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
                    f"[{i:>3}/{len(plan)}] {workload:<14} {lib_label(lib, mode):<17} run {run + 1}: FAILED {exc}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            results.setdefault(key, []).append(result)
            print(
                f"[{i:>3}/{len(plan)}] {workload:<14} {lib_label(lib, mode):<17} run {run + 1}: "
                f"{summary(workload, result)}",
                file=sys.stderr,
                flush=True,
            )
    except KeyboardInterrupt:
        print("\ninterrupted; stopping redis-server and every child", file=sys.stderr)
        return 130
    finally:
        server.close()

    elapsed = time.monotonic() - started
    load_after = os.getloadavg()
    out = full_report(
        args,
        when,
        libs,
        results,
        failed,
        info,
        process_jobs,
        (redis_cpus, bench_cpus),
        (load_before, load_after),
        elapsed,
    )
    print("\n".join(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

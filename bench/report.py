"""The report: progress lines, the tables (zizq against its peers; zizq's
extension against its pure-Python twin), the ratios, the notes, and the
machine and versions they were measured on.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
from importlib import metadata
from typing import Any

from harness import BENCH, MODES
from peer_env import PEER_WORKLOADS, PEERS_VENV, SAME_AS
from workloads import CHUNK, CURVE_OPS, CURVE_TAKE, LATENCY_JOBS, OTEL_SETTINGS, PROCESSES

# zizq-only table rows: label, workload, metric, unit, format. Ratio is ext/pure.
ROWS: list[tuple[str, str, str, str, str]] = [
    ("enqueue_single", "enqueue_single", "jobs_per_s", "jobs/s", "{:,.0f}"),
    ("enqueue_single: client CPU", "enqueue_single", "cpu_us", "µs/job", "{:.1f}"),
    ("enqueue_bulk (1,000/call)", "enqueue_bulk", "jobs_per_s", "jobs/s", "{:,.0f}"),
    ("enqueue_bulk: Redis time", "enqueue_bulk", "redis_us_per_job", "µs/job", "{:.2f}"),
    ("enqueue_bulk: Redis commands", "enqueue_bulk", "calls_per_job", "calls/job", "{:.2f}"),
    ("process (c=10, no-op async)", "process", "jobs_per_s", "jobs/s", "{:,.0f}"),
    ("process: worker CPU", "process", "cpu_us", "µs/job", "{:.1f}"),
    ("process: Redis time (take+ack)", "process", "redis_us_per_job", "µs/job", "{:.2f}"),
    ("process: Redis commands", "process", "calls_per_job", "calls/job", "{:.2f}"),
    ("handlers: no queue, 10 threads (INCR)", "handlers", "threads_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("handlers: bare take+ack, 10 threads", "handlers", "bare_threads_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("handlers: sync INCR (c=10)", "handlers", "sync_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("handlers: bare / 10 threads", "handlers", "bare_sync_ratio", "ratio", "{:.2f}"),
    ("handlers: sync / 10 threads", "handlers", "sync_ratio", "ratio", "{:.2f}"),
    ("handlers: no queue, 10 tasks (INCR)", "handlers", "tasks_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("handlers: bare take+ack, 10 tasks", "handlers", "bare_tasks_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("handlers: async INCR (c=10)", "handlers", "async_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("handlers: bare / 10 tasks", "handlers", "bare_async_ratio", "ratio", "{:.2f}"),
    ("handlers: async / 10 tasks", "handlers", "async_ratio", "ratio", "{:.2f}"),
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
    ("micro: enqueue call of 1 job", "micro", "enqueue_call_us", "µs/job", "{:.3f}"),
    ("micro: TakeResult.decode", "micro", "take_decode_us", "µs/job", "{:.3f}"),
    ("take+ack: no limit", "take", "none_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("take+ack: a limit never reached", "take", "limit_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("take+ack: 1 at a time per key, 1,000 keys", "take", "keys_jobs_per_s", "jobs/s", "{:,.0f}"),
    ("take+ack, Redis CPU: no limit", "take", "none_redis_us", "µs/job", "{:.1f}"),
    ("take+ack, Redis CPU: a limit never reached", "take", "limit_redis_us", "µs/job", "{:.1f}"),
    ("take+ack, Redis CPU: per key, 1,000 keys", "take", "keys_redis_us", "µs/job", "{:.1f}"),
    *[(f"process: zizq worker -p {p} (c=10)", "processes", f"p{p}_jobs_per_s", "jobs/s", "{:,.0f}") for p in PROCESSES],
    *[
        row
        for what in ("enqueue", "process")
        for setting in OTEL_SETTINGS
        for row in (
            (f"otel {setting}: {what}", "otel", f"{setting}_{what}_per_s", "jobs/s", "{:,.0f}"),
            (f"otel {setting}: {what} CPU", "otel", f"{setting}_{what}_cpu_us", "µs/job", "{:.1f}"),
        )
    ],
]
MODELESS = {"limits", "curves"}  # no ext/pure split: plain redis-py; Redis's own time

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


def summary(workload: str, result: dict[str, Any]) -> str:
    parts = [
        (fmt.format(result[metric]) + " " + unit)
        for _, w, metric, unit, fmt in ROWS
        if w == workload and metric in result
    ]
    if workload == "process" and "jobs_per_take" in result:
        parts.append(f"{result['jobs_per_take']:.1f} jobs/take, {result['jobs_per_ack']:.1f} jobs/ack")
    if workload == "curves":
        parts = [
            f"{k}: " + "/".join(f"{v:.1f}" for v in point.values()) + " µs"
            for k, point in result.items()
            if isinstance(point, dict)
        ]
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


def median(results: dict[Key, list[dict[str, Any]]], key: Key, metric: str) -> float | None:
    rs = results.get(key)
    return statistics.median(r[metric] for r in rs) if rs else None


def render(rows: list[tuple[str, ...]], right_from: int = 1, header_rows: int = 1) -> list[str]:
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
        value = median(results, key, metric)
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
    return render(rows)


CURVES = (
    ("waiting", "jobs waiting"),
    ("queues", "queues (one worker serves all)"),
    ("workers", "workers joined"),
    ("batch", "jobs a call (all three)"),
)


def curves_table(results: dict[Key, list[dict[str, Any]]]) -> list[str]:
    """The cost curves: Redis time per job of enqueue, take and ack at each
    point (medians over runs)."""
    rs = results.get(("zizq", None, "curves"))
    if not rs:
        return []
    out = [
        f"Cost curves: Redis time (INFO commandstats) per job, µs, over {CURVE_OPS:,} jobs at each point: "
        f"enqueue 100 a call, take and ack {CURVE_TAKE} a call",
        "",
    ]
    for prefix, label in CURVES:
        rows: list[tuple[str, ...]] = [(label, "enqueue", "take", "ack")]
        for point in sorted(
            {k for r in rs for k in r if k.startswith(prefix + "_")}, key=lambda k: int(k.split("_")[1])
        ):
            cells = [
                statistics.median(r[point][op] for r in rs if point in r) for op in ("enqueue_us", "take_us", "ack_us")
            ]
            rows.append((f"{int(point.split('_')[1]):,}", *(f"{c:,.2f}" for c in cells)))
        out += [*render(rows), ""]
    return out


def targets(results: dict[Key, list[dict[str, Any]]], libs: list[str]) -> list[str]:
    """Issue 14's targets, each a ratio or a figure of this run (medians),
    for the extension build."""

    def m(workload: str, metric: str, mode: str | None = "ext", lib: str = "zizq") -> float | None:
        return median(results, (lib, mode if lib == "zizq" else None, workload), metric)

    def best_peer(workload: str, metric: str) -> tuple[float | None, str]:
        found = [(v, lib) for lib in libs if lib != "zizq" for v in [m(workload, metric, None, lib)] if v is not None]
        return min(found) if found else (None, "-")

    rows: list[tuple[str, ...]] = [("target", "this run", "wanted", "met")]

    def add(label: str, value: float | None, wanted: float | None, fmt: str, higher: bool, want_text: str) -> None:
        if value is None or wanted is None:
            return
        met = value >= wanted if higher else value <= wanted
        rows.append((label, fmt.format(value), want_text, "yes" if met else "NO"))

    add("sync handler / 10 threads", m("handlers", "sync_ratio"), 0.8, "{:.2f}", True, ">= 0.80")
    add("async handler / 10 tasks", m("handlers", "async_ratio"), 0.9, "{:.2f}", True, ">= 0.90")
    peer_p50, peer = best_peer("latency", "p50_ms")
    add(
        f"latency p50, ms (best peer: {peer})",
        m("latency", "p50_ms"),
        peer_p50,
        "{:.2f}",
        False,
        f"<= {peer_p50 or 0:.2f}",
    )
    add("latency p99, ms", m("latency", "p99_ms"), 1.5, "{:.2f}", False, "<= 1.50")
    add("memory per waiting job, bytes", m("memory", "bytes_per_job"), 300, "{:.0f}", False, "<= 300")
    single, bulk = m("limits", "single_jobs_per_s", None), m("limits", "batch_jobs_per_s", None)
    got_single, got_bulk = m("enqueue_single", "jobs_per_s"), m("enqueue_bulk", "jobs_per_s")
    if single and got_single:
        add("enqueue_single / EVALSHA limit", got_single / single, 0.9, "{:.2f}", True, ">= 0.90")
    if bulk and got_bulk:
        add("enqueue_bulk / EVALSHA-per-1,000 limit", got_bulk / bulk, 0.8, "{:.2f}", True, ">= 0.80")
    add("Redis µs per processed job (take+ack)", m("process", "redis_us_per_job"), 8, "{:.2f}", False, "<= 8")
    add("Redis µs per job, bulk enqueue", m("enqueue_bulk", "redis_us_per_job"), 3, "{:.2f}", False, "<= 3")
    if len(rows) == 1:
        return []
    return ["Targets (issue 14), zizq with the extension, medians of this run", "", *render(rows), ""]


def lib_label(lib: str, mode: str | None) -> str:
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
                value = median(results, key, metric)
                text = fmt.format(value) if value is not None else "-"
                cut = workload == "process" and process_jobs.get(lib, jobs) != jobs
                if cut and value is not None:
                    text += f" ({process_jobs[lib]:,} jobs)"
                if key in failed:  # a run failed a check: the cell says so, with the passing runs' median
                    runs = len(failed[key]) + len(results.get(key, ()))
                    text = "FAILED" if value is None else f"{text} ({len(failed[key])}/{runs} FAILED)"
                cells.append(text)
        rows.append((lib_label(lib, mode), version, *cells))
    if "limits" in workloads and {"enqueue_single", "enqueue_bulk"} & {c[2] for c in cols}:
        single = median(results, ("zizq", None, "limits"), "single_jobs_per_s")
        batch = median(results, ("zizq", None, "limits"), "batch_jobs_per_s")
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
        mine = median(results, ("zizq", "ext", workload), metric)
        scored = [(v, lib) for lib in peers if (v := median(results, (lib, None, workload), metric)) is not None]
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
                lib_label(who, None) + mark,
                f"{factor:.2f}x {'faster' if higher else 'lower'}"
                if factor >= 1
                else f"{1 / factor:.2f}x {'slower' if higher else 'higher'}",
            )
        )
    if "limits" in workloads:
        for workload, metric in (("enqueue_single", "single_jobs_per_s"), ("enqueue_bulk", "batch_jobs_per_s")):
            mine = median(results, ("zizq", "ext", workload), metric="jobs_per_s")
            floor = median(results, ("zizq", None, "limits"), metric)
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
    return render(rows, right_from=1) if len(rows) > 1 else []


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
                        f"latency {lib_label(lib, mode)}: min {statistics.median(r['min_ms'] for r in rs):.2f} ms, "
                        f"max {statistics.median(r['max_ms'] for r in rs):.2f} ms (medians over runs)"
                    )
    for lib in libs:
        if lib != "zizq" and lib in info:
            bulk = info[lib].get("bulk") or "none"
            out.append(f"{lib_label(lib, None)}: worker = {info[lib]['worker']}; batch API = {bulk}")
        if lib != "zizq" and process_jobs.get(lib, jobs) != jobs and "process" in workloads:
            out.append(
                f"{lib_label(lib, None)}: process ran {process_jobs[lib]:,} jobs, not {jobs:,} "
                "(a fork per job; the full count would not fit the time budget)"
            )
    for key, rs in sorted(results.items(), key=lambda kv: str(kv[0])):
        for r in rs:
            for warning in r.get("warnings") or ():
                out.append(f"warning, {lib_label(key[0], key[1])} {key[2]}: {warning}")
    for (lib, mode, workload), whys in sorted(failed.items(), key=lambda kv: str(kv[0])):
        passed = len(results.get((lib, mode, workload), ()))
        for why in sorted(set(whys)):
            out.append(
                f"FAILED {lib_label(lib, mode)} {workload} ({whys.count(why)} of {len(whys) + passed} runs): {why}"
            )
    return out


def full_report(
    args: argparse.Namespace,
    when: dt.datetime,
    libs: list[str],
    results: dict[Key, list[dict[str, Any]]],
    failed: dict[Key, list[str]],
    info: dict[str, dict[str, Any]],
    process_jobs: dict[str, int],
    pins: tuple[set[int] | None, set[int] | None],
    loads: tuple[tuple[float, float, float], tuple[float, float, float]],
    elapsed: float,
) -> list[str]:
    """The lines the run prints on stdout: the header (machine, versions,
    pinning, load average), the tables, the ratios and the notes."""
    redis_cpus, bench_cpus = pins
    load_before, load_after = loads
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
            *render(
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
            "handlers: steady jobs/s (from the end of the first job) of a handler doing one INCR, at "
            "concurrency 10, beside the same body run by 10 plain threads / 10 asyncio tasks with no queue.",
            "bare take+ack: the same body fed by a loop of zizq's take and ack scripts through redis-py and nothing "
            "else (no heartbeat, no bookkeeping), holding 20 jobs as the worker does: the most a worker on redis-py "
            "could reach with that prefetch.",
            "",
            *curves_table(results),
            *targets(results, libs),
        ]
        if "limits" in args.workloads:
            for workload, metric, how in (
                ("enqueue_single", "single_jobs_per_s", "one EVALSHA per job"),
                ("enqueue_bulk", "batch_jobs_per_s", f"one EVALSHA per {CHUNK:,} jobs"),
            ):
                floor = median(results, ("zizq", None, "limits"), metric)
                got = [median(results, ("zizq", m, workload), "jobs_per_s") for m in MODES]
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
    return out


def zizq_version() -> str:
    try:
        return metadata.version("zizq")
    except metadata.PackageNotFoundError:
        return "?"

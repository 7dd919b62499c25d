"""The invariants of the fault-history checker (tests/history.py), each a
small function from the evidence of one run to a list of violations (empty:
it holds). Events are those tests/history_app.py and tests/history.py record;
times are time.time() seconds.
"""

from __future__ import annotations

import datetime
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import redis

Event = dict[str, Any]
Record = dict[str, Any]

# The status codes of a stored job record (docs/protocol/keys.md, §2.1).
READY, SCHEDULED, IN_FLIGHT, COMPLETED, DEAD = 1, 2, 3, 4, 5
WAITING = 6  # for its dependencies (depends_on)
IN_SCOPE = {"queued": {READY, SCHEDULED}, "active": {READY, SCHEDULED, IN_FLIGHT}, "exists": {1, 2, 3, 4, 5}}
# Faults that hit every worker at once (the proxy, or Redis itself).
GLOBAL_FAULTS = {"restart", "stall", "cut", "failover", "sentinel", "cluster"}
# Faults that can lose writes Redis acknowledged: a Sentinel or Cluster
# failover promotes a replica that may lack the last acks and failures (only
# enqueues wait for a replica), so those jobs run again and finish twice.
LOSSY_FAULTS = {"sentinel", "cluster"}
# The "promotion" events (tests/history.py) count as such faults too: the
# sentinels or the cluster also fail over on their own, when the master
# stalls past their timeout of 1 s on a busy host (seed 215: acks lost at
# 4 s into the run, after the planned failover had ended at 2.3 s).
ACKED = re.compile(r"^(\S+ \S+) .*acked \d+ jobs: (.*)$", re.M)
# A won cron claim (zizq/worker/cron_tick.py, DEBUG): the entry, the due time
# it took, the job, and when (Redis's clock, ms) the claim read the schedule.
CLAIMED = re.compile(r"cron entry (\S+): run due at (\d+) claimed, .*?job (\S+) \(read at (\d+)\)")
DECLARED_LOST = re.compile(r"worker (\S+) was declared lost", re.M)


@dataclass
class Snapshot:
    """The namespace's job records and indexes, read in one MULTI."""

    records: dict[str, Record]
    indexes: dict[str, set[str]]  # "ready:<queue>", "scheduled", "inflight", "completed", "dead", "worker:<id>"


def snapshot(conn: redis.Redis, key: Callable[..., str]) -> Snapshot:
    """Read every record and index of the namespace whose keys ``key`` makes."""
    queues = sorted(text(q) for q in conn.smembers(key("queues")))
    holders = sorted(text(k)[len(key("")) :] for k in conn.scan_iter(match=key("worker", "*"), count=1000))
    names = [f"ready:{q}" for q in queues] + ["scheduled", "inflight", "completed", "dead", "waiting"]
    pipe = conn.pipeline(transaction=True)
    pipe.hgetall(key("jobs"))
    for name in names:
        pipe.zrange(key(name), 0, -1)
    for name in holders:
        pipe.smembers(key(name))
    replies = pipe.execute()
    records = {text(k): msgpack.unpackb(v) for k, v in replies[0].items()}
    indexes = {name: {text(m) for m in members} for name, members in zip(names + holders, replies[1:], strict=True)}
    return Snapshot(records, indexes)


def text(value: object) -> str:
    assert isinstance(value, bytes), value
    return value.decode()


@dataclass
class Evidence:
    """What one run left: its history, the final state, the worker logs."""

    events: list[Event]
    final: Snapshot
    errors: dict[str, list[dict[str, Any]]]  # job id -> its error records
    logs: str  # every worker's log, DEBUG level
    quiet: bool  # nothing was ready, scheduled or in flight at the end

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["e"] == kind]

    def summary(self) -> str:
        kinds = Counter(e["e"] for e in self.events)
        statuses = Counter(r["s"] for r in self.final.records.values())
        lost = len(set(DECLARED_LOST.findall(self.logs)))
        ticks = sum(r.get("t") == "tick" for r in self.final.records.values())
        pending = [f"{i} ({STATUS_NAMES[r['s']]})" for i, r in self.final.records.items() if r["s"] < COMPLETED]
        return (
            f"{kinds['start']} handler starts, {len(self.of('fault'))} faults, {kinds['suicide']} suicides, "
            f"{lost} leases lost, {ticks} cron runs; end: {statuses[COMPLETED]} completed, {statuses[DEAD]} dead, "
            f"{len(pending)} pending" + ("" if self.quiet else f" (not quiet at the end: {', '.join(pending[:5])})")
        )


STATUS_NAMES = {READY: "ready", SCHEDULED: "scheduled", IN_FLIGHT: "in_flight", COMPLETED: "completed", DEAD: "dead"}
STATUS_NAMES[WAITING] = "waiting"


def in_scope(record: Record | None) -> bool:
    """Whether a job record holds its unique key now (its status is within
    the key's scope)."""
    return record is not None and bool(record.get("uk")) and record["s"] in IN_SCOPE[record.get("uw", "queued")]


def _unchanged(before: Record, after: Record) -> bool:
    """The job was not taken, failed, recovered or retried in between:
    status, attempts, last take and recoveries are the same."""
    return all(before.get(f) == after.get(f) for f in ("s", "a", "da", "rv"))


def unique_conflicts(before: dict[str, Record], after: dict[str, Record]) -> list[str]:
    """Jobs created between two atomic reads of the keyed records while
    another job held their unique key within its scope all along (in scope
    in both reads and unchanged): an enqueue that should have been a
    duplicate. (Two holders alone are no violation: a job enqueued while the
    first was in flight keeps the key when the first is retried.)"""
    out = []
    for new_id, new in after.items():
        if new_id in before or not in_scope(new):
            continue
        for old_id, old in before.items():
            if old.get("uk") == new["uk"] and in_scope(old) and in_scope(after.get(old_id)):
                if _unchanged(old, after[old_id]):
                    out.append(
                        f"job {new_id} was created with key {new['uk']!r} while job {old_id} "
                        f"({STATUS_NAMES[old['s']]}) held it"
                    )
    return out


# -- the invariants ------------------------------------------------------------


def nothing_lost(ev: Evidence) -> list[str]:
    """Every job whose enqueue was acknowledged still has a record at the end:
    completed, dead, or pending (retention keeps finished jobs an hour)."""
    out = []
    for e in ev.of("enqueue"):
        for job_id in e["ids"]:
            if job_id not in ev.final.records:
                out.append(f"nothing lost: job {job_id}, acknowledged at {e['t']:.3f}, is in no state at the end")
    return out


def _losses(ev: Evidence) -> tuple[dict[int, list[tuple[float, float]]], list[tuple[float, float]], set[str]]:
    """When each worker pid was stopped or died (intervals), the intervals of
    faults that hit every worker, and the worker ids declared lost."""
    per_pid: dict[int, list[tuple[float, float]]] = defaultdict(list)
    shared = []
    for f in ev.of("fault"):
        if f["kind"] in ("kill", "stop"):
            per_pid[f["target"]].append((f["start"], f["end"]))
        elif f["kind"] in GLOBAL_FAULTS:
            shared.append((f["start"], f["end"]))
    shared += [(p["t"], p["t"]) for p in ev.of("promotion")]
    for s in ev.of("suicide"):
        per_pid[s["pid"]].append((s["t"], s["t"]))
    return per_pid, shared, set(DECLARED_LOST.findall(ev.logs))


def _overlaps(intervals: Sequence[tuple[float, float]], start: float, end: float) -> bool:
    return any(a <= end and b >= start for a, b in intervals)


def started_only_when_held(ev: Evidence) -> list[str]:
    """A run of a job starts again (same attempt) only if the run before it
    was lost: its worker was killed or stopped, or Redis or the network
    failed, between the two starts, or its worker was declared lost. Any
    other second start is a worker starting a job it no longer held."""
    per_pid, shared, lost_ids = _losses(ev)
    runs: dict[str, list[Event]] = defaultdict(list)
    for s in ev.of("start"):
        runs[s["job"]].append(s)
    out = []
    for job_id, starts in runs.items():
        # In the order they happened: a worker stopped (SIGSTOP) between
        # taking the time of its start and recording it records it late (seed 263).
        starts.sort(key=lambda s: s["t"])
        for before, after in itertools.pairwise(starts):
            if before["attempt"] != after["attempt"]:
                continue
            window = (before["t"], after["t"])
            if _overlaps(per_pid[before["pid"]], *window) or _overlaps(shared, *window) or before["worker"] in lost_ids:
                continue
            out.append(
                f"started only when held: job {job_id} attempt {after['attempt']} started by worker {after['worker']} "
                f"at {after['t']:.3f}, {after['t'] - before['t']:.2f}s after worker {before['worker']} started it, "
                "and that worker was not lost in between (no kill, stop, Redis or network fault, no lost lease)"
                + (f"; worker {after['worker']} had been declared lost" if after["worker"] in lost_ids else "")
            )
    return out


def late_acks_fenced(ev: Evidence) -> list[str]:
    """Redis accepts at most one outcome per run of a job, and a finished job
    stays finished: one completion ack per job (from the workers' "acked"
    log lines), one recorded failure per attempt, and a job acked (or
    recorded dead) is completed (or dead) at the end. Anything else is a late
    ack that was not fenced, unless a fault that loses acknowledged writes
    (LOSSY_FAULTS, or a promotion) ended after the first outcome: that
    outcome was lost."""
    out = []
    final = {job_id: STATUS_NAMES[r["s"]] for job_id, r in ev.final.records.items()}
    lost_after = _lost_after(ev)
    acks: dict[str, list[float]] = defaultdict(list)
    for stamp, line in ACKED.findall(ev.logs):
        for i in line.split(","):
            if i.strip():
                acks[i.strip()].append(log_time(stamp))
    for job_id, times in acks.items():
        if len(times) > 1 and not lost_after(min(times)):
            out.append(f"late acks fenced: job {job_id} was acked {len(times)} times")
        if final.get(job_id, "completed") != "completed" and not lost_after(max(times)):
            out.append(f"late acks fenced: job {job_id} was acked as completed, and is {final[job_id]} at the end")
    failures: dict[tuple[str, int], list[float]] = defaultdict(list)
    for e in ev.of("end"):
        if e["outcome"] in ("failed", "dead"):
            failures[(e["job"], e["attempt"])].append(e["t"])
    for (job_id, attempt), times in failures.items():
        if len(times) > 1 and not lost_after(min(times)):
            out.append(f"late acks fenced: job {job_id} attempt {attempt} had {len(times)} failures recorded")
    for e in ev.of("end"):
        if e["outcome"] == "dead" and final.get(e["job"], "dead") != "dead" and not lost_after(e["t"]):
            out.append(f"late acks fenced: job {e['job']} was recorded dead, and is {final[e['job']]} at the end")
    return out


def _lost_after(ev: Evidence) -> Callable[[float], bool]:
    """Whether a write Redis acknowledged at time ``t`` may have been lost:
    a fault that loses acknowledged writes (LOSSY_FAULTS, or a promotion)
    ended at or after ``t``. Nothing else does: a restart comes back from
    its AOF (appendfsync always), the failover behind the proxy waits until
    the replica has every write, and a flush (SCRIPT FLUSH) drops the
    scripts, never data; those only delay calls, and excuse no outcome or
    claim made twice."""
    lossy = [f["end"] for f in ev.of("fault") if f["kind"] in LOSSY_FAULTS] + [p["t"] for p in ev.of("promotion")]
    return lambda t: any(end >= t for end in lossy)


def log_time(stamp: str) -> float:
    """A worker log line's time ("2026-12-07 10:10:32,898", local time) in
    seconds since the epoch."""
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def unique_keys_held_once(ev: Evidence) -> list[str]:
    """No enqueue makes a second holder of a unique key within its scope
    (as the observer saw in its atomic reads; see unique_conflicts)."""
    return [f"unique key held once: at {c['t']:.3f}, {c['conflict']}" for c in ev.of("unique")]


def cron_once(ev: Evidence) -> list[str]:
    """Each due time of the every-second cron entry is enqueued at most once:
    no two claims the workers logged (CLAIMED) took one due time of an
    entry, unless its first claim may have been lost (_lost_after). And
    the entry cannot have made more runs than there were seconds while it
    existed.

    The due time comes from the claim's log line, not from its job id's
    time: a claim makes the id after it read the schedule, and a reply that
    a stall, a stopped worker or a busy host held past a second's end puts
    the id of a late due time in the second where the next due time's claim
    follows at once (seed 2 on a loaded host: a claim read the schedule at
    .985 s into a second, after an outage, and took the run due 4 s before;
    the claim of the next due time made its id 22 ms after that one's)."""
    ticks = sorted(job_id for job_id, r in ev.final.records.items() if r.get("t") == "tick")
    window = ev.of("cron")
    if not window:
        return [f"cron once: {len(ticks)} cron runs, but no cron entry was made"] if ticks else []
    out = []
    seconds = int(window[-1]["end"]) - int(window[0]["start"]) + 1
    lost_after = _lost_after(ev)
    if len(ticks) > seconds and not lost_after(window[0]["start"]):
        out.append(f"cron once: {len(ticks)} runs in {seconds} seconds of an every-second entry")
    claims: dict[tuple[str, int], list[tuple[float, str]]] = defaultdict(list)
    for member, due, job_id, read in CLAIMED.findall(ev.logs):
        claims[(member, int(due))].append((int(read) / 1000, job_id))
    if ticks and not claims:
        out.append(f"cron once: {len(ticks)} cron runs, but no worker logged a claim (the evidence is missing)")
    for (member, due), made in sorted(claims.items()):
        made.sort()
        if len(made) > 1 and not lost_after(made[0][0]):
            jobs = ", ".join(job_id for _, job_id in made)
            out.append(f"cron once: the run of {member} due at {due} was claimed {len(made)} times (jobs {jobs})")
    return out


def worker_lost_only_after_start(ev: Evidence) -> list[str]:
    """A job fails as zizq.WorkerLost only for an attempt some handler had
    started: a job that never ran cannot be the poison pill."""
    started = {(s["job"], s["attempt"]) for s in ev.of("start")}
    out = []
    for job_id, errors in ev.errors.items():
        for error in errors:
            if error.get("error_type") == "zizq.WorkerLost" and (job_id, error["attempt"]) not in started:
                out.append(
                    f"WorkerLost only after a start: job {job_id} failed as zizq.WorkerLost at attempt "
                    f"{error['attempt']}, which no handler ever started"
                )
    return out


def records_match_indexes(ev: Evidence) -> list[str]:
    """At the end, each record is in exactly the index its status names (and,
    in flight, in its worker's set), and each index entry has such a record."""
    snap = ev.final
    out = []
    expected: dict[str, set[str]] = defaultdict(set)
    for job_id, r in snap.records.items():
        s = r["s"]
        names = {
            READY: [f"ready:{r.get('q', 'default')}"],
            SCHEDULED: ["scheduled"],
            IN_FLIGHT: ["inflight", f"worker:{r.get('w')}"],
            COMPLETED: ["completed"],
            DEAD: ["dead"],
            WAITING: ["waiting"],
        }[s]
        for name in names:
            expected[name].add(job_id)
    for name in sorted(set(expected) | set(snap.indexes)):
        has, want = snap.indexes.get(name, set()), expected.get(name, set())
        for job_id in sorted(want - has)[:5]:
            status = STATUS_NAMES[snap.records[job_id]["s"]]
            out.append(f"records match indexes: job {job_id} ({status}) is not in {name}")
        for job_id in sorted(has - want)[:5]:
            status = STATUS_NAMES[snap.records[job_id]["s"]] if job_id in snap.records else "no record"
            out.append(f"records match indexes: {name} lists job {job_id} ({status})")
    return out


def _first_ends(ev: Evidence, outcomes: tuple[str, ...]) -> dict[str, float]:
    """Per job, the time of its first handler end with one of ``outcomes``."""
    out: dict[str, float] = {}
    for e in ev.of("end"):
        if e.get("outcome") in outcomes:
            out.setdefault(e["job"], e["t"])
    return out


def _first_starts(ev: Evidence) -> dict[str, float]:
    out: dict[str, float] = {}
    for e in ev.of("start"):
        out.setdefault(e["job"], e["t"])
    return out


def dependencies_respected(ev: Evidence) -> list[str]:
    """A job of a chain starts only after the job before it completed (its
    first completed handler end); when that one ended dead, the job never
    starts and ends dead with the error type zizq.DependencyFailed."""
    out = []
    starts, completed = _first_starts(ev), _first_ends(ev, ("completed",))
    for e in ev.of("chain"):
        for parent, child in itertools.pairwise(e["ids"]):
            if child in starts and (parent not in completed or starts[child] < completed[parent]):
                out.append(
                    f"dependencies: job {child} started at {starts[child]:.3f} before job {parent}, "
                    f"which it depends on, completed ({completed.get(parent, 'never')})"
                )
            parent_record, child_record = ev.final.records.get(parent), ev.final.records.get(child)
            if ev.quiet and parent_record is not None and parent_record["s"] == DEAD:
                failed = any(r.get("error_type") == "zizq.DependencyFailed" for r in ev.errors.get(child, []))
                if child_record is None or child_record["s"] != DEAD or not failed:
                    status = "no record" if child_record is None else STATUS_NAMES[child_record["s"]]
                    out.append(
                        f"dependencies: job {parent} ended dead but job {child}, which depends on it, is {status}"
                    )
    return out


def batch_callbacks_once(ev: Evidence) -> list[str]:
    """A batch's callbacks: on_complete starts only after every member's
    handler ended for good (completed or dead); at the end on_complete
    exists, and on_success exists exactly when no member is dead."""
    out = []
    starts, ended = _first_starts(ev), _first_ends(ev, ("completed", "dead"))
    for e in ev.of("batch"):
        members, on_complete, on_success = e["members"], e["on_complete"], e["on_success"]
        if on_complete in starts:
            for m in members:
                if m in ended and starts[on_complete] < ended[m]:
                    out.append(
                        f"batches: on_complete {on_complete} of batch {e['batch']} started at "
                        f"{starts[on_complete]:.3f}, before member {m} ended at {ended[m]:.3f}"
                    )
        if not ev.quiet:
            continue
        records = ev.final.records
        dead = [m for m in members if m in records and records[m]["s"] == DEAD]
        if on_complete not in records:
            out.append(f"batches: batch {e['batch']} finished but its on_complete {on_complete} is not there")
        if (on_success in records) == bool(dead):
            out.append(
                f"batches: batch {e['batch']} has {len(dead)} dead members, and its on_success "
                f"{'ran' if on_success in records else 'did not run'}"
            )
    return out


INVARIANTS = (
    nothing_lost,
    started_only_when_held,
    late_acks_fenced,
    unique_keys_held_once,
    cron_once,
    worker_lost_only_after_start,
    records_match_indexes,
    dependencies_respected,
    batch_callbacks_once,
)


def check_all(ev: Evidence) -> list[str]:
    return [v for invariant in INVARIANTS for v in invariant(ev)]

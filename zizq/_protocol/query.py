"""Query and manage jobs: list, count, bulk patch/delete/retry, queues, reset.

A :class:`Filter` selects jobs (all given fields AND; OR within a set). The
scripts keep no index of every job by id, type or queue, only one sorted set
per state (and, for ready jobs, per queue), so a query walks those indexes in
bounded windows (``lua/query.lua``, at most 10,000 entries a call) and the
filters cost:

- ``status``: free, it picks which indexes are walked;
- ``queue``: free for ready jobs (``ready:<queue>``); for other states each
  walked job's record is read;
- ``id``: reads only those jobs;
- ``type``, ``priority``, ``ready_at``, ``attempts``: a record read per job of
  the walked indexes, in Lua;
- ``jq``: as those, and the payloads travel to the client, which runs jq
  (the ``jq`` package, ``pip install 'zizq[jq]'``).

Pages are in id order (creation order; SCRU128 ids sort by time). No index is
in id order, so each page walks the selected indexes once, reading a record
only for ids that can still make the page; a page costs O(jobs in the
walked indexes) cheap comparisons, spread over calls of 5,000 entries.

Every method is written once here, as a *plan*: a generator that yields
:class:`~zizq._protocol.call.Call` objects and receives their replies, which the sync
and async front doors drive (``drive`` and ``drive_async``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from zizq._protocol.call import Call, Value
from zizq._protocol.jobs import Core
from zizq._protocol.records import as_str, job_from_record
from zizq._protocol.scripts import script
from zizq.errors import ValidationError
from zizq.filters import Filter, job_id
from zizq.job import STATUSES, ErrorRecord, Job

T = TypeVar("T")
Plan = Generator[Call[Any], Any, T]

FINISHED = frozenset({"completed", "dead"})
INDEX_OF = {"scheduled": "scheduled", "in_flight": "inflight", "completed": "completed", "dead": "dead"}
DEFAULT_LIMIT = 50
MAX_LIMIT = 2000
WALK = 2000  # index entries a list or count call looks at (lua/query.lua takes at most 2000)
WALK_PAYLOADS = 1000  # ... when payloads travel back for jq
BATCH = 1000  # jobs a bulk call changes
MAX_QUEUES = 10_000


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of :meth:`Client.list_jobs`: the jobs (with payloads), and
    the cursor for the next page (pass it as ``after``), None at the end."""

    jobs: list[Job]
    next: str | None


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue with its job counts. ``ready`` is exact and cheap; the other
    counts are None unless asked for (they read every job not ready)."""

    name: str
    paused: bool
    ready: int
    scheduled: int | None = None
    in_flight: int | None = None
    completed: int | None = None
    dead: int | None = None


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts from the indexes alone (``lua/stats.lua``): jobs per state,
    workers holding a lease, and per queue (name order) ready jobs and
    whether it is paused. ``now`` is Redis's clock, ms."""

    now: int
    ready: int
    scheduled: int
    in_flight: int
    completed: int
    dead: int
    workers: int
    queues: dict[str, tuple[int, bool]]
    queue_count: int

    def count(self, status: str) -> int:
        return int(getattr(self, status))

    @classmethod
    def decode(cls, reply: list[Any]) -> Stats:
        queues = {}
        for i in range(7, len(reply), 3):
            queues[as_str(reply[i])] = (int(reply[i + 1]), bool(reply[i + 2]))
        return cls(
            now=int(reply[0]),
            ready=sum(n for n, _ in queues.values()),
            scheduled=int(reply[1]),
            in_flight=int(reply[2]),
            completed=int(reply[3]),
            dead=int(reply[4]),
            workers=int(reply[5]),
            queues=queues,
            queue_count=int(reply[6]),
        )


TALLY_MINUTE_MS = 60_000
TALLY_MINUTES = 60  # minutes lua/tally_read.lua reports, at most (the hashes live 65)


@dataclass(frozen=True, slots=True)
class Minute:
    """The attempts that ended in one minute of Redis time: ``start`` (ms
    since the epoch) and the counts of completed attempts, failed attempts
    whose job retries, and failed attempts whose job went dead."""

    start: int
    completed: int
    failed: int
    dead: int


@dataclass(frozen=True, slots=True)
class Throughput:
    """Ended attempts per minute (:meth:`Client.throughput`), the oldest
    minute first, the current one (still counting) last; ``now`` is
    Redis's clock, ms."""

    now: int
    minutes: tuple[Minute, ...]

    @property
    def completed(self) -> int:
        """Completed attempts over every minute."""
        return sum(m.completed for m in self.minutes)

    @property
    def failed(self) -> int:
        """Failed attempts (the job retries) over every minute."""
        return sum(m.failed for m in self.minutes)

    @property
    def dead(self) -> int:
        """Failed attempts that made their job dead, over every minute."""
        return sum(m.dead for m in self.minutes)

    @classmethod
    def decode(cls, reply: list[Any]) -> Throughput:
        first = int(reply[1])
        minutes = tuple(
            Minute((first + i // 3) * TALLY_MINUTE_MS, int(reply[i]), int(reply[i + 1]), int(reply[i + 2]))
            for i in range(2, len(reply), 3)
        )
        return cls(int(reply[0]), minutes)


@dataclass(frozen=True, slots=True)
class Walk:
    """What one lua/query.lua call returned."""

    next: int
    count: int
    jobs: list[Job]

    @classmethod
    def decode(cls, reply: list[Any]) -> Walk:
        jobs = [
            job_from_record(reply[i], reply[i + 1]) if reply[i + 1] else Job(as_str(reply[i]), "", "", 0, "ready", 0)
            for i in range(2, len(reply), 2)
        ]
        return cls(int(reply[0]), int(reply[1]), jobs)


class QueryCore:
    """Builds the query and management calls of one namespace (I/O-free)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def stats(self, most_queues: int = MAX_QUEUES) -> Call[Stats]:
        return Call(script("stats"), self.core.keys, [most_queues], Stats.decode)

    def throughput(self, minutes: int = TALLY_MINUTES) -> Call[Throughput]:
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= TALLY_MINUTES:
            raise ValidationError(f"minutes {minutes!r} is not a whole number in 1..{TALLY_MINUTES}")
        return Call(script("tally_read"), self.core.keys, [minutes], Throughput.decode)

    def walk(
        self,
        f: Filter,
        index: str,
        first: int,
        size: int,
        *,
        order: str = "asc",
        after: str = "",
        before: str = "",
        cap: int = 0,
        output: str = "jobs",
        statuses: frozenset[str] | None = None,
    ) -> Call[Walk]:
        args: list[Value] = ["walk", f.script_json(statuses), order, after, before, cap, output, index, first, size]
        return Call(script("query"), self.core.keys, args, Walk.decode)

    def by_ids(
        self,
        f: Filter,
        ids: Sequence[str],
        *,
        order: str = "asc",
        after: str = "",
        output: str = "jobs",
        statuses: frozenset[str] | None = None,
    ) -> Call[Walk]:
        args: list[Value] = ["ids", f.script_json(statuses), order, after, "", 0, output, *ids]
        return Call(script("query"), self.core.keys, args, Walk.decode)

    def bulk(
        self,
        action: str,
        f: Filter,
        statuses: frozenset[str] | None,
        index: str,
        ids: Sequence[str],
        changes: list[Value],
    ) -> Call[tuple[int, int]]:
        # A call id last (lua/includes/memo.lua): a batch whose reply was lost
        # is counted once when the call is sent again.
        args: list[Value] = [action, f.script_json(statuses), index, len(ids), *ids, *changes, self.core.ids.generate()]
        return Call(script("bulk"), self.core.keys, args, lambda r: (int(r[0]), int(r[1])))

    def queue_counts(self, index: str, first: int, size: int = WALK) -> Call[tuple[int, dict[str, int]]]:
        def decode(reply: list[Any]) -> tuple[int, dict[str, int]]:
            return int(reply[0]), {as_str(reply[i]): int(reply[i + 1]) for i in range(1, len(reply), 2)}

        return Call(script("queue_counts"), self.core.keys, [index, first, size], decode)

    def window(self, state: str, offset: int, count: int, extra: Sequence[str] = ()) -> Call[WindowPage]:
        """A page of ``state`` for ``zizq top`` (lua/window.lua); ``extra``:
        the queues to merge for ``ready``, the scan size for ``retries``."""
        return Call(script("window"), self.core.keys, [state, offset, count, *extra], WindowPage.decode)


@dataclass(frozen=True, slots=True)
class WindowRow:
    """A job in a :meth:`QueryCore.window`: its index score (priority,
    ready_at, dequeued_at or purge_at, ms) and its metadata (None if deleted
    meanwhile). For an in-flight job, ``worker`` holds it and ``running``
    says whether its handler runs (False: taken ahead, waiting; None: the
    worker does not say); for the ``retries`` and ``dead`` windows,
    ``last_error`` is its latest failure."""

    id: str
    score: int
    job: Job | None
    worker: str | None = None
    running: bool | None = None
    last_error: ErrorRecord | None = None


@dataclass(frozen=True, slots=True)
class WindowPage:
    """What :meth:`QueryCore.window` returned: the jobs in the state (for
    ``retries``, the scheduled jobs the scans walk), the offset of the next
    page (-1 at the end) and the rows."""

    total: int
    next: int
    rows: list[WindowRow]

    @classmethod
    def decode(cls, reply: list[Any]) -> WindowPage:
        rows = []
        for i in range(2, len(reply), 4):
            record, notes = reply[i + 2], _notes(reply[i + 3])
            rows.append(
                WindowRow(
                    as_str(reply[i]),
                    int(reply[i + 1]),
                    job_from_record(reply[i], record) if record else None,
                    notes.get("worker"),
                    notes.get("running"),
                    _last_error(notes.get("error")),
                )
            )
        return cls(int(reply[0]), int(reply[1]), rows)


def _notes(raw: bytes | str) -> dict[str, Any]:
    # An error record written by hand can make the notes unreadable: then
    # the row goes without them rather than break the window.
    try:
        notes = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return notes if isinstance(notes, dict) else {}


def _last_error(error: Any) -> ErrorRecord | None:
    try:
        return ErrorRecord.from_json(orjson.dumps(error)) if isinstance(error, dict) else None
    except (KeyError, ValueError, TypeError):
        return None


def _order(order: str) -> str:
    if order not in ("asc", "desc"):
        raise ValidationError(f"order {order!r} is not 'asc' or 'desc'")
    return order


def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit {limit!r} is not a whole number in 1..{MAX_LIMIT}")
    return limit


def _indexes(f: Filter, stats: Stats, statuses: frozenset[str] | None = None) -> list[str]:
    """The index keys a filter walks, ready queues first (name order)."""
    wanted = statuses if statuses is not None else f.statuses
    out = []
    for status in STATUSES:
        if wanted is not None and status not in wanted:
            continue
        if status == "ready":
            out += [f"ready:{q}" for q in stats.queues if f.queues is None or q in f.queues]
        else:
            out.append(INDEX_OF[status])
    return out


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def list_plan(f: Filter, order: str, limit: int, after: str | None) -> Plan[JobPage]:
    """One page of jobs matching ``f`` in id order, after the cursor."""
    _order(order)
    check_limit(limit)
    cursor = "" if after is None else job_id(after)
    if f.matches_nothing:
        return JobPage([], None)
    desc = order == "desc"
    best: dict[str, Job] = {}

    def add(jobs: list[Job]) -> None:
        for job in jobs:
            if f.payload_matches(job):
                best[job.id] = job
        if len(best) > limit:
            for extra in sorted(best, reverse=desc)[limit:]:
                del best[extra]

    def bound() -> str:
        return sorted(best, reverse=desc)[-1] if len(best) >= limit else ""

    core: QueryCore = yield  # type: ignore[misc]
    if f.ids is not None:
        ids = sorted(f.ids, reverse=desc)
        for chunk in _chunks(ids, WALK):
            add((yield core.by_ids(f, chunk, order=order, after=cursor)).jobs)
    else:
        stats: Stats = yield core.stats()
        size = WALK_PAYLOADS if f.jq is not None else WALK
        for index in _indexes(f, stats):
            rank = 0
            while rank >= 0:
                cap = 0 if f.jq is not None else limit
                w: Walk = yield core.walk(
                    f, index, rank, size, order=order, after=cursor, before=bound(), cap=cap, output="jobs"
                )
                add(w.jobs)
                rank = w.next
    jobs = sorted(best.values(), key=lambda j: j.id, reverse=desc)
    return JobPage(jobs, jobs[-1].id if len(jobs) == limit else None)


def count_plan(f: Filter) -> Plan[int]:
    """How many jobs match ``f``: from ZCARD where the indexes tell, else a walk."""
    core: QueryCore = yield  # type: ignore[misc]
    if f.matches_nothing:
        return 0
    output = "jobs" if f.jq is not None else "count"

    def counted(w: Walk) -> int:
        return sum(1 for j in w.jobs if f.payload_matches(j)) if f.jq is not None else w.count

    total = 0
    if f.ids is not None:
        for chunk in _chunks(sorted(f.ids), WALK):
            total += counted((yield core.by_ids(f, chunk, output=output)))
        return total
    stats: Stats = yield core.stats()
    size = WALK_PAYLOADS if f.jq is not None else WALK
    for index in _indexes(f, stats):
        if index.startswith("ready:") and not f.reads_records:
            total += stats.queues[index[6:]][0]
            continue
        status = next((s for s, i in INDEX_OF.items() if i == index), None)
        if status is not None and not f.reads_records and f.queues is None:
            total += stats.count(status)
            continue
        rank = 0
        while rank >= 0:
            w: Walk = yield core.walk(f, index, rank, size, output=output)
            total += counted(w)
            rank = w.next
    return total


def bulk_plan(action: str, f: Filter, changes: list[Value]) -> Plan[int]:
    """Delete, patch, retry or cancel every job matching ``f``, a batch at a time
    (each batch atomic; the filter is checked again on each job)."""
    core: QueryCore = yield  # type: ignore[misc]
    statuses = f.statuses
    if action == "patch":
        if not changes:
            raise ValidationError("patch_jobs needs at least one change")
        if statuses is not None and statuses & FINISHED:
            raise ValidationError(
                f"status {sorted(statuses & FINISHED)} names finished jobs, which cannot be patched; "
                "patch ready, scheduled or in_flight jobs"
            )
        if statuses is None:
            statuses = frozenset(STATUSES) - FINISHED
    elif action == "cancel":
        if statuses is not None and statuses & FINISHED:
            raise ValidationError(
                f"status {sorted(statuses & FINISHED)} names finished jobs, which cannot be cancelled; "
                "cancel ready, scheduled or in_flight jobs"
            )
        if statuses is None:
            statuses = frozenset(STATUSES) - FINISHED
    elif action == "retry":
        if statuses is not None and statuses - {"dead"}:
            raise ValidationError(f"status {sorted(statuses)}: only dead jobs can be retried; leave status out")
        statuses = frozenset({"dead"})
    if f.matches_nothing:
        return 0
    output = "jobs" if f.jq is not None else "ids"

    def matching(w: Walk) -> list[str]:
        return [j.id for j in w.jobs if f.payload_matches(j)]

    changed = 0
    if f.ids is not None:
        for chunk in _chunks(sorted(f.ids), BATCH):
            ids = matching((yield core.by_ids(f, chunk, output=output, statuses=statuses)))
            if ids:
                changed += (yield core.bulk(action, f, statuses, "", ids, changes))[0]
        return changed
    stats: Stats = yield core.stats()
    indexes = _indexes(f, stats, statuses)
    if action == "patch":
        # A patch can move a job within or between the indexes walked, which
        # would shift the ranks of the walk: read every match first.
        found: list[str] = []
        for index in indexes:
            rank = 0
            while rank >= 0:
                w: Walk = yield core.walk(f, index, rank, WALK, output=output, statuses=statuses)
                found += matching(w)
                rank = w.next
        for chunk in _chunks(sorted(set(found)), BATCH):
            changed += (yield core.bulk(action, f, statuses, "", chunk, changes))[0]
        return changed
    # Delete, retry and cancel only take jobs out of the index walked: the walk goes
    # on from its rank less the jobs that left it.
    for index in indexes:
        rank = 0
        while rank >= 0:
            w = yield core.walk(f, index, rank, BATCH, output=output, statuses=statuses)
            ids = matching(w)
            left = 0
            if ids:
                done, left = yield core.bulk(action, f, statuses, index, ids, changes)
                changed += done
            rank = w.next - left if w.next >= 0 else -1
    return changed


def queues_plan(counts: bool) -> Plan[list[QueueInfo]]:
    """Every queue known, with its ready count and paused flag; with
    ``counts``, also its scheduled, in-flight, completed and dead counts
    (a walk that reads the record of every job not ready)."""
    core: QueryCore = yield  # type: ignore[misc]
    stats: Stats = yield core.stats()
    per: dict[str, dict[str, int]] = {q: {} for q in stats.queues}
    if counts:
        for status, index in INDEX_OF.items():
            rank = 0
            while rank >= 0:
                rank, found = yield core.queue_counts(index, rank)
                for q, n in found.items():
                    per.setdefault(q, {})[status] = per.get(q, {}).get(status, 0) + n
    out = []
    for name in sorted(per):
        ready, paused = stats.queues.get(name, (0, False))
        c = per[name]
        out.append(
            QueueInfo(
                name,
                paused,
                ready,
                *(c.get(s, 0) if counts else None for s in ("scheduled", "in_flight", "completed", "dead")),
            )
        )
    return out


def drive(run: Callable[[Call[Any]], Any], core: QueryCore, plan: Plan[T]) -> T:
    """Run a plan with a blocking ``run``."""
    try:
        next(plan)
        call = plan.send(core)
        while True:
            call = plan.send(run(call))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def drive_async(run: Callable[[Call[Any]], Any], core: QueryCore, plan: Plan[T]) -> T:
    """Run a plan with an awaitable ``run``."""
    try:
        next(plan)
        call = plan.send(core)
        while True:
            call = plan.send(await run(call))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]

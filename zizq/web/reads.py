"""What the dashboard reads, each page at a bounded cost whatever the number
of jobs (as ``zizq top``): the counts come from ``lua/stats.lua`` (index
sizes), the state pages from ``lua/window.lua`` (one page and its records),
and a filtered job list looks at a bounded window of one state's index per
page (``lua/query.lua``'s walk), so a filter that matches few jobs shows a
short page with a link to the next window rather than reading every job.

The client has public methods for everything else (a job, its errors, the
cron groups, the batches, every action); the reads here are those it lacks
at a bounded cost: the windows, a page of batches, and the workers with
their leases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zizq._protocol.flows import BatchInfo
from zizq._protocol.query import FINISHED, INDEX_OF, QueryCore, Stats, Throughput, WindowRow
from zizq.client.aio import AsyncClient
from zizq.client.query import time_ms
from zizq.errors import ValidationError
from zizq.filters import Filter
from zizq.job import STATUSES, Job

PAGE = 50  # rows a page shows
SCAN = 2000  # index entries a filtered job list looks at per page, at most
SCAN_CALLS = 40  # script calls a filtered job list makes per page, at most
MAX_OFFSET = 10_000  # deepest row of a state page (the ready merge reads offset + PAGE per queue)
MAX_QUEUE_ROWS = 200  # queues the overview lists (the others are found with its queue search)
MAX_WORKERS = 200  # workers the workers page lists
RETRY_SCAN = 1000  # scheduled jobs the retries page looks at
STATE_PAGES = {
    "ready": "Ready",
    "scheduled": "Scheduled",
    "in_flight": "In flight",
    "retries": "Retries",
    "dead": "Dead",
    "waiting": "Waiting",
}


@dataclass(frozen=True, slots=True)
class Overview:
    """The overview: the namespace's counts, the queues shown, the next
    job to dispatch (the head of the ready jobs across every queue), and the
    attempts ended per minute over the last hour."""

    stats: Stats
    queues: list[tuple[str, int, bool]]  # (name, ready, paused), name order
    hidden: int  # queues that match the search but are not listed
    head: Job | None  # the next job to dispatch, None when none is ready
    hour: Throughput


async def overview(client: AsyncClient, search: str = "") -> Overview:
    """Three script calls: stats, a one-row window of the ready jobs, and
    the last hour's tally."""
    q = QueryCore(client.core)
    stats = await client.stats()
    names = [n for n in stats.queues if search.lower() in n.lower()]
    shown = [(n, *stats.queues[n]) for n in names[:MAX_QUEUE_ROWS]]
    head = None
    if stats.ready:
        page = await client.run(q.window("ready", 0, 1, list(stats.queues)))
        head = page.rows[0].job if page.rows else None
    return Overview(stats, shown, len(names) - len(shown), head, await client.throughput())


@dataclass(frozen=True, slots=True)
class StatePage:
    """One page of a state, in the state's own order (ready: dispatch order;
    scheduled and retries: due time; in flight: taken time; dead: the
    latest first; waiting: enqueue time). ``leases``: each listed worker's lease end (ms), in
    flight only. ``next``: the offset of the next page, None at the end."""

    state: str
    total: int
    offset: int
    rows: list[WindowRow]
    next: int | None
    leases: dict[str, int | None]
    now: int


async def state_page(client: AsyncClient, state: str, offset: int, queue: str | None = None) -> StatePage:
    """A page of ``state`` (a key of STATE_PAGES) from ``offset``."""
    if state not in STATE_PAGES:
        raise ValidationError(f"state {state!r} is not one of {', '.join(STATE_PAGES)}")
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationError(f"offset {offset} is not in 0..{MAX_OFFSET}")
    q = QueryCore(client.core)
    stats = await client.stats()
    extra: list[str] = []
    if state == "ready":
        extra = [queue] if queue else list(stats.queues)
        if not extra:
            return StatePage(state, 0, offset, [], None, {}, stats.now)
    elif state == "retries":
        extra = [str(RETRY_SCAN)]
    page = await client.run(q.window(state, offset, PAGE, extra))
    leases: dict[str, int | None] = {}
    workers = sorted({row.worker for row in page.rows if row.worker})
    if workers:
        scores = await client.redis.zmscore(client.core.key("workers"), workers)
        leases = {w: None if s is None else int(s) for w, s in zip(workers, scores, strict=True)}
    nxt = page.next if 0 <= page.next <= MAX_OFFSET else None
    return StatePage(state, page.total, offset, page.rows, nxt, leases, stats.now)


@dataclass(frozen=True, slots=True)
class JobList:
    """A page of the filtered job list: the matches found in the window
    looked at, in the status's index order, and the cursor of the next
    window (None at the end of the index). ``looked``: index entries looked
    at; ``size``: the entries of the status's indexes."""

    jobs: list[Job]
    next: str | None
    looked: int
    size: int


def _cursor(text: str) -> tuple[int, int]:
    """'index position.rank'; bad text raises ValidationError."""
    head, _, tail = text.partition(".")
    if not (head.isascii() and head.isdigit() and tail.isascii() and tail.isdigit()):
        raise ValidationError(f"cursor {text!r} is not a cursor of this page")
    return int(head), int(tail)


async def job_list(client: AsyncClient, status: str, f: Filter, cursor: str = "", order: str = "asc") -> JobList:
    """Up to PAGE jobs of ``status`` matching ``f`` (whose own status is
    ignored), looking at SCAN index entries at most, from ``cursor``: in
    the index's order (``asc``: for completed and dead jobs the oldest
    first) or reversed (``desc``)."""
    if status not in STATUSES:
        raise ValidationError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    if order not in ("asc", "desc"):
        raise ValidationError(f"order {order!r} is not 'asc' or 'desc'")
    q = QueryCore(client.core)
    stats = await client.stats()
    if status == "ready":
        queues = [n for n in stats.queues if f.queues is None or n in f.queues]
        indexes = [f"ready:{n}" for n in queues]
        sizes = [stats.queues[n][0] for n in queues]
        total = sum(sizes)
    else:
        indexes = [INDEX_OF[status]]
        total = stats.count(status)
        # The finished indexes also hold jobs past purge_at, which the counts leave out.
        sizes = [int(await client.redis.zcard(client.core.key(indexes[0])))] if status in FINISHED else [total]
    desc = order == "desc"
    if desc:
        indexes, sizes = indexes[::-1], sizes[::-1]
    # rank: where the next window starts (asc), or ends, exclusive (desc).
    at, rank = _cursor(cursor) if cursor else (0, sizes[0] if desc and sizes else 0)
    output = "jobs" if f.jq is not None else "meta"
    only = frozenset({status})
    found: list[Job] = []
    looked = calls = 0
    while at < len(indexes) and len(found) < PAGE and looked < SCAN and calls < SCAN_CALLS:
        # A window no larger than the rows still wanted: every match it
        # holds fits on the page, so the next window starts where it ended.
        want = min(PAGE - len(found), SCAN - looked)
        if (desc and rank <= 0) or sizes[at] == 0:  # nothing (left) in this index: no call
            at, rank = at + 1, sizes[at + 1] if desc and at + 1 < len(sizes) else 0
            continue
        first = max(0, rank - want) if desc else rank
        size = rank - first if desc else want
        w = await client.run(q.walk(f, indexes[at], first, size, order=order, output=output, statuses=only))
        calls += 1
        looked += size
        found += [j for j in w.jobs if f.payload_matches(j)]
        if desc:
            rank = first
        elif w.next < 0:
            at, rank = at + 1, 0
        else:
            rank = w.next
    nxt = None if at >= len(indexes) or (desc and at == len(indexes) - 1 and rank <= 0) else f"{at}.{rank}"
    return JobList(found, nxt, looked, total)


@dataclass(frozen=True, slots=True)
class BatchPage:
    """A page of batches, newest first, from ``offset``; ``next``: the
    offset of the next page, None at the end."""

    offset: int
    batches: list[BatchInfo]
    next: int | None


async def batch_page(client: AsyncClient, offset: int) -> BatchPage:
    """Up to PAGE batches from ``offset`` (0..MAX_OFFSET): one script call
    that reads PAGE + 1 of them (the extra one says whether a next page
    exists)."""
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationError(f"offset {offset} is not in 0..{MAX_OFFSET}")
    found = await client.list_batches(limit=PAGE + 1, offset=offset)
    nxt = offset + PAGE if len(found) > PAGE and offset + PAGE <= MAX_OFFSET else None
    return BatchPage(offset, found[:PAGE], nxt)


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker holding a lease: its id, lease end (ms), jobs held in flight."""

    id: str
    lease_until: int
    held: int


async def workers(client: AsyncClient) -> tuple[list[WorkerRow], int]:
    """The workers holding a lease (the first MAX_WORKERS by lease end), and
    Redis's clock (ms)."""
    r = client.redis
    now = time_ms(await r.time())
    rows: list[Any] = await r.zrangebyscore(
        client.core.key("workers"), now, "+inf", start=0, num=MAX_WORKERS, withscores=True
    )
    out = []
    for raw, score in rows:
        wid = raw.decode() if isinstance(raw, bytes) else str(raw)
        out.append(WorkerRow(wid, int(score), int(await r.scard(client.core.key("worker", wid)))))
    return out, now

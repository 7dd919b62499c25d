"""The worker's cron tick: once a second, claim the cron runs that are due
and enqueue each claimed run once (see :mod:`zizq._protocol.cron` for the
calls and :mod:`zizq.cron` for the entries and their arithmetic)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from zizq._protocol.cron import CronCore
from zizq._protocol.reconnect import TRANSIENT, reconnect_delays
from zizq.client.aio import AsyncClient
from zizq.cron import next_after
from zizq.errors import RedisUnavailable, ZizqError

log = logging.getLogger("zizq.cron")


@dataclass
class CronStats:
    """What one worker's cron ticks did."""

    enqueued: int = 0  # runs this worker claimed and enqueued (duplicates by unique key included)
    skipped: int = 0  # runs this worker claimed while paused
    resent: int = 0  # stale claims of older workers this worker sent again
    failing: set[str] = field(default_factory=set)  # due entries this worker cannot compute (logged once)


# What reading a stored definition (JSON of a dict, its expression, its
# time zone) raises when it was not written by zizq or is out of date.
_UNREADABLE = (ValueError, KeyError, TypeError)


def _stored_definition(raw: bytes | str) -> dict[str, Any]:
    d = orjson.loads(raw)
    if not isinstance(d, dict) or not isinstance(d.get("job"), dict):
        raise ValueError("not a JSON object with a job template")
    return d


async def _send(client: AsyncClient, cc: CronCore, job_id: str, raw: bytes | str) -> bool:
    """Enqueue one claimed run of a stored definition; True when it was. A
    definition that cannot be read, or a template the enqueue script
    refuses, is logged and its claim dropped (retrying cannot help); a lost
    connection (RedisUnavailable) propagates, and the claim is sent again
    later."""
    try:
        await client.run(cc.enqueue(job_id, _stored_definition(raw)["job"]), retry_for=0)
    except RedisUnavailable:
        raise
    except (ZizqError, *_UNREADABLE) as exc:
        log.error("cron job %s could not be enqueued and is dropped: %s", job_id, exc)
        return False
    return True


LOCAL_RETRY_S = 1.0
"""Seconds until a tick looks again at due entries it could not compute
(the other workers may run them meanwhile)."""


def _next_run(member: str, raw: bytes | str, now: int, stats: CronStats) -> tuple[bool, int | None]:
    """(True, the following run of a due entry in ms or None when it has
    none), or (False, None) when this worker cannot compute it: a
    definition it cannot read, or an expression or time zone its croniter
    or tzdata does not know. Such an entry is left due for the other
    workers (one host's failure must not take a shared entry off the
    schedule); it is logged once."""
    try:
        d = _stored_definition(raw)
        nxt = next_after(d["expression"], d["timezone"], now)
    except (*_UNREADABLE, OSError) as exc:
        if member not in stats.failing:
            stats.failing.add(member)
            log.error("cron entry %s cannot be scheduled by this worker and is left to the others: %s", member, exc)
        return False, None
    stats.failing.discard(member)
    return True, nxt


async def cron_tick(client: AsyncClient, stats: CronStats | None = None) -> float | None:
    """Do what is due: claim due runs, each enqueued in its claim, and
    send again the stale claims older zizq versions left. Returns seconds
    until the next run is due (0: look again at once; None: no entry has a
    next run). Raises TRANSIENT errors when Redis is unreachable; a run not
    claimed stays due for the next tick."""
    stats = stats if stats is not None else CronStats()
    cc = CronCore(client.core)
    due = await client.run(cc.due(), retry_for=0)
    sent: list[str] = []
    items = []
    for member, expected, raw in due.due:
        known, nxt = _next_run(member, raw, due.now, stats)
        if known:
            items.append((member, expected, nxt, client.core.ids.generate()))
    if items:
        outcomes = await client.run(cc.fire(items), retry_for=0)
        for (member, expected, _, _), (outcome, detail) in zip(items, outcomes, strict=True):
            if outcome in (1, 3):  # enqueued, or a duplicate by unique key
                stats.enqueued += 1
                # Which due time (ms) each claim took, read at due.now: what
                # the fault-history checker holds to "once a due time".
                made = "enqueued as job" if outcome == 1 else "a duplicate of job"
                log.debug(
                    "cron entry %s: run due at %d claimed, %s %s (read at %d)", member, expected, made, detail, due.now
                )
            elif outcome == 2:
                stats.skipped += 1
            elif outcome == 4:
                log.error("cron entry %s: its run could not be enqueued: %s", member, detail)
    if due.stale:
        claimed: list[str] = await client.run(cc.claim([(i, at) for i, at, _ in due.stale]), retry_for=0)
        taken = set(claimed)
        for job_id, _, raw in due.stale:
            if job_id in taken:
                if raw:
                    try:
                        record = orjson.loads(raw)
                        definition, member = record["definition"], record["member"]
                    except _UNREADABLE as exc:
                        log.error("cron job %s: its pending record cannot be read and is dropped: %s", job_id, exc)
                    else:
                        if await _send(client, cc, job_id, definition):
                            stats.resent += 1
                            log.warning("cron job %s (%s) was claimed but not confirmed: sent again", job_id, member)
                sent.append(job_id)
    if sent:
        await client.run(cc.done(sent), retry_for=0)
    if items:
        return 0.0  # the schedule moved on (or more is due): read it again
    if due.due:
        return LOCAL_RETRY_S  # due entries this worker cannot compute
    if due.earliest is None:
        return None
    return max(0.0, (due.earliest - due.now) / 1000)


async def cron_loop(client: AsyncClient, stop: asyncio.Event, max_idle: float, stats: CronStats) -> None:
    """Run cron ticks until ``stop`` is set. Sleeps until the next due run,
    at most ``max_idle`` seconds (so schedule changes are seen within that)."""
    delays = reconnect_delays()
    while not stop.is_set():
        try:
            wait = await cron_tick(client, stats)
            delays = reconnect_delays()
        except TRANSIENT as exc:
            wait = next(delays)  # then at most max_idle, below
            # Not a warning: the worker's take loop reports the outage already.
            log.debug("cron tick skipped: redis unavailable (%s)", exc)
        except Exception:  # never take the worker down
            log.exception("cron tick failed")
            wait = max_idle
        wait = max_idle if wait is None else min(wait, max_idle)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

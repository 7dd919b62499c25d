"""The worker's cron tick: once a second, claim the cron runs that are due
and enqueue each claimed run once (see :mod:`zizq._protocol.cron` for the
calls and :mod:`zizq.cron` for the entries and their arithmetic)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
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
    resent: int = 0  # stale claims of other workers this worker sent again


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


async def cron_tick(client: AsyncClient, stats: CronStats | None = None) -> float | None:
    """Do what is due: claim and enqueue due runs, send stale claims again.
    Returns seconds until the next run is due (0: look again at once; None:
    no entry has a next run). Raises TRANSIENT errors when Redis is
    unreachable; a claim whose enqueue did not go through is sent again by a
    later tick (after PENDING_GRACE_MS)."""
    stats = stats if stats is not None else CronStats()
    cc = CronCore(client.core)
    due = await client.run(cc.due(), retry_for=0)
    sent: list[str] = []
    if due.due:
        items = []
        for member, expected, raw in due.due:
            try:
                d = _stored_definition(raw)
                nxt = next_after(d["expression"], d["timezone"], due.now)
            except _UNREADABLE as exc:
                # Taken off the schedule (no next run), so it is not due
                # again and again; replacing the entry puts it back.
                log.error("cron entry %s cannot be read and is taken off the schedule until replaced: %s", member, exc)
                nxt = None
            items.append((member, expected, nxt, client.core.ids.generate()))
        outcomes = await client.run(cc.fire(items), retry_for=0)
        for (_, _, _, job_id), (outcome, definition) in zip(items, outcomes, strict=True):
            if outcome == 1:
                if await _send(client, cc, job_id, definition):
                    stats.enqueued += 1
                sent.append(job_id)
            elif outcome == 2:
                stats.skipped += 1
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
    if due.due:
        return 0.0  # the schedule moved on (or more is due): read it again
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

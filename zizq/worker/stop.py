"""How a worker stops: gracefully on the first stop, at once on the second.

A graceful stop (:func:`shutdown`) hands back at once the jobs taken but
not started, gives running handlers ``shutdown_timeout`` seconds, sends the
acks, stops the heartbeat and leaves. A second stop (:func:`leave_at_once`)
abandons running handlers and makes one quick try to send the acks and
leave. Leaving hands back every job Redis still holds for the worker; what
cannot be sent goes back to its queue when the lease lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from zizq._protocol.lease import by_owner
from zizq._protocol.reconnect import REDIS_ERRORS, TRANSIENT
from zizq.connect import reason
from zizq.errors import RedisUnavailable

if TYPE_CHECKING:
    from zizq.worker.worker import Worker

log = logging.getLogger("zizq.worker")  # the worker's logger: stopping is part of it
# Seconds a last try at Redis may take: a call after the shutdown timeout ran
# out, and each step of a stop at once (a second stop).
LAST_TRY = 1.0


async def shutdown(worker: Worker) -> None:
    """The graceful part of a stop. Hand-backs and acks retry until the
    shutdown timeout ends and get one more try after it; the last call,
    leave, gets one try. What cannot be sent goes back to its queue when
    the lease lapses."""
    assert worker._give_up_at is not None
    deadline = worker._give_up_at
    # Queued jobs first (no runner starts one after a stop): other
    # workers can start them now, not after the running handlers.
    unstarted = []
    while not worker._waiting.empty():
        owner, job = worker._waiting.get_nowait()
        unstarted.append((owner, job.id))
    log.info(
        "stopping: %d jobs not started go back; %d running get up to %.0fs to finish",
        len(unstarted),
        len(worker._running),
        deadline - time.monotonic(),
    )
    await hand_back(worker, unstarted, "taken but not started")
    if worker._running:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker._idle.wait(), max(0.0, deadline - time.monotonic()))
    abandoned = list(worker._running)
    for task in worker._runners:
        task.cancel()
    await asyncio.gather(*worker._runners, return_exceptions=True)
    worker._pool.shutdown(wait=False, cancel_futures=True)
    await hand_back(worker, abandoned, "whose handlers ran past the shutdown timeout")
    # The acker finishes its flush and ends by itself: cancelling a Redis
    # call in flight can leave redis-py stuck until the socket times out.
    # It gets until the deadline (what it had not sent is sent once more).
    # The purge and cron tasks end by themselves after a stop, at once
    # unless a call of theirs waits on a stalled Redis: they hold nothing (a
    # cron claim cut short is sent again by a later tick), so LAST_TRY.
    worker._closing = True
    worker._ack_wanted.set()
    _, late = await asyncio.wait(set(worker._background), timeout=LAST_TRY)
    _, late_acker = await asyncio.wait({worker._acker}, timeout=max(LAST_TRY, deadline - time.monotonic()))
    late |= late_acker
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    await worker._flush_acks()
    if worker._heart is not None:
        await worker._heart.stop(worker.lease + 1)  # before leaving, or a last beat could join again
        await leave(worker)
    await delete_stop_key(worker)


async def leave_at_once(worker: Worker) -> None:
    """A second stop: running handlers are abandoned. One quick try to
    send the acks and leave, which hands back every job still held; what
    does not get through goes back to its queue when the lease lapses."""
    worker.forced = True
    held = len(worker._held)
    tasks = {*worker._runners, worker._acker, *worker._background}
    for task in tasks:
        task.cancel()  # the acker puts back the acks it was sending
    await asyncio.wait(tasks, timeout=LAST_TRY)
    worker._pool.shutdown(wait=False, cancel_futures=True)
    if worker._heart is not None:
        await worker._heart.stop(LAST_TRY / 2)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LAST_TRY):
            await worker._flush_acks()
    if await leave(worker):
        log.info("stopped at once: %d jobs handed back", held)
        await delete_stop_key(worker)


async def leave(worker: Worker) -> bool:
    """One try, of at most LAST_TRY seconds, at heartbeat leave: it hands
    back every job Redis still holds for this worker. Whether it worked."""
    try:
        async with asyncio.timeout(LAST_TRY):
            await worker._client.run(worker._core.heartbeat(worker.id, "leave", worker._lease_ms), retry_for=0)
    except TRANSIENT as exc:  # the timeout's TimeoutError too
        log.warning("could not leave (%s): the jobs still held go back when the lease lapses", reason(exc))
        return False
    return True


async def delete_stop_key(worker: Worker) -> None:
    with contextlib.suppress(*REDIS_ERRORS):  # the TimeoutError too
        await asyncio.wait_for(worker._client.redis.delete(worker._stop_key), LAST_TRY)


async def hand_back(worker: Worker, pairs: list[tuple[str, str]], which: str) -> None:
    if not pairs:
        return
    try:
        for owner, ids in by_owner(pairs).items():
            await worker._call(worker._core.release(owner, ids))
            worker._held.difference_update((owner, i) for i in ids)
    except RedisUnavailable as exc:
        log.warning("could not hand back %d jobs %s (%s): they go back when the lease lapses", len(pairs), which, exc)
    else:
        log.info("handed back %d jobs %s", len(pairs), which)

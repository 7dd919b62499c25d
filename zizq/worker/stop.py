"""How a worker stops: gracefully on the first stop, at once on the second.

A graceful stop (:func:`shutdown`) hands back at once the jobs taken but
not started, gives running handlers ``shutdown_timeout`` seconds, sends the
acks, stops the heartbeat and leaves. A second stop (:func:`leave_at_once`)
abandons running handlers and makes one quick try to send the acks and
leave. Leaving hands back every job Redis still holds for the worker; what
cannot be sent goes back to its queue when the lease lapses.

:func:`run_until_signalled` is how a blocking ``run()`` turns SIGINT and
SIGTERM into stops, from before its event loop starts until after it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import signal
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any, Protocol

from zizq._protocol.call import Call
from zizq._protocol.jobs import Core
from zizq._protocol.lease import by_owner
from zizq._protocol.reconnect import REDIS_ERRORS, TRANSIENT
from zizq.client.aio import AsyncClient
from zizq.connect import reason
from zizq.errors import RedisUnavailable
from zizq.job import Job
from zizq.worker.lease import HeartbeatThread

log = logging.getLogger("zizq.worker")  # the worker's logger: stopping is part of it
# Seconds a last try at Redis may take: a call after the shutdown timeout ran
# out, and each step of a stop at once (a second stop).
LAST_TRY = 1.0
# The jobs taken and not started, as (owner, job): an asyncio.Queue the
# runners read, or, when every handler is sync, the queue the handler
# threads read (zizq.worker.sync_lane).
Waiting = asyncio.Queue[tuple[str, Job]] | queue.SimpleQueue[tuple[str, Job]]


def run_until_signalled(main: Callable[[], Coroutine[Any, Any, None]], stop: Callable[[], None]) -> None:
    """``asyncio.run(main())``, with SIGINT and SIGTERM calling ``stop`` (in
    the event loop) for the whole call, the loop's closing included: closing
    waits for threads to end, and a signal then must not kill the process
    (SIGTERM's default) or raise KeyboardInterrupt in the middle of it
    (SIGINT's). A signal after the loop has stopped running finds nothing
    left to stop. The handlers in place before are put back at the end."""
    loop: asyncio.AbstractEventLoop | None = None

    def caught(signum: int, frame: FrameType | None) -> None:
        if loop is None:
            stop()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the run has ended
            loop.call_soon_threadsafe(stop)

    previous = {sig: signal.signal(sig, caught) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with asyncio.Runner() as runner:
            loop = runner.get_loop()
            runner.run(main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class Stopping(Protocol):
    """What a stop uses of a running worker (:class:`zizq.worker.run.Run` is
    one): its jobs, its tasks, its acks and its way to Redis. A stop sets
    only ``closing``; the rest it reads, or changes in place."""

    # The worker's lease in Redis.
    id: str
    lease: float  # seconds
    lease_ms: int
    heart: HeartbeatThread | None  # None until the worker has joined
    # Its jobs: (owner, id) pairs held, and those whose handler runs.
    waiting: Waiting  # taken, not started
    held: set[tuple[str, str]]
    running: set[tuple[str, str]]
    idle: asyncio.Event  # set while no handler runs
    # Its tasks and the handlers' thread pool.
    runners: list[asyncio.Task[None]]
    acker: asyncio.Task[None] | None  # None until the worker has reached Redis
    background: list[asyncio.Task[None]]  # purge and cron
    pool: ThreadPoolExecutor
    closing: bool  # set: the acker ends after its flush
    ack_wanted: asyncio.Event
    # Redis.
    client: AsyncClient
    core: Core
    stop_key: str
    give_up_at: float | None  # time.monotonic() after which Redis calls get one try

    async def flush_acks(self) -> None:
        """Send the acks of jobs done (retrying as ``call`` does)."""

    async def call(self, call: Call[Any]) -> Any:
        """Run a script call, retrying until ``give_up_at``."""


async def shutdown(worker: Stopping) -> None:
    """The graceful part of a stop. Hand-backs and acks retry until the
    shutdown timeout ends and get one more try after it; the last call,
    leave, gets one try. What cannot be sent goes back to its queue when
    the lease lapses."""
    assert worker.give_up_at is not None
    deadline = worker.give_up_at
    # Queued jobs first (no runner starts one after a stop): other
    # workers can start them now, not after the running handlers.
    unstarted = []
    while not worker.waiting.empty():
        owner, job = worker.waiting.get_nowait()
        unstarted.append((owner, job.id))
    log.info(
        "stopping: %d jobs not started go back; %d running get up to %.0fs to finish",
        len(unstarted),
        len(worker.running),
        deadline - time.monotonic(),
    )
    await hand_back(worker, unstarted, "taken but not started")
    if worker.running:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(worker.idle.wait(), max(0.0, deadline - time.monotonic()))
    abandoned = list(worker.running)
    for task in worker.runners:
        task.cancel()
    await asyncio.gather(*worker.runners, return_exceptions=True)
    worker.pool.shutdown(wait=False, cancel_futures=True)
    await hand_back(worker, abandoned, "whose handlers ran past the shutdown timeout")
    # The acker finishes its flush and ends by itself: cancelling a Redis
    # call in flight can leave redis-py stuck until the socket times out.
    # It gets until the deadline (what it had not sent is sent once more).
    # The purge and cron tasks end by themselves after a stop, at once
    # unless a call of theirs waits on a stalled Redis: they hold nothing (a
    # cron claim cut short is sent again by a later tick), so LAST_TRY.
    worker.closing = True
    worker.ack_wanted.set()
    _, late = await asyncio.wait(set(worker.background), timeout=LAST_TRY)
    assert worker.acker is not None
    _, late_acker = await asyncio.wait({worker.acker}, timeout=max(LAST_TRY, deadline - time.monotonic()))
    late |= late_acker
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    await worker.flush_acks()
    if worker.heart is not None:
        await worker.heart.stop(worker.lease + 1)  # before leaving, or a last beat could join again
        await leave(worker)
    await delete_stop_key(worker)


async def leave_at_once(worker: Stopping) -> None:
    """A second stop: running handlers are abandoned. One quick try to
    send the acks and leave, which hands back every job still held; what
    does not get through goes back to its queue when the lease lapses."""
    held = len(worker.held)
    assert worker.acker is not None
    tasks = {*worker.runners, worker.acker, *worker.background}
    for task in tasks:
        task.cancel()  # the acker puts back the acks it was sending
    await asyncio.wait(tasks, timeout=LAST_TRY)
    worker.pool.shutdown(wait=False, cancel_futures=True)
    if worker.heart is not None:
        await worker.heart.stop(LAST_TRY / 2)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(LAST_TRY):
            await worker.flush_acks()
    if await leave(worker):
        log.info("stopped at once: %d jobs handed back", held)
        await delete_stop_key(worker)


async def leave(worker: Stopping) -> bool:
    """One try, of at most LAST_TRY seconds, at heartbeat leave: it hands
    back every job Redis still holds for this worker. Whether it worked."""
    try:
        async with asyncio.timeout(LAST_TRY):
            await worker.client.run(worker.core.heartbeat(worker.id, "leave", worker.lease_ms), retry_for=0)
    except TRANSIENT as exc:  # the timeout's TimeoutError too
        log.warning("could not leave (%s): the jobs still held go back when the lease lapses", reason(exc))
        return False
    return True


async def delete_stop_key(worker: Stopping) -> None:
    with contextlib.suppress(*REDIS_ERRORS):  # the TimeoutError too
        await asyncio.wait_for(worker.client.redis.delete(worker.stop_key), LAST_TRY)


async def hand_back(worker: Stopping, pairs: list[tuple[str, str]], which: str) -> None:
    if not pairs:
        return
    try:
        for owner, ids in by_owner(pairs).items():
            await worker.call(worker.core.release(owner, ids))
            worker.held.difference_update((owner, i) for i in ids)
    except RedisUnavailable as exc:
        log.warning("could not hand back %d jobs %s (%s): they go back when the lease lapses", len(pairs), which, exc)
    else:
        log.info("handed back %d jobs %s", len(pairs), which)

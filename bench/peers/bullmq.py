"""BullMQ's Python package: asyncio; the Lua scripts shared with the Node
library (one script per add, a job hash plus list, marker and event-stream
entries); the worker takes a job with moveToActive and finishes it with
moveToFinished (which can fetch the next one), each job under a lock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from bullmq import Queue, Worker

from peers.common import CHUNK, CONCURRENCY, QUEUE, TRACKER, WARNINGS, async_wait_until

NAME = "bullmq"
DIST = "bullmq"
BULK = "Queue.addBulk (one pipeline of per-job scripts per call)"
WORKER = f"bullmq Worker, concurrency={CONCURRENCY}, default options (completed jobs are kept)"

STOP_TIMEOUT_S = 10.0

_loop: asyncio.AbstractEventLoop
_queue: Queue
_url = ""
_worker: Worker


async def noop(job: Any, token: str) -> None:
    TRACKER.hit(job.data)


def setup(url: str, variant: str | None) -> None:
    global _loop, _queue, _url
    _url = url
    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    _queue = Queue(QUEUE, {"connection": url})
    _loop.run_until_complete(_queue.client.ping())


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    async def go() -> None:
        add = _queue.add
        for item in items:
            await add("noop", item)

    _loop.run_until_complete(go())


def enqueue_bulk(items: list[dict[str, Any]]) -> None:
    async def go() -> None:
        for i in range(0, len(items), CHUNK):
            await _queue.addBulk([{"name": "noop", "data": item} for item in items[i : i + CHUNK]])

    _loop.run_until_complete(go())


def waiting() -> int:
    """Jobs waiting or active (not yet completed or failed)."""
    return int(_loop.run_until_complete(_queue.getJobCountByTypes("waiting", "active", "prioritized")))


def prepare_worker() -> None:
    global _worker
    # autorun off: built here, started (timed) in run_worker. Its own
    # connections, as in a separate worker process.
    _worker = Worker(QUEUE, noop, {"connection": _url, "concurrency": CONCURRENCY, "autorun": False})


def run_worker(done: threading.Event) -> None:
    async def go() -> None:
        task = asyncio.ensure_future(_worker.run())
        try:
            await async_wait_until(done, task)
            while await _queue.getJobCountByTypes("waiting", "active", "prioritized"):
                await asyncio.sleep(0.005)  # the last handler has returned; let BullMQ finish the job
        finally:
            try:
                await asyncio.wait_for(asyncio.shield(_worker.close()), STOP_TIMEOUT_S)
                await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), STOP_TIMEOUT_S)
            except TimeoutError:
                # Seen here now and then (bullmq 3.4.4, redis-py 8.1): close()
                # waits forever for its cancelled BZPOPMIN. Every job is
                # finished by now; note it, move on.
                WARNINGS.append(f"bullmq Worker.close() did not return within {STOP_TIMEOUT_S:.0f} s")

    _loop.run_until_complete(go())


def close() -> None:
    _loop.run_until_complete(_queue.close())
    _loop.close()

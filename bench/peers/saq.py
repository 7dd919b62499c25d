"""SAQ: asyncio; one Lua script per enqueue (job JSON in a string key, a
zset entry and a list entry); workers block in BLMOVE."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from saq import Queue, Worker

from peers.common import CONCURRENCY, TRACKER, async_wait_until

NAME = "saq"
DIST = "saq"
BULK = None  # no batch enqueue API (map/batch are helpers over single enqueues)
WORKER = f"saq Worker, concurrency={CONCURRENCY}"

_loop: asyncio.AbstractEventLoop
_queue: Queue
_url = ""
_worker: Worker
_worker_queue: Queue


async def noop(ctx: dict[str, Any], *, data: dict[str, Any]) -> None:
    TRACKER.hit(data)


def setup(url: str, variant: str | None) -> None:
    global _loop, _queue, _url
    _url = url
    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    _queue = Queue.from_url(url)
    _loop.run_until_complete(_queue.connect())
    _loop.run_until_complete(_queue.redis.ping())


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    async def go() -> None:
        enqueue = _queue.enqueue
        for item in items:
            await enqueue("noop", data=item)

    _loop.run_until_complete(go())


def waiting() -> int:
    return int(_loop.run_until_complete(_queue.count("queued")))


def prepare_worker() -> None:
    global _worker, _worker_queue
    # The worker gets its own queue object and connections, as a separate
    # worker process would.
    _worker_queue = Queue.from_url(_url)
    _worker = Worker(_worker_queue, functions=[noop], concurrency=CONCURRENCY)


def run_worker(done: threading.Event) -> None:
    async def go() -> None:
        task = asyncio.ensure_future(_worker.start())
        try:
            await async_wait_until(done, task)
            # The last handler has returned; let SAQ record the jobs as done.
            while await _worker_queue.count("active"):
                await asyncio.sleep(0.005)
        finally:
            await _worker.stop()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await _worker_queue.disconnect()

    _loop.run_until_complete(go())


def close() -> None:
    _loop.run_until_complete(_queue.disconnect())
    _loop.close()

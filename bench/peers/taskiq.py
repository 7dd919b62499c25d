"""taskiq with taskiq-redis's RedisStreamBroker (the one with
acknowledgements and redelivery): asyncio; one XADD per call; the worker
reads with XREADGROUP (blocking) and XACKs each message; no result backend."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from peers.common import CONCURRENCY, TRACKER, WARNINGS, async_wait_until

NAME = "taskiq"
DIST = "taskiq"
BULK = None  # no batch kick API
WORKER = (
    f"taskiq Receiver as the `taskiq worker` CLI runs it (one process), max_async_tasks={CONCURRENCY}; "
    "RedisStreamBroker, no result backend"
)
STREAM = "bench"
STOP_TIMEOUT_S = 10.0

_loop: asyncio.AbstractEventLoop
_broker: RedisStreamBroker
_task: Any
_url = ""
_worker_broker: RedisStreamBroker


async def noop(data: dict[str, Any]) -> None:
    TRACKER.hit(data)


def setup(url: str, variant: str | None) -> None:
    global _loop, _broker, _task, _url
    _url = url
    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    _broker = RedisStreamBroker(url, queue_name=STREAM)
    _task = _broker.register_task(noop, task_name="noop")
    # startup() also creates the consumer group (reading from "$"), so jobs
    # enqueued before a worker starts are delivered to it.
    _loop.run_until_complete(_broker.startup())
    logging.getLogger("taskiq").setLevel(logging.ERROR)


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    async def go() -> None:
        kiq = _task.kiq
        for item in items:
            await kiq(item)

    _loop.run_until_complete(go())


async def _waiting() -> int:
    from redis.asyncio import Redis

    async with Redis(connection_pool=_broker.connection_pool) as conn:
        for group in await conn.xinfo_groups(STREAM):
            if group["name"] in (b"taskiq", "taskiq"):
                # lag: entries not yet delivered; pending: delivered, not acked
                return int(group["lag"] or 0) + int(group["pending"])
    raise AssertionError("no consumer group")


def waiting() -> int:
    return _loop.run_until_complete(_waiting())


def prepare_worker() -> None:
    global _worker_broker
    # The worker gets its own broker and connections, as a worker process would.
    _worker_broker = RedisStreamBroker(_url, queue_name=STREAM)
    _worker_broker.register_task(noop, task_name="noop")


def run_worker(done: threading.Event) -> None:
    """As `taskiq worker` does: Receiver.listen(shutdown_event), stopped by
    setting the event (cancelling the listen task instead can hang)."""

    async def go() -> None:
        _worker_broker.is_worker_process = True
        shutdown = asyncio.Event()
        with ThreadPoolExecutor() as pool:
            receiver = Receiver(broker=_worker_broker, executor=pool, max_async_tasks=CONCURRENCY)
            task = asyncio.ensure_future(receiver.listen(shutdown))
            try:
                await async_wait_until(done, task)
                while await _waiting():  # the last handler has returned; let taskiq ack it
                    await asyncio.sleep(0.005)
            finally:
                shutdown.set()  # the listener leaves its XREADGROUP within xread_block (2 s)
                try:
                    await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT_S)
                    await asyncio.wait_for(_worker_broker.shutdown(), STOP_TIMEOUT_S)
                except TimeoutError:
                    # Seen here now and then (taskiq 0.13.0, redis-py 8.1): the
                    # prefetcher waits forever on its cancelled XREADGROUP read.
                    # The jobs are all done and acked by now; note it, move on.
                    WARNINGS.append(
                        f"the taskiq receiver did not stop within {STOP_TIMEOUT_S:.0f} s of its shutdown event"
                    )

    _loop.run_until_complete(go())


def close() -> None:
    _loop.run_until_complete(_broker.shutdown())
    _loop.close()

"""arq: asyncio; jobs are pickled strings plus an entry in one zset; the
worker polls that zset (``poll_delay`` 0.5 s by default)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.worker import Worker

from peers.common import CONCURRENCY, TRACKER, async_wait_until

NAME = "arq"
DIST = "arq"
BULK = None  # no batch enqueue API
WORKER = f"arq Worker, max_jobs={CONCURRENCY}, defaults otherwise (poll_delay 0.5 s)"

_loop: asyncio.AbstractEventLoop
_pool: ArqRedis
_worker: Worker
_url = ""


async def noop(ctx: dict[str, Any], data: dict[str, Any]) -> None:
    TRACKER.hit(data)


def setup(url: str, variant: str | None) -> None:
    global _loop, _pool, _url
    _url = url
    _loop = asyncio.new_event_loop()
    asyncio.set_event_loop(_loop)
    _pool = _loop.run_until_complete(create_pool(RedisSettings.from_dsn(url)))
    _loop.run_until_complete(_pool.ping())


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    async def go() -> None:
        enqueue = _pool.enqueue_job
        for item in items:
            await enqueue("noop", item)

    _loop.run_until_complete(go())


def waiting() -> int:
    return int(_loop.run_until_complete(_pool.zcard(_pool.default_queue_name)))


def prepare_worker() -> None:
    global _worker
    # The worker gets its own pool (as a separate worker process would).
    _worker = Worker(
        functions=[noop],
        redis_settings=RedisSettings.from_dsn(_url),
        max_jobs=CONCURRENCY,
        handle_signals=False,
        log_results=False,
    )


def run_worker(done: threading.Event) -> None:
    async def go() -> None:
        task = asyncio.ensure_future(_worker.main())
        try:
            await async_wait_until(done, task)
            # The last handler has returned; let arq record the job as done.
            while any(not t.done() for t in _worker.tasks.values()):
                await asyncio.sleep(0.005)
        finally:
            await _worker.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    _loop.run_until_complete(go())


def close() -> None:
    _loop.run_until_complete(_pool.aclose())
    _loop.close()

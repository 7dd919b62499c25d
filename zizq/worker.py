"""Worker: takes jobs from Redis and runs their handlers.

The worker is asyncio inside. One loop takes jobs in batches (up to
``prefetch`` held at once), ``concurrency`` runners execute handlers (sync
handlers in a thread pool), and one task sends acks in batches. When nothing
is ready, the worker blocks in Redis (BLPOP on its queues' wake lists) until a
job arrives or the next scheduled job falls due.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import traceback
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ._core import delay_ms, epoch_ms
from .client import AsyncClient, Client
from .errors import KillJob, RetryJob, ZizqError
from .job import Job
from .router import Router

log = logging.getLogger("zizq.worker")
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError)
PURGE_BATCH = 1000


@dataclass
class WorkerStats:
    """Counts since the worker started."""

    taken: int = 0
    completed: int = 0
    failed: int = 0


def error_type_of(exc: BaseException) -> str:
    """The name recorded as a failure's error_type: the qualified class name
    (``ValueError``, ``myapp.errors.Boom``, ``zizq.NoRouteError``)."""
    cls = type(exc)
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    if module.startswith("zizq."):
        module = "zizq"
    return f"{module}.{cls.__qualname__}"


class Worker:
    """Runs the handlers of ``router`` for jobs from ``queues``.

    :param client: a Client or AsyncClient made with ``from_url`` (the worker
        opens its own asyncio connections to the same Redis and namespace).
    :param queues: queue names to take from, in no particular order (dispatch
        is by priority, then age, across all of them); None means every queue.
    :param concurrency: handlers running at once.
    :param prefetch: jobs held at once, running or waiting to run; defaults
        to ``concurrency``.
    :param shutdown_timeout: seconds running handlers get to finish after a
        stop is asked for.
    :param max_idle: longest time, in seconds, one blocking wait for work
        lasts before the worker looks again anyway.
    :param purge_interval: seconds between sweeps that delete finished jobs
        past their purge_at (in batches of 1,000).
    """

    def __init__(
        self,
        client: Client | AsyncClient,
        router: Router,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        prefetch: int | None = None,
        *,
        shutdown_timeout: float = 30.0,
        max_idle: float = 5.0,
        purge_interval: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ZizqError(f"concurrency {concurrency!r} must be at least 1")
        prefetch = concurrency if prefetch is None else prefetch
        if prefetch < concurrency:
            raise ZizqError(f"prefetch {prefetch!r} must be at least concurrency ({concurrency})")
        if client.url is None:
            raise ZizqError("give the worker a client made with from_url(), so it can open its own connections")
        self._url = client.url
        self.namespace = client.namespace
        self.router = router
        self.queues = list(queues) if queues else []
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.shutdown_timeout = shutdown_timeout
        self.max_idle = max_idle
        self.purge_interval = purge_interval
        self.id = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self.stats = WorkerStats()
        self._stop: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- control ---------------------------------------------------------

    def run(self) -> None:
        """Run until SIGINT or SIGTERM (or :meth:`stop`), then shut down
        gracefully. Blocks."""
        asyncio.run(self.run_async(handle_signals=True))

    def stop(self) -> None:
        """Ask the worker to stop: it takes nothing more, hands back jobs it
        has not started, and lets running handlers finish. A second call stops
        at once, abandoning running handlers (their jobs are handed back)."""
        if self._loop is None or self._stop is None or self._forced is None:
            return
        event = self._forced if self._stop.is_set() else self._stop
        self._loop.call_soon_threadsafe(event.set)

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run in the current event loop until :meth:`stop` is called."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._forced = asyncio.Event()
        self._client = AsyncClient.from_url(self._url, self.namespace)
        # Blocking waits get a connection of their own, so a wait that is cut
        # short never leaves a pooled connection in an unknown state.
        self._blocker = redis.asyncio.Redis.from_url(self._url, single_connection_client=True)
        self._core = self._client.core
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="zizq-handler")
        self._waiting: asyncio.Queue[Job] = asyncio.Queue()
        self._held = 0
        self._room = asyncio.Event()
        self._acks: list[str] = []
        self._ack_wanted = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self.stop)
        log.info("worker %s serving %s", self.id, ", ".join(self.queues) or "every queue")
        acker = asyncio.create_task(self._ack_loop())
        purger = asyncio.create_task(self._purge_loop())
        runners = [asyncio.create_task(self._run_jobs()) for _ in range(self.concurrency)]
        try:
            await self._take_loop()
        finally:
            purger.cancel()
            await asyncio.gather(purger, return_exceptions=True)
            await self._shutdown(runners, acker)
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    self._loop.remove_signal_handler(sig)

    async def _shutdown(self, runners: list[asyncio.Task[None]], acker: asyncio.Task[None]) -> None:
        assert self._forced is not None
        unstarted = []
        while not self._waiting.empty():
            unstarted.append(self._waiting.get_nowait().id)
        busy = set(self._running.values())
        if busy:
            log.info("waiting up to %.0fs for %d running jobs", self.shutdown_timeout, len(busy))
            await self._until(asyncio.wait(busy, timeout=self.shutdown_timeout), self._forced)
        abandoned = [job_id for job_id, task in self._running.items() if not task.done()]
        for task in runners:
            task.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        if unstarted or abandoned:
            await self._call(self._core.release(self.id, unstarted + abandoned))
            log.info("handed back %d jobs", len(unstarted) + len(abandoned))
        acker.cancel()
        await asyncio.gather(acker, return_exceptions=True)
        await self._flush_acks()
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self._client.close()
        await self._blocker.aclose()

    # -- taking ----------------------------------------------------------

    async def _take_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            room = self.prefetch - self._held
            if room <= 0:
                self._room.clear()
                await self._until(self._room.wait(), self._stop)
                continue
            result = await self._call(self._core.take(self.id, room, self.queues))
            for job in result.jobs:
                self._held += 1
                self._waiting.put_nowait(job)
            self.stats.taken += len(result.jobs)
            if len(result.jobs) == room or result.more:
                continue
            timeout = self.max_idle
            if result.next_due is not None:
                timeout = min(timeout, (result.next_due - result.now) / 1000 + 0.001)
            await self._until(self._wait_for_work(timeout), self._stop)

    async def _wait_for_work(self, timeout: float) -> None:
        queues = self.queues
        if not queues:
            known = await self._client.redis.smembers(self._core.key("queues"))
            queues = sorted(q.decode() if isinstance(q, bytes) else q for q in known)
        keys = self._core.wake_keys(queues, every_queue=not self.queues)
        await self._blocker.blpop(keys, timeout=max(timeout, 0.001))

    @staticmethod
    async def _until(aw: Awaitable[Any], event: asyncio.Event) -> None:
        """Wait for ``aw`` or for ``event``, whichever comes first; the other
        is cancelled."""
        task = asyncio.ensure_future(aw)
        stopped = asyncio.create_task(event.wait())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for t in (task, stopped):
            t.cancel()
        await asyncio.gather(task, stopped, return_exceptions=True)

    async def _call(self, call: Any) -> Any:
        """Run a script call, retrying with backoff (0.5 s doubling to 30 s)
        while Redis cannot be reached. Every zizq script is safe to repeat."""
        pause = 0.5
        while True:
            try:
                return await self._client.run(call)
            except _TRANSIENT as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)

    # -- running ---------------------------------------------------------

    async def _run_jobs(self) -> None:
        while True:
            job = await self._waiting.get()
            # The job runs as its own task so shutdown can wait for it alone;
            # cancelling this runner cancels it too.
            task = asyncio.create_task(self._run_one(job))
            self._running[job.id] = task
            try:
                await task
            except Exception:  # a failure that could not be recorded: log it, keep going
                log.exception("job %s: could not record its outcome", job.id)
            finally:
                del self._running[job.id]
                self._held -= 1
                self._room.set()

    async def _run_one(self, job: Job) -> None:
        try:
            route = self.router.lookup(job.type)
            args = route.arguments(job)
            if route.is_async:
                await route.handler(*args)
            else:
                await asyncio.get_running_loop().run_in_executor(self._pool, route.handler, *args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every handler failure is recorded on the job
            await self._fail(job, exc)
        else:
            self.stats.completed += 1
            self._acks.append(job.id)
            self._ack_wanted.set()

    async def _fail(self, job: Job, exc: Exception) -> None:
        self.stats.failed += 1
        retry_at = retry_in = None
        if isinstance(exc, RetryJob):
            if exc.at is not None:
                retry_at = epoch_ms(exc.at)  # type: ignore[arg-type]
            else:
                retry_in = delay_ms(exc.delay)  # type: ignore[arg-type]
        log.info("job %s (%s) failed: %s: %s", job.id, job.type, error_type_of(exc), exc)
        await self._call(
            self._core.fail(
                self.id,
                job.id,
                message=str(exc) or repr(exc),
                error_type=error_type_of(exc),
                backtrace="".join(traceback.format_exception(exc)),
                retry_at_ms=retry_at,
                retry_in_ms=retry_in,
                kill=isinstance(exc, KillJob),
                jitter=random.random(),
            )
        )

    # -- housekeeping ----------------------------------------------------

    async def _purge_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                while await self._client.run(self._core.purge(PURGE_BATCH)) == PURGE_BATCH:
                    pass
            except _TRANSIENT as exc:
                log.warning("purge skipped: redis unavailable (%s)", exc)
            await self._until(asyncio.sleep(self.purge_interval), self._stop)

    # -- acks ------------------------------------------------------------

    async def _ack_loop(self) -> None:
        while True:
            await self._ack_wanted.wait()
            self._ack_wanted.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks, []
            await self._call(self._core.ack(self.id, batch))

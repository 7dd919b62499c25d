"""AsyncClient: the asyncio front door. The same methods as Client, awaited;
one redis-py asyncio client per event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, TypeVar, Unpack

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import NoScriptError, ResponseError

from zizq import connect, events, middleware
from zizq._protocol.call import Call
from zizq._protocol.enqueue import enqueue_item
from zizq._protocol.jobs import defaults_args, patch_args, purge_batches
from zizq._protocol.reconnect import TRANSIENT, reconnect_delays
from zizq._protocol.records import job_not_found
from zizq._protocol.waiting import LOST, Block, blpop_seconds, wait_plan
from zizq.client.base import BaseClient
from zizq.client.cron import AsyncCronMethods
from zizq.client.limits import AsyncLimitMethods
from zizq.client.options import Items, as_items, block_slice, connection_options, reply_error, unavailable
from zizq.client.query import AsyncQueryMethods
from zizq.errors import JobNotFound, ZizqError
from zizq.job import ErrorRecord, Job, JobKind
from zizq.options import DefaultsOptions, Enqueue, EnqueueOptions, PatchOptions

T = TypeVar("T")


class AsyncClient(BaseClient[AsyncRedis], AsyncCronMethods, AsyncLimitMethods, AsyncQueryMethods):
    """The asyncio twin of :class:`Client`: the same methods, awaited.

    redis-py's asyncio connections belong to the event loop that opened
    them, so an AsyncClient made with :meth:`from_url` keeps one redis-py
    client per event loop, opened the first time that loop uses it. It may
    be made at import time and used from one ``asyncio.run`` after another,
    or from loops in several threads at once. Connections of a loop that
    has ended without :meth:`close` are left to the garbage collector: make
    the client in your app's lifespan (or close it in each loop) to close
    them cleanly.
    """

    def _hold(self, redis_client: AsyncRedis) -> None:
        self._loop_lock = threading.Lock()
        self._spare: AsyncRedis | None = None  # for the first event loop that uses this client
        self._latest: AsyncRedis
        self._by_loop: dict[asyncio.AbstractEventLoop, AsyncRedis] = {}
        self.redis = redis_client

    @staticmethod
    def _connect(url: str, options: dict[str, Any]) -> AsyncRedis:
        return connect.async_redis(url, **connection_options(options, asyncio=True))  # type: ignore[no-any-return]

    @property
    def redis(self) -> AsyncRedis:
        """The redis-py asyncio client of the running event loop (outside a
        loop: the one opened last, at first the constructor's)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return self._latest
        client = self._by_loop.get(loop)
        return client if client is not None else self._open_for(loop)

    @redis.setter
    def redis(self, client: AsyncRedis) -> None:
        """Use ``client`` from the next event loop that uses this client on."""
        with self._loop_lock:
            self._spare = self._latest = client
            self._by_loop = {}

    def _open_for(self, loop: asyncio.AbstractEventLoop) -> AsyncRedis:
        """The redis-py client for ``loop``, a loop this client has not
        served yet: the constructor's for the first, a new one from the URL
        for every later loop."""
        with self._loop_lock:
            for ended in [other for other in self._by_loop if other.is_closed()]:
                del self._by_loop[ended]  # its connections cannot be closed any more
            client = self._by_loop.get(loop)
            if client is None:
                if self._spare is not None:
                    client, self._spare = self._spare, None
                elif self.url is None:
                    raise ZizqError(
                        "this AsyncClient was given a redis-py client, which belongs to the event loop that first "
                        "used it; make the AsyncClient in the app's lifespan (inside its event loop), or with "
                        "AsyncClient.from_url(), which opens connections for each loop"
                    )
                else:
                    client = self._connect(self.url, dict(self.connect_options))
                self._by_loop[loop] = self._latest = client
            return client

    async def run(self, call: Call[T], *, retry_for: float | None = None) -> T:
        """See :meth:`Client.run`."""
        window = self.retry_for if retry_for is None else retry_for
        started = time.monotonic()
        deadline = started + window
        delays = reconnect_delays()
        while True:
            try:
                return call.decode(await self._send(call))
            except TRANSIENT as exc:
                call = call.repeated()
                pause = next(delays)
                if time.monotonic() + pause > deadline:
                    raise unavailable(self.url, started, exc) from exc
                await asyncio.sleep(pause)

    async def _send(self, call: Call[Any]) -> Any:
        s = call.script
        try:
            if self.wait_replicas and s.name == "enqueue":
                return await self._send_waiting(call)
            try:
                return await self.redis.evalsha(s.sha, len(call.keys), *call.keys, *call.args)
            except NoScriptError:
                return await self.redis.eval(s.source, len(call.keys), *call.keys, *call.args)
        except ResponseError as exc:
            error = reply_error(exc)
            if error is None:
                raise
            raise error from None

    async def _send_waiting(self, call: Call[Any]) -> Any:
        s, n, wait = call.script, len(call.keys), (self.wait_replicas, self._wait_ms)
        try:
            return await connect.send_waiting_async(
                self.redis, "EVALSHA", call.keys, [s.sha, n, *call.keys, *call.args], *wait
            )
        except NoScriptError:
            return await connect.send_waiting_async(
                self.redis, "EVAL", call.keys, [s.source, n, *call.keys, *call.args], *wait
            )

    async def enqueue(self, job: JobKind, **options: Unpack[EnqueueOptions]) -> Job:
        """See :meth:`Client.enqueue`."""
        return (await self._enqueue([enqueue_item(job, options)]))[0]

    async def enqueue_raw(self, type_name: str, payload: Any, **options: Unpack[EnqueueOptions]) -> Job:
        """See :meth:`Client.enqueue_raw`."""
        return (await self._enqueue([Enqueue.raw(type_name, payload, **options)]))[0]

    async def enqueue_many(self, jobs: Items) -> list[Job]:
        """See :meth:`Client.enqueue_many`."""
        return await self._enqueue(jobs)

    def use(self, fn: middleware.AsyncEnqueueMiddleware) -> middleware.AsyncEnqueueMiddleware:
        """See :meth:`Client.use`; ``fn`` and ``call_next`` are coroutines."""
        self.enqueue_middleware.append(fn)
        return fn

    async def _enqueue(self, items: Items) -> list[Job]:
        if self.enqueue_middleware or events.enqueue:
            return await middleware.enqueue_async(self, as_items(items))
        return await middleware.send_async(self, items)

    async def get_job(self, job_id: str) -> Job:
        """See :meth:`Client.get_job`."""
        job = (await self.run(self.core.get([job_id])))[0]
        if job is None:
            raise job_not_found(job_id, (await self.run(self.core.done([job_id])))[0])
        return job

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """See :meth:`Client.wait`."""
        plan = wait_plan(self.core, job_id, timeout, block_slice(self.redis))
        reply: Any = None
        try:
            while True:
                step = plan.send(reply)
                if isinstance(step, Block):
                    try:
                        reply = await self.redis.blpop([step.key], blpop_seconds(step.seconds))
                        reply = None if reply is None else reply[1]
                    except TRANSIENT:
                        reply = LOST
                else:
                    reply = await self.run(step)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def cancel_job(self, job_id: str) -> bool:
        """See :meth:`Client.cancel_job`."""
        return await self.run(self.core.cancel_one(job_id))

    async def patch_job(self, job_id: str, **options: Unpack[PatchOptions]) -> Job:
        """See :meth:`Client.patch_job`."""
        return await self.run(self.core.patch(job_id, patch_args(options)))

    async def delete_job(self, job_id: str) -> None:
        """See :meth:`Client.delete_job`."""
        if not await self.run(self.core.delete([job_id])):
            raise JobNotFound(f"no job with id {job_id!r}")

    async def retry_job(self, job_id: str) -> Job:
        """See :meth:`Client.retry_job`."""
        return await self.run(self.core.retry(job_id))

    async def job_errors(self, job_id: str) -> list[ErrorRecord]:
        """See :meth:`Client.job_errors`."""
        return await self.run(self.core.errors(job_id))

    async def pause_queue(self, queue: str) -> bool:
        """See :meth:`Client.pause_queue`."""
        return await self.run(self.core.pause(queue, True))

    async def resume_queue(self, queue: str) -> bool:
        """See :meth:`Client.resume_queue`."""
        return await self.run(self.core.pause(queue, False))

    async def purge_expired(self, limit: int = 1000) -> int:
        """See :meth:`Client.purge_expired`."""
        purged = 0
        for size in purge_batches(limit):
            done = await self.run(self.core.purge(size))
            purged += done
            if done < size:
                break
        return purged

    async def set_defaults(self, **options: Unpack[DefaultsOptions]) -> dict[str, float]:
        """See :meth:`Client.set_defaults`."""
        return await self.run(self.core.defaults(defaults_args(options)))

    async def close(self) -> None:
        """Close the running event loop's connections (a later call opens
        new ones)."""
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

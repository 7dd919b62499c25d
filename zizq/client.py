"""The two front doors: Client (blocking, redis-py) and AsyncClient (asyncio).

Both have the same methods with the same arguments; all logic lives in
:mod:`zizq._core`, and these classes only send its calls to Redis.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import redis
import redis.asyncio
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, ResponseError
from redis.retry import Retry

from . import connect, events, middleware
from ._core import TRANSIENT, UNSET, Call, Core, defaults_args, job_not_found, patch_args, retry_delays, retry_later
from ._enqueue import Delay, Enqueue, enqueue_item
from .cron import AsyncCronMethods, CronMethods
from .errors import JobNotFound, RedisUnavailable, ValidationError, ZizqError, from_script_error
from .job import Backoff, ErrorRecord, Job, JobKind, Retention, UniqueKey
from .manage import AsyncQueryMethods, QueryMethods

T = TypeVar("T")
DEFAULT_URL = "redis://localhost:6379/0"
Items = Sequence[JobKind | Enqueue]


def default_url() -> str:
    """``ZIZQ_REDIS_URL`` if set, else ``redis://localhost:6379/0``."""
    return os.environ.get("ZIZQ_REDIS_URL") or DEFAULT_URL


def _as_items(jobs: Items) -> list[Enqueue]:
    # Middleware sees (and may change) every request as an Enqueue.
    return [j if isinstance(j, Enqueue) else Enqueue(j) for j in jobs]


def _connection_options(options: dict[str, Any], *, asyncio: bool) -> dict[str, Any]:
    # Every blocking call gets a client-side deadline. zizq retries by itself
    # (see run), knowing which calls are safe to repeat, so redis-py does not;
    # an asyncio client needs redis-py's asyncio Retry.
    options.setdefault("socket_timeout", 30.0)
    options.setdefault("socket_connect_timeout", 10.0)
    options.setdefault("retry", (AsyncRetry if asyncio else Retry)(NoBackoff(), 0))
    return options


def _unavailable(url: str | None, started: float, exc: Exception) -> RedisUnavailable:
    """The error after retrying since ``started`` (time.monotonic()): it says
    how long Redis was tried, which is less than ``retry_for`` when the next
    pause would have run past it."""
    waited = time.monotonic() - started
    return RedisUnavailable(f"redis at {connect.redact(url) if url else '?'} unavailable for {waited:.1f}s: {exc}")


def _durability(wait_replicas: int, wait_timeout: float) -> tuple[int, int]:
    if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
        raise ValidationError(f"wait_replicas {wait_replicas!r} must be a whole number of replicas, 0 or more")
    if isinstance(wait_timeout, bool) or not isinstance(wait_timeout, (int, float)) or not wait_timeout > 0:
        raise ValidationError(f"wait_timeout {wait_timeout!r} must be a number of seconds above 0")
    return wait_replicas, max(1, round(wait_timeout * 1000))


class Client(CronMethods, QueryMethods):
    """A blocking zizq client for one namespace.

    ``Client.from_url("redis://localhost:6379/0")``; the namespace (default
    "zizq") is the key prefix ``{zizq}:``, one Redis hash slot.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        namespace: str = "zizq",
        *,
        url: str | None = None,
        retry_for: float = 30.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.core = Core(namespace)
        self.redis = redis_client
        self.url = url
        self.retry_for = retry_for
        self.enqueue_middleware: list[Any] = []
        self.wait_replicas, self._wait_ms = _durability(wait_replicas, wait_timeout)
        # What from_url was given besides the URL, so a worker can open
        # connections of its own to the same place.
        self.connect_options = connect_options or {}

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        namespace: str = "zizq",
        *,
        retry_for: float = 30.0,
        cluster: bool | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        **redis_options: Any,
    ) -> Client:
        """Connect to ``url`` (default: ``ZIZQ_REDIS_URL``, else localhost).

        ``url`` is ``redis://``, ``rediss://`` (TLS), ``unix://``,
        ``redis+cluster://host:port[,host:port…]`` (or ``cluster=True``) or
        ``redis+sentinel://host:port[,host:port…]/SERVICE``; see
        :mod:`zizq.connect` for every form and query option. A malformed URL
        or an unknown option raises :class:`zizq.ValidationError`.

        While Redis cannot be reached (or is loading, or read-only, or the
        cluster is failing over) a call is retried with backoff (0.5 s
        doubling to 30 s) for up to ``retry_for`` seconds, then raises
        :class:`zizq.RedisUnavailable`. An enqueue sent again creates nothing
        twice: a job that ran and was deleted in between is recognised for
        60 s after, so keep ``retry_for`` under 60.

        ``wait_replicas`` (0: off) makes every enqueue wait, with ``WAIT``,
        until that many replicas have the new jobs, for up to
        ``wait_timeout`` seconds; if fewer confirm in time the enqueue is sent
        again (safely: same ids), so a returned enqueue survives a failover.
        Other keyword arguments go to redis-py's client.
        """
        url = url or default_url()
        options = {"cluster": cluster, **redis_options}
        return cls(
            connect.sync_redis(url, **_connection_options(dict(options), asyncio=False)),
            namespace,
            url=url,
            retry_for=retry_for,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            connect_options=options,
        )

    @property
    def namespace(self) -> str:
        return self.core.namespace

    def run(self, call: Call[T], *, retry_for: float | None = None) -> T:
        """Send one script call, loading the script if Redis lacks it, and
        retrying while Redis is unavailable for up to ``retry_for`` seconds
        (default: the client's)."""
        window = self.retry_for if retry_for is None else retry_for
        started = time.monotonic()
        deadline = started + window
        delays = retry_delays()
        while True:
            try:
                return call.decode(self._send(call))
            except TRANSIENT as exc:
                call = call.repeated()
                pause = next(delays)
                if time.monotonic() + pause > deadline:
                    raise _unavailable(self.url, started, exc) from exc
                time.sleep(pause)

    def _send(self, call: Call[Any]) -> Any:
        s = call.script
        try:
            if self.wait_replicas and s.name == "enqueue":
                return self._send_waiting(call)
            try:
                return self.redis.evalsha(s.sha, len(call.keys), *call.keys, *call.args)
            except NoScriptError:
                # Redis restarted or flushed its scripts: EVAL sends the source,
                # which also caches it for the next EVALSHA.
                return self.redis.eval(s.source, len(call.keys), *call.keys, *call.args)
        except ResponseError as exc:
            error = None if isinstance(exc, TRANSIENT) else from_script_error(str(exc)) or retry_later(exc)
            if error is None:
                raise
            raise error from None

    def _send_waiting(self, call: Call[Any]) -> Any:
        s, n = call.script, len(call.keys)
        try:
            return connect.send_waiting(
                self.redis, "EVALSHA", call.keys, [s.sha, n, *call.keys, *call.args], self.wait_replicas, self._wait_ms
            )
        except NoScriptError:
            return connect.send_waiting(
                self.redis, "EVAL", call.keys, [s.source, n, *call.keys, *call.args], self.wait_replicas, self._wait_ms
            )

    def enqueue(
        self,
        job: JobKind,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: Delay | None = None,
        ready_at: datetime | None = None,
        retry_limit: int | None = None,
        backoff: Backoff | None = None,
        retention: Retention | None = None,
        unique_key: UniqueKey | str | None = None,
        timeout: Delay | None = None,
    ) -> Job:
        """Enqueue one job; return its metadata.

        Options given here win over the JobKind's class defaults, which win
        over the namespace's. ``delay`` is seconds (float) or a timedelta;
        ``ready_at`` an aware datetime (give one or neither). ``timeout``
        (seconds or a timedelta) is the most the handler may run; past it the
        job fails with ``zizq.JobTimeout``. ``priority``
        0..65535, lower first (default 32768). A duplicate of a live job with
        the same unique key returns that job with ``duplicate=True``.
        """
        item = enqueue_item(job, queue, priority, delay, ready_at, retry_limit, backoff, retention, unique_key, timeout)
        return self._enqueue([item])[0]

    def enqueue_raw(self, type_name: str, payload: Any, *, queue: str = "default", **options: Any) -> Job:
        """Enqueue a job by type name with a plain JSON payload (for job types
        defined elsewhere). Takes the options of :meth:`enqueue`."""
        return self._enqueue([Enqueue.raw(type_name, payload, queue=queue, **options)])[0]

    def enqueue_many(self, jobs: Items) -> list[Job]:
        """Enqueue many jobs atomically: all or none. Items are JobKind
        instances or :class:`zizq.Enqueue` (a job with options). Results come
        in input order; a unique key repeated in the batch resolves to its
        first job."""
        return self._enqueue(jobs)

    def use(self, fn: middleware.EnqueueMiddleware) -> middleware.EnqueueMiddleware:
        """Add enqueue middleware ``fn(items, call_next) -> jobs`` (see
        :mod:`zizq.middleware`); the first added runs outermost. Returns
        ``fn``, so it works as a decorator."""
        self.enqueue_middleware.append(fn)
        return fn

    def _enqueue(self, items: Items) -> list[Job]:
        if self.enqueue_middleware or events.enqueue:
            return middleware.enqueue_sync(self, _as_items(items))
        return self.run(self.core.enqueue(items))

    def get_job(self, job_id: str) -> Job:
        """The job with its payload; raises JobNotFound when it does not
        exist or is past its purge time (saying so when it finished within
        the last minute and was deleted at once, a retention of 0)."""
        job = self.run(self.core.get([job_id]))[0]
        if job is None:
            raise job_not_found(job_id, self.run(self.core.done([job_id]))[0])
        return job

    def patch_job(
        self,
        job_id: str,
        *,
        queue: str = UNSET,
        priority: int = UNSET,
        ready_at: datetime | None = UNSET,
        retry_limit: int | None = UNSET,
        backoff: Backoff | None = UNSET,
        retention: Retention | None = UNSET,
    ) -> Job:
        """Change a job that has not finished; only the options given change.

        ``ready_at``: an aware datetime; a ready job given a future time
        becomes scheduled, a scheduled job given a past time (or None: now)
        becomes ready. ``retry_limit``/``backoff`` None: back to the namespace
        default. ``retention`` None clears both sub-fields; a Retention sets
        the sub-fields it has. Raises JobNotFound, or JobStateError for a
        completed or dead job.
        """
        changes = patch_args(
            queue=queue,
            priority=priority,
            ready_at=ready_at,
            retry_limit=retry_limit,
            backoff=backoff,
            retention=retention,
        )
        return self.run(self.core.patch(job_id, changes))

    def delete_job(self, job_id: str) -> None:
        """Delete a job in any state, in flight included (the worker's later
        ack is ignored). Raises JobNotFound."""
        if not self.run(self.core.delete([job_id])):
            raise JobNotFound(f"no job with id {job_id!r}")

    def retry_job(self, job_id: str) -> Job:
        """Put a dead job back to ready: attempts reset to 0, error history
        kept (so attempt numbers there start again at 1). Its unique key is
        judged as an enqueue's: if another job holds the key in a status
        this job's scope conflicts with, nothing changes and
        UniqueKeyHeld is raised, naming that job. Raises JobNotFound, or
        JobStateError if the job is not dead."""
        return self.run(self.core.retry(job_id))

    def job_errors(self, job_id: str) -> list[ErrorRecord]:
        """A job's failed attempts, oldest first (the newest 100 are kept,
        or the namespace's error_history). Raises JobNotFound."""
        return self.run(self.core.errors(job_id))

    def pause_queue(self, queue: str) -> bool:
        """Stop workers taking jobs from ``queue``; its jobs stay ready and
        enqueueing still works. False if it was already paused."""
        return self.run(self.core.pause(queue, True))

    def resume_queue(self, queue: str) -> bool:
        """Let workers take from ``queue`` again. False if it was not paused."""
        return self.run(self.core.pause(queue, False))

    def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` finished jobs past their purge_at; return how
        many. Workers do this in the background."""
        return self.run(self.core.purge(limit))

    def set_defaults(
        self,
        *,
        retry_limit: int | None = UNSET,
        backoff: Backoff | None = UNSET,
        retention: Retention | None = UNSET,
        error_history: int | None = UNSET,
        max_recoveries: int | None = UNSET,
    ) -> dict[str, float]:
        """Change the namespace's defaults, used by jobs that have no value of
        their own when they fail or finish; None restores the built-in one.
        ``max_recoveries`` (3) is how often a job may be handed back after its
        worker was lost before it fails as a poison pill (``zizq.WorkerLost``).
        Returns every setting in force (call with no arguments to read them).
        """
        changes = defaults_args(
            retry_limit=retry_limit,
            backoff=backoff,
            retention=retention,
            error_history=error_history,
            max_recoveries=max_recoveries,
        )
        return self.run(self.core.defaults(changes))

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(AsyncCronMethods, AsyncQueryMethods):
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

    def __init__(
        self,
        redis_client: redis.asyncio.Redis,
        namespace: str = "zizq",
        *,
        url: str | None = None,
        retry_for: float = 30.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.core = Core(namespace)
        self._loop_lock = threading.Lock()
        self._spare: AsyncRedis | None = None  # for the first event loop that uses this client
        self._latest: AsyncRedis
        self._by_loop: dict[asyncio.AbstractEventLoop, AsyncRedis] = {}
        self.redis = redis_client
        self.url = url
        self.retry_for = retry_for
        self.enqueue_middleware: list[Any] = []
        self.wait_replicas, self._wait_ms = _durability(wait_replicas, wait_timeout)
        # What from_url was given besides the URL, so a worker can open
        # connections of its own to the same place.
        self.connect_options = connect_options or {}

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
                    options = _connection_options(dict(self.connect_options), asyncio=True)
                    client = connect.async_redis(self.url, **options)
                self._by_loop[loop] = self._latest = client
            return client

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        namespace: str = "zizq",
        *,
        retry_for: float = 30.0,
        cluster: bool | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        **redis_options: Any,
    ) -> AsyncClient:
        """See :meth:`Client.from_url`."""
        url = url or default_url()
        options = {"cluster": cluster, **redis_options}
        return cls(
            connect.async_redis(url, **_connection_options(dict(options), asyncio=True)),
            namespace,
            url=url,
            retry_for=retry_for,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            connect_options=options,
        )

    @property
    def namespace(self) -> str:
        return self.core.namespace

    async def run(self, call: Call[T], *, retry_for: float | None = None) -> T:
        """See :meth:`Client.run`."""
        window = self.retry_for if retry_for is None else retry_for
        started = time.monotonic()
        deadline = started + window
        delays = retry_delays()
        while True:
            try:
                return call.decode(await self._send(call))
            except TRANSIENT as exc:
                call = call.repeated()
                pause = next(delays)
                if time.monotonic() + pause > deadline:
                    raise _unavailable(self.url, started, exc) from exc
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
            error = None if isinstance(exc, TRANSIENT) else from_script_error(str(exc)) or retry_later(exc)
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

    async def enqueue(
        self,
        job: JobKind,
        *,
        queue: str | None = None,
        priority: int | None = None,
        delay: Delay | None = None,
        ready_at: datetime | None = None,
        retry_limit: int | None = None,
        backoff: Backoff | None = None,
        retention: Retention | None = None,
        unique_key: UniqueKey | str | None = None,
        timeout: Delay | None = None,
    ) -> Job:
        """See :meth:`Client.enqueue`."""
        item = enqueue_item(job, queue, priority, delay, ready_at, retry_limit, backoff, retention, unique_key, timeout)
        return (await self._enqueue([item]))[0]

    async def enqueue_raw(self, type_name: str, payload: Any, *, queue: str = "default", **options: Any) -> Job:
        """See :meth:`Client.enqueue_raw`."""
        return (await self._enqueue([Enqueue.raw(type_name, payload, queue=queue, **options)]))[0]

    async def enqueue_many(self, jobs: Items) -> list[Job]:
        """See :meth:`Client.enqueue_many`."""
        return await self._enqueue(jobs)

    def use(self, fn: middleware.AsyncEnqueueMiddleware) -> middleware.AsyncEnqueueMiddleware:
        """See :meth:`Client.use`; ``fn`` and ``call_next`` are coroutines."""
        self.enqueue_middleware.append(fn)
        return fn

    async def _enqueue(self, items: Items) -> list[Job]:
        if self.enqueue_middleware or events.enqueue:
            return await middleware.enqueue_async(self, _as_items(items))
        return await self.run(self.core.enqueue(items))

    async def get_job(self, job_id: str) -> Job:
        """See :meth:`Client.get_job`."""
        job = (await self.run(self.core.get([job_id])))[0]
        if job is None:
            raise job_not_found(job_id, (await self.run(self.core.done([job_id])))[0])
        return job

    async def patch_job(
        self,
        job_id: str,
        *,
        queue: str = UNSET,
        priority: int = UNSET,
        ready_at: datetime | None = UNSET,
        retry_limit: int | None = UNSET,
        backoff: Backoff | None = UNSET,
        retention: Retention | None = UNSET,
    ) -> Job:
        """See :meth:`Client.patch_job`."""
        changes = patch_args(
            queue=queue,
            priority=priority,
            ready_at=ready_at,
            retry_limit=retry_limit,
            backoff=backoff,
            retention=retention,
        )
        return await self.run(self.core.patch(job_id, changes))

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
        return await self.run(self.core.purge(limit))

    async def set_defaults(
        self,
        *,
        retry_limit: int | None = UNSET,
        backoff: Backoff | None = UNSET,
        retention: Retention | None = UNSET,
        error_history: int | None = UNSET,
        max_recoveries: int | None = UNSET,
    ) -> dict[str, float]:
        """See :meth:`Client.set_defaults`."""
        changes = defaults_args(
            retry_limit=retry_limit,
            backoff=backoff,
            retention=retention,
            error_history=error_history,
            max_recoveries=max_recoveries,
        )
        return await self.run(self.core.defaults(changes))

    async def close(self) -> None:
        """Close the running event loop's connections (a later call opens
        new ones)."""
        await self.redis.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

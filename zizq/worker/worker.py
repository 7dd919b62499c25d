"""Worker: takes jobs from Redis and runs their handlers.

The worker is asyncio inside. One loop takes jobs in batches (up to
``prefetch`` held at once), ``concurrency`` runners execute handlers (sync
handlers in a thread pool), and one task sends acks in batches. When nothing
is ready, the worker blocks in Redis (BLPOP on its queues' wake lists) until a
job arrives or the next scheduled job falls due.

A thread of its own keeps the worker's lease in Redis (a heartbeat every
``heartbeat_interval`` seconds), so a busy event loop or a CPU-bound handler
cannot make the worker look dead: see :mod:`zizq.worker.lease`. How the worker
stops, gracefully or at once, is in :mod:`zizq.worker.stop`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from zizq import _hotpath, connect, events, logs
from zizq._protocol.call import Call
from zizq._protocol.enqueue import delay_ms, epoch_ms
from zizq._protocol.lease import TakeResult, by_owner
from zizq._protocol.reconnect import REDIS_ERRORS, TRANSIENT, as_not_now, reconnect_delays
from zizq._version import __version__
from zizq.client.aio import AsyncClient
from zizq.client.options import connection_options
from zizq.client.sync import Client
from zizq.errors import JobTimeout, KillJob, LeaseLost, RedisUnavailable, RetryJob, ValidationError, ZizqError
from zizq.job import Job, validate_name
from zizq.middleware import run_chain
from zizq.router import Route, Router
from zizq.worker.cron_tick import CronStats, cron_loop
from zizq.worker.lease import HeartbeatThread, new_worker_id, rejoin
from zizq.worker.stop import LAST_TRY, leave_at_once, shutdown

log = logging.getLogger("zizq.worker")
T = TypeVar("T")
PURGE_BATCH = 1000


@dataclass
class WorkerStats:
    """Counts since the worker started. ``completed`` and ``failed`` count
    outcomes Redis has recorded (the ack or fail script returned), so when
    ``completed`` reaches n, n jobs are done in Redis too."""

    taken: int = 0
    completed: int = 0
    failed: int = 0
    timed_out: int = 0
    # Acks and fails Redis refused: the job was deleted, recovered after a lost
    # lease, or (a call sent again after its reply was lost) already done.
    refused_acks: int = 0
    recovered: int = 0  # jobs of lost workers this worker's heartbeats handed back
    poisoned: int = 0  # jobs of lost workers failed as poison pills (zizq.WorkerLost)
    leases_lost: int = 0


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


# Where the frames that call a handler live: zizq itself, and the stdlib
# plumbing between them (the event loop, the thread pool).
_PLUMBING = tuple(
    os.path.dirname(m.__file__) + os.sep for m in (sys.modules["zizq"], asyncio, concurrent.futures) if m.__file__
)


def backtrace_of(exc: BaseException) -> str:
    """The failure's traceback as recorded: from the first frame outside
    zizq and the stdlib plumbing that runs handlers (the user's code) down;
    whole when every frame is zizq's (NoRouteError, say)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PLUMBING):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def _count(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{what} {value!r} must be an integer of at least 1")
    return int(value)


def _seconds(what: str, value: object, *, zero: bool = False) -> float:
    """A duration in seconds: a number above 0 (or 0 too, with ``zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value >= 0 if zero else value > 0):
        raise ValidationError(f"{what} {value!r} must be a number of seconds {'0 or above' if zero else 'above 0'}")
    return float(value)


class Worker:
    """Runs the handlers of ``router`` for jobs from ``queues``.

    :param client: a Client or AsyncClient made with ``from_url`` (the worker
        opens its own connections to the same Redis and namespace).
    :param queues: queue names to take from, in no particular order (dispatch
        is by priority, then age, across all of them); None means every queue.
    :param concurrency: handlers running at once.
    :param prefetch: jobs held at once, running or taken and waiting to run;
        defaults to ``2 * concurrency``, so the next batch is at hand while
        one runs (a job waiting here is leased to this worker: if it dies,
        the job goes back to its queue). Set it to ``concurrency`` to lease
        only what runs, which spreads slow jobs more evenly over workers.
    :param shutdown_timeout: seconds running handlers get to finish after a
        stop is asked for.
    :param heartbeat_interval: seconds between heartbeats.
    :param lease: seconds without a heartbeat after which this worker counts
        as lost and any other worker hands its jobs back to their queues.
    :param max_idle: longest time, in seconds, one blocking wait for work
        lasts before the worker looks again anyway.
    :param purge_interval: seconds between sweeps that delete finished jobs
        past their purge_at (in batches of 1,000).
    :param cron: run the cron tick (enqueue due cron entries; any number of
        workers may, each due run is enqueued once). False turns it off.
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
        heartbeat_interval: float = 1.0,
        lease: float = 5.0,
        max_idle: float = 5.0,
        purge_interval: float = 30.0,
        cron: bool = True,
    ) -> None:
        concurrency = _count("concurrency", concurrency)
        prefetch = 2 * concurrency if prefetch is None else _count("prefetch", prefetch)
        if prefetch < concurrency:
            raise ValidationError(f"prefetch {prefetch!r} must be at least concurrency ({concurrency})")
        shutdown_timeout = _seconds("shutdown_timeout", shutdown_timeout, zero=True)
        heartbeat_interval = _seconds("heartbeat_interval", heartbeat_interval)
        lease = _seconds("lease", lease)
        max_idle = _seconds("max_idle", max_idle)
        purge_interval = _seconds("purge_interval", purge_interval)
        if heartbeat_interval >= lease:
            raise ValidationError(f"lease {lease!r}s must be longer than heartbeat_interval {heartbeat_interval!r}s")
        if client.url is None:
            raise ZizqError("give the worker a client made with from_url(), so it can open its own connections")
        self._url = client.url
        self._connect = dict(client.connect_options)  # cluster=…, TLS files…: for the worker's own connections
        self.namespace = client.namespace
        self.router = router
        self.queues = [validate_name("queue", q) for q in queues] if queues else []
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.shutdown_timeout = shutdown_timeout
        self.heartbeat_interval = heartbeat_interval
        self.lease = lease
        self.max_idle = max_idle
        self.purge_interval = purge_interval
        self.cron = cron
        self.cron_stats = CronStats()
        self.id = new_worker_id()
        self.stats = WorkerStats()
        self.forced = False  # a second stop abandoned running handlers
        self.metrics_url: str | None = None  # where this process serves metrics (set by serve_metrics), for the logs
        self._namespace_retry_limit: int | None = None  # for failure log lines; read when needed
        self._retry_limit_read_at = 0.0  # time.monotonic() after which it is read again
        self._id_lock = threading.Lock()
        self._stop: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poking: asyncio.Future[Any] | None = None
        self._stop_early = False  # a stop asked for before run_async set up its loop
        self._stop_lock = threading.Lock()
        self._give_up_at: float | None = None  # time.monotonic() after which Redis calls get one try
        # Set when a call failed in transit (a failover, say): Redis may have
        # lost the last writes, acks included, so the take loop reconciles.
        self._suspect = False

    # -- control ---------------------------------------------------------

    def run(self) -> None:
        """Run until SIGINT or SIGTERM (or :meth:`stop`), then shut down
        gracefully. Blocks."""
        asyncio.run(self.run_async(handle_signals=True))

    def stop(self) -> None:
        """Ask the worker to stop: it starts no more jobs, hands back at once
        those it took but did not start, lets running handlers finish within
        ``shutdown_timeout``, and sends its acks. A second call stops at once:
        one quick try to send the acks and hand back every job still held
        (what does not get through goes back when the lease lapses)."""
        with self._stop_lock:
            if self._loop is None:
                self._stop_early = True  # run_async stops at once when it starts
                return
        self._loop.call_soon_threadsafe(self._on_stop)

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop_early or (self._stop is not None and self._stop.is_set())

    def _on_stop(self) -> None:
        # In the event loop, so that a first and a second stop cannot be mixed up.
        assert self._stop is not None and self._forced is not None
        if self._stop.is_set():
            self._forced.set()
            self._give_up_at = time.monotonic()  # Redis calls from now on: one try
        else:
            self._begin_stop()
        self._room.set()  # a take loop waiting for room looks again
        self._poke()

    def _begin_stop(self) -> None:
        assert self._stop is not None
        if not self._stop.is_set():
            self._stop.set()
            # Redis calls retry until the shutdown timeout ends, then get one try.
            self._give_up_at = time.monotonic() + self.shutdown_timeout
            asyncio.get_running_loop().call_later(LAST_TRY, self._cut_take)

    def _cut_take(self) -> None:
        # A take round Redis did not answer within LAST_TRY of a stop (a
        # stalled Redis: a blocking wait ends at once, with the poke) is cut
        # short. The leave hands back whatever it may have taken.
        if self._taker is not None and not self._taker.done():
            self._taker.cancel()

    def _poke(self) -> None:
        # Ends a blocking wait for work at once: a token on the list only
        # this worker waits on. (Cancelling a blocked BLPOP can leave it
        # stuck in redis-py until its timeout.)
        self._poking = asyncio.ensure_future(self._client.redis.rpush(self._stop_key, 1))
        self._poking.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run in the current event loop until :meth:`stop` is called."""
        # A connection for each runner (failures are recorded per job) and a
        # few for take, acks and purge: redis-py's pools hold 100 by default.
        self._client = AsyncClient.from_url(
            self._url, self.namespace, **{**self._connect, "max_connections": self.concurrency + 8}
        )
        self._core = self._client.core
        self._stop_key = self._core.key("stop", new_worker_id())
        # Blocking waits get a connection of their own (retried by the take
        # loop, not by redis-py, which would hold a stop up with its backoff).
        self._blocker = connect.async_redis(
            self._url,
            **{
                **connection_options(dict(self._connect), asyncio=True),
                "single_connection_client": True,
                "socket_timeout": self.max_idle + 10,
                "socket_connect_timeout": 10,
            },
        )
        self._stop = asyncio.Event()
        self._forced = asyncio.Event()
        self._room = asyncio.Event()  # set when a job ends (or a stop is asked for)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="zizq-handler")
        self._waiting: asyncio.Queue[tuple[str, Job]] = asyncio.Queue()
        # (owner, id) of jobs taken and not yet finished. The owner is part of
        # the key: after a lost lease this worker may take one of its own
        # recovered jobs again, under its new id, while the first run goes on.
        self._held: set[tuple[str, str]] = set()
        self._acks: list[tuple[str, str]] = []
        self._acking: set[tuple[str, str]] = set()  # the batch of acks being sent
        self._ack_wanted = asyncio.Event()
        self._closing = False
        self._running: set[tuple[str, str]] = set()  # (owner, id) of jobs whose handler runs
        self._idle = asyncio.Event()  # set while no handler runs
        self._heart: HeartbeatThread | None = None  # started once the worker has joined
        self._taker: asyncio.Future[None] | None = None  # the take loop, once the worker has joined
        with self._stop_lock:
            self._loop = asyncio.get_running_loop()  # last: stop() works from here on
            if self._stop_early:
                self._begin_stop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self.stop)
        reached = False
        try:
            reached = await self._reach_redis()
        finally:
            if not reached:  # misconfigured, or stopped before Redis answered: nothing was taken
                await self._close(handle_signals)
        if not reached:
            return
        self._acker = asyncio.create_task(self._ack_loop())
        self._background = [asyncio.create_task(self._purge_loop())]
        if self.cron:
            cron = cron_loop(self._client, self._stop, self.max_idle, self.cron_stats)
            self._background.append(asyncio.create_task(cron))
        self._runners = [asyncio.create_task(self._run_jobs()) for _ in range(self.concurrency)]
        serving = asyncio.create_task(self._serve())
        forced = asyncio.create_task(self._forced.wait())
        try:
            await asyncio.wait({serving, forced}, return_when=asyncio.FIRST_COMPLETED)
            if not serving.done():  # a second stop, wherever the shutdown was
                serving.cancel()
                await asyncio.wait({serving}, timeout=LAST_TRY)
                await leave_at_once(self)
        finally:
            forced.cancel()
            if not serving.done():  # run_async itself was cancelled
                serving.cancel()
            await self._close(handle_signals)
        if not serving.cancelled():
            serving.result()  # raises what ended the take loop, if anything did

    async def _close(self, handle_signals: bool) -> None:
        assert self._loop is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._client.close(), LAST_TRY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._blocker.aclose(), LAST_TRY)
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.remove_signal_handler(sig)

    async def _reach_redis(self) -> bool:
        """Before anything else: PING until Redis answers (True), or until a
        stop is asked for (False). An error waiting cannot fix (a wrong
        password, an unknown host, a database out of range, TLS settings)
        raises :class:`zizq.RedisMisconfigured` at once; an unreachable
        Redis (not started yet, say) is tried again with backoff, one log
        line a try with the seconds waited so far."""
        assert self._stop is not None
        started = time.monotonic()
        delays = reconnect_delays()
        while not self._stop.is_set():
            ping = asyncio.ensure_future(connect.ping_async(self._client.redis, self._url))
            await self._until(ping, self._stop)
            if ping.cancelled():
                break
            exc = ping.exception()
            if exc is None:
                return True
            if not isinstance(exc, TRANSIENT):
                raise exc
            pause = next(delays)
            log.warning(
                "redis unavailable for %.1fs at start-up (%s: %s); trying again in %.1fs",
                time.monotonic() - started,
                connect.redact(self._url),
                connect.reason(exc),
                pause,
            )
            await self._until(asyncio.sleep(pause), self._stop)
        return False

    async def _serve(self) -> None:
        """Join, take jobs until a stop, then shut down gracefully (also
        when the take loop failed; not when cancelled by a second stop)."""
        assert self._stop is not None
        failure = None
        try:
            await warn_unknown_queues(self._client, self.queues, self.router)
            await self._warn_on_eviction()
            # A stop ends a join being retried at once: nothing is held yet (a
            # join cut short in Redis leaves a lease that lapses, holding nothing).
            joining = asyncio.ensure_future(self._call(self._core.heartbeat(self.id, "join", self._lease_ms)))
            await self._until(joining, self._stop)
            if joining.cancelled():
                raise RedisUnavailable("a stop came while redis did not answer the join")
            joining.result()
            self._heart = HeartbeatThread(self)
            self._heart.start()
            self._log_start()
            self._taker = asyncio.ensure_future(self._take_loop())
            try:
                await self._taker
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():  # a second stop
                    raise
                log.warning("a take redis did not answer within %.0fs of the stop was cut short", LAST_TRY)
        except RedisUnavailable as exc:  # only from the join, with a stop: nothing is held
            log.warning("stopped before joining: %s", exc)
        except Exception as exc:
            failure = exc
        self._begin_stop()
        await shutdown(self)
        if failure is not None:
            raise failure

    def _log_start(self) -> None:

        routes = {name: self.router.lookup(name).handler for name in self.router.types}
        try:
            routes["*"] = self.router.lookup("").handler  # no job type is named "": only a fallback answers
        except ZizqError:
            pass
        logs.started(
            version=__version__,
            worker_id=self.id,
            url=connect.redact(self._url),
            namespace=self.namespace,
            queues=self.queues,
            concurrency=self.concurrency,
            prefetch=self.prefetch,
            hot_path="Cython" if _hotpath.EXTENSION else "pure Python",
            metrics_url=self.metrics_url,
            handlers={name: logs.qualified_name(handler) for name, handler in routes.items()},
        )
        log.debug("joined with a lease of %gs, renewed every %gs", self.lease, self.heartbeat_interval)

    @property
    def _lease_ms(self) -> int:
        return round(self.lease * 1000)

    async def _warn_on_eviction(self) -> None:
        try:
            policy = (await self._client.redis.config_get("maxmemory-policy")).get("maxmemory-policy")
        except REDIS_ERRORS:  # CONFIG may be forbidden (ACLs, managed Redis); Redis may be down
            return
        if policy not in (None, "noeviction", b"noeviction"):
            log.warning(
                "redis maxmemory-policy is %r: under memory pressure Redis may evict jobs. Set it to noeviction.",
                policy.decode() if isinstance(policy, bytes) else policy,
            )

    # -- taking ----------------------------------------------------------

    async def _take_loop(self) -> None:
        assert self._stop is not None
        delays = reconnect_delays()
        down_since = None  # time.monotonic() of the first failure of an outage
        while not self._stop.is_set():
            room = self.prefetch - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                await self._take(self.id, room)
            except TRANSIENT as exc:
                # Whatever was sent may have run (a take whose reply was lost,
                # an ack a failover undid): the next round reconciles first.
                self._suspect = True
                pause = next(delays)
                down_since = down_since or time.monotonic()
                log.warning(
                    "taking jobs failed: redis unavailable for %.1fs (%s); trying again in %.1fs",
                    time.monotonic() - down_since,
                    connect.reason(exc),
                    pause,
                )
                await self._until(asyncio.sleep(pause), self._stop)
            else:
                delays = reconnect_delays()
                down_since = None

    async def _take(self, owner: str, room: int) -> None:
        """One round of the take loop: take up to ``room`` jobs and, when
        nothing more is ready, wait for work. Raises TRANSIENT errors."""
        if self._suspect:
            # After a failover the new master may lack acks and fails this
            # worker sent: its jobs would sit in flight under a live lease.
            self._suspect = False
            await self._reconcile(owner)
        try:
            result = await self._client.run(self._core.take(owner, room, self.queues), retry_for=0)
        except LeaseLost:
            client = Client.from_url(self._url, self.namespace, **self._connect)
            try:
                await asyncio.to_thread(rejoin, self, owner, client)
            finally:
                client.close()
            return
        await self._hold(owner, result)
        if len(result.jobs) == room or result.more:
            return
        timeout = self.max_idle
        if result.next_due is not None:
            timeout = min(timeout, (result.next_due - result.now) / 1000 + 0.001)
        log.debug("nothing more ready: waiting up to %.3fs for work", timeout)
        woken = await self._wait_for_work(timeout, owner, room - len(result.jobs))
        if woken is not None:
            await self._hold(owner, woken)

    async def _hold(self, owner: str, result: TakeResult) -> None:
        """Queue the jobs a take returned for the runners."""
        for job in result.jobs:
            self._held.add((owner, job.id))
            self._waiting.put_nowait((owner, job))
        if result.jobs and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "took %d jobs (%d held): %s",
                len(result.jobs),
                len(self._held),
                ", ".join(f"{job.type}[{job.id}]" for job in result.jobs),
            )
        for job_id, problem in result.broken:
            # A job this client cannot read (written by hand, or by
            # another language's client): fail it rather than stop.
            failure = self._core.fail(
                owner,
                job_id,
                message=f"the job's stored record cannot be read: {problem}",
                error_type="zizq.PayloadDecodeError",
                jitter=random.random(),
            )
            try:
                await self._call(failure)
            except TRANSIENT:
                raise
            except Exception:  # recorded in Redis; only its reply could not be read
                log.exception("job %s cannot be read", job_id)
        self.stats.taken += len(result.jobs)

    async def _reconcile(self, owner: str) -> None:
        """After a call that failed in transit (a take whose reply was lost,
        or an ack or fail a failover undid): jobs Redis holds for this worker
        that the worker does not know of go back to their queues. One try:
        raises TRANSIENT errors."""
        held = await _plain(self._client.redis.smembers(self._core.key("worker", owner)))
        # Known: held, or done with the ack not yet sent (or being sent).
        known = {i for o, i in (*self._held, *self._acking, *self._acks) if o == owner}
        ids = (i.decode() if isinstance(i, bytes) else i for i in held)
        unknown = [i for i in ids if i not in known]
        if unknown:
            await self._client.run(self._core.release(owner, unknown), retry_for=0)
            log.warning("handed back %d jobs taken by a take whose reply was lost", len(unknown))

    async def _wait_for_work(self, timeout: float, owner: str, room: int) -> TakeResult | None:
        """Block until a wake-up (or ``timeout`` seconds), then take up to
        ``room`` jobs in the same round trip: the take is pipelined behind
        the BLPOP, and Redis runs it the moment the BLPOP returns. None when
        that take did not run or failed (on a cluster the take is not
        pipelined); the take loop's next round takes the usual way."""
        queues = self.queues
        if not queues:
            known = await _plain(self._client.redis.smembers(self._core.key("queues")))
            queues = sorted(q.decode() if isinstance(q, bytes) else q for q in known)
        keys = [*self._core.wake_keys(queues, every_queue=not self.queues), self._stop_key]
        timeout = max(timeout, 0.001)
        if connect.is_cluster(self._blocker):
            await _plain(self._blocker.blpop(keys, timeout=timeout))
            return None
        take = self._core.take(owner, room, self.queues)
        pipe = self._blocker.pipeline(transaction=False)
        pipe.blpop(keys, timeout=timeout)
        pipe.evalsha(take.script.sha, len(take.keys), *take.keys, *take.args)
        woke, reply = await pipe.execute(raise_on_error=False)
        if isinstance(woke, ResponseError):  # a master demoted to a replica ends the wait with UNBLOCKED
            raise as_not_now(woke) or woke
        if isinstance(reply, Exception):  # NOSCRIPT, a lost lease, ...: the next round's take deals with it
            return None
        return take.decode(reply)

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

    async def _call(self, call: Call[Any]) -> Any:
        """Run a script call, retrying with backoff (0.5 s doubling to 30 s)
        while Redis cannot be reached: for as long as it takes while the
        worker runs; after a stop, until the shutdown timeout ends (a call
        then gets one try of at most LAST_TRY seconds, and so does every call
        after a second stop); then raises RedisUnavailable. Retrying is safe:
        see docs/protocol/other-languages.md."""
        assert self._stop is not None and self._forced is not None
        delays = reconnect_delays()
        started = time.monotonic()
        while True:
            give_up = self._give_up_at
            try:
                async with asyncio.timeout(None if give_up is None else max(give_up - time.monotonic(), LAST_TRY)):
                    return await self._client.run(call, retry_for=0)
            except TRANSIENT as exc:  # the timeout's TimeoutError too (an OSError)
                self._suspect = True
                pause = next(delays)
                if self._give_up_at is not None and time.monotonic() + pause > self._give_up_at:
                    raise RedisUnavailable(f"redis unavailable until the shutdown timeout ran out: {exc}") from exc
                log.warning(
                    "redis unavailable for %.1fs (%s); retrying in %.1fs", time.monotonic() - started, exc, pause
                )
                # A stop shortens the wait: the retries may have to end sooner.
                await self._until(asyncio.sleep(pause), self._forced if self._stop.is_set() else self._stop)

    # -- running ---------------------------------------------------------

    async def _run_jobs(self) -> None:
        # A runner runs its jobs one after another, each in a task of its own
        # (so each gets its own copy of the context variables): shutdown
        # waits until no handler runs, then cancels the runners, and with
        # them any handler still running.
        assert self._stop is not None
        while True:
            owner, job = await self._waiting.get()
            if self._stop.is_set():  # no queued job starts after a stop: the shutdown hands them back
                self._waiting.put_nowait((owner, job))
                return
            pair = (owner, job.id)
            self._running.add(pair)
            self._idle.clear()
            try:
                await asyncio.create_task(self._run_one(owner, job))
            except RedisUnavailable as exc:  # only after a stop
                log.warning("job %s: its outcome could not be recorded (%s); it will run again", job.id, exc)
            except Exception:  # a failure that could not be recorded: log it, keep going
                log.exception("job %s: could not record its outcome", job.id)
            finally:
                self._running.discard(pair)
                if not self._running:
                    self._idle.set()
                self._held.discard(pair)
                self._room.set()

    async def _run_one(self, owner: str, job: Job) -> None:
        # The run in progress counts (stored: the failed runs so far), so the
        # handler sees the number its failure's error record will carry.
        job.attempts += 1
        timeout = job.timeout_ms / 1000 if job.timeout_ms else None
        deadline = asyncio.timeout(timeout) if timeout else None
        pool, sync = self._pool, False
        # In this job's own task: its log records, the handler's too, say which job they are about.
        logs.current_job.set(logs.JobContext(job, owner, self.namespace))
        logs.received(job)
        # Hooks cost nothing per job unless some are registered.
        observed = bool(events.job_start or events.job_end or events.job_exception)
        started = time.perf_counter()
        if observed and events.job_start:
            events.emit(events.job_start, events.JobEvent("job_start", job, self.namespace, owner))
        try:
            route = self.router.lookup(job.type)
            args = route.arguments(job)
            sync = not route.is_async
            if self.router.middleware:
                handling = run_chain(self.router.middleware, job, lambda: self._call_handler(route, args, pool))
            else:
                handling = self._call_handler(route, args, pool)
            try:
                if deadline is None:
                    await handling
                else:
                    async with deadline:
                        await handling
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():  # a stop: the job goes back to its queue
                    raise
                # Raised by the handler itself: a failure like any other.
                raise RuntimeError("the handler raised asyncio.CancelledError without being cancelled") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every handler failure is recorded on the job
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                self.stats.timed_out += 1
                if sync:
                    self._abandon(pool)
                exc = JobTimeout(f"the handler ran longer than its timeout of {timeout:g}s")
            duration = time.perf_counter() - started
            if observed and events.job_exception:
                event = events.JobEvent("job_exception", job, self.namespace, owner, duration, error=exc)
                events.emit(events.job_exception, event)
            result = await self._fail(owner, job, exc, duration)
            if observed and events.job_end:
                outcome: events.Outcome = "refused" if result is None else "failed"
                if result is not None and result.status == "dead":
                    outcome = "dead"
                event = events.JobEvent("job_end", job, self.namespace, owner, duration, outcome, exc)
                events.emit(events.job_end, event)
        else:
            duration = time.perf_counter() - started
            self._acks.append((owner, job.id))
            self._ack_wanted.set()
            logs.done(job, duration)
            if observed and events.job_end:
                event = events.JobEvent("job_end", job, self.namespace, owner, duration, "completed")
                events.emit(events.job_end, event)

    @staticmethod
    async def _call_handler(route: Route, args: tuple[Any, ...], pool: ThreadPoolExecutor) -> None:
        # The handler itself: the innermost step of any dequeue middleware.
        if route.is_async:
            await route.handler(*args)
        else:
            # In a copy of this task's context (as asyncio.to_thread does), so
            # the handler's log records carry its job's ids.
            context = contextvars.copy_context()
            await asyncio.get_running_loop().run_in_executor(pool, context.run, route.handler, *args)

    def _abandon(self, pool: ThreadPoolExecutor) -> None:
        # A sync handler cannot be stopped: its thread runs on, holding a
        # slot of the pool. New jobs get a fresh pool of full size.
        if pool is self._pool:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="zizq-handler")
            pool.shutdown(wait=False)

    async def _fail(self, owner: str, job: Job, exc: Exception, seconds: float) -> Job | None:
        """Record the failure of ``job``'s run (``seconds`` long) and log it."""
        retry_at = retry_in = None
        if isinstance(exc, RetryJob):
            try:
                if exc.at is not None:
                    retry_at = epoch_ms(exc.at)  # type: ignore[arg-type]
                else:
                    retry_in = delay_ms(exc.delay)  # type: ignore[arg-type]
            except ZizqError as bad:  # recorded as a plain failure, retried with backoff
                exc = bad
        error = f"{error_type_of(exc)}: {exc}" if str(exc) else error_type_of(exc)
        try:
            result = await self._call(
                self._core.fail(
                    owner,
                    job.id,
                    message=str(exc) or repr(exc),
                    error_type=error_type_of(exc),
                    backtrace=backtrace_of(exc),
                    retry_at_ms=retry_at,
                    retry_in_ms=retry_in,
                    kill=isinstance(exc, KillJob),
                    jitter=random.random(),
                )
            )
        except Exception as problem:
            logs.not_recorded(job, error, str(problem) or type(problem).__name__)
            raise
        if result is None:
            self.stats.refused_acks += 1
            why = "the job is no longer this worker's (deleted, or recovered after a lost lease)"
            logs.not_recorded(job, error, why)
        else:
            self.stats.failed += 1
            limit = None
            if not isinstance(exc, RetryJob) and logs.jobs_log.isEnabledFor(logging.WARNING):
                limit = await self._retry_limit(result)
            logs.failed(job, result, exc, error, limit, seconds)
        return result  # type: ignore[no-any-return]

    async def _retry_limit(self, job: Job) -> int | None:
        """The job's retry limit, for its failure's log line: its own, else
        the namespace's (read again at most every 30 s); None when that
        cannot be read."""
        if job.retry_limit is not None:
            return job.retry_limit
        now = time.monotonic()
        if now >= self._retry_limit_read_at:
            self._retry_limit_read_at = now + 30
            try:
                settings = await self._client.run(self._core.defaults([]), retry_for=0)
                self._namespace_retry_limit = int(settings["retry_limit"])
            except Exception as exc:  # a log line never fails a job
                log.debug("cannot read the namespace's retry limit (%s)", exc)
        return self._namespace_retry_limit

    # -- housekeeping ----------------------------------------------------

    async def _purge_loop(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            try:
                while await self._client.run(self._core.purge(PURGE_BATCH), retry_for=0) == PURGE_BATCH:
                    pass
            except TRANSIENT as exc:
                log.warning("purge skipped: redis unavailable (%s)", exc)
            except Exception:  # keep purging later; never take the worker down
                log.exception("purge failed")
            await self._until(asyncio.sleep(self.purge_interval), self._stop)

    # -- acks ------------------------------------------------------------

    async def _ack_loop(self) -> None:
        while not self._closing:
            await self._ack_wanted.wait()
            self._ack_wanted.clear()
            await self._flush_acks()

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks, []
            self._acking.update(batch)
            unsent = by_owner(batch)
            try:
                for owner, ids in list(unsent.items()):
                    refused = await self._call(self._core.ack(owner, ids))
                    del unsent[owner]
                    self.stats.completed += len(ids) - len(refused)
                    if log.isEnabledFor(logging.DEBUG):
                        gone = set(refused)
                        acked = [i for i in ids if i not in gone]
                        log.debug("acked %d jobs: %s", len(acked), ", ".join(acked))
                    if refused:
                        self.stats.refused_acks += len(refused)
                        log.warning(
                            "%d acks refused (jobs deleted, or recovered after this worker's lease was lost): %s",
                            len(refused),
                            ", ".join(refused[:5]),
                        )
            except RedisUnavailable as exc:  # only after a stop
                left = sum(map(len, unsent.values()))
                log.warning(
                    "%d acks not sent (%s): unless a last try gets through, those jobs will run again", left, exc
                )
                return
            except Exception:
                # Not a lost connection (that is retried): keep the acks for
                # the next flush rather than leave the jobs in flight.
                log.exception("acks failed; they will be sent again")
                return
            finally:
                self._acking.difference_update(batch)
                # Acks not sent (an error, a cancellation) wait for the next flush.
                self._acks = [(o, i) for o, ids in unsent.items() for i in ids] + self._acks


async def _plain(aw: Awaitable[T]) -> T:
    """The reply of a plain Redis command (``run`` does this for scripts): a
    reply that means "not now" raises NotNow, one of TRANSIENT."""
    try:
        return await aw
    except ResponseError as exc:
        later = as_not_now(exc)
        if later is None:
            raise
        raise later from exc


async def warn_unknown_queues(client: AsyncClient, queues: Sequence[str], router: Router) -> None:
    """Log one warning for each queue served that no routed JobKind names
    (its QUEUE) and no job was ever enqueued to: most likely a typo in -q.
    Redis being unavailable skips the check."""
    named = set(router.queues)
    unknown = [q for q in queues if q not in named]
    if not unknown:
        return
    try:
        known = await _plain(client.redis.smembers(client.core.key("queues")))
    except REDIS_ERRORS:
        return
    used = {q.decode() if isinstance(q, bytes) else q for q in known}
    for q in unknown:
        if q not in used:
            log.warning(
                "queue %r: no handler's JobKind has it as QUEUE and no job was ever enqueued to it "
                "(a typo?); this worker waits on it anyway. Queues in use: %s",
                q,
                ", ".join(sorted(used | named)) or "none yet",
            )

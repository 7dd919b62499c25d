"""Worker: takes jobs from Redis and runs their handlers.

The worker is asyncio inside. One loop takes jobs in batches (up to
``prefetch`` held at once), ``concurrency`` runners execute handlers (sync
handlers in a thread pool), and one task sends acks in batches. When nothing
is ready, the worker blocks in Redis (BLPOP on its queues' wake lists) until a
job arrives or the next scheduled job falls due.

A thread of its own keeps the worker's lease in Redis (a heartbeat every
``heartbeat_interval`` seconds), so a busy event loop or a CPU-bound handler
cannot make the worker look dead: see :mod:`zizq.worker.lease`. How the worker
stops, gracefully or at once, is in :mod:`zizq.worker.stop`; how a runner
runs one job and records its outcome, in :mod:`zizq.worker.job_run`. The
state of one run (connections, events, the jobs held) is a
:class:`zizq.worker.run.Run`, made anew each time the worker runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from redis.exceptions import ResponseError

from zizq import _hotpath, connect, logs
from zizq._protocol.lease import TakeResult
from zizq._protocol.reconnect import REDIS_ERRORS, TRANSIENT, as_not_now, reconnect_delays
from zizq._version import __version__
from zizq.client.aio import AsyncClient
from zizq.client.sync import Client
from zizq.errors import LeaseLost, RedisUnavailable, ValidationError, ZizqError
from zizq.job import validate_name
from zizq.router import Router
from zizq.worker import sync_lane
from zizq.worker.cron_tick import CronStats, cron_loop
from zizq.worker.job_run import JobRunner
from zizq.worker.lease import HeartbeatThread, new_worker_id, rejoin
from zizq.worker.run import Lending, Run, until
from zizq.worker.stats import WorkerStats
from zizq.worker.stop import LAST_TRY, leave_at_once, run_until_signalled, shutdown

__all__ = ("PURGE_BATCH", "Worker", "WorkerStats")  # WorkerStats: where zizq imports it from

log = logging.getLogger("zizq.worker")
T = TypeVar("T")
PURGE_BATCH = 1000
FLOW_INTERVAL = 1.0  # seconds between drains of queued dependents (lua/flow_drain.lua)
START_WAIT = 0.1  # seconds a take waits for the suspect it took to start (see Worker._let_start)


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
        self._id = new_worker_id()  # the id of the last run, or of the next one
        self.stats = WorkerStats()
        self.forced = False  # a second stop abandoned running handlers
        self.metrics_url: str | None = None  # where this process serves metrics (set by serve_metrics), for the logs
        self._run: Run | None = None  # the run in progress
        self._stop_early = False  # a stop asked for while no run was in progress
        self._stop_lock = threading.Lock()

    @property
    def id(self) -> str:
        """The worker's id in Redis (a new one after a lost lease)."""
        run = self._run
        return self._id if run is None else run.id

    # -- control ---------------------------------------------------------

    def run(self) -> None:
        """Run until SIGINT or SIGTERM (or :meth:`stop`), then shut down
        gracefully. Blocks."""
        run_until_signalled(self.run_async, self.stop)

    def stop(self) -> None:
        """Ask the worker to stop: it starts no more jobs, hands back at once
        those it took but did not start, lets running handlers finish within
        ``shutdown_timeout``, and sends its acks. A second call stops at once:
        one quick try to send the acks and hand back every job still held
        (what does not get through goes back when the lease lapses)."""
        with self._stop_lock:
            run = self._run
            if run is None:
                self._stop_early = True  # run_async stops at once when it starts
                return
        run.loop.call_soon_threadsafe(run.on_stop)

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        run = self._run
        return self._stop_early or (run is not None and run.stop.is_set())

    async def run_async(self) -> None:
        """Run in the current event loop until :meth:`stop` is called."""
        run = Run(
            self._url,
            self.namespace,
            self._connect,
            worker_id=self.id,
            stats=self.stats,
            concurrency=self.concurrency,
            lease=self.lease,
            heartbeat_interval=self.heartbeat_interval,
            shutdown_timeout=self.shutdown_timeout,
            max_idle=self.max_idle,
        )
        with self._stop_lock:
            self._run = run  # last: stop() works from here on
            if self._stop_early:
                self._stop_early = False
                run.begin_stop()
        try:
            await self._run_async(run)
        finally:
            with self._stop_lock:  # a stop from now on is for the next run
                self._id, self._run = run.id, None

    async def _run_async(self, run: Run) -> None:
        reached = False
        try:
            reached = await self._reach_redis(run)
        finally:
            if not reached:  # misconfigured, or stopped before Redis answered: nothing was taken
                await run.close()
        if not reached:
            return
        run.acker = asyncio.create_task(run.ack_loop())
        run.background = [asyncio.create_task(self._purge_loop(run)), asyncio.create_task(self._flow_loop(run))]
        if self.cron:
            cron = cron_loop(run.client, run.stop, self.max_idle, self.cron_stats)
            run.background.append(asyncio.create_task(cron))
        runner = JobRunner(run, self.router)
        if sync_lane.fits(self.router):  # handler threads of their own
            client = self._sync_client(socket_timeout=self.lease)
            lane = sync_lane.SyncLane(run, runner, client, self.queues, self.prefetch)
            run.lane = lane
            run.runners = [asyncio.create_task(lane.serve())]
        else:
            run.runners = [asyncio.create_task(runner.run_jobs()) for _ in range(self.concurrency)]
        serving = asyncio.create_task(self._serve(run))
        forced = asyncio.create_task(run.forced.wait())
        try:
            await asyncio.wait({serving, forced}, return_when=asyncio.FIRST_COMPLETED)
            if not serving.done():  # a second stop, wherever the shutdown was
                serving.cancel()
                await asyncio.wait({serving}, timeout=LAST_TRY)
                self.forced = True
                await leave_at_once(run)
        finally:
            forced.cancel()
            if not serving.done():  # run_async itself was cancelled
                serving.cancel()
            await run.close()
        if not serving.cancelled():
            serving.result()  # raises what ended the take loop, if anything did

    def _sync_client(self, **options: Any) -> Client:
        """A sync client of the worker's own, for a thread."""
        return Client.from_url(self._url, self.namespace, **{**self._connect, **options})

    async def _reach_redis(self, run: Run) -> bool:
        """Before anything else: PING until Redis answers (True), or until a
        stop is asked for (False). An error waiting cannot fix (a wrong
        password, an unknown host, a database out of range, TLS settings)
        raises :class:`zizq.RedisMisconfigured` at once; an unreachable
        Redis (not started yet, say) is tried again with backoff, one log
        line a try with the seconds waited so far."""
        started = time.monotonic()
        delays = reconnect_delays()
        while not run.stop.is_set():
            ping = asyncio.ensure_future(connect.ping_async(run.client.redis, self._url))
            await until(ping, run.stop)
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
            await until(asyncio.sleep(pause), run.stop)
        return False

    async def _serve(self, run: Run) -> None:
        """Join, take jobs until a stop, then shut down gracefully (also
        when the take loop failed; not when cancelled by a second stop)."""
        failure = None
        try:
            await warn_unknown_queues(run.client, self.queues, self.router)
            await self._warn_on_eviction(run)
            # A stop ends a join being retried at once: nothing is held yet (a
            # join cut short in Redis leaves a lease that lapses, holding nothing).
            sent = time.monotonic()
            joining = asyncio.ensure_future(run.call(run.core.heartbeat(run.id, "join", run.lease_ms)))
            await until(joining, run.stop)
            if joining.cancelled():
                raise RedisUnavailable("a stop came while redis did not answer the join")
            joining.result()
            run.confirm_lease(run.id, sent)
            run.heart = HeartbeatThread(run, self._sync_client(socket_timeout=self.lease))
            run.heart.start()
            self._log_start()
            run.taker = asyncio.ensure_future(self._take_loop(run))
            try:
                await run.taker
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():  # a second stop
                    raise
                log.warning("a take redis did not answer within %.0fs of the stop was cut short", LAST_TRY)
        except RedisUnavailable as exc:  # only from the join, with a stop: nothing is held
            log.warning("stopped before joining: %s", exc)
        except Exception as exc:
            failure = exc
        run.begin_stop()
        await shutdown(run)
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

    async def _warn_on_eviction(self, run: Run) -> None:
        try:
            policy = (await run.client.redis.config_get("maxmemory-policy")).get("maxmemory-policy")
        except REDIS_ERRORS:  # CONFIG may be forbidden (ACLs, managed Redis); Redis may be down
            return
        if policy not in (None, "noeviction", b"noeviction"):
            log.warning(
                "redis maxmemory-policy is %r: under memory pressure Redis may evict jobs. Set it to noeviction.",
                policy.decode() if isinstance(policy, bytes) else policy,
            )

    # -- taking ----------------------------------------------------------

    async def _take_loop(self, run: Run) -> None:
        delays = reconnect_delays()
        down_since = None  # time.monotonic() of the first failure of an outage
        while not run.stop.is_set():
            room = self.prefetch - len(run.held)
            if room <= 0:
                run.room.clear()
                await run.room.wait()
                continue
            try:
                await self._take(run, run.id, room)
            except TRANSIENT as exc:
                # Whatever was sent may have run (a take whose reply was lost,
                # an ack a failover undid): the next round reconciles first.
                run.doubt()
                pause = next(delays)
                down_since = down_since or time.monotonic()
                log.warning(
                    "taking jobs failed: redis unavailable for %.1fs (%s); trying again in %.1fs",
                    time.monotonic() - down_since,
                    connect.reason(exc),
                    pause,
                )
                await until(asyncio.sleep(pause), run.stop)
            else:
                delays = reconnect_delays()
                down_since = None

    async def _take(self, run: Run, owner: str, room: int) -> None:
        """One round of the take loop: take up to ``room`` jobs and, when
        nothing more is ready, wait for work. Raises TRANSIENT errors."""
        if run.take_doubt():
            # After a failover the new master may lack acks and fails this
            # worker sent: its jobs would sit in flight under a live lease.
            await self._reconcile(run, owner)
        doubts = run.doubts  # before the take is sent: see Run.taken_at
        run.room.clear()  # set again by a job that ends from now on
        try:
            result = await run.client.run(run.core.take(owner, room, self.queues, self._free(run)), retry_for=0)
        except LeaseLost:
            client = self._sync_client()
            try:
                await asyncio.to_thread(rejoin, run, owner, client)
            finally:
                client.close()
            return
        await self._hold(run, owner, result, doubts)
        if result.held_back:
            await self._after_suspect(run, owner, result)
            return
        if len(result.jobs) == room or result.more:
            if run.lane is not None and result.jobs:
                await self._lend(run, run.lane, owner)
            return
        timeout = self.max_idle
        if result.next_due is not None:
            timeout = min(timeout, (result.next_due - result.now) / 1000 + 0.001)
        log.debug("nothing more ready: waiting up to %.3fs for work", timeout)
        woken = await self._wait_for_work(run, timeout, owner, room - len(result.jobs))
        if woken is not None:
            await self._hold(run, owner, woken, doubts)
            if woken.held_back:
                await self._after_suspect(run, owner, woken)

    async def _lend(self, run: Run, lane: Lending, owner: str) -> None:
        """While more jobs are ready than there is room for, the handler
        threads take and ack themselves (no event loop between Redis and
        them), until they run out of work, a call of theirs fails, a doubt,
        an unconfirmed lease or a stop: then this loop takes again (and
        reconciles, rejoins or waits for work as needed)."""
        lane.lend(owner)
        await until(lane.back.wait(), run.stop)
        if not lane.back.is_set():  # a stop: after any take of theirs in flight
            await asyncio.to_thread(lane.reclaim)
        result = lane.returned()
        if result is not None:
            await self._fail_broken(run, owner, result)
            if result.held_back:
                await self._after_suspect(run, owner, result)

    async def _after_suspect(self, run: Run, owner: str, result: TakeResult) -> None:
        """After a take that held jobs back: a recovered job (a suspect)
        must start at once (so that its loss is counted) and is taken
        alone. With a runner free, let what was taken start before the next
        take; else wait until a runner is free."""
        if self._free(run) > 0:
            await self._let_start(run, owner, result)
        else:
            await until(run.room.wait(), run.stop)

    async def _let_start(self, run: Run, owner: str, result: TakeResult) -> None:
        """Let the runners start the jobs ``result`` took (at most
        ``START_WAIT`` seconds) before the next take: a suspect taken alone
        that kills the process must do so before this worker takes the
        next, or the next one's loss would count too."""
        pairs = [(owner, job.id) for job in result.jobs]
        deadline = time.monotonic() + START_WAIT
        while not all(p in run.running or p not in run.held for p in pairs) and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        await asyncio.sleep(0)  # the handler's task runs its first step

    def _free(self, run: Run) -> int:
        """How many jobs taken now start at once: the runners no held job
        waits for (the take marks those started)."""
        return max(0, self.concurrency - len(run.held))

    async def _hold(self, run: Run, owner: str, result: TakeResult, doubts: int) -> None:
        """Queue the jobs a take returned for the runners; ``doubts`` is
        ``run.doubts`` as the take was sent."""
        run.hold(owner, result.jobs, doubts)
        if result.jobs and log.isEnabledFor(logging.DEBUG):
            log.debug(
                "took %d jobs (%d held): %s",
                len(result.jobs),
                len(run.held),
                ", ".join(f"{job.type}[{job.id}]" for job in result.jobs),
            )
        await self._fail_broken(run, owner, result)

    async def _fail_broken(self, run: Run, owner: str, result: TakeResult) -> None:
        """Fail the jobs ``result`` took whose records cannot be read."""
        for job_id, problem in result.broken:
            # A job this client cannot read (written by hand, or by
            # another language's client): fail it rather than stop.
            failure = run.core.fail(
                owner,
                job_id,
                message=f"the job's stored record cannot be read: {problem}",
                error_type="zizq.PayloadDecodeError",
                jitter=random.random(),
                dequeued_at=result.now,  # the take's time is the attempt's dequeued_at
            )
            try:
                await run.call(failure)
            except TRANSIENT:
                raise
            except Exception:  # recorded in Redis; only its reply could not be read
                log.exception("job %s cannot be read", job_id)

    async def _reconcile(self, run: Run, owner: str) -> None:
        """After a call that failed in transit (a take whose reply was lost,
        or an ack or fail a failover undid): jobs Redis holds for this worker
        that the worker does not know of go back to their queues. One try:
        raises TRANSIENT errors."""
        held = await _plain(run.client.redis.smembers(run.core.key("worker", owner)))
        known = run.known_ids(owner)
        ids = (i.decode() if isinstance(i, bytes) else i for i in held)
        unknown = [i for i in ids if i not in known]
        if unknown:
            # Only jobs still in flight for this worker go back: one acked
            # since the SMEMBERS (by the acker meanwhile) is not counted.
            if released := await run.client.run(run.core.release(owner, unknown), retry_for=0):
                log.warning("handed back %d jobs taken by a take whose reply was lost", released)

    async def _wait_for_work(self, run: Run, timeout: float, owner: str, room: int) -> TakeResult | None:
        """Block until a wake-up (or ``timeout`` seconds), then take up to
        ``room`` jobs in the same round trip: the take is pipelined behind
        the BLPOP, and Redis runs it the moment the BLPOP returns. None when
        that take did not run or failed (on a cluster the take is not
        pipelined); the take loop's next round takes the usual way."""
        queues = self.queues
        if not queues:
            known = await _plain(run.client.redis.smembers(run.core.key("queues")))
            queues = sorted(q.decode() if isinstance(q, bytes) else q for q in known)
        keys = [*run.core.wake_keys(queues, every_queue=not self.queues), run.stop_key]
        timeout = max(timeout, 0.001)
        if connect.is_cluster(run.blocker):
            await _plain(run.blocker.blpop(keys, timeout=timeout))
            return None
        take = run.core.take(owner, room, self.queues, self._free(run))
        pipe = run.blocker.pipeline(transaction=False)
        pipe.blpop(keys, timeout=timeout)
        pipe.evalsha(take.script.sha, len(take.keys), *take.keys, *take.args)
        woke, reply = await pipe.execute(raise_on_error=False)
        if isinstance(woke, ResponseError):  # a master demoted to a replica ends the wait with UNBLOCKED
            raise as_not_now(woke) or woke
        if isinstance(reply, Exception):  # NOSCRIPT, a lost lease, ...: the next round's take deals with it
            return None
        return take.decode(reply)

    # -- housekeeping ----------------------------------------------------

    async def _purge_loop(self, run: Run) -> None:
        while not run.stop.is_set():
            try:
                while await run.client.run(run.core.purge(PURGE_BATCH), retry_for=0) == PURGE_BATCH:
                    pass
            except TRANSIENT as exc:
                log.warning("purge skipped: redis unavailable (%s)", exc)
            except Exception:  # keep purging later; never take the worker down
                log.exception("purge failed")
            await until(asyncio.sleep(self.purge_interval), run.stop)

    async def _flow_loop(self, run: Run) -> None:
        # A job with more dependents than one script call releases leaves
        # the rest queued (lua/flow_drain.lua): release them, a bounded
        # step at a time, about once a second.
        while not run.stop.is_set():
            try:
                while await run.client.run(run.core.flows.drain(), retry_for=0) > 0 and not run.stop.is_set():
                    pass
            except TRANSIENT as exc:
                log.warning("releasing dependents skipped: redis unavailable (%s)", exc)
            except Exception:  # try again later; never take the worker down
                log.exception("releasing dependents failed")
            await until(asyncio.sleep(FLOW_INTERVAL), run.stop)


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

"""The state of one run of a worker: what :meth:`zizq.Worker.run_async` sets
up when it starts and tears down when it ends.

A :class:`Run` holds the connections (a client, and a connection of its own
for blocking waits), the handlers' thread pool, the events that signal a
stop, the jobs held and running, the acks waiting to be sent and the tasks
that do the work. It is what the heartbeat thread (:mod:`zizq.worker.lease`)
and a stop (:mod:`zizq.worker.stop`) work on, through the Protocols they
declare. A Worker makes a new Run each time it runs, so it can run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from zizq import connect
from zizq._protocol.call import Call
from zizq._protocol.lease import TakeResult, by_owner
from zizq._protocol.reconnect import TRANSIENT, reconnect_delays
from zizq.client.aio import AsyncClient
from zizq.client.options import connection_options
from zizq.errors import RedisUnavailable
from zizq.worker.control import JobControl
from zizq.worker.lease import HeartbeatThread, new_worker_id
from zizq.worker.stats import WorkerStats
from zizq.worker.stop import LAST_TRY, Waiting

if TYPE_CHECKING:
    from zizq.job import Job

log = logging.getLogger("zizq.worker")


class Lending(Protocol):
    """Handler threads the take loop can lend the taking to
    (zizq.worker.sync_lane.SyncLane): :meth:`lend` starts it, :attr:`back`
    is set once they give it back, :meth:`reclaim` takes it back at a stop,
    :meth:`returned` is the take that made them give it back."""

    back: asyncio.Event

    def lend(self, owner: str) -> None: ...

    def reclaim(self) -> None: ...

    def returned(self) -> TakeResult | None: ...


def handler_pool(concurrency: int) -> ThreadPoolExecutor:
    """The thread pool that runs sync handlers."""
    return ThreadPoolExecutor(concurrency, thread_name_prefix="zizq-handler")


async def until(aw: Awaitable[Any], event: asyncio.Event) -> None:
    """Wait for ``aw`` or for ``event``, whichever comes first; the other
    is cancelled."""
    task = asyncio.ensure_future(aw)
    stopped = asyncio.create_task(event.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, stopped):
        t.cancel()
    await asyncio.gather(task, stopped, return_exceptions=True)


class Run:
    """The state of one run of a worker (made in its event loop).

    :param worker_id: the worker's id in Redis as the run starts.
    :param stats: the worker's counts, which the run adds to.
    :param lease: seconds without a heartbeat after which the worker is lost.
    :param heartbeat_interval: seconds between heartbeats.
    :param shutdown_timeout: seconds running handlers get after a stop.
    :param max_idle: longest blocking wait for work, in seconds.
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        connect_options: dict[str, Any],
        *,
        worker_id: str,
        stats: WorkerStats,
        concurrency: int,
        lease: float,
        heartbeat_interval: float,
        shutdown_timeout: float,
        max_idle: float,
    ) -> None:
        self.namespace = namespace
        self.id = worker_id
        self.id_lock = threading.Lock()  # held while rejoin changes the id
        self.stats = stats
        self.concurrency = concurrency
        self.lease = lease
        self.lease_ms = round(lease * 1000)
        self.heartbeat_interval = heartbeat_interval
        self.shutdown_timeout = shutdown_timeout
        self.loop = asyncio.get_running_loop()
        # A connection for each runner (failures are recorded per job) and a
        # few for take, acks and purge: redis-py's pools hold 100 by default.
        self.client = AsyncClient.from_url(url, namespace, **{**connect_options, "max_connections": concurrency + 8})
        self.core = self.client.core
        self.stop_key = self.core.key("stop", new_worker_id())
        # Blocking waits get a connection of their own (retried by the take
        # loop, not by redis-py, which would hold a stop up with its backoff).
        self.blocker = connect.async_redis(
            url,
            **{
                **connection_options(dict(connect_options), asyncio=True),
                "single_connection_client": True,
                "socket_timeout": max_idle + 10,
                "socket_connect_timeout": 10,
            },
        )
        self.stop = asyncio.Event()
        self.forced = asyncio.Event()  # a second stop
        self.room = asyncio.Event()  # set when a job ends (or a stop is asked for)
        self.give_up_at: float | None = None  # time.monotonic() after which Redis calls get one try
        self.pool = handler_pool(concurrency)
        self.waiting: Waiting = asyncio.Queue()
        # (owner, id) of jobs taken and not yet finished. The owner is part of
        # the key: after a lost lease this worker may take one of its own
        # recovered jobs again, under its new id, while the first run goes on.
        self.held: set[tuple[str, str]] = set()
        self.running: set[tuple[str, str]] = set()  # (owner, id) of jobs whose handler runs
        self.idle = asyncio.Event()  # set while no handler runs
        # Held while a job starts or ends, and while a stop begins: a handler
        # thread (zizq.worker.sync_lane) starts no job once a stop has begun,
        # and ``idle`` matches ``running``.
        self.start_lock = threading.Lock()
        self.acks: list[tuple[str, str]] = []
        self.dequeued: dict[tuple[str, str], int] = {}  # the attempt (dequeued_at, ms) of each ack not yet sent
        self.results: dict[tuple[str, str], bytes] = {}  # the result (JSON) of each ack not yet sent, when any
        self.controls: dict[tuple[str, str], JobControl] = {}  # the progress and cancel state of each running job
        self.cancelled: set[tuple[str, str]] = set()  # held jobs cancelled in Redis before they started
        # The attempts (dequeued_at, ms) of each held job, each with whether
        # its handler started: two when a failover lost a take and this
        # worker took the job again while it still held an older attempt.
        # The job's entries above are the attempts' together: the end of one
        # clears none that another still needs.
        self.attempts: dict[tuple[str, str], dict[int | None, bool]] = {}
        # (owner, time.monotonic()) until which the owner's lease surely holds:
        # the send time of its last confirmed heartbeat plus the lease.
        self.lease_until: tuple[str, float] = (worker_id, 0.0)
        self.acking: set[tuple[str, str]] = set()  # the batch of acks being sent
        self.ack_wanted = asyncio.Event()
        self.closing = False  # set: the acker ends after its flush
        self.heart: HeartbeatThread | None = None  # started once the worker has joined
        self.taker: asyncio.Future[None] | None = None  # the take loop, once the worker has joined
        self.acker: asyncio.Task[None] | None = None  # once the worker has reached Redis
        self.background: list[asyncio.Task[None]] = []  # purge and cron
        self.runners: list[asyncio.Task[None]] = []
        self.poking: asyncio.Future[Any] | None = None
        # Set when a call failed in transit (a failover, say): Redis may have
        # lost the last writes, acks included, so the take loop reconciles.
        # An Event: the heartbeat thread sets it too.
        self._doubted = threading.Event()
        self.doubts = 0  # how many calls failed in transit so far (a count that only grows)
        # The count of doubts as each held job's take was sent, by (owner, id,
        # dequeued_at): a job taken before a later doubt is looked up before
        # it starts (a failover may have lost its take, and the job gone back
        # to its queue, from where this worker may even take it again).
        self.taken_at: dict[tuple[str, str, int | None], int] = {}
        self.lane: Lending | None = None  # the handler threads, when they take and ack themselves

    # -- doubt -----------------------------------------------------------

    def doubt(self) -> None:
        """A call failed in transit: Redis may have lost this worker's last
        writes, so the take loop reconciles before its next take. Safe from
        any thread (the heartbeat thread calls it)."""
        self.doubts += 1
        self._doubted.set()

    def take_doubt(self) -> bool:
        """Whether a call was doubted since the last time this was asked
        (in the event loop). A doubt raised while this runs is folded into
        the reconcile about to start."""
        if not self._doubted.is_set():
            return False
        self._doubted.clear()
        return True

    def doubted(self) -> bool:
        """Whether the take loop has a doubt to settle (a reconcile) before
        its next take. Safe from any thread."""
        return self._doubted.is_set()

    def recheck(self) -> None:
        """Redis may hold a job in flight for this worker that the worker
        does not know of (a held job found not in flight as taken: Redis may
        have another attempt of it, from a take whose reply was lost, that
        the last reconcile kept for the attempt then held; or see
        :meth:`check_in_flight`): the take loop reconciles, at once (its
        wait for work is ended). Not a doubt: the jobs held need no new
        look. In the event loop."""
        self._doubted.set()
        self._poke()

    def known_ids(self, owner: str) -> set[str]:
        """The ids of ``owner``'s jobs this worker knows of: held (an attempt
        received, waiting or running), or done with the ack not yet sent (or
        being sent). In the event loop."""
        # A job whose older attempt was dropped (JobRunner._still_taken) left
        # ``held`` while a later one, received, may wait or run.
        # A copy first: handler threads (zizq.worker.sync_lane) change it meanwhile.
        received = [(o, i) for o, i, _ in list(self.taken_at)]
        return {i for o, i in (*self.held, *self.running, *received, *self.acking, *self.acks) if o == owner}

    def check_in_flight(self, owner: str, in_redis: set[str]) -> None:
        """A heartbeat found the jobs ``in_redis`` in flight for ``owner``
        in Redis. One this worker does not know of means a write of its was
        lost with no call failing (an ack sent to a master that a failover
        demoted just after: the connections it closed were idle, and were
        opened again without an error), or a take's reply is on its way: the
        take loop reconciles (one SMEMBERS, at most once a heartbeat). Safe
        from any thread."""
        self.loop.call_soon_threadsafe(self._check_in_flight, owner, in_redis)

    def _check_in_flight(self, owner: str, in_redis: set[str]) -> None:
        if not in_redis <= self.known_ids(owner):
            self.recheck()

    def confirm_lease(self, owner: str, sent: float) -> None:
        """A heartbeat (or join) of ``owner`` sent at ``sent``
        (time.monotonic()) renewed its lease. Safe from any thread."""
        self.lease_until = (owner, sent + self.lease)

    def lease_holds(self, owner: str) -> bool:
        """Whether ``owner``'s lease surely holds now, by this worker's own
        clock: a job is started only then (else another worker may have it)."""
        holder, until = self.lease_until
        return holder == owner and time.monotonic() < until

    def running_ids(self, owner: str) -> list[str]:
        """The ids of ``owner``'s jobs whose handler runs now, sorted. Safe
        from any thread (the heartbeat thread publishes them for ``zizq
        top``)."""
        return sorted(job_id for o, job_id in _snapshot(self.running) if o == owner)

    # -- stopping --------------------------------------------------------

    def on_stop(self) -> None:
        """A stop was asked for. In the event loop, so that a first and a
        second stop cannot be mixed up."""
        if self.stop.is_set():
            self.forced.set()
            self.give_up_at = time.monotonic()  # Redis calls from now on: one try
        else:
            self.begin_stop()
        self.room.set()  # a take loop waiting for room looks again
        self._poke()

    def begin_stop(self) -> None:
        """Start a graceful stop (once): Redis calls retry until the
        shutdown timeout ends, then get one try."""
        if not self.stop.is_set():
            with self.start_lock:
                self.stop.set()
            self.give_up_at = time.monotonic() + self.shutdown_timeout
            self.loop.call_later(LAST_TRY, self._cut_take)

    def _cut_take(self) -> None:
        # A take round Redis did not answer within LAST_TRY of a stop (a
        # stalled Redis: a blocking wait ends at once, with the poke) is cut
        # short. The leave hands back whatever it may have taken.
        if self.taker is not None and not self.taker.done():
            self.taker.cancel()

    def _poke(self) -> None:
        # Ends a blocking wait for work at once: a token on the list only
        # this worker waits on. (Cancelling a blocked BLPOP can leave it
        # stuck in redis-py until its timeout.)
        self.poking = asyncio.ensure_future(self.client.redis.rpush(self.stop_key, 1))
        self.poking.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        """Close the run's connections (at most LAST_TRY seconds each)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.client.close(), LAST_TRY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.blocker.aclose(), LAST_TRY)

    # -- calls -----------------------------------------------------------

    async def call(self, call: Call[Any]) -> Any:
        """Run a script call, retrying with backoff (0.5 s doubling to 30 s)
        while Redis cannot be reached: for as long as it takes while the
        worker runs; after a stop, until the shutdown timeout ends (a call
        then gets one try of at most LAST_TRY seconds, and so does every call
        after a second stop); then raises RedisUnavailable. Retrying is safe:
        see docs/protocol/other-languages.md."""
        delays = reconnect_delays()
        started = time.monotonic()
        while True:
            give_up = self.give_up_at
            try:
                async with asyncio.timeout(None if give_up is None else max(give_up - time.monotonic(), LAST_TRY)):
                    return await self.client.run(call, retry_for=0)
            except TRANSIENT as exc:  # the timeout's TimeoutError too (an OSError)
                self.doubt()
                pause = next(delays)
                if self.give_up_at is not None and time.monotonic() + pause > self.give_up_at:
                    raise RedisUnavailable(f"redis unavailable until the shutdown timeout ran out: {exc}") from exc
                log.warning(
                    "redis unavailable for %.1fs (%s); retrying in %.1fs", time.monotonic() - started, exc, pause
                )
                # A stop shortens the wait: the retries may have to end sooner.
                await until(asyncio.sleep(pause), self.forced if self.stop.is_set() else self.stop)

    # -- jobs ------------------------------------------------------------

    def job_ended(self, pair: tuple[str, str], dequeued_at: int | None) -> None:
        """The attempt ``dequeued_at`` (ms) of the job ``pair`` (owner, id)
        ended, its outcome recorded or queued, or was dropped before it
        started: its runner is free. In the event loop."""
        with self.start_lock:
            self.end_attempt(pair, dequeued_at)
        self.room.set()

    def start_attempt(self, pair: tuple[str, str], dequeued_at: int | None) -> None:
        """The handler of the attempt ``dequeued_at`` (ms) of the job
        ``pair`` starts. With :attr:`start_lock` held."""
        self.running.add(pair)
        self.idle.clear()
        self.attempts.setdefault(pair, {})[dequeued_at] = True

    def end_attempt(self, pair: tuple[str, str], dequeued_at: int | None) -> bool:
        """Forget the attempt ``dequeued_at`` (ms) of the job ``pair``: the
        job's entries go once no other attempt of it needs them (an older
        attempt's end leaves a later one running). Whether no handler runs
        now. With :attr:`start_lock` held."""
        others = self.attempts.get(pair, {})
        others.pop(dequeued_at, None)
        if not any(others.values()):  # no other attempt of the job runs
            self.running.discard(pair)
            self.controls.pop(pair, None)
        if not others:
            self.attempts.pop(pair, None)
            self.held.discard(pair)
            self.cancelled.discard(pair)
        if not self.running:
            self.idle.set()
        return not self.running

    def hold(self, owner: str, jobs: list[Job], doubts: int) -> None:
        """Hold the jobs a take of ``owner`` returned and queue them for the
        runners; ``doubts`` is :attr:`doubts` as the take was sent. Called
        by whoever took them (the take loop, or a handler thread)."""
        with self.start_lock:  # not between a look at a job's attempts and its cleanup
            for job in jobs:
                self.held.add((owner, job.id))
                self.attempts.setdefault((owner, job.id), {})[job.dequeued_at] = False
                self.taken_at[(owner, job.id, job.dequeued_at)] = doubts
        for job in jobs:
            self.waiting.put_nowait((owner, job))
        self.stats.taken += len(jobs)

    # -- acks ------------------------------------------------------------

    def acked(self, owner: str, ids: list[str], refused: list[str]) -> None:
        """Count and log what an ack call of ``owner``'s ``ids`` returned."""
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

    def ack(self, owner: str, job_id: str, dequeued_at: int | None = None, result: bytes = b"") -> None:
        """The job's handler returned: send its ack (of the attempt
        dequeued at ``dequeued_at``, ms; with its ``result`` as JSON, b''
        for none) with the next batch."""
        pending = self.dequeued.get((owner, job_id))
        if pending is not None and dequeued_at is not None and pending > dequeued_at:
            # An older attempt's, with a later one's pending: Redis gave this
            # worker the job again, so it would refuse this one.
            self.acked(owner, [job_id], [job_id])
            return
        self.acks.append((owner, job_id))
        if dequeued_at is not None:
            self.dequeued[(owner, job_id)] = dequeued_at
        if result:
            self.results[(owner, job_id)] = result
        self.ack_wanted.set()

    def cancel(self, owner: str, ids: list[str]) -> None:
        """Jobs of ``owner`` were cancelled in Redis (a heartbeat said so):
        stop their handlers. Safe from any thread."""
        self.loop.call_soon_threadsafe(self._cancel, owner, ids)

    def _cancel(self, owner: str, ids: list[str]) -> None:
        for job_id in ids:
            pair = (owner, job_id)
            control = self.controls.get(pair)
            if control is not None:
                control.cancel()
            elif pair in self.held:
                self.cancelled.add(pair)  # not started yet: the runner skips it

    async def ack_loop(self) -> None:
        """Send acks in batches until the run is closing."""
        while not self.closing:
            await self.ack_wanted.wait()
            self.ack_wanted.clear()
            await self.flush_acks()

    async def flush_acks(self) -> None:
        """Send the acks of jobs done (retrying as :meth:`call` does)."""
        while self.acks:
            batch, self.acks = self.acks, []
            self.acking.update(batch)
            unsent = by_owner(batch)
            try:
                for owner, ids in list(unsent.items()):
                    attempts = [self.dequeued.get((owner, i)) for i in ids]
                    results = [self.results.get((owner, i), b"") for i in ids]
                    refused = await self.call(self.core.ack(owner, ids, attempts, results))
                    del unsent[owner]
                    for i in ids:
                        self.dequeued.pop((owner, i), None)
                        self.results.pop((owner, i), None)
                    self.acked(owner, ids, refused)
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
                self.acking.difference_update(batch)
                # Acks not sent (an error, a cancellation) wait for the next flush.
                self.acks = [(o, i) for o, ids in unsent.items() for i in ids] + self.acks


def _snapshot(pairs: set[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    # The event loop's thread changes the set meanwhile; copying it is one
    # C call under the GIL, and a copy that still met a change is tried again.
    for _ in range(10):
        try:
            return frozenset(pairs)
        except RuntimeError:
            continue
    return frozenset()

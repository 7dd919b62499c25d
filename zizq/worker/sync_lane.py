"""Handler threads for a worker whose handlers are all sync (plain
functions), with no dequeue middleware and no job hooks (see :func:`fits`).

Handing each job from the event loop to a thread pool and back costs the
loop a future, a callback and a wake-up per job, and the loop, not the
handlers, becomes the limit. Here ``concurrency`` threads of their own take
the jobs from the run's ``waiting`` queue (a thread-safe queue), run their
handlers, and report the outcomes to the event loop in batches: one wake-up
of the loop for all the outcomes that came meanwhile. The loop then queues
the acks, records the failures, and frees the runners.

A job these threads do not run themselves, they hand to the usual path
(:meth:`zizq.worker.job_run.JobRunner.run_job`, in the event loop) and wait
for it, so it still holds one of the ``concurrency`` runners: a job with a
timeout (a handler thread cannot be stopped, so the loop times it and, past
the timeout, leaves its thread behind), a job met while hooks are
registered since the run began (the hooks run in the event loop), a job
whose route has become async, a job met while the lease is not
confirmed (the usual path waits for it), and a job taken before a call
failed in transit (the usual path asks Redis whether it is still taken).

While more jobs are ready than the worker has room for, the take loop
lends these threads the taking (:meth:`SyncLane.lend`): a thread that ends
a job sends the acks of the jobs done meanwhile and takes as many jobs as
there is room for, through a sync client of the lane's own (one thread at a
time), so no event loop sits between Redis and the handlers. The acks keep
their owner and attempt (fencing); the jobs taken are held as the take loop
holds them. The threads give the taking back (with the acks not yet sent,
which the event loop then sends) when a take brings less than it asked
for, when a call fails (a doubt: the take loop reconciles), when the lease
is not confirmed, when Redis held a job back or returned one it cannot
read, and on a stop (:meth:`SyncLane.reclaim` waits for a take in flight).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from redis.exceptions import NoScriptError, ResponseError

from zizq import connect, current, events, logs
from zizq._protocol.call import Call
from zizq._protocol.lease import TakeResult
from zizq._protocol.reconnect import TRANSIENT, as_not_now
from zizq._protocol.records import encode_result
from zizq.client.options import reply_error
from zizq.client.sync import Client
from zizq.errors import ZizqError
from zizq.job import Job
from zizq.router import Route, Router
from zizq.worker.control import JobControl
from zizq.worker.job_run import JobRunner
from zizq.worker.run import Run

log = logging.getLogger("zizq.worker")
T = TypeVar("T")
IDLE_LOOK = 0.5  # seconds an idle handler thread waits for a job before it looks for a stop

# What a handler thread reports: (owner, job, what the handler raised or
# None, seconds it ran, the job's control, its result as JSON).
Outcome = tuple[str, Job, Exception | None, float, JobControl, bytes]
# An ack a handler thread queued: (owner, id, the attempt's dequeued_at (ms), its result as JSON).
Ack = tuple[str, str, int | None, bytes]


def fits(router: Router) -> bool:
    """Whether a run should use handler threads of its own: every handler
    of ``router`` (its fallback too) is a plain function, no dequeue
    middleware wraps them, and no job hooks are registered (they run in the
    event loop, so every job would go there: zizq.otel registers some)."""
    if router.middleware or events.job_start or events.job_end or events.job_exception:
        return False
    names = [*router.types, ""]  # "": no job type has it, so only the fallback answers
    for name in names:
        try:
            if router.lookup(name).is_async:
                return False
        except ZizqError:  # no fallback
            pass
    return True


class SyncLane:
    """The handler threads of one :class:`~zizq.worker.run.Run` (which it
    gives a thread-safe ``waiting`` queue). :meth:`serve` is the run's one
    runner task: cancelling it (a stop) cancels the jobs handed to the
    event loop."""

    def __init__(self, run: Run, runner: JobRunner, client: Client, queues: list[str], prefetch: int) -> None:
        self.run = run
        self.runner = runner
        self.client = client  # the threads' own, for takes and acks (closed when the lane ends)
        self.queues = queues
        self.prefetch = prefetch
        # A take once this many jobs fit (or the queue ran dry): a few jobs a call.
        self.batch = max(1, run.concurrency // 2)
        self.owner: str | None = None  # whose jobs the threads take while lent the taking
        self.back = asyncio.Event()  # set (in the event loop) when the threads gave the taking back
        self.back.set()
        self._returned: TakeResult | None = None  # the take that made them give it back, for the take loop
        self._take_lock = threading.Lock()  # one thread takes at a time
        self._acks: list[Ack] = []  # guarded by _lock with owner: queued while lent the taking
        self.jobs: queue.SimpleQueue[tuple[str, Job]] = queue.SimpleQueue()
        run.waiting = self.jobs
        self.context = contextvars.copy_context()  # each job runs in a copy, as a task would
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._wake_pending = False  # a drain is scheduled in the event loop
        self._tasks: set[asyncio.Task[Any]] = set()  # the event loop's work for these threads

    async def serve(self) -> None:
        """Start the handler threads; run until cancelled."""
        for i in range(self.run.concurrency):
            threading.Thread(target=self._work, name=f"zizq-handler-{i}", daemon=True).start()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self.client.close()  # the take loop has taken the taking back (it ends first)
            # A stop: jobs handed to the event loop go back as a runner's
            # would. An idle thread ends once it sees the stop; a thread
            # running a handler ends after it.
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- in the handler threads ------------------------------------------

    def _work(self) -> None:
        run = self.run
        while True:
            try:
                owner, job = self.jobs.get(timeout=IDLE_LOOK)
            except queue.Empty:
                if run.stop.is_set():
                    return
                self._feed()  # acks queued meanwhile
                continue
            try:
                if not self._start(owner, job):
                    return
                self._feed()
            except Exception:  # never lose a thread (and with it a runner)
                log.exception("job %s: the handler thread failed", job.id)

    def _start(self, owner: str, job: Job) -> bool:
        """Run ``job``, here or in the event loop; False when a stop came
        first (the job goes back to ``waiting``, which the shutdown hands
        back)."""
        run = self.run
        try:
            route: Route | None = self.runner.router.lookup(job.type)
        except ZizqError:
            route = None  # the run records the NoRouteError
        if (
            job.timeout_ms
            or (route is not None and route.is_async)
            or events.job_start
            or events.job_end
            or events.job_exception
            or self.runner.router.middleware
            or not run.lease_holds(owner)
            or (owner, job.id) in run.cancelled
            # Taken before a call failed in transit: the usual path asks Redis
            # whether a failover lost the take (JobRunner._still_taken).
            or run.taken_at.get((owner, job.id, job.dequeued_at), run.doubts) != run.doubts
        ):
            return self._in_loop(owner, job)
        run.taken_at.pop((owner, job.id, job.dequeued_at), None)
        pair = (owner, job.id)
        control = JobControl(run, owner, job, run.loop)
        with run.start_lock:
            if run.stop.is_set():
                self.jobs.put((owner, job))
                return False
            run.start_attempt(pair, job.dequeued_at)
            run.controls[pair] = control  # a cancel from now on flags it
        if pair in run.cancelled:  # a cancel that came just before
            control.cancel()
        outcome = self.context.copy().run(self._run_one, owner, job, route, control)
        if not self._queue_ack(outcome):
            self._report(outcome)
        return True

    def _in_loop(self, owner: str, job: Job) -> bool:
        """Run ``job`` the usual way, in the event loop, and wait for it."""
        try:
            done = asyncio.run_coroutine_threadsafe(self._tracked(self.runner.run_job(owner, job)), self.run.loop)
        except RuntimeError:  # the event loop is closed: the run is over
            return False
        try:
            return done.result()
        except BaseException:  # cancelled by a stop
            return False

    def _run_one(self, owner: str, job: Job, route: Route | None, control: JobControl) -> Outcome:
        """Run the handler (in the job's own copy of the context)."""
        job.attempts += 1  # see JobRunner._run_one
        logs.current_job.set(logs.JobContext(job, owner, self.run.namespace))
        current.current.set(control)  # zizq.progress() and zizq.cancelled()
        logs.received(job)
        started = time.perf_counter()
        try:
            if route is None:
                route = self.runner.router.lookup(job.type)  # raises NoRouteError
            if control.is_cancelled():  # cancelled before it started: it does not start
                return owner, job, None, 0.0, control, b""
            result = encode_result(route.handler(*route.arguments(job)))
        except Exception as exc:  # every handler failure is recorded on the job
            return owner, job, exc, time.perf_counter() - started, control, b""
        except asyncio.CancelledError:
            problem = RuntimeError("the handler raised asyncio.CancelledError without being cancelled")
            return owner, job, problem, time.perf_counter() - started, control, b""
        duration = time.perf_counter() - started
        if not control.is_cancelled():
            logs.done(job, duration)
        return owner, job, None, duration, control, result

    # -- taking and acking, in the handler threads, while lent ------------

    def lend(self, owner: str) -> None:
        """Let the threads take ``owner``'s jobs (in the event loop, from
        the take loop, which then waits for :attr:`back`)."""
        self._returned = None
        self.back.clear()
        with self._lock:
            self.owner = owner
        log.debug("more jobs ready than room: the handler threads take and ack for themselves")

    def returned(self) -> TakeResult | None:
        """The take that made the threads give the taking back, when it
        held a job back or returned one that cannot be read (the take loop
        deals with those)."""
        return self._returned

    def reclaim(self) -> None:
        """Take the taking back (a stop): once a take in flight has ended.
        Blocks: in a thread of the event loop's executor."""
        with self._take_lock:
            self._give_back(None)

    def _queue_ack(self, outcome: Outcome) -> bool:
        """Queue the ack of a job that simply succeeded, and free its
        runner, while the threads hold the taking; False otherwise (the
        event loop records the outcome)."""
        owner, job, exc, _, control, result = outcome
        if exc is not None or control.reported or control.is_cancelled():
            return False
        pair = (owner, job.id)
        run = self.run
        with self._lock:  # the taking is not given back meanwhile
            if self.owner is None or run.stop.is_set():  # after a stop, the event loop acks (shutdown flushes)
                return False
            self._acks.append((owner, job.id, job.dequeued_at, result))
            run.acking.add(pair)  # known to a reconcile until sent
            with run.start_lock:
                idle = run.end_attempt(pair, job.dequeued_at)
        if idle:
            self._call(self._maybe_idle)
        return True

    def _feed(self) -> None:
        """Send the acks queued and take what there is room for, while the
        threads hold the taking (one thread at a time: the others run jobs)."""
        if self.owner is None or not self._take_lock.acquire(blocking=False):
            return
        try:
            while self._feed_once():
                pass
        except Exception:  # never lose a thread; the take loop takes again
            log.exception("taking jobs in a handler thread failed")
            self._give_back(None)
        finally:
            self._take_lock.release()

    def _feed_once(self) -> bool:
        """One step of :meth:`_feed`: the acks queued and a take of what
        there is room for, in one round trip; True when it should go on."""
        run = self.run
        owner = self.owner
        if owner is None:
            return False
        if run.stop.is_set() or run.doubted() or not run.lease_holds(owner):
            self._give_back(None)  # the take loop stops, reconciles or rejoins
            return False
        room = self.prefetch - len(run.held)
        taking = room >= self.batch or (room > 0 and self.jobs.empty())
        if not taking and len(self._acks) < self.batch:
            return False
        with self._lock:
            acks, self._acks = self._acks, []
        groups = _by_owner(acks)
        calls: list[Call[Any]] = [run.core.ack(o, ids, attempts, results) for o, ids, attempts, results in groups]
        doubts = run.doubts  # before the take is sent: see Run.taken_at
        if taking:
            calls.append(run.core.take(owner, room, self.queues, max(0, run.concurrency - len(run.held))))
        try:
            replies = self._send(calls)
        except TRANSIENT as exc:  # what was sent may have run: the take loop reconciles
            run.doubt()
            log.warning("a handler thread's take or ack failed: redis unavailable (%s); the take loop takes over", exc)
            self._give_back(None, acks)
            return False
        failed = set()  # owners whose acks the event loop sends again (and deals with the error)
        for (o, ids, _, _), refused in zip(groups, replies, strict=False):
            if isinstance(refused, Exception):
                failed.add(o)
            else:
                run.acked(o, ids, refused)
        unsent = [a for a in acks if a[0] in failed]
        with self._lock:
            run.acking.difference_update((a[0], a[1]) for a in acks if a[0] not in failed)
        if not taking or isinstance(replies[-1], Exception):  # a lost lease, say: the take loop deals with it
            if unsent or taking:
                self._give_back(None, unsent)
                return False
            return True
        result: TakeResult = replies[-1]
        run.hold(owner, result.jobs, doubts)
        ran_dry = not result.jobs or (len(result.jobs) < room and not result.more)
        if unsent or result.broken or result.held_back or ran_dry:
            self._give_back(result, unsent)
            return False
        return True

    def _send(self, calls: list[Call[Any]]) -> list[Any]:
        """Send ``calls`` in one round trip (one at a time on a cluster):
        their decoded replies, or the exceptions their error replies stand
        for. Raises TRANSIENT errors."""
        redis = self.client.redis
        if len(calls) == 1 or connect.is_cluster(redis):
            return [self._send_one(call) for call in calls]
        pipe = redis.pipeline(transaction=False)
        for call in calls:
            pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
        replies = []
        for call, reply in zip(calls, pipe.execute(raise_on_error=False), strict=True):
            if isinstance(reply, NoScriptError):  # Redis lost its scripts: this one loads it
                replies.append(self._send_one(call))
            elif isinstance(reply, ResponseError):
                later = as_not_now(reply)
                if later is not None:
                    raise later
                replies.append(reply_error(reply) or reply)
            else:
                replies.append(call.decode(reply))
        return replies

    def _send_one(self, call: Call[Any]) -> Any:
        try:
            return self.client.run(call, retry_for=0)
        except TRANSIENT:
            raise
        except Exception as exc:
            return exc

    def _give_back(self, result: TakeResult | None, unsent: list[Ack] | None = None) -> None:
        """Give the taking back to the take loop, with the acks not sent."""
        with self._lock:
            self.owner = None
            acks, self._acks = (unsent or []) + self._acks, []
        self._call(self._taken_back, result, acks)

    def _call(self, callback: Any, *args: Any) -> None:
        try:
            self.run.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the event loop is closed: the run is over
            pass

    # -- in the event loop, for the threads ------------------------------------

    def _taken_back(self, result: TakeResult | None, acks: list[Ack]) -> None:
        run = self.run
        for owner, job_id, dequeued_at, value in acks:
            run.ack(owner, job_id, dequeued_at, value)
            run.acking.discard((owner, job_id))
        self._returned = result
        self.back.set()
        log.debug("the handler threads gave the taking back to the take loop (%d acks for it to send)", len(acks))
        run.room.set()

    def _maybe_idle(self) -> None:
        run = self.run
        with run.start_lock:
            if not run.running:
                run.idle.set()
        run.room.set()

    # -- reporting outcomes ------------------------------------------------

    def _report(self, outcome: Outcome) -> None:
        """Queue an outcome for the event loop; wake it only when no drain
        is pending already."""
        with self._lock:
            self._outcomes.append(outcome)
            if self._wake_pending:
                return
            self._wake_pending = True
        try:
            self.run.loop.call_soon_threadsafe(self._drain)
        except RuntimeError:  # the event loop is closed: a second stop left this handler behind
            pass

    # -- in the event loop -------------------------------------------------

    def _drain(self) -> None:
        """Record the outcomes reported since the last drain."""
        with self._lock:
            outcomes, self._outcomes = self._outcomes, []
            self._wake_pending = False
        run = self.run
        for owner, job, exc, duration, control, result in outcomes:
            pair = (owner, job.id)
            if control.is_cancelled():  # the job is dead already: no ack, no failure
                log.info("job %s cancelled while it ran; its handler %s", job.id, "stopped" if exc else "returned")
            elif exc is None and not control.reported:
                run.ack(owner, job.id, job.dequeued_at, result)
            else:  # a failure to record, or progress to write first
                self._track(self.runner.record_outcome(owner, job, exc, duration, control, result))
                continue
            run.job_ended(pair, job.dequeued_at)

    def _track(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``coro`` in a task that a stop cancels (see :meth:`serve`)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _tracked(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` in a task that a stop cancels."""
        return await self._track(coro)


def _by_owner(acks: list[Ack]) -> list[tuple[str, list[str], list[int | None], list[bytes]]]:
    """The acks grouped by owner: (owner, ids, attempts, results)."""
    groups: dict[str, tuple[str, list[str], list[int | None], list[bytes]]] = {}
    for owner, job_id, dequeued_at, result in acks:
        group = groups.get(owner)
        if group is None:
            group = groups[owner] = (owner, [], [], [])
        group[1].append(job_id)
        group[2].append(dequeued_at)
        group[3].append(result)
    return list(groups.values())

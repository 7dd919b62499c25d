"""Running one job: the handler call (sync handlers in the run's thread
pool), its timeout, its hooks and middleware, and the recording of its
outcome (an ack with the next batch, or a failure with its error type and
backtrace).

The take loop (:mod:`zizq.worker.worker`) queues the jobs it takes on the
run's ``waiting`` queue; ``concurrency`` runners, each a :meth:`JobRunner.run_jobs`
task, take them from there one at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import random
import sys
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zizq import current, events, logs
from zizq._protocol import limits
from zizq._protocol.records import encode_result
from zizq.errors import JobTimeout, KillJob, RateLimited, RedisUnavailable, RetryJob, ZizqError
from zizq.job import Job
from zizq.middleware import run_chain
from zizq.options import delay_ms, epoch_ms
from zizq.router import Route, Router
from zizq.worker.control import JobControl
from zizq.worker.run import Run, handler_pool

log = logging.getLogger("zizq.worker")
LEASE_POLL = 0.02  # seconds between looks at a lease not confirmed, before a job starts


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


class JobRunner:
    """Runs the jobs of one :class:`~zizq.worker.run.Run` with the handlers
    of ``router``."""

    def __init__(self, run: Run, router: Router) -> None:
        self.run = run
        self.router = router
        self._namespace_retry_limit: int | None = None  # for failure log lines; read when needed
        self._retry_limit_read_at = 0.0  # time.monotonic() after which it is read again

    async def run_jobs(self) -> None:
        # A runner runs its jobs one after another, each in a task of its own
        # (so each gets its own copy of the context variables): shutdown
        # waits until no handler runs, then cancels the runners, and with
        # them any handler still running.
        waiting = self.run.waiting
        assert isinstance(waiting, asyncio.Queue)
        while True:
            owner, job = await waiting.get()
            if not await self.run_job(owner, job):
                return

    async def run_job(self, owner: str, job: Job) -> bool:
        """Run one job taken for ``owner`` and record its outcome. False
        when a stop came first: the job goes back to ``waiting`` (no queued
        job starts after a stop: the shutdown hands them back)."""
        if self.run.stop.is_set():
            self.run.waiting.put_nowait((owner, job))
            return False
        pair = (owner, job.id)
        # The lease looked at without a coroutine when it holds (the usual case).
        if not self.run.lease_holds(owner) and not await self._may_start(owner, job):
            if self.run.stop.is_set():
                return False
            self.run.taken_at.pop((owner, job.id, job.dequeued_at), None)
            self.run.job_ended(pair, job.dequeued_at)
            return True
        if pair in self.run.cancelled:  # cancelled while it waited here: it never runs
            self.run.cancelled.discard(pair)
            log.info("job %s cancelled before it started", job.id)
            self.run.taken_at.pop((owner, job.id, job.dequeued_at), None)
            self.run.job_ended(pair, job.dequeued_at)
            return True
        if self.run.taken_at.pop((owner, job.id, job.dequeued_at), self.run.doubts) != self.run.doubts:
            if not await self._still_taken(owner, job):
                # Another attempt of the job, received by a later take, may
                # wait or run: the job stays held for it (see Run.attempts).
                self.run.job_ended(pair, job.dequeued_at)
                return True
        run = self.run
        with run.start_lock:
            run.start_attempt(pair, job.dequeued_at)
        control = run.controls[pair] = JobControl(run, owner, job, run.loop)
        # What _ending does, written out (no context manager made a job).
        try:
            control.task = task = run.loop.create_task(self._run_one(owner, job, control))
            await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not control.is_cancelled() or (me is not None and me.cancelling()):
                raise  # a stop, not the job's cancel
            log.info("job %s cancelled while it ran", job.id)
        except Exception as exc:
            self._not_recorded(job, exc)
        finally:
            self.run.job_ended(pair, job.dequeued_at)  # its runner is free
        return True

    @contextlib.contextmanager
    def _ending(self, job: Job, pair: tuple[str, str]) -> Iterator[None]:
        """Around the run of ``job`` and the recording of its outcome: an
        outcome that could not be recorded is logged, and the job's runner
        is free afterwards, whatever happened."""
        try:
            yield
        except Exception as exc:
            self._not_recorded(job, exc)
        finally:
            self.run.job_ended(pair, job.dequeued_at)

    @staticmethod
    def _not_recorded(job: Job, exc: Exception) -> None:
        # In the except clause that caught ``exc``: log.exception logs its traceback.
        if isinstance(exc, RedisUnavailable):  # only after a stop
            log.warning("job %s: its outcome could not be recorded (%s); it will run again", job.id, exc)
        else:  # a failure that could not be recorded: log it, keep going
            log.exception("job %s: could not record its outcome", job.id)

    async def record_outcome(
        self, owner: str, job: Job, exc: Exception | None, seconds: float, control: JobControl, result: bytes
    ) -> None:
        """Record the outcome of a job whose handler ran elsewhere (a
        handler thread, see zizq.worker.sync_lane) for ``seconds``: its
        progress written, then its ack (with its ``result`` as JSON), or
        ``exc`` as its failure (a RateLimited defers it); then its runner
        is free."""
        with self._ending(job, (owner, job.id)):
            if control.reported:
                await control.flush()
            if exc is None:
                self.run.ack(owner, job.id, job.dequeued_at, result)
            elif isinstance(exc, RateLimited):  # not a failure: the job waits, no attempt used
                await self._defer(owner, job, exc)
            else:
                await self._failed(owner, job, exc, seconds, control)

    async def _may_start(self, owner: str, job: Job) -> bool:
        """Wait until ``owner``'s lease holds (:meth:`_lease_holds`). False
        when ``job`` must not start: a stop came (it goes back on
        ``waiting``, for the shutdown to hand back) or the lease was lost."""
        if await self._lease_holds(owner):
            return True
        if self.run.stop.is_set():
            self.run.waiting.put_nowait((owner, job))
        else:
            log.warning(
                "job %s not started: the lease of worker %s was lost first, so another worker may run it",
                job.id,
                owner,
            )
        return False

    async def _still_taken(self, owner: str, job: Job) -> bool:
        """Whether Redis still has this attempt of ``job`` in flight (asked
        when a call failed in transit since it was taken: a failover to a
        replica that lacked the take puts the job back in its queue, where
        another worker may take it). False, not started, when it has not,
        or when a stop came before Redis answered."""
        try:
            [now] = await self.run.call(self.run.core.get([job.id]))
        except RedisUnavailable:  # only after a stop: the leave hands it back
            return False
        if now is not None and now.status == "in_flight" and now.dequeued_at == job.dequeued_at:
            return True
        log.warning(
            "job %s not started: redis no longer has it in flight for worker %s (a failover lost its take), "
            "so another worker may run it",
            job.id,
            owner,
        )
        self.run.recheck()
        return False

    async def _lease_holds(self, owner: str) -> bool:
        """Whether ``owner``'s lease holds, by the worker's own record of it
        (the last confirmed heartbeat): after a pause past the lease (a
        stopped process, a long GC), wait until the next heartbeat says.
        False when the lease was lost (the worker joined again under a new
        id) or a stop came meanwhile."""
        run = self.run
        while not run.lease_holds(owner):
            if run.id != owner or run.stop.is_set():
                return False
            await asyncio.sleep(LEASE_POLL)
        return True

    async def _run_one(self, owner: str, job: Job, control: JobControl) -> None:
        # Looked at again here, with no await between this look and the
        # handler's start: the runner looked before it made this task, and a
        # pause in between (a SIGSTOP, a long GC) may have outlasted the lease.
        if not self.run.lease_holds(owner) and not await self._may_start(owner, job):
            return
        # The run in progress counts (stored: the failed runs so far), so the
        # handler sees the number its failure's error record will carry.
        job.attempts += 1
        timeout = job.timeout_ms / 1000 if job.timeout_ms else None
        deadline = asyncio.timeout(timeout) if timeout else None
        pool, sync = self.run.pool, False
        # In this job's own task: its log records, the handler's too, say which job they are about.
        logs.current_job.set(logs.JobContext(job, owner, self.run.namespace))
        current.current.set(control)  # zizq.progress() and zizq.cancelled()
        logs.received(job)
        # Hooks cost nothing per job unless some are registered.
        observed = bool(events.job_start or events.job_end or events.job_exception)
        started = time.perf_counter()
        if observed and events.job_start:
            events.emit(events.job_start, events.JobEvent("job_start", job, self.run.namespace, owner))
        try:
            route = self.router.lookup(job.type)
            args = route.arguments(job)
            sync = not route.is_async
            control.is_async = route.is_async
            if control.is_cancelled():  # cancelled before its handler was known: it does not start
                raise asyncio.CancelledError
            if self.router.middleware:
                handling = run_chain(
                    self.router.middleware, job, lambda: self._call_handler(route, args, pool, control)
                )
            else:
                handling = self._call_handler(route, args, pool, control)
            try:
                if deadline is None:
                    await handling
                else:
                    async with deadline:
                        await handling
                if control.reported:
                    await control.flush()
                result_json = encode_result(control.result)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if control.is_cancelled():  # cancelled in Redis: the job is dead already
                    raise
                if task is None or task.cancelling():  # a stop: the job goes back to its queue
                    raise
                # Raised by the handler itself: a failure like any other.
                raise RuntimeError("the handler raised asyncio.CancelledError without being cancelled") from None
        except asyncio.CancelledError:
            raise
        except RateLimited as exc:  # not a failure: the job waits, no attempt used
            await self._defer(owner, job, exc)
        except Exception as exc:  # every handler failure is recorded on the job
            if control.is_cancelled():  # a sync handler that saw zizq.cancelled(): the job is dead already
                log.info("job %s cancelled while it ran; its handler stopped", job.id)
                return
            if isinstance(exc, TimeoutError) and deadline is not None and deadline.expired():
                self.run.stats.timed_out += 1
                if sync:
                    self._abandon(pool)
                exc = JobTimeout(f"the handler ran longer than its timeout of {timeout:g}s")
            await self._failed(owner, job, exc, time.perf_counter() - started, control)
        else:
            duration = time.perf_counter() - started
            if control.is_cancelled():  # its ack would be refused: the job is dead already
                log.info("job %s cancelled while it ran; its handler returned", job.id)
                return
            self.run.ack(owner, job.id, job.dequeued_at, result_json)
            logs.done(job, duration)
            if observed and events.job_end:
                event = events.JobEvent("job_end", job, self.run.namespace, owner, duration, "completed")
                events.emit(events.job_end, event)

    async def _failed(self, owner: str, job: Job, exc: Exception, duration: float, control: JobControl) -> None:
        """The handler raised ``exc`` after ``duration`` seconds: the
        job_exception event, the last progress written, the failure
        recorded, the job_end event."""
        observed = bool(events.job_end or events.job_exception)
        if observed and events.job_exception:
            event = events.JobEvent("job_exception", job, self.run.namespace, owner, duration, error=exc)
            events.emit(events.job_exception, event)
        if control.reported:
            await control.flush()
        result = await self._fail(owner, job, exc, duration)
        if observed and events.job_end:
            outcome: events.Outcome = "refused" if result is None else "failed"
            if result is not None and result.status == "dead":
                outcome = "dead"
            event = events.JobEvent("job_end", job, self.run.namespace, owner, duration, outcome, exc)
            events.emit(events.job_end, event)

    @staticmethod
    async def _call_handler(route: Route, args: tuple[Any, ...], pool: ThreadPoolExecutor, control: JobControl) -> None:
        # The handler itself: the innermost step of any dequeue middleware.
        # Its return value is the job's result.
        if route.is_async:
            control.result = await route.handler(*args)
        else:
            # In a copy of this task's context (as asyncio.to_thread does), so
            # the handler's log records carry its job's ids.
            context = contextvars.copy_context()
            control.result = await asyncio.get_running_loop().run_in_executor(pool, context.run, route.handler, *args)

    def _abandon(self, pool: ThreadPoolExecutor) -> None:
        # A sync handler cannot be stopped: its thread runs on, holding a
        # slot of the pool. New jobs get a fresh pool of full size.
        if pool is self.run.pool:
            self.run.pool = handler_pool(self.run.concurrency)
            pool.shutdown(wait=False)

    async def _defer(self, owner: str, job: Job, exc: RateLimited) -> None:
        """Put ``job`` back to wait ``exc.retry_after`` seconds without using
        an attempt (see lua/defer.lua)."""
        wait_ms = round(exc.retry_after * 1000)
        call = limits.defer(self.run.core.keys, owner, job.id, wait_ms, job.dequeued_at)
        if await self.run.call(call) is None:
            self.run.stats.refused_acks += 1
        logs.jobs_log.info("job %s (%s) rate limited: runs again in %.3fs (%s)", job.id, job.type, wait_ms / 1000, exc)

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
            result = await self.run.call(
                self.run.core.fail(
                    owner,
                    job.id,
                    message=str(exc) or repr(exc),
                    error_type=error_type_of(exc),
                    backtrace=backtrace_of(exc),
                    retry_at_ms=retry_at,
                    retry_in_ms=retry_in,
                    kill=isinstance(exc, KillJob),
                    jitter=random.random(),
                    dequeued_at=job.dequeued_at,
                )
            )
        except Exception as problem:
            logs.not_recorded(job, error, str(problem) or type(problem).__name__)
            raise
        if result is None:
            self.run.stats.refused_acks += 1
            why = "the job is no longer this worker's (deleted, or recovered after a lost lease)"
            logs.not_recorded(job, error, why)
        else:
            self.run.stats.failed += 1
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
                settings = await self.run.client.run(self.run.core.defaults([]), retry_for=0)
                self._namespace_retry_limit = int(settings["retry_limit"])
            except Exception as exc:  # a log line never fails a job
                log.debug("cannot read the namespace's retry limit (%s)", exc)
        return self._namespace_retry_limit

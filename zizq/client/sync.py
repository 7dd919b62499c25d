"""Client: the blocking front door (redis-py). It only sends the calls that
:mod:`zizq._protocol` builds; AsyncClient (:mod:`zizq.client.aio`) has the
same methods, awaited."""

from __future__ import annotations

import time
from typing import Any, TypeVar, Unpack

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from zizq import connect, events, middleware
from zizq._protocol.call import Call
from zizq._protocol.enqueue import enqueue_item
from zizq._protocol.jobs import defaults_args, patch_args, purge_batches
from zizq._protocol.reconnect import TRANSIENT, reconnect_delays
from zizq._protocol.records import job_not_found
from zizq._protocol.waiting import LOST, Block, blpop_seconds, wait_plan
from zizq.client.base import BaseClient
from zizq.client.cron import CronMethods
from zizq.client.limits import LimitMethods
from zizq.client.options import Items, as_items, block_slice, connection_options, reply_error, unavailable
from zizq.client.query import QueryMethods
from zizq.errors import JobNotFound
from zizq.job import ErrorRecord, Job, JobKind
from zizq.options import DefaultsOptions, Enqueue, EnqueueOptions, PatchOptions

T = TypeVar("T")


class Client(BaseClient[redis.Redis], CronMethods, LimitMethods, QueryMethods):
    """A blocking zizq client for one namespace.

    ``Client.from_url("redis://localhost:6379/0")``; the namespace (default
    "zizq") is the key prefix ``{zizq}:``, one Redis hash slot.
    """

    def _hold(self, redis_client: redis.Redis) -> None:
        self.redis = redis_client

    @staticmethod
    def _connect(url: str, options: dict[str, Any]) -> redis.Redis:
        return connect.sync_redis(url, **connection_options(options, asyncio=False))  # type: ignore[no-any-return]

    def run(self, call: Call[T], *, retry_for: float | None = None) -> T:
        """Send one script call, loading the script if Redis lacks it, and
        retrying while Redis is unavailable for up to ``retry_for`` seconds
        (default: the client's)."""
        window = self.retry_for if retry_for is None else retry_for
        started = time.monotonic()
        deadline = started + window
        delays = reconnect_delays()
        while True:
            try:
                return call.decode(self._send(call))
            except TRANSIENT as exc:
                call = call.repeated()
                pause = next(delays)
                if time.monotonic() + pause > deadline:
                    raise unavailable(self.url, started, exc) from exc
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
            error = reply_error(exc)
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

    def enqueue(self, job: JobKind, **options: Unpack[EnqueueOptions]) -> Job:
        """Enqueue one job; return its metadata.

        ``options``: see :class:`zizq.EnqueueOptions`; given here they win
        over the JobKind's class defaults, which win over the namespace's.
        A duplicate of a live job with the same unique key returns that job
        with ``duplicate=True``.
        """
        return self._enqueue([enqueue_item(job, options)])[0]

    def enqueue_raw(self, type_name: str, payload: Any, **options: Unpack[EnqueueOptions]) -> Job:
        """Enqueue a job by type name with a plain JSON payload (for job types
        defined elsewhere). Takes the options of :meth:`enqueue`."""
        return self._enqueue([Enqueue.raw(type_name, payload, **options)])[0]

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
            return middleware.enqueue_sync(self, as_items(items))
        return middleware.send_sync(self, items)

    def get_job(self, job_id: str) -> Job:
        """The job with its payload; raises JobNotFound when it does not
        exist or is past its purge time (saying so when it finished within
        the last minute and was deleted at once, a retention of 0)."""
        job = self.run(self.core.get([job_id]))[0]
        if job is None:
            raise job_not_found(job_id, self.run(self.core.done([job_id]))[0])
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Wait until the job is completed or dead, for up to ``timeout``
        seconds (None: no limit), and return it: ``result`` holds what its
        handler returned (when the job is kept after completion); a dead
        job's last error record is in ``last_error``. A job completed (or dead)
        and deleted at once (a retention of 0) is still reported, as a Job
        with only ``id`` and ``status``, for a minute after. Blocks in Redis
        (BLPOP): nothing polls. Raises :class:`zizq.WaitTimeout` when the
        timeout runs out, JobNotFound for no such job (or one deleted
        meanwhile), ValidationError for a negative timeout."""
        plan = wait_plan(self.core, job_id, timeout, block_slice(self.redis))
        reply: Any = None
        try:
            while True:
                step = plan.send(reply)
                if isinstance(step, Block):
                    try:
                        reply = self.redis.blpop([step.key], blpop_seconds(step.seconds))
                        reply = None if reply is None else reply[1]
                    except TRANSIENT:
                        reply = LOST
                else:
                    reply = self.run(step)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def cancel_job(self, job_id: str) -> bool:
        """Cancel a job that has not finished: a scheduled or ready job
        never runs; a running one's worker cancels an async handler's task,
        or lets a sync handler see :func:`zizq.cancelled`, within about a
        second (a heartbeat). The job is dead at once, with ``cancelled_at``
        set; it is not retried and its unique key is released. Returns
        False when it had already finished (nothing changes); raises
        JobNotFound for no such job."""
        return self.run(self.core.cancel_one(job_id))

    def patch_job(self, job_id: str, **options: Unpack[PatchOptions]) -> Job:
        """Change a job that has not finished; only the options given change
        (see :class:`zizq.PatchOptions`). Raises JobNotFound, or
        JobStateError for a completed or dead job.
        """
        return self.run(self.core.patch(job_id, patch_args(options)))

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
        many. Workers do this in the background. Sent as calls of at most
        1000 jobs (PURGE_BATCH), so none holds Redis for long."""
        purged = 0
        for size in purge_batches(limit):
            done = self.run(self.core.purge(size))
            purged += done
            if done < size:
                break
        return purged

    def set_defaults(self, **options: Unpack[DefaultsOptions]) -> dict[str, float]:
        """Change the namespace's defaults (see :class:`zizq.DefaultsOptions`),
        used by jobs that have no value of their own when they fail or
        finish; None restores the built-in one. Returns every setting in
        force (call with no arguments to read them).
        """
        return self.run(self.core.defaults(defaults_args(options)))

    def close(self) -> None:
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The worker side of the fault-history checker (tests/history.py): the job
kinds, the routers its workers run, and the recording of every handler start
and end into the history.

Two apps: ``router`` (async handlers; job hooks record the starts and ends)
and ``sync_router`` (plain functions and no job hooks, so the worker runs
them in its handler threads, zizq.worker.sync_lane). A sync handler records
its own start (its worker id from zizq.logs.current_job); its end, with the
outcome Redis recorded, comes from the worker's own log records of the job
(a handler cannot know it: a failure may be refused, and a handler past its
timeout returns after the worker gave up on it). The checker sets
ZIZQ_HISTORY_APP=sync in the workers of the sync app.

The history is a list in a Redis of its own (ZIZQ_HISTORY, a URL), one that
the faults never touch. Each event is a JSON object with ``t`` (time.time(),
seconds: every process runs on this host, so one clock orders them) and
``e`` (its kind).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import threading
import time
from typing import Any

import orjson
import redis

import zizq
from zizq.logs import current_job

HISTORY_KEY = "history"
RETENTION = zizq.Retention(completed_ms=3_600_000, dead_ms=3_600_000)  # finished jobs stay readable to the checks


class Task(zizq.JobKind):
    """A job of the workload. Its handler sleeps ``sleep`` seconds; it raises
    on its first ``fail`` attempts; with ``hang`` it sleeps past its timeout
    on its first attempt; with ``die`` it kills its own process (SIGKILL) on
    the first run that gets to it, with ``pill`` on every run."""

    NAME = "task"
    RETENTION = RETENTION
    n: int
    sleep: float = 0.0
    fail: int = 0
    hang: bool = False
    die: bool = False
    pill: bool = False


class Tick(zizq.JobKind):
    """Enqueued by the cron entry of the workload."""

    NAME = "tick"
    RETENTION = RETENTION


router = zizq.Router()
_history: redis.Redis | None = None


def history() -> redis.Redis:
    """The connection to the history Redis (made at first use)."""
    global _history
    if _history is None:
        _history = redis.Redis.from_url(os.environ["ZIZQ_HISTORY"])
    return _history


def record(event: str, **fields: Any) -> None:
    """Append one event to the history."""
    with _recording:
        _append(event, fields)


def _append(event: str, fields: dict[str, Any]) -> None:
    history().rpush(HISTORY_KEY, orjson.dumps({"t": time.time(), "e": event, "pid": os.getpid(), **fields}))


# Held by a handler that kills its process, from its "suicide" on: a sync
# handler's siblings (other threads) then record nothing after it (no start
# that seems to come after the death: the checks take the suicide's time as
# the process's death), as none could in the async app's one event loop.
_recording = threading.Lock()


@router.handler
async def task(job: Task, meta: zizq.Job) -> None:
    if job.pill or (job.die and history().set("died:" + meta.id, 1, nx=True)):
        record("suicide", job=meta.id, attempt=meta.attempts)
        os.kill(os.getpid(), signal.SIGKILL)
    if job.hang and meta.attempts == 1:
        await asyncio.sleep(3600)  # the job's timeout cancels it
    await asyncio.sleep(job.sleep)
    if meta.attempts <= job.fail:
        raise RuntimeError(f"attempt {meta.attempts} of job {job.n} fails on purpose")


@router.handler
async def tick(job: Tick) -> None:
    pass


sync_router = zizq.Router()
SYNC_HANG = 1.0  # seconds a sync handler "hangs": past its timeout (0.3 s), but it ends (a thread cannot be stopped)


@sync_router.handler
def sync_task(job: Task, meta: zizq.Job) -> None:
    _sync_started(meta)
    if job.pill or (job.die and history().set("died:" + meta.id, 1, nx=True)):
        _recording.acquire()  # for good: see _recording
        _append("suicide", {"job": meta.id, "attempt": meta.attempts})
        os.kill(os.getpid(), signal.SIGKILL)
    if job.hang and meta.attempts == 1:
        time.sleep(SYNC_HANG)  # the worker times it out and leaves this thread behind
    time.sleep(job.sleep)
    if meta.attempts <= job.fail:
        raise RuntimeError(f"attempt {meta.attempts} of job {job.n} fails on purpose")


@sync_router.handler
def sync_tick(job: Tick, meta: zizq.Job) -> None:
    _sync_started(meta)


def _sync_started(meta: zizq.Job) -> None:
    """Record a sync handler's start as the job_start hook would, and
    whether it runs in one of the worker's handler threads (``lane``)."""
    context = current_job.get()
    worker = None if context is None else context.worker_id
    lane = threading.current_thread().name.startswith("zizq-handler-")
    record("start", job=meta.id, type=meta.type, attempt=meta.attempts, worker=worker, lane=lane)


# A failure's log line ends with "(attempt N)" or "(attempt N of M)".
_ATTEMPT = re.compile(r"\(attempt (\d+)(?: of \d+)?\)$")
_OUTCOMES = {"done": "completed", "retry": "failed", "dead": "dead", "unrecorded": "refused"}


class _Ends(logging.Handler):
    """Records the end of each run of a sync handler, from the worker's log
    record of it (zizq.logs: done, retry, dead, unrecorded), as the job_end
    hook would."""

    def emit(self, line: logging.LogRecord) -> None:
        try:
            self._record(line)
        except Exception:  # as logging's own handlers do: a handler that raises breaks the worker's code
            self.handleError(line)

    def _record(self, line: logging.LogRecord) -> None:
        outcome = _OUTCOMES.get(getattr(line, "event", ""))
        if outcome is None:
            return
        message = line.getMessage()
        job_id = message[message.index("[") + 1 : message.index("]")]
        context = current_job.get()  # set for "done"; not where a failure is recorded
        worker = None if context is None else context.worker_id
        if outcome == "completed":
            attempt = None if context is None else context.job.attempts
        else:
            found = _ATTEMPT.search(message)
            attempt = int(found.group(1)) if found else None
        error = getattr(line, "error", None)
        error = None if error is None else error.split(":")[0]
        record("end", job=job_id, attempt=attempt, worker=worker, outcome=outcome, error=error)


def _started(event: zizq.JobEvent) -> None:
    record("start", job=event.job.id, type=event.job.type, attempt=event.job.attempts, worker=event.worker_id)


def _ended(event: zizq.JobEvent) -> None:
    error = None if event.error is None else type(event.error).__name__
    record(
        "end", job=event.job.id, attempt=event.job.attempts, worker=event.worker_id, outcome=event.outcome, error=error
    )


# Only in the workers the checker starts: a process that imports this module
# for its job kinds (the test suite) keeps its event hooks as they were.
# The sync app registers no hooks: with any, the worker would run its
# handlers in the event loop's way, not in its handler threads.
if "ZIZQ_HISTORY" in os.environ and os.environ.get("ZIZQ_HISTORY_APP") == "sync":
    logging.getLogger("zizq.worker.jobs").addHandler(_Ends())
elif "ZIZQ_HISTORY" in os.environ:
    zizq.on("job_start")(_started)
    zizq.on("job_end")(_ended)

"""The worker side of the fault-history checker (tests/history.py): the job
kinds, the router `zizq worker tests.history_app:router` runs, and the
recording of every handler start and end into the history.

The history is a list in a Redis of its own (ZIZQ_HISTORY, a URL), one that
the faults never touch. Each event is a JSON object with ``t`` (time.time(),
seconds: every process runs on this host, so one clock orders them) and
``e`` (its kind).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import orjson
import redis

import zizq

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
    history().rpush(HISTORY_KEY, orjson.dumps({"t": time.time(), "e": event, "pid": os.getpid(), **fields}))


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


def _started(event: zizq.JobEvent) -> None:
    record("start", job=event.job.id, type=event.job.type, attempt=event.job.attempts, worker=event.worker_id)


def _ended(event: zizq.JobEvent) -> None:
    error = None if event.error is None else type(event.error).__name__
    record(
        "end", job=event.job.id, attempt=event.job.attempts, worker=event.worker_id, outcome=event.outcome, error=error
    )


# Only in the workers the checker starts: a process that imports this module
# for its job kinds (the test suite) keeps its event hooks as they were.
if "ZIZQ_HISTORY" in os.environ:
    zizq.on("job_start")(_started)
    zizq.on("job_end")(_ended)

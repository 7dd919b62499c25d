"""Shared parts of the fault-injection tests: a job kind whose handler records
each run in a separate "recorder" Redis (one that the faults never touch),
worker processes started through the real CLI, and the invariant every
scenario checks.

The handler is loaded by `zizq worker tests.fault_harness:router`; it reads
ZIZQ_FAULT_RECORDER (the recorder's URL) from its environment.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import redis
import redis.asyncio

import zizq

from .conftest import ROOT

RETENTION = zizq.Retention(completed_ms=3_600_000)  # keep completed jobs visible to the checks


class Work(zizq.JobKind):
    """Sleeps ``sleep`` seconds, then records the run. With ``die`` set, the
    handler kills its own process with SIGKILL first (a poison pill). With
    ``freeze`` set, its process stops itself (SIGSTOP) once the handler has
    returned (on its first run only), two event-loop turns later: after its runner has checked the
    lease for the next job waiting and made that job's task, before the task
    starts (a GC pause or a SIGSTOP there, made exact)."""

    NAME = "work"
    RETENTION = RETENTION
    n: int
    sleep: float = 0.0
    die: bool = False
    freeze: bool = False


router = zizq.Router()
_recorder: redis.asyncio.Redis | None = None


@router.handler
async def work(job: Work, meta: zizq.Job) -> None:
    global _recorder
    if job.die:
        os.kill(os.getpid(), signal.SIGKILL)
    if _recorder is None:
        # redis-py pools hold 100 connections by default; a worker may run more handlers than that.
        _recorder = redis.asyncio.Redis.from_url(os.environ["ZIZQ_FAULT_RECORDER"], max_connections=10_000)
    await _recorder.rpush("started:" + meta.id, os.getpid())
    await asyncio.sleep(job.sleep)
    await _recorder.rpush("finished:" + meta.id, os.getpid())
    if job.freeze and await _recorder.set("froze:" + meta.id, 1, nx=True):  # once
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, os.kill, os.getpid(), signal.SIGSTOP)


# The same job kind with a sync handler: a worker whose handlers are all sync
# runs them in handler threads of its own (zizq/worker/sync_lane.py).
sync_router = zizq.Router()


@sync_router.handler
def work_in_a_thread(job: Work, meta: zizq.Job) -> None:
    recorder = redis.Redis.from_url(os.environ["ZIZQ_FAULT_RECORDER"])
    try:
        recorder.rpush("started:" + meta.id, os.getpid())
        time.sleep(job.sleep)
        recorder.rpush("finished:" + meta.id, os.getpid())
    finally:
        recorder.close()


def start_worker(
    url: str, namespace: str, recorder_url: str, *options: str, router: str = "router"
) -> subprocess.Popen[bytes]:
    """A `zizq worker` process for this module's ``router`` (or
    ``sync_router``); options are CLI flags (e.g. "-c", "50", "--lease", "1")."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zizq",
            "worker",
            f"tests.fault_harness:{router}",
            "--url",
            url,
            "--namespace",
            namespace,
            "--log-level",
            "WARNING",
            *options,
        ],
        cwd=ROOT,
        env={**os.environ, "ZIZQ_FAULT_RECORDER": recorder_url},
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    """SIGTERM, then wait for a graceful exit; kill it if it does not come."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@dataclass
class Outcome:
    """Where every enqueued job ended, and how often its handler finished."""

    statuses: Counter[str]
    missing: list[str]
    finished: dict[str, int]  # job id -> handler runs that finished
    doubles: list[str]  # completed jobs whose handler finished more than once with no recovery recorded

    @property
    def done(self) -> bool:
        return self.statuses["completed"] + self.statuses["dead"] == sum(self.statuses.values())


def outcome(client: zizq.Client, recorder: redis.Redis, ids: Sequence[str]) -> Outcome:
    """Check each id: it must still exist (completed, dead or pending);
    a job completed with more than one finished run must have a recovery
    (a lost lease) recorded."""
    statuses: Counter[str] = Counter()
    missing, doubles = [], []
    finished: dict[str, int] = {}
    for job_id in ids:
        try:
            job = client.get_job(job_id)
        except zizq.JobNotFound:
            missing.append(job_id)
            continue
        statuses[job.status] += 1
        finished[job_id] = int(recorder.llen("finished:" + job_id))
        if job.status == "completed" and finished[job_id] > 1 and job.recoveries == 0:
            doubles.append(job_id)
    return Outcome(statuses, missing, finished, doubles)

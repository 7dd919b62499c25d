"""Job kinds for the workflow tests (loaded by `zizq worker
tests.flows_app:router` subprocesses): each run is recorded, in order, in
the list "events" of a recorder Redis (ZIZQ_FLOWS_RECORDER), one that the
tests never fault."""

from __future__ import annotations

import os
import time

import redis

import zizq

_recorder: redis.Redis | None = None


def record(event: str) -> None:
    global _recorder
    if _recorder is None:
        _recorder = redis.Redis.from_url(os.environ["ZIZQ_FLOWS_RECORDER"])
    _recorder.rpush("events", event)


class Step(zizq.JobKind):
    """Records "start:<tag>", sleeps ``sleep`` seconds, records
    "end:<tag>"; with ``die``, it then goes dead (KillJob)."""

    NAME = "step"
    tag: str
    sleep: float = 0.0
    die: bool = False


class Notify(zizq.JobKind):
    """A batch callback: records "<what>:<tag>"."""

    NAME = "notify"
    what: str
    tag: str


router = zizq.Router()


@router.handler
def step(job: Step) -> None:
    record("start:" + job.tag)
    time.sleep(job.sleep)
    record("end:" + job.tag)
    if job.die:
        raise zizq.KillJob("this step dies")


@router.handler
def notify(job: Notify) -> None:
    record(f"{job.what}:{job.tag}")

"""Job types and a router for the results, wait, progress and cancel tests
(loaded by `zizq worker` subprocesses as tests.results_app:router). Handlers
that mark what they did append a line to the file $ZIZQ_TEST_LOG."""

from __future__ import annotations

import asyncio
import os
import time

import zizq


def mark(line: str) -> None:
    with open(os.environ["ZIZQ_TEST_LOG"], "a") as f:
        f.write(line + "\n")


class Square(zizq.JobKind):
    NAME = "square"
    n: int


class SyncSquare(zizq.JobKind):
    NAME = "sync_square"
    n: int


class Unkeepable(zizq.JobKind):
    NAME = "unkeepable"


class Steps(zizq.JobKind):
    """Reports progress, then sleeps long (until cancelled)."""

    NAME = "steps"
    tag: str


class SyncLoop(zizq.JobKind):
    """Loops until zizq.cancelled(), for at most 30 s."""

    NAME = "sync_loop"
    tag: str


class Mark(zizq.JobKind):
    NAME = "mark"
    tag: str


router = zizq.Router()


@router.handler
async def square(job: Square) -> dict[str, int]:
    return {"square": job.n * job.n}


@router.handler
def sync_square(job: SyncSquare) -> int:
    return job.n * job.n


@router.handler
def unkeepable(job: Unkeepable) -> object:
    return {1, 2}  # a set: JSON cannot hold it


@router.handler
async def steps(job: Steps) -> None:
    for i in range(1000):  # many reports: the worker coalesces them
        zizq.progress(i / 1000, f"step {i}")
    zizq.progress(0.5, "half way")
    mark(f"started {job.tag}")
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        mark(f"cancelled {job.tag}")
        raise


@router.handler
def sync_loop(job: SyncLoop) -> None:
    mark(f"started {job.tag}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if zizq.cancelled():
            mark(f"stopped {job.tag}")
            return
        time.sleep(0.02)


@router.handler
def mark_job(job: Mark) -> None:
    mark(f"ran {job.tag}")

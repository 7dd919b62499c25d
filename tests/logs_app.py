"""Job types and a router for the log tests (also loaded by `zizq worker`
subprocesses as tests.logs_app:router)."""

from __future__ import annotations

import asyncio
import logging

import zizq

app_log = logging.getLogger("tests.logs_app")


class Chatty(zizq.JobKind):
    """Its handler logs ``words`` on the logger ``tests.logs_app``."""

    NAME = "chatty"
    words: str


class Doomed(zizq.JobKind):
    """Its handler raises ValueError; with no retries, the job dies at once."""

    NAME = "doomed"
    RETRY_LIMIT = 0
    why: str


class Slow(zizq.JobKind):
    """Its handler sleeps past the job's 0.05 s timeout."""

    NAME = "slow"
    TIMEOUT = 0.05


router = zizq.Router()


@router.handler
def chatty(job: Chatty) -> None:
    app_log.info("saying %s", job.words)


@router.handler
def doomed(job: Doomed) -> None:
    raise ValueError(job.why)


@router.handler
async def slow(job: Slow) -> None:
    app_log.info("sleeping")
    await asyncio.sleep(5)

"""Job types and a router used by the tests (also loaded by `zizq worker`
subprocesses as tests.jobs_app:router)."""

from __future__ import annotations

import os
import time

import zizq


class SendEmail(zizq.JobKind):
    NAME = "send_email"
    QUEUE = "emails"
    PRIORITY = 50
    to: str
    subject: str = "hello"


class Heartbeat(zizq.JobKind):
    NAME = "heartbeat"


class Report(zizq.JobKind):
    NAME = "report"
    TRANSPARENT = True
    number: int


class Sleep(zizq.JobKind):
    """Sleeps `seconds`, then appends `tag` to the file $ZIZQ_TEST_LOG (and,
    first, to $ZIZQ_TEST_STARTED when that is set)."""

    NAME = "sleep"
    seconds: float
    tag: str


router = zizq.Router()


@router.handler
def sleep(job: Sleep) -> None:
    if started := os.environ.get("ZIZQ_TEST_STARTED"):
        with open(started, "a") as f:
            f.write(job.tag + "\n")
    time.sleep(job.seconds)
    with open(os.environ["ZIZQ_TEST_LOG"], "a") as f:
        f.write(job.tag + "\n")

"""A worker given a job again while an older attempt of it still runs (a
failover lost the take, the job went back to its queue and the same worker
took it again), and a job whose log lines cannot be written: each attempt
ends on its own, and no job is lost or run twice at once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest

import zizq

from .conftest import Start, wait_for

SECOND_RUN = 0.6  # seconds the later attempt runs: a dozen heartbeats, each of which may reconcile


class Twice(zizq.JobKind):
    NAME = "attempts_twice"
    n: int


@pytest.fixture(autouse=True)
def no_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Job hooks (another test module's) send every job to the event loop.
    for name in ("job_start", "job_end", "job_exception"):
        monkeypatch.setattr(zizq.events, name, [])


def lose_the_take(client: zizq.Client, owner: str, job_id: str) -> None:
    """What a failover to a replica that lacked the take does: the job goes
    back to its queue (later than its take: dequeued_at is in ms)."""
    time.sleep(0.01)
    assert client.run(client.core.release(owner, [job_id])) == 1


@pytest.mark.parametrize("first", ["fails", "returns"])
async def test_an_older_attempts_end_leaves_the_later_one_running_in_the_event_loop(
    client: zizq.Client, start: Start, first: str
) -> None:
    """Async handlers: the first attempt ends (its failure or ack refused,
    fenced) while the second runs; the worker still knows the second, so
    no reconcile hands the job back to run a third time meanwhile."""
    starts: list[int | None] = []
    router = zizq.Router()

    @router.handler
    async def twice(job: Twice, meta: zizq.Job) -> None:
        starts.append(meta.dequeued_at)
        if len(starts) == 1:
            lose_the_take(client, worker.id, meta.id)
            await wait_for(lambda: len(starts) >= 2, 5)
            if first == "fails":
                raise RuntimeError("the first attempt fails")
            return
        await asyncio.sleep(SECOND_RUN)

    client.enqueue(Twice(1))
    worker = start(router, concurrency=2, heartbeat_interval=0.05, lease=2.0)
    await wait_for(lambda: worker.stats.completed == 1)
    assert len(starts) == 2 and starts[0] != starts[1]
    assert worker.stats.refused_acks == 1 and worker.stats.failed == 0


@pytest.mark.parametrize("first", ["fails", "returns"])
async def test_an_older_attempts_end_leaves_the_later_one_running_in_the_handler_threads(
    client: zizq.Client, start: Start, first: str
) -> None:
    """The same with sync handlers, run in the worker's own threads."""
    starts: list[int | None] = []
    lock = threading.Lock()
    router = zizq.Router()

    @router.handler
    def twice(job: Twice, meta: zizq.Job) -> None:
        with lock:
            starts.append(meta.dequeued_at)
            number = len(starts)
        if number == 1:
            lose_the_take(client, worker.id, meta.id)
            deadline = time.monotonic() + 5
            while len(starts) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            if first == "fails":
                raise RuntimeError("the first attempt fails")
            return
        time.sleep(SECOND_RUN)

    client.enqueue(Twice(1))
    worker = start(router, concurrency=2, heartbeat_interval=0.05, lease=2.0)
    await wait_for(lambda: worker.stats.completed == 1)
    assert len(starts) == 2 and starts[0] != starts[1]
    assert worker.stats.refused_acks == 1 and worker.stats.failed == 0


class Broken(logging.Handler):
    """A log handler that raises, as a user's may (logging's own handlers
    report their errors with handleError instead)."""

    def emit(self, record: logging.LogRecord) -> None:
        raise OSError(f"cannot write the log line {record.getMessage()!r}")


@pytest.fixture
def broken_log() -> Iterator[None]:
    jobs_log = logging.getLogger("zizq.worker.jobs")
    handler, level = Broken(), jobs_log.level
    jobs_log.addHandler(handler)
    jobs_log.setLevel(logging.INFO)
    try:
        yield
    finally:
        jobs_log.removeHandler(handler)
        jobs_log.setLevel(level)


async def test_a_log_handler_that_raises_loses_no_job_of_the_event_loop(
    client: zizq.Client, start: Start, broken_log: None
) -> None:
    """The same with an async handler (the event loop's runners): the
    "received" line raising before the handler starts must not stop the
    job's outcome from being recorded."""
    router = zizq.Router()
    ran: list[int] = []

    @router.handler
    async def twice(job: Twice) -> None:
        ran.append(job.n)

    client.enqueue_many([Twice(n) for n in range(3)])
    worker = start(router, concurrency=1, heartbeat_interval=0.05, lease=2.0)
    await wait_for(lambda: worker.stats.completed == 3, 5)
    assert ran == [0, 1, 2] and worker.stats.failed == 0


async def test_a_log_handler_that_raises_loses_no_job_of_the_handler_threads(
    client: zizq.Client, start: Start, broken_log: None
) -> None:
    """Every job log line raises: each job still completes (the outcome is
    reported whatever logging does) and its runner is free for the next."""
    router = zizq.Router()
    ran: list[int] = []

    @router.handler
    def twice(job: Twice) -> None:
        ran.append(job.n)

    client.enqueue_many([Twice(n) for n in range(3)])
    worker = start(router, concurrency=1, heartbeat_interval=0.05, lease=2.0)
    await wait_for(lambda: worker.stats.completed == 3, 5)
    assert ran == [0, 1, 2] and worker.stats.failed == 0

"""A worker whose handlers are all sync: while more jobs are ready than it
has room for, its handler threads take and ack through a client of their
own (zizq/worker/sync_lane.py). The edges that design adds: a stop while the
threads hold the taking and jobs taken, and a call of theirs that fails."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest

import zizq

from .conftest import RedisServer, wait_for
from .scale_harness import Cluster
from .test_faults_redis import FlakyProxy

LENT = "the handler threads take and ack for themselves"


class Step(zizq.JobKind):
    NAME = "lane_step"
    RETENTION = zizq.Retention(completed_ms=3_600_000)  # completed jobs stay readable
    n: int


@pytest.fixture(autouse=True)
def no_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Job hooks (another test module's) send every job to the event loop.
    for name in ("job_start", "job_end", "job_exception"):
        monkeypatch.setattr(zizq.events, name, [])


def statuses(client: zizq.Client, jobs: list[zizq.Job]) -> Counter[str]:
    return Counter(client.get_job(job.id).status for job in jobs)


def counted(then: Callable[[Step, bool], None] | None = None) -> tuple[zizq.Router, Counter[int]]:
    """A router whose sync handler counts the runs of each job (by ``n``),
    then calls ``then(job, first)`` (first: the job's first run)."""
    runs: Counter[int] = Counter()
    lock = threading.Lock()
    router = zizq.Router()

    @router.handler
    def step(job: Step) -> None:
        with lock:
            runs[job.n] += 1
            first = runs[job.n] == 1
        if then is not None:
            then(job, first)

    return router, runs


async def test_a_stop_while_the_handler_threads_hold_the_taking_hands_back_unstarted_jobs(
    client: zizq.Client, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "zizq.worker")

    def then(job: Step, first: bool) -> None:
        if job.n == 60:  # by then the threads hold the taking, acks queued
            assert LENT in caplog.text
            worker.stop()
        time.sleep(0.002)

    router, runs = counted(then)
    jobs = client.enqueue_many([Step(n) for n in range(200)])
    worker = zizq.Worker(client, router, concurrency=6, prefetch=18, cron=False)
    await asyncio.wait_for(worker.run_async(), 10)

    counts = statuses(client, jobs)
    assert set(runs.values()) == {1}  # none ran twice
    assert counts["completed"] == len(runs) == worker.stats.completed
    assert counts["ready"] == 200 - len(runs)  # the rest went back, taken or not
    assert "jobs not started go back" in caplog.text
    assert client.redis.smembers("{" + namespace + "}:worker:" + worker.id) == set()


async def test_a_handler_threads_call_that_fails_loses_no_ack_and_runs_no_job_twice(
    redis_server: RedisServer, client: zizq.Client, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "zizq.worker")
    proxy = FlakyProxy(redis_server.port)

    def then(job: Step, first: bool) -> None:
        if job.n in (40, 80) and first:
            # Every connection of the worker drops while its threads take:
            # the acks queued and the next take fail in transit.
            assert LENT in caplog.text
            proxy.cut()

    router, runs = counted(then)
    jobs = client.enqueue_many([Step(n) for n in range(120)])
    via_proxy = zizq.Client.from_url(proxy.url, namespace)
    worker = zizq.Worker(via_proxy, router, concurrency=3, prefetch=9, cron=False)
    task = asyncio.create_task(worker.run_async())
    try:
        await wait_for(lambda: statuses(client, jobs)["completed"] == 120, timeout=20)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        via_proxy.close()
        proxy.close()
    assert set(runs.values()) == {1} and len(runs) == 120
    assert "a handler thread's take or ack failed" in caplog.text
    assert client.redis.smembers("{" + namespace + "}:worker:" + worker.id) == set()


@pytest.mark.scale
@pytest.mark.timeout(180)
async def test_on_a_cluster_the_handler_threads_take_and_ack_one_call_at_a_time(
    namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "zizq.worker")
    cluster = Cluster()
    try:
        router, runs = counted()
        with zizq.Client.from_url(cluster.url, namespace, cluster=True) as client:
            jobs = client.enqueue_many([Step(n) for n in range(100)])
            worker = zizq.Worker(client, router, concurrency=3, prefetch=9, cron=False)
            task = asyncio.create_task(worker.run_async())
            try:
                await wait_for(lambda: statuses(client, jobs)["completed"] == 100, timeout=30)
            finally:
                worker.stop()
                await asyncio.wait_for(task, 20)
        assert set(runs.values()) == {1} and len(runs) == 100
        assert LENT in caplog.text
    finally:
        cluster.close()

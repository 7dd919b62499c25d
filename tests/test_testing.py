"""zizq.testing.drain: runs a queue's jobs with the real worker until none
is ready or in flight, against a real Redis."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import zizq
from zizq.testing import DrainTimeout, JobsFailed, drain, drain_async


class Step(zizq.JobKind):
    """Step ``n`` of a chain; the handler enqueues step n - 1 until 0."""

    NAME = "step"
    QUEUE = "chain"
    n: int


class Boom(zizq.JobKind):
    NAME = "boom"
    QUEUE = "chain"
    RETRY_LIMIT = 3
    fail_times: int


class Nap(zizq.JobKind):
    NAME = "nap"
    QUEUE = "slow"
    seconds: float


def chain_router(client: zizq.Client, seen: list[int]) -> zizq.Router:
    router = zizq.Router()

    @router.handler
    def step(job: Step) -> None:
        seen.append(job.n)
        time.sleep(0.02)  # longer than a few looks at Redis: the drain must see the job in flight
        if job.n > 0:
            client.enqueue(Step(n=job.n - 1))

    return router


def boom_router(calls: list[str]) -> zizq.Router:
    router = zizq.Router()

    @router.handler
    def boom(job: Boom, meta: zizq.Job) -> None:
        calls.append(meta.id)
        if meta.attempts <= job.fail_times:  # meta.attempts is 1 on the first run
            raise ValueError(f"attempt {meta.attempts} fails")

    return router


def test_drain_runs_ready_jobs_and_the_jobs_they_enqueue(client: zizq.Client) -> None:
    seen: list[int] = []
    router = chain_router(client, seen)
    client.enqueue(Step(n=3))
    client.enqueue(Step(n=0), priority=1)  # runs first: lower priority number
    assert drain(client, router) == 5
    assert seen == [0, 3, 2, 1, 0]
    assert client.count_jobs(status="ready,in_flight,scheduled") == 0
    assert drain(client, router) == 0  # nothing left: returns at once


async def test_drain_async_runs_async_handlers_in_the_running_loop(aclient: zizq.AsyncClient) -> None:
    seen: list[int] = []
    router = zizq.Router()
    loop = asyncio.get_running_loop()

    @router.handler
    async def step(job: Step) -> None:
        assert asyncio.get_running_loop() is loop
        seen.append(job.n)
        if job.n > 0:
            await aclient.enqueue(Step(n=job.n - 1))

    await aclient.enqueue(Step(n=4))
    assert await drain_async(aclient, router) == 5
    assert seen == [4, 3, 2, 1, 0]
    assert await aclient.count_jobs(status="ready,in_flight,scheduled") == 0


def test_jobs_run_in_dispatch_order_follow_ups_included(client: zizq.Client) -> None:
    router = zizq.Router()
    order: list[int] = []

    @router.handler
    def step(job: Step, meta: zizq.Job) -> None:
        order.append(meta.priority)
        if job.n:
            client.enqueue(Step(n=0), priority=1)

    client.enqueue_many([zizq.Enqueue(Step(n=1), priority=10), zizq.Enqueue(Step(n=0), priority=100)])
    assert drain(client, router) == 3
    assert order == [10, 1, 100]  # the follow-up (priority 1) before the job waiting since the start


def test_drain_takes_only_the_queues_named(client: zizq.Client) -> None:
    seen: list[int] = []
    client.enqueue(Step(n=0))
    other = client.enqueue(Step(n=0), queue="elsewhere")
    assert drain(client, chain_router(client, seen), ["chain"]) == 1
    assert client.get_job(other.id).status == "ready"
    assert drain(client, chain_router(client, seen), ["elsewhere"]) == 1


def test_a_failing_job_is_reported_and_not_run_again(client: zizq.Client) -> None:
    calls: list[str] = []
    job = client.enqueue(Boom(fail_times=1))
    with pytest.raises(JobsFailed) as info:
        drain(client, boom_router(calls))
    assert calls == [job.id]
    [failure] = info.value.failures
    assert (failure.job.id, failure.dead, str(failure.error)) == (job.id, False, "attempt 1 fails")
    assert info.value.__cause__ is failure.error and info.value.ran == 1
    assert f"1 of 1 jobs failed: {job.id} (boom): ValueError: attempt 1 fails" in str(info.value)
    after = client.get_job(job.id)
    assert (after.status, after.attempts) == ("scheduled", 1)  # its retry waits for its backoff
    assert drain(client, boom_router(calls)) == 0  # the retry is not due: not waited for
    assert calls == [job.id]


def test_failures_can_be_counted_without_raising(client: zizq.Client) -> None:
    client.enqueue(Boom(fail_times=1))
    client.enqueue(Boom(fail_times=0))
    assert drain(client, boom_router([]), raise_errors=False) == 2


def test_retries_run_at_once_when_asked(client: zizq.Client) -> None:
    calls: list[str] = []
    flaky = client.enqueue(Boom(fail_times=2))
    hopeless = client.enqueue(Boom(fail_times=99))  # RETRY_LIMIT 3: dead after 4 runs
    with pytest.raises(JobsFailed) as info:
        drain(client, boom_router(calls), retries=True)
    assert calls.count(flaky.id) == 3 and calls.count(hopeless.id) == 4
    assert info.value.ran == 7
    assert [(f.job.id, f.dead) for f in info.value.failures if f.job.id == hopeless.id][-1] == (hopeless.id, True)
    with pytest.raises(zizq.JobNotFound):
        client.get_job(flaky.id)  # completed, and deleted (completed retention 0)
    assert client.get_job(hopeless.id).status == "dead"


def test_scheduled_jobs_run_only_when_asked(client: zizq.Client) -> None:
    seen: list[int] = []
    later = client.enqueue(Step(n=0), delay=0.3)
    started = time.monotonic()
    assert drain(client, chain_router(client, seen)) == 0
    assert client.get_job(later.id).status == "scheduled"
    assert drain(client, chain_router(client, seen), include_scheduled=True) == 1
    assert time.monotonic() - started >= 0.3
    assert seen == [0]


def test_timeout_stops_the_worker_at_once_and_says_what_is_left(client: zizq.Client) -> None:
    release = threading.Event()
    router = zizq.Router()

    @router.handler
    def nap(job: Nap) -> None:
        release.wait(job.seconds)

    stuck = client.enqueue(Nap(seconds=30))
    started = time.monotonic()
    try:
        with pytest.raises(DrainTimeout, match=r"drain timed out after 0 jobs ran; left: 1 in flight") as info:
            drain(client, router, timeout=0.5)
    finally:
        release.set()
    assert 0.5 <= time.monotonic() - started < 5
    assert isinstance(info.value, TimeoutError) and info.value.ran == 0
    assert client.get_job(stuck.id).status == "ready"  # handed back by the stop


async def test_drain_in_a_running_loop_says_to_await_drain_async(aclient: zizq.AsyncClient) -> None:
    with pytest.raises(zizq.ZizqError, match="drain_async"):
        drain(aclient, zizq.Router())


@pytest.mark.parametrize("bad", [0, -1.0, "10", True])
def test_bad_timeout_is_refused(client: zizq.Client, bad: object) -> None:
    with pytest.raises(zizq.ValidationError, match=f"timeout {bad!r} must be a number of seconds above 0"):
        drain(client, zizq.Router(), timeout=bad)  # type: ignore[arg-type]

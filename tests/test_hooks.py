"""Middleware (enqueue and dequeue) and events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

import zizq
from zizq import events

from .conftest import Start, wait_for


class Greet(zizq.JobKind):
    NAME = "greet"
    QUEUE = "hooks"
    name: str


@pytest.fixture(autouse=True)
def no_subscribers() -> Iterator[None]:
    yield
    for subs in (events.enqueue, events.job_start, events.job_end, events.job_exception):
        subs.clear()


def test_enqueue_middleware_runs_first_registered_outermost(client: zizq.Client) -> None:
    seen: list[str] = []

    @client.use
    def outer(items: list[zizq.Enqueue], call_next: Callable[[list[zizq.Enqueue]], list[zizq.Job]]) -> list[zizq.Job]:
        seen.append("outer in")
        jobs = call_next(items)
        seen.append("outer out")
        return jobs

    @client.use
    def urgent(items: list[zizq.Enqueue], call_next: Callable[[list[zizq.Enqueue]], list[zizq.Job]]) -> list[zizq.Job]:
        seen.append("inner")
        for item in items:
            item.priority = 1
        return call_next(items)

    assert client.enqueue(Greet(name="a")).priority == 1
    assert client.enqueue_raw("x", 1, queue="hooks").priority == 1
    assert [j.priority for j in client.enqueue_many([Greet(name="b"), Greet(name="c")])] == [1, 1]
    assert seen == ["outer in", "inner", "outer out"] * 3


async def test_async_enqueue_middleware_and_enqueue_events(aclient: zizq.AsyncClient) -> None:
    got: list[events.EnqueueEvent] = []
    unsubscribe = events.subscribe("enqueue", got.append)

    @aclient.use
    async def tag(
        items: list[zizq.Enqueue], call_next: Callable[[list[zizq.Enqueue]], Awaitable[list[zizq.Job]]]
    ) -> list[zizq.Job]:
        for item in items:
            item.queue = "tagged"
        return await call_next(items)

    jobs = await aclient.enqueue_many([Greet(name="a"), Greet(name="b")])
    assert [j.queue for j in jobs] == ["tagged", "tagged"]
    [event] = got
    assert (event.namespace, event.count, event.jobs, event.error) == (aclient.namespace, 2, jobs, None)
    assert 0 < event.duration < 5
    with pytest.raises(zizq.ValidationError):
        await aclient.enqueue(Greet(name="c"), priority=-1)
    assert isinstance(got[1].error, zizq.ValidationError) and got[1].jobs == []
    unsubscribe()
    await aclient.enqueue(Greet(name="d"))
    assert len(got) == 2


def test_bad_hooks_are_refused() -> None:
    with pytest.raises(zizq.ValidationError, match="job_done"):
        events.subscribe("job_done", print)  # type: ignore[arg-type]
    with pytest.raises(zizq.ValidationError, match="async"):
        zizq.Router().use(lambda job, call_next: None)


async def test_dequeue_middleware_and_job_events(client: zizq.Client, start: Start) -> None:
    order: list[str] = []
    router = zizq.Router()

    @router.use
    async def outer(job: zizq.Job, call_next: Callable[[], Awaitable[None]]) -> None:
        order.append(f"outer {job.payload['name']}")
        await call_next()

    @router.use
    async def inner(job: zizq.Job, call_next: Callable[[], Awaitable[None]]) -> None:
        order.append("inner")
        await call_next()

    @router.handler
    def greet(job: Greet) -> None:  # a sync handler, in the thread pool
        order.append(f"handler {job.name}")
        if job.name == "bad":
            raise ValueError("no")

    seen: list[events.JobEvent] = []
    for name in ("job_start", "job_end", "job_exception"):
        events.subscribe(name, seen.append)

    def broken(event: events.JobEvent) -> None:
        raise RuntimeError("a broken subscriber changes nothing")

    events.subscribe("job_end", broken)

    ok = client.enqueue(Greet(name="ok"))
    start(router, queues=["hooks"], concurrency=1)
    await wait_for(lambda: any(e.name == "job_end" for e in seen))
    assert order == ["outer ok", "inner", "handler ok"]
    bad = client.enqueue(Greet(name="bad"), retry_limit=1)
    await wait_for(lambda: sum(e.name == "job_end" for e in seen) == 2)
    again = client.enqueue(Greet(name="bad"), retry_limit=0)
    await wait_for(lambda: sum(e.name == "job_end" for e in seen) == 3)

    names = [(e.name, e.job.id, e.outcome) for e in seen]
    assert names == [
        ("job_start", ok.id, None),
        ("job_end", ok.id, "completed"),
        ("job_start", bad.id, None),
        ("job_exception", bad.id, None),
        ("job_end", bad.id, "failed"),
        ("job_start", again.id, None),
        ("job_exception", again.id, None),
        ("job_end", again.id, "dead"),
    ]
    assert isinstance(seen[3].error, ValueError) and seen[4].error is seen[3].error
    assert all(e.duration is not None and e.duration >= 0 for e in seen if e.name != "job_start")


async def test_a_middleware_failure_fails_the_job(client: zizq.Client, start: Start) -> None:
    router = zizq.Router()
    ran: list[str] = []

    @router.use
    async def deny(job: zizq.Job, call_next: Callable[[], Awaitable[None]]) -> None:
        raise zizq.KillJob("denied by middleware")

    @router.handler
    async def greet(job: Greet) -> None:
        ran.append(job.name)

    job = client.enqueue(Greet(name="x"), retention=zizq.Retention(dead_ms=60_000))
    start(router, queues=["hooks"])
    await wait_for(lambda: client.get_job(job.id).status == "dead")
    assert ran == [] and client.job_errors(job.id)[0].message == "denied by middleware"


async def test_no_hooks_means_no_hook_work_per_job(
    client: zizq.Client, start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With nothing registered the worker must not build events or middleware
    # chains: both are made to explode here.
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("hook machinery used with no hooks registered")

    monkeypatch.setattr(events, "JobEvent", explode)
    monkeypatch.setattr("zizq.worker.job_run.run_chain", explode)
    monkeypatch.setattr("zizq.middleware.enqueue_sync", explode)
    router = zizq.Router()
    done: list[str] = []

    @router.handler
    async def greet(job: Greet) -> None:
        done.append(job.name)

    client.enqueue_many([Greet(name=str(i)) for i in range(20)])
    worker = start(router, queues=["hooks"])
    await wait_for(lambda: worker.stats.completed == 20)
    assert sorted(done) == sorted(str(i) for i in range(20))

"""Middleware: code that wraps enqueueing and running jobs.

Enqueue middleware is registered on a client (``client.use(fn)``) and sees
every ``enqueue``, ``enqueue_raw`` and ``enqueue_many`` call: ``fn(items,
call_next)`` gets the list of :class:`zizq.Enqueue` requests, may change them
(or pass others on) and returns what ``call_next(items)`` returns, the list
of :class:`zizq.Job`. On an AsyncClient both are coroutines.

Dequeue middleware is registered on a router (``router.use(fn)``) and wraps
every handler call in the workers: ``async def fn(job, call_next)`` runs the
handler by awaiting ``call_next()``; raising fails the job as the handler
would. The job's timeout covers the middleware too.

The first registered runs outermost. With none registered, neither costs
anything per job.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from zizq import events
from zizq._protocol.call import Call
from zizq._protocol.jobs import Core
from zizq.job import Job, JobKind
from zizq.options import Enqueue

EnqueueMiddleware = Callable[[list[Enqueue], Callable[[list[Enqueue]], list[Job]]], list[Job]]
AsyncEnqueueMiddleware = Callable[
    [list[Enqueue], Callable[[list[Enqueue]], Awaitable[list[Job]]]], Awaitable[list[Job]]
]
DequeueMiddleware = Callable[[Job, Callable[[], Awaitable[None]]], Awaitable[None]]


class _Chained(Protocol):
    # What the enqueue middleware runs with, of either client.
    core: Core
    enqueue_middleware: list[Any]

    @property
    def namespace(self) -> str: ...


class EnqueueClient(_Chained, Protocol):
    """What the enqueue middleware runs with, of a :class:`zizq.Client`."""

    def run(self, call: Call[list[Job]]) -> list[Job]: ...


class AsyncEnqueueClient(_Chained, Protocol):
    """What the enqueue middleware runs with, of a :class:`zizq.AsyncClient`."""

    async def run(self, call: Call[list[Job]]) -> list[Job]: ...


class SendTracing(Protocol):
    """The enqueue sends, traced: what :func:`zizq.otel.instrument` puts in
    :data:`send_tracing`."""

    def send_sync(self, client: EnqueueClient, items: Sequence[Enqueue | JobKind]) -> list[Job]: ...

    async def send_async(self, client: AsyncEnqueueClient, items: Sequence[Enqueue | JobKind]) -> list[Job]: ...


# Set while zizq.otel is instrumented; None (tracing off) costs one check per enqueue call.
send_tracing: SendTracing | None = None


def send_sync(client: EnqueueClient, items: Sequence[Enqueue | JobKind]) -> list[Job]:
    """Send the enqueue of ``items`` without middleware: one script call per
    batch of at most ENQUEUE_BATCH jobs (see Core.enqueue_calls), in order;
    each batch is atomic. Every job is checked before the first call."""
    if send_tracing is not None:
        return send_tracing.send_sync(client, items)
    jobs: list[Job] = []
    for call in client.core.enqueue_calls(items):
        jobs += client.run(call)
    return jobs


async def send_async(client: AsyncEnqueueClient, items: Sequence[Enqueue | JobKind]) -> list[Job]:
    """The AsyncClient's :func:`send_sync`."""
    if send_tracing is not None:
        return await send_tracing.send_async(client, items)
    jobs: list[Job] = []
    for call in client.core.enqueue_calls(items):
        jobs += await client.run(call)
    return jobs


def enqueue_sync(client: EnqueueClient, items: list[Enqueue]) -> list[Job]:
    """Send ``items`` through the client's middleware, emitting an enqueue event."""
    chain: Sequence[Any] = client.enqueue_middleware

    def step(i: int, its: list[Enqueue]) -> list[Job]:
        if i == len(chain):
            return send_sync(client, its)
        result: list[Job] = chain[i](its, lambda nxt: step(i + 1, nxt))
        return result

    started = time.perf_counter()
    try:
        jobs = step(0, items)
    except BaseException as exc:
        _emit(client.namespace, items, [], started, exc)
        raise
    _emit(client.namespace, items, jobs, started)
    return jobs


async def enqueue_async(client: AsyncEnqueueClient, items: list[Enqueue]) -> list[Job]:
    """The AsyncClient's :func:`enqueue_sync`."""
    chain: Sequence[Any] = client.enqueue_middleware

    async def step(i: int, its: list[Enqueue]) -> list[Job]:
        if i == len(chain):
            return await send_async(client, its)
        result: list[Job] = await chain[i](its, lambda nxt: step(i + 1, nxt))
        return result

    started = time.perf_counter()
    try:
        jobs = await step(0, items)
    except BaseException as exc:
        _emit(client.namespace, items, [], started, exc)
        raise
    _emit(client.namespace, items, jobs, started)
    return jobs


def _emit(
    namespace: str, items: list[Enqueue], jobs: list[Job], started: float, exc: BaseException | None = None
) -> None:
    """Tell the enqueue hooks, if any, how an enqueue went."""
    if events.enqueue:
        events.emit(events.enqueue, events.EnqueueEvent(namespace, len(items), jobs, _since(started), exc))


async def run_chain(chain: Sequence[DequeueMiddleware], job: Job, handler: Callable[[], Awaitable[None]]) -> None:
    """Run ``handler`` inside the dequeue middleware ``chain``."""

    async def step(i: int) -> None:
        if i == len(chain):
            await handler()
        else:
            await chain[i](job, lambda: step(i + 1))

    await step(0)


def _since(started: float) -> float:
    return time.perf_counter() - started

"""Fixtures: real redis-server processes on free loopback ports.

One server serves the whole session; every test gets its own namespace, so
tests never see each other's keys. ``redis_factory`` starts extra servers for
tests that need one of their own.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

import zizq
from zizq.testing import RedisServer as RedisServer  # the tests import it from here
from zizq.testing import free_port as free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"



@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.close()


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    servers: list[RedisServer] = []

    def make(*extra: str) -> RedisServer:
        servers.append(RedisServer(*extra))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def r(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A raw redis-py connection to the session server."""
    conn = redis.Redis(port=redis_server.port)
    yield conn
    conn.close()


def stored(r: redis.Redis, namespace: str, job_id: str) -> dict[str, Any] | None:
    """A job's record exactly as stored (a MessagePack map in the namespace's
    "jobs" hash; docs/protocol/keys.md §2.1), or None when there is none."""
    blob = r.hget("{" + namespace + "}:jobs", job_id)
    return None if blob is None else msgpack.unpackb(blob)


def stored_count(r: redis.Redis, namespace: str) -> int:
    """How many job records the namespace holds, in any state."""
    return int(r.hlen("{" + namespace + "}:jobs"))


@pytest.fixture
def client(redis_server: RedisServer, namespace: str) -> Iterator[zizq.Client]:
    c = zizq.Client.from_url(redis_server.url, namespace)
    yield c
    c.close()


@pytest.fixture
async def aclient(redis_server: RedisServer, namespace: str) -> AsyncIterator[zizq.AsyncClient]:
    c = zizq.AsyncClient.from_url(redis_server.url, namespace)
    yield c
    await c.close()


class Awaited:
    """Gives a sync Client the AsyncClient's shape (every method awaited),
    so one test body runs against both front doors."""

    def __init__(self, client: zizq.Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, redis_server: RedisServer, namespace: str) -> AsyncIterator[Any]:
    """The sync Client (wrapped) and the AsyncClient in turn."""
    if request.param == "sync":
        c = zizq.Client.from_url(redis_server.url, namespace)
        yield Awaited(c)
        c.close()
    else:
        ac = zizq.AsyncClient.from_url(redis_server.url, namespace)
        yield ac
        await ac.close()


Start = Callable[..., zizq.Worker]


@pytest.fixture
async def start(client: zizq.Client) -> AsyncIterator[Start]:
    """Start workers on ``client`` in the background (``start(router,
    **options)``); they are stopped after the test."""
    running: list[tuple[zizq.Worker, asyncio.Task[None]]] = []

    def make(router: zizq.Router, **options: Any) -> zizq.Worker:
        worker = zizq.Worker(client, router, **options)
        running.append((worker, asyncio.create_task(worker.run_async())))
        return worker

    yield make
    for worker, task in running:
        worker.stop()
        await asyncio.wait_for(task, 10)


async def take(api: Any, count: int = 100, queues: tuple[str, ...] = (), worker: str = "w1") -> list[zizq.Job]:
    """Take jobs as worker ``worker`` would (joining first: a take needs a
    lease), through the Client or AsyncClient ``api``."""
    await api.run(api.core.heartbeat(worker, "join", 60_000))
    result = await api.run(api.core.take(worker, count, list(queues)))
    return list(result.jobs)


async def wait_for(predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


ROOT = Path(__file__).resolve().parent.parent
EXTENSION_EXPECTED = os.environ.get("ZIZQ_EXPECT_EXTENSION") == "1"

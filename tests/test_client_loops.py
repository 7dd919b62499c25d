"""An AsyncClient made outside any event loop (at import time, as FastAPI
apps often do) works in every loop that uses it: each loop gets redis-py
connections of its own."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings

import pytest
import redis.asyncio

import zizq

from .conftest import RedisServer


def run_in_new_loop(client: zizq.AsyncClient, count: int) -> list[zizq.Job]:
    """Enqueue ``count`` jobs from a fresh event loop (asyncio.run)."""

    async def use() -> list[zizq.Job]:
        return [await client.enqueue_raw("ping", {"n": i}) for i in range(count)]

    return asyncio.run(use())


def test_one_client_serves_one_loop_after_another(redis_server: RedisServer, namespace: str) -> None:
    client = zizq.AsyncClient.from_url(redis_server.url, namespace)  # no loop runs yet
    with warnings.catch_warnings():
        # The first loop's connections were never closed (nothing could close
        # them before its loop ended); the garbage collector closes them.
        warnings.simplefilter("ignore", ResourceWarning)
        first = run_in_new_loop(client, 3)
        second = run_in_new_loop(client, 3)  # raised "Event loop is closed" before
        gc.collect()

    async def check() -> int:
        try:
            return await client.count_jobs(status="ready")
        finally:
            await client.close()

    assert len({j.id for j in first + second}) == 6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert asyncio.run(check()) == 6
        gc.collect()


def test_one_client_serves_loops_of_two_threads_at_once(redis_server: RedisServer, namespace: str) -> None:
    client = zizq.AsyncClient.from_url(redis_server.url, namespace)
    results: dict[str, list[zizq.Job]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def thread_main(name: str) -> None:
        async def use() -> None:
            start.wait()
            try:
                jobs = await asyncio.gather(*(client.enqueue_raw("ping", {"from": name}) for _ in range(100)))
                results[name] = [await client.get_job(j.id) for j in jobs]
            finally:
                await client.close()  # closes this loop's connections

        try:
            asyncio.run(use())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    for name in ("a", "b"):
        assert len(results[name]) == 100
        assert all(job.payload == {"from": name} for job in results[name])


def test_a_client_without_a_url_says_where_to_make_it(redis_server: RedisServer, namespace: str) -> None:
    client = zizq.AsyncClient(redis.asyncio.Redis(port=redis_server.port), namespace)

    async def first() -> None:
        await client.enqueue_raw("ping", {})
        await client.close()

    async def second() -> None:
        await client.enqueue_raw("ping", {})

    asyncio.run(first())
    with pytest.raises(zizq.ZizqError, match="lifespan") as info:
        asyncio.run(second())
    assert "from_url" in str(info.value)

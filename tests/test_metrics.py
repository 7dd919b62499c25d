"""Prometheus metrics, scraped over HTTP while a worker runs."""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

import zizq
from zizq import events
from zizq.metrics import serve_metrics

from .conftest import Start, wait_for


class Work(zizq.JobKind):
    NAME = "work"
    QUEUE = "m"
    seconds: float
    fail: bool = False


@pytest.fixture(autouse=True)
def no_subscribers() -> Iterator[None]:
    yield
    events.job_end.clear()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))] = s.value
    return out


async def test_metrics_while_jobs_run(client: zizq.Client, start: Start, namespace: str) -> None:
    release = asyncio.Event()
    router = zizq.Router()

    @router.handler
    async def work(job: Work) -> None:
        if job.seconds < 0:
            await release.wait()
        await asyncio.sleep(job.seconds)
        if job.fail:
            raise ValueError("boom")

    client.enqueue_many([zizq.Enqueue.raw("other", {}, queue="backlog") for _ in range(3)])
    client.enqueue_raw("later", {}, queue="backlog", delay=3600)
    worker = start(router, queues=["m"], concurrency=4)
    server = await asyncio.to_thread(serve_metrics, 0, client, [worker], addr="127.0.0.1")
    try:
        client.enqueue(Work(seconds=-1))  # runs until released
        client.enqueue_many([Work(seconds=0.01) for _ in range(5)])
        client.enqueue(Work(seconds=0, fail=True), retry_limit=3)
        client.enqueue(Work(seconds=0, fail=True), retry_limit=0)
        client.enqueue(Work(seconds=5), timeout=0.05, retry_limit=0)
        ns = ("namespace", namespace)
        labels = (ns, ("queue", "m"), ("type", "work"))

        def settled() -> bool:
            m = scrape(server.port)
            return m.get(("zizq_jobs_completed_total", labels)) == 5 and m.get(("zizq_jobs_dead_total", labels)) == 2

        await wait_for(lambda: asyncio.to_thread(settled))
        m = await asyncio.to_thread(scrape, server.port)
        assert m["zizq_jobs_failed_total", labels] == 1
        assert m["zizq_jobs_timed_out_total", labels] == 1
        assert m["zizq_job_duration_seconds_count", labels] == 8
        assert 0.05 <= m["zizq_job_duration_seconds_sum", labels] < 5
        assert m["zizq_redis_up", (ns,)] == 1
        assert m["zizq_queue_ready_jobs", (ns, ("queue", "backlog"))] == 3
        assert 0 <= m["zizq_queue_oldest_ready_age_seconds", (ns, ("queue", "backlog"))] < 60
        assert m["zizq_queue_ready_jobs", (ns, ("queue", "m"))] == 0
        assert m["zizq_in_flight_jobs", (ns,)] == 1  # the job waiting for release
        assert m["zizq_scheduled_jobs", (ns,)] == 2  # the later job, and the retry of the failed one
        assert m["zizq_jobs_recovered_total", (ns,)] == 0
        release.set()
        await wait_for(lambda: asyncio.to_thread(lambda: scrape(server.port)["zizq_in_flight_jobs", (ns,)] == 0))
    finally:
        release.set()
        server.close()


def test_bad_port_is_refused(client: zizq.Client) -> None:
    with pytest.raises(zizq.ValidationError, match="70000"):
        serve_metrics(70000, client)

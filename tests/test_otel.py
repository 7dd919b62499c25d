"""zizq.otel: the spans of an enqueue and of each attempt, the trace context
stored in the job record, metrics and log ids, with the SDK's in-memory
exporter and reader, on a real Redis and an in-process worker."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

import zizq
from zizq import events, middleware

from .conftest import ROOT, RedisServer, Start, stored, wait_for

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import baggage, context, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import zizq.otel

QUEUE = "otel"


class Ping(zizq.JobKind):
    NAME = "ping"
    QUEUE = QUEUE
    n: int


class Otel:
    """An SDK tracer provider exporting to memory, and a metric reader."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.provider.get_tracer("test")

    def instrument(self, propagation: zizq.otel.Propagation = "child") -> None:
        zizq.otel.instrument(tracer_provider=self.provider, meter_provider=self.meters, propagation=propagation)

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    setup = Otel()
    yield setup
    zizq.otel.uninstrument()
    setup.provider.shutdown()
    setup.meters.shutdown()


def handled(router: zizq.Router, seen: list[Any]) -> None:
    @router.handler
    async def ping(job: Ping) -> None:
        seen.append((job.n, trace.get_current_span().get_span_context()))


async def test_an_attempt_is_a_child_of_the_enqueue_in_one_trace(
    client: zizq.Client, start: Start, otel: Otel, r: redis.Redis, namespace: str, caplog: Any
) -> None:
    otel.instrument()
    router, seen = zizq.Router(), []
    log = logging.getLogger("tests.otel")

    @router.handler
    def ping(job: Ping) -> None:  # a sync handler, in the thread pool: the span is current there too
        with otel.tracer.start_as_current_span("inside"):
            log.warning("handling %d", job.n)
        seen.append(trace.get_current_span().get_span_context())

    with otel.tracer.start_as_current_span("request") as request:
        job = client.enqueue(Ping(n=1), priority=7)
    stored_context = (stored(r, namespace, job.id) or {})["tc"]
    caplog.handler.addFilter(zizq.logs.JobContextFilter())
    caplog.set_level(logging.INFO)
    worker = start(router, queues=[QUEUE])
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 1)

    [send] = otel.spans(f"send {QUEUE}")
    [process] = otel.spans(f"process {QUEUE}")
    [inside] = otel.spans("inside")
    assert send.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert inside.parent is not None and inside.parent.span_id == process.context.span_id
    assert seen == [process.context]
    trace_id = request.get_span_context().trace_id
    assert send.context.trace_id == process.context.trace_id == inside.context.trace_id == trace_id
    assert f"{trace_id:032x}-{send.context.span_id:016x}" in stored_context
    assert dict(send.attributes or {}) == {
        "messaging.system": "zizq",
        "messaging.operation.name": "send",
        "messaging.operation.type": "send",
        "messaging.destination.name": QUEUE,
        "messaging.message.id": job.id,
        "zizq.job.type": "ping",
        "zizq.job.priority": 7,
    }
    assert dict(process.attributes or {}) == {
        "messaging.system": "zizq",
        "messaging.operation.name": "process",
        "messaging.operation.type": "process",
        "messaging.destination.name": QUEUE,
        "messaging.message.id": job.id,
        "zizq.job.type": "ping",
        "zizq.job.priority": 7,
        "messaging.client.id": worker.id,
        "zizq.job.attempt": 1,
        "zizq.job.outcome": "completed",
    }
    assert process.status.status_code == StatusCode.UNSET
    [record] = [rec for rec in caplog.records if rec.getMessage() == "handling 1"]
    assert record.trace_id == f"{trace_id:032x}"
    assert record.span_id == f"{inside.context.span_id:016x}"
    assert record.job_id == job.id


async def test_link_propagation_starts_a_trace_linked_to_the_enqueue(
    client: zizq.Client, start: Start, otel: Otel
) -> None:
    otel.instrument(propagation="link")
    router, seen = zizq.Router(), []  # type: ignore[var-annotated]
    handled(router, seen)
    with otel.tracer.start_as_current_span("request"):
        client.enqueue(Ping(n=1))
    start(router, queues=[QUEUE])
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 1)
    [send] = otel.spans(f"send {QUEUE}")
    [process] = otel.spans(f"process {QUEUE}")
    assert process.parent is None and process.context.trace_id != send.context.trace_id
    assert [(link.context.trace_id, link.context.span_id) for link in process.links] == [
        (send.context.trace_id, send.context.span_id)
    ]


async def test_baggage_travels_with_the_job(client: zizq.Client, start: Start, otel: Otel) -> None:
    otel.instrument()
    router, found = zizq.Router(), []

    @router.handler
    async def ping(job: Ping) -> None:
        found.append(baggage.get_baggage("tenant"))

    token = context.attach(baggage.set_baggage("tenant", "acme"))
    try:
        with otel.tracer.start_as_current_span("request"):
            client.enqueue(Ping(n=1))
    finally:
        context.detach(token)
    start(router, queues=[QUEUE])
    await wait_for(lambda: found == ["acme"])


async def test_each_attempt_is_a_span_with_the_same_parent(client: zizq.Client, start: Start, otel: Otel) -> None:
    otel.instrument()
    router = zizq.Router()

    @router.handler
    async def ping(job: Ping) -> None:
        attempt = zizq.logs.current_job.get()
        assert attempt is not None
        if attempt.job.attempts < 3:
            raise zizq.RetryJob("not yet", delay=0)

    client.enqueue(Ping(n=0))
    start(router, queues=[QUEUE])
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 3)
    [send] = otel.spans(f"send {QUEUE}")
    attempts = otel.spans(f"process {QUEUE}")
    assert {s.parent.span_id for s in attempts if s.parent} == {send.context.span_id}
    assert [(s.attributes or {})["zizq.job.attempt"] for s in attempts] == [1, 2, 3]
    assert [(s.attributes or {}).get("error.type") for s in attempts] == ["zizq.RetryJob", "zizq.RetryJob", None]
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
    assert [(s.attributes or {})["zizq.job.outcome"] for s in attempts] == ["failed", "failed", "completed"]
    assert [e.name for e in attempts[0].events] == ["exception"]


async def test_timeouts_and_kills_end_their_span_as_failures(client: zizq.Client, start: Start, otel: Otel) -> None:
    otel.instrument()
    router = zizq.Router()

    @router.handler
    async def ping(job: Ping) -> None:
        if job.n == 1:
            await asyncio.sleep(5)
        raise zizq.KillJob("no use")

    slow = client.enqueue(Ping(n=1), timeout=0.05, retry_limit=0)
    killed = client.enqueue(Ping(n=2))
    start(router, queues=[QUEUE], concurrency=2)
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 2)
    spans = {(s.attributes or {})["messaging.message.id"]: s for s in otel.spans(f"process {QUEUE}")}
    assert (spans[slow.id].attributes or {})["error.type"] == "zizq.JobTimeout"
    assert (spans[killed.id].attributes or {})["error.type"] == "zizq.KillJob"
    for span in spans.values():
        assert span.status.status_code == StatusCode.ERROR
        assert (span.attributes or {})["zizq.job.outcome"] == "dead"


async def test_a_batch_has_a_create_span_per_job_and_one_send(
    aclient: zizq.AsyncClient, otel: Otel, r: redis.Redis, namespace: str
) -> None:
    otel.instrument()
    with otel.tracer.start_as_current_span("request") as request:
        jobs = await aclient.enqueue_many([Ping(n=1), zizq.Enqueue(Ping(n=2), queue="other"), Ping(n=3)])
    creates = otel.spans(f"create {QUEUE}") + otel.spans("create other")
    [send] = otel.spans("send")  # two queues: no destination in its name
    assert len(creates) == 3
    assert {(s.attributes or {})["messaging.message.id"] for s in creates} == {j.id for j in jobs}
    assert all(s.parent and s.parent.span_id == request.get_span_context().span_id for s in creates)
    assert {link.context.span_id for link in send.links} == {s.context.span_id for s in creates}
    assert (send.attributes or {})["messaging.batch.message_count"] == 3
    assert "messaging.destination.name" not in (send.attributes or {})
    assert all((s.attributes or {})["messaging.operation.type"] == "create" for s in creates)
    for job in jobs:  # each job carries its own creation context
        [create] = [s for s in creates if (s.attributes or {})["messaging.message.id"] == job.id]
        assert f"-{create.context.span_id:016x}-" in (stored(r, namespace, job.id) or {})["tc"]


async def test_metrics_follow_the_conventions(client: zizq.Client, start: Start, otel: Otel) -> None:
    otel.instrument()
    router, seen = zizq.Router(), []  # type: ignore[var-annotated]
    handled(router, seen)
    client.enqueue_many([Ping(n=1), Ping(n=2)])
    start(router, queues=[QUEUE])
    await wait_for(lambda: len(seen) == 2)
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 2)
    found = otel.metrics()
    [sent] = found["messaging.client.sent.messages"]
    assert sent.value == 2
    assert dict(sent.attributes) == {
        "messaging.system": "zizq",
        "messaging.operation.name": "send",
        "messaging.destination.name": QUEUE,
    }
    [operation] = found["messaging.client.operation.duration"]
    assert operation.count == 1
    [consumed] = found["messaging.client.consumed.messages"]
    assert consumed.value == 2
    [process] = found["messaging.process.duration"]
    assert process.count == 2 and dict(process.attributes)["messaging.operation.name"] == "process"


async def test_off_means_no_span_and_nothing_stored(
    client: zizq.Client, start: Start, otel: Otel, r: redis.Redis, namespace: str
) -> None:
    otel.instrument()
    zizq.otel.uninstrument()
    assert middleware.send_tracing is None and zizq.logs.span_ids is None
    assert not events.job_start and not events.job_end
    router, seen = zizq.Router(), []  # type: ignore[var-annotated]
    handled(router, seen)
    with otel.tracer.start_as_current_span("request"):
        job = client.enqueue(Ping(n=1))
    assert "tc" not in (stored(r, namespace, job.id) or {})
    start(router, queues=[QUEUE])
    await wait_for(lambda: len(seen) == 1)
    assert [s.name for s in otel.spans()] == ["request"]
    assert not seen[0][1].is_valid  # no span in the handler


def test_a_bad_propagation_is_refused() -> None:
    with pytest.raises(zizq.ValidationError, match="propagation 'sibling' is not one of child, link"):
        zizq.otel.instrument(propagation="sibling")  # type: ignore[arg-type]
    assert middleware.send_tracing is None


async def test_a_stop_that_cancels_the_handler_ends_its_span_as_interrupted(
    client: zizq.Client, start: Start, otel: Otel
) -> None:
    otel.instrument()
    router, running = zizq.Router(), asyncio.Event()

    @router.handler
    async def ping(job: Ping) -> None:
        running.set()
        await asyncio.sleep(30)

    client.enqueue(Ping(n=1))
    worker = start(router, queues=[QUEUE])
    await asyncio.wait_for(running.wait(), 10)
    worker.stop()
    worker.stop()  # the second stop cancels the running handler; the job goes back to its queue
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 1)
    [span] = otel.spans(f"process {QUEUE}")
    assert (span.attributes or {})["zizq.job.outcome"] == "interrupted"
    assert (span.attributes or {})["error.type"] == "cancelled"
    assert span.status.status_code == StatusCode.ERROR


async def test_a_failure_the_worker_cannot_record_ends_its_span_as_refused(
    client: zizq.Client, start: Start, otel: Otel
) -> None:
    otel.instrument()
    router, running, release = zizq.Router(), asyncio.Event(), asyncio.Event()

    @router.handler
    async def ping(job: Ping) -> None:
        running.set()
        await release.wait()
        raise ValueError("too late")

    job = client.enqueue(Ping(n=1))
    start(router, queues=[QUEUE])
    await asyncio.wait_for(running.wait(), 10)
    client.delete_job(job.id)  # no longer this worker's: its failure is refused
    release.set()
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 1)
    [span] = otel.spans(f"process {QUEUE}")
    assert (span.attributes or {})["zizq.job.outcome"] == "refused"
    assert (span.attributes or {})["error.type"] == "ValueError"
    assert span.status.status_code == StatusCode.ERROR
    assert span.events[0].attributes is not None and span.events[0].attributes["exception.message"] == "too late"


def test_the_stored_context_never_changes(client: zizq.Client, otel: Otel, r: redis.Redis, namespace: str) -> None:
    otel.instrument()
    with otel.tracer.start_as_current_span("first"):
        job = client.enqueue(Ping(n=1), unique_key="once")
    first = (stored(r, namespace, job.id) or {})["tc"]
    with otel.tracer.start_as_current_span("second"):
        again = client.enqueue(Ping(n=2), unique_key="once")
    assert again.duplicate and again.id == job.id
    assert (stored(r, namespace, job.id) or {})["tc"] == first
    sends = otel.spans(f"send {QUEUE}")
    assert [(s.attributes or {}).get("zizq.job.duplicate") for s in sends] == [None, True]
    client.patch_job(job.id, priority=1)
    assert (stored(r, namespace, job.id) or {})["tc"] == first


async def test_a_job_with_a_limit_and_a_group_carries_its_context_too(
    client: zizq.Client, start: Start, otel: Otel, r: redis.Redis, namespace: str
) -> None:
    otel.instrument()
    client.set_limit("api", zizq.Limit(concurrency=1))
    router, seen = zizq.Router(), []  # type: ignore[var-annotated]
    handled(router, seen)
    with otel.tracer.start_as_current_span("request"):
        limited, plain = client.enqueue_many(
            [zizq.Enqueue(Ping(n=1), limit="api", limit_key="k", group="g"), Ping(n=2)]
        )
    record = stored(r, namespace, limited.id) or {}
    assert (record["lm"], record["lk"], record["gk"]) == ("api", "k", "g") and "traceparent" in record["tc"]
    assert "traceparent" in (stored(r, namespace, plain.id) or {})["tc"]
    start(router, queues=[QUEUE])
    await wait_for(lambda: len(otel.spans(f"process {QUEUE}")) == 2)
    creates = {(s.attributes or {})["messaging.message.id"]: s for s in otel.spans(f"create {QUEUE}")}
    for span in otel.spans(f"process {QUEUE}"):
        job_id = (span.attributes or {})["messaging.message.id"]
        assert span.parent is not None and span.parent.span_id == creates[job_id].context.span_id


def test_an_enqueue_that_fails_ends_its_send_span_with_the_error(otel: Otel) -> None:
    otel.instrument()
    nowhere = zizq.Client.from_url("redis://127.0.0.1:1/0", retry_for=0)  # nothing listens on port 1
    with pytest.raises(zizq.RedisUnavailable):
        nowhere.enqueue(Ping(n=1))
    nowhere.close()
    [send] = otel.spans(f"send {QUEUE}")
    assert (send.attributes or {})["error.type"] == "zizq.RedisUnavailable"
    assert send.status.status_code == StatusCode.ERROR
    [sent] = otel.metrics()["messaging.client.sent.messages"]
    assert dict(sent.attributes)["error.type"] == "zizq.RedisUnavailable"


WORKER_APP = """
import logging

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import zizq
import zizq.otel


def line(span):
    parent = span.parent.span_id if span.parent else 0
    return f"SPAN {span.name} {span.context.trace_id:032x} {span.context.span_id:016x} {parent:016x}\\n"


provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=line)))
trace.set_tracer_provider(provider)
zizq.otel.instrument()


class Ping(zizq.JobKind):
    NAME = "ping"
    QUEUE = "otel"
    n: int


router = zizq.Router()


@router.handler
def ping(job: Ping) -> None:
    logging.getLogger("app").warning("pinged %d", job.n)
"""


def test_a_zizq_worker_process_continues_the_trace_and_logs_its_ids(
    client: zizq.Client, otel: Otel, redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    otel.instrument()
    (tmp_path / "app.py").write_text(WORKER_APP)
    with otel.tracer.start_as_current_span("request") as request:
        client.enqueue(Ping(n=1))
    [send] = otel.spans(f"send {QUEUE}")
    output = tmp_path / "worker.out"
    command = [sys.executable, "-m", "zizq", "worker", "app:router", "--url", redis_server.url]
    command += ["--namespace", namespace, "-q", QUEUE, "--log-format", "json"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    with output.open("wb") as out:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while f"SPAN process {QUEUE}" not in output.read_text():
            assert time.monotonic() < deadline and proc.poll() is None, output.read_text()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0, output.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = output.read_text().splitlines()
    [process] = [line.split()[3:] for line in lines if line.startswith(f"SPAN process {QUEUE}")]
    trace_id = f"{request.get_span_context().trace_id:032x}"
    assert process[0] == trace_id and process[2] == f"{send.context.span_id:016x}"
    [record] = [json.loads(line) for line in lines if '"pinged 1"' in line]
    assert (record["trace_id"], record["span_id"]) == (trace_id, process[1])

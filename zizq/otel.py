"""OpenTelemetry: one trace from the code that enqueued a job to every
attempt that ran it, named by the OpenTelemetry messaging semantic
conventions.

::

    import zizq.otel

    zizq.otel.instrument()  # once, at start-up, after the SDK is set up

Needs ``pip install 'zizq[otel]'`` (opentelemetry-api; bring the SDK and an
exporter). Without :func:`instrument`, zizq makes no span and stores nothing.

Producer side: ``enqueue`` and ``enqueue_raw`` make a PRODUCER span ``send
<queue>``; ``enqueue_many`` of several jobs makes one PRODUCER span ``create
<queue>`` per job and one ``send`` span linked to them. The context of the
job's creation (the ``send`` span, or its ``create`` span in a batch; W3C
``traceparent``, and ``tracestate`` and baggage when present) is stored in
the job record once (record field ``tc``, the 18th enqueue value) and never
changes.

Worker side: each attempt is a CONSUMER span ``process <queue>``, a child of
the stored context (``propagation="child"``) or the root of a new trace
linked to it (``propagation="link"``). It is current while the handler (and
dequeue middleware) runs, so the handler's spans and log records join the
trace. A failed attempt gets ``error.type`` (the error type zizq records),
the exception as a span event and an ERROR status; ``zizq.job.outcome`` says
how the attempt ended: ``completed``, ``failed`` (a retry is scheduled),
``dead``, ``refused`` (the job was no longer this worker's),
``interrupted`` (the worker stopped; the job goes back to its queue) or
``unrecorded`` (Redis could not be told; the job runs again once the
worker's lease lapses).

Metrics, from the meter provider given (default: the global one):
``messaging.client.sent.messages`` and ``messaging.client.operation.duration``
(operation ``send``), ``messaging.client.consumed.messages`` and
``messaging.process.duration`` (operation ``process``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from opentelemetry import context, metrics, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from zizq import events, logs, middleware
from zizq._protocol.enqueue import EnqueueRow, Template
from zizq._version import __version__
from zizq.errors import ValidationError
from zizq.job import Job, JobKind
from zizq.options import Enqueue
from zizq.worker.job_run import error_type_of

Propagation = Literal["child", "link"]
PROPAGATIONS = ("child", "link")

SYSTEM = "zizq"  # messaging.system
# messaging.client.operation.duration's buckets, as the conventions give them (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


def instrument(
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    propagation: Propagation = "child",
) -> None:
    """Trace and measure every enqueue and every attempt in this process,
    until :func:`uninstrument`. The providers default to the global ones
    (``opentelemetry.trace.set_tracer_provider``, and the metrics one).
    ``propagation``: ``"child"`` (each attempt's span is a child of the
    enqueue's context) or ``"link"`` (each attempt starts a trace of its
    own, linked to it). Calling it again replaces the settings."""
    if propagation not in PROPAGATIONS:
        raise ValidationError(f"propagation {propagation!r} is not one of {', '.join(PROPAGATIONS)}")
    uninstrument()
    global _active
    _active = _Instrumentation(tracer_provider, meter_provider, propagation)
    middleware.send_tracing = _active
    logs.span_ids = span_ids
    # First, so that other job_start hooks already see the attempt's span.
    events.job_start.insert(0, _active.job_start)
    events.job_end.append(_active.job_end)


def uninstrument() -> None:
    """Stop tracing: enqueues store no trace context and attempts make no span."""
    global _active
    if _active is None:
        return
    middleware.send_tracing = None
    logs.span_ids = None
    events.unsubscribe("job_start", _active.job_start)
    events.unsubscribe("job_end", _active.job_end)
    _active = None


def job_context(job: Job) -> Context | None:
    """The context ``job`` was enqueued in (its span, and baggage), as
    stored in its record; None when it was enqueued without tracing."""
    if not job.trace_context:
        return None
    try:
        carrier = orjson.loads(job.trace_context)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(carrier, dict):
        return None
    return propagate.extract({k: v for k, v in carrier.items() if isinstance(v, str)})


def span_ids() -> tuple[str, str] | None:
    """The current span's trace id (32 hex digits) and span id (16), or
    None when no valid span is current."""
    ids = trace.get_current_span().get_span_context()
    if not ids.is_valid:
        return None
    return format(ids.trace_id, "032x"), format(ids.span_id, "016x")


def carrier_text(ctx: Context) -> str | None:
    """``ctx`` as stored in a job record: the JSON text of the headers the
    global propagator writes for it (by default W3C ``traceparent``, and
    ``tracestate`` and ``baggage`` when there are any), or None when it
    writes none (no valid span context, no baggage)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=ctx)
    return orjson.dumps(carrier).decode() if carrier else None


_active: _Instrumentation | None = None


@dataclass
class _Attempt:
    """The process span of the attempt running in this task."""

    span: Span
    token: Any  # context.attach's token (typed object by older opentelemetry-api)
    ended: bool = False


_attempt: ContextVar[_Attempt | None] = ContextVar("zizq_otel_attempt", default=None)


class _Instrumentation:
    """The tracer, the instruments and the hooks of one :func:`instrument`."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
        propagation: Propagation,
    ) -> None:
        self.tracer = trace.get_tracer("zizq", __version__, tracer_provider)
        self.propagation = propagation
        meter = metrics.get_meter("zizq", __version__, meter_provider)
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Jobs enqueued (created or not)."
        )
        self.operation = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="Seconds one enqueue call took, all its jobs together.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages", unit="{message}", description="Jobs handed to their handler."
        )
        self.process = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Seconds one attempt's handler (and dequeue middleware) ran.",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )

    # Producer side: middleware.send_sync and send_async hand their work here.

    def send_sync(self, client: middleware.EnqueueClient, items: Sequence[Enqueue | JobKind]) -> list[Job]:
        send = _Send(self)
        with send.sending() as jobs:
            for call in client.core.enqueue_calls(items, send.start):
                jobs += client.run(call)
        return jobs

    async def send_async(self, client: middleware.AsyncEnqueueClient, items: Sequence[Enqueue | JobKind]) -> list[Job]:
        send = _Send(self)
        with send.sending() as jobs:
            for call in client.core.enqueue_calls(items, send.start):
                jobs += await client.run(call)
        return jobs

    # Worker side: event hooks, called in the task that runs the job.

    def job_start(self, event: events.JobEvent) -> None:
        job = event.job
        stored = job_context(job)
        ctx = stored if stored is not None else Context()
        links: list[Link] = []
        if stored is not None and self.propagation == "link":
            origin = trace.get_current_span(stored).get_span_context()
            links = [Link(origin)] if origin.is_valid else []
            ctx = trace.set_span_in_context(trace.INVALID_SPAN, stored)  # a new trace; the baggage stays
        attributes: dict[str, Any] = {
            **_job_attributes("process", job.queue, job),
            "messaging.message.id": job.id,
            "messaging.client.id": event.worker_id,
            "zizq.job.attempt": job.attempts,
        }
        if job.recoveries:
            attributes["zizq.job.recoveries"] = job.recoveries
        span = self.tracer.start_span(
            f"process {job.queue}", context=ctx, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )
        attempt = _Attempt(span, context.attach(trace.set_span_in_context(span, ctx)))
        _attempt.set(attempt)
        task = asyncio.current_task()
        if task is not None:  # a stop, or a failure that cannot be recorded, ends the task before its job_end
            task.add_done_callback(lambda done: _unfinished(attempt, done))

    def job_end(self, event: events.JobEvent) -> None:
        attempt = _attempt.get()
        if attempt is None or attempt.ended:
            return
        attempt.ended = True
        _attempt.set(None)
        span, error = attempt.span, event.error
        span.set_attribute("zizq.job.outcome", event.outcome or "completed")
        attributes = {"messaging.system": SYSTEM, "messaging.operation.name": "process"}
        attributes["messaging.destination.name"] = event.job.queue
        if error is not None:
            error_type = error_type_of(error)
            attributes["error.type"] = error_type
            span.set_attribute("error.type", error_type)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{error_type}: {error}"))
        context.detach(attempt.token)
        span.end()
        self.consumed.add(1, attributes)
        if event.duration is not None:
            self.process.record(event.duration, attributes)


def _unfinished(attempt: _Attempt, task: asyncio.Task[Any]) -> None:
    # The task of an attempt ended without its job_end: a stop cancelled it
    # (the job goes back to its queue), or its failure could not be recorded
    # (it runs again once the lease lapses).
    if attempt.ended:
        return
    attempt.ended = True
    span = attempt.span
    if task.cancelled():
        outcome, error_type = "interrupted", "cancelled"
        message = "the worker stopped while the handler ran; the job goes back to its queue"
    else:
        error = task.exception()
        if error is None:  # instrumentation was turned off meanwhile
            span.end()
            return
        outcome, error_type = "unrecorded", error_type_of(error)
        message = f"the attempt's outcome could not be recorded: {error}"
    span.set_attribute("zizq.job.outcome", outcome)
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, message))
    span.end()


def _job_attributes(operation: str, queue: str | None, job: Job | Template | None) -> dict[str, Any]:
    """The conventions' attributes of a span about ``job`` (or jobs of ``queue``)."""
    out: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.name": operation,
        "messaging.operation.type": operation,
    }
    if queue is not None:
        out["messaging.destination.name"] = queue
    if job is not None:
        out["zizq.job.type"] = job.type
        out["zizq.job.priority"] = job.priority
    return out


@dataclass
class _Send:
    """The spans of one enqueue call: ``send``, and in a batch one ``create``
    a job; the ``send`` span is current while the calls are sent."""

    otel: _Instrumentation
    span: Span | None = None
    token: Any = None  # as _Attempt's
    queues: collections.Counter[str] = field(default_factory=collections.Counter)
    queue: str | None = None  # the one queue of every job, else None
    started: float = 0.0

    def start(self, rows: list[EnqueueRow], templates: list[Template]) -> None:
        """Start the spans and append each job's creation context to its row
        (Core.enqueue_calls calls it once the jobs are checked)."""
        self.started = time.perf_counter()
        self.queues.update(t.queue for t in templates)
        self.queue = next(iter(self.queues)) if len(self.queues) == 1 else None
        tracer = self.otel.tracer
        attributes = _job_attributes("send", self.queue, templates[0] if len(rows) == 1 else None)
        name = "send" if self.queue is None else f"send {self.queue}"
        if len(rows) == 1:
            attributes["messaging.message.id"] = str(rows[0][0])
            self.span = tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=attributes)
            _store(rows[0], trace.set_span_in_context(self.span))
        else:
            links = []
            for row, template in zip(rows, templates, strict=True):
                create_attributes = _job_attributes("create", template.queue, template)
                create_attributes["messaging.message.id"] = str(row[0])
                create = tracer.start_span(
                    f"create {template.queue}", kind=SpanKind.PRODUCER, attributes=create_attributes
                )
                _store(row, trace.set_span_in_context(create))
                create.end()
                if create.get_span_context().is_valid:
                    links.append(Link(create.get_span_context()))
            attributes["messaging.batch.message_count"] = len(rows)
            self.span = tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=attributes, links=links)
        self.token = context.attach(trace.set_span_in_context(self.span))

    @contextlib.contextmanager
    def sending(self) -> Iterator[list[Job]]:
        """The list the sent jobs go into; on the way out, :meth:`end`."""
        jobs: list[Job] = []
        try:
            yield jobs
        except BaseException as exc:
            self.end(jobs, exc)
            raise
        self.end(jobs)

    def end(self, jobs: list[Job], error: BaseException | None = None) -> None:
        """End the ``send`` span and count the jobs; nothing when the jobs
        were refused before any span started (a ValidationError)."""
        span = self.span
        if span is None:
            return
        attributes = {"messaging.system": SYSTEM, "messaging.operation.name": "send"}
        if self.queue is not None:
            attributes["messaging.destination.name"] = self.queue
        if len(jobs) == 1 and jobs[0].duplicate:
            span.set_attribute("zizq.job.duplicate", True)
        if error is not None:
            attributes["error.type"] = error_type_of(error)
            span.set_attribute("error.type", attributes["error.type"])
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{attributes['error.type']}: {error}"))
        if self.token is not None:
            context.detach(self.token)
        span.end()
        self.otel.operation.record(time.perf_counter() - self.started, attributes)
        for queue, count in self.queues.items():
            self.otel.sent.add(count, {**attributes, "messaging.destination.name": queue})


_LANES_END = 17  # an enqueue row's width with its limit, limit_key and group (lua/enqueue.lua)


def _store(row: EnqueueRow, ctx: Context) -> None:
    # The job's creation context goes into its record: its 18th enqueue
    # value, after the limit's three ('' when the job has none).
    text = carrier_text(ctx)
    if text is not None:
        row += [""] * (_LANES_END - len(row)) + [text]


__all__ = ["PROPAGATIONS", "Propagation", "carrier_text", "instrument", "job_context", "span_ids", "uninstrument"]

"""The worker's log lines, the job each record is about, and the formats.

Loggers: ``zizq.worker`` (start-up, problems, and at DEBUG the takes, acks
and heartbeats) and ``zizq.worker.jobs`` (one line per job event: received
and done at INFO, failures at WARNING, a job that dies at ERROR with its
traceback, a retry its handler asked for at INFO).

While a job runs, :data:`current_job` says which job and worker: the worker
sets it in the task that runs the job (dequeue middleware and async handlers
run there) and copies it into the thread of a sync handler.
:class:`JobContextFilter`, added to a logging handler, puts the job's fields
on every record emitted meanwhile, a handler's own records too: ``job_id``,
``job_type``, ``queue``, ``attempt`` (1 on a job's first run), ``worker_id``
and ``namespace``; and while :mod:`zizq.otel` is instrumented and a span is
current, ``trace_id`` and ``span_id`` (hex). ``zizq worker --log-format
text|json`` sets up a handler
with the filter and :class:`TextFormatter` or :class:`JsonFormatter`
(:func:`configure`); an application that sets up logging itself adds the
filter to its own handlers.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from zizq.errors import JobTimeout, KillJob, RetryJob
from zizq.job import Job

jobs_log = logging.getLogger("zizq.worker.jobs")

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A record from outside zizq emitted while a job runs (a handler's own):
# which job it is about, as zizq's own job lines say it.
TEXT_FORMAT_IN_JOB = "%(asctime)s %(levelname)s %(name)s: %(job_type)s[%(job_id)s] %(message)s"
JOB_FIELDS = ("job_id", "job_type", "queue", "attempt", "worker_id", "namespace")
# Libraries whose DEBUG records say nothing about the jobs (redis-py's say it
# per connection): kept at INFO when the worker logs at DEBUG.
QUIET_AT_DEBUG = ("asyncio", "redis")


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job a worker runs, and the worker (its id when it took the job)."""

    job: Job
    worker_id: str
    namespace: str

    def fields(self) -> dict[str, Any]:
        """The fields :class:`JobContextFilter` puts on log records."""
        job = self.job
        return {
            "job_id": job.id,
            "job_type": job.type,
            "queue": job.queue,
            "attempt": job.attempts,  # the run in progress, as the handler sees it
            "worker_id": self.worker_id,
            "namespace": self.namespace,
        }


current_job: ContextVar[JobContext | None] = ContextVar("zizq_current_job", default=None)

# Set while zizq.otel is instrumented: the current span's (trace_id, span_id)
# in hex, or None when no span is current. None (tracing off) costs one check a record.
span_ids: Callable[[], tuple[str, str] | None] | None = None


class JobContextFilter(logging.Filter):
    """Adds the running job's fields (:data:`JOB_FIELDS`) to each record
    emitted while a job runs, and the current span's ``trace_id`` and
    ``span_id`` while zizq.otel is instrumented; a field given with
    ``extra=`` is kept. Add it to a handler (not a logger: a logger's
    filters miss records from its children)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = current_job.get()
        if context is not None:
            for name, value in context.fields().items():
                if not hasattr(record, name):
                    setattr(record, name, value)
        if span_ids is not None and not hasattr(record, "trace_id"):
            ids = span_ids()
            if ids is not None:
                record.trace_id, record.span_id = ids
        return True


def _is_zizq(name: str) -> bool:
    return name == "zizq" or name.startswith("zizq.")


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``; a record from outside zizq emitted
    while a job runs says which job: ``logger: type[id] message``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._in_job = logging.Formatter(TEXT_FORMAT_IN_JOB)

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "job_id", None) is not None and not _is_zizq(record.name):
            return self._in_job.format(record)
        return super().format(record)


# Attributes every LogRecord has; the rest were given with extra= (or by the filter).
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601, ms), ``level``,
    ``logger``, ``message``, then every field given with ``extra=`` or by
    :class:`JobContextFilter` (``job_id``, ``job_type``, ``queue``,
    ``attempt``, ``worker_id``, ``namespace``), and ``traceback`` when the
    record has one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                out[name] = value
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["traceback"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(out, default=str).decode()
        except orjson.JSONEncodeError:  # an int past 64 bits, a dict with odd keys: as text
            return orjson.dumps({k: v if isinstance(v, str) else repr(v) for k, v in out.items()}).decode()


def configure(level: str | int, log_format: str = "text") -> None:
    """Log to stderr at ``level`` in ``log_format`` (one of
    :data:`LOG_FORMATS`), with the running job's fields on each record. Like
    :func:`logging.basicConfig`, does nothing if the root logger has a
    handler already. At DEBUG the libraries of :data:`QUIET_AT_DEBUG` stay
    at INFO."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(JobContextFilter())
    logging.basicConfig(level=level, handlers=[handler])
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        for name in QUIET_AT_DEBUG:
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.INFO)


# -- start-up ------------------------------------------------------------

log = logging.getLogger("zizq.worker")


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a handler, as the start-up lines list it."""
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or repr(fn)
    return f"{module}.{name}" if module else name


def started(
    *,
    version: str,
    worker_id: str,
    url: str,
    namespace: str,
    queues: list[str],
    concurrency: int,
    prefetch: int,
    hot_path: str,
    metrics_url: str | None,
    handlers: dict[str, str],
) -> None:
    """INFO: the worker's start line (``url`` with its password masked
    already), and a line listing its handlers (job type -> function; ``*``
    for the fallback)."""
    queues_text = f"queues {', '.join(queues)}" if queues else "every queue"
    metrics = f", metrics at {metrics_url}" if metrics_url else ""
    log.info(
        "zizq %s worker %s started: %s, namespace %s, %s, concurrency %d, prefetch %d, hot path %s%s",
        version,
        worker_id,
        url,
        namespace,
        queues_text,
        concurrency,
        prefetch,
        hot_path,
        metrics,
        extra={
            "event": "started",
            "version": version,
            "worker_id": worker_id,
            "url": url,
            "namespace": namespace,
            "queues": queues,
            "concurrency": concurrency,
            "prefetch": prefetch,
            "hot_path": hot_path,
            "metrics_url": metrics_url,
        },
    )
    listed = ", ".join(f"{name} -> {fn}" for name, fn in handlers.items()) or "none"
    log.info(
        "worker %s handlers (%d): %s",
        worker_id,
        len(handlers),
        listed,
        extra={"event": "handlers", "worker_id": worker_id, "namespace": namespace, "handlers": handlers},
    )


# -- the per-job lines ----------------------------------------------------


def _name(job: Job) -> str:
    return f"{job.type}[{job.id}]"


def received(job: Job) -> None:
    """INFO: the job's handler is about to run."""
    if jobs_log.isEnabledFor(logging.INFO):
        _info_quietly(
            "%s received (queue %s, attempt %d)", _name(job), job.queue, job.attempts, extra={"event": "received"}
        )


def done(job: Job, seconds: float) -> None:
    """INFO: the handler returned after ``seconds`` (the ack follows in a batch)."""
    if jobs_log.isEnabledFor(logging.INFO):
        ms = seconds * 1000
        _info_quietly("%s done in %.1f ms", _name(job), ms, extra={"event": "done", "duration_ms": round(ms, 3)})


def _info_quietly(msg: str, *args: Any, extra: dict[str, Any]) -> None:
    """An INFO line on a job's path to its outcome. A log handler that
    raises (a user's: logging's own handlers report their errors) must not
    stop the outcome from being recorded: its error goes to stderr, as
    logging's own handlers send theirs (Handler.handleError)."""
    try:
        jobs_log.info(msg, *args, extra=extra)
    except Exception:
        if logging.raiseExceptions:
            traceback.print_exc(file=sys.stderr)


def _span(ms: int) -> str:
    """A delay for people: seconds, and past 100 s in minutes, hours or days."""
    seconds = ms / 1000
    text = f"{seconds:.1f} s"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 100 and seconds >= size:
            return f"{text} ({seconds / size:.1f} {unit})"
    return text


def failed(job: Job, result: Job, exc: BaseException, error: str, retry_limit: int | None, seconds: float) -> None:
    """The failure of ``job``'s run as Redis recorded it (``result``, the
    fail script's reply): retry in how long, or dead. ``error`` is
    ``type: message``; ``retry_limit`` the job's, None if unknown; ``seconds``
    the handler's run time.

    A job that dies logs at ERROR with its traceback, a retry its handler
    asked for (RetryJob) at INFO, any other failure at WARNING."""
    attempt = result.attempts
    if isinstance(exc, KillJob):
        what = f"killed by its handler ({error})"
    elif isinstance(exc, RetryJob):
        what = f"asked for a retry ({error})"
    elif isinstance(exc, JobTimeout):
        what = f"timed out ({error})"
    else:
        what = f"failed: {error}"
    # A requested retry ignores the limit: "attempt 30 of 26" would puzzle.
    of = "" if retry_limit is None or isinstance(exc, RetryJob) else f" of {retry_limit + 1}"
    extra: dict[str, Any] = {"duration_ms": round(seconds * 1000, 3), "error": error}
    if result.status == "dead":
        extra["event"] = "dead"
        if jobs_log.isEnabledFor(logging.ERROR):
            jobs_log.error(
                "%s %s; dead (attempt %d%s)", _name(job), what, attempt, of, exc_info=_exc_info(exc), extra=extra
            )
        return
    level = logging.INFO if isinstance(exc, RetryJob) else logging.WARNING
    if not jobs_log.isEnabledFor(level):
        return
    # Both times from Redis's clock; a RetryJob(at=...) in the past is due at once.
    retry_in = max(0, result.ready_at - (result.failed_at or result.ready_at))
    extra.update(event="retry", retry_in_ms=retry_in, ready_at=result.ready_at)
    jobs_log.log(
        level, "%s %s; retry in %s (attempt %d%s)", _name(job), what, _span(retry_in), attempt, of, extra=extra
    )


def not_recorded(job: Job, error: str, why: str) -> None:
    """WARNING: the run failed, and Redis did not record it (``why``)."""
    jobs_log.warning("%s failed: %s; failure not recorded: %s", _name(job), error, why, extra={"event": "unrecorded"})


def _exc_info(exc: BaseException) -> tuple[type[BaseException], BaseException, Any]:
    return type(exc), exc, exc.__traceback__

"""The job record codec: a stored record (msgpack) to a :class:`zizq.Job`,
the enqueue reply to Jobs, and the bounds and text rules of what is
written (error messages, backtraces)."""

from __future__ import annotations

from typing import Any

import msgpack

from zizq import _hotpath
from zizq._protocol.enqueue import Template
from zizq.errors import InvalidPayload, JobNotFound, ResultError
from zizq.job import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    STATUSES,
    Backoff,
    Job,
    JobStatus,
    Retention,
)


def redis_text(s: str) -> str:
    """Text Redis can take: lone surrogates (surrogateescape'd bytes in
    exception messages) written as backslash escapes."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


# The most bytes (UTF-8) of an error record's message and backtrace: error
# records are bounded in number (config error_history) and so in size.
ERROR_MESSAGE_BYTES = 4096


ERROR_BACKTRACE_BYTES = 16384

# The most bytes of a handler's result as JSON: it is kept in the job's
# record, so it counts toward the record's size.
RESULT_BYTES = 1 << 20
# The most bytes (UTF-8) of a progress message; a longer one is cut.
PROGRESS_MESSAGE_BYTES = 1024


def encode_result(value: Any) -> bytes:
    """A handler's return value as the JSON text ack stores (b'' for None,
    which stores nothing). Raises ResultError when JSON cannot hold it or it
    is longer than RESULT_BYTES."""
    if value is None:
        return b""
    try:
        data = _hotpath.encode_payload(value)
    except InvalidPayload as exc:
        raise ResultError(f"the handler's result cannot be kept: {str(exc).replace('payload', 'result')}") from None
    if len(data) > RESULT_BYTES:
        raise ResultError(f"the handler's result is {len(data)} bytes of JSON, more than the {RESULT_BYTES} kept")
    return data


def bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, never inside a
    character, with a marker where it was cut: the head is kept, or with
    ``keep_end`` the tail (a traceback's last lines name the error)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    marker = f"[... truncated from {len(data)} bytes ...]"
    keep = limit - len(marker)
    if keep_end:
        return marker + "\n" + data[len(data) - keep + 1 :].decode("utf-8", "ignore")
    return data[:keep].decode("utf-8", "ignore") + marker


def as_str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


STATUS_NAMES: dict[int, JobStatus] = dict(enumerate(STATUSES, start=1))  # the stored numbers (see JobStatus)


def job_from_record(job_id: Any, record: bytes, *, duplicate: bool = False) -> Job:
    """A Job from its stored record: a MessagePack map with short keys, the
    status as a number, and queue "default", priority 32768 and 0 attempts
    left out (see docs/protocol/keys.md §2.1). Raises KeyError, ValueError,
    TypeError or AttributeError for a record that does not fit."""
    f = _unpack(record)
    get = f.get
    rc, rd = get("rc"), get("rd")
    bo, d, rs, pg = get("bo"), get("d"), get("rs"), get("pg")
    dl = get("dl")
    # Positional, in Job's field order: a take makes one Job a job, and
    # keywords cost about twice as much to match.
    return Job(
        as_str(job_id),  # id
        f["t"],  # type
        get("q", DEFAULT_QUEUE),  # queue
        get("p", DEFAULT_PRIORITY),  # priority
        STATUS_NAMES[f["s"]],  # status
        f["r"],  # ready_at
        get("a", 0),  # attempts
        get("rl"),  # retry_limit
        None if bo is None else Backoff.decode(bo),  # backoff
        None if rc is None and rd is None else Retention(completed_ms=rc, dead_ms=rd),  # retention
        get("uk"),  # unique_key
        get("uw"),  # unique_while
        get("da"),  # dequeued_at
        get("fa"),  # failed_at
        get("ca"),  # completed_at
        get("pa"),  # purge_at
        get("to"),  # timeout_ms
        get("rv", 0),  # recoveries
        duplicate,  # duplicate
        None if d is None else d.encode(),  # payload_json
        get("tc"),  # trace_context
        None if rs is None else rs.encode(),  # result_json
        None if pg is None else float(pg),  # progress
        get("pm"),  # progress_message
        get("cx"),  # cancelled_at
        None,  # last_error
        () if dl is None else tuple(dl.split()),  # depends_on
        get("bt"),  # batch_id
    )


def _unpack(record: bytes) -> dict[str, Any]:
    f = msgpack.unpackb(record)
    if not isinstance(f, dict):
        raise ValueError(f"a job record is a MessagePack map, not {type(f).__name__}")
    return f


def decode_enqueued(templates: list[Template], reply: list[Any]) -> list[Job]:
    """The jobs of an enqueue reply (see lua/enqueue.lua): made from their
    templates when created, read from their records when they existed."""
    now = reply[0]
    jobs = []
    for t, flag, job_id, x in zip(templates, reply[1::3], reply[2::3], reply[3::3], strict=True):
        if flag == 0 or flag == 3:  # created now, or created and done before a retry
            status = "completed" if flag == 3 else "scheduled" if x > now else "ready"
            # Positional (faster, for 1,000 jobs a call), in Job's field order
            # from id to unique_while (tests/test_client.py pins that order).
            job = Job(
                job_id.decode() if type(job_id) is bytes else as_str(job_id),
                t.type,
                t.queue,
                t.priority,
                status,  # type: ignore[arg-type]
                x,
                0,
                t.retry_limit,
                t.backoff,
                t.retention,
                t.unique_key,
                t.unique_while,
                timeout_ms=t.timeout_ms,
            )
        else:
            job = job_from_record(job_id, x, duplicate=flag == 1)
            job.payload_json = None  # enqueue results carry metadata only
        jobs.append(job)
    return jobs


def job_not_found(job_id: str, done: bool) -> JobNotFound:
    """The error for an id a read found nothing for; ``done`` when the id is
    of a job deleted as it finished (Core.done), which has not vanished."""
    if done:
        return JobNotFound(
            f"job {job_id!r} finished (completed, or dead) within the last minute and was deleted at once: "
            "its retention is 0; give it a Retention to keep finished jobs readable"
        )
    return JobNotFound(f"no job with id {job_id!r}")

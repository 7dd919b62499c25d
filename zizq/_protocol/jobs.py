"""The job calls: Core, the I/O-free core shared by Client, AsyncClient and
Worker, for one namespace.

It validates input, builds each script call's keys and arguments, and turns
replies into :class:`zizq.Job` objects. The front doors only send the calls.
What one job's enqueue sends is planned in :mod:`zizq._protocol.enqueue`; here its
rows are packed into the script call, and the reply made into jobs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import msgpack

from zizq import _hotpath
from zizq._protocol.call import Call, Value, prefix
from zizq._protocol.enqueue import EnqueueRow, Template, plan_enqueue, text_or_empty
from zizq._protocol.flows import FlowCore, flow_rows
from zizq._protocol.lease import Heartbeat, TakeResult
from zizq._protocol.records import (
    ERROR_BACKTRACE_BYTES,
    ERROR_MESSAGE_BYTES,
    PROGRESS_MESSAGE_BYTES,
    as_str,
    bounded,
    decode_enqueued,
    job_from_record,
    redis_text,
)
from zizq._protocol.scripts import script
from zizq.errors import JobNotFound, ValidationError
from zizq.job import (
    Backoff,
    ErrorRecord,
    Job,
    JobKind,
    Retention,
    non_negative,
    validate_name,
    validate_priority,
)
from zizq.options import DEFAULTS_OPTIONS, PATCH_OPTIONS, DefaultsOptions, Enqueue, PatchOptions, check_names, epoch_ms

ENQUEUE_BATCH = 1000  # the most jobs one enqueue call carries (lua/enqueue.lua refuses more)
ENQUEUE_BATCH_BYTES = 1 << 20  # ... and payload bytes, past which a call ends early


def batches(rows: Sequence[EnqueueRow]) -> list[tuple[int, int]]:
    """Where to cut ``rows`` into enqueue calls, as (start, end) slices: at
    most ENQUEUE_BATCH jobs a call, and a call ends early once its payloads
    reach ENQUEUE_BATCH_BYTES, so one call holds Redis for a few ms."""
    cuts, start, size = [], 0, 0
    for i, row in enumerate(rows):
        if i > start and (i - start == ENQUEUE_BATCH or size >= ENQUEUE_BATCH_BYTES):
            cuts.append((start, i))
            start, size = i, 0
        size += len(row[4])
    cuts.append((start, len(rows)))
    return cuts


PURGE_BATCH = 1000  # the most jobs one purge call deletes (lua/purge.lua refuses more)


def purge_batches(limit: int) -> list[int]:
    """The sizes of the purge calls that delete up to ``limit`` jobs, each at
    most PURGE_BATCH (none for 0); raises ValidationError for a limit that
    is not a non-negative integer."""
    limit = non_negative("limit", limit)
    return [min(PURGE_BATCH, limit - start) for start in range(0, limit, PURGE_BATCH)]


def enqueue_call_args(rows: Sequence[EnqueueRow], *, short: bool = True) -> list[Value]:
    """The enqueue script's arguments for these jobs: their count, and the
    jobs as one MessagePack array (bytes as MessagePack raw strings: Redis's
    cmsgpack cannot read bin). With ``short`` (lua/enqueue.lua reads them;
    flow_enqueue.lua does not), a row with the values of the row before it
    but its id and payload goes as those two (see short_rows)."""
    return [len(rows), msgpack.packb(short_rows(rows) if short else rows, use_bin_type=False)]


def short_rows(rows: Sequence[EnqueueRow]) -> list[EnqueueRow]:
    """``rows`` with each row whose values other than the id and the payload
    are those of the nearest full row before it cut to ``[id, payload]``
    (lua/enqueue.lua's short row): a batch of one kind of job is checked
    once in Redis, and sent and unpacked with 2 values a job instead of 14."""
    out: list[EnqueueRow] = []
    full: EnqueueRow = []
    for row in rows:
        if len(row) == len(full) and row[1:4] == full[1:4] and row[5:] == full[5:]:
            out.append([row[0], row[4]])
        else:
            full = row
            out.append(row)
    return out


def _retention_args(retention: Any) -> list[Value]:
    # None clears both sub-fields; a Retention sets the sub-fields it has.
    if retention is None:
        return ["completed_ms", "", "dead_ms", ""]
    if not isinstance(retention, Retention):
        raise ValidationError(f"retention {retention!r} is not a zizq.Retention or None")
    args: list[Value] = []
    if retention.completed_ms is not None:
        args += ["completed_ms", retention.completed_ms]
    if retention.dead_ms is not None:
        args += ["dead_ms", retention.dead_ms]
    return args


def patch_args(options: PatchOptions) -> list[Value]:
    """The (field, value) pairs of lua/patch.lua for the options given;
    raises ValidationError naming a bad value."""
    check_names(options, PATCH_OPTIONS)
    args: list[Value] = []
    if "queue" in options:
        args += ["queue", validate_name("queue", options["queue"])]
    if "priority" in options:
        args += ["priority", validate_priority(options["priority"])]
    if "ready_at" in options:
        ready_at = options["ready_at"]
        args += ["ready_at", "" if ready_at is None else epoch_ms(ready_at)]
    if "retry_limit" in options:
        args += _nullable_count("retry_limit", options["retry_limit"])
    if "backoff" in options:
        backoff = _backoff(options["backoff"])
        args += ["backoff", "" if backoff is None else backoff.encode()]
    if "retention" in options:
        args += _retention_args(options["retention"])
    return args


def defaults_args(options: DefaultsOptions) -> list[Value]:
    """The (name, value) pairs of lua/config.lua; None restores a built-in default."""
    check_names(options, DEFAULTS_OPTIONS)
    args: list[Value] = []
    if "retry_limit" in options:
        args += _nullable_count("retry_limit", options["retry_limit"])
    if "backoff" in options:
        backoff = _backoff(options["backoff"])
        if backoff is None:
            args += ["backoff_base_ms", "", "backoff_exponent", "", "backoff_jitter_ms", ""]
        else:
            args += [
                "backoff_base_ms",
                backoff.base_ms,
                "backoff_exponent",
                repr(float(backoff.exponent)),
                "backoff_jitter_ms",
                backoff.jitter_ms,
            ]
    if "retention" in options:
        args += _retention_args(options["retention"])
    if "error_history" in options:
        args += _nullable_count("error_history", options["error_history"])
    if "max_recoveries" in options:
        args += _nullable_count("max_recoveries", options["max_recoveries"])
    return args


def _nullable_count(name: str, value: int | None) -> list[Value]:
    # None: back to the default, which the scripts read as an empty value.
    return [name, "" if value is None else non_negative(name, value)]


def _backoff(backoff: Any) -> Backoff | None:
    if backoff is not None and not isinstance(backoff, Backoff):
        raise ValidationError(f"backoff {backoff!r} is not a zizq.Backoff or None")
    return backoff


def _attempts(ids: Sequence[str], dequeued_at: Sequence[int | None] | None) -> list[Value]:
    # The (id, dequeued_at) pairs of ack and release; '' means any attempt.
    if dequeued_at is None:
        return [v for i in ids for v in (i, "")]
    if len(dequeued_at) != len(ids):
        raise ValidationError(f"{len(ids)} job ids but {len(dequeued_at)} dequeued_at values")
    return [v for i, da in zip(ids, dequeued_at, strict=True) for v in (i, text_or_empty(da))]


def _ack_args(
    ids: Sequence[str], dequeued_at: Sequence[int | None] | None, results: Sequence[bytes] | None
) -> list[Value]:
    # The (id, dequeued_at, result) triples of ack; b'' is no result.
    pairs = _attempts(ids, dequeued_at)
    if results is None:
        results = [b""] * len(ids)
    elif len(results) != len(ids):
        raise ValidationError(f"{len(ids)} job ids but {len(results)} results")
    return [v for k, result in enumerate(results) for v in (pairs[2 * k], pairs[2 * k + 1], result)]


class Core:
    """Builds the calls of one namespace. Holds no connection."""

    def __init__(self, namespace: str = "zizq") -> None:
        self.namespace = namespace
        self.prefix = prefix(namespace)
        self.keys = (self.prefix,)
        self.ids = _hotpath.IdGenerator()
        self.flows = FlowCore(self.keys, self.ids)

    def key(self, *parts: str) -> str:
        """A key of this namespace, e.g. ``key("ready", "emails")``."""
        return self.prefix + ":".join(parts)

    def enqueue(self, items: Sequence[Enqueue | JobKind]) -> Call[list[Job]]:
        return self._enqueue_call(*self._plan(items))

    def _plan(self, items: Sequence[Enqueue | JobKind]) -> tuple[list[EnqueueRow], list[Template]]:
        """Every job's enqueue values and result template, all checked
        before anything is sent."""
        if not items:
            raise ValidationError("enqueue_many needs at least one job")
        rows, templates = [], []
        for item in items:
            row, template = plan_enqueue(item, self.ids)
            rows.append(row)
            templates.append(template)
        return rows, templates

    def enqueue_calls(
        self,
        items: Sequence[Enqueue | JobKind],
        trace: Callable[[list[EnqueueRow], list[Template]], None] | None = None,
    ) -> list[Call[list[Job]]]:
        """The enqueue calls for ``items``, in order: every job is checked
        (a ValidationError is raised) before any call is built, and the jobs
        are split into calls of at most ENQUEUE_BATCH jobs (see batches);
        each call is atomic, the whole list is not. ``trace`` (zizq.otel's)
        sees the checked jobs first and may append a trace context to rows."""
        rows, templates = self._plan(items)
        if trace is not None:
            trace(rows, templates)
        wide = flow_rows(items, rows)  # workflows: dependencies or a batch
        if wide is not None:
            return [self._enqueue_call(wide[a:b], templates[a:b], "flow_enqueue") for a, b in batches(rows)]
        return [self._enqueue_call(rows[a:b], templates[a:b]) for a, b in batches(rows)]

    def _enqueue_call(
        self, rows: list[EnqueueRow], templates: list[Template], name: str = "enqueue"
    ) -> Call[list[Job]]:
        args = enqueue_call_args(rows, short=name == "enqueue")
        return Call(script(name), self.keys, args, lambda reply: decode_enqueued(templates, reply), [*args, 1])

    def get(self, ids: Sequence[str]) -> Call[list[Job | None]]:
        def decode(reply: list[Any]) -> list[Job | None]:
            return [job_from_record(i, record) if record else None for i, record in zip(ids, reply, strict=True)]

        return Call(script("get"), self.keys, list(ids), decode)

    def done(self, ids: Sequence[str]) -> Call[list[bool]]:
        """Whether each id is of a job deleted as it finished, within the
        last minute (see lua/done.lua)."""
        return Call(script("done"), self.keys, list(ids), lambda reply: [bool(x) for x in reply])

    def patch(self, job_id: str, changes: list[Value]) -> Call[Job]:
        return Call(
            script("patch"),
            self.keys,
            [job_id, *changes],
            lambda reply: job_from_record(job_id, reply),
        )

    def delete(self, ids: Sequence[str]) -> Call[int]:
        """Delete up to 1000 jobs; sent again after a lost reply, the call is
        marked (a leading '') so that jobs it deleted still count."""
        return Call(script("delete"), self.keys, list(ids), int, ["", *ids])

    def retry(self, job_id: str) -> Call[Job]:
        args: list[Value] = [job_id, self.ids.generate()]  # with a call id, as pause
        return Call(script("retry"), self.keys, args, lambda reply: job_from_record(job_id, reply))

    def errors(self, job_id: str) -> Call[list[ErrorRecord]]:
        return Call(script("errors"), self.keys, [job_id], lambda reply: [ErrorRecord.from_json(e) for e in reply])

    def purge(self, limit: int) -> Call[int]:
        """One purge call of ``limit`` jobs, 1..PURGE_BATCH (lua/purge.lua)."""
        return Call(script("purge"), self.keys, [limit], int)

    def pause(self, queue: str, paused: bool) -> Call[bool]:
        # A call id last (lua/includes/memo.lua): a repeat after a lost reply
        # answers as the first send did.
        op = "pause" if paused else "resume"
        return Call(script("pause"), self.keys, [op, validate_name("queue", queue), self.ids.generate()], bool)

    def defaults(self, changes: list[Value]) -> Call[dict[str, float]]:
        def decode(reply: list[Any]) -> dict[str, float]:
            return {as_str(k): float(v) for k, v in zip(reply[0::2], reply[1::2], strict=True)}

        return Call(script("config"), self.keys, changes, decode)

    def take(self, worker_id: str, count: int, queues: Sequence[str], start: int | None = None) -> Call[TakeResult]:
        """Take up to ``count`` jobs; the first ``start`` of them (default:
        all) start their handler at once, the others are prefetched."""
        start = count if start is None else start
        return Call(script("take"), self.keys, [worker_id, count, start, *queues], TakeResult.decode)

    def ack(
        self,
        worker_id: str,
        ids: Sequence[str],
        dequeued_at: Sequence[int | None] | None = None,
        results: Sequence[bytes] | None = None,
    ) -> Call[list[str]]:
        """Acknowledge jobs; with ``dequeued_at`` (ms, one per id, as the
        take returned them) only those attempts; with ``results`` (one per
        id: JSON from records.encode_result, b'' for none) their results."""
        args = [worker_id, *_ack_args(ids, dequeued_at, results)]
        return Call(script("ack"), self.keys, args, lambda r: [as_str(i) for i in r])

    def progress(
        self, worker_id: str, job_id: str, fraction: float, message: str | None, dequeued_at: int | None = None
    ) -> Call[bool]:
        """Record a running job's progress (lua/progress.lua); ``fraction``
        checked by zizq.current.check_progress, ``message`` cut to
        PROGRESS_MESSAGE_BYTES. True when recorded."""
        text = bounded(redis_text(message or ""), PROGRESS_MESSAGE_BYTES)
        args: list[Value] = [worker_id, job_id, text_or_empty(dequeued_at), repr(float(fraction)), text]
        return Call(script("progress"), self.keys, args, bool)

    def cancel(self, ids: Sequence[str]) -> Call[list[int]]:
        """Cancel up to 1000 jobs (lua/cancel.lua): per id 1 cancelled, 0
        already finished, -1 no such job. With a call id, so a repeat after
        a lost reply answers as the first send."""
        return Call(script("cancel"), self.keys, [self.ids.generate(), *ids], lambda r: [int(x) for x in r])

    def cancel_one(self, job_id: str) -> Call[bool]:
        """Cancel one job: True when cancelled now, False when it had
        already finished; JobNotFound when there is no such job."""

        def decode(reply: list[Any]) -> bool:
            if int(reply[0]) < 0:
                raise JobNotFound(f"no job with id {job_id!r} (or it was purged)")
            return int(reply[0]) == 1

        call = self.cancel([job_id])
        return Call(call.script, call.keys, call.args, decode)

    def fail(
        self,
        worker_id: str,
        job_id: str,
        *,
        message: str,
        error_type: str = "",
        backtrace: str = "",
        retry_at_ms: int | None = None,
        retry_in_ms: int | None = None,
        kill: bool = False,
        jitter: float = 0.0,
        dequeued_at: int | None = None,
    ) -> Call[Job | None]:
        args: list[Value] = [
            worker_id,
            job_id,
            bounded(redis_text(message), ERROR_MESSAGE_BYTES),
            redis_text(error_type),
            bounded(redis_text(backtrace), ERROR_BACKTRACE_BYTES, keep_end=True),
            text_or_empty(retry_at_ms),
            text_or_empty(retry_in_ms),
            "1" if kill else "0",
            repr(jitter),
            text_or_empty(dequeued_at),
        ]

        def decode(reply: Any) -> Job | None:
            return None if reply is None else job_from_record(job_id, reply)

        return Call(script("fail"), self.keys, args, decode)

    def release(self, worker_id: str, ids: Sequence[str], dequeued_at: Sequence[int | None] | None = None) -> Call[int]:
        """Hand jobs back untouched; with ``dequeued_at`` (as for
        :meth:`ack`) only those attempts."""
        return Call(script("release"), self.keys, [worker_id, *_attempts(ids, dequeued_at)], int)

    def heartbeat(self, worker_id: str, mode: str, lease_ms: int, recover: int = 10) -> Call[Heartbeat]:
        return Call(
            script("heartbeat"),
            self.keys,
            [worker_id, mode, lease_ms, recover, repr(random.random())],
            Heartbeat.decode,
        )

    def wake_keys(self, queues: Sequence[str], every_queue: bool) -> list[str]:
        """The lists an idle worker blocks on: one per queue, plus the
        namespace's "new queue" list when it serves every queue."""
        keys = [self.key("wake", q) for q in queues]
        if every_queue:
            keys.append(self.key("wake"))
        return keys

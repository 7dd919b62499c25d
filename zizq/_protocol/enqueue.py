"""Enqueue planning: what one job's enqueue sends, worked out before any I/O.

An enqueue request is a JobKind instance, or a :class:`zizq.Enqueue` (a job
and its per-call options). Planning validates it, fills in the defaults of
its JobKind class, and turns it into the 14 values of lua/enqueue.lua (an
``EnqueueRow``) and the :class:`Template` of the Job the enqueue returns.
:class:`zizq._protocol.jobs.Core` packs the rows into one script call and
builds the resulting jobs from the templates.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zizq import _hotpath
from zizq.errors import ValidationError
from zizq.job import (
    DEFAULT_PRIORITY,
    Backoff,
    JobKind,
    Retention,
    UniqueKey,
    UniqueWhile,
    non_negative,
    timeout_ms,
    validate_name,
    validate_priority,
)
from zizq.options import Enqueue, EnqueueOptions, delay_ms, epoch_ms


class Template(NamedTuple):
    """What an enqueued job will be, apart from its id, status and ready_at:
    the Job fields an enqueue result takes from the request."""

    type: str
    queue: str
    priority: int
    retry_limit: int | None
    backoff: Backoff | None
    retention: Retention | None
    unique_key: str | None
    unique_while: UniqueWhile | None
    timeout_ms: int | None


def enqueue_item(job: JobKind, options: EnqueueOptions) -> Enqueue | JobKind:
    """What ``enqueue`` sends: the job itself when no option is given (the
    fast path of plan_enqueue), else an Enqueue with the options."""
    return Enqueue(job, **options) if options else job


# One job's 14 enqueue values (17 with a limit or group, 18 with a trace context), all strings.
EnqueueRow = list[str | bytes]


def enqueue_args(item: Enqueue | JobKind, ids: Any) -> EnqueueRow:
    """The 14 enqueue values of one job (see lua/enqueue.lua); raises a
    ValidationError naming the bad value before anything is sent."""
    return plan_enqueue(item, ids)[0]


def plan_enqueue(item: Enqueue | JobKind, ids: Any) -> tuple[EnqueueRow, Template]:
    """The 14 enqueue values of one job, and the template of its result.

    A bare JobKind instance (no per-call options) takes a fast path: its
    class's defaults were checked when the class was made, and are turned
    into arguments once per class; only the id, the payload and the unique
    key are made per job.
    """
    if isinstance(item, JobKind):
        unique = item.unique_key()
        if unique is None or isinstance(unique, UniqueKey):
            kind = type(item)
            known = _KINDS.get(kind)
            if known is None:
                known = _KINDS[kind] = _kind_args(kind)
            head, tail, template = known
            args = [ids.generate(), *head, _hotpath.encode_payload(item.to_payload()), *tail]
            if unique is not None:
                scope = unique.unique_while or kind.UNIQUE_WHILE
                args[11], args[12] = unique.key, scope or ""
                template = Template(*template[:6], unique.key, scope, template.timeout_ms)
            laned = _LANED.get(kind)
            if laned is None:
                laned = _LANED[kind] = _has_lanes(kind)
            if laned:
                args += lane_args(kind.LIMIT, item.limit_key(), item.group_key())
            return args, template
        item = Enqueue(item, unique_key=unique)
    elif not isinstance(item, Enqueue):
        item = Enqueue(item)  # refused below, naming the value
    return _plan_item(item, ids)


def _args(job_id: str, t: Template, payload: bytes, ready_at: int | None, delay: int | None) -> list[str | bytes]:
    # The order of lua/enqueue.lua's header: every value a string.
    return [
        job_id,
        t.type,
        t.queue,
        str(t.priority),
        payload,
        text_or_empty(ready_at),
        text_or_empty(delay),
        text_or_empty(t.retry_limit),
        "" if t.backoff is None else t.backoff.encode(),
        "" if t.retention is None else text_or_empty(t.retention.completed_ms),
        "" if t.retention is None else text_or_empty(t.retention.dead_ms),
        text_or_empty(t.unique_key),
        text_or_empty(t.unique_while),
        text_or_empty(t.timeout_ms),
    ]


MAX_TEXT = 1000  # bytes of a limit key or a group (lua/includes/limits.lua refuses more)


def lane_args(limit: object, limit_key: object, group: object) -> list[str]:
    """Enqueue values 15..17 (limit, limit_key, group), or none when the job
    has none of them; raises ValidationError naming a bad value."""
    if limit is None and limit_key is None and group is None:
        return []
    if limit is not None:
        validate_name("limit", limit)
    for what, value in (("limit_key", limit_key), ("group", group)):
        if value is not None and (not isinstance(value, str) or not value or len(value.encode()) > MAX_TEXT):
            raise ValidationError(f"{what} {value!r} is not a non-empty string of at most {MAX_TEXT} bytes")
    if limit_key is not None and limit is None:
        raise ValidationError(f"limit_key {limit_key!r} given without a limit")
    return ["" if v is None else str(v) for v in (limit, limit_key, group)]


def text_or_empty(value: int | str | None) -> str:
    return "" if value is None else str(value)


# Per JobKind class: the arguments before and after the payload, and the
# result template, of a job with no per-call options and no unique key.
_KINDS: dict[type[JobKind], tuple[tuple[str | bytes, ...], tuple[str | bytes, ...], Template]] = {}


# Per JobKind class: whether its jobs may have a limit or a group.
_LANED: dict[type[JobKind], bool] = {}


def _has_lanes(kind: type[JobKind]) -> bool:
    return kind.LIMIT is not None or kind.limit_key is not JobKind.limit_key or kind.group_key is not JobKind.group_key


def _kind_args(kind: type[JobKind]) -> tuple[tuple[str | bytes, ...], tuple[str | bytes, ...], Template]:
    _concrete(kind)
    template = Template(
        type=kind.NAME,
        queue=kind.QUEUE,
        priority=DEFAULT_PRIORITY if kind.PRIORITY is None else int(kind.PRIORITY),
        retry_limit=None if kind.RETRY_LIMIT is None else int(kind.RETRY_LIMIT),
        backoff=kind.BACKOFF,
        retention=None if kind.RETENTION == Retention() else kind.RETENTION,
        unique_key=None,
        unique_while=None,
        timeout_ms=None if kind.TIMEOUT is None else timeout_ms(kind.TIMEOUT),
    )
    args = _args("", template, b"", None, None)
    return tuple(args[1:4]), tuple(args[5:]), template


def _concrete(kind: type[JobKind]) -> None:
    if "NAME" not in vars(kind):
        raise ValidationError(f"{kind.__qualname__} is an abstract JobKind (no NAME); enqueue a concrete subclass")


def _plan_item(item: Enqueue, ids: Any) -> tuple[EnqueueRow, Template]:
    job = item.job
    if job is not None:
        if not isinstance(job, JobKind):
            raise ValidationError(f"{job!r} is not a zizq.JobKind instance; use enqueue_raw for plain payloads")
        kind = type(job)
        _concrete(kind)
        type_name = kind.NAME
        payload = _hotpath.encode_payload(job.to_payload())
        queue: str | None = item.queue if item.queue is not None else kind.QUEUE
        priority = item.priority if item.priority is not None else kind.PRIORITY
        retry_limit = item.retry_limit if item.retry_limit is not None else kind.RETRY_LIMIT
        backoff = item.backoff if item.backoff is not None else kind.BACKOFF
        retention = _merge_retention(item.retention, kind.RETENTION)
        unique = item.unique_key if item.unique_key is not None else job.unique_key()
        unique_while = kind.UNIQUE_WHILE
        timeout = item.timeout if item.timeout is not None else kind.TIMEOUT
        limit = item.limit if item.limit is not None else kind.LIMIT
        limit_key = item.limit_key if item.limit_key is not None else job.limit_key()
        group = item.group if item.group is not None else job.group_key()
    else:
        type_name = validate_name("job type", item.type)
        queue = item.queue
        payload = _hotpath.encode_payload(item.payload)
        priority = item.priority
        retry_limit = item.retry_limit
        backoff = item.backoff
        retention = item.retention
        unique = item.unique_key
        unique_while = None
        timeout = item.timeout
        limit, limit_key, group = item.limit, item.limit_key, item.group
    queue = validate_name("queue", queue)
    priority = DEFAULT_PRIORITY if priority is None else validate_priority(priority)
    if retry_limit is not None:
        retry_limit = non_negative("retry_limit", retry_limit)
    if backoff is not None and not isinstance(backoff, Backoff):
        raise ValidationError(f"backoff {backoff!r} is not a zizq.Backoff")
    if retention is not None and not isinstance(retention, Retention):
        raise ValidationError(f"retention {retention!r} is not a zizq.Retention")
    if retention == Retention():  # nothing set: nothing stored
        retention = None
    if isinstance(unique, str):
        unique = UniqueKey.raw(unique)
    elif unique is not None and not isinstance(unique, UniqueKey):
        raise ValidationError(f"unique_key {unique!r} is not a zizq.UniqueKey or a string")
    if unique is not None and unique.unique_while is not None:
        unique_while = unique.unique_while
    ready_at = delay = None
    if item.ready_at is not None and item.delay is not None:
        raise ValidationError("give delay or ready_at, not both")
    if item.ready_at is not None:
        ready_at = epoch_ms(item.ready_at)
    elif item.delay is not None:
        delay = delay_ms(item.delay)
    template = Template(
        type=type_name,
        queue=queue,
        priority=priority,
        retry_limit=retry_limit,
        backoff=backoff,
        retention=retention,
        unique_key=None if unique is None else unique.key,
        unique_while=unique_while if unique is not None else None,
        timeout_ms=None if timeout is None else timeout_ms(timeout),
    )
    lanes = lane_args(limit, limit_key, group)
    return _args(ids.generate(), template, payload, ready_at, delay) + lanes, template


def _merge_retention(call: Retention | None, kind: Retention | None) -> Retention | None:
    if call is not None and not isinstance(call, Retention):
        raise ValidationError(f"retention {call!r} is not a zizq.Retention")
    if call is None or kind is None:
        return call if call is not None else kind
    return Retention(
        completed_ms=call.completed_ms if call.completed_ms is not None else kind.completed_ms,
        dead_ms=call.dead_ms if call.dead_ms is not None else kind.dead_ms,
    )

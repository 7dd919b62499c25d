"""The I/O-free core shared by Client, AsyncClient and Worker.

It validates input, builds each script call's keys and arguments, and turns
replies into :class:`zizq.Job` objects. The front doors only send the calls.
What one job's enqueue sends is planned in :mod:`zizq._enqueue`; here its
rows are packed into the script call, and the reply made into jobs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgpack
import redis.exceptions

from . import _hotpath
from ._enqueue import Enqueue, Row, Template, _non_negative, _text_opt, epoch_ms, plan_enqueue
from ._scripts import Script, script
from .errors import JobNotFound, ValidationError
from .job import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    Backoff,
    ErrorRecord,
    Job,
    JobKind,
    JobStatus,
    Retention,
    validate_name,
    validate_priority,
)

T = TypeVar("T")


class RetryLater(redis.exceptions.ResponseError):
    """A reply that means "not now", which redis-py raises as a plain
    ResponseError (its code is one of ``LATER_CODES``)."""


# Error codes of such replies: a blocked command cut short when a master is
# demoted (UNBLOCKED), fewer good replicas than min-replicas-to-write
# (NOREPLICAS), a script or module running past its time limit (BUSY).
LATER_CODES = frozenset({"UNBLOCKED", "NOREPLICAS", "BUSY"})

# Errors after which a call is tried again: Redis unreachable, loading its
# data after a restart (LOADING), read-only during a failover (READONLY),
# a replica cut off from its master (MASTERDOWN), a cluster failing over
# (CLUSTERDOWN, a slot with no master yet, redirections redis-py gave up
# following), and the replies of LATER_CODES.
TRANSIENT: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # BusyLoadingError (LOADING) is one
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError, "TTL exhausted"
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.AskError,  # MovedError is one
    RetryLater,
    OSError,  # TimeoutError is one; so is zizq.RedisUnavailable
)


# Errors of a plain Redis command: TRANSIENT ones, and a refusal.
REDIS_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT, redis.exceptions.ResponseError)


def retry_later(exc: redis.exceptions.ResponseError) -> RetryLater | None:
    """``exc`` as a RetryLater when its reply means "not now", else None."""
    if type(exc) is redis.exceptions.ResponseError and str(exc).partition(" ")[0] in LATER_CODES:
        return RetryLater(*exc.args)
    return None


def retry_delays() -> Iterator[float]:
    """Seconds to wait before each retry: 0.5, 1, 2, ... up to 30."""
    pause = 0.5
    while True:
        yield pause
        pause = min(pause * 2, 30.0)


Value = str | bytes | int | float


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Marks an option that was not given (where None has a meaning of its own)."""


def prefix(namespace: str) -> str:
    """The key prefix of a namespace: ``{<namespace>}:``, one hash slot."""
    return "{" + validate_name("namespace", namespace) + "}:"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script call: what to send, and how to read the reply.

    ``repeat_args``, when given, are sent instead of ``args`` when the call is
    sent again after an error that may have hidden its success (enqueue then
    asks the script to look for jobs that have already run).
    """

    script: Script
    keys: tuple[str, ...]
    args: list[Value]
    decode: Callable[[Any], T]
    repeat_args: list[Value] | None = None

    def repeated(self) -> Call[T]:
        """This call as it is sent again after an error."""
        if self.repeat_args is None:
            return self
        return Call(self.script, self.keys, self.repeat_args, self.decode)


def enqueue_call_args(rows: Sequence[Row]) -> list[Value]:
    """The enqueue script's arguments for these jobs: their count, and the
    jobs as one MessagePack array (bytes as MessagePack raw strings: Redis's
    cmsgpack cannot read bin)."""
    return [len(rows), msgpack.packb(rows, use_bin_type=False)]


def by_owner(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(owner, job id) pairs as each owner's job ids: what ack and release take."""
    out: dict[str, list[str]] = {}
    for owner, job_id in pairs:
        out.setdefault(owner, []).append(job_id)
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


def patch_args(
    *, queue: Any, priority: Any, ready_at: Any, retry_limit: Any, backoff: Any, retention: Any
) -> list[Value]:
    """The (field, value) pairs of lua/patch.lua for the options given
    (UNSET = leave alone); raises ValidationError naming a bad value."""
    args: list[Value] = []
    if queue is not UNSET:
        args += ["queue", validate_name("queue", queue)]
    if priority is not UNSET:
        args += ["priority", validate_priority(priority)]
    if ready_at is not UNSET:
        args += ["ready_at", "" if ready_at is None else epoch_ms(ready_at)]
    if retry_limit is not UNSET:
        args += ["retry_limit", "" if retry_limit is None else _non_negative("retry_limit", retry_limit)]
    if backoff is not UNSET:
        if backoff is not None and not isinstance(backoff, Backoff):
            raise ValidationError(f"backoff {backoff!r} is not a zizq.Backoff or None")
        args += ["backoff", "" if backoff is None else backoff.encode()]
    if retention is not UNSET:
        args += _retention_args(retention)
    return args


def defaults_args(
    *, retry_limit: Any, backoff: Any, retention: Any, error_history: Any, max_recoveries: Any = UNSET
) -> list[Value]:
    """The (name, value) pairs of lua/config.lua; None restores a built-in default."""
    args: list[Value] = []
    if retry_limit is not UNSET:
        args += ["retry_limit", "" if retry_limit is None else _non_negative("retry_limit", retry_limit)]
    if backoff is not UNSET:
        if backoff is None:
            args += ["backoff_base_ms", "", "backoff_exponent", "", "backoff_jitter_ms", ""]
        elif isinstance(backoff, Backoff):
            args += [
                "backoff_base_ms",
                backoff.base_ms,
                "backoff_exponent",
                repr(float(backoff.exponent)),
                "backoff_jitter_ms",
                backoff.jitter_ms,
            ]
        else:
            raise ValidationError(f"backoff {backoff!r} is not a zizq.Backoff or None")
    if retention is not UNSET:
        args += _retention_args(retention)
    if error_history is not UNSET:
        args += ["error_history", "" if error_history is None else _non_negative("error_history", error_history)]
    if max_recoveries is not UNSET:
        value = "" if max_recoveries is None else _non_negative("max_recoveries", max_recoveries)
        args += ["max_recoveries", value]
    return args


def _text(s: str) -> str:
    """Text Redis can take: lone surrogates (surrogateescape'd bytes in
    exception messages) written as backslash escapes."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


# The most bytes (UTF-8) of an error record's message and backtrace: error
# records are bounded in number (config error_history) and so in size.
ERROR_MESSAGE_BYTES = 4096
ERROR_BACKTRACE_BYTES = 16384


def _bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
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


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


STATUS_NAMES: dict[int, JobStatus] = {1: "ready", 2: "scheduled", 3: "in_flight", 4: "completed", 5: "dead"}


def job_from_record(job_id: Any, record: bytes, *, duplicate: bool = False) -> Job:
    """A Job from its stored record: a MessagePack map with short keys, the
    status as a number, and queue "default", priority 32768 and 0 attempts
    left out (see docs/redis-layout.md). Raises KeyError, ValueError,
    TypeError or AttributeError for a record that does not fit."""
    f = _unpack(record)
    rc, rd = f.get("rc"), f.get("rd")
    bo, d = f.get("bo"), f.get("d")
    return Job(
        id=_str(job_id),
        type=f["t"],
        queue=f.get("q", DEFAULT_QUEUE),
        priority=f.get("p", DEFAULT_PRIORITY),
        status=STATUS_NAMES[f["s"]],
        ready_at=f["r"],
        attempts=f.get("a", 0),
        retry_limit=f.get("rl"),
        backoff=None if bo is None else Backoff.decode(bo),
        retention=None if rc is None and rd is None else Retention(completed_ms=rc, dead_ms=rd),
        unique_key=f.get("uk"),
        unique_while=f.get("uw"),
        dequeued_at=f.get("da"),
        failed_at=f.get("fa"),
        completed_at=f.get("ca"),
        purge_at=f.get("pa"),
        timeout_ms=f.get("to"),
        recoveries=f.get("rv", 0),
        duplicate=duplicate,
        payload_json=None if d is None else d.encode(),
    )


def _unpack(record: bytes) -> dict[str, Any]:
    f = msgpack.unpackb(record)
    if not isinstance(f, dict):
        raise ValueError(f"a job record is a MessagePack map, not {type(f).__name__}")
    return f


def _enqueued(templates: list[Template], reply: list[Any]) -> list[Job]:
    """The jobs of an enqueue reply (see lua/enqueue.lua): made from their
    templates when created, read from their records when they existed."""
    now = reply[0]
    jobs = []
    for i, template in enumerate(templates):
        flag, job_id, x = reply[1 + 3 * i : 4 + 3 * i]
        if flag == 0 or flag == 3:  # created now, or created and done before a retry
            status = "completed" if flag == 3 else "scheduled" if x > now else "ready"
            t = template
            job = Job(
                _str(job_id),
                t.type,
                t.queue,
                t.priority,
                status,  # type: ignore[arg-type]
                x,
                retry_limit=t.retry_limit,
                backoff=t.backoff,
                retention=t.retention,
                unique_key=t.unique_key,
                unique_while=t.unique_while,
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


class Core:
    """Builds the calls of one namespace. Holds no connection."""

    def __init__(self, namespace: str = "zizq") -> None:
        self.namespace = namespace
        self.prefix = prefix(namespace)
        self.keys = (self.prefix,)
        self.ids = _hotpath.IdGenerator()

    def key(self, *parts: str) -> str:
        """A key of this namespace, e.g. ``key("ready", "emails")``."""
        return self.prefix + ":".join(parts)

    def enqueue(self, items: Sequence[Enqueue | JobKind]) -> Call[list[Job]]:
        if not items:
            raise ValidationError("enqueue_many needs at least one job")
        rows, templates = [], []
        for item in items:
            row, template = plan_enqueue(item, self.ids)
            rows.append(row)
            templates.append(template)
        args = enqueue_call_args(rows)
        return Call(script("enqueue"), self.keys, args, lambda reply: _enqueued(templates, reply), [*args, 1])

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
        return Call(script("delete"), self.keys, list(ids), int)

    def retry(self, job_id: str) -> Call[Job]:
        return Call(script("retry"), self.keys, [job_id], lambda reply: job_from_record(job_id, reply))

    def errors(self, job_id: str) -> Call[list[ErrorRecord]]:
        return Call(script("errors"), self.keys, [job_id], lambda reply: [ErrorRecord.from_json(e) for e in reply])

    def purge(self, limit: int) -> Call[int]:
        return Call(script("purge"), self.keys, [limit], int)

    def pause(self, queue: str, paused: bool) -> Call[bool]:
        return Call(script("pause"), self.keys, ["pause" if paused else "resume", validate_name("queue", queue)], bool)

    def defaults(self, changes: list[Value]) -> Call[dict[str, float]]:
        def decode(reply: list[Any]) -> dict[str, float]:
            return {_str(k): float(v) for k, v in zip(reply[0::2], reply[1::2], strict=True)}

        return Call(script("config"), self.keys, changes, decode)

    def take(self, worker_id: str, count: int, queues: Sequence[str]) -> Call[TakeResult]:
        return Call(script("take"), self.keys, [worker_id, count, *queues], TakeResult.decode)

    def ack(self, worker_id: str, ids: Sequence[str]) -> Call[list[str]]:
        return Call(script("ack"), self.keys, [worker_id, *ids], lambda r: [_str(i) for i in r])

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
    ) -> Call[Job | None]:
        args: list[Value] = [
            worker_id,
            job_id,
            _bounded(_text(message), ERROR_MESSAGE_BYTES),
            _text(error_type),
            _bounded(_text(backtrace), ERROR_BACKTRACE_BYTES, keep_end=True),
            _text_opt(retry_at_ms),
            _text_opt(retry_in_ms),
            "1" if kill else "0",
            repr(jitter),
        ]

        def decode(reply: Any) -> Job | None:
            return None if reply is None else job_from_record(job_id, reply)

        return Call(script("fail"), self.keys, args, decode)

    def release(self, worker_id: str, ids: Sequence[str]) -> Call[int]:
        return Call(script("release"), self.keys, [worker_id, *ids], int)

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


@dataclass(slots=True)
class Heartbeat:
    """What a heartbeat did: whether this worker still holds its lease, and
    how many jobs of lost workers it handed back or failed as poison pills."""

    lost: bool
    recovered: int
    failed: int

    @classmethod
    def decode(cls, reply: list[Any]) -> Heartbeat:
        return cls(_str(reply[0]) == "lost", int(reply[1]), int(reply[2]))


@dataclass(slots=True)
class TakeResult:
    """What a take returned: jobs now in flight, and when to look again."""

    now: int
    next_due: int | None
    more: bool
    jobs: list[Job]
    broken: list[tuple[str, str]]  # (id, why) of jobs taken whose records could not be read

    @classmethod
    def decode(cls, reply: list[Any]) -> TakeResult:
        jobs, broken = [], []
        for i in range(3, len(reply), 2):
            try:
                jobs.append(job_from_record(reply[i], reply[i + 1]))
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                broken.append((_str(reply[i]), repr(exc)))
        next_due = int(reply[1])
        return cls(int(reply[0]), None if next_due < 0 else next_due, bool(reply[2]), jobs, broken)

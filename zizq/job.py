"""The job model: payload types (JobKind), job metadata (Job) and options."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, Literal, TypeVar, dataclass_transform, get_args

import orjson

from zizq import _hotpath, _shapes
from zizq.errors import InvalidPayload, JobKindError, PayloadDecodeError, ValidationError

JobStatus = Literal["ready", "scheduled", "in_flight", "completed", "dead"]
"""A job's status. In lifecycle order, which is also the order of the
numbers 1 to 5 that Redis stores (lua/includes/common.lua)."""
UniqueWhile = Literal["queued", "active", "exists"]

STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
UNIQUE_SCOPES: tuple[UniqueWhile, ...] = get_args(UniqueWhile)
DEFAULT_PRIORITY = 32768
DEFAULT_QUEUE = "default"
_FORBIDDEN = frozenset(",*?[]{}\\\x00")

K = TypeVar("K", bound="JobKind")


def validate_name(what: str, value: object) -> str:
    """Check a queue, type or namespace name; return it unchanged.

    A name is a non-empty string with none of ``, * ? [ ] { } \\`` or NUL.
    """
    if not isinstance(value, str) or not value:
        raise _name_error(what, value, "must be a non-empty string")
    bad = _FORBIDDEN.intersection(value)
    if bad:
        raise _name_error(what, value, f"must not contain {''.join(sorted(bad))!r}")
    if not _is_utf8(value):
        raise _name_error(what, value, "must be valid Unicode (it has a lone surrogate)")
    return value


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name_error(what: str, value: object, why: str) -> ValidationError:
    from zizq.errors import InvalidName

    return InvalidName(f"{what} name {value!r} {why} (forbidden: , * ? [ ] {{ }} \\ and NUL)")


def timeout_ms(value: object) -> int:
    """A handler timeout (seconds, or a timedelta) in whole ms; positive."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < 10**9:
        raise ValidationError(f"timeout {value!r} is not a positive number of seconds")
    return max(1, round(seconds * 1000))


def validate_priority(value: object) -> int:
    """Check a priority: an int in 0..65535, lower runs sooner."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ValidationError(f"priority {value!r} is not an integer in 0..65535")
    return int(value)  # a plain int: redis-py refuses int subclasses such as IntEnum


def non_negative(what: str, value: object) -> int:
    """Check a count or a span in ms: an int, 0 or more."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValidationError(f"{what} {value!r} is not a non-negative integer")
    return int(value)  # a plain int: redis-py refuses int subclasses such as IntEnum


@dataclass(frozen=True)
class Backoff:
    """The retry delay curve: ``floor(a**exponent * 1000 + base_ms + U * jitter_ms * a)``
    milliseconds after the a-th failure, U uniform in [0, 1).

    Zizq's default is ``Backoff(base_ms=15000, exponent=4.0, jitter_ms=30000)``,
    about 25 days over the default 25 retries.
    """

    base_ms: int
    exponent: float
    jitter_ms: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_ms", non_negative("backoff base_ms", self.base_ms))
        object.__setattr__(self, "jitter_ms", non_negative("backoff jitter_ms", self.jitter_ms))
        e = self.exponent
        if isinstance(e, bool) or not isinstance(e, (int, float)) or not 0 <= e <= 16:
            raise ValidationError(f"backoff exponent {e!r} is not a number in 0..16")

    def encode(self) -> str:
        return f"{self.base_ms} {float(self.exponent)!r} {self.jitter_ms}"

    @classmethod
    def decode(cls, text: str) -> Backoff:
        base, exponent, jitter = text.split()
        return cls(int(base), float(exponent), int(jitter))


@dataclass(frozen=True)
class Retention:
    """How long finished jobs stay readable, in ms. None keeps the namespace
    default (completed: 0, deleted at once; dead: 7 days)."""

    completed_ms: int | None = None
    dead_ms: int | None = None

    def __post_init__(self) -> None:
        if self.completed_ms is not None:
            object.__setattr__(self, "completed_ms", non_negative("retention completed_ms", self.completed_ms))
        if self.dead_ms is not None:
            object.__setattr__(self, "dead_ms", non_negative("retention dead_ms", self.dead_ms))


@dataclass(frozen=True)
class UniqueKey:
    """A deduplication key. While a job holding the key is within its scope,
    enqueueing another job with the same key returns the existing job
    (``duplicate=True``) and writes nothing.

    Scopes: ``queued`` (default; scheduled or ready), ``active`` (also in
    flight), ``exists`` (until the job is purged).
    """

    key: str
    unique_while: UniqueWhile | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key or not _is_utf8(self.key):
            raise ValidationError(f"unique key {self.key!r} is not a non-empty string of valid Unicode")
        if self.unique_while is not None and self.unique_while not in UNIQUE_SCOPES:
            raise ValidationError(f"unique scope {self.unique_while!r} is not one of queued, active, exists")

    @classmethod
    def raw(cls, key: str) -> UniqueKey:
        """The key exactly as given."""
        return cls(key)

    @classmethod
    def hash_of(
        cls, value: Any, *, only: Sequence[str] | None = None, except_: Sequence[str] | None = None
    ) -> UniqueKey:
        """SHA-256 (lowercase hex) of the compact, key-sorted JSON of ``value``.

        A :class:`JobKind` is hashed as its stored payload (``to_payload()``):
        a TRANSPARENT job's one value, a field-less one's null, otherwise the
        object of its fields.

        ``only`` keeps just the parts of the value at the given jq-style paths
        (``.``, ``.a``, ``.a.b``, ``.a[0]``, ``.["dotted.key"]``), nesting kept;
        ``except_`` drops them. Paths address the JSON form of the value; a
        path missing from it is skipped, and one that indexes into a string
        is refused (ValidationError), as jq refuses it.
        """
        return cls(_hotpath.hash_of(_select(value, only, except_)))

    @classmethod
    def tagged_hash_of(
        cls, tag: str, value: Any, *, only: Sequence[str] | None = None, except_: Sequence[str] | None = None
    ) -> UniqueKey:
        """``tag + ":" + hash_of(value)``; the tag is usually the job's NAME."""
        return cls(f"{tag}:{_hotpath.hash_of(_select(value, only, except_))}")

    def scope(self, unique_while: UniqueWhile) -> UniqueKey:
        """This key with another scope: "queued", "active" or "exists"."""
        return UniqueKey(self.key, unique_while)


_SEGMENT = re.compile(r'\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?([A-Za-z_][A-Za-z0-9_]*)')


def parse_path(path: str) -> list[str | int]:
    """The segments of a jq-style path: ``.a.b[0]["x.y"]`` -> ``["a", "b", 0, "x.y"]``;
    ``.`` is the whole value (no segments)."""
    if not isinstance(path, str) or not path.startswith("."):
        raise ValidationError(f"path {path!r} must start with '.' (e.g. '.to', '.items[0]')")
    rest = path[1:]
    segments: list[str | int] = []
    while rest:
        m = _SEGMENT.match(rest)
        if m is None or (m[3] is not None and segments and not rest.startswith(".")):
            raise ValidationError(f'path {path!r} is not a jq-style path like .a.b[0] or .["key"]')
        if m[1] is not None:
            segments.append(int(m[1]))
        elif m[2] is not None:
            segments.append(orjson.loads(f'"{m[2]}"'))
        else:
            segments.append(m[3])
        rest = rest[m.end() :]
    return segments


def _select(value: Any, only: Sequence[str] | None, except_: Sequence[str] | None) -> Any:
    if isinstance(value, JobKind):
        value = value.to_payload()  # its payload as stored
    if only is None and except_ is None:
        return value
    if only is not None and except_ is not None:
        raise ValidationError("give only= or except_=, not both")
    doc = orjson.loads(_hotpath.encode_payload(value))
    if only is not None:
        paths = [parse_path(p) for p in only]
        if [] in paths:
            return doc
        out: Any = {}
        for text, path in zip(only, paths, strict=True):
            out = _copy_path(doc, out, path, text)
        return out
    assert except_ is not None
    paths = [parse_path(p) for p in except_]
    if [] in paths:
        return None
    doc = copy.deepcopy(doc)
    for text, path in zip(except_, paths, strict=True):
        _drop_path(doc, path, text)
    return doc


def _no_string(container: Any, path: str) -> None:
    # Python indexes into a string ("abc"[0] is "a"); jq refuses to, and so
    # do paths.
    if isinstance(container, str):
        raise ValidationError(
            f"path {path!r} indexes into the string {container!r:.60}; paths index objects and arrays"
        )


def _copy_path(src: Any, dst: Any, path: list[str | int], text: str) -> Any:
    # Copy the value at `path` from src into dst, building containers like
    # src's on the way (lists padded with null); a missing path copies nothing.
    head, rest = path[0], path[1:]
    _no_string(src, text)
    try:
        child = src[head]
    except (KeyError, IndexError, TypeError):
        return dst
    if isinstance(head, int) != isinstance(dst, list):
        dst = [] if isinstance(head, int) else {}
    if isinstance(dst, list) and isinstance(head, int):
        dst.extend([None] * (head + 1 - len(dst)))
    current = dst[head] if isinstance(dst, list) else dst.get(head)  # type: ignore[index]
    dst[head] = _copy_path(child, {} if current is None else current, rest, text) if rest else child
    return dst


def _drop_path(doc: Any, path: list[str | int], text: str) -> None:
    for segment in path[:-1]:
        _no_string(doc, text)
        try:
            doc = doc[segment]
        except (KeyError, IndexError, TypeError):
            return
    _no_string(doc, text)
    try:
        del doc[path[-1]]
    except (KeyError, IndexError, TypeError):
        pass


@dataclass_transform()
class JobKind:
    """Base class for job payload types.

    Subclasses declare their fields with annotations and become dataclasses::

        class SendEmail(zizq.JobKind):
            NAME = "send_email"      # required and stable: the stored type
            QUEUE = "emails"         # optional per-type defaults
            PRIORITY = 50
            to: str

    A subclass with no fields is a unit type (payload ``null``). Set
    ``TRANSPARENT = True`` on a subclass with exactly one field to store that
    field's value alone as the payload. A class meant only to be subclassed
    is declared with ``abstract=True``.

    Building an instance checks each field's value against its annotation
    (:class:`zizq.InvalidPayload` naming the field); README.md's "Field
    types" gives the rules.
    """

    NAME: ClassVar[str]
    QUEUE: ClassVar[str] = DEFAULT_QUEUE
    PRIORITY: ClassVar[int | None] = None
    RETRY_LIMIT: ClassVar[int | None] = None
    BACKOFF: ClassVar[Backoff | None] = None
    RETENTION: ClassVar[Retention | None] = None
    UNIQUE_WHILE: ClassVar[UniqueWhile | None] = None
    TIMEOUT: ClassVar[float | None] = None
    LIMIT: ClassVar[str | None] = None
    TRANSPARENT: ClassVar[bool] = False

    _zizq_fields: ClassVar[tuple[str, ...]] = ()
    # Per class, made once: the fields' shapes (None until the annotations
    # resolve: one may name a class defined after this one), the tests
    # building an instance runs, and where the class statement ran.
    _zizq_shapes: ClassVar[tuple[_shapes.Field, ...] | None] = ()
    _zizq_tests: ClassVar[tuple[tuple[str, frozenset[type], Callable[[Any], bool]], ...]] = ()
    _zizq_localns: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(cls, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(cls)
        cls._zizq_fields = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        own_post_init = cls.__dict__.get("__post_init__")
        if own_post_init is not None:
            cls.__post_init__ = _checked_first(own_post_init)  # type: ignore[method-assign]
        cls._zizq_localns = _defining_namespace()
        cls._zizq_shapes = None
        cls._zizq_resolve(at_definition=True)
        if abstract:
            return
        if "NAME" not in cls.__dict__:
            raise JobKindError(f"{cls.__qualname__} has no NAME; every JobKind needs a stable NAME")
        try:
            validate_name("job type", cls.NAME)
            validate_name("queue", cls.QUEUE)
            if cls.PRIORITY is not None:
                validate_priority(cls.PRIORITY)
            if cls.RETRY_LIMIT is not None:
                non_negative("retry limit", cls.RETRY_LIMIT)
            if cls.TIMEOUT is not None:
                timeout_ms(cls.TIMEOUT)
            if cls.UNIQUE_WHILE is not None and cls.UNIQUE_WHILE not in UNIQUE_SCOPES:
                raise ValidationError(f"UNIQUE_WHILE {cls.UNIQUE_WHILE!r} is not queued, active or exists")
            if cls.LIMIT is not None:
                validate_name("LIMIT", cls.LIMIT)
        except ValidationError as exc:
            raise JobKindError(f"{cls.__qualname__}: {exc}") from None
        if cls.BACKOFF is not None and not isinstance(cls.BACKOFF, Backoff):
            raise JobKindError(f"{cls.__qualname__}.BACKOFF must be a zizq.Backoff")
        if cls.RETENTION is not None and not isinstance(cls.RETENTION, Retention):
            raise JobKindError(f"{cls.__qualname__}.RETENTION must be a zizq.Retention")
        if cls.TRANSPARENT and len(cls._zizq_fields) != 1:
            raise JobKindError(f"{cls.__qualname__} is TRANSPARENT but has {len(cls._zizq_fields)} fields, not 1")

    @classmethod
    def _zizq_resolve(cls, at_definition: bool = False) -> tuple[_shapes.Field, ...]:
        """Resolve the fields' annotations into shapes, once per class. An
        annotation naming a class not defined yet is tried again at first use."""
        try:
            fields = _shapes.fields_of(cls, cls._zizq_localns)
        except NameError as exc:
            if at_definition:
                return ()
            raise JobKindError(f"{cls.__qualname__}: cannot resolve its field annotations: {exc}") from None
        cls._zizq_shapes = fields
        cls._zizq_tests = tuple((f.name, f.shape.exact, f.shape.ok) for f in fields if f.shape is not _shapes.ANY)
        return fields

    def __post_init__(self) -> None:
        """Check each field's value against its annotation; raises
        :class:`zizq.InvalidPayload` naming the kind, the field (its path
        inside nested values) and the value."""
        if self._zizq_shapes is None:
            self._zizq_resolve()
        for name, exact, ok in self._zizq_tests:
            value = getattr(self, name)
            if value.__class__ not in exact and not ok(value):
                raise _shapes.refusal(type(self).__qualname__, self._zizq_shapes or (), self)

    def unique_key(self) -> UniqueKey | None:
        """The key that makes this job unique, or None (the default)."""
        return None

    def limit_key(self) -> str | None:
        """The key the class's ``LIMIT`` holds per (e.g. an account id), or
        None (the default): one limit for every job of the limit."""
        return None

    def group_key(self) -> str | None:
        """The job's group (e.g. a tenant), or None (the default): ready
        jobs of different groups in one queue and priority take turns."""
        return None

    def to_payload(self) -> Any:
        """The JSON value stored as this job's payload."""
        if self.TRANSPARENT:
            return getattr(self, self._zizq_fields[0])
        if not self._zizq_fields:
            return None
        return self  # orjson writes a dataclass as an object of its fields

    @classmethod
    def from_payload(cls: type[K], value: Any) -> K:
        """Build an instance from a decoded JSON payload, checked as one
        built in code is, nested dataclasses and tuples rebuilt.

        Fields the class does not define are ignored (a newer producer wrote
        them; logged at debug on ``zizq.job``); missing fields take their
        defaults; a ``null`` payload is an object with no fields. Raises
        :class:`zizq.PayloadDecodeError` when the value does not fit.
        """
        fields = cls._zizq_shapes
        try:
            if fields is None:
                fields = cls._zizq_resolve()
            if cls.TRANSPARENT:
                [field] = fields
                return cls(**{field.name: field.shape.decode(value, field.name)})
            if value is None:
                value = {}
            if isinstance(value, dict):
                built: K = _shapes.build(cls, fields, value, "")
                return built
        except (PayloadDecodeError, InvalidPayload) as exc:
            raise PayloadDecodeError(f"failed to decode job payload as {cls.__qualname__}: {exc}") from None
        raise PayloadDecodeError(
            f"failed to decode job payload as {cls.__qualname__}: expected a JSON object, got {value!r:.200}"
        )


def _checked_first(post_init: Callable[..., None]) -> Callable[..., None]:
    # A subclass's own __post_init__ runs after the fields are checked, even
    # when it does not call super().__post_init__().
    @functools.wraps(post_init)
    def __post_init__(self: JobKind, *init_vars: Any) -> None:
        JobKind.__post_init__(self)
        post_init(self, *init_vars)

    return __post_init__


def _defining_namespace() -> dict[str, Any] | None:
    """The local names where a JobKind's class statement runs (a function's
    body, say), so its annotations can name classes defined there; None at a
    module's top level, where the module's names serve."""
    frame = sys._getframe(2)  # our caller is __init_subclass__
    while frame.f_back is not None and frame.f_code.co_name == "__init_subclass__":
        frame = frame.f_back  # a base class's own __init_subclass__ calling super()
    return None if frame.f_locals is frame.f_globals else dict(frame.f_locals)


@dataclass(slots=True)
class Job:
    """A job's metadata as stored in Redis. Timestamps are ms since the epoch.

    ``payload`` is the decoded JSON payload (None when the call that returned
    this job does not carry payloads, as enqueue results do not).
    ``duplicate`` is True on an enqueue result that is an existing job with
    the same unique key. Beyond Zizq's fields: ``timeout_ms``, the most its
    handler may run, and ``recoveries``, how often a lost worker's death
    handed it back; ``result`` (see below), ``progress`` (the last fraction
    in 0..1 a handler reported with :func:`zizq.progress`, or None) with
    ``progress_message``, and ``cancelled_at`` (ms; set on a job cancelled
    by ``cancel_job``, which is dead). ``last_error`` is the last error
    record of a dead job returned by ``wait`` (None elsewhere: read
    ``job_errors``).
    """

    id: str
    type: str
    queue: str
    priority: int
    status: JobStatus
    ready_at: int
    attempts: int = 0
    retry_limit: int | None = None
    backoff: Backoff | None = None
    retention: Retention | None = None
    unique_key: str | None = None
    unique_while: UniqueWhile | None = None
    dequeued_at: int | None = None
    failed_at: int | None = None
    completed_at: int | None = None
    purge_at: int | None = None
    timeout_ms: int | None = None
    recoveries: int = 0
    duplicate: bool = False
    payload_json: bytes | None = dataclasses.field(default=None, repr=False)
    # The trace context of its enqueue (JSON text of W3C headers), stored
    # only while zizq.otel is instrumented; see zizq.otel.job_context.
    trace_context: str | None = dataclasses.field(default=None, repr=False)
    result_json: bytes | None = dataclasses.field(default=None, repr=False)
    progress: float | None = None
    progress_message: str | None = None
    cancelled_at: int | None = None
    last_error: ErrorRecord | None = dataclasses.field(default=None, repr=False)

    @property
    def payload(self) -> Any:
        """The decoded payload, or None when it was not read."""
        return None if self.payload_json is None else orjson.loads(self.payload_json)

    @property
    def result(self) -> Any:
        """What the handler returned, decoded from JSON, on a completed job
        kept after completion (a completed retention above 0); None when
        it returned None, or nothing was kept."""
        return None if self.result_json is None else orjson.loads(self.result_json)

    def to_dict(self, *, payload: bool = True) -> dict[str, Any]:
        """The job in the Zizq API's JSON form; unset optional fields are left out."""
        out: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
            "priority": self.priority,
            "status": self.status,
            "ready_at": self.ready_at,
            "attempts": self.attempts,
        }
        if self.retry_limit is not None:
            out["retry_limit"] = self.retry_limit
        if self.backoff is not None:
            out["backoff"] = dataclasses.asdict(self.backoff)
        if self.retention is not None:
            out["retention"] = {k: v for k, v in dataclasses.asdict(self.retention).items() if v is not None}
        for name in (
            "unique_key",
            "unique_while",
            "dequeued_at",
            "failed_at",
            "completed_at",
            "purge_at",
            "timeout_ms",
            "progress",
            "progress_message",
            "cancelled_at",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.recoveries:
            out["recoveries"] = self.recoveries
        if payload and self.payload_json is not None:
            out["payload"] = self.payload
        if self.result_json is not None:
            out["result"] = self.result
        return out


@dataclass(frozen=True, slots=True)
class ErrorRecord:
    """One failed attempt of a job. Timestamps are ms since the epoch."""

    attempt: int
    message: str
    error_type: str | None
    backtrace: str | None
    dequeued_at: int | None
    failed_at: int

    @classmethod
    def from_json(cls, data: bytes) -> ErrorRecord:
        d = orjson.loads(data)
        return cls(
            attempt=int(d["attempt"]),
            message=d["message"],
            error_type=d.get("error_type") or None,
            backtrace=d.get("backtrace") or None,
            dequeued_at=int(d["dequeued_at"]) if d.get("dequeued_at") is not None else None,
            failed_at=int(d["failed_at"]),
        )

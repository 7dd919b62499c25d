"""The keyword options of ``enqueue``, ``patch_job`` and ``set_defaults``,
each declared once, with its meaning and units; :class:`Enqueue`, a job
with its options; and the conversions of the time options to ms.

The clients take them as ``**options: Unpack[EnqueueOptions]`` (and so on);
:class:`zizq.Enqueue` takes :class:`EnqueueOptions` too. An option left out
means "not given"; what None means is said per option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, Unpack

from zizq.errors import ValidationError
from zizq.job import DEFAULT_QUEUE, Backoff, JobKind, Retention, UniqueKey

Delay = float | int | timedelta
"""A span of time: seconds (int or float), or a timedelta."""


class JobOptions(TypedDict, total=False):
    """What a job, its JobKind class and the namespace each may set: the
    job's own value wins over its JobKind's, which wins over the namespace's
    (see :meth:`zizq.Client.set_defaults`). None goes back a level: in
    ``enqueue`` to the JobKind's, in ``patch_job`` to the namespace's, in
    ``set_defaults`` to the built-in one."""

    retry_limit: int | None
    """How many times a failed job is retried before it dies: 0 or more
    (built-in: 25)."""

    backoff: Backoff | None
    """The delay curve between retries, in ms (built-in:
    ``Backoff(base_ms=15000, exponent=4.0, jitter_ms=30000)``)."""

    retention: Retention | None
    """How long a finished job stays readable, in ms, per final status
    (built-in: completed 0, deleted at once; dead 7 days). A Retention sets
    the sub-fields it has; in ``patch_job`` and ``set_defaults`` None clears
    both."""


class EnqueueOptions(JobOptions, total=False):
    """The options of ``enqueue``, ``enqueue_raw`` and :class:`zizq.Enqueue`
    (and so of ``enqueue_many``'s items); None is the same as not given."""

    queue: str | None
    """The queue's name (default: the JobKind's ``QUEUE``, "default" for
    ``enqueue_raw``)."""

    priority: int | None
    """0..65535, lower runs first (default: the JobKind's ``PRIORITY``, else
    32768)."""

    delay: Delay | None
    """How long from now until the job is ready: seconds or a timedelta. Give
    ``delay`` or ``ready_at``, not both; with neither the job is ready now."""

    ready_at: datetime | None
    """When the job becomes ready: a timezone-aware datetime. A job due later
    is ``scheduled``, otherwise ``ready``."""

    unique_key: UniqueKey | str | None
    """A deduplication key (a string is ``UniqueKey.raw(text)``). While a job
    holding the same key is within the key's scope, the enqueue returns that
    job with ``duplicate=True`` and writes nothing (default: the JobKind's
    ``unique_key()``)."""

    timeout: Delay | None
    """The most the handler may run, seconds or a timedelta, above 0; past it
    the job fails with :class:`zizq.JobTimeout` (default: the JobKind's
    ``TIMEOUT``, else none)."""

    limit: str | None
    """The name of the limit the job starts under (see
    :meth:`zizq.Client.set_limit`); it must exist at enqueue (default: the
    JobKind's ``LIMIT``, else none)."""

    limit_key: str | None
    """The key the limit holds per, e.g. an account id: one limit per key
    (default: the JobKind's ``limit_key()``, else one for all)."""

    group: str | None
    """The job's group, e.g. a tenant: within a queue and a priority, ready
    jobs of different groups are taken in turns (default: the JobKind's
    ``group_key()``, else none)."""


class PatchOptions(JobOptions, total=False):
    """The options of ``patch_job`` and ``patch_jobs``: only those given
    change."""

    queue: str
    """Move the job to this queue."""

    priority: int
    """0..65535, lower runs first."""

    ready_at: datetime | None
    """A timezone-aware datetime: a ready job given a future time becomes
    scheduled, a scheduled job given a past time (or None: now) becomes
    ready."""


class DefaultsOptions(JobOptions, total=False):
    """The options of ``set_defaults``: the namespace's settings; None
    restores the built-in one."""

    error_history: int | None
    """How many of a job's failed attempts its error history keeps, the
    newest (built-in: 100)."""

    max_recoveries: int | None
    """How often a job may be handed back after its worker was lost before it
    fails as a poison pill, with :class:`zizq.WorkerLost` (built-in: 3)."""


PATCH_OPTIONS: tuple[str, ...] = tuple(PatchOptions.__annotations__)
DEFAULTS_OPTIONS: tuple[str, ...] = tuple(DefaultsOptions.__annotations__)


def check_names(options: Mapping[str, Any], known: tuple[str, ...]) -> None:
    """Raise TypeError, as Python does for a keyword it does not take, when
    ``options`` has a name not in ``known`` (a TypedDict is not checked at
    run time; :class:`zizq.Enqueue`'s own ``__init__`` checks its options)."""
    for name in options:
        if name not in known:
            raise TypeError(f"unexpected keyword argument {name!r}; the options are {', '.join(known)}")


@dataclass(slots=True, eq=False, kw_only=True)
class Enqueue:
    """One job and its per-call options, for ``enqueue_many``.

    ``Enqueue(SendEmail(to="a@b.c"), priority=10)`` for a JobKind;
    ``Enqueue.raw("send_email", {"to": "a@b.c"}, queue="emails")`` for a job
    type defined elsewhere. The options are :class:`zizq.EnqueueOptions`;
    each is an attribute (None when not given) that enqueue middleware may
    change.
    """

    job: JobKind | None = field(kw_only=False)
    # The options, typed as in EnqueueOptions (tests/test_api_parity.py
    # checks that the two agree); a dataclass, for its fast __init__.
    queue: str | None = None
    priority: int | None = None
    delay: Delay | None = None
    ready_at: datetime | None = None
    retry_limit: int | None = None
    backoff: Backoff | None = None
    retention: Retention | None = None
    unique_key: UniqueKey | str | None = None
    timeout: Delay | None = None
    limit: str | None = None
    limit_key: str | None = None
    group: str | None = None
    # Of a job made by raw(): its type name and JSON payload.
    type: str | None = field(default=None, init=False)
    payload: Any = field(default=None, init=False)

    @classmethod
    def raw(cls, type_name: str, payload: Any, **options: Unpack[EnqueueOptions]) -> Enqueue:
        """A job of type ``type_name`` with a plain JSON ``payload`` (queue:
        "default" unless given)."""
        item = cls(None, **options)
        if "queue" not in options:
            item.queue = DEFAULT_QUEUE
        item.type = type_name
        item.payload = payload
        return item


MAX_SECONDS = 1e11  # about 3,000 years: every stored time stays an exact integer


def delay_ms(delay: Delay) -> int:
    """A delay (seconds, or a timedelta) in whole ms; never negative."""
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise ValidationError(f"delay {delay!r} is not a number of seconds or a timedelta")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SECONDS:
        raise ValidationError(f"delay {delay!r} must be a number of seconds in 0..{MAX_SECONDS:.0e}")
    return round(seconds * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(at: datetime) -> int:
    """An aware datetime as ms since the epoch."""
    if not isinstance(at, datetime):
        raise ValidationError(f"ready_at {at!r} is not a datetime")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationError(f"ready_at {at!r} is naive; give a timezone-aware datetime")
    ms = (at - _EPOCH) // timedelta(milliseconds=1)  # exact; at.timestamp() * 1000 can be 1 ms off
    if ms < 0:
        raise ValidationError(f"ready_at {at!r} is before 1970")
    return ms

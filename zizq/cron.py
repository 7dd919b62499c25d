"""Cron: recurring jobs, registered in groups, enqueued by the workers.

A group (``client.replace_cron("billing", [...])``, idempotent, meant to be
called by every app instance at start-up) holds named entries: a 5-field cron
expression, or 6 fields with a leading seconds field, an IANA time zone (the
entry's, else the group's, else UTC) and a job template (a JobKind instance or
a :class:`zizq.Enqueue` with options; ``ready_at`` and ``delay`` are refused).

Every worker runs a cron tick (``Worker(cron=False)`` turns it off). When an
entry is due, the tick computes the entry's following run with croniter and
claims the due run with a compare-and-set in Lua (``lua/cron_fire.lua``): of
any number of workers, one wins. The claim records a pending enqueue with the
job id the winner chose; the winner enqueues the job with that id and then
confirms. A worker that dies between claim and confirm leaves the record
behind, and another worker's tick sends it again after ``PENDING_GRACE_MS``,
with the same id, which the enqueue script recognises (see the README's
"Operating zizq" for the guarantee this gives).

Redis keys (under ``{<namespace>}:``): ``cron:groups`` (set of names),
``cron:group:<g>`` (hash: tz, paused, paused_at, resumed_at),
``cron:entries:<g>`` (hash: entry name -> definition JSON),
``cron:entry:<g>,<e>`` (hash: paused, paused_at, resumed_at, last),
``cron:next`` (sorted set: ``<g>,<e>`` -> next run, ms), ``cron:pending``
(sorted set: job id -> claimed at, ms) and ``cron:sent`` (hash: job id ->
JSON record). Names cannot hold a comma, so ``<g>,<e>`` is unambiguous.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from zizq._protocol.enqueue import Enqueue
from zizq.errors import CronNotFound, ValidationError
from zizq.job import JobKind

if TYPE_CHECKING:
    pass

T = TypeVar("T")
log = logging.getLogger("zizq.cron")



@dataclass(frozen=True)
class CronEntry:
    """One recurring job to register.

    :param name: unique in its group (the queue-name rules apply).
    :param expression: 5 fields (minute hour day month weekday), or 6 with a
        leading seconds field (``"*/10 * * * * *"``: every 10 seconds), or a
        macro such as ``@daily``.
    :param job: a JobKind instance, or ``zizq.Enqueue(job, **options)`` /
        ``zizq.Enqueue.raw(type, payload, ...)`` to give enqueue options
        (queue, priority, unique_key, retry_limit, ...). ``ready_at`` and
        ``delay`` are refused: the schedule says when.
    :param timezone: IANA name (``"Europe/Berlin"``) the expression is read
        in; default: the group's, else UTC.
    """

    name: str
    expression: str
    job: JobKind | Enqueue
    timezone: str | None = None


@dataclass(frozen=True)
class CronEntryState:
    """A registered entry and its scheduling state. Times are ms since the
    epoch (Redis's clock), or None."""

    group: str
    name: str
    expression: str
    timezone: str
    job: dict[str, Any]  # the template: type, queue, priority, payload (JSON text), options
    paused: bool = False
    paused_at: int | None = None
    resumed_at: int | None = None
    next_enqueue_at: int | None = None  # None: the expression has no future occurrence
    last_enqueue_at: int | None = None


@dataclass(frozen=True)
class CronGroup:
    """A cron group: its settings and entries (sorted by name)."""

    name: str
    timezone: str | None  # None: UTC
    paused: bool = False
    paused_at: int | None = None
    resumed_at: int | None = None
    entries: list[CronEntryState] = field(default_factory=list)

    def entry(self, name: str) -> CronEntryState:
        """The entry called ``name``; raises CronNotFound."""
        for e in self.entries:
            if e.name == name:
                return e
        raise CronNotFound(f"no cron entry {name!r} in group {self.name!r}")


# -- validation and schedule arithmetic (pure) -------------------------------


def validate_expression(expression: object) -> str:
    """``expression`` if croniter reads it as 5 fields, 6 with leading
    seconds, or an @-macro; raises ValidationError naming it otherwise."""
    if not isinstance(expression, str):
        raise ValidationError(f"cron expression {expression!r} is not a string")
    text = " ".join(expression.split())
    n = len(text.split(" ")) if text else 0
    ok = False
    if text.startswith("@") and n == 1:
        ok = croniter.is_valid(text)
    elif n in (5, 6):
        ok = croniter.is_valid(text, second_at_beginning=n == 6)
    if not ok:
        raise ValidationError(
            f"cron expression {expression!r} is not valid: give 5 fields (minute hour day month weekday), "
            "6 with a leading seconds field, or a macro such as @daily"
        )
    return text


def validate_timezone(tz: object) -> str:
    """``tz`` if it is an IANA time zone name zoneinfo knows."""
    if not isinstance(tz, str) or not tz:
        raise ValidationError(f"time zone {tz!r} is not an IANA name such as 'Europe/Berlin'")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"time zone {tz!r} is not an IANA name zoneinfo knows (e.g. 'Europe/Berlin')") from None
    return tz


def next_after(expression: str, timezone: str, now_ms: int) -> int | None:
    """The first occurrence of ``expression`` (read in ``timezone``) strictly
    after ``now_ms``, in ms since the epoch; None when there is none."""
    start = datetime.fromtimestamp(now_ms / 1000, ZoneInfo(timezone))
    six = len(expression.split(" ")) == 6
    try:
        nxt = croniter(expression, start, second_at_beginning=six).get_next(datetime)
    except CroniterBadDateError:
        return None
    return round(float(nxt.timestamp()) * 1000)


# -- the workers' tick --------------------------------------------------------



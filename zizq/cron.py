"""Cron: recurring jobs, registered in groups, enqueued by the workers.

A group (``client.replace_cron("billing", [...])``, idempotent, meant to be
called by every app instance at start-up) holds named entries: a 5-field cron
expression, or 6 fields with a leading seconds field, an IANA time zone (the
entry's, else the group's, else UTC) and a job template (a JobKind instance or
a :class:`zizq.Enqueue` with options; ``ready_at`` and ``delay`` are refused).

Every worker runs a cron tick (``Worker(cron=False)`` turns it off). When an
entry is due, the tick computes the entry's following run (:func:`next_after`:
croniter matches the wall-clock times, zizq's rule handles clock changes)
and claims the due run with a compare-and-set in Lua (``lua/cron_fire.lua``):
of any number of workers, one wins, and the same script enqueues the run's
job, so a run is enqueued at most once. A worker that cannot compute an
entry's next run (its tzdata lacks the zone) leaves the entry due for the
others.

Redis keys (under ``{<namespace>}:``): ``cron:groups`` (set of names),
``cron:group:<g>`` (hash: tz, paused, paused_at, resumed_at),
``cron:entries:<g>`` (hash: entry name -> definition JSON),
``cron:entry:<g>,<e>`` (hash: paused, paused_at, resumed_at, last),
``cron:next`` (sorted set: ``<g>,<e>`` -> next run, ms); ``cron:pending``
(sorted set: job id -> claimed at, ms) and ``cron:sent`` (hash: job id ->
JSON record) hold claims left by workers older than claim-and-enqueue in
one script. Names cannot hold a comma, so ``<g>,<e>`` is unambiguous.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from zizq.errors import CronNotFound, ValidationError
from zizq.job import JobKind
from zizq.options import Enqueue

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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CHANGE_HORIZON = timedelta(hours=3)  # longer than any clock change going back


def _real_time(expression: str) -> bool:
    """Whether an entry steps in real time across clock changes: its hour
    field is ``*`` or ``*/n`` (``@hourly`` too). Any other entry names
    times of day."""
    fields = expression.split(" ")
    if len(fields) == 1:
        return fields[0].lower() == "@hourly"
    return fields[-4].startswith("*")  # the hour: 2nd of 5 fields, 3rd of 6


def _jump_end(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) a forward clock change ends, for a wall time it
    skips: the first second whose offset is the one after the change."""
    before, after = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    # after.timestamp() is still before the change, before.timestamp() already after it.
    return _change_at(int(after.timestamp()), int(before.timestamp()), zone, after.utcoffset())


def _change_at(lo: int, hi: int, zone: ZoneInfo, new_offset: timedelta | None) -> datetime:
    """The first second (UTC) in (lo, hi] at which ``zone``'s offset is
    ``new_offset``; lo (epoch seconds) is before the change, hi after it."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == new_offset:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _instants(wall: datetime, zone: ZoneInfo, real_time: bool) -> list[datetime]:
    """The instants (UTC) at which a matching wall-clock time runs: one
    normally; in a repeated hour both passes for a real-time entry, the
    first only for the others; for a time skipped forward, none for a
    real-time entry, the end of the jump for the others."""
    first, second = wall.replace(tzinfo=zone, fold=0), wall.replace(tzinfo=zone, fold=1)
    a, b = first.utcoffset() or timedelta(0), second.utcoffset() or timedelta(0)
    if a == b:
        return [first.astimezone(UTC)]
    if a > b:  # the hour is repeated (PEP 495: fold 0 is the earlier pass)
        return [first.astimezone(UTC), second.astimezone(UTC)] if real_time else [first.astimezone(UTC)]
    return [] if real_time else [_jump_end(wall, zone)]


def _fall_back_ahead(after: datetime, zone: ZoneInfo) -> tuple[datetime, timedelta] | None:
    """The instant (UTC) within 3 hours after ``after`` at which the clock
    goes back, with the offset from then on; None when it does not."""
    offset = after.astimezone(zone).utcoffset()
    later = (after + _CHANGE_HORIZON).astimezone(zone).utcoffset()
    if offset is None or later is None or later >= offset:
        return None
    return _change_at(int(after.timestamp()), int((after + _CHANGE_HORIZON).timestamp()), zone, later), later


def next_after(expression: str, timezone: str, after_ms: int) -> int | None:
    """The first run of ``expression`` (read in ``timezone``) strictly after
    ``after_ms``, in ms since the epoch; None when there is none.

    Wall-clock times are matched by croniter without a time zone; the clock
    changes are zizq's rule (README, Cron): an entry whose hour field is
    ``*`` or ``*/n`` steps in real time (a repeated hour runs again, a
    skipped one is skipped); any other entry runs each matching time of
    day once (in a repeated hour at its first pass; a time skipped forward
    right when the jump ends)."""
    zone = ZoneInfo(timezone)
    after = _EPOCH + timedelta(milliseconds=after_ms)
    real_time = _real_time(expression)
    six = len(expression.split(" ")) == 6
    best: datetime | None = None
    walls = croniter(expression, after.astimezone(zone).replace(tzinfo=None), second_at_beginning=six)
    try:
        while True:  # the wall times after `after`'s own
            instants = _instants(walls.get_next(datetime), zone, real_time)
            if best is not None and instants and instants[-1] >= best:
                break  # each pass's instants grow with the wall time: none later runs sooner
            for at in instants:
                if at > after and (best is None or at < best):
                    best = at
    except CroniterBadDateError:
        pass
    back = _fall_back_ahead(after, zone) if real_time else None
    if back is not None:
        # In the first pass of an hour about to repeat, a real-time entry
        # next runs in the second pass, at a wall time that may read
        # earlier than `after`'s own.
        change, offset = back
        repeat = (change + offset).replace(tzinfo=None) - timedelta(microseconds=1)
        try:
            wall = croniter(expression, repeat, second_at_beginning=six).get_next(datetime)
        except CroniterBadDateError:
            wall = None
        if wall is not None:
            at = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
            if at > after and (best is None or at < best):
                best = at
    return None if best is None else (best - _EPOCH) // timedelta(milliseconds=1)


# -- the workers' tick --------------------------------------------------------

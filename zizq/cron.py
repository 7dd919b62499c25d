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

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import CroniterBadDateError, croniter

from ._core import TRANSIENT, Call, Core, Value, _str, enqueue_call_args, retry_delays
from ._enqueue import Enqueue, Row, enqueue_args
from ._scripts import script
from .errors import CronNotFound, RedisUnavailable, ValidationError, ZizqError
from .job import JobKind, validate_name

if TYPE_CHECKING:
    from .client import AsyncClient

T = TypeVar("T")
log = logging.getLogger("zizq.cron")

PENDING_GRACE_MS = 10_000
"""A claimed enqueue not confirmed within this many ms is sent again by any
worker's tick (its worker is taken to have died)."""
DUE_BATCH = 100  # due entries handled per tick call

# The enqueue script's values of a job after the id (docs/redis-layout.md
# §4.1); a template is these, with ready_at and delay_ms always ''.
TEMPLATE_FIELDS = (
    "type",
    "queue",
    "priority",
    "payload",
    "ready_at",
    "delay_ms",
    "retry_limit",
    "backoff",
    "completed_ms",
    "dead_ms",
    "unique_key",
    "unique_while",
    "timeout_ms",
)


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


class _NoId:
    def generate(self) -> str:
        return "-"


def template_of(job: JobKind | Enqueue) -> dict[str, Any]:
    """The job template of an entry: the enqueue arguments, per-type
    defaults resolved and validated. Raises ValidationError."""
    item = job if isinstance(job, Enqueue) else Enqueue(job)
    if item.job is None and item.type is None:
        raise ValidationError(f"cron job {job!r} is not a zizq.JobKind or zizq.Enqueue")
    if item.ready_at is not None or item.delay is not None:
        raise ValidationError("a cron job template cannot have ready_at or delay: the schedule says when")
    args = enqueue_args(item, _NoId())
    template: dict[str, Any] = dict(zip(TEMPLATE_FIELDS, args[1:], strict=True))
    payload = template["payload"]
    template["payload"] = payload.decode() if isinstance(payload, bytes) else payload
    for name in ("priority", "retry_limit", "completed_ms", "dead_ms", "timeout_ms"):
        if template[name] != "":
            template[name] = int(template[name])  # numbers as numbers (the script takes their text)
    return template


def _definition(entry: CronEntry, group_tz: str | None) -> tuple[str, dict[str, Any]]:
    if not isinstance(entry, CronEntry):
        raise ValidationError(f"{entry!r} is not a zizq.CronEntry")
    validate_name("cron entry", entry.name)
    tz = validate_timezone(entry.timezone) if entry.timezone is not None else (group_tz or "UTC")
    d = {"expression": validate_expression(entry.expression), "timezone": tz, "job": template_of(entry.job)}
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode(), d


def _opt_int(v: Any) -> int | None:
    return None if v is None or v == b"" or v == "" else int(v)


def _pairs(flat: list[Any]) -> dict[str, Any]:
    return {_str(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _decode_group(raw: list[Any]) -> CronGroup:
    name = _str(raw[0])
    g = _pairs(raw[1])
    entries = []
    for e_name, definition, state_flat, next_run in raw[2]:
        d = orjson.loads(definition)
        st = _pairs(state_flat)
        entries.append(
            CronEntryState(
                group=name,
                name=_str(e_name),
                expression=d["expression"],
                timezone=d["timezone"],
                job=d["job"],
                paused=st.get("paused") == b"1",
                paused_at=_opt_int(st.get("paused_at")),
                resumed_at=_opt_int(st.get("resumed_at")),
                next_enqueue_at=_opt_int(next_run),
                last_enqueue_at=_opt_int(st.get("last")),
            )
        )
    entries.sort(key=lambda e: e.name)
    return CronGroup(
        name=name,
        timezone=_str(g.get("tz", b"")) or None,
        paused=g.get("paused") == b"1",
        paused_at=_opt_int(g.get("paused_at")),
        resumed_at=_opt_int(g.get("resumed_at")),
        entries=entries,
    )


@dataclass(frozen=True)
class Due:
    """What cron_due returned."""

    now: int
    earliest: int | None
    due: list[tuple[str, int, bytes]]  # (member, next run, definition as stored)
    stale: list[tuple[str, int, bytes]]  # (job id, claimed at, pending record as stored)

    @classmethod
    def decode(cls, reply: list[Any]) -> Due:
        # Definitions are parsed one by one by the tick, so that one that
        # cannot be read stops only its own entry.
        due = [(_str(reply[2][i]), int(reply[2][i + 1]), reply[2][i + 2]) for i in range(0, len(reply[2]), 3)]
        stale = [(_str(reply[3][i]), int(reply[3][i + 1]), reply[3][i + 2]) for i in range(0, len(reply[3]), 3)]
        earliest = int(reply[1])
        return cls(int(reply[0]), None if earliest < 0 else earliest, due, stale)


class CronCore:
    """Builds the cron script calls of one namespace (I/O-free)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def read(self, group: str | None) -> Call[tuple[int, list[CronGroup]]]:
        g = "" if group is None else validate_name("cron group", group)
        return Call(
            script("cron_read"),
            self.core.keys,
            [g],
            lambda reply: (int(reply[0]), [_decode_group(r) for r in reply[1:]]),
        )

    def replace(
        self,
        mode: str,
        group: str,
        entries: Sequence[CronEntry],
        *,
        now: int,
        group_tz: str | None,
        paused: bool | None = None,
    ) -> Call[list[int]]:
        """The call that writes ``entries`` (validated here, before anything
        is sent), with next runs computed after ``now`` (ms)."""
        validate_name("cron group", group)
        if isinstance(entries, (CronEntry, str, bytes)) or not isinstance(entries, Sequence):
            raise ValidationError(f"entries {entries!r} is not a list of zizq.CronEntry")
        args: list[Value] = [mode, group, group_tz or "", "" if paused is None else ("1" if paused else "0")]
        seen: set[str] = set()
        for entry in entries:
            definition, d = _definition(entry, group_tz)
            if entry.name in seen:
                raise ValidationError(f"cron entry {entry.name!r} is given twice in group {group!r}")
            seen.add(entry.name)
            nxt = next_after(d["expression"], d["timezone"], now)
            args += [entry.name, definition, "" if nxt is None else nxt]
        return Call(script("cron_replace"), self.core.keys, args, lambda r: [int(x) for x in r])

    def delete(self, group: str | None, entry: str | None = None) -> Call[int]:
        g = "" if group is None else validate_name("cron group", group)
        e = "" if entry is None else validate_name("cron entry", entry)
        return Call(script("cron_delete"), self.core.keys, [g, e], int)

    def pause(self, paused: bool, group: str, entry: str | None = None) -> Call[bool]:
        g = validate_name("cron group", group)
        e = "" if entry is None else validate_name("cron entry", entry)
        return Call(script("cron_pause"), self.core.keys, ["pause" if paused else "resume", g, e], bool)

    def due(self, limit: int = DUE_BATCH, grace_ms: int = PENDING_GRACE_MS) -> Call[Due]:
        return Call(script("cron_due"), self.core.keys, [limit, grace_ms], Due.decode)

    def fire(self, items: Sequence[tuple[str, int, int | None, str]]) -> Call[list[tuple[int, str]]]:
        args: list[Value] = [len(items)]
        for member, expected, nxt, job_id in items:
            args += [member, expected, "" if nxt is None else nxt, job_id]
        return Call(script("cron_fire"), self.core.keys, args, lambda r: [(int(o), _str(d)) for o, d in r])

    def done(self, ids: Sequence[str]) -> Call[int]:
        return Call(script("cron_sent"), self.core.keys, ["done", *ids], int)

    def claim(self, stale: Sequence[tuple[str, int]]) -> Call[list[str]]:
        args: list[Value] = ["claim"]
        for job_id, claimed_at in stale:
            args += [job_id, claimed_at]
        return Call(script("cron_sent"), self.core.keys, args, lambda r: [_str(i) for i in r])

    def enqueue(self, job_id: str, template: dict[str, Any]) -> Call[int]:
        """Enqueue one run of a template with the id chosen at its claim;
        the reply is the enqueue script's flag (0 created, 1 duplicate by
        unique key, 2 or 3 this id was enqueued before)."""
        row: Row = [job_id]
        row += ["" if template.get(name) is None else str(template[name]) for name in TEMPLATE_FIELDS]
        # Sent as a repeat (a claim may be sent again after a lost reply), so
        # a run that has already been done and deleted is not created again.
        # The reply is {now, flag, id, x}.
        return Call(script("enqueue"), self.core.keys, [*enqueue_call_args([row]), 1], lambda r: int(r[1]))


def _group_of(groups: list[CronGroup], name: str) -> CronGroup:
    if not groups:
        raise CronNotFound(f"no cron group {name!r}")
    return groups[0]


def _tz(timezone: str | None) -> str | None:
    return None if timezone is None else validate_timezone(timezone)


class CronMethods:
    """The cron API of :class:`zizq.Client` (see the module docstring)."""

    if TYPE_CHECKING:
        core: Core

        def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    @property
    def _cron(self) -> CronCore:
        return CronCore(self.core)

    def replace_cron(
        self, group: str, entries: Sequence[CronEntry], *, timezone: str | None = None, paused: bool | None = None
    ) -> CronGroup:
        """Make ``group`` hold exactly ``entries``, atomically; call it at
        every start-up. Unchanged entries keep their schedule and paused
        state; changed ones start afresh; missing ones are deleted.
        ``timezone``: the group's default (None: UTC). ``paused``: True or
        False to pause or resume the group, None to leave it."""
        tz = _tz(timezone)
        now, _ = self.run(self._cron.read(group))
        self.run(self._cron.replace("replace", group, entries, now=now, group_tz=tz, paused=paused))
        return self.get_cron(group)

    def add_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """Add an entry (creating the group if needed); raises
        CronEntryExists if the group has an entry of that name."""
        return self._put(group, entry, "add")

    def put_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """Create or replace one entry (creating the group if needed); an
        unchanged entry keeps its schedule."""
        return self._put(group, entry, "put")

    def _put(self, group: str, entry: CronEntry, mode: str) -> CronEntryState:
        now, groups = self.run(self._cron.read(group))
        tz = groups[0].timezone if groups else None
        self.run(self._cron.replace(mode, group, [entry], now=now, group_tz=tz))
        return self.get_cron(group).entry(entry.name)

    def get_cron(self, group: str) -> CronGroup:
        """The group with its entries; raises CronNotFound."""
        return _group_of(self.run(self._cron.read(group))[1], group)

    def get_cron_entry(self, group: str, name: str) -> CronEntryState:
        """One entry; raises CronNotFound."""
        return self.get_cron(group).entry(name)

    def list_crons(self) -> list[CronGroup]:
        """Every cron group with its entries, sorted by name."""
        return self.run(self._cron.read(None))[1]

    def delete_cron(self, group: str) -> bool:
        """Delete a group and its entries; False if there was none."""
        return bool(self.run(self._cron.delete(group)))

    def delete_cron_entry(self, group: str, name: str) -> bool:
        """Delete one entry; False if there was none."""
        return bool(self.run(self._cron.delete(group, name)))

    def delete_all_crons(self) -> int:
        """Delete every cron group; return how many there were."""
        return self.run(self._cron.delete(None))

    def pause_cron(self, group: str) -> bool:
        """Pause a group: its due runs pass without enqueueing (no catch-up
        on resume). False if already paused; raises CronNotFound."""
        return self.run(self._cron.pause(True, group))

    def resume_cron(self, group: str) -> bool:
        """Resume a group. False if it was not paused; raises CronNotFound."""
        return self.run(self._cron.pause(False, group))

    def pause_cron_entry(self, group: str, name: str) -> bool:
        """Pause one entry (see :meth:`pause_cron`)."""
        return self.run(self._cron.pause(True, group, name))

    def resume_cron_entry(self, group: str, name: str) -> bool:
        """Resume one entry."""
        return self.run(self._cron.pause(False, group, name))


class AsyncCronMethods:
    """The cron API of :class:`zizq.AsyncClient`: as :class:`CronMethods`, awaited."""

    if TYPE_CHECKING:
        core: Core

        async def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    @property
    def _cron(self) -> CronCore:
        return CronCore(self.core)

    async def replace_cron(
        self, group: str, entries: Sequence[CronEntry], *, timezone: str | None = None, paused: bool | None = None
    ) -> CronGroup:
        """See :meth:`Client.replace_cron`."""
        tz = _tz(timezone)
        now, _ = await self.run(self._cron.read(group))
        await self.run(self._cron.replace("replace", group, entries, now=now, group_tz=tz, paused=paused))
        return await self.get_cron(group)

    async def add_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """See :meth:`Client.add_cron_entry`."""
        return await self._put(group, entry, "add")

    async def put_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """See :meth:`Client.put_cron_entry`."""
        return await self._put(group, entry, "put")

    async def _put(self, group: str, entry: CronEntry, mode: str) -> CronEntryState:
        now, groups = await self.run(self._cron.read(group))
        tz = groups[0].timezone if groups else None
        await self.run(self._cron.replace(mode, group, [entry], now=now, group_tz=tz))
        return (await self.get_cron(group)).entry(entry.name)

    async def get_cron(self, group: str) -> CronGroup:
        """See :meth:`Client.get_cron`."""
        return _group_of((await self.run(self._cron.read(group)))[1], group)

    async def get_cron_entry(self, group: str, name: str) -> CronEntryState:
        """See :meth:`Client.get_cron_entry`."""
        return (await self.get_cron(group)).entry(name)

    async def list_crons(self) -> list[CronGroup]:
        """See :meth:`Client.list_crons`."""
        return (await self.run(self._cron.read(None)))[1]

    async def delete_cron(self, group: str) -> bool:
        """See :meth:`Client.delete_cron`."""
        n: int = await self.run(self._cron.delete(group))
        return bool(n)

    async def delete_cron_entry(self, group: str, name: str) -> bool:
        """See :meth:`Client.delete_cron_entry`."""
        n: int = await self.run(self._cron.delete(group, name))
        return bool(n)

    async def delete_all_crons(self) -> int:
        """See :meth:`Client.delete_all_crons`."""
        return await self.run(self._cron.delete(None))

    async def pause_cron(self, group: str) -> bool:
        """See :meth:`Client.pause_cron`."""
        return await self.run(self._cron.pause(True, group))

    async def resume_cron(self, group: str) -> bool:
        """See :meth:`Client.resume_cron`."""
        return await self.run(self._cron.pause(False, group))

    async def pause_cron_entry(self, group: str, name: str) -> bool:
        """See :meth:`Client.pause_cron_entry`."""
        return await self.run(self._cron.pause(True, group, name))

    async def resume_cron_entry(self, group: str, name: str) -> bool:
        """See :meth:`Client.resume_cron_entry`."""
        return await self.run(self._cron.pause(False, group, name))


# -- the workers' tick --------------------------------------------------------


@dataclass
class CronStats:
    """What one worker's cron ticks did."""

    enqueued: int = 0  # runs this worker claimed and enqueued (duplicates by unique key included)
    skipped: int = 0  # runs this worker claimed while paused
    resent: int = 0  # stale claims of other workers this worker sent again


# What reading a stored definition (JSON of a dict, its expression, its
# time zone) raises when it was not written by zizq or is out of date.
_UNREADABLE = (ValueError, KeyError, TypeError)


def _stored_definition(raw: bytes | str) -> dict[str, Any]:
    d = orjson.loads(raw)
    if not isinstance(d, dict) or not isinstance(d.get("job"), dict):
        raise ValueError("not a JSON object with a job template")
    return d


async def _send(client: AsyncClient, cc: CronCore, job_id: str, raw: bytes | str) -> bool:
    """Enqueue one claimed run of a stored definition; True when it was. A
    definition that cannot be read, or a template the enqueue script
    refuses, is logged and its claim dropped (retrying cannot help); a lost
    connection (RedisUnavailable) propagates, and the claim is sent again
    later."""
    try:
        await client.run(cc.enqueue(job_id, _stored_definition(raw)["job"]), retry_for=0)
    except RedisUnavailable:
        raise
    except (ZizqError, *_UNREADABLE) as exc:
        log.error("cron job %s could not be enqueued and is dropped: %s", job_id, exc)
        return False
    return True


async def cron_tick(client: AsyncClient, stats: CronStats | None = None) -> float | None:
    """Do what is due: claim and enqueue due runs, send stale claims again.
    Returns seconds until the next run is due (0: look again at once; None:
    no entry has a next run). Raises TRANSIENT errors when Redis is
    unreachable; a claim whose enqueue did not go through is sent again by a
    later tick (after PENDING_GRACE_MS)."""
    stats = stats if stats is not None else CronStats()
    cc = CronCore(client.core)
    due = await client.run(cc.due(), retry_for=0)
    sent: list[str] = []
    if due.due:
        items = []
        for member, expected, raw in due.due:
            try:
                d = _stored_definition(raw)
                nxt = next_after(d["expression"], d["timezone"], due.now)
            except _UNREADABLE as exc:
                # Taken off the schedule (no next run), so it is not due
                # again and again; replacing the entry puts it back.
                log.error("cron entry %s cannot be read and is taken off the schedule until replaced: %s", member, exc)
                nxt = None
            items.append((member, expected, nxt, client.core.ids.generate()))
        outcomes = await client.run(cc.fire(items), retry_for=0)
        for (_, _, _, job_id), (outcome, definition) in zip(items, outcomes, strict=True):
            if outcome == 1:
                if await _send(client, cc, job_id, definition):
                    stats.enqueued += 1
                sent.append(job_id)
            elif outcome == 2:
                stats.skipped += 1
    if due.stale:
        claimed: list[str] = await client.run(cc.claim([(i, at) for i, at, _ in due.stale]), retry_for=0)
        taken = set(claimed)
        for job_id, _, raw in due.stale:
            if job_id in taken:
                if raw:
                    try:
                        record = orjson.loads(raw)
                        definition, member = record["definition"], record["member"]
                    except _UNREADABLE as exc:
                        log.error("cron job %s: its pending record cannot be read and is dropped: %s", job_id, exc)
                    else:
                        if await _send(client, cc, job_id, definition):
                            stats.resent += 1
                            log.warning("cron job %s (%s) was claimed but not confirmed: sent again", job_id, member)
                sent.append(job_id)
    if sent:
        await client.run(cc.done(sent), retry_for=0)
    if due.due:
        return 0.0  # the schedule moved on (or more is due): read it again
    if due.earliest is None:
        return None
    return max(0.0, (due.earliest - due.now) / 1000)


async def cron_loop(client: AsyncClient, stop: asyncio.Event, max_idle: float, stats: CronStats) -> None:
    """Run cron ticks until ``stop`` is set. Sleeps until the next due run,
    at most ``max_idle`` seconds (so schedule changes are seen within that)."""
    delays = retry_delays()
    while not stop.is_set():
        try:
            wait = await cron_tick(client, stats)
            delays = retry_delays()
        except TRANSIENT as exc:
            wait = next(delays)  # then at most max_idle, below
            # Not a warning: the worker's take loop reports the outage already.
            log.debug("cron tick skipped: redis unavailable (%s)", exc)
        except Exception:  # never take the worker down
            log.exception("cron tick failed")
            wait = max_idle
        wait = max_idle if wait is None else min(wait, max_idle)
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

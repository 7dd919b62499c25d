"""The cron calls: replace, read, pause and delete groups; the due, claim,
fire and confirm calls of the worker's tick; and how entries are stored
(templates and definitions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from zizq._protocol.call import Call, Value
from zizq._protocol.enqueue import EnqueueRow, enqueue_args
from zizq._protocol.jobs import Core, enqueue_call_args
from zizq._protocol.records import as_str
from zizq._protocol.scripts import script
from zizq.cron import CronEntry, CronEntryState, CronGroup, next_after, validate_expression, validate_timezone
from zizq.errors import CronNotFound, ValidationError
from zizq.job import JobKind, validate_name
from zizq.options import Enqueue

PENDING_GRACE_MS = 10_000
"""A pending claim (left by a worker older than claim-and-enqueue in one
script) not confirmed within this many ms is sent again by any worker's
tick (its worker is taken to have died)."""
DUE_BATCH = 100  # due entries handled per tick call

# The enqueue script's values of a job after the id (docs/protocol/scripts.md
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
    if len(args) > len(TEMPLATE_FIELDS) + 1:
        raise ValidationError("a cron job template cannot have a limit or a group")
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
    return {as_str(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def _decode_group(raw: list[Any]) -> CronGroup:
    name = as_str(raw[0])
    g = _pairs(raw[1])
    entries = []
    for e_name, definition, state_flat, next_run in raw[2]:
        d = orjson.loads(definition)
        st = _pairs(state_flat)
        entries.append(
            CronEntryState(
                group=name,
                name=as_str(e_name),
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
        timezone=as_str(g.get("tz", b"")) or None,
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
        due = [(as_str(reply[2][i]), int(reply[2][i + 1]), reply[2][i + 2]) for i in range(0, len(reply[2]), 3)]
        stale = [(as_str(reply[3][i]), int(reply[3][i + 1]), reply[3][i + 2]) for i in range(0, len(reply[3]), 3)]
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
        # The call id last: a repeat after a lost reply answers as the first send.
        args.append(self.core.ids.generate())
        return Call(script("cron_replace"), self.core.keys, args, lambda r: [int(x) for x in r])

    def delete(self, group: str | None, entry: str | None = None) -> Call[int]:
        g = "" if group is None else validate_name("cron group", group)
        e = "" if entry is None else validate_name("cron entry", entry)
        return Call(script("cron_delete"), self.core.keys, [g, e, self.core.ids.generate()], int)

    def pause(self, paused: bool, group: str, entry: str | None = None) -> Call[bool]:
        g = validate_name("cron group", group)
        e = "" if entry is None else validate_name("cron entry", entry)
        op = "pause" if paused else "resume"
        return Call(script("cron_pause"), self.core.keys, [op, g, e, self.core.ids.generate()], bool)

    def due(self, limit: int = DUE_BATCH, grace_ms: int = PENDING_GRACE_MS) -> Call[Due]:
        return Call(script("cron_due"), self.core.keys, [limit, grace_ms], Due.decode)

    def fire(self, items: Sequence[tuple[str, int, int | None, str]]) -> Call[list[tuple[int, str]]]:
        """Claim due runs ``(member, expected, next run or None, job id)``,
        at most DUE_BATCH, each claimed run enqueued in the same script;
        one ``(outcome, detail)`` per item (lua/cron_fire.lua)."""
        args: list[Value] = [len(items)]
        for member, expected, nxt, job_id in items:
            args += [member, expected, "" if nxt is None else nxt, job_id]
        return Call(script("cron_fire"), self.core.keys, args, lambda r: [(int(o), as_str(d)) for o, d in r])

    def done(self, ids: Sequence[str]) -> Call[int]:
        return Call(script("cron_sent"), self.core.keys, ["done", *ids], int)

    def claim(self, stale: Sequence[tuple[str, int]]) -> Call[list[str]]:
        args: list[Value] = ["claim"]
        for job_id, claimed_at in stale:
            args += [job_id, claimed_at]
        return Call(script("cron_sent"), self.core.keys, args, lambda r: [as_str(i) for i in r])

    def enqueue(self, job_id: str, template: dict[str, Any]) -> Call[int]:
        """Enqueue one run of a template with the id chosen at a pending
        claim (left by an older worker);
        the reply is the enqueue script's flag (0 created, 1 duplicate by
        unique key, 2 or 3 this id was enqueued before)."""
        row: EnqueueRow = [job_id]
        row += ["" if template.get(name) is None else str(template[name]) for name in TEMPLATE_FIELDS]
        # Sent as a repeat (a claim may be sent again after a lost reply), so
        # a run that has already been done and deleted is not created again.
        # The reply is {now, flag, id, x}.
        return Call(script("enqueue"), self.core.keys, [*enqueue_call_args([row]), 1], lambda r: int(r[1]))


def group_of(groups: list[CronGroup], name: str) -> CronGroup:
    if not groups:
        raise CronNotFound(f"no cron group {name!r}")
    return groups[0]


def checked_timezone(timezone: str | None) -> str | None:
    return None if timezone is None else validate_timezone(timezone)

"""Job filters: which jobs a list, count or bulk change applies to.

See :class:`Filter`; :mod:`zizq._protocol.query` says what each filter costs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from zizq.errors import ValidationError
from zizq.job import STATUSES, Job, validate_name
from zizq.options import epoch_ms

_TOP = 2**53  # above every stored number


@dataclass(frozen=True, slots=True)
class Range:
    """An inclusive range of integers; None is an open end."""

    lo: int | None = None
    hi: int | None = None

    def __str__(self) -> str:
        if self.lo is not None and self.lo == self.hi:
            return str(self.lo)
        return f"{'' if self.lo is None else self.lo}..{'' if self.hi is None else self.hi}"

    def bounds(self) -> list[int]:
        return [0 if self.lo is None else self.lo, _TOP if self.hi is None else self.hi]


def _bound(what: str, text: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return epoch_ms(value)
    if isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit()):
            raise ValidationError(f"{what} range {text!r}: {value!r} is not a whole number")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _TOP:
        raise ValidationError(f"{what} range {text!r}: {value!r} is not a whole number in 0..2**53")
    return int(value)


def parse_range(what: str, value: Any) -> Range | None:
    """A range from ``N``, ``"A..B"``, ``"..B"``, ``"A.."`` or a tuple ``(A, B)``
    (None for an open end; for ready_at, ints in ms or aware datetimes).
    Raises ValidationError naming the bad value; lower above upper is bad."""
    if value is None:
        return None
    text = repr(value)
    if isinstance(value, str):
        if ".." in value:
            lo_s, _, hi_s = value.partition("..")
            lo, hi = _bound(what, value, lo_s), _bound(what, value, hi_s)
        else:
            lo = hi = _bound(what, value, value)
            if lo is None:
                raise ValidationError(f"{what} range {value!r} is empty; give N, A..B, ..B or A..")
    elif isinstance(value, tuple) and len(value) == 2:
        lo, hi = _bound(what, text, value[0]), _bound(what, text, value[1])
    elif isinstance(value, Range):
        lo, hi = _bound(what, text, value.lo), _bound(what, text, value.hi)
    else:
        lo = hi = _bound(what, text, value)
    if lo is not None and hi is not None and lo > hi:
        raise ValidationError(f"{what} range {value!r}: lower end {lo} is above upper end {hi}")
    return Range(lo, hi)


def _set(what: str, value: Any, check: Callable[[str], str]) -> frozenset[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    out = set()
    for item in items:
        if not isinstance(item, str):
            raise ValidationError(f"{what} {item!r} is not a string")
        item = item.strip()
        if item:
            out.add(check(item))
    return frozenset(out)


def _status(name: str) -> str:
    name = name.replace("-", "_")
    if name == "inflight":
        name = "in_flight"
    if name not in STATUSES:
        raise ValidationError(f"status {name!r} is not one of {', '.join(STATUSES)}")
    return name


def job_id(value: str) -> str:
    base36 = isinstance(value, str) and value.isascii() and value.isalnum() and value == value.lower()
    if not base36 or len(value) != 25:
        raise ValidationError(f"job id {value!r} is not a zizq id (25 lowercase base-36 characters)")
    return value


class Filter:
    """Which jobs a query or bulk change applies to; every field given must
    match (AND), and a set matches any of its values (OR).

    ``id``, ``queue``, ``type``, ``status``: a comma-separated string or an
    iterable of strings (statuses: ready, scheduled, in_flight, completed,
    dead). ``priority``, ``ready_at`` (ms since the epoch, or aware
    datetimes), ``attempts``: ``N``, ``"A..B"``, ``"..B"``, ``"A.."`` or a
    tuple ``(A, B)`` with None for an open end; inclusive. ``jq``: an
    expression run on the payload; a job matches when it yields any value
    other than false and null (a runtime error is no match). Bad values raise
    :class:`zizq.ValidationError` naming them. An explicitly empty set
    matches nothing.
    """

    __slots__ = ("_program", "attempts", "ids", "jq", "priority", "queues", "ready_at", "statuses", "types")

    def __init__(
        self,
        *,
        id: str | Iterable[str] | None = None,
        queue: str | Iterable[str] | None = None,
        type: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        priority: Any = None,
        ready_at: Any = None,
        attempts: Any = None,
        jq: str | None = None,
    ) -> None:
        self.ids = _set("job id", id, job_id)
        self.queues = _set("queue", queue, lambda q: validate_name("queue", q))
        self.types = _set("job type", type, lambda t: validate_name("job type", t))
        self.statuses = _set("status", status, _status)
        self.priority = parse_range("priority", priority)
        self.ready_at = parse_range("ready_at", ready_at)
        self.attempts = parse_range("attempts", attempts)
        self.jq = jq
        self._program: Any = None
        if jq is not None:
            if not isinstance(jq, str) or not jq.strip():
                raise ValidationError(f"jq filter {jq!r} is not a jq expression")
            try:
                import jq as jq_module
            except ImportError:
                raise ValidationError("a jq filter needs the jq package: pip install 'zizq[jq]'") from None
            try:
                self._program = jq_module.compile(jq)
            except ValueError as exc:
                raise ValidationError(f"jq filter {jq!r} does not compile: {exc}") from None

    def __repr__(self) -> str:
        parts = [f"{k}={v!r}" for k, v in self.as_dict().items()]
        return f"Filter({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Filter) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(orjson.dumps(self.as_dict(), option=orjson.OPT_SORT_KEYS))

    def as_dict(self) -> dict[str, Any]:
        """The fields given, as plain values (sets as sorted lists, ranges as text)."""
        out: dict[str, Any] = {}
        for name, value in (("id", self.ids), ("queue", self.queues), ("type", self.types), ("status", self.statuses)):
            if value is not None:
                out[name] = sorted(value)
        for name, r in (("priority", self.priority), ("ready_at", self.ready_at), ("attempts", self.attempts)):
            if r is not None:
                out[name] = str(r)
        if self.jq is not None:
            out["jq"] = self.jq
        return out

    @property
    def matches_nothing(self) -> bool:
        return any(s is not None and not s for s in (self.ids, self.queues, self.types, self.statuses))

    @property
    def reads_records(self) -> bool:
        """Whether matching needs each job's record (not only the indexes)."""
        return any(x is not None for x in (self.types, self.priority, self.ready_at, self.attempts, self.jq))

    def script_json(self, statuses: frozenset[str] | None = None) -> str:
        """The filter as lua/includes/filter.lua reads it (no ids, no jq)."""
        f: dict[str, Any] = {}
        st = self.statuses if statuses is None else statuses
        for key, value in (("s", st), ("q", self.queues), ("t", self.types)):
            if value is not None:
                f[key] = sorted(value)
        for key, r in (("p", self.priority), ("r", self.ready_at), ("a", self.attempts)):
            if r is not None:
                f[key] = r.bounds()
        return orjson.dumps(f).decode() if f else "{}"

    def payload_matches(self, job: Job) -> bool:
        """Whether the job's payload passes the jq filter (True without one)."""
        if self._program is None:
            return True
        try:
            text = job.payload_json.decode() if job.payload_json is not None else "null"
            outputs = self._program.input_text(text).all()
        except ValueError:
            return False
        return any(v is not None and v is not False for v in outputs)


def as_filter(where: Filter | None, filters: dict[str, Any]) -> Filter:
    """``where``, or a Filter made from keyword arguments (not both)."""
    if where is not None:
        if filters:
            raise ValidationError(f"give a Filter or filter keywords, not both (got {sorted(filters)})")
        if not isinstance(where, Filter):
            raise ValidationError(f"{where!r} is not a zizq.Filter")
        return where
    return Filter(**filters)

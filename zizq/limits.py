"""Limits: at most N jobs running at once, at most R starts in any window of
``per`` seconds, held across every worker (and per key); and the live state
of a limit as :meth:`zizq.Client.limits` reads it.

A limit is named and stored in Redis (``set_limit``); a job is bound to it
by its JobKind's ``LIMIT`` (or ``enqueue(..., limit=...)``), per key by its
``limit_key()`` (or ``limit_key=``). The take script enforces it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from zizq.errors import ValidationError
from zizq.job import validate_name

QUEUE_LIMIT_PREFIX = "queue:"
"""A limit named ``queue:<name>`` holds for every job of that queue."""


def queue_limit(queue: str) -> str:
    """The name of the limit that holds for every job of ``queue``:
    ``"queue:<queue>"``."""
    return QUEUE_LIMIT_PREFIX + validate_name("queue", queue)


def _count(what: str, value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10**15 - 1:
        raise ValidationError(f"Limit {what} {value!r} is not a non-negative integer (or None for no {what})")
    return int(value)


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``concurrency`` jobs running at once, and at most ``rate``
    starts in any window of ``per`` seconds (a sliding window). Give at
    least one of the two; a limit bound per key holds per key."""

    concurrency: int | None = None
    rate: int | None = None
    per: float = 1.0
    """The rate window in seconds (above 0; held to the ms)."""

    def __post_init__(self) -> None:
        _count("concurrency", self.concurrency)
        _count("rate", self.rate)
        if self.concurrency is None and self.rate is None:
            raise ValidationError("a Limit needs a concurrency, a rate, or both")
        per = self.per
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not math.isfinite(per) or per <= 0:
            raise ValidationError(f"Limit per {per!r} is not a number of seconds above 0")
        if round(per * 1000) < 1 or per > 1e9:
            raise ValidationError(f"Limit per {per!r} must be 0.001..1e9 seconds")

    @property
    def per_ms(self) -> int:
        """The rate window in ms."""
        return round(self.per * 1000)

    def encode(self) -> list[str]:
        """The three values lua/limit_set.lua takes: concurrency, rate (``-``
        for none) and per_ms."""
        return [
            "-" if self.concurrency is None else str(self.concurrency),
            "-" if self.rate is None else str(self.rate),
            str(self.per_ms),
        ]

    @classmethod
    def decode(cls, text: str) -> Limit:
        """A limit as stored: ``"<concurrency> <rate> <per_ms>"``."""
        c, r, per = text.split(" ")
        return cls(None if c == "-" else int(c), None if r == "-" else int(r), int(per) / 1000)

    def __str__(self) -> str:
        parts = []
        if self.concurrency is not None:
            parts.append(f"{self.concurrency} at once")
        if self.rate is not None:
            parts.append(f"{self.rate} per {self.per:g}s")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class LimitKeyState:
    """One key of a limit: jobs in flight, and starts in the current rate
    window (0 without a rate). ``key`` is "" for a limit bound without a key."""

    key: str
    running: int
    starts: int


@dataclass(frozen=True, slots=True)
class LimitState:
    """A limit with its live state, as read at ``now_ms`` (Redis time).

    ``running``: jobs in flight under it, all keys together. ``waiting``:
    ready jobs the latest take that met the limit passed over for want of
    room (a take looks past at most 1,000). ``keys``: how many keys have
    jobs in flight; ``busiest``: the keys with the most in flight, each
    with its starts in the window.
    """

    name: str
    limit: Limit
    running: int
    waiting: int
    keys: int
    busiest: tuple[LimitKeyState, ...]
    now_ms: int

    @property
    def starts(self) -> int:
        """Starts in the current rate window, over the keys in ``busiest``."""
        return sum(k.starts for k in self.busiest)

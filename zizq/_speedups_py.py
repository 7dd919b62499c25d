"""The per-job client hot path, in pure Python.

This module is the typed contract for :mod:`zizq._speedups` (Cython): both
define the same names with the same signatures and give byte-identical
results. The rest of the package imports whichever :mod:`zizq._hotpath`
chose, never this module or the extension directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
import time
from typing import Any

import orjson

from zizq.errors import InvalidPayload

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
MAX_COUNTER = 0xFFFFFF  # counter_hi and counter_lo are 24 bits each
ROLLBACK_ALLOWANCE_MS = 10_000


def encode_id(timestamp: int, counter_hi: int, counter_lo: int, entropy: int) -> str:
    """The 25-character base-36 text of a SCRU128 id from its four fields.

    ``timestamp`` is 48 bits (ms since the epoch), the counters 24 bits each,
    ``entropy`` 32 bits.
    """
    if timestamp >> 48 or counter_hi >> 24 or counter_lo >> 24 or entropy >> 32:
        raise OverflowError(f"SCRU128 fields out of range: {(timestamp, counter_hi, counter_lo, entropy)!r}")
    n = (timestamp << 80) | (counter_hi << 56) | (counter_lo << 32) | entropy
    out = []
    for _ in range(25):
        n, d = divmod(n, 36)
        out.append(_DIGITS[d])
    return "".join(reversed(out))


class IdGenerator:
    """Makes SCRU128 ids: 25 lowercase base-36 characters, time-ordered.

    Ids made by one generator are strictly increasing; ids from different
    processes sort by their millisecond timestamps (client clocks).
    """

    def __init__(self) -> None:
        self._timestamp = 0
        self._counter_hi = 0
        self._counter_lo = 0
        self._ts_counter_hi = 0

    def generate(self) -> str:
        """A new id."""
        timestamp = time.time_ns() // 1_000_000
        if timestamp > self._timestamp:
            self._timestamp = timestamp
            self._counter_lo = random.getrandbits(24)
        elif timestamp + ROLLBACK_ALLOWANCE_MS >= self._timestamp:
            # The clock stood still or went back a little: keep counting on
            # the last timestamp so ids stay increasing.
            self._counter_lo += 1
            if self._counter_lo > MAX_COUNTER:
                self._counter_lo = 0
                self._counter_hi += 1
                if self._counter_hi > MAX_COUNTER:
                    self._counter_hi = 0
                    self._timestamp += 1
                    self._counter_lo = random.getrandbits(24)
        else:
            # The clock went back a long way: start afresh from it.
            self._timestamp = timestamp
            self._ts_counter_hi = 0
            self._counter_lo = random.getrandbits(24)
        if self._timestamp - self._ts_counter_hi >= 1000 or self._ts_counter_hi < 1:
            self._ts_counter_hi = self._timestamp
            self._counter_hi = random.getrandbits(24)
        return encode_id(self._timestamp, self._counter_hi, self._counter_lo, random.getrandbits(32))


def _reject_non_finite(value: Any) -> None:
    # orjson writes NaN and the infinities as null; JSON has no such numbers,
    # and a payload must round-trip exactly, so they are refused.
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload(f"payload contains {value!r}, which JSON cannot represent")
    elif isinstance(value, dict):
        for v in value.values():
            _reject_non_finite(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _reject_non_finite(v)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            _reject_non_finite(getattr(value, name))


def _fails(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return True
    return False


def _culprit(value: Any) -> str:
    """The repr of the first part of ``value`` that JSON cannot hold, for messages."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or _fails(k):
                return f"key {k!r:.200}"
            if _fails(v):
                return _culprit(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            if _fails(v):
                return _culprit(v)
    return f"{value!r:.200}"


def _where(value: Any) -> str:
    # The culprit for a message; a value nested past Python's recursion
    # limit (orjson stops at 255 levels) cannot even be repr()'d.
    try:
        return _culprit(value)
    except RecursionError:
        return "a value nested too deeply"


def encode_payload(value: Any) -> bytes:
    """The JSON bytes of a payload (compact, as orjson writes it).

    Raises :class:`zizq.InvalidPayload`, naming the offending value, for
    anything JSON cannot hold exactly: unknown types, integers beyond 64 bits,
    NaN and infinities, strings that are not valid Unicode.
    """
    try:
        data = orjson.dumps(value)
    except TypeError as exc:
        raise InvalidPayload(f"payload is not JSON-serialisable: {_where(value)}: {exc}") from None
    if b"null" in data:
        _reject_non_finite(value)
    return data


def _fields_of(value: Any) -> dict[str, Any]:
    """A dataclass as the dict of its fields, so its keys are sorted too
    (orjson writes a dataclass's fields in their declared order)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def canonical_json(value: Any) -> bytes:
    """Compact JSON with object keys sorted (dataclass fields included): the
    form unique keys hash."""
    try:
        data = orjson.dumps(value, default=_fields_of, option=CANONICAL)
    except TypeError as exc:
        raise InvalidPayload(f"unique key value is not JSON-serialisable: {_where(value)}: {exc}") from None
    if b"null" in data:
        _reject_non_finite(value)
    return data


def hash_of(value: Any) -> str:
    """Lowercase hex SHA-256 of :func:`canonical_json` of ``value`` (64 chars)."""
    return hashlib.sha256(canonical_json(value)).hexdigest()

# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-job client hot path, compiled. See zizq/_speedups_py.py, the
pure-Python twin, for the contract: the same names, signatures and bytes."""

import hashlib
import random
import time

import orjson

from ._speedups_py import CANONICAL, _culprit, _fields_of, _reject_non_finite
from .errors import InvalidPayload

ctypedef unsigned long long u64

cdef const char* DIGITS = b"0123456789abcdefghijklmnopqrstuvwxyz"
cdef u64 MAX_COUNTER = 0xFFFFFF
cdef u64 ROLLBACK_ALLOWANCE_MS = 10000
cdef object _getrandbits = random.getrandbits
cdef object _time_ns = time.time_ns
cdef object _dumps = orjson.dumps
cdef int _CANONICAL = CANONICAL
cdef object _sha256 = hashlib.sha256


cdef str _encode(u64 timestamp, u64 counter_hi, u64 counter_lo, u64 entropy):
    # The 128-bit id as four 32-bit limbs, most significant first, divided
    # by 36 twenty-five times.
    cdef u64 limbs[4]
    cdef char out[25]
    if timestamp >> 48 or counter_hi >> 24 or counter_lo >> 24 or entropy >> 32:
        raise OverflowError(f"SCRU128 fields out of range: {(timestamp, counter_hi, counter_lo, entropy)!r}")
    cdef u64 rem
    cdef int i, j
    limbs[0] = (timestamp >> 16) & 0xFFFFFFFF
    limbs[1] = ((timestamp & 0xFFFF) << 16) | (counter_hi >> 8)
    limbs[2] = ((counter_hi & 0xFF) << 24) | counter_lo
    limbs[3] = entropy & 0xFFFFFFFF
    for i in range(24, -1, -1):
        rem = 0
        for j in range(4):
            rem = (rem << 32) | limbs[j]
            limbs[j] = rem // 36
            rem = rem % 36
        out[i] = DIGITS[rem]
    return out[:25].decode("ascii")


def encode_id(timestamp: int, counter_hi: int, counter_lo: int, entropy: int) -> str:
    return _encode(timestamp, counter_hi, counter_lo, entropy)


cdef class IdGenerator:
    cdef u64 _timestamp
    cdef u64 _counter_hi
    cdef u64 _counter_lo
    cdef u64 _ts_counter_hi

    def __init__(self):
        self._timestamp = 0
        self._counter_hi = 0
        self._counter_lo = 0
        self._ts_counter_hi = 0

    def generate(self) -> str:
        cdef u64 timestamp = _time_ns() // 1000000
        if timestamp > self._timestamp:
            self._timestamp = timestamp
            self._counter_lo = _getrandbits(24)
        elif timestamp + ROLLBACK_ALLOWANCE_MS >= self._timestamp:
            self._counter_lo += 1
            if self._counter_lo > MAX_COUNTER:
                self._counter_lo = 0
                self._counter_hi += 1
                if self._counter_hi > MAX_COUNTER:
                    self._counter_hi = 0
                    self._timestamp += 1
                    self._counter_lo = _getrandbits(24)
        else:
            self._timestamp = timestamp
            self._ts_counter_hi = 0
            self._counter_lo = _getrandbits(24)
        if self._timestamp - self._ts_counter_hi >= 1000 or self._ts_counter_hi < 1:
            self._ts_counter_hi = self._timestamp
            self._counter_hi = _getrandbits(24)
        return _encode(self._timestamp, self._counter_hi, self._counter_lo, _getrandbits(32))


def _where(value):
    # The culprit for a message; a value nested past Python's recursion
    # limit (orjson stops at 255 levels) cannot even be repr()'d.
    try:
        return _culprit(value)
    except RecursionError:
        return "a value nested too deeply"


def encode_payload(value) -> bytes:
    cdef bytes data
    try:
        data = _dumps(value)
    except TypeError as exc:
        raise InvalidPayload(f"payload is not JSON-serialisable: {_where(value)}: {exc}") from None
    if b"null" in data:
        _reject_non_finite(value)
    return data


def canonical_json(value) -> bytes:
    cdef bytes data
    try:
        data = _dumps(value, default=_fields_of, option=_CANONICAL)
    except TypeError as exc:
        raise InvalidPayload(f"unique key value is not JSON-serialisable: {_where(value)}: {exc}") from None
    if b"null" in data:
        _reject_non_finite(value)
    return data


def hash_of(value) -> str:
    return _sha256(canonical_json(value)).hexdigest()

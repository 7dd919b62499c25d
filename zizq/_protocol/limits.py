"""The limit calls (lua/limit_set.lua, limit_delete.lua, limit_read.lua)
and defer (lua/defer.lua, what a handler's zizq.RateLimited asks for),
built without I/O. The enqueue values that bind a job to a limit and a
group are planned with the rest of an enqueue (zizq._protocol.enqueue)."""

from __future__ import annotations

from typing import Any

from zizq._protocol.call import Call
from zizq._protocol.records import as_str, job_from_record
from zizq._protocol.scripts import script
from zizq.errors import ValidationError
from zizq.job import Job, validate_name
from zizq.limits import Limit, LimitKeyState, LimitState

BUSIEST = 10  # keys reported per limit by limits()


def set_limit(keys: tuple[str, ...], name: str, limit: Limit) -> Call[bool]:
    """Create or change a limit; the reply says whether it is new."""
    validate_name("limit name", name)
    if not isinstance(limit, Limit):
        raise ValidationError(f"limit {limit!r} is not a zizq.Limit")
    return Call(script("limit_set"), keys, [name, *limit.encode()], lambda r: int(r) == 1)


def delete_limit(keys: tuple[str, ...], name: str) -> Call[bool]:
    """Delete a limit; the reply says whether it existed."""
    validate_name("limit name", name)
    return Call(script("limit_delete"), keys, [name], lambda r: int(r) == 1)


def read_limits(keys: tuple[str, ...], busiest: int = BUSIEST) -> Call[list[LimitState]]:
    """Every limit with its live state, sorted by name."""
    return Call(script("limit_read"), keys, [busiest], _decode_limits)


def _decode_limits(reply: list[Any]) -> list[LimitState]:
    now = int(reply[0])
    out = []
    for i in range(1, len(reply), 3):
        state = reply[i + 2]
        per_key = tuple(
            LimitKeyState(as_str(state[j]), int(state[j + 1]), int(state[j + 2])) for j in range(3, len(state), 3)
        )
        out.append(
            LimitState(
                name=as_str(reply[i]),
                limit=Limit.decode(as_str(reply[i + 1])),
                running=int(state[0]),
                waiting=int(state[1]),
                keys=int(state[2]),
                busiest=per_key,
                now_ms=now,
            )
        )
    return out


def defer(
    keys: tuple[str, ...], worker_id: str, job_id: str, retry_in_ms: int, dequeued_at: int | None
) -> Call[Job | None]:
    """Put a job this worker holds back to wait ``retry_in_ms``, without
    using an attempt; the reply is the job after it, or None when the worker
    no longer holds it."""
    da = "" if dequeued_at is None else str(dequeued_at)
    return Call(
        script("defer"),
        keys,
        [worker_id, job_id, da, retry_in_ms],
        lambda r: None if r is None else job_from_record(job_id, r),
    )

"""Waiting for a job to finish, as a plan both clients drive.

``wait`` sends lua/wait.lua once: a finished job comes back at once;
otherwise the script counts the caller among the job's waiters, and the
caller blocks on the list ``waited:<id>`` (BLPOP) until the script that
ends the job pushes a token there, or the timeout runs out; after a token
(or a lost connection) it sends the script again, which reads the job.
Nothing polls: a waiter costs one blocked connection. A BLPOP is cut into
slices shorter than the connection's socket timeout (each slice is one more
BLPOP, not a look at the job).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from zizq._protocol.call import Call
from zizq._protocol.jobs import Core
from zizq._protocol.records import as_str, job_from_record
from zizq._protocol.scripts import script
from zizq.errors import JobNotFound, ValidationError, WaitTimeout
from zizq.job import DEFAULT_PRIORITY, DEFAULT_QUEUE, ErrorRecord, Job, JobStatus


@dataclass(frozen=True, slots=True)
class Block:
    """A step of the plan: BLPOP ``key`` for up to ``seconds``; the plan
    receives the token (text), None on a timeout, or LOST when the
    connection failed."""

    key: str
    seconds: float


LOST = object()  # what a front door sends back for a Block whose connection failed (as a token: look again)
Step = Call[Any] | Block
WaitPlan = Generator[Step, Any, Job]


@dataclass(frozen=True, slots=True)
class WaitState:
    """lua/wait.lua's reply: the finished job, or that the caller waits, or
    the job's done-window mark when it is gone."""

    job: Job | None
    waiting: bool
    gone: str

    @classmethod
    def decoder(cls, job_id: str) -> Any:
        def decode(reply: list[Any]) -> WaitState:
            state = as_str(reply[0])
            if state == "done":
                job = job_from_record(job_id, reply[1])
                job.last_error = ErrorRecord.from_json(reply[2]) if reply[2] else None
                return cls(job, False, "")
            return cls(None, state == "wait", as_str(reply[1]))

        return decode


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` (seconds, or None for no limit) checked: raises
    ValidationError for a negative, non-finite or non-numeric one."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout < 0:
        raise ValidationError(f"wait timeout {timeout!r} is not a number of seconds >= 0 (or None for no limit)")
    return float(timeout)


def _without_record(job_id: str, how: str) -> Job:
    """The job a waiter reports when its record is gone, by its mark in the
    done window: completed (``f``) or dead (``x``) and deleted at once (a
    retention of 0; only ``id`` and ``status`` are known, ``type`` is ''),
    or JobNotFound (``d``: deleted or purged; none: never there)."""
    if how in ("f", "x"):
        status: JobStatus = "completed" if how == "f" else "dead"
        return Job(job_id, "", DEFAULT_QUEUE, DEFAULT_PRIORITY, status, 0)
    if how == "d":
        raise JobNotFound(f"job {job_id!r} was deleted (by hand, or purged) before it was seen finished")
    raise JobNotFound(f"no job with id {job_id!r}")


def wait_plan(core: Core, job_id: str, timeout: float | None, slice_seconds: float) -> WaitPlan:
    """Wait until job ``job_id`` is completed or dead, for up to ``timeout``
    seconds (None: no limit); return it (with its result, or as dead with
    its last error in ``last_error``). Raises WaitTimeout, JobNotFound (no such
    job, or deleted meanwhile), ValidationError (a bad timeout).
    ``slice_seconds``: the longest single BLPOP (below the socket timeout)."""
    timeout = check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    ask = Call(script("wait"), core.keys, [job_id], WaitState.decoder(job_id))
    while True:
        state: WaitState = yield ask
        if state.job is not None:
            return state.job
        if not state.waiting:
            return _without_record(job_id, state.gone)
        while True:
            left = slice_seconds if deadline is None else min(slice_seconds, deadline - time.monotonic())
            if left <= 0:
                raise WaitTimeout(f"job {job_id!r} did not finish within the timeout of {timeout:g}s")
            token = yield Block(core.key("waited", job_id), left)
            if token is not None:
                # The job ended (or the connection was lost, with the token
                # perhaps): the script reads it, with a dead job's last error.
                break


def blpop_seconds(seconds: float) -> float:
    """A BLPOP timeout for ``seconds``: Redis counts in seconds with ms
    precision, and 0 would mean no limit."""
    return max(round(seconds, 3), 0.001)

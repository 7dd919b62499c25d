"""What the worker's lease calls reply: a take (the jobs now in flight) and
a heartbeat (the lease kept or lost, jobs of lost workers recovered); and
the grouping of held jobs by owner that ack and release take."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zizq._protocol.records import as_str, job_from_record
from zizq.job import (
    Job,
)


def by_owner(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """(owner, job id) pairs as each owner's job ids: what ack and release take."""
    out: dict[str, list[str]] = {}
    for owner, job_id in pairs:
        out.setdefault(owner, []).append(job_id)
    return out


@dataclass(slots=True)
class Heartbeat:
    """What a heartbeat did: whether this worker still holds its lease, how
    many jobs of lost workers it handed back or failed as poison pills, and
    the ids of this worker's jobs cancelled since its last heartbeat."""

    lost: bool
    recovered: int
    failed: int
    cancelled: list[str] = field(default_factory=list)

    @classmethod
    def decode(cls, reply: list[Any]) -> Heartbeat:
        cancelled = [as_str(i) for i in reply[3]] if len(reply) > 3 else []
        return cls(as_str(reply[0]) == "lost", int(reply[1]), int(reply[2]), cancelled)


@dataclass(slots=True)
class TakeResult:
    """What a take returned: jobs now in flight, and when to look again."""

    now: int
    next_due: int | None
    more: bool
    jobs: list[Job]
    broken: list[tuple[str, str]]  # (id, why) of jobs taken whose records could not be read
    held_back: bool = False  # took a recovered job (a suspect) or stopped before one: take again once it started

    @classmethod
    def decode(cls, reply: list[Any]) -> TakeResult:
        jobs, broken = [], []
        for i in range(3, len(reply), 2):
            try:
                jobs.append(job_from_record(reply[i], reply[i + 1]))
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                broken.append((as_str(reply[i]), repr(exc)))
        next_due = int(reply[1])
        more = int(reply[2])
        return cls(int(reply[0]), None if next_due < 0 else next_due, more > 0, jobs, broken, more == 2)

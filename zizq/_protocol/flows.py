"""Workflows, I/O-free: the enqueue values of jobs that wait for others
(``depends_on``) or join a batch, and the batch calls (open, close, read).

A job with neither is enqueued by lua/enqueue.lua as before; as soon as one
job of a call has either, the call goes to lua/flow_enqueue.lua, whose rows
carry three more values (see its header). The scripts that finish jobs
release dependents and count batch members (lua/includes/flow.lua).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import msgpack

from zizq._protocol.call import Call, Value
from zizq._protocol.enqueue import EnqueueRow, plan_enqueue
from zizq._protocol.records import as_str
from zizq._protocol.scripts import script
from zizq.errors import ValidationError
from zizq.job import Job, JobKind
from zizq.options import Enqueue

MAX_DEPENDENCIES = 100  # per job (lua/flow_enqueue.lua refuses more)
DRAIN_BATCH = 500  # dependents released per flow_drain call: a few ms
LIST_LIMIT = 500  # batches per list call (lua/batches.lua)
FAILURE_MODES = ("dead", "run")
ENQUEUE_WIDTH = 14  # enqueue values of a job without a limit or a group
LANES_END = 17  # ... then its limit, limit_key and group (lua/enqueue.lua)


def _dependency_id(dep: Any, earlier: dict[int, str]) -> str:
    if isinstance(dep, Job):
        return dep.id
    if isinstance(dep, Enqueue):
        if id(dep) not in earlier:
            raise ValidationError(
                "an Enqueue in depends_on must be an item placed before this one in the same enqueue_many call"
            )
        return earlier[id(dep)]
    if not isinstance(dep, str) or not dep or any(c.isspace() for c in dep):
        raise ValidationError(f"depends_on entry {dep!r} is not a job id, a zizq.Job or an earlier zizq.Enqueue")
    return dep


def flow_rows(items: Sequence[Enqueue | JobKind], rows: Sequence[EnqueueRow]) -> list[EnqueueRow] | None:
    """The rows of lua/flow_enqueue.lua (depends_on, on_dependency_failure
    and the batch id, then enqueue's 14 values) when any item has a
    dependency or a batch; None when none has (lua/enqueue.lua then takes
    the call). Raises ValidationError naming a bad value."""
    if not any(isinstance(i, Enqueue) and (i.depends_on or i.batch_id or i.on_dependency_failure) for i in items):
        return None
    earlier: dict[int, str] = {}
    out = []
    for item, row in zip(items, rows, strict=True):
        job_id = str(row[0])
        deps: list[str] = []
        mode = ""
        batch = ""
        if isinstance(item, Enqueue):
            for dep in item.depends_on or ():
                dep_id = _dependency_id(dep, earlier)
                if dep_id == job_id:
                    raise ValidationError(f"job {job_id} cannot depend on itself")
                if dep_id not in deps:
                    deps.append(dep_id)
            if len(deps) > MAX_DEPENDENCIES:
                raise ValidationError(f"depends_on has {len(deps)} jobs; at most {MAX_DEPENDENCIES}")
            failure = item.on_dependency_failure
            if failure is not None and failure not in FAILURE_MODES:
                raise ValidationError(f"on_dependency_failure {failure!r} is not 'dead' or 'run'")
            mode = "run" if failure == "run" else ""
            batch = item.batch_id or ""
            earlier[id(item)] = job_id
        if any(row[ENQUEUE_WIDTH:LANES_END]):
            raise ValidationError(f"job {job_id}: a job with a limit or a group cannot have depends_on or a batch yet")
        # The trace context zizq.otel may have added (value 18) is not kept.
        out.append([" ".join(deps), mode, batch, *row[:ENQUEUE_WIDTH]])
    return out


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch, as read from Redis. Times are ms since the epoch.

    ``total`` members so far, of which ``completed`` and ``dead`` have
    finished (a member deleted before it finished counts as dead);
    ``closed`` once it takes no new member; ``finished_at`` once closed
    with every member finished. The callbacks are the ids of their jobs
    (None when not given), and ``fired`` names those enqueued so far.
    """

    id: str
    total: int
    completed: int
    dead: int
    closed: bool
    created_at: int
    finished_at: int | None
    parent: str | None
    on_success: str | None
    on_complete: str | None
    on_dead: str | None
    fired: tuple[str, ...]

    @property
    def pending(self) -> int:
        """Members that have not finished yet."""
        return self.total - self.completed - self.dead

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @classmethod
    def decode(cls, entry: list[Any]) -> BatchInfo:
        def text(v: Any) -> str | None:
            return None if v is None else as_str(v)

        fired = tuple(
            name for name, at in zip(("on_success", "on_complete", "on_dead"), entry[11:14], strict=True) if at
        )
        return cls(
            id=as_str(entry[0]),
            total=int(entry[1]),
            completed=int(entry[2]),
            dead=int(entry[3]),
            closed=as_str(entry[4]) == "1",
            created_at=int(entry[5]),
            finished_at=None if entry[6] is None else int(entry[6]),
            parent=text(entry[7]),
            on_success=text(entry[8]),
            on_complete=text(entry[9]),
            on_dead=text(entry[10]),
            fired=fired,
        )

    def to_dict(self) -> dict[str, Any]:
        """The batch as JSON-ready data, with ``pending``."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["fired"] = list(self.fired)
        out["pending"] = self.pending
        return out


Callback = JobKind | Enqueue | None


class FlowCore:
    """The workflow calls of one namespace (keys from the namespace's Core)."""

    def __init__(self, keys: tuple[str, ...], ids: Any) -> None:
        self.keys = keys
        self.ids = ids

    def new_id(self) -> str:
        return str(self.ids.generate())

    def _callback(self, name: str, item: Callback) -> bytes | str:
        if item is None:
            return ""
        if not isinstance(item, (JobKind, Enqueue)):
            raise ValidationError(f"{name} {item!r} is not a zizq.JobKind instance or a zizq.Enqueue")
        if isinstance(item, Enqueue) and (item.depends_on or item.batch_id):
            raise ValidationError(f"the {name} callback cannot have depends_on or a batch")
        row, _ = plan_enqueue(item, self.ids)
        if len(row) > ENQUEUE_WIDTH:
            raise ValidationError(f"the {name} callback cannot have a limit or a group yet")
        return msgpack.packb(row, use_bin_type=False)  # type: ignore[no-any-return]

    def open(
        self, batch_id: str, parent: str | None, on_success: Callback, on_complete: Callback, on_dead: Callback
    ) -> Call[bool]:
        """Create the batch (lua/batch_open.lua); True when made, False when
        it existed (a repeat)."""
        args: list[Value] = [
            batch_id,
            parent or "",
            self._callback("on_success", on_success),
            self._callback("on_complete", on_complete),
            self._callback("on_dead", on_dead),
        ]
        return Call(script("batch_open"), self.keys, args, bool)

    def close(self, batch_id: str) -> Call[BatchInfo]:
        return Call(script("batch_close"), self.keys, [batch_id], BatchInfo.decode)

    def get(self, ids: Sequence[str]) -> Call[list[BatchInfo]]:
        return Call(script("batches"), self.keys, ["get", *ids], lambda r: [BatchInfo.decode(e) for e in r])

    def list(self, offset: int, limit: int) -> Call[list[BatchInfo]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT:
            raise ValidationError(f"limit {limit!r} is not a whole number in 1..{LIST_LIMIT}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValidationError(f"offset {offset!r} is not a whole number, 0 or more")
        return Call(script("batches"), self.keys, ["list", offset, limit], lambda r: [BatchInfo.decode(e) for e in r])

    def drain(self, count: int = DRAIN_BATCH) -> Call[int]:
        """Release up to ``count`` queued dependents (lua/flow_drain.lua);
        returns how many finished jobs still have some to release."""
        return Call(script("flow_drain"), self.keys, [count], int)

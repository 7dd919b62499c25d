"""The router `zizq worker` runs in bench/workloads.py's "processes" workload:
the benchmark's job kind (the same NAME and fields as in workloads.py) with a
no-op handler. Imported by the worker processes from bench/."""

from __future__ import annotations

import zizq


class BenchJob(zizq.JobKind):
    NAME = "bench"
    n: int
    s: str


router = zizq.Router()


@router.handler
async def noop(job: BenchJob) -> None:
    return None

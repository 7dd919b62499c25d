"""Several workers in one process: one per namespace, typically.

Leases, takes and acks are per namespace (each namespace is one hash slot,
on one Redis Cluster shard), so a process that serves queues of several
namespaces runs one :class:`zizq.Worker` for each, side by side in one event
loop, and stops them together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from zizq.errors import ValidationError
from zizq.worker.stop import run_until_signalled
from zizq.worker.worker import Worker


class WorkerGroup:
    """Runs ``workers`` (each with its own namespace, client and options)
    together until SIGINT or SIGTERM (or :meth:`stop`); a stop reaches every
    one of them. If one worker fails, the others are stopped gracefully and
    the error is raised."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        if not workers:
            raise ValidationError("a WorkerGroup needs at least one worker")
        self.workers = list(workers)

    @property
    def forced(self) -> bool:
        """A second stop abandoned running handlers in some worker."""
        return any(w.forced for w in self.workers)

    def run(self) -> None:
        """Run until SIGINT or SIGTERM, then shut every worker down
        gracefully. Blocks."""
        run_until_signalled(self.run_async, self.stop)

    def stop(self) -> None:
        """Ask every worker to stop (a second call stops them at once); see
        :meth:`zizq.Worker.stop`."""
        for worker in self.workers:
            worker.stop()

    async def run_async(self) -> None:
        """Run in the current event loop until :meth:`stop` is called."""
        tasks = [asyncio.create_task(w.run_async()) for w in self.workers]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if not t.cancelled() and t.exception() is not None]
        if failed:
            for worker in self.workers:
                if not worker.stopping:  # graceful: a stop asked for already is not made a forced one
                    worker.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        if failed:
            raise failed[0].exception()  # type: ignore[misc]

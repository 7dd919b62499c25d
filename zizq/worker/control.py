"""What the worker keeps per running job for its handler: the progress it
reports (written coalesced) and whether the job was cancelled.

A :class:`JobControl` is what :func:`zizq.progress` and
:func:`zizq.cancelled` reach through ``zizq.current.current``. Progress
reports are kept in memory and written (lua/progress.lua) at most once
every ``PROGRESS_EVERY`` seconds per job, from the event loop; the last
one is written by :meth:`JobControl.flush` before the job's outcome is
sent. A cancel (the heartbeat reply names the job) sets a flag a sync
handler reads, and cancels an async handler's task.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Protocol

from zizq._protocol.call import Call
from zizq._protocol.jobs import Core
from zizq.job import Job

log = logging.getLogger("zizq.worker")
PROGRESS_EVERY = 0.5  # seconds: the most often one job's progress is written


class Caller(Protocol):
    """What a JobControl uses of the run (:class:`zizq.worker.run.Run`)."""

    core: Core

    async def call(self, call: Call[Any]) -> Any:
        """Send a script call, retrying while Redis cannot be reached."""


class JobControl:
    """The progress and cancel state of one job run by ``owner`` (made in
    the event loop ``loop``; :meth:`report` and :meth:`is_cancelled` are
    safe from any thread)."""

    def __init__(self, run: Caller, owner: str, job: Job, loop: asyncio.AbstractEventLoop) -> None:
        self.run = run
        self.owner = owner
        self.job = job
        self.loop = loop
        self.task: asyncio.Task[Any] | None = None  # the job's task, cancelled for an async handler
        self.is_async = False  # set once the handler is known
        self.result: Any = None  # what the handler returned
        self._cancelled = False  # a bool: set in the event loop, read from the handler's thread
        self.reported = False  # whether the handler reported progress at all
        self._lock = threading.Lock()
        self._pending: tuple[float, str | None] | None = None  # the report not written yet
        self._timer: asyncio.TimerHandle | None = None
        self._written_at = 0.0  # time.monotonic() of the last write
        self._writing: asyncio.Task[Any] | None = None

    # -- cancel --------------------------------------------------------

    def is_cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """The job was cancelled in Redis (in the event loop): flag it, and
        cancel an async handler's task (a sync handler's thread cannot be
        stopped; it reads the flag)."""
        self._cancelled = True
        if self.is_async and self.task is not None and not self.task.done():
            self.task.cancel("zizq: job cancelled")

    # -- progress ------------------------------------------------------

    def report(self, fraction: float, message: str | None) -> None:
        """Keep the latest report; a write is planned if none is (from any
        thread: the handler's)."""
        with self._lock:
            first = self._pending is None
            self._pending = (fraction, message)
            self.reported = True
        if first:
            self.loop.call_soon_threadsafe(self._plan)

    def _plan(self) -> None:
        if self._timer is not None or self._pending is None:
            return
        delay = max(0.0, self._written_at + PROGRESS_EVERY - time.monotonic())
        self._timer = self.loop.call_later(delay, self._write_now)

    def _write_now(self) -> None:
        self._timer = None
        if self._writing is not None and not self._writing.done():
            self._timer = self.loop.call_later(PROGRESS_EVERY, self._write_now)  # one write at a time
            return
        self._writing = asyncio.ensure_future(self._write())

    async def _write(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        self._written_at = time.monotonic()
        job = self.job
        try:
            await self.run.call(self.run.core.progress(self.owner, job.id, *pending, job.dequeued_at))
        except Exception as exc:  # progress is best effort: a report never fails a job
            log.debug("job %s: progress not written (%s)", job.id, exc)

    async def flush(self) -> None:
        """Write the last report now, if any is not written (before the
        job's outcome is sent, so the record keeps it)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            await asyncio.gather(self._writing, return_exceptions=True)
        if self._pending is not None:
            await self._write()

"""Helpers for your own tests: run the jobs a test enqueued, in the test's
process, with the real worker.

::

    def test_signup(client: zizq.Client) -> None:
        signup(client, "ada@example.com")             # enqueues a SendEmail
        assert zizq.testing.drain(client, router) == 1

:func:`drain` starts a :class:`zizq.Worker` in the current process, lets it
take and run jobs until none is ready or in flight, stops it and says how
many ran. Handlers run exactly as in production (thread pool, middleware,
events, timeouts, acks); only the stopping is the test's.

:class:`RedisServer` starts a throwaway ``redis-server`` for a test session
(or a benchmark) on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from zizq import events
from zizq.client.aio import AsyncClient
from zizq.client.sync import Client
from zizq.errors import ValidationError, ZizqError
from zizq.filters import Filter
from zizq.job import Job
from zizq.router import Router
from zizq.worker.worker import Worker

__all__ = ["DrainTimeout", "Failure", "JobsFailed", "RedisServer", "drain", "drain_async"]

# Seconds between two looks at Redis for jobs left to run.
POLL = 0.005


@dataclass(frozen=True)
class Failure:
    """A job whose handler raised during a drain."""

    job: Job
    error: BaseException
    dead: bool  # True: no retry is left (or KillJob); False: a retry is scheduled


class JobsFailed(ZizqError):
    """Handlers raised during :func:`drain`. ``failures`` lists them in the
    order they failed; ``ran`` is how many jobs ran in all. The first
    failure's exception is the ``__cause__``, so its traceback shows."""

    def __init__(self, failures: list[Failure], ran: int) -> None:
        self.failures = failures
        self.ran = ran
        listed = "; ".join(f"{f.job.id} ({f.job.type}): {type(f.error).__name__}: {f.error}" for f in failures[:5])
        more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
        super().__init__(f"{len(failures)} of {ran} jobs failed: {listed}{more}")


class DrainTimeout(ZizqError, TimeoutError):
    """:func:`drain` ran out of time with jobs still to run. ``ran`` jobs ran
    before the worker was stopped."""

    def __init__(self, message: str, ran: int) -> None:
        super().__init__(message)
        self.ran = ran


def drain(
    client: Client | AsyncClient,
    router: Router,
    queues: Sequence[str] | None = None,
    *,
    timeout: float = 10.0,
    include_scheduled: bool = False,
    retries: bool = False,
    raise_errors: bool = True,
    concurrency: int = 1,
) -> int:
    """Run the jobs of ``queues`` (None: every queue) with ``router``'s
    handlers in this process until none is ready or in flight; return how
    many ran (completed or failed). Blocks; in async code, use
    :func:`drain_async`.

    Jobs that the handlers enqueue are run too, if they are in ``queues``.
    The worker is a real :class:`zizq.Worker` (no cron) with ``concurrency``
    handlers at once and as many jobs taken (1: jobs run one at a time, in
    dispatch order); the client must be made with ``from_url``.

    :param timeout: seconds the whole drain may take; past it the worker is
        stopped at once (running handlers are abandoned) and
        :class:`DrainTimeout` is raised.
    :param include_scheduled: also wait for jobs scheduled for later
        (``delay``, ``ready_at``) to fall due and run them, within ``timeout``.
        Retries are not waited for.
    :param retries: run a failed job's retry at once instead of leaving it
        scheduled (its backoff is skipped), until it succeeds or is dead. A
        handler that always raises ``RetryJob`` then runs until the timeout.
    :param raise_errors: if a handler raised, raise :class:`JobsFailed`
        (after the drain) rather than count the job and go on quietly.

    While any job of the namespace is in flight, in any queue, the drain
    goes on waiting: its check reads Redis's counts in one atomic call.
    Jobs of a paused queue do not run, so a drain waiting for them times out.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(
            drain_async(
                client,
                router,
                queues,
                timeout=timeout,
                include_scheduled=include_scheduled,
                retries=retries,
                raise_errors=raise_errors,
                concurrency=concurrency,
            )
        )
    raise ZizqError("drain() blocks, and an event loop is running here: use await zizq.testing.drain_async(...)")


async def drain_async(
    client: Client | AsyncClient,
    router: Router,
    queues: Sequence[str] | None = None,
    *,
    timeout: float = 10.0,
    include_scheduled: bool = False,
    retries: bool = False,
    raise_errors: bool = True,
    concurrency: int = 1,
) -> int:
    """The asyncio twin of :func:`drain`: the worker runs in the current
    event loop."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValidationError(f"timeout {timeout!r} must be a number of seconds above 0")
    # prefetch = concurrency: a job a handler enqueues goes before waiting
    # jobs of a lower priority, as dispatch order says, not after jobs held.
    worker = Worker(client, router, queues, concurrency, concurrency, cron=False, shutdown_timeout=timeout)
    look = _Look(client, worker.queues, include_scheduled, retries)
    failures: list[Failure] = []

    def on_end(event: events.JobEvent) -> None:
        if event.worker_id == worker.id and event.error is not None and event.outcome in ("failed", "dead"):
            failures.append(Failure(event.job, event.error, event.outcome == "dead"))

    unsubscribe = events.subscribe("job_end", on_end)
    try:
        if await look.pending():
            await _run_until_done(worker, look, time.monotonic() + timeout)
    finally:
        unsubscribe()
    ran = worker.stats.completed + worker.stats.failed
    if failures and raise_errors:
        raise JobsFailed(failures, ran) from failures[0].error
    return ran


async def _run_until_done(worker: Worker, look: _Look, deadline: float) -> None:
    """Run ``worker`` until ``look`` finds nothing left twice in a row
    (``POLL`` seconds apart), then stop it gracefully; past ``deadline``
    (time.monotonic()), stop it at once and raise DrainTimeout."""
    task = asyncio.create_task(worker.run_async())
    left, quiet = "", 0
    try:
        while quiet < 2 and not task.done():
            if time.monotonic() > deadline:
                worker.stop()
                worker.stop()  # the second stop: at once
                break
            await asyncio.sleep(POLL)
            left = await look.pending()
            quiet = 0 if left else quiet + 1
    finally:
        if not task.done():
            worker.stop()
        await task  # raises what ended the worker, if anything did
    if quiet < 2:
        ran = worker.stats.completed + worker.stats.failed
        raise DrainTimeout(f"drain timed out after {ran} jobs ran; left: {left or 'unknown'}", ran)


class _Look:
    """What is left to run, as Redis tells."""

    def __init__(self, client: Client | AsyncClient, queues: list[str], include_scheduled: bool, retries: bool) -> None:
        self.client = client
        self.queues = queues or None
        self.include_scheduled = include_scheduled
        self.retries = retries

    async def pending(self) -> str:
        """Empty when nothing is left, else what is (``"2 ready, 1 in
        flight"``). Ready and in-flight counts come from one atomic call;
        in flight counts every queue's jobs, as Redis has no per-queue index
        of jobs in flight."""
        if self.retries:
            again = Filter(status="scheduled", queue=self.queues, attempts="1..")
            await self._call(self.client.patch_jobs, again, ready_at=None)
        left = {}
        if self.include_scheduled:  # read before the counts: a due job moves from here to there
            later = Filter(status="scheduled", queue=self.queues, attempts=0)
            left["scheduled"] = await self._call(self.client.count_jobs, later)
        stats = await self._call(self.client.stats)
        names = self.queues if self.queues is not None else list(stats.queues)
        left["ready"] = sum(stats.queues[q][0] for q in names if q in stats.queues)
        left["in flight"] = stats.in_flight
        return ", ".join(f"{n} {what}" for what, n in left.items() if n)

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if isinstance(self.client, AsyncClient):
            return await method(*args, **kwargs)
        return await asyncio.to_thread(method, *args, **kwargs)


class RedisServer:
    """A throwaway redis-server: on a free loopback port, in a temporary
    directory of its own, with no persistence (no RDB snapshot, no AOF)
    unless ``args`` turn it on. It answers PING by the time the constructor
    returns.

    ::

        with zizq.testing.RedisServer() as server:
            client = zizq.Client.from_url(server.url)

    :meth:`stop` stops the process but keeps the port and the directory, so
    :meth:`start` brings the same server back (with its data, if ``args``
    turned persistence on). :meth:`close`, or the end of the ``with`` block,
    stops it and removes the directory.

    :param args: more redis-server arguments, after the defaults, so they
        override them: ``RedisServer("--appendonly", "yes")``.
    :param cpus: CPU numbers to pin the server to (Linux), or None: wherever
        the OS schedules it.
    :param die_with_parent: start the server in a session of its own, so
        signals for the terminal's process group (Ctrl-C) do not reach it
        and this process stops it; and, on Linux, SIGTERM it when the
        thread that started it exits, so a process killed outright leaves
        no server behind.
    :param timeout: seconds to wait for the server to answer, at each start.
    """

    def __init__(
        self,
        *args: str,
        cpus: Collection[int] | None = None,
        die_with_parent: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValidationError(f"timeout {timeout!r} must be a number of seconds above 0")
        self.args = args
        self.cpus = set(cpus) if cpus else None
        self.die_with_parent = die_with_parent
        self.timeout = timeout
        self.executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.dir = tempfile.mkdtemp(prefix="zizq-redis-")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``"""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, loaded: bool = True) -> None:
        """Start redis-server (again, after :meth:`stop`) and wait until it
        answers PING; with ``loaded=False``, until it answers at all, LOADING
        included (while it reads its data back after a restart). Raises
        RuntimeError if it does not answer within ``timeout`` seconds."""
        command = [
            self.executable,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir),
            *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
            *self.args,
        ]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=self.die_with_parent,
            preexec_fn=_child_setup(self.cpus, self.die_with_parent),
        )
        deadline = time.monotonic() + self.timeout
        probe = redis.Redis(host="127.0.0.1", port=self.port, retry=Retry(NoBackoff(), 0))  # no waiting LOADING out
        try:
            while True:
                try:
                    probe.ping()
                    return
                except redis.ConnectionError as exc:  # BusyLoadingError (LOADING) is one
                    if not loaded and isinstance(exc, redis.BusyLoadingError):
                        return
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                    time.sleep(0.02)
        finally:
            probe.close()

    def stop(self) -> None:
        """Stop the process (SIGTERM; SIGKILL if it has not exited within
        10 seconds). The port and the directory are kept for :meth:`start`."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        """Stop the process and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _child_setup(cpus: set[int] | None, die_with_parent: bool) -> Callable[[], None] | None:
    """What the server's process does between fork and exec: pin itself to
    ``cpus``; ask the kernel for SIGTERM when its parent thread exits."""
    libc: Any = None
    if die_with_parent:
        import ctypes  # here: only this option needs it

        with contextlib.suppress(OSError):  # not Linux/glibc: explicit stops only
            libc = ctypes.CDLL(None, use_errno=True)
    if not cpus and libc is None:
        return None

    def setup() -> None:
        if libc is not None:
            with contextlib.suppress(Exception):
                libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup

"""A worker's lease in Redis, and the thread that keeps it.

A worker joins under an id (:func:`new_worker_id`) and holds a lease: when
no heartbeat renews it within ``lease`` seconds, the worker counts as lost
and any other worker's heartbeat hands its jobs back to their queues.
:class:`HeartbeatThread` renews the lease every ``heartbeat_interval``
seconds from a thread of its own, with its own connection, so a busy event
loop or a CPU-bound handler cannot make the worker look dead; each beat also
recovers the jobs of workers whose lease lapsed. A worker that finds it was
declared lost joins again under a new id (:func:`rejoin`).

With each beat the thread also says which of the worker's jobs run a handler
(the others were taken ahead and wait): one SET of ``running:<worker-id>``,
the ids separated by spaces, expiring with the lease (and deleted when the
thread stops). ``zizq top`` reads it to tell running jobs from prefetched
ones; nothing is written per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
import time
from typing import TYPE_CHECKING

from zizq._protocol.reconnect import TRANSIENT
from zizq.client.sync import Client
from zizq.errors import ZizqError

if TYPE_CHECKING:
    from zizq.worker.worker import Worker

log = logging.getLogger("zizq.worker")  # the worker's logger: its lease is part of it
# Seconds before a failed heartbeat is tried again: soon (often it is a stale
# connection after Redis came back), then doubling up to the heartbeat
# interval, not to 30 s: the lease must be renewed as soon as Redis answers.
BEAT_RETRY = 0.2
_BEAT_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT, ZizqError)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class HeartbeatThread(threading.Thread):
    """Keeps the worker's lease from a thread of its own, with its own
    connection, and recovers lost workers' jobs on the way."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(name="zizq-heartbeat", daemon=True)
        self.worker = worker
        self.client = Client.from_url(
            worker._url, worker.namespace, **{**worker._connect, "socket_timeout": worker.lease}
        )
        self.stopping = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._ended = asyncio.Event()

    async def stop(self, timeout: float) -> None:
        """Stop, waiting up to ``timeout`` seconds for a beat in progress
        (without blocking the event loop)."""
        self.stopping.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ended.wait(), timeout)
        self.client.close()

    def run(self) -> None:
        try:
            self._beat()
            with contextlib.suppress(Exception):  # else it expires with the lease
                self.client.redis.delete(self.worker._core.key("running", self.worker.id))
        finally:
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._ended.set)

    def _beat(self) -> None:
        w = self.worker
        wait = w.heartbeat_interval
        pause = BEAT_RETRY  # before the next try after a failure
        failing_since = None  # time.monotonic() of the first failure in a row
        while not self.stopping.wait(wait):
            wait = w.heartbeat_interval
            me = w.id
            try:
                beat = self.client.run(w._core.heartbeat(me, "beat", w._lease_ms), retry_for=0)
                if beat.lost:
                    rejoin(w, me, self.client)
                self._publish_running()
            except _BEAT_ERRORS as exc:
                w._suspect = w._suspect or isinstance(exc, TRANSIENT)
                wait = min(pause, w.heartbeat_interval)
                pause = wait * 2
                # The first failure in a row is a warning; the retries, several a
                # second, would repeat what the take loop reports once a try.
                level = logging.DEBUG if failing_since and isinstance(exc, TRANSIENT) else logging.WARNING
                failing_since = failing_since or time.monotonic()
                log.log(level, "heartbeat failed (%s); trying again in %.1fs", exc, wait)
                continue
            except Exception:  # never let the heartbeat die while the worker runs
                log.exception("heartbeat failed")
                continue
            pause = BEAT_RETRY
            log.debug("heartbeat: lease of %s renewed for %gs", w.id, w.lease)
            if failing_since is not None:
                log.warning("heartbeat works again after %.1fs of failures", time.monotonic() - failing_since)
                failing_since = None
            if beat.recovered or beat.failed:
                w.stats.recovered += beat.recovered
                w.stats.poisoned += beat.failed
                log.warning(
                    "recovered the jobs of lost workers: %d handed back to their queues, %d failed as poison pills",
                    beat.recovered,
                    beat.failed,
                )

    def _publish_running(self) -> None:
        """Write the ids of the jobs whose handler runs now (as of this
        beat) to ``running:<worker-id>``, for ``zizq top``; it expires with
        the lease."""
        w = self.worker
        me = w.id
        ids = " ".join(sorted(job_id for owner, job_id in _snapshot(w._running) if owner == me))
        self.client.redis.set(w._core.key("running", me), ids, px=w._lease_ms)


def _snapshot(pairs: set[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    # The event loop's thread changes the set meanwhile; copying it is one
    # C call under the GIL, and a copy that still met a change is tried again.
    for _ in range(10):
        try:
            return frozenset(pairs)
        except RuntimeError:
            continue
    return frozenset()


def rejoin(worker: Worker, lost_id: str, client: Client) -> None:
    """After the lease of ``lost_id`` was lost: join again under a new id
    (once, however many parts of the worker noticed). One try: raises
    TRANSIENT errors, and the caller tries again later."""
    with worker._id_lock:
        if worker.id != lost_id:
            return
        # A beat under the lost id hands back whatever Redis still holds
        # for it (when its lease entry vanished without a recovery).
        client.run(worker._core.heartbeat(lost_id, "beat", worker._lease_ms), retry_for=0)
        new_id = new_worker_id()
        client.run(worker._core.heartbeat(new_id, "join", worker._lease_ms), retry_for=0)
        worker.id = new_id
        worker.stats.leases_lost += 1
    log.warning(
        "worker %s was declared lost (no heartbeat within %.1fs); its jobs were handed to other workers "
        "and its acks of them will be refused. Continuing as %s.",
        lost_id,
        worker.lease,
        new_id,
    )

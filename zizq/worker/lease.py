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
ones; nothing is written per job. In the same round trip the thread reads
the jobs Redis has in flight for the worker, which hands back any it does
not know of (an ack a failover lost with no call failing). A beat's reply names the worker's jobs
cancelled since the last one (``cancel_job``): the thread hands them to the
worker, which stops their handlers.
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
from typing import Protocol

from zizq._protocol.jobs import Core
from zizq._protocol.reconnect import TRANSIENT
from zizq.client.sync import Client
from zizq.errors import ZizqError
from zizq.worker.stats import WorkerStats

log = logging.getLogger("zizq.worker")  # the worker's logger: its lease is part of it
# Seconds before a failed heartbeat is tried again: soon (often it is a stale
# connection after Redis came back), then doubling up to the heartbeat
# interval, not to 30 s: the lease must be renewed as soon as Redis answers.
BEAT_RETRY = 0.2
_BEAT_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT, ZizqError)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Leaseholder(Protocol):
    """What the heartbeat thread and :func:`rejoin` use of a running worker
    (:class:`zizq.worker.run.Run` is one). They set ``id`` (under
    ``id_lock``) and add to ``stats``; the rest they read. The heartbeat
    thread calls ``doubt``, ``running_ids``, ``cancel`` and
    ``check_in_flight`` from its own
    thread: they are safe there."""

    id: str  # the worker's id in Redis; rejoin gives it a new one
    id_lock: threading.Lock
    core: Core
    lease: float  # seconds
    lease_ms: int
    heartbeat_interval: float  # seconds
    stats: WorkerStats

    def doubt(self) -> None:
        """A call failed in transit: Redis may have lost the worker's last
        writes, so the take loop reconciles before its next take."""

    def running_ids(self, owner: str) -> list[str]:
        """The ids of ``owner``'s jobs whose handler runs now, sorted."""

    def confirm_lease(self, owner: str, sent: float) -> None:
        """A heartbeat of ``owner`` sent at ``sent`` (time.monotonic())
        renewed its lease: the worker starts jobs until ``sent + lease``."""

    def cancel(self, owner: str, ids: list[str]) -> None:
        """Jobs of ``owner`` were cancelled in Redis: stop their handlers."""

    def check_in_flight(self, owner: str, in_redis: set[str]) -> None:
        """Redis has the jobs ``in_redis`` in flight for ``owner``: when the
        worker does not know of one, the take loop reconciles."""


class HeartbeatThread(threading.Thread):
    """Keeps the worker's lease from a thread of its own, with its own
    connection (``client``, whose socket timeout should be the lease), and
    recovers lost workers' jobs on the way."""

    def __init__(self, holder: Leaseholder, client: Client) -> None:
        super().__init__(name="zizq-heartbeat", daemon=True)
        self.holder = holder
        self.client = client
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
                self.client.redis.delete(self.holder.core.key("running", self.holder.id))
        finally:
            with contextlib.suppress(RuntimeError):  # the event loop is closed: nobody waits
                self._loop.call_soon_threadsafe(self._ended.set)

    def _beat(self) -> None:
        w = self.holder
        wait = w.heartbeat_interval
        pause = BEAT_RETRY  # before the next try after a failure
        failing_since = None  # time.monotonic() of the first failure in a row
        while not self.stopping.wait(wait):
            wait = w.heartbeat_interval
            me = w.id
            try:
                sent = time.monotonic()
                beat = self.client.run(w.core.heartbeat(me, "beat", w.lease_ms), retry_for=0)
                if beat.lost:
                    rejoin(w, me, self.client)
                else:
                    w.confirm_lease(me, sent)
                    if beat.cancelled:
                        w.cancel(me, beat.cancelled)
                self._publish_running()
            except _BEAT_ERRORS as exc:
                if isinstance(exc, TRANSIENT):
                    w.doubt()
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
        w = self.holder
        me = w.id
        ids = " ".join(w.running_ids(me))
        # With the jobs Redis has in flight for this worker (at most what it
        # holds, unless something went wrong): a failover can lose an ack
        # without any call failing (see Run.check_in_flight). One round trip.
        pipe = self.client.redis.pipeline(transaction=False)
        pipe.set(w.core.key("running", me), ids, px=w.lease_ms)
        pipe.smembers(w.core.key("worker", me))
        _, in_redis = pipe.execute()
        w.check_in_flight(me, {i.decode() if isinstance(i, bytes) else i for i in in_redis})


def rejoin(worker: Leaseholder, lost_id: str, client: Client) -> None:
    """After the lease of ``lost_id`` was lost or lapsed: join again under a
    new id (once, however many parts of the worker noticed), unless a beat
    finds the lease only lapsed and renews it. One try: raises TRANSIENT
    errors, and the caller tries again later."""
    with worker.id_lock:
        if worker.id != lost_id:
            return
        # A beat under the lost id hands back whatever Redis still holds
        # for it (when its lease entry vanished without a recovery). A
        # lease that only lapsed (a take refuses it) is renewed: nobody
        # took its jobs.
        sent = time.monotonic()
        if not client.run(worker.core.heartbeat(lost_id, "beat", worker.lease_ms), retry_for=0).lost:
            worker.confirm_lease(lost_id, sent)
            log.info("the lease of worker %s had lapsed; renewed, nothing was lost", lost_id)
            return
        new_id = new_worker_id()
        sent = time.monotonic()
        client.run(worker.core.heartbeat(new_id, "join", worker.lease_ms), retry_for=0)
        worker.confirm_lease(new_id, sent)
        worker.id = new_id
        worker.stats.leases_lost += 1
    log.warning(
        "worker %s was declared lost (no heartbeat within %.1fs); its jobs were handed to other workers "
        "and its acks of them will be refused. Continuing as %s.",
        lost_id,
        worker.lease,
        new_id,
    )

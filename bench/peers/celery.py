"""Celery with its Redis broker (kombu) and no result backend: sync; one
LPUSH of a JSON envelope per task; the worker BRPOPs, records the message
in an ``unacked`` hash, and acknowledges after the task (``acks_late`` off:
Celery's default acknowledges before running it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from celery import Celery

from peers.common import CONCURRENCY, TRACKER, wait_until

NAME = "celery"
DIST = "celery"
BULK = None  # no batch publish (group/chunks publish message by message)
WORKER = (
    f"celery worker, pool=threads, concurrency={CONCURRENCY} (the default prefork pool is one process per slot); "
    "without mingle/gossip/heartbeat"
)

_app: Celery
_task: Any
_worker: Any


def noop(data: dict[str, Any]) -> None:
    TRACKER.hit(data)


def setup(url: str, variant: str | None) -> None:
    global _app, _task
    _app = Celery("bench", broker=url, set_as_current=True)
    _app.conf.update(
        task_default_queue="bench",
        task_ignore_result=True,  # no result backend configured anyway
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=4,  # the default, stated
    )
    _task = _app.task(noop, name="noop")
    with _app.connection_for_write() as conn:
        conn.ensure_connection()
    logging.getLogger("celery").setLevel(logging.WARNING)


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    delay = _task.delay
    for item in items:
        delay(item)


def waiting() -> int:
    """Messages in the queue list plus those delivered but not yet acked."""
    with _app.connection_for_write() as conn:
        client = conn.default_channel.client
        return int(client.llen("bench")) + int(client.hlen("unacked"))


def prepare_worker() -> None:
    global _worker
    _worker = _app.WorkController(
        pool_cls="threads",
        concurrency=CONCURRENCY,
        loglevel="WARNING",
        without_mingle=True,
        without_gossip=True,
        without_heartbeat=True,
        queues=["bench"],
    )


def run_worker(done: threading.Event) -> None:
    thread = threading.Thread(target=_worker.start, name="celery-worker", daemon=True)
    thread.start()
    try:
        wait_until(done, alive=thread.is_alive)
        for _ in range(2000):  # the last handler has returned; let Celery ack it
            if waiting() == 0:
                break
            done.wait(0.005)
    finally:
        _worker.stop(in_sighandler=False, exitcode=0)
        thread.join(30)


def close() -> None:
    _app.close()

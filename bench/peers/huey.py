"""Huey with RedisHuey: sync; one LPUSH of a pickled message per call;
worker threads BRPOP (at-most-once: nothing records a running task)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from huey import RedisHuey

from peers.common import CONCURRENCY, TRACKER, wait_until

NAME = "huey"
DIST = "huey"
BULK = None  # no batch enqueue API
WORKER = f"huey consumer, workers={CONCURRENCY}, worker_type=thread, periodic tasks off"

_huey: RedisHuey
_task: Any
_consumer: Any
_url = ""


def noop(data: dict[str, Any]) -> None:
    TRACKER.hit(data)


def setup(url: str, variant: str | None) -> None:
    global _huey, _task, _url
    _url = url
    _huey = RedisHuey("bench", url=url)
    _task = _huey.task(name="noop")(noop)
    _huey.storage.conn.ping()
    logging.getLogger("huey").setLevel(logging.WARNING)


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    task = _task
    for item in items:
        task(item)  # calling a Huey task enqueues it and returns a Result handle


def waiting() -> int:
    return int(_huey.pending_count())


def prepare_worker() -> None:
    global _consumer
    # The consumer gets its own Huey instance and connections, as in a
    # separate consumer process.
    huey = RedisHuey("bench", url=_url)
    huey.task(name="noop")(noop)
    _consumer = huey.create_consumer(workers=CONCURRENCY, worker_type="thread", periodic=False)


def run_worker(done: threading.Event) -> None:
    _consumer.start()  # starts the scheduler and worker threads, returns at once
    try:
        wait_until(done, alive=lambda: all(p.is_alive() for _, p in _consumer.worker_threads))
    finally:
        # Graceful: each worker thread finishes its task; idle ones leave
        # their BRPOP when its 1 s timeout ends.
        _consumer.stop(graceful=True)


def close() -> None:
    _huey.storage.conn.close()

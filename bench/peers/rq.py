"""RQ: sync; a job is a hash plus an id in a list (one MULTI pipeline per
enqueue); one job at a time per worker. Two variants share this adapter:
``simple`` (SimpleWorker, jobs run in the worker process) and ``fork``
(the default Worker, which forks a work horse per job)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from typing import Any

import redis
from rq import Queue, SimpleWorker, Worker

from peers.common import CHUNK, TRACKER, wait_until

NAME = "rq"
DIST = "rq"
BULK = "Queue.enqueue_many (one pipeline per call)"
WORKER = {
    "simple": "rq SimpleWorker: one job at a time (RQ has no concurrency setting)",
    "fork": "rq Worker (default): forks a work horse per job, one at a time",
}

_conn: redis.Redis
_queue: Queue
_variant = "simple"
_worker: Worker | SimpleWorker
_url = ""


def noop(data: dict[str, Any]) -> None:
    if _variant == "fork":  # runs in the forked work horse: report through Redis
        TRACKER.hit_redis(_conn, data)
    else:
        TRACKER.hit(data)


def setup(url: str, variant: str | None) -> None:
    global _conn, _queue, _variant, _url
    _url = url
    _variant = variant or "simple"
    _conn = redis.Redis.from_url(url)
    _conn.ping()
    _queue = Queue("bench", connection=_conn)


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    enqueue = _queue.enqueue
    for item in items:
        enqueue(noop, item)


def enqueue_bulk(items: list[dict[str, Any]]) -> None:
    prepare = Queue.prepare_data
    for i in range(0, len(items), CHUNK):
        _queue.enqueue_many([prepare(noop, (item,)) for item in items[i : i + CHUNK]])


def waiting() -> int:
    return int(_queue.count)


def prepare_worker() -> None:
    global _worker
    cls = Worker if _variant == "fork" else SimpleWorker
    worker_conn = redis.Redis.from_url(_url)  # its own connection, as in a worker process
    _worker = cls([Queue("bench", connection=worker_conn)], connection=worker_conn)


def run_worker(done: threading.Event) -> None:
    """``work()`` must run in the main thread (it installs signal handlers);
    a watcher thread asks it to stop with SIGINT, a warm shutdown: RQ
    finishes the current job, or leaves its blocking dequeue at once."""
    stop_poll = threading.Event()
    if _variant == "fork":
        poller = threading.Thread(target=TRACKER.poll_redis, args=(redis.Redis.from_url(_url), stop_poll), daemon=True)
        poller.start()
    problems: list[BaseException] = []
    exited = threading.Event()

    def watch() -> None:
        try:
            wait_until(done, alive=lambda: not exited.is_set())
        except BaseException as exc:
            problems.append(exc)
        if not exited.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _worker.work(burst=False, logging_level="WARNING")
    finally:
        exited.set()
        stop_poll.set()
        watcher.join(5)
    if problems:
        raise problems[0]
    if _variant == "fork":
        TRACKER.collect_redis(_conn)


def close() -> None:
    _conn.close()

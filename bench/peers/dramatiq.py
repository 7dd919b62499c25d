"""Dramatiq with its Redis broker: sync; one Lua dispatch script per
enqueue (an id in a list plus the message in a hash); the worker's
consumer thread fetches up to a prefetch count and, when the queue is empty,
polls with a backoff up to ``worker_timeout`` (1 s by default)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peers.common import CONCURRENCY, TRACKER, wait_until

NAME = "dramatiq"
DIST = "dramatiq"
BULK = None  # no batch enqueue (group/pipeline send message by message)
WORKER = f"dramatiq Worker, worker_threads={CONCURRENCY}, one process (the CLI would start one per CPU)"

_broker: RedisBroker
_actor: Any
_worker: dramatiq.Worker


def noop(data: dict[str, Any]) -> None:
    TRACKER.hit(data)


def setup(url: str, variant: str | None) -> None:
    global _broker, _actor
    _broker = RedisBroker(url=url)
    dramatiq.set_broker(_broker)
    _broker.client.ping()
    _actor = dramatiq.actor(noop, actor_name="noop", queue_name="bench", broker=_broker)


def enqueue_single(items: Iterable[dict[str, Any]]) -> None:
    send = _actor.send
    for item in items:
        send(item)


def waiting() -> int:
    """Messages not yet acknowledged: waiting, prefetched or running."""
    return int(_broker.client.hlen(f"{_broker.namespace}:bench.msgs"))


def prepare_worker() -> None:
    global _worker
    _worker = dramatiq.Worker(_broker, worker_threads=CONCURRENCY)


def run_worker(done: threading.Event) -> None:
    _worker.start()
    try:
        wait_until(done, alive=lambda: all(t.is_alive() for t in _worker.workers))
        # The last handler has returned; let Dramatiq acknowledge every message.
        for _ in range(2000):
            if waiting() == 0:
                break
            done.wait(0.005)
    finally:
        _worker.stop()


def close() -> None:
    _broker.close()

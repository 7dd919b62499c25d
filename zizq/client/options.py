"""What both clients share before any I/O: the default URL, the redis-py
connection options zizq sets, durability settings, and the error raised when
Redis stays unreachable."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from zizq import connect
from zizq._protocol.reconnect import TRANSIENT, as_not_now
from zizq.errors import RedisUnavailable, ValidationError, from_script_error
from zizq.job import JobKind
from zizq.options import Enqueue

DEFAULT_URL = "redis://localhost:6379/0"


Items = Sequence[JobKind | Enqueue]


def default_url() -> str:
    """``ZIZQ_REDIS_URL`` if set, else ``redis://localhost:6379/0``."""
    return os.environ.get("ZIZQ_REDIS_URL") or DEFAULT_URL


def as_items(jobs: Items) -> list[Enqueue]:
    # Middleware sees (and may change) every request as an Enqueue.
    return [j if isinstance(j, Enqueue) else Enqueue(j) for j in jobs]


def connection_options(options: dict[str, Any], *, asyncio: bool) -> dict[str, Any]:
    # Every blocking call gets a client-side deadline. zizq retries by itself
    # (see run), knowing which calls are safe to repeat, so redis-py does not;
    # an asyncio client needs redis-py's asyncio Retry.
    options.setdefault("socket_timeout", 30.0)
    options.setdefault("socket_connect_timeout", 10.0)
    options.setdefault("retry", (AsyncRetry if asyncio else Retry)(NoBackoff(), 0))
    return options


def unavailable(url: str | None, started: float, exc: Exception) -> RedisUnavailable:
    """The error after retrying since ``started`` (time.monotonic()): it says
    how long Redis was tried, which is less than ``retry_for`` when the next
    pause would have run past it."""
    waited = time.monotonic() - started
    return RedisUnavailable(f"redis at {connect.redact(url) if url else '?'} unavailable for {waited:.1f}s: {exc}")


def reply_error(exc: ResponseError) -> Exception | None:
    """What a script's error reply is raised as: the zizq exception it
    stands for, or a NotNow (retried); None to raise it as it is."""
    return None if isinstance(exc, TRANSIENT) else from_script_error(str(exc)) or as_not_now(exc)


def durability(wait_replicas: int, wait_timeout: float) -> tuple[int, int]:
    if isinstance(wait_replicas, bool) or not isinstance(wait_replicas, int) or wait_replicas < 0:
        raise ValidationError(f"wait_replicas {wait_replicas!r} must be a whole number of replicas, 0 or more")
    if isinstance(wait_timeout, bool) or not isinstance(wait_timeout, (int, float)) or not wait_timeout > 0:
        raise ValidationError(f"wait_timeout {wait_timeout!r} must be a number of seconds above 0")
    return wait_replicas, max(1, round(wait_timeout * 1000))


def block_slice(redis_client: Any) -> float:
    """The longest blocking wait (BLPOP, seconds) to send on this redis-py
    client: under its socket timeout (30 s by default), which would
    otherwise cut the wait as a lost connection."""
    kwargs: dict[str, Any] = {}
    for holder in (getattr(redis_client, "connection_pool", None), getattr(redis_client, "nodes_manager", None)):
        kwargs = getattr(holder, "connection_kwargs", None) or kwargs
    timeout = kwargs.get("socket_timeout", 30.0)
    if timeout is None:
        return 300.0
    return max(float(timeout) - 1.0, float(timeout) / 2)

"""Reconnecting: which Redis errors mean "try the same call again in a
moment" (the connection, a failover, a server loading or busy), and how long
to wait between tries. Not to be confused with retrying a job, which is the
job lifecycle's (RETRY_LIMIT, backoff, RetryJob)."""

from __future__ import annotations

from collections.abc import Iterator

import redis.exceptions


class NotNow(redis.exceptions.ResponseError):
    """A reply that means "not now", which redis-py raises as a plain
    ResponseError (its code is one of ``LATER_CODES``)."""


# Error codes of such replies: a blocked command cut short when a master is
# demoted (UNBLOCKED), fewer good replicas than min-replicas-to-write
# (NOREPLICAS), a script or module running past its time limit (BUSY).
LATER_CODES = frozenset({"UNBLOCKED", "NOREPLICAS", "BUSY"})


# Errors after which a call is tried again: Redis unreachable, loading its
# data after a restart (LOADING), read-only during a failover (READONLY),
# a replica cut off from its master (MASTERDOWN), a cluster failing over
# (CLUSTERDOWN, a slot with no master yet, redirections redis-py gave up
# following), and the replies of LATER_CODES.
TRANSIENT: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # BusyLoadingError (LOADING) is one
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError, "TTL exhausted"
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.AskError,  # MovedError is one
    NotNow,
    OSError,  # TimeoutError is one; so is zizq.RedisUnavailable
)


# Errors of a plain Redis command: TRANSIENT ones, and a refusal.
REDIS_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT, redis.exceptions.ResponseError)


def as_not_now(exc: redis.exceptions.ResponseError) -> NotNow | None:
    """``exc`` as a NotNow when its reply means "not now", else None."""
    if type(exc) is redis.exceptions.ResponseError and str(exc).partition(" ")[0] in LATER_CODES:
        return NotNow(*exc.args)
    return None


def reconnect_delays() -> Iterator[float]:
    """Seconds to wait before each new try of a call: 0.5, 1, 2, ... up to 30."""
    pause = 0.5
    while True:
        yield pause
        pause = min(pause * 2, 30.0)

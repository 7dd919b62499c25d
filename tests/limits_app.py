"""A job kind for the limit tests whose handler records each run (pid,
limit key, the take's dequeued_at, start and end times) in a Redis list,
loaded by `zizq worker tests.limits_app:router` subprocesses. The list's
URL and key come from $ZIZQ_LIMITS_LOG ("<url> <key>")."""

from __future__ import annotations

import asyncio
import json
import os
import time

import redis.asyncio

import zizq


class Call(zizq.JobKind):
    """Sleeps ``sleep`` seconds. ``first`` names a behaviour of the job's
    first run only: "hang" (sleep 60 s) or "429" (raise RateLimited with
    ``retry_after`` seconds)."""

    NAME = "call"
    RETENTION = zizq.Retention(completed_ms=600_000)
    sleep: float = 0.0
    key: str = ""
    first: str = ""
    retry_after: float = 0.0


router = zizq.Router()
_log: redis.asyncio.Redis | None = None


@router.handler
async def call(job: Call, meta: zizq.Job) -> None:
    global _log
    url, key = os.environ["ZIZQ_LIMITS_LOG"].split(" ")
    if _log is None:
        _log = redis.asyncio.Redis.from_url(url)
    start = time.time()
    first = await _log.sadd(key + ":seen", meta.id) == 1
    if first and job.first == "hang":
        await _log.rpush(key + ":hung", meta.id)
        await asyncio.sleep(60)
    if first and job.first == "429":
        await _log.rpush(key, json.dumps({"id": meta.id, "start": start, "end": time.time(), "deferred": True}))
        raise zizq.RateLimited("the API said 429", retry_after=job.retry_after)
    await asyncio.sleep(job.sleep)
    run = {"id": meta.id, "pid": os.getpid(), "key": job.key, "da": meta.dequeued_at, "start": start}
    run["end"] = time.time()
    await _log.rpush(key, json.dumps(run))

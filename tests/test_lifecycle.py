"""The whole job lifecycle on a real Redis: unique jobs, retries and backoff,
dead jobs, retention and purging, error history, patch, delete, pause."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

import zizq
from zizq.worker.worker import PURGE_BATCH

from .conftest import ROOT, RedisServer, stored, stored_count, take, wait_for
from .jobs_app import Heartbeat, Report, SendEmail

W = "w1"


async def fail(api: Any, job_id: str, worker: str = W, **options: Any) -> zizq.Job | None:
    options.setdefault("message", "boom")
    return await api.run(api.core.fail(worker, job_id, **options))  # type: ignore[no-any-return]


async def ack(api: Any, *ids: str, worker: str = W) -> list[str]:
    return await api.run(api.core.ack(worker, list(ids)))  # type: ignore[no-any-return]


def ns_keys(r: redis.Redis, namespace: str) -> set[str]:
    """The namespace's keys (short names), leaving out wake-up tokens, the
    workers' leases (and the time of the last heartbeat) and the ids of
    recently deleted jobs (done:<bucket>) and the minutes' counts (tally:<minute>)."""
    prefix = "{" + namespace + "}:"
    names = {k.decode()[len(prefix) :] for k in r.keys(prefix + "*") if isinstance(k, bytes)}
    return {
        name
        for name in names
        if not name.startswith(("wake", "done:", "tally:")) and name not in ("workers", "beat_at")
    }


# -- unique jobs -------------------------------------------------------------


def holders(r: redis.Redis, namespace: str, key: str) -> list[str]:
    """The ids of the jobs holding a unique key (unique:<key>), by score then id."""
    members: list[bytes] = r.zrange("{" + namespace + "}:unique:" + key, 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in members]


async def test_queued_scope_lets_a_new_job_in_once_the_first_runs(api: Any, r: redis.Redis, namespace: str) -> None:
    first = await api.enqueue(SendEmail(to="a"), unique_key="k")
    assert (await api.enqueue(SendEmail(to="a"), unique_key="k")).duplicate
    [taken] = await take(api)
    assert taken.id == first.id
    second = await api.enqueue(SendEmail(to="a"), unique_key="k")  # the first is in flight: not queued any more
    assert not second.duplicate and second.id != first.id
    # The first fails and waits for its retry: both hold the key now.
    await fail(api, first.id)
    assert holders(r, namespace, "k") == sorted([first.id, second.id])
    # The second is taken: the first, waiting for its retry, still guards the key.
    [taken] = await take(api)
    assert taken.id == second.id
    third = await api.enqueue(SendEmail(to="a"), unique_key="k")
    assert third.duplicate and third.id == first.id and third.status == "scheduled"


async def test_queued_scope_key_restored_on_retry(api: Any, r: redis.Redis, namespace: str) -> None:
    job = await api.enqueue(SendEmail(to="a"), unique_key="k")
    await take(api)
    assert holders(r, namespace, "k") == []
    await fail(api, job.id)  # back to scheduled: queued again
    assert holders(r, namespace, "k") == [job.id]
    dup = await api.enqueue(SendEmail(to="b"), unique_key="k")
    assert dup.duplicate and dup.id == job.id and dup.status == "scheduled"


async def test_active_scope_holds_while_in_flight(api: Any) -> None:
    key = zizq.UniqueKey.raw("k").scope("active")
    job = await api.enqueue(SendEmail(to="a"), unique_key=key)
    await take(api)
    dup = await api.enqueue(SendEmail(to="a"), unique_key=key)
    assert dup.duplicate and dup.id == job.id and dup.status == "in_flight"
    await ack(api, job.id)
    assert not (await api.enqueue(SendEmail(to="a"), unique_key=key)).duplicate


async def test_exists_scope_holds_until_the_job_is_gone(api: Any) -> None:
    key = zizq.UniqueKey.raw("k").scope("exists")
    job = await api.enqueue(SendEmail(to="a"), unique_key=key, retention=zizq.Retention(completed_ms=3_600_000))
    await take(api)
    await ack(api, job.id)
    dup = await api.enqueue(SendEmail(to="a"), unique_key=key)
    assert dup.duplicate and dup.status == "completed"
    await api.delete_job(job.id)
    assert not (await api.enqueue(SendEmail(to="a"), unique_key=key)).duplicate


async def test_stale_unique_entry_never_blocks(api: Any, r: redis.Redis, namespace: str) -> None:
    r.zadd("{" + namespace + "}:unique:k", {"0000000000000000000000000": 0})
    assert not (await api.enqueue(SendEmail(to="a"), unique_key="k")).duplicate


class UniqueEmail(zizq.JobKind):
    NAME = "unique_email"
    UNIQUE_WHILE = "active"
    to: str

    def unique_key(self) -> zizq.UniqueKey:
        return zizq.UniqueKey.tagged_hash_of(self.NAME, self.to)


async def test_job_kind_unique_key_and_scope(api: Any) -> None:
    job = await api.enqueue(UniqueEmail(to="a"))
    assert job.unique_key == zizq.UniqueKey.tagged_hash_of("unique_email", "a").key
    assert job.unique_while == "active"
    assert (await api.enqueue(UniqueEmail(to="a"))).duplicate
    assert not (await api.enqueue(UniqueEmail(to="b"))).duplicate


def test_unique_key_paths() -> None:
    value = {"to": "a", "meta": {"trace": 1, "tenant": 7}, "items": [1, 2]}
    only = zizq.UniqueKey.hash_of(value, only=[".to", ".meta.tenant"])
    assert only == zizq.UniqueKey.hash_of({"to": "a", "meta": {"tenant": 7}})
    dropped = zizq.UniqueKey.hash_of(value, except_=[".meta.trace", ".items"])
    assert dropped == only
    assert zizq.UniqueKey.hash_of(value, only=["."]) == zizq.UniqueKey.hash_of(value)
    assert zizq.UniqueKey.hash_of(value, only=[".missing"]) == zizq.UniqueKey.hash_of({})
    assert zizq.UniqueKey.hash_of(value, except_=["."]) == zizq.UniqueKey.hash_of(None)
    assert zizq.UniqueKey.hash_of(value, only=[".items[1]"]) == zizq.UniqueKey.hash_of({"items": [None, 2]})
    assert zizq.UniqueKey.hash_of({"a.b": 1, "c": 2}, only=['.["a.b"]']) == zizq.UniqueKey.hash_of({"a.b": 1})
    tagged = zizq.UniqueKey.tagged_hash_of("send_email", SendEmail(to="a", subject="x"), except_=[".subject"])
    assert tagged.key == "send_email:" + zizq.UniqueKey.hash_of({"to": "a"}).key
    with pytest.raises(zizq.ValidationError, match="'to'"):
        zizq.UniqueKey.hash_of(value, only=["to"])
    with pytest.raises(zizq.ValidationError, match="not both"):
        zizq.UniqueKey.hash_of(value, only=[".to"], except_=[".to"])


RACE = """
import sys, time, redis, zizq
url, ns, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = zizq.Client.from_url(url, ns)
barrier = redis.Redis.from_url(url)
barrier.rpush("race-ready:" + ns, worker)
assert barrier.blpop(["race-go:" + ns], 60) is not None  # every process starts at once
start = time.time()
for i in range(1000):
    client.enqueue_raw("race", {"w": worker, "i": i}, unique_key=f"key-{(i * 7 + worker) % 100}")
print(start, time.time())
"""


@pytest.mark.timeout(120)
def test_unique_keys_are_race_free_across_processes(redis_server: RedisServer, namespace: str, r: redis.Redis) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, redis_server.url, namespace, str(w)], cwd=ROOT, stdout=subprocess.PIPE
        )
        for w in range(8)
    ]
    try:
        deadline = time.monotonic() + 60
        while r.llen("race-ready:" + namespace) < 8:  # all started and connected
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.01)
        r.rpush("race-go:" + namespace, *range(8))
        spans = []
        for p in procs:
            out, _ = p.communicate(timeout=100)
            assert p.returncode == 0
            spans.append([float(t) for t in out.split()])
    finally:
        r.delete("race-ready:" + namespace, "race-go:" + namespace)
        for p in procs:
            p.kill()
            p.wait()
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # they truly overlapped
    assert r.zcard("{" + namespace + "}:ready:default") == 100
    assert stored_count(r, namespace) == 100
    assert len(r.keys("{" + namespace + "}:unique:*")) == 100


# -- retries, backoff, dead jobs, errors -------------------------------------


async def test_default_backoff_curve_spans_about_25_days(api: Any) -> None:
    job = await api.enqueue(Heartbeat())
    delays = []
    for attempt in range(1, 27):
        await take(api)
        failed = await fail(api, job.id, jitter=0.5)
        assert failed is not None and failed.attempts == attempt
        if attempt == 26:
            assert failed.status == "dead"  # attempts 26 > retry limit 25
            break
        assert failed.status == "scheduled"
        delays.append(failed.ready_at - (failed.failed_at or 0))
        await api.patch_job(job.id, ready_at=None)  # retry now instead of waiting
    assert len(delays) == 25
    assert delays[0] == 1000 + 15000 + 15000  # 1^4 s + B + 0.5 * J * 1
    assert 24 * 86_400_000 <= sum(delays) <= 26 * 86_400_000


async def test_backoff_and_retry_limit_overrides(api: Any) -> None:
    per_job = await api.enqueue(Heartbeat(), backoff=zizq.Backoff(1000, 1.0, 0), retry_limit=2)
    await take(api)
    first = await fail(api, per_job.id)
    assert first is not None and first.ready_at - (first.failed_at or 0) == 2000  # 1^1*1000 + 1000
    await api.patch_job(per_job.id, ready_at=None)
    await take(api)
    second = await fail(api, per_job.id)
    assert second is not None and (second.status, second.ready_at - (second.failed_at or 0)) == ("scheduled", 3000)
    await api.patch_job(per_job.id, ready_at=None)
    await take(api)
    third = await fail(api, per_job.id)
    assert third is not None and third.status == "dead"  # attempts 3 > retry_limit 2


async def test_namespace_defaults(api: Any) -> None:
    settings = await api.set_defaults(retry_limit=0, backoff=zizq.Backoff(500, 2.0, 0))
    assert settings["retry_limit"] == 0 and settings["backoff_base_ms"] == 500
    job = await api.enqueue(Heartbeat())
    await take(api)
    dead = await fail(api, job.id)
    assert dead is not None and dead.status == "dead"
    restored = await api.set_defaults(retry_limit=None, backoff=None)
    assert restored["retry_limit"] == 25 and restored["backoff_base_ms"] == 15000
    assert (await api.set_defaults())["dead_ms"] == 604_800_000
    with pytest.raises(zizq.ValidationError, match="-1"):
        await api.set_defaults(retry_limit=-1)


async def test_retry_at_and_kill(api: Any) -> None:
    job = await api.enqueue(Heartbeat(), retry_limit=0)
    await take(api)
    at = int((datetime.now(UTC) + timedelta(hours=2)).timestamp() * 1000)
    later = await fail(api, job.id, retry_at_ms=at)
    assert later is not None and (later.status, later.ready_at, later.attempts) == ("scheduled", at, 1)
    await api.patch_job(job.id, ready_at=None)
    await take(api)
    killed = await fail(api, job.id, kill=True, retry_in_ms=0)
    assert killed is not None and killed.status == "dead"


async def test_error_history(api: Any, r: redis.Redis, namespace: str) -> None:
    job = await api.enqueue(Heartbeat())
    for i in range(3):
        [taken] = await take(api)
        await fail(api, job.id, message=f"failure {i}", error_type="app.Boom", backtrace="trace")
        await api.patch_job(job.id, ready_at=None)
    errors = await api.job_errors(job.id)
    assert [e.attempt for e in errors] == [1, 2, 3]
    assert [e.message for e in errors] == ["failure 0", "failure 1", "failure 2"]
    assert errors[-1].error_type == "app.Boom" and errors[-1].backtrace == "trace"
    assert errors[-1].dequeued_at == taken.dequeued_at and errors[-1].failed_at >= taken.dequeued_at
    await api.set_defaults(error_history=2)
    await take(api)
    await fail(api, job.id)
    assert [e.attempt for e in await api.job_errors(job.id)] == [3, 4]  # bounded: the newest kept
    await api.delete_job(job.id)
    assert ns_keys(r, namespace) == {"config", "queues"}
    with pytest.raises(zizq.JobNotFound):
        await api.job_errors(job.id)


async def test_dead_job_kept_seven_days_then_retry(api: Any) -> None:
    job = await api.enqueue(Heartbeat(), retry_limit=0)
    await take(api)
    dead = await fail(api, job.id)
    assert dead is not None and dead.status == "dead"
    assert dead.purge_at == (dead.failed_at or 0) + 604_800_000
    again = await api.retry_job(job.id)
    assert (again.id, again.status, again.attempts, again.purge_at) == (job.id, "ready", 0, None)
    assert len(await api.job_errors(job.id)) == 1  # history kept
    with pytest.raises(zizq.JobStateError, match="ready"):
        await api.retry_job(job.id)
    with pytest.raises(zizq.JobNotFound):
        await api.retry_job("0" * 25)
    [taken] = await take(api)
    assert taken.id == job.id
    await fail(api, job.id)
    # Attempts started again at 0: the history's numbers repeat.
    assert [e.attempt for e in await api.job_errors(job.id)] == [1, 1]


async def test_retry_refused_while_a_conflicting_job_holds_the_key(api: Any, r: redis.Redis, namespace: str) -> None:
    dead = await api.enqueue(SendEmail(to="a"), unique_key="k", retry_limit=0)
    await take(api)
    await fail(api, dead.id)  # dead: its queued key is released
    live = await api.enqueue(SendEmail(to="a"), unique_key="k")  # so a new job takes it
    with pytest.raises(zizq.UniqueKeyHeld, match=rf"job {dead.id} .* held by job {live.id} \(ready\)") as info:
        await api.retry_job(dead.id)
    assert isinstance(info.value, zizq.JobStateError)
    assert (await api.get_job(dead.id)).status == "dead"  # nothing written
    assert holders(r, namespace, "k") == [live.id]
    # Bulk retry skips it (it stays dead) and does not count it.
    assert await api.retry_jobs() == 0
    assert (await api.get_job(dead.id)).status == "dead"
    # Once the holder is taken, the queued key no longer conflicts.
    await take(api)
    assert await api.retry_jobs() == 1
    assert holders(r, namespace, "k") == [dead.id]


# -- retention ---------------------------------------------------------------


async def test_expired_jobs_are_invisible_to_every_read_then_purged(api: Any, r: redis.Redis, namespace: str) -> None:
    kept = await api.enqueue(Report(1), retention=zizq.Retention(completed_ms=3_600_000))
    kept_dead = await api.enqueue(Report(2), retry_limit=0, retention=zizq.Retention(dead_ms=3_600_000))
    short = await api.enqueue(Report(3), retention=zizq.Retention(completed_ms=100))
    short_dead = await api.enqueue(Report(4), retry_limit=0, retention=zizq.Retention(dead_ms=100))
    await take(api)
    await ack(api, kept.id, short.id)
    for job in (kept_dead, short_dead):
        await fail(api, job.id)  # dead, with an error record
    done = await api.get_job(kept.id)
    assert done.status == "completed" and done.purge_at == (done.completed_at or 0) + 3_600_000
    expired = (short.id, short_dead.id)

    async def hidden() -> bool:
        for job_id in expired:
            try:
                await api.get_job(job_id)
                return False
            except zizq.JobNotFound:
                pass
        return True

    await wait_for(hidden, timeout=5)
    for job_id in expired:
        assert stored(r, namespace, job_id) is not None  # invisible, not yet purged
    assert r.llen("{" + namespace + "}:errors:" + short_dead.id) == 1
    visible = [kept.id, kept_dead.id]

    # Lists and counts, by the indexes and by walks that read the records.
    assert [j.id for j in (await api.list_jobs()).jobs] == visible
    assert [j.id for j in (await api.list_jobs(status="dead")).jobs] == [kept_dead.id]
    assert [j.id for j in (await api.list_jobs(type="report", jq=". >= 0")).jobs] == visible
    assert await api.count_jobs() == 2
    assert await api.count_jobs(status="completed") == await api.count_jobs(status="dead") == 1
    assert await api.count_jobs(type="report", status=["completed", "dead"]) == 2
    stats = await api.stats()
    assert (stats.completed, stats.dead) == (1, 1)
    # Reads and changes of one job: not found, and nothing changes.
    for job_id in expired:
        with pytest.raises(zizq.JobNotFound):
            await api.job_errors(job_id)
        with pytest.raises(zizq.JobNotFound):
            await api.patch_job(job_id, priority=1)
        with pytest.raises(zizq.JobNotFound):
            await api.retry_job(job_id)
    assert await api.retry_jobs() == 1  # kept_dead only
    assert (stored(r, namespace, short_dead.id) or {})["s"] == 5  # still dead
    # delete: not found (it counts as gone), but its record goes all the same.
    with pytest.raises(zizq.JobNotFound):
        await api.delete_job(short.id)
    assert stored(r, namespace, short.id) is None
    assert await api.purge_expired() == 1  # short_dead
    assert stored(r, namespace, short_dead.id) is None
    assert not r.exists("{" + namespace + "}:errors:" + short_dead.id)
    assert (await api.get_job(kept.id)).status == "completed"


async def test_namespace_retention_defaults(api: Any, r: redis.Redis, namespace: str) -> None:
    settings = await api.set_defaults(retention=zizq.Retention(completed_ms=3_600_000, dead_ms=0))
    assert (settings["completed_ms"], settings["dead_ms"]) == (3_600_000, 0)
    kept = await api.enqueue(Report(1))
    own = await api.enqueue(Report(2), retention=zizq.Retention(completed_ms=0))  # its own value wins
    dead = await api.enqueue(Report(3), retry_limit=0)
    await take(api)
    await ack(api, kept.id, own.id)
    failed = await fail(api, dead.id)
    done = await api.get_job(kept.id)
    assert done.status == "completed" and done.purge_at == (done.completed_at or 0) + 3_600_000
    assert stored(r, namespace, own.id) is None
    assert failed is not None and failed.status == "dead" and stored(r, namespace, dead.id) is None
    # A Retention sets the sub-fields it has; None restores the built-in ones.
    settings = await api.set_defaults(retention=zizq.Retention(dead_ms=1000))
    assert (settings["completed_ms"], settings["dead_ms"]) == (3_600_000, 1000)
    settings = await api.set_defaults(retention=None)
    assert (settings["completed_ms"], settings["dead_ms"]) == (0, 604_800_000)


def expired_jobs(client: zizq.Client, r: redis.Redis, namespace: str, n: int) -> None:
    """Put n completed jobs past their purge_at (kept 1 ms) in the namespace."""
    client.enqueue_many([zizq.Enqueue(Report(i), retention=zizq.Retention(completed_ms=1)) for i in range(n)])
    client.run(client.core.heartbeat(W, "join", 60_000))
    while ids := [j.id for j in client.run(client.core.take(W, 1000, [])).jobs]:
        assert client.run(client.core.ack(W, ids)) == []
    assert r.zcard("{" + namespace + "}:completed") == n
    deadline = time.monotonic() + 5
    while client.stats().completed:  # each is expired once its purge_at has passed
        assert time.monotonic() < deadline
        time.sleep(0.01)


async def test_purge_works_in_bounded_batches(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    # The call the workers make deletes at most PURGE_BATCH jobs.
    expired_jobs(client, r, namespace, 2500)
    batches = [client.run(client.core.purge(PURGE_BATCH)) for _ in range(4)]
    assert batches == [1000, 1000, 500, 0]
    assert stored_count(r, namespace) == 0
    # A worker goes on while a batch comes back full: one sweep purges all.
    expired_jobs(client, r, namespace, 2500)
    worker = zizq.Worker(client, zizq.Router(), purge_interval=3600)
    task = asyncio.create_task(worker.run_async())
    await wait_for(lambda: stored_count(r, namespace) == 0, timeout=10)
    assert not r.exists("{" + namespace + "}:completed")
    worker.stop()
    await asyncio.wait_for(task, 10)


async def test_dead_retention_zero_deletes_at_once(api: Any, r: redis.Redis, namespace: str) -> None:
    job = await api.enqueue(Heartbeat(), retry_limit=0, retention=zizq.Retention(dead_ms=0))
    await take(api)
    dead = await fail(api, job.id)
    assert dead is not None and dead.status == "dead"
    assert ns_keys(r, namespace) == {"queues"}


def used_memory(r: redis.Redis, namespace: str) -> int:
    """Bytes the namespace's keys take in Redis (MEMORY USAGE of each, every
    element counted), less its done window (the ids of deleted jobs, kept a
    minute). Not INFO's used_memory: client buffers, the SLOWLOG and the
    allocator move that by tens of kB on a loaded machine."""
    prefix = "{" + namespace + "}:"
    keys = [k for k in r.keys(prefix + "*") if isinstance(k, bytes) and not k.startswith(f"{prefix}done:".encode())]
    pipe = r.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(size or 0 for size in pipe.execute())


async def test_memory_returns_after_purge(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        if job.number % 2:
            raise zizq.KillJob("odd")  # half end dead (with an error record), half completed

    async def cycle() -> tuple[int, int]:
        """2,000 jobs through a worker, kept 200 ms, purged by the worker itself."""
        client.enqueue_many(
            [zizq.Enqueue(Report(i), retention=zizq.Retention(completed_ms=200, dead_ms=200)) for i in range(2000)]
        )
        peak = used_memory(r, namespace)
        worker = zizq.Worker(client, router, concurrency=20, purge_interval=0.2)
        task = asyncio.create_task(worker.run_async())
        await wait_for(lambda: worker.stats.completed + worker.stats.failed == 2000, timeout=30)
        await wait_for(lambda: stored_count(r, namespace) == 0, timeout=10)
        worker.stop()
        await asyncio.wait_for(task, 10)
        return peak, used_memory(r, namespace)

    # The first round warms up what Redis keeps anyway (script cache, the
    # keyspace's hash table); after the second, memory is back where it was.
    await cycle()
    keys_before, memory_before = ns_keys(r, namespace), used_memory(r, namespace)
    peak, after = await cycle()
    assert ns_keys(r, namespace) == keys_before
    assert not r.keys("{" + namespace + "}:errors:*") and not r.keys("{" + namespace + "}:unique:*")
    assert peak - memory_before > 100_000  # the jobs were really there
    assert after - memory_before < 32 * 1024


# -- patch, delete, pause ----------------------------------------------------


async def test_patch_moves_and_reorders(api: Any) -> None:
    a = await api.enqueue(Report(1), queue="q1", priority=10)
    b = await api.enqueue(Report(2), queue="q1", priority=20)
    patched = await api.patch_job(b.id, priority=1)
    assert (patched.priority, patched.queue, patched.status) == (1, "q1", "ready")
    moved = await api.patch_job(a.id, queue="q2")
    assert moved.queue == "q2" and moved.priority == 10
    assert [j.id for j in await take(api, queues=("q1",))] == [b.id]
    assert [j.id for j in await take(api, queues=("q2",))] == [a.id]


async def test_patch_ready_at_moves_between_ready_and_scheduled(api: Any) -> None:
    job = await api.enqueue(Report(1))
    future = datetime.now(UTC) + timedelta(hours=1)
    scheduled = await api.patch_job(job.id, ready_at=future)
    assert scheduled.status == "scheduled" and scheduled.ready_at == int(future.timestamp() * 1000)
    assert await take(api) == []
    ready = await api.patch_job(job.id, ready_at=None)
    assert ready.status == "ready"
    assert [j.id for j in await take(api)] == [job.id]
    in_flight = await api.patch_job(job.id, ready_at=future)
    assert in_flight.status == "in_flight" and in_flight.ready_at == int(future.timestamp() * 1000)


async def test_patch_changes_only_what_is_given(api: Any) -> None:
    job = await api.enqueue(
        Report(1), priority=5, retry_limit=3, backoff=zizq.Backoff(1, 1.0, 1), retention=zizq.Retention(1, 2)
    )
    same = await api.patch_job(job.id)
    assert (same.priority, same.retry_limit, same.backoff, same.retention) == (
        5,
        3,
        zizq.Backoff(1, 1.0, 1),
        zizq.Retention(1, 2),
    )
    changed = await api.patch_job(job.id, retry_limit=None, backoff=None, retention=zizq.Retention(dead_ms=9))
    assert (changed.priority, changed.retry_limit, changed.backoff, changed.retention) == (
        5,
        None,
        None,
        zizq.Retention(1, 9),
    )
    assert (await api.patch_job(job.id, retention=None)).retention is None


async def test_patch_refuses_finished_and_bad_values(api: Any, r: redis.Redis, namespace: str) -> None:
    job = await api.enqueue(Report(1), retention=zizq.Retention(completed_ms=60_000))
    with pytest.raises(zizq.ValidationError, match="70000"):
        await api.patch_job(job.id, priority=70000)
    with pytest.raises(zizq.InvalidName):
        await api.patch_job(job.id, queue="a*b")
    await take(api)
    await ack(api, job.id)
    with pytest.raises(zizq.JobStateError, match="completed"):
        await api.patch_job(job.id, priority=1)
    with pytest.raises(zizq.JobNotFound):
        await api.patch_job("0" * 25, priority=1)


async def test_delete_in_flight_then_ack_is_harmless(api: Any, r: redis.Redis, namespace: str) -> None:
    job = await api.enqueue(Report(1))
    await take(api)
    await api.delete_job(job.id)
    assert await ack(api, job.id) == [job.id]  # refused: the job is gone
    assert await fail(api, job.id) is None
    assert stored_count(r, namespace) == 0 and not r.zcard("{" + namespace + "}:inflight")
    with pytest.raises(zizq.JobNotFound):
        await api.delete_job(job.id)


async def test_pause_and_resume_queue(api: Any) -> None:
    a = await api.enqueue(Report(1), queue="a")
    b = await api.enqueue(Report(2), queue="b")
    assert await api.pause_queue("a") is True
    assert await api.pause_queue("a") is False
    c = await api.enqueue(Report(3), queue="a")  # enqueue still works
    assert c.status == "ready"
    assert [j.id for j in await take(api)] == [b.id]
    assert await take(api, queues=("a",)) == []
    assert await api.resume_queue("a") is True
    assert [j.id for j in await take(api, queues=("a",))] == [a.id, c.id]


async def test_resume_wakes_an_idle_worker(client: zizq.Client) -> None:
    got: list[float] = []
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        got.append(time.monotonic())

    client.pause_queue("default")
    client.enqueue(Report(1))
    worker = zizq.Worker(client, router, max_idle=60)
    task = asyncio.create_task(worker.run_async())
    await asyncio.sleep(0.3)
    assert got == []
    t0 = time.monotonic()
    client.resume_queue("default")
    await wait_for(lambda: bool(got), timeout=5)
    assert got[0] - t0 < 0.5
    worker.stop()
    await asyncio.wait_for(task, 5)


def test_cli_pause_and_resume(redis_server: RedisServer, namespace: str, r: redis.Redis) -> None:
    env = {**os.environ, "ZIZQ_REDIS_URL": redis_server.url}
    for command, expected in (("pause", b"1"), ("resume", b"0")):
        force = ["--force"] if command == "pause" else []  # no job was ever in "emails": pausing ahead of time
        out = subprocess.run(
            [sys.executable, "-m", "zizq", command, "emails", "--namespace", namespace, *force],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert out.returncode == 0 and command in out.stdout.replace("paused", "pause").replace("resumed", "resume")
        assert str(int(r.sismember("{" + namespace + "}:paused", "emails"))).encode() == expected

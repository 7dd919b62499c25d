"""Leases, recovery of lost workers, fencing, poison pills, handler timeouts
and transient Redis errors, against a real Redis.

Script-level cases drive lua/heartbeat.lua through ``client.run(client.core.heartbeat(...))``;
worker cases run zizq.Worker in the test's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis

import zizq
from zizq._protocol.reconnect import TRANSIENT, as_not_now
from zizq.errors import JobTimeout, LeaseLost, RedisUnavailable

from .conftest import RedisServer, Start, free_port, stored, take, wait_for
from .jobs_app import Report

LONG_LEASE_MS = 60_000


class Nap(zizq.JobKind):
    """An async job whose class sets a timeout."""

    NAME = "nap"
    TIMEOUT = 0.2
    seconds: float


class Block(zizq.JobKind):
    """A sync job; number 0 blocks its thread until the test lets it go."""

    NAME = "block"
    TRANSPARENT = True
    number: int


class Raises(zizq.JobKind):
    """Raises a TimeoutError of its own."""

    NAME = "raises"


# -- helpers -----------------------------------------------------------------


def key(namespace: str, *parts: str) -> str:
    return "{" + namespace + "}:" + ":".join(parts)


def holders(r: redis.Redis, namespace: str, unique_key: str) -> list[str]:
    """The ids of the jobs holding a unique key (unique:<key>), by score then id."""
    members: list[bytes] = r.zrange(key(namespace, "unique", unique_key), 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in members]


def redis_ms(r: redis.Redis) -> int:
    seconds, micros = r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def lapsed(r: redis.Redis, namespace: str, worker: str) -> Callable[[], bool]:
    """True once ``worker``'s lease is past by Redis's clock (the one recovery uses)."""

    def check() -> bool:
        score = r.zscore(key(namespace, "workers"), worker)
        assert score is not None, f"{worker} holds no lease"
        return redis_ms(r) > score

    return check


def beat(client: zizq.Client, worker: str, mode: str = "beat", lease_ms: int = LONG_LEASE_MS) -> Any:
    return client.run(client.core.heartbeat(worker, mode, lease_ms))


def take_as(client: zizq.Client, worker: str, count: int = 100, *queues: str) -> list[zizq.Job]:
    return client.run(client.core.take(worker, count, list(queues))).jobs


async def lose(client: zizq.Client, r: redis.Redis, worker: str, *, rescuer: str = "rescuer") -> Any:
    """Let ``worker``'s (short) lease lapse, then have ``rescuer`` beat until it
    recovers it; returns that heartbeat's result."""
    await wait_for(lapsed(r, client.namespace, worker), timeout=5)
    result = beat(client, rescuer, "join")
    assert r.zscore(key(client.namespace, "workers"), worker) is None
    return result


def held_by(r: redis.Redis, namespace: str, worker: str) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else str(m) for m in r.smembers(key(namespace, "worker", worker))}


# -- the heartbeat script ----------------------------------------------------


def test_join_beat_leave(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    workers = key(namespace, "workers")
    before = redis_ms(r)
    joined = beat(client, "w1", "join", 5_000)
    assert (joined.lost, joined.recovered, joined.failed) == (False, 0, 0)
    first = r.zscore(workers, "w1")
    assert first is not None and before + 5_000 <= first <= redis_ms(r) + 5_000
    renewed = beat(client, "w1", "beat", 60_000)
    assert not renewed.lost
    assert (r.zscore(workers, "w1") or 0) >= before + 60_000
    left = beat(client, "w1", "leave")
    assert not left.lost and r.zscore(workers, "w1") is None
    # A beat after leaving is a lost lease: the worker must join again.
    assert beat(client, "w1").lost
    assert r.zscore(workers, "w1") is None


async def test_lost_worker_is_recovered_by_another_worker(api: Any, r: redis.Redis, namespace: str) -> None:
    # Dispatch order: 1, 3, 2, 0, 4 (by priority, then id).
    items = [
        zizq.Enqueue(Report(0), priority=6),
        zizq.Enqueue(Report(1), priority=1, unique_key="u1"),
        zizq.Enqueue(Report(2), priority=5, unique_key=zizq.UniqueKey("u2", "active")),
        zizq.Enqueue(Report(3), priority=1, queue="other"),
        zizq.Enqueue(Report(4), priority=9),
    ]
    jobs = await api.enqueue_many(items)
    order = [j.id for j in sorted(jobs, key=lambda j: (j.priority, j.id))]
    await api.run(api.core.heartbeat("lost", "join", 50))
    taken = await api.run(api.core.take("lost", 3, []))
    assert [j.id for j in taken.jobs] == order[:3]
    assert held_by(r, namespace, "lost") == set(order[:3])
    # Taking released the queued-scope key; the active-scope key is held.
    assert holders(r, namespace, "u1") == []
    assert holders(r, namespace, "u2") == [jobs[2].id]
    before = {j.id: await api.get_job(j.id) for j in taken.jobs}

    await wait_for(lapsed(r, namespace, "lost"), timeout=5)
    result = await api.run(api.core.heartbeat("rescuer", "join", LONG_LEASE_MS))
    assert (result.lost, result.recovered, result.failed) == (False, 3, 0)

    for job_id, was in before.items():
        now = await api.get_job(job_id)
        assert now.status == "ready"
        assert now.attempts == was.attempts == 0
        assert now.recoveries == was.recoveries + 1 == 1
        assert now.priority == was.priority and now.queue == was.queue
        assert await api.job_errors(job_id) == []
        assert r.llen(key(namespace, "errors", job_id)) == 0
        assert r.zscore(key(namespace, "inflight"), job_id) is None
    # The lost worker's traces are gone.
    assert not r.exists(key(namespace, "worker", "lost"))
    assert r.zscore(key(namespace, "workers"), "lost") is None
    # The queued-scope unique key is held by its job again: a duplicate is refused.
    assert holders(r, namespace, "u1") == [jobs[1].id]
    dup = await api.enqueue(Report(99), unique_key="u1")
    assert dup.duplicate and dup.id == jobs[1].id
    assert holders(r, namespace, "u2") == [jobs[2].id]
    # Same place in line: the next takes see the original dispatch order
    # (each suspect handed back is taken alone).
    again: list[zizq.Job] = []
    while batch := await take(api, 10, worker="w2"):
        again += batch
    assert [j.id for j in again] == order
    assert all(j.recoveries == (1 if j.id in before else 0) for j in again)


async def test_lost_worker_is_fenced(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    a, b, c = client.enqueue_many([Report(i) for i in range(3)])
    beat(client, "lost", "join", 50)
    assert [j.id for j in take_as(client, "lost")] == [a.id, b.id, c.id]
    await lose(client, r, "lost")
    # b goes to another worker; a and c stay ready.
    beat(client, "w2", "join")
    client.patch_job(b.id, priority=1)
    assert [j.id for j in take_as(client, "w2", 1)] == [b.id]

    # The lost worker's acks and fails of those jobs are refused...
    assert client.run(client.core.ack("lost", [a.id, b.id])) == [a.id, b.id]
    assert client.run(client.core.fail("lost", c.id, message="late", error_type="Late")) is None
    assert client.run(client.core.release("lost", [a.id, b.id, c.id])) == 0
    # ...and change nothing.
    assert [client.get_job(i).status for i in (a.id, b.id, c.id)] == ["ready", "in_flight", "ready"]
    assert client.get_job(b.id).attempts == 0 and client.job_errors(c.id) == []
    assert held_by(r, namespace, "w2") == {b.id}
    # Its next beat says it is lost; its take is refused; nothing is re-added.
    assert beat(client, "lost").lost
    with pytest.raises(LeaseLost):
        take_as(client, "lost")
    assert r.zscore(key(namespace, "workers"), "lost") is None
    assert not r.exists(key(namespace, "worker", "lost"))
    # The new holder acks normally.
    assert client.run(client.core.ack("w2", [b.id])) == []


async def test_take_without_a_lease_is_refused(api: Any) -> None:
    await api.enqueue(Report(1))
    with pytest.raises(LeaseLost):
        await api.run(api.core.take("never-joined", 1, []))
    assert isinstance(LeaseLost("x"), zizq.ZizqError)


async def test_lapsed_lease_nobody_recovered_is_renewed(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    job = client.enqueue(Report(1))
    beat(client, "slow", "join", 50)
    [taken] = take_as(client, "slow")
    await wait_for(lapsed(r, namespace, "slow"), timeout=5)
    result = beat(client, "slow", "beat", LONG_LEASE_MS)
    assert (result.lost, result.recovered, result.failed) == (False, 0, 0)
    assert (r.zscore(key(namespace, "workers"), "slow") or 0) > redis_ms(r) + LONG_LEASE_MS - 5_000
    got = client.get_job(job.id)
    assert (got.status, got.recoveries, got.dequeued_at) == ("in_flight", 0, taken.dequeued_at)
    assert held_by(r, namespace, "slow") == {job.id}
    # Another worker's beat now finds nothing to recover; the ack goes through.
    assert beat(client, "other", "join").recovered == 0
    assert client.run(client.core.ack("slow", [job.id])) == []


async def test_take_refuses_a_lapsed_lease(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    """A lease entry past its time is not a lease: any heartbeat may recover
    the worker's jobs at any moment, so a take gets nothing until a beat
    renews it."""
    job = client.enqueue(Report(1))
    beat(client, "slow", "join", 50)
    await wait_for(lapsed(r, namespace, "slow"), timeout=5)
    with pytest.raises(LeaseLost, match="lapsed"):
        take_as(client, "slow")
    assert client.get_job(job.id).status == "ready" and held_by(r, namespace, "slow") == set()
    assert not beat(client, "slow", "beat", LONG_LEASE_MS).lost  # nobody recovered it: renewed
    assert [j.id for j in take_as(client, "slow")] == [job.id]


def take_started(client: zizq.Client, worker: str, count: int, start: int) -> Any:
    """Join ``worker`` with a short lease, and take as a worker with
    ``start`` free runners."""
    beat(client, worker, "join", 50)
    return client.run(client.core.take(worker, count, [], start))


async def test_only_a_job_that_started_counts_toward_the_poison_limit(
    client: zizq.Client, r: redis.Redis, namespace: str
) -> None:
    """A worker with one runner dies twice under the same pill, holding three
    prefetched jobs the first time: the pill fails as zizq.WorkerLost, the
    prefetched jobs never started and go on untouched."""
    client.set_defaults(max_recoveries=1)
    pill, *others = client.enqueue_many([zizq.Enqueue(Report(i), retry_limit=0) for i in range(4)])
    first = take_started(client, "first", 4, 1)
    assert [j.id for j in first.jobs] == [pill.id, *(j.id for j in others)]
    assert [stored(r, namespace, j.id)["st"] for j in first.jobs[:1]] == [1]  # type: ignore[index]
    assert all("st" not in (stored(r, namespace, j.id) or {}) for j in others)
    assert (await lose(client, r, "first", rescuer="r1")).recovered == 4
    # Every job was handed back; only the pill's loss counts.
    assert [(stored(r, namespace, j.id) or {}).get("rp") for j in (pill, *others)] == [1, None, None, None]
    assert all((stored(r, namespace, j.id) or {}).get("sx") == 1 for j in others)

    # The suspects are not prefetched: the take stops before them.
    second = take_started(client, "second", 4, 1)
    assert [j.id for j in second.jobs] == [pill.id] and second.held_back and second.more
    assert (await lose(client, r, "second", rescuer="r2")).failed == 1
    dead = client.get_job(pill.id)
    assert dead.status == "dead" and [e.error_type for e in client.job_errors(pill.id)] == ["zizq.WorkerLost"]
    for job in others:
        got = client.get_job(job.id)
        assert (got.status, got.attempts, got.recoveries) == ("ready", 0, 1)
        assert client.job_errors(job.id) == []
    # With a free runner, a suspect is taken (and marked started), alone.
    third = take_started(client, "third", 4, 2)
    assert [j.id for j in third.jobs] == [others[0].id] and third.held_back


async def test_a_suspect_is_taken_alone(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    """A pill and an innocent job taken together by a worker with a free
    runner each: the pill's handler kills the process before the innocent
    one's starts, and both losses count. From then on each is a suspect, and
    a take hands out a suspect alone: the pill's next deaths no longer count
    against its neighbour, which never fails as zizq.WorkerLost (a history
    seed once showed it failing so, never started)."""
    client.set_defaults(max_recoveries=1)
    pill, innocent = client.enqueue_many([zizq.Enqueue(Report(i), retry_limit=0) for i in range(2)])
    first = take_started(client, "first", 2, 2)
    assert [j.id for j in first.jobs] == [pill.id, innocent.id]
    assert (await lose(client, r, "first", rescuer="r1")).recovered == 2
    assert [(stored(r, namespace, j.id) or {}).get("rp") for j in (pill, innocent)] == [1, 1]

    second = take_started(client, "second", 2, 2)
    assert [j.id for j in second.jobs] == [pill.id] and second.held_back and second.more
    assert client.get_job(innocent.id).status == "ready"
    assert (await lose(client, r, "second", rescuer="r2")).failed == 1
    assert client.get_job(pill.id).status == "dead"
    got = client.get_job(innocent.id)
    assert (got.status, got.attempts, got.recoveries) == ("ready", 0, 1)
    assert client.job_errors(innocent.id) == []


async def test_a_normal_outcome_ends_the_count_of_losses(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    """Losses count toward the poison limit only until the handler ends on
    its own: a failure (or an ack) resets them, so max_recoveries losses
    spread over a job's retries do not fail it as a poison pill."""
    client.set_defaults(max_recoveries=1)
    job = client.enqueue(Report(1))
    for n in range(3):
        take_started(client, f"w{n}", 1, 1)
        assert (await lose(client, r, f"w{n}", rescuer=f"r{n}")).recovered == 1
        assert (stored(r, namespace, job.id) or {}).get("rp") == 1
        beat(client, f"v{n}", "join")
        assert len(take_as(client, f"v{n}")) == 1
        # The handler's own failure, retried at once.
        assert client.run(client.core.fail(f"v{n}", job.id, message="boom", retry_in_ms=0)) is not None
        record = stored(r, namespace, job.id) or {}
        assert "rp" not in record and "sx" not in record
        await wait_for(lambda: client.get_job(job.id).ready_at <= redis_ms(r))
    got = client.get_job(job.id)
    assert (got.status, got.attempts, got.recoveries) == ("scheduled", 3, 3)
    assert [e.error_type for e in client.job_errors(job.id)] == [None] * 3


async def test_a_repeated_fail_of_an_earlier_attempt_is_fenced(
    client: zizq.Client, r: redis.Redis, namespace: str
) -> None:
    """The same worker takes a job again after a failure due at once; the
    first attempt's fail, sent again (its reply was lost), and its ack
    change nothing: fencing is per attempt (dequeued_at), not per worker."""
    job = client.enqueue(Report(1))
    [first] = take_as_joined(client, "w")
    assert first.dequeued_at is not None
    assert client.run(client.core.fail("w", job.id, message="boom", retry_in_ms=0, dequeued_at=first.dequeued_at))
    await wait_for(lambda: redis_ms(r) > (first.dequeued_at or 0))
    [second] = take_as(client, "w")
    assert second.dequeued_at != first.dequeued_at
    late = client.core.fail("w", job.id, message="boom", retry_in_ms=0, dequeued_at=first.dequeued_at)
    assert client.run(late) is None
    assert client.run(client.core.ack("w", [job.id], [first.dequeued_at])) == [job.id]
    assert client.run(client.core.release("w", [job.id], [first.dequeued_at])) == 0
    got = client.get_job(job.id)
    assert (got.status, got.attempts, len(client.job_errors(job.id))) == ("in_flight", 1, 1)
    assert client.run(client.core.ack("w", [job.id], [second.dequeued_at])) == []
    assert stored(r, namespace, job.id) is None


def test_ack_and_release_take_one_dequeued_at_per_id(client: zizq.Client) -> None:
    with pytest.raises(zizq.ValidationError, match="2 job ids but 1 dequeued_at"):
        client.core.ack("w", ["a", "b"], [1])
    with pytest.raises(zizq.ValidationError, match="1 job ids but 0 dequeued_at"):
        client.core.release("w", ["a"], [])


async def test_a_gap_in_every_heartbeat_extends_every_lease(
    client: zizq.Client, r: redis.Redis, namespace: str
) -> None:
    """No heartbeat reached Redis for longer than the lease (Redis stalled,
    or was down): the first beat after it does not recover the other
    workers, whose handlers may well be running; their leases move on by
    the gap. A worker still silent a lease after that is lost as usual."""
    jobs = client.enqueue_many([Report(i) for i in range(2)])
    for w in ("a", "b"):
        beat(client, w, "join", 300)
        assert len(take_as(client, w, 1)) == 1
    a_until = r.zscore(key(namespace, "workers"), "a") or 0
    await wait_for(lapsed(r, namespace, "a"), timeout=5)
    await asyncio.sleep(0.3)
    result = beat(client, "b", "beat", 300)
    assert (result.lost, result.recovered, result.failed) == (False, 0, 0)
    assert (r.zscore(key(namespace, "workers"), "a") or 0) >= a_until + 300
    assert [client.get_job(j.id).status for j in jobs] == ["in_flight"] * 2
    # b goes on beating; a stays silent and is lost a lease later.
    deadline = time.monotonic() + 5
    while beat(client, "b", "beat", 300).recovered == 0:
        assert time.monotonic() < deadline, "a was never recovered"
        await asyncio.sleep(0.05)
    assert r.zscore(key(namespace, "workers"), "a") is None
    assert client.get_job(jobs[0].id).status == "ready"


def test_leave_hands_back_at_once(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    jobs = client.enqueue_many([zizq.Enqueue(Report(i), unique_key=f"k{i}") for i in range(3)])
    beat(client, "w1", "join")
    assert len(take_as(client, "w1")) == 3
    left = beat(client, "w1", "leave")
    assert not left.lost
    for j in jobs:
        got = client.get_job(j.id)
        assert (got.status, got.attempts, got.recoveries) == ("ready", 0, 0)
        assert holders(r, namespace, j.unique_key or "") == [j.id]
    assert not r.exists(key(namespace, "worker", "w1"))
    assert r.zscore(key(namespace, "workers"), "w1") is None
    assert [j.id for j in take_as_joined(client, "w2")] == [j.id for j in jobs]


def take_as_joined(client: zizq.Client, worker: str) -> list[zizq.Job]:
    beat(client, worker, "join")
    return take_as(client, worker)


async def test_one_beat_recovers_several_lost_workers(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    jobs = client.enqueue_many([Report(i) for i in range(6)])
    for w in ("a", "b", "c"):
        beat(client, w, "join", 50)
        assert len(take_as(client, w, 2)) == 2
    for w in ("a", "b", "c"):
        await wait_for(lapsed(r, namespace, w), timeout=5)
    result = beat(client, "rescuer", "join")
    assert (result.recovered, result.failed) == (6, 0)
    assert [client.get_job(j.id).status for j in jobs] == ["ready"] * 6
    assert r.zrange(key(namespace, "workers"), 0, -1) == [b"rescuer"]


# -- poison pills ------------------------------------------------------------


@pytest.mark.parametrize(("retry_limit", "final"), [(0, "dead"), (None, "scheduled")])
async def test_job_recovered_too_often_is_failed_as_a_poison_pill(
    client: zizq.Client, r: redis.Redis, namespace: str, retry_limit: int | None, final: str
) -> None:
    settings = client.set_defaults(max_recoveries=1)
    assert settings["max_recoveries"] == 1
    job = client.enqueue(Report(1), retry_limit=retry_limit, unique_key="poison")

    beat(client, "first", "join", 50)
    assert len(take_as(client, "first")) == 1
    once = await lose(client, r, "first", rescuer="r1")
    assert (once.recovered, once.failed) == (1, 0)
    assert client.get_job(job.id).recoveries == 1

    beat(client, "second", "join", 50)
    [second] = take_as(client, "second")
    assert second.id == job.id and second.recoveries == 1
    twice = await lose(client, r, "second", rescuer="r2")
    assert (twice.recovered, twice.failed) == (0, 1)

    got = client.get_job(job.id)
    assert got.status == final and got.attempts == 1 and got.recoveries == 2
    assert got.failed_at is not None
    [error] = client.job_errors(job.id)
    assert error.error_type == "zizq.WorkerLost" and error.attempt == 1
    assert "lost 2 times" in error.message and "second" in error.message
    assert error.dequeued_at == second.dequeued_at
    if final == "dead":
        assert got.purge_at is not None
        assert r.zscore(key(namespace, "dead"), job.id) is not None
        assert holders(r, namespace, "poison") == []
    else:  # a retry like any failure: backoff applies (15 s base at least)
        assert got.ready_at - got.failed_at >= 16_000
        assert r.zscore(key(namespace, "scheduled"), job.id) == got.ready_at
        assert holders(r, namespace, "poison") == [job.id]
    assert r.zscore(key(namespace, "inflight"), job.id) is None
    hour = client.throughput()  # the poison pill counts as a failed attempt
    assert (hour.completed, hour.failed, hour.dead) == (0, int(final == "scheduled"), int(final == "dead"))


async def test_recoveries_up_to_the_limit_hand_back(client: zizq.Client, r: redis.Redis) -> None:
    job = client.enqueue(Report(1))
    for n in range(1, 4):  # the default max_recoveries is 3
        beat(client, f"w{n}", "join", 50)
        assert len(take_as(client, f"w{n}")) == 1
        result = await lose(client, r, f"w{n}", rescuer=f"r{n}")
        assert (result.recovered, result.failed) == (1, 0)
        got = client.get_job(job.id)
        assert (got.status, got.recoveries, got.attempts) == ("ready", n, 0)


# -- the Worker --------------------------------------------------------------


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """An event that blocked handler threads wait on; set after the test so
    no thread outlives it."""
    event = threading.Event()
    yield event
    event.set()


def recover_now(client: zizq.Client, r: redis.Redis, worker_id: str) -> None:
    """Declare ``worker_id`` lost and recover its jobs, in one MULTI so its own
    heartbeat thread cannot renew the lease in between: the lease is set in
    the past and another worker's heartbeat runs."""
    call = client.core.heartbeat("rescuer", "join", LONG_LEASE_MS)
    client.run(call)  # loads the script
    pipe = r.pipeline(transaction=True)
    pipe.zadd(key(client.namespace, "workers"), {worker_id: 0})
    pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    _, reply = pipe.execute()
    assert reply[1] >= 1, "nothing was recovered"


async def test_stopped_worker_leaves(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    router = zizq.Router()
    done: list[int] = []

    @router.handler
    async def report(job: Report) -> None:
        done.append(job.number)

    worker = zizq.Worker(client, router, heartbeat_interval=0.05, lease=2.0)
    task = asyncio.create_task(worker.run_async())
    await wait_for(lambda: r.zscore(key(namespace, "workers"), worker.id) is not None)
    client.enqueue(Report(1))
    await wait_for(lambda: done == [1])
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert r.zscore(key(namespace, "workers"), worker.id) is None
    assert r.zcard(key(namespace, "workers")) == 0
    assert not r.exists(key(namespace, "worker", worker.id))
    assert worker.stats.leases_lost == 0


async def test_worker_whose_lease_was_recovered_rejoins(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    release = asyncio.Event()
    runs: list[tuple[int, int]] = []  # (number, recoveries) per handler run
    router = zizq.Router()

    @router.handler
    async def report(job: Report, meta: zizq.Job) -> None:
        runs.append((job.number, meta.recoveries))
        if len(runs) == 1:
            await release.wait()

    job = client.enqueue(Report(1))
    worker = start(router, concurrency=1, heartbeat_interval=0.05, lease=2.0)
    await wait_for(lambda: runs == [(1, 0)])
    old = worker.id
    recover_now(client, r, old)
    assert client.get_job(job.id).recoveries == 1
    # Its heartbeat finds the lease gone: it joins again under a new id.
    await wait_for(lambda: worker.id != old)
    assert worker.stats.leases_lost == 1
    assert r.zscore(key(namespace, "workers"), old) is None
    assert r.zscore(key(namespace, "workers"), worker.id) is not None
    # The handler of the recovered job ends: its ack is refused (fencing).
    release.set()
    await wait_for(lambda: worker.stats.refused_acks >= 1)
    # The job was handed back, so it runs again, under the new id, and is done.
    await wait_for(lambda: runs[1:2] == [(1, 1)])
    await wait_for(lambda: stored(r, namespace, job.id) is None)
    # And the worker goes on with new work.
    client.enqueue(Report(2))
    await wait_for(lambda: (2, 0) in runs)
    assert worker.stats.leases_lost == 1 and not r.exists(key(namespace, "worker", old))


async def test_worker_whose_lease_entry_vanished_rejoins(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    """The lease entry removed behind the worker's back (ZREM), with a handler
    in flight: the worker joins again under a new id, the job is done in the
    end (the old run's ack goes through, or the job is handed back and run
    again), and new work goes on."""
    release = asyncio.Event()
    runs: list[int] = []
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        runs.append(job.number)
        if runs == [1]:
            await release.wait()

    job = client.enqueue(Report(1))
    worker = start(router, concurrency=1, heartbeat_interval=0.05, lease=2.0)
    await wait_for(lambda: runs == [1])
    old = worker.id
    assert r.zrem(key(namespace, "workers"), old) == 1
    await wait_for(lambda: worker.id != old)
    assert worker.stats.leases_lost == 1
    assert r.zscore(key(namespace, "workers"), worker.id) is not None
    release.set()
    await wait_for(lambda: stored(r, namespace, job.id) is None)
    client.enqueue(Report(2))
    await wait_for(lambda: 2 in runs)
    assert not r.exists(key(namespace, "worker", old))
    assert r.zscore(key(namespace, "workers"), old) is None


def test_jobs_of_a_worker_whose_lease_entry_vanished_are_not_orphaned(
    client: zizq.Client, r: redis.Redis, namespace: str
) -> None:
    job = client.enqueue(Report(1))
    beat(client, "w1", "join")
    take_as(client, "w1")
    r.zrem(key(namespace, "workers"), "w1")  # the entry vanishes (evicted, removed by hand)
    assert beat(client, "w1").lost  # the worker notices and rejoins as another id...
    beat(client, "w1-again", "join")
    # ...then dies before finishing the job. Nobody holds a lease naming w1,
    # so no heartbeat will ever recover the job unless it was handed back now.
    assert client.get_job(job.id).status == "ready"


async def test_job_taken_again_by_the_same_worker_after_recovery(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    """A worker with room to spare takes back a job of its own that was
    recovered while its first run is still going: both runs end cleanly and
    the worker keeps all its runners."""
    release = asyncio.Event()
    runs: list[int] = []
    router = zizq.Router()

    @router.handler
    async def report(job: Report, meta: zizq.Job) -> None:
        runs.append(meta.recoveries)
        if meta.recoveries == 0:
            await release.wait()

    both = asyncio.Event()
    active = 0

    @router.handler
    async def block(job: Block) -> None:
        nonlocal active
        active += 1
        if active == 2:
            both.set()
        await asyncio.wait_for(both.wait(), 5)

    job = client.enqueue(Report(1))
    worker = start(router, concurrency=2, heartbeat_interval=0.05, lease=2.0, shutdown_timeout=0.5)
    await wait_for(lambda: runs == [0])
    recover_now(client, r, worker.id)
    await wait_for(lambda: runs == [0, 1])  # the second run, under the new id
    await wait_for(lambda: stored(r, namespace, job.id) is None)
    release.set()
    await wait_for(lambda: worker.stats.refused_acks == 1)
    # Both runners still work: two jobs run at once.
    client.enqueue_many([Block(1), Block(2)])
    await wait_for(both.is_set, timeout=2)
    await wait_for(lambda: worker.stats.completed == 3)  # the refused ack is not counted


# -- timeouts ----------------------------------------------------------------


async def test_async_handler_past_the_class_timeout_fails(client: zizq.Client, start: Start) -> None:
    router = zizq.Router()
    finished: list[float] = []

    @router.handler
    async def nap(job: Nap) -> None:
        await asyncio.sleep(job.seconds)
        finished.append(job.seconds)

    slow = client.enqueue(Nap(10))
    assert slow.timeout_ms == 200
    quick = client.enqueue(Nap(0.01))
    t0 = time.monotonic()
    worker = start(router, concurrency=2)
    await wait_for(lambda: worker.stats.timed_out == 1, timeout=5)
    assert time.monotonic() - t0 < 3
    await wait_for(lambda: client.get_job(slow.id).status == "scheduled")
    [error] = client.job_errors(slow.id)
    assert error.error_type == "zizq.JobTimeout" and "0.2s" in error.message
    assert client.get_job(slow.id).attempts == 1
    assert finished == [0.01] and worker.stats.completed == 1
    with pytest.raises(zizq.JobNotFound):
        client.get_job(quick.id)


async def test_per_call_timeout_and_sync_handler(client: zizq.Client, start: Start, gate: threading.Event) -> None:
    router = zizq.Router()
    done: list[int] = []

    @router.handler
    def block(job: Block) -> None:
        if job.number == 0:
            gate.wait(10)  # a thread that cannot be cancelled
        done.append(job.number)

    stuck = client.enqueue(Block(0), timeout=0.2, retry_limit=0)
    assert stuck.timeout_ms == 200 and client.get_job(stuck.id).timeout_ms == 200
    # One thread only: the next job runs only if the stuck thread's pool was replaced.
    worker = start(router, concurrency=1)
    await wait_for(lambda: worker.stats.timed_out == 1, timeout=5)
    await wait_for(lambda: client.get_job(stuck.id).status == "dead")
    [error] = client.job_errors(stuck.id)
    assert error.error_type == "zizq.JobTimeout"
    for n in range(1, 4):
        client.enqueue(Block(n))
    await wait_for(lambda: done == [1, 2, 3], timeout=5)
    await wait_for(lambda: worker.stats.completed == 3, timeout=5)  # counted once the handler's outcome is back
    assert worker.stats.failed == 1


async def test_timeout_as_timedelta_and_override(client: zizq.Client) -> None:
    job = client.enqueue(Nap(1), timeout=timedelta(milliseconds=1500))
    assert job.timeout_ms == 1500 and client.get_job(job.id).timeout_ms == 1500
    assert client.enqueue(Block(1)).timeout_ms is None
    with pytest.raises(zizq.ValidationError):
        client.enqueue(Block(1), timeout=0)


@pytest.mark.parametrize("timeout", [None, 5.0])
async def test_handler_raising_its_own_timeout_error_is_not_a_job_timeout(
    client: zizq.Client, start: Start, timeout: float | None
) -> None:
    router = zizq.Router()

    @router.handler
    async def raises(job: Raises) -> None:
        raise TimeoutError("upstream took too long")

    job = client.enqueue(Raises(), timeout=timeout)
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 1)
    await wait_for(lambda: client.get_job(job.id).status == "scheduled")
    [error] = client.job_errors(job.id)
    assert error.error_type == "TimeoutError" and error.message == "upstream took too long"
    assert worker.stats.timed_out == 0
    assert JobTimeout.__name__ not in (error.backtrace or "")


# -- transient errors ----------------------------------------------------------


def test_unreachable_redis_raises_after_the_retry_window() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    client = zizq.Client.from_url(url, "gone", retry_for=1.0)
    t0 = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        client.enqueue(Report(1))
    elapsed = time.monotonic() - t0
    client.close()
    assert isinstance(caught.value, zizq.ZizqError)
    assert url in str(caught.value)
    # Retries at 0 and 0.5 s; the next pause (1 s) would pass the window.
    assert 0.4 <= elapsed <= 1.5, elapsed


async def test_unreachable_redis_async_client() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with zizq.AsyncClient.from_url(url, "gone", retry_for=1.0) as client:
        t0 = time.monotonic()
        with pytest.raises(RedisUnavailable):
            await client.enqueue(Report(1))
        assert 0.4 <= time.monotonic() - t0 <= 1.5


def test_retry_for_zero_raises_at_once() -> None:
    client = zizq.Client.from_url(f"redis://127.0.0.1:{free_port()}/0", "gone", retry_for=0)
    t0 = time.monotonic()
    with pytest.raises(RedisUnavailable):
        client.get_job("x" * 25)
    assert time.monotonic() - t0 < 0.4
    client.close()


def test_replies_that_mean_not_now_are_transient() -> None:
    """redis-py raises these as a plain ResponseError; zizq retries them."""
    for reply in (
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
        "NOREPLICAS Not enough good replicas to write.",
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    ):
        later = as_not_now(redis.ResponseError(reply))
        assert isinstance(later, TRANSIENT) and str(later) == reply
    for reply in ("ERR unknown command", "BUSYKEY Target key name already exists.", "ZIZQ LOST no lease"):
        assert as_not_now(redis.ResponseError(reply)) is None


def test_producer_retries_while_redis_has_too_few_replicas(redis_factory: Callable[..., RedisServer]) -> None:
    """With min-replicas-to-write unmet, writes fail with NOREPLICAS; the
    client retries until they are allowed again."""
    server = redis_factory("--min-replicas-to-write", "1")
    conn = redis.Redis(port=server.port)
    client = zizq.Client.from_url(server.url, "noreplicas", retry_for=10)
    allow = threading.Timer(1.0, conn.config_set, ("min-replicas-to-write", 0))
    allow.start()
    try:
        t0 = time.monotonic()
        job = client.enqueue(Report(1))
        assert time.monotonic() - t0 >= 0.9  # it waited until writes were allowed
        assert client.get_job(job.id).status == "ready"
    finally:
        allow.cancel()
        client.close()
        conn.close()


# -- failures that cannot be recorded ------------------------------------------


async def test_failure_with_a_surrogate_in_its_message_is_recorded(client: zizq.Client, start: Start) -> None:
    router = zizq.Router()

    @router.handler
    async def raises(job: Raises) -> None:
        raise ValueError("cannot open " + b"/tmp/\xff".decode("utf-8", "surrogateescape"))

    job = client.enqueue(Raises())
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 1)
    await wait_for(lambda: client.get_job(job.id).status == "scheduled", timeout=3)
    [error] = client.job_errors(job.id)
    assert error.error_type == "ValueError" and error.message.startswith("cannot open /tmp/")


def test_producer_rides_out_a_failover(redis_factory: Callable[..., RedisServer]) -> None:
    """Writes to a read-only replica fail with READONLY; the client retries
    them until the replica is promoted (as in a failover), then succeeds."""
    primary = redis_factory()
    replica = redis_factory("--replicaof", "127.0.0.1", str(primary.port))
    replica_conn = redis.Redis(port=replica.port)
    client = zizq.Client.from_url(replica.url, "failover", retry_for=10)
    promote = threading.Timer(1.0, replica_conn.execute_command, ("REPLICAOF", "NO", "ONE"))
    promote.start()
    try:
        t0 = time.monotonic()
        job = client.enqueue(Report(1))
        assert time.monotonic() - t0 >= 0.9  # it waited for the promotion
        assert client.get_job(job.id).status == "ready"
    finally:
        promote.cancel()
        client.close()
        replica_conn.close()


async def test_worker_rejoins_through_a_failover_that_lost_its_lease(
    redis_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's Redis follows an empty master for a while (its data, the
    lease included, are gone) and is then promoted back. take answers LOST
    (it only reads before that), and joining again meets READONLY, many
    times over: the worker keeps trying, joins under a new id once Redis
    takes writes again, and runs a job enqueued after."""
    server, empty = redis_factory(), redis_factory("--repl-diskless-sync-delay", "0")
    conn = redis.Redis(port=server.port)
    client = zizq.Client.from_url(server.url, "rejoin")
    beat_sha = client.core.heartbeat("w", "beat", 1).script.sha
    done: list[int] = []
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        done.append(job.number)

    def rejoin_refused() -> bool:  # the take loop's rejoin, a heartbeat call, met READONLY
        return any("taking jobs failed" in r.getMessage() and beat_sha in r.getMessage() for r in caplog.records)

    worker = zizq.Worker(client, router, cron=False)
    task = asyncio.create_task(worker.run_async())
    try:
        await wait_for(lambda: conn.zscore("{rejoin}:workers", worker.id) is not None)
        old = worker.id
        conn.replicaof("127.0.0.1", empty.port)
        await wait_for(lambda: conn.info("replication")["master_link_status"] == "up")  # the data is gone
        await wait_for(rejoin_refused, timeout=15)
        assert not task.done()
        conn.replicaof("NO", "ONE")
        client.enqueue(Report(7))
        await wait_for(lambda: done == [7], timeout=15)
        assert worker.id != old and worker.stats.leases_lost == 1
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
        client.close()
        conn.close()


async def test_worker_warns_when_redis_may_evict_jobs(
    redis_factory: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_factory("--maxmemory-policy", "allkeys-lru")
    worker = zizq.Worker(zizq.Client.from_url(server.url, "evict"), zizq.Router())
    task = asyncio.create_task(worker.run_async())
    await wait_for(lambda: "maxmemory-policy is 'allkeys-lru'" in caplog.text)
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert "noeviction" in caplog.text

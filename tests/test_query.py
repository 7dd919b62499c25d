"""Query and manage: list, count, bulk changes, queues, reset, on a real Redis,
through the sync Client and the AsyncClient (the `api` fixture)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

import zizq
from zizq import filters
from zizq._protocol import query
from zizq._protocol.call import Call
from zizq._protocol.scripts import script

from .conftest import RedisServer, Start, take, wait_for
from .jobs_app import Report

W = "w1"


@dataclass
class World:
    jobs: dict[str, zizq.Job]  # every job, as read after the set-up, with payloads

    def ids(self, pred: Any) -> list[str]:
        return sorted(i for i, j in self.jobs.items() if pred(j))


async def build(api: Any) -> World:
    """Jobs in every state: 12 ready (types a/b/c, queues q1/q2, priorities
    0..3), 3 scheduled, 3 in flight, 2 completed, 2 dead."""
    items = [
        zizq.Enqueue.raw(
            "abc"[i % 3], {"n": i, "tag": "even" if i % 2 == 0 else "odd"}, queue=f"q{1 + i % 2}", priority=i % 4
        )
        for i in range(12)
    ]
    items += [zizq.Enqueue.raw("a", {"n": 100 + i}, queue="q1", delay=3600) for i in range(3)]
    items += [
        zizq.Enqueue.raw("b", {"n": 200 + i}, queue="fly", retention=zizq.Retention(completed_ms=600_000))
        for i in range(7)
    ]
    await api.enqueue_many(items)
    flying = await take(api, 7, ("fly",), worker=W)
    done = [j.id for j in flying[:2]]
    await api.run(api.core.ack(W, done))
    for j in flying[2:4]:
        await api.run(api.core.fail(W, j.id, message="boom", kill=True))
    page = await api.list_jobs(limit=2000)
    return World({j.id: j for j in page.jobs})


async def test_list_pages_in_id_order_both_ways(api: Any) -> None:
    world = await build(api)
    everything = sorted(world.jobs)
    assert len(everything) == 22
    assert {j.status for j in world.jobs.values()} == set(zizq.job.STATUSES)
    for order, expected in (("asc", everything), ("desc", everything[::-1])):
        seen: list[str] = []
        after = None
        while True:
            page = await api.list_jobs(order=order, limit=5, after=after)
            assert len(page.jobs) <= 5
            seen += [j.id for j in page.jobs]
            if page.next is None:
                break
            assert page.next == page.jobs[-1].id
            after = page.next
        assert seen == expected
    first = (await api.list_jobs(limit=3)).jobs
    assert first[0].payload is not None and first[0].payload_json is not None


async def test_each_filter_matches_the_jobs_it_names(api: Any) -> None:
    w = await build(api)
    now = max(j.ready_at for j in w.jobs.values() if j.status == "ready")
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"status": "ready"}, lambda j: j.status == "ready"),
        ({"status": "scheduled,dead"}, lambda j: j.status in ("scheduled", "dead")),
        ({"status": ["in_flight"]}, lambda j: j.status == "in_flight"),
        ({"queue": "q1"}, lambda j: j.queue == "q1"),
        ({"queue": "q2", "status": "ready"}, lambda j: j.queue == "q2" and j.status == "ready"),
        ({"queue": "fly", "status": "completed,in_flight"}, lambda j: j.queue == "fly" and j.status != "dead"),
        ({"type": "a,c"}, lambda j: j.type in ("a", "c")),
        ({"priority": "1..2"}, lambda j: 1 <= j.priority <= 2),
        ({"priority": "..1"}, lambda j: j.priority <= 1),
        ({"priority": "3.."}, lambda j: j.priority >= 3),
        ({"priority": 0}, lambda j: j.priority == 0),
        ({"attempts": "1.."}, lambda j: j.attempts >= 1),
        ({"ready_at": (now + 1, None)}, lambda j: j.ready_at > now),
        ({"ready_at": f"..{now}"}, lambda j: j.ready_at <= now),
        ({"jq": '.tag == "even"'}, lambda j: isinstance(j.payload, dict) and j.payload.get("tag") == "even"),
        ({"jq": ".n >= 100", "type": "b"}, lambda j: j.type == "b" and j.payload["n"] >= 100),
        ({"jq": ".missing.deeper"}, lambda j: False),  # null for objects: no match
        ({"jq": ".[0]"}, lambda j: False),  # a runtime error (index an object): no match
        ({"type": "a", "queue": "q1", "priority": "0..2", "jq": ".n < 100"}, None),
    ]
    ids = sorted(w.jobs)
    cases.append(({"id": [*ids[:4], "0" * 25], "status": "ready"}, lambda j: j.id in ids[:4] and j.status == "ready"))
    cases[-2] = (
        cases[-2][0],
        lambda j: j.type == "a" and j.queue == "q1" and j.priority <= 2 and j.payload["n"] < 100,
    )
    for given, pred in cases:
        expected = w.ids(pred)
        got = [j.id for j in (await api.list_jobs(limit=2000, **given)).jobs]
        assert got == expected, given
        assert await api.count_jobs(**given) == len(expected), given
        small = await api.list_jobs(limit=2, order="desc", **given)
        assert [j.id for j in small.jobs] == expected[::-1][:2], given
    assert expected  # the last case matched something


async def test_a_filter_object_and_empty_sets(api: Any) -> None:
    w = await build(api)
    f = zizq.Filter(status={"ready"}, queue="q1")
    assert [j.id for j in (await api.list_jobs(f)).jobs] == w.ids(lambda j: j.status == "ready" and j.queue == "q1")
    assert (await api.list_jobs(queue=[])).jobs == []
    assert await api.count_jobs(status="") == 0
    assert await api.count_jobs(queue="nowhere") == 0
    with pytest.raises(zizq.ValidationError, match="not both"):
        await api.list_jobs(f, queue="q1")


@pytest.mark.parametrize(
    ("filters", "match"),
    [
        ({"priority": "5..x"}, r"'5\.\.x'.*'x' is not a whole number"),
        ({"priority": "9..3"}, "lower end 9 is above upper end 3"),
        ({"attempts": "-1"}, "'-1' is not a whole number"),
        ({"ready_at": (datetime(2020, 1, 1), None)}, "naive"),
        ({"status": "running"}, "status 'running' is not one of ready, scheduled, in_flight, completed, dead"),
        ({"queue": "a*b"}, "queue"),
        ({"id": "nope"}, "job id 'nope' is not a zizq id"),
        ({"jq": ".a >"}, r"jq filter '\.a >' does not compile"),
        ({"jq": ""}, "is not a jq expression"),
        ({"limit": 2001}, r"limit 2001 is not a whole number in 1\.\.2000"),
        ({"limit": 0}, "limit 0"),
        ({"order": "up"}, "order 'up'"),
        ({"after": "x"}, "job id 'x'"),
    ],
)
async def test_bad_input_is_refused_naming_the_value(api: Any, filters: dict[str, Any], match: str) -> None:
    with pytest.raises(zizq.ValidationError, match=match):
        await api.list_jobs(**filters)


def test_ranges_parse() -> None:
    parse = filters.parse_range
    assert parse("p", "3") == zizq.Range(3, 3)
    assert parse("p", "..7") == zizq.Range(None, 7)
    assert parse("p", "7..") == zizq.Range(7, None)
    assert parse("p", " 1 .. 2 ") == zizq.Range(1, 2)
    assert parse("p", (None, 4)) == zizq.Range(None, 4)
    at = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse("r", (at, at)) == zizq.Range(1704067200000, 1704067200000)
    assert str(zizq.Range(1, None)) == "1.." and str(zizq.Range(2, 2)) == "2"
    with pytest.raises(zizq.ValidationError, match="empty"):
        parse("p", "")


async def test_bulk_delete_retry_and_patch_by_filter(api: Any) -> None:
    w = await build(api)
    dead = w.ids(lambda j: j.status == "dead")
    assert await api.retry_jobs(type="b") == 2
    for job_id in dead:
        job = await api.get_job(job_id)
        assert (job.status, job.attempts, job.queue) == ("ready", 0, "fly")
    assert len(await api.job_errors(dead[0])) == 1  # history kept
    assert await api.retry_jobs() == 0
    with pytest.raises(zizq.ValidationError, match="only dead jobs can be retried"):
        await api.retry_jobs(status="ready")

    # Patch skips finished jobs; naming them in the status filter is refused.
    patched = await api.patch_jobs(zizq.Filter(queue="fly"), priority=9, queue="moved")
    assert patched == 5  # 3 in flight + 2 retried (now ready); 2 completed skipped
    completed = w.ids(lambda j: j.status == "completed")
    for job_id in completed:
        assert (await api.get_job(job_id)).queue == "fly"
    assert await api.count_jobs(queue="moved", status="ready") == 2
    assert await api.count_jobs(queue="moved", status="in_flight") == 3
    with pytest.raises(zizq.ValidationError, match="finished jobs"):
        await api.patch_jobs(zizq.Filter(status="completed"), priority=1)
    with pytest.raises(zizq.ValidationError, match="at least one change"):
        await api.patch_jobs(zizq.Filter())
    with pytest.raises(zizq.ValidationError, match="priority"):
        await api.patch_jobs(zizq.Filter(), priority=70000)

    # A future ready_at moves ready jobs to scheduled.
    later = datetime(2100, 1, 1, tzinfo=UTC)
    assert await api.patch_jobs(zizq.Filter(status="ready", type="c"), ready_at=later) == 4
    assert await api.count_jobs(status="scheduled", type="c") == 4

    assert await api.delete_jobs(status="scheduled", jq=".n >= 100") == 3
    assert await api.count_jobs(status="scheduled") == 4
    assert await api.delete_jobs(id=completed[:1]) == 1
    before = await api.count_jobs()
    assert await api.delete_jobs() == before
    assert await api.count_jobs() == 0


async def test_bulk_changes_walk_many_batches(api: Any) -> None:
    # More jobs than one batch, so the walk goes on past jobs it removed or moved.
    n = 2500
    await api.enqueue_many([zizq.Enqueue.raw("odd" if i % 2 else "even", {"i": i}, priority=i % 7) for i in range(n)])
    assert await api.patch_jobs(zizq.Filter(type="even"), priority=100) == n // 2
    assert await api.count_jobs(priority=100) == n // 2
    assert await api.delete_jobs(type="odd") == n // 2
    assert await api.count_jobs() == n // 2
    assert await api.count_jobs(type="odd") == 0
    page = await api.list_jobs(limit=1000, order="desc", priority=100)
    assert len(page.jobs) == 1000 and page.next == page.jobs[-1].id
    rest = await api.list_jobs(limit=1000, order="desc", priority=100, after=page.next)
    assert len(rest.jobs) == 250 and rest.next is None and rest.jobs[0].id < page.next


async def test_list_queues_and_stats(api: Any) -> None:
    await build(api)
    await api.pause_queue("q2")
    queues = {q.name: q for q in await api.list_queues()}
    assert set(queues) == {"q1", "q2", "fly"}
    assert queues["q1"] == zizq.QueueInfo("q1", False, 6, 3, 0, 0, 0)
    assert queues["q2"] == zizq.QueueInfo("q2", True, 6, 0, 0, 0, 0)
    assert queues["fly"] == zizq.QueueInfo("fly", False, 0, 0, 3, 2, 2)
    fast = {q.name: q for q in await api.list_queues(counts=False)}
    assert fast["fly"] == zizq.QueueInfo("fly", False, 0)
    stats = await api.stats()
    assert (stats.ready, stats.scheduled, stats.in_flight, stats.completed, stats.dead) == (12, 3, 3, 2, 2)
    assert stats.workers == 1 and stats.queues["q2"] == (6, True)


async def test_throughput_counts_what_a_worker_completed_and_failed(
    client: zizq.Client, aclient: zizq.AsyncClient, start: Start
) -> None:
    router = zizq.Router()

    @router.handler
    def report(job: Report) -> None:
        if job.number % 3 == 0:
            raise ValueError(job.number)

    # 0, 3 and 6 fail: 3 dies at once (no retry), 0 and 6 wait to retry.
    client.enqueue_many([zizq.Enqueue(Report(i), retry_limit=0 if i == 3 else 5) for i in range(8)])
    worker = start(router)
    await wait_for(lambda: worker.stats.completed + worker.stats.failed == 8)
    worker.stop()
    for t in (client.throughput(), await aclient.throughput()):
        assert (t.completed, t.failed, t.dead) == (5, 2, 1)
        assert len(t.minutes) == 60 and t.minutes[-1].start <= t.now < t.minutes[-1].start + 60_000
        assert [m.start for m in t.minutes] == [t.minutes[0].start + 60_000 * i for i in range(60)]
    assert len(client.throughput(5).minutes) == 5
    for bad in (0, 61, True, 1.5):
        with pytest.raises(zizq.ValidationError, match=f"minutes {bad!r} is not a whole number in 1..60"):
            client.throughput(bad)  # type: ignore[arg-type]


async def test_reset_refuses_while_workers_hold_leases(api: Any, r: redis.Redis, namespace: str) -> None:
    other = "{" + namespace + "x}:jobs"
    r.set(other, "kept")
    await build(api)
    await api.replace_cron("g", [zizq.CronEntry("e", "* * * * *", zizq.Enqueue.raw("t", {}))])
    with pytest.raises(zizq.WorkersActive, match="1 worker"):
        await api.reset()
    assert r.keys("{" + namespace + "}:*")
    assert await api.reset(force=True) > 10
    assert r.keys("{" + namespace + "}:*") == []
    assert r.get(other) == b"kept"
    assert await api.count_jobs() == 0 and await api.list_crons() == []
    assert await api.reset() == 0
    r.delete(other)


def test_iter_jobs_sync(client: zizq.Client) -> None:
    made = client.enqueue_many([zizq.Enqueue.raw("t", i) for i in range(23)])
    assert [j.id for j in client.iter_jobs(page_size=5)] == sorted(j.id for j in made)
    assert [j.payload for j in client.iter_jobs(page_size=4, jq=". > 20", order="desc")] == [22, 21]


async def test_iter_jobs_async(aclient: zizq.AsyncClient) -> None:
    made = await aclient.enqueue_many([zizq.Enqueue.raw("t", i) for i in range(13)])
    assert [j.id async for j in aclient.iter_jobs(page_size=5)] == sorted(j.id for j in made)


def test_query_script_windows_are_bounded(client: zizq.Client, redis_server: RedisServer) -> None:
    client.enqueue_many([zizq.Enqueue.raw("t", i, priority=i % 3) for i in range(30)])
    q = query.QueryCore(client.core)
    f = zizq.Filter()
    w = client.run(q.walk(f, "ready:default", 0, 12, cap=5, output="meta"))
    assert (w.next, w.count, len(w.jobs)) == (12, 12, 5)
    assert [j.id for j in w.jobs] == sorted(j.id for j in w.jobs) and w.jobs[0].payload_json is None
    w = client.run(q.walk(f, "ready:default", 24, 12, output="count"))
    assert (w.next, w.count, w.jobs) == (-1, 6, [])
    with pytest.raises(zizq.ValidationError, match="window"):
        client.run(q.walk(f, "ready:default", 0, 10_001))
    with pytest.raises(zizq.ValidationError, match="index"):
        client.run(q.walk(f, "jobs", 0, 10))


def test_bulk_script_checks_the_filter_again(client: zizq.Client) -> None:
    # A job that no longer matches when its batch runs is left alone.
    a, b = client.enqueue_many([zizq.Enqueue.raw("t", 1, priority=1), zizq.Enqueue.raw("t", 2, priority=1)])
    client.patch_job(b.id, priority=5)
    q = query.QueryCore(client.core)
    changed, left = client.run(q.bulk("delete", zizq.Filter(priority="..4"), None, "ready:default", [a.id, b.id], []))
    assert (changed, left) == (1, 1)
    assert client.get_job(b.id).priority == 5
    with pytest.raises(zizq.ValidationError, match="unknown patch field"):
        client.run(q.bulk("patch", zizq.Filter(), None, "", [b.id], ["colour", "red"]))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["delete", '{"s":"dead"}', "", "1", "ID"], "filter s is not an array of strings"),
        (["delete", '{"p":[5,1]}', "", "1", "ID"], "filter p is not an array of two numbers"),
        (["delete", '{"p":["a","b"]}', "", "1", "ID"], "filter p is not an array of two numbers"),
        (["delete", '{"x":1}', "", "1", "ID"], "filter key x"),
        (["delete", "{}", "", "2", "ID"], "id count 2 is more than the 1 ids given"),
        # One argument past the ids is a call id (lua/includes/memo.lua); two are not.
        (["delete", "{}", "", "1", "ID", "extra", "more"], "3 ids given for an id count of 1"),
        (["delete", "{}", "jobs", "1", "ID"], "index jobs is not"),
    ],
    ids=["set as text", "range reversed", "range of text", "unknown key", "too few ids", "too many ids", "bad index"],
)
def test_bulk_script_refuses_bad_arguments_before_changing_anything(
    client: zizq.Client, args: list[str], message: str
) -> None:
    # For clients in other languages: the Python client never sends these.
    job = client.enqueue_raw("t", 1)
    call = Call(script("bulk"), client.core.keys, [a.replace("ID", job.id) for a in args], lambda x: x)
    with pytest.raises(zizq.ValidationError, match=message):
        client.run(call)
    assert client.get_job(job.id).status == "ready"

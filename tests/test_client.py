"""The clients against a real Redis: each case runs on the sync Client and the
AsyncClient (the `api` fixture)."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

import zizq
from zizq._protocol.call import Call
from zizq._protocol.jobs import enqueue_call_args, short_rows
from zizq._protocol.scripts import script

from .conftest import stored, take, wait_for
from .jobs_app import Heartbeat, Report, SendEmail


def keys_of(r: redis.Redis, namespace: str) -> set[Any]:
    return set(r.keys("{" + namespace + "}:*"))


async def test_enqueue_returns_metadata(api: Any) -> None:
    job = await api.enqueue(SendEmail(to="a@example.com"))
    assert len(job.id) == 25 and job.id.isalnum() and job.id == job.id.lower()
    assert (job.type, job.queue, job.priority, job.status, job.attempts) == ("send_email", "emails", 50, "ready", 0)
    assert job.duplicate is False
    stored = await api.get_job(job.id)
    assert stored.payload == {"to": "a@example.com", "subject": "hello"}
    assert stored.ready_at == job.ready_at


async def test_option_precedence(api: Any) -> None:
    default = await api.enqueue(Heartbeat())
    assert (default.queue, default.priority) == ("default", 32768)
    by_type = await api.enqueue(SendEmail(to="x"))
    assert (by_type.queue, by_type.priority) == ("emails", 50)
    by_call = await api.enqueue(SendEmail(to="x"), queue="urgent", priority=1, retry_limit=3)
    assert (by_call.queue, by_call.priority, by_call.retry_limit) == ("urgent", 1, 3)
    stored = await api.get_job(by_call.id)
    assert (stored.queue, stored.priority, stored.retry_limit) == ("urgent", 1, 3)


async def test_unit_and_transparent_payloads(api: Any) -> None:
    unit = await api.get_job((await api.enqueue(Heartbeat())).id)
    assert unit.payload is None and unit.payload_json == b"null"
    scalar = await api.get_job((await api.enqueue(Report(42))).id)
    assert scalar.payload == 42


async def test_enqueue_raw(api: Any) -> None:
    job = await api.enqueue_raw("made_elsewhere", {"k": [1, 2]}, queue="other", priority=7)
    got = await api.get_job(job.id)
    assert (got.type, got.queue, got.priority, got.payload) == ("made_elsewhere", "other", 7, {"k": [1, 2]})


async def test_delay_and_ready_at_schedule(api: Any) -> None:
    delayed = await api.enqueue(Heartbeat(), delay=60)
    assert delayed.status == "scheduled"
    later = await api.enqueue(Heartbeat(), delay=timedelta(minutes=5))
    assert later.status == "scheduled" and later.ready_at - delayed.ready_at >= 239_000
    at = datetime.now(UTC) + timedelta(hours=1)
    absolute = await api.enqueue(Heartbeat(), ready_at=at)
    assert absolute.status == "scheduled" and absolute.ready_at == int(at.timestamp() * 1000)
    past = datetime(2020, 1, 1, tzinfo=UTC)
    old = await api.enqueue(Heartbeat(), ready_at=past)
    assert old.status == "ready" and old.ready_at == int(past.timestamp() * 1000)


async def test_scheduled_job_becomes_ready_when_due(api: Any) -> None:
    job = await api.enqueue(Heartbeat(), delay=0.3)
    assert await take(api) == []
    taken: list[zizq.Job] = []

    async def due() -> bool:
        taken.extend(await take(api))
        return bool(taken)

    await wait_for(due, timeout=5)
    assert [t.id for t in taken] == [job.id]
    assert taken[0].dequeued_at is not None and taken[0].dequeued_at >= job.ready_at


async def test_dispatch_order_priority_then_fifo_across_queues(api: Any) -> None:
    plan = [("a", 5), ("b", 1), ("c", 5), ("a", 1), ("b", 9), ("c", 1), ("a", 5)]
    jobs = [await api.enqueue(Report(i), queue=q, priority=p) for i, (q, p) in enumerate(plan)]
    order = await take(api, queues=("a", "b", "c"))
    expected = sorted(jobs, key=lambda j: (j.priority, j.id))
    assert [j.id for j in order] == [j.id for j in expected]
    assert [j.payload for j in order] == [1, 3, 5, 0, 2, 6, 4]
    assert all(j.status == "in_flight" for j in order)


async def test_take_respects_queue_selection_and_count(api: Any) -> None:
    for i in range(5):
        await api.enqueue(Report(i), queue="x")
    await api.enqueue(Report(99), queue="y")
    first = await take(api, count=2, queues=("x",))
    rest = await take(api, count=10, queues=("x",))
    assert [j.payload for j in first + rest] == [0, 1, 2, 3, 4]
    assert [j.payload for j in await take(api)] == [99]  # no queues named: every queue


async def test_enqueue_many_is_ordered_and_dedupes_in_batch(api: Any) -> None:
    items = [
        SendEmail(to="1"),
        zizq.Enqueue(SendEmail(to="2"), unique_key="same"),
        zizq.Enqueue.raw("raw_type", [1], queue="q"),
        zizq.Enqueue(SendEmail(to="3"), unique_key="same"),
    ]
    jobs = await api.enqueue_many(items)
    assert [j.type for j in jobs] == ["send_email", "send_email", "raw_type", "send_email"]
    assert jobs[3].duplicate and jobs[3].id == jobs[1].id
    assert not any(j.duplicate for j in jobs[:3])
    assert (await api.get_job(jobs[1].id)).payload["to"] == "2"


def test_short_rows_cut_a_row_that_repeats_the_full_row_before_it() -> None:
    head, tail = ["t", "q", "5"], ["", "", "3", "", "", "", "", "", ""]
    rows: list[list[str | bytes]] = [
        ["a", *head, b"1", *tail],
        ["b", *head, b"2", *tail],
        ["c", *head, b"3", *tail[:-1], "500"],  # a value of its own: sent whole
        ["d", *head, b"4", *tail[:-1], "500"],
        ["e", *head, b"5", *tail, "lim", "", ""],  # a longer row: sent whole
    ]
    assert short_rows(rows) == [rows[0], ["b", b"2"], rows[2], ["d", b"4"], rows[4]]


def test_job_fields_start_in_the_order_enqueue_results_are_built_in() -> None:
    """decode_enqueued makes Job objects with positional arguments."""
    first = ["id", "type", "queue", "priority", "status", "ready_at", "attempts", "retry_limit", "backoff"]
    first += ["retention", "unique_key", "unique_while"]
    assert [f.name for f in dataclasses.fields(zizq.Job)][: len(first)] == first


async def test_enqueue_many_of_several_kinds_and_options_keeps_each_jobs_values(api: Any) -> None:
    items = [
        SendEmail(to="1"),
        SendEmail(to="2"),
        zizq.Enqueue(SendEmail(to="3"), priority=9, delay=60),
        zizq.Enqueue(SendEmail(to="4"), priority=9, delay=60),
        Report(5),
        SendEmail(to="6"),
    ]
    jobs = await api.enqueue_many(items)
    stored_jobs = [await api.get_job(j.id) for j in jobs]
    assert [(j.type, j.queue, j.priority, j.status) for j in stored_jobs] == [
        ("send_email", "emails", 50, "ready"),
        ("send_email", "emails", 50, "ready"),
        ("send_email", "emails", 9, "scheduled"),
        ("send_email", "emails", 9, "scheduled"),
        ("report", "default", 32768, "ready"),
        ("send_email", "emails", 50, "ready"),
    ]
    assert [j.payload for j in stored_jobs[4:]] == [5, {"to": "6", "subject": "hello"}]
    assert [j.payload["to"] for j in stored_jobs[:4]] == ["1", "2", "3", "4"]


async def test_unique_key_duplicate_returns_existing(api: Any) -> None:
    first = await api.enqueue(SendEmail(to="a"), unique_key=zizq.UniqueKey.raw("k"))
    again = await api.enqueue(SendEmail(to="b"), unique_key="k")
    assert again.duplicate and again.id == first.id and again.status == "ready"


async def test_enqueue_many_is_all_or_nothing(api: Any, r: redis.Redis, namespace: str) -> None:
    with pytest.raises(zizq.ValidationError, match="65536"):
        await api.enqueue_many([SendEmail(to="ok"), zizq.Enqueue(SendEmail(to="bad"), priority=65536)])
    assert keys_of(r, namespace) == set()


@pytest.mark.parametrize(
    ("call", "bad"),
    [
        (lambda api: api.enqueue(SendEmail(to="x"), priority=-1), "-1"),
        (lambda api: api.enqueue(SendEmail(to="x"), priority=70000), "70000"),
        (lambda api: api.enqueue(SendEmail(to="x"), queue="a,b"), "'a,b'"),
        (lambda api: api.enqueue(SendEmail(to="x"), queue=""), "''"),
        (lambda api: api.enqueue(SendEmail(to="x"), delay=-5), "-5"),
        (lambda api: api.enqueue(SendEmail(to="x"), ready_at=datetime(2030, 1, 1)), "naive"),
        (lambda api: api.enqueue_raw("t{x}", {}), "'t{x}'"),
        (lambda api: api.enqueue_raw("t", {"x": float("nan")}), "nan"),
        (lambda api: api.enqueue_raw("t", {"x": object()}), "object"),
        (lambda api: api.enqueue_raw("t", 2**70), "64-bit"),
        (lambda api: api.enqueue(SendEmail(to=object())), "object"),  # type: ignore[arg-type]
    ],
)
async def test_bad_input_raises_before_writing(api: Any, r: redis.Redis, namespace: str, call: Any, bad: str) -> None:
    with pytest.raises(zizq.ZizqError) as info:
        await call(api)
    assert bad in str(info.value)
    assert keys_of(r, namespace) == set()


async def test_unknown_job_is_not_found(api: Any) -> None:
    with pytest.raises(zizq.JobNotFound, match="nope"):
        await api.get_job("nope")


async def test_script_errors_become_zizq_exceptions(api: Any, r: redis.Redis, namespace: str) -> None:
    # Bypass client-side validation: the script's own check names the value.
    args = enqueue_call_args([["id1", "t", "q", "70000", b"{}", "", "", "", "", "", "", "", "", ""]])
    with pytest.raises(zizq.ValidationError, match="70000"):
        await api.run(Call(script("enqueue"), api.core.keys, args, lambda x: x))
    assert keys_of(r, namespace) == set()


async def test_scripts_reload_after_flush(api: Any, r: redis.Redis) -> None:
    await api.enqueue(Heartbeat())
    r.script_flush()
    job = await api.enqueue(Heartbeat())
    assert (await api.get_job(job.id)).status == "ready"


async def test_retried_enqueue_with_same_id_creates_one_job(api: Any, r: redis.Redis, namespace: str) -> None:
    call = api.core.enqueue([zizq.Enqueue(SendEmail(to="once"))])
    first = await api.run(call)
    second = await api.run(call)  # as a client retrying after a timeout would
    assert first[0].id == second[0].id and not second[0].duplicate
    assert r.zcard("{" + namespace + "}:ready:emails") == 1


def test_namespaces_are_isolated(redis_server: Any, namespace: str) -> None:
    a = zizq.Client.from_url(redis_server.url, namespace + "-a")
    b = zizq.Client.from_url(redis_server.url, namespace + "-b")
    job = a.enqueue(Heartbeat())
    with pytest.raises(zizq.JobNotFound):
        b.get_job(job.id)
    with pytest.raises(zizq.InvalidName):
        zizq.Client.from_url(redis_server.url, "bad{ns}")
    a.close()
    b.close()


def test_enqueue_resent_after_a_lost_connection_finds_its_job_done(redis_factory: Any) -> None:
    """Client.run sends an enqueue again after a connection error as a
    repeat: when the first send had created the job, and it has run and been
    deleted since, the repeat finds it done instead of creating it again."""
    server = redis_factory("--appendonly", "yes")  # done:<n> survives the restart
    client = zizq.Client.from_url(server.url, "repeat")
    call = client.core.enqueue([zizq.Enqueue(SendEmail(to="once"))])
    [first] = client.run(call)  # this reply is the one "lost"
    client.run(client.core.heartbeat("w1", "join", 60_000))
    [taken] = client.run(client.core.take("w1", 1, [])).jobs
    assert client.run(client.core.ack("w1", [taken.id])) == []  # done, and deleted (retention 0)
    server.stop()
    result: list[zizq.Job] = []

    def send() -> None:
        jobs = client.run(call)
        result.extend(jobs)

    sender = threading.Thread(target=send)
    sender.start()  # the first send fails: Redis is down
    time.sleep(0.2)
    server.start()
    sender.join(30)
    assert [(j.id, j.status) for j in result] == [(first.id, "completed")]
    assert stored(client.redis, "repeat", first.id) is None
    assert client.redis.zcard("{repeat}:ready:emails") == 0
    client.close()


async def test_retried_enqueue_after_the_job_was_done_creates_nothing(api: Any, r: redis.Redis, namespace: str) -> None:
    call = api.core.enqueue([zizq.Enqueue(SendEmail(to="once"))])
    [first] = await api.run(call)
    [taken] = await take(api)
    assert await api.run(api.core.ack("w1", [taken.id])) == []  # done, and deleted (retention 0)
    [again] = await api.run(call.repeated())  # the reply of the first call was lost; the client retries
    assert (again.id, again.status) == (first.id, "completed")
    assert stored(r, namespace, first.id) is None
    assert r.zcard("{" + namespace + "}:ready:emails") == 0


async def test_get_job_says_when_a_job_was_deleted_as_it_finished(api: Any, r: redis.Redis, namespace: str) -> None:
    done, dead, live = [await api.enqueue(Report(i), retention=zizq.Retention(0, 0)) for i in range(3)]
    await take(api, 2)
    await api.run(api.core.ack("w1", [done.id]))
    await api.run(api.core.fail("w1", dead.id, message="no", kill=True))
    never = "0" * 25
    # The script on its own: ids left in done:<n> by a retention of 0.
    assert await api.run(api.core.done([done.id, dead.id, live.id, never])) == [True, True, False, False]
    for job_id in (done.id, dead.id):
        with pytest.raises(zizq.JobNotFound, match=r"finished \(completed, or dead\) within the last minute"):
            await api.get_job(job_id)
    with pytest.raises(zizq.JobNotFound, match=f"^no job with id '{never}'$"):
        await api.get_job(never)
    assert (await api.get_job(live.id)).status == "ready"
    # The window is the done:<n> hashes: once they expire, the id is unknown.
    r.delete(*r.keys("{" + namespace + "}:done:*"))
    with pytest.raises(zizq.JobNotFound, match=r"^no job with id"):
        await api.get_job(done.id)

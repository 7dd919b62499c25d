"""Workflows: jobs that wait for other jobs (depends_on, chain) and batches
whose callbacks fire exactly once; through both clients, the scripts on a
real Redis, the CLI, and real `zizq worker` processes (one killed with
SIGKILL mid-batch)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import zizq

from .conftest import ROOT, RedisServer, take, wait_for
from .flows_app import Notify, Step
from .test_bounds import script_calls, slow_scripts, watched
from .test_cli_jobs import run as cli

KEEP = zizq.Retention(completed_ms=3_600_000)  # completed jobs stay readable to the checks


async def ack(api: Any, *jobs: zizq.Job, worker: str = "w1") -> None:
    assert await api.run(api.core.ack(worker, [j.id for j in jobs])) == []


async def kill(api: Any, job: zizq.Job, worker: str = "w1") -> None:
    assert await api.run(api.core.fail(worker, job.id, message="boom", kill=True)) is not None


async def test_a_job_waits_until_every_dependency_has_completed(api: Any) -> None:
    a = await api.enqueue(Step(tag="a"), retention=KEEP)
    b = await api.enqueue(Step(tag="b"), retention=KEEP)
    c = await api.enqueue(Step(tag="c"), depends_on=[a.id, b], priority=0)
    assert (c.status, c.depends_on) == ("waiting", (a.id, b.id))
    assert (await api.stats()).waiting == 1
    assert await api.count_jobs(status="waiting") == 1
    assert [j.id for j in (await api.list_jobs(status="waiting")).jobs] == [c.id]

    taken = await take(api)
    assert sorted(j.id for j in taken) == sorted([a.id, b.id])  # c waits, whatever its priority
    assert await api.run(api.core.ack("w1", [taken[0].id], results=[b'"thumb-1"'])) == []
    assert (await api.get_job(c.id)).status == "waiting"
    assert await api.run(api.core.ack("w1", [taken[1].id], results=[b'"thumb-2"'])) == []
    assert (await api.get_job(c.id)).status == "ready"
    assert (await api.stats()).waiting == 0
    [child] = await take(api)
    assert child.id == c.id and child.depends_on == (a.id, b.id)
    # What a handler that takes its Job reads: the jobs it depended on, with their results.
    results = {taken[0].id: "thumb-1", taken[1].id: "thumb-2"}
    assert [j and (j.id, j.status, j.result) for j in await api.get_dependencies(child)] == [
        (a.id, "completed", results[a.id]),
        (b.id, "completed", results[b.id]),
    ]


async def test_a_dead_dependency_kills_the_waiting_job_unless_it_runs_anyway(api: Any) -> None:
    a = await api.enqueue(Step(tag="a"))
    dies = await api.enqueue(Step(tag="dies"), depends_on=[a])
    runs = await api.enqueue(Step(tag="runs"), depends_on=[a], on_dependency_failure="run")
    [taken] = await take(api)
    await kill(api, taken)
    dead = await api.get_job(dies.id)
    assert dead.status == "dead"
    [error] = await api.job_errors(dies.id)
    assert error.error_type == "zizq.DependencyFailed" and a.id in error.message and "dead" in error.message
    assert (await api.get_job(runs.id)).status == "ready"
    # A job enqueued on a dependency that is dead already dies at once.
    late = await api.enqueue(Step(tag="late"), depends_on=[a])
    assert late.status == "dead"


async def test_bad_dependencies_are_refused_before_anything_is_written(api: Any) -> None:
    a = await api.enqueue(Step(tag="a"))
    with pytest.raises(zizq.JobNotFound, match="0" * 25):
        await api.enqueue_many([zizq.Enqueue(Step(tag="x")), zizq.Enqueue(Step(tag="y"), depends_on=["0" * 25])])
    item = zizq.Enqueue(Step(tag="self"))
    item.depends_on = [item]
    with pytest.raises(zizq.ValidationError, match="placed before"):
        await api.enqueue_many([item])
    later = zizq.Enqueue(Step(tag="later"))
    with pytest.raises(zizq.ValidationError, match="placed before"):
        await api.enqueue_many([zizq.Enqueue(Step(tag="first"), depends_on=[later]), later])
    with pytest.raises(zizq.ValidationError, match="on_dependency_failure 'sometimes'"):
        await api.enqueue(Step(tag="x"), depends_on=[a], on_dependency_failure="sometimes")
    with pytest.raises(zizq.ValidationError, match="not a job id"):
        await api.enqueue(Step(tag="x"), depends_on=[3])
    with pytest.raises(zizq.ValidationError, match="a limit or a group cannot have depends_on"):
        await api.enqueue(Step(tag="x"), depends_on=[a], group="tenant-1")
    with pytest.raises(zizq.ValidationError, match="at most 100"):
        await api.enqueue(Step(tag="x"), depends_on=[f"{i:025d}" for i in range(101)])
    # The id of a job of another namespace is no job of this one.
    other = zizq.Client.from_url(api.url, api.namespace + "-other")
    try:
        elsewhere = other.enqueue(Step(tag="elsewhere"))
    finally:
        other.close()
    with pytest.raises(zizq.JobNotFound, match="not a job of this namespace"):
        await api.enqueue(Step(tag="x"), depends_on=[elsewhere.id])
    assert await api.count_jobs() == 1


def test_a_durable_client_waits_for_replicas_for_workflow_enqueues(redis_server: RedisServer, namespace: str) -> None:
    with zizq.Client.from_url(redis_server.url, namespace) as plain:
        a = plain.enqueue(Step(tag="a"))
    with zizq.Client.from_url(redis_server.url, namespace, wait_replicas=1, wait_timeout=0.05, retry_for=0.3) as c:
        with pytest.raises(zizq.RedisUnavailable, match="0 of 1 replicas"):
            c.enqueue(Step(tag="b"), depends_on=[a])
    with zizq.Client.from_url(redis_server.url, namespace) as plain:
        assert plain.count_jobs(status="waiting") == 1  # sent again with the same id: made once


async def test_chain_and_dependencies_inside_one_call(api: Any) -> None:
    a, b, c = await api.chain([Step(tag="a"), zizq.Enqueue(Step(tag="b"), priority=1), Step(tag="c")])
    assert [j.status for j in (a, b, c)] == ["ready", "waiting", "waiting"]
    assert (b.depends_on, c.depends_on) == ((a.id,), (b.id,))
    first = zizq.Enqueue(Step(tag="p"))
    p, q = await api.enqueue_many([first, zizq.Enqueue(Step(tag="q"), depends_on=[first, a])])
    assert q.depends_on == (p.id, a.id) and q.status == "waiting"
    [first_taken] = await take(api, 1)
    assert first_taken.id == a.id  # b and c wait
    await ack(api, first_taken)
    [second] = await take(api, 1)
    assert second.id == b.id  # released in its place: priority 1 goes first
    await ack(api, second)
    third = await take(api, 10)
    assert sorted(j.id for j in third) == sorted([c.id, p.id])  # q waits for p
    await ack(api, *third)
    assert [j.id for j in await take(api, 10)] == [q.id]


async def test_deleting_a_waiting_job_or_its_dependency(api: Any) -> None:
    a = await api.enqueue(Step(tag="a"))
    b = await api.enqueue(Step(tag="b"))
    waits = await api.enqueue(Step(tag="waits"), depends_on=[a])
    orphan = await api.enqueue(Step(tag="orphan"), depends_on=[b])
    await api.delete_job(waits.id)
    assert (await api.stats()).waiting == 1 and await api.count_jobs(status="waiting") == 1
    await api.delete_job(b.id)
    assert (await api.get_job(orphan.id)).status == "dead"
    [error] = await api.job_errors(orphan.id)
    assert "deleted" in error.message and error.error_type == "zizq.DependencyFailed"
    [taken] = await take(api)
    await ack(api, taken)  # a: its deleted dependent is skipped
    assert (await api.stats()).waiting == 0


def take_sync(client: zizq.Client, count: int = 100) -> list[zizq.Job]:
    client.run(client.core.heartbeat("w1", "join", 60_000))
    return list(client.run(client.core.take("w1", count, [])).jobs)


async def test_a_cancelled_dependency_or_member_counts_as_dead(api: Any) -> None:
    a = await api.enqueue(Step(tag="a"))
    child = await api.enqueue(Step(tag="child"), depends_on=[a])
    grandchild = await api.enqueue(Step(tag="grandchild"), depends_on=[child], on_dependency_failure="run")
    await api.cancel_job(a.id)
    assert (await api.get_job(child.id)).status == "dead"
    [error] = await api.job_errors(child.id)
    assert "was cancelled" in error.message and error.error_type == "zizq.DependencyFailed"
    assert (await api.get_job(grandchild.id)).status == "ready"  # it runs anyway
    waits = await api.enqueue(Step(tag="waits"), depends_on=[grandchild])
    await api.cancel_job(waits.id)  # a waiting job cancelled leaves the waiting set
    assert (await api.stats()).waiting == 0 and (await api.get_job(waits.id)).status == "dead"


def callbacks(tag: str) -> dict[str, Any]:
    return {name: Notify(what=name, tag=tag) for name in ("on_success", "on_complete", "on_dead")}


def exists(client: zizq.Client, job_id: str | None) -> bool:
    return job_id is not None and client.run(client.core.get([job_id]))[0] is not None


async def test_batch_callbacks_fire_once_and_a_retry_reopens_the_batch(client: zizq.Client) -> None:
    with client.batch(**callbacks("b")) as batch:
        members = batch.enqueue_many([zizq.Enqueue(Step(tag=str(i)), retention=KEEP) for i in range(3)])
    assert [m.batch_id for m in members] == [batch.id] * 3
    info = client.get_batch(batch.id)
    assert (info.total, info.pending, info.closed, info.finished, info.fired) == (3, 3, True, False, ())
    with pytest.raises(zizq.BatchClosed, match=batch.id):
        batch.enqueue(Step(tag="late"))
    taken = take_sync(client)
    assert client.run(client.core.ack("w1", [taken[0].id, taken[1].id])) == []
    assert client.get_batch(batch.id).fired == ()
    client.run(client.core.fail("w1", taken[2].id, message="boom", kill=True))
    info = client.get_batch(batch.id)
    assert (info.completed, info.dead, info.finished, info.fired) == (2, 1, True, ("on_complete", "on_dead"))
    assert exists(client, info.on_complete) and exists(client, info.on_dead) and not exists(client, info.on_success)

    client.retry_job(taken[2].id)  # the batch is not finished again
    info = client.get_batch(batch.id)
    assert (info.dead, info.pending, info.finished_at) == (0, 1, None)
    [again] = [j for j in take_sync(client) if j.type == "step"]
    assert client.run(client.core.ack("w1", [again.id])) == []
    info = client.get_batch(batch.id)
    assert info.finished and info.fired == ("on_success", "on_complete", "on_dead")
    assert client.count_jobs(type="notify") == 3  # on_complete did not fire twice

    with pytest.raises(zizq.BatchNotFound, match="0" * 25):
        client.get_batch("0" * 25)
    with client.batch(on_dead=Notify(what="on_dead", tag="cancel")) as cancelled:
        [member] = cancelled.enqueue_many([Step(tag="cancelled")])
    client.cancel_job(member.id)
    info = client.get_batch(cancelled.id)
    assert (info.dead, info.finished, info.fired) == (1, True, ("on_dead",))


async def test_empty_and_child_batches(client: zizq.Client) -> None:
    empty = client.batch(**callbacks("empty"))
    info = empty.close()
    assert info.finished and info.fired == ("on_success", "on_complete")
    parent = client.batch(on_complete=Notify(what="complete", tag="parent"))
    child = parent.batch(on_success=Notify(what="success", tag="child"))
    [member] = child.enqueue_many([Step(tag="m")])
    parent.close()
    assert client.get_batch(parent.id).pending == 1  # the child batch
    child.close()
    [taken] = [j for j in take_sync(client) if j.type == "step"]
    assert taken.id == member.id
    client.run(client.core.ack("w1", [taken.id]))
    assert client.get_batch(child.id).fired == ("on_success",)
    info = client.get_batch(parent.id)
    assert (info.completed, info.fired) == (1, ("on_complete",))
    other = zizq.Client.from_url(client.url, client.namespace + "-other")
    try:
        with pytest.raises(zizq.ValidationError, match="share a namespace"):
            other.batch(parent=parent)
    finally:
        other.close()
    with pytest.raises(zizq.BatchNotFound):
        client.batch(parent="0" * 25).open()
    with pytest.raises(zizq.ValidationError, match="on_dead"):
        client.batch(on_dead="not a job")  # type: ignore[arg-type]


async def test_async_batch(aclient: zizq.AsyncClient) -> None:
    async with aclient.batch(on_complete=Notify(what="complete", tag="a")) as batch:
        await batch.enqueue(Step(tag="one"))
    [taken] = await take(aclient)
    await ack(aclient, taken)
    info = await batch.get()
    assert info.fired == ("on_complete",)
    assert [b.id for b in await aclient.list_batches()] == [batch.id]


def test_batches_command(redis_server: RedisServer, namespace: str, client: zizq.Client) -> None:
    with client.batch(on_complete=Notify(what="complete", tag="cli")) as batch:
        batch.enqueue(Step(tag="one"))
    code, out, _ = cli(redis_server, namespace, "batches", "list")
    assert code == 0 and batch.id in out and "closed" in out
    code, out, _ = cli(redis_server, namespace, "batches", "get", batch.id)
    assert code == 0 and "pending" in out and "not fired" in out
    code, _, err = cli(redis_server, namespace, "batches", "get", "0" * 25)
    assert code == 3 and err.startswith("zizq: error: no batch") and "Traceback" not in err
    [member] = [j for j in client.list_jobs(type="step").jobs]
    code, out, _ = cli(redis_server, namespace, "enqueue", "album", "{}", "--depends-on", member.id)
    assert code == 0 and " waiting " in out
    code, _, err = cli(redis_server, namespace, "enqueue", "album", "{}", "--depends-on", "0" * 25)
    assert code == 1 and "depends on job " + "0" * 25 in err and "Traceback" not in err


def test_releasing_10000_dependents_holds_redis_briefly(redis_factory: Any) -> None:
    server, r = watched(redis_factory)
    with zizq.Client.from_url(server.url, namespace="b") as client:
        parent = client.enqueue(Step(tag="parent"))
        children = client.enqueue_many([zizq.Enqueue(Step(tag=str(i)), depends_on=[parent]) for i in range(10_000)])
        assert client.stats().waiting == 10_000
        client.run(client.core.heartbeat("w1", "join", 60_000))
        [taken] = client.run(client.core.take("w1", 1, [])).jobs
        client.run(client.core.ack("w1", [taken.id]))
        assert client.stats().waiting == 10_000 - 200  # the ack released what one call may
        calls = script_calls(r)
        while client.run(client.core.flows.drain()) > 0:
            pass
        assert script_calls(r) - calls <= 10_000 // 500 + 1
        stats = client.stats()
        assert (stats.waiting, stats.ready) == (0, 10_000)
        found = client.run(client.core.get([c.id for c in children[:1000]]))
        assert {j.status if j else None for j in found} == {"ready"}
    assert slow_scripts(r) == []
    r.close()


# Real worker processes -------------------------------------------------------

LEASE_OPTIONS = ("--heartbeat-interval", "0.2", "--lease", "1", "-c", "4")


def start_worker(url: str, namespace: str, recorder_url: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zizq",
            "worker",
            "tests.flows_app:router",
            "--url",
            url,
            "--namespace",
            namespace,
            "--log-level",
            "ERROR",
            *LEASE_OPTIONS,
        ],
        cwd=ROOT,
        env={**os.environ, "ZIZQ_FLOWS_RECORDER": recorder_url},
    )


@pytest.fixture
def workers(redis_factory: Callable[..., RedisServer], namespace: str) -> Iterator[Any]:
    queue, rec = redis_factory(), redis_factory()
    procs = [start_worker(queue.url, namespace, rec.url) for _ in range(3)]
    client = zizq.Client.from_url(queue.url, namespace)
    recorder = redis.Redis(port=rec.port)
    try:
        yield client, recorder, procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        client.close()
        recorder.close()


def events(recorder: redis.Redis) -> list[str]:
    return [e.decode() if isinstance(e, bytes) else e for e in recorder.lrange("events", 0, -1)]


@pytest.mark.timeout(60)
async def test_workflows_on_three_worker_processes(workers: Any) -> None:
    client, recorder, procs = workers
    # Dependencies: c after both parents; a dead parent kills one child, the other runs.
    p1 = client.enqueue(Step(tag="p1", sleep=0.2))
    p2 = client.enqueue(Step(tag="p2", sleep=0.1))
    c = client.enqueue(Step(tag="c"), depends_on=[p1, p2], retention=KEEP)
    pd = client.enqueue(Step(tag="pd", die=True))
    killed = client.enqueue(Step(tag="killed"), depends_on=[pd])
    ran = client.enqueue(Step(tag="ran"), depends_on=[pd], on_dependency_failure="run", retention=KEEP)
    # A batch of 30 that all complete, and one where a member dies.
    with client.batch(**callbacks("b30")) as b30:
        b30.enqueue_many([Step(tag=f"b30-{i}", sleep=0.02) for i in range(30)])
    with client.batch(**callbacks("bdead")) as bdead:
        bdead.enqueue_many([Step(tag="bdead-ok"), Step(tag="bdead-dies", die=True)])

    def settled() -> bool:
        seen = events(recorder)
        wanted = {"end:c", "end:ran", "on_complete:b30", "on_success:b30", "on_complete:bdead", "on_dead:bdead"}
        return wanted <= set(seen)

    await wait_for(settled, 30)
    seen = events(recorder)
    assert seen.index("start:c") > max(seen.index("end:p1"), seen.index("end:p2"))
    assert seen.index("start:ran") > seen.index("end:pd")
    assert "start:killed" not in seen and client.get_job(killed.id).status == "dead"
    assert client.get_job(c.id).status == "completed" and client.get_job(ran.id).status == "completed"
    last_member = max(seen.index(f"end:b30-{i}") for i in range(30))
    assert seen.index("on_complete:b30") > last_member
    assert "on_success:bdead" not in seen and "on_dead:b30" not in seen

    # Kill -9 a worker mid-batch: every member still completes, the callback fires once.
    with client.batch(on_complete=Notify(what="on_complete", tag="k")) as bk:
        members = bk.enqueue_many([zizq.Enqueue(Step(tag=f"k-{i}", sleep=0.3), retention=KEEP) for i in range(30)])
    await wait_for(lambda: sum(e.startswith("start:k-") for e in events(recorder)) >= 8, 15)
    victim = procs[0]
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    await wait_for(lambda: "on_complete:k" in events(recorder), 30)
    time.sleep(0.5)  # room for a second callback, were there one
    seen = events(recorder)
    assert seen.count("on_complete:k") == 1
    assert {client.get_job(m.id).status for m in members} == {"completed"}
    info = client.get_batch(bk.id)
    assert (info.completed, info.dead, info.fired) == (30, 0, ("on_complete",))

"""Redis Cluster: each namespace lives on the shard that owns its slot; a
worker serves namespaces on every shard; a master killed mid-run is replaced
by its replica, and nothing a producer was told is enqueued gets lost or
stuck.

A real cluster on loopback: six redis-servers joined by `redis-cli --cluster
create` (3 masters, a replica each), cluster-node-timeout 1 s.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

import zizq

from .conftest import ROOT, RedisServer, wait_for
from .fault_harness import Work, stop_worker
from .scale_harness import Cluster, Producer, all_done, start_workers, wait_until

pytestmark = [pytest.mark.scale, pytest.mark.timeout(180)]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    yield c
    c.close()


def keys_by_node(cluster: Cluster, namespace: str) -> dict[int, int]:
    """How many keys of the namespace each live node holds (masters only)."""
    counts = {}
    for node in cluster.alive():
        with redis.Redis(port=node.port) as r:
            if r.info("replication")["role"] == "master":
                counts[node.port] = len(r.keys("{" + namespace + "}:*"))
    return counts


async def test_namespaces_live_on_their_shards_and_one_worker_serves_them_all(cluster: Cluster) -> None:
    namespaces = cluster.spread_namespaces(1)
    owners = {ns: cluster.master_of(ns).port for ns in namespaces}
    assert len(set(owners.values())) == 3  # one namespace on each shard
    one_node = f"redis://127.0.0.1:{cluster.nodes[0].port}"

    clients = [zizq.AsyncClient.from_url(one_node, ns, cluster=True, wait_replicas=1) for ns in namespaces]
    try:
        ran: list[tuple[str, int]] = []
        routers = []
        for ns in namespaces:
            router = zizq.Router()

            @router.handler
            async def work(job: Work, meta: zizq.Job, ns: str = ns) -> int:
                ran.append((ns, job.n))
                return job.n * 2  # a result, kept with the first namespace's jobs

            routers.append(router)
        await clients[0].set_defaults(retention=zizq.Retention(completed_ms=60_000))
        for c in clients:
            await c.enqueue_many([Work(n=i) for i in range(20)])
        # A waiter blocks (BLPOP) on the namespace's shard before any worker runs.
        first = (await clients[0].list_jobs(limit=1)).jobs[0]
        waiting = asyncio.ensure_future(clients[0].wait(first.id, timeout=20))
        for ns in namespaces:
            counts = keys_by_node(cluster, ns)
            assert counts[owners[ns]] > 0, counts
            assert sum(counts.values()) == counts[owners[ns]], f"{ns}'s keys are on several nodes: {counts}"

        group = zizq.WorkerGroup([zizq.Worker(c, r, concurrency=4) for c, r in zip(clients, routers, strict=True)])
        task = asyncio.create_task(group.run_async())
        await wait_for(lambda: len(ran) == 60, timeout=20)
        group.stop()
        await asyncio.wait_for(task, 20)
        assert sorted(ran) == sorted((ns, i) for ns in namespaces for i in range(20))
        assert (await waiting).result == first.payload["n"] * 2
        # A sync client over the cluster URL reads the same namespaces.
        for ns in namespaces:
            with zizq.Client.from_url(cluster.url, ns, wait_replicas=1) as sync:
                job = sync.enqueue(Work(n=99), delay=60)
                assert sync.get_job(job.id).status == "scheduled"
                with pytest.raises(zizq.WaitTimeout):
                    sync.wait(job.id, timeout=0.1)
                assert sync.cancel_job(job.id) and sync.wait(job.id).status == "dead"
    finally:
        for c in clients:
            await c.close()


def test_a_killed_master_fails_over_and_no_acknowledged_job_is_lost_or_stuck(
    cluster: Cluster, tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    namespaces = cluster.spread_namespaces(2)  # six namespaces, two on each shard
    recorder_server = redis_factory()
    recorder = redis.Redis(port=recorder_server.port)
    log = tmp_path / "workers.stderr"
    workers = [start_workers(cluster.url, namespaces, recorder_server.url, log, "-c", "4") for _ in range(2)]
    producer = Producer(cluster.url, namespaces, wait_replicas=1, wait_timeout=1.0)
    try:
        producer.start()

        wait_until("both worker processes joined", lambda: leases(cluster.url, namespaces) == 2 * len(namespaces), 30)
        wait_until("the workers are running jobs", lambda: len(recorder.keys("finished:*")) >= 100, 30)
        victim = cluster.master_of(namespaces[0])
        before = producer.count()
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait()
        started = time.monotonic()
        wait_until(
            "a replica took over the killed master's slots", lambda: cluster.master_of(namespaces[0]) != victim, 30
        )
        failover = time.monotonic() - started
        # The new master has no replica until the old one comes back (as
        # its replica): until then enqueues with wait_replicas=1 wait.
        victim.start()
        wait_until("the old master rejoined as a replica", cluster.healthy, 30)
        wait_until("the producer goes on after the failover", lambda: producer.count() >= before + 300, 60)
        producer.stop()
        assert not producer.errors, f"enqueues raised: {producer.errors[:3]}"
        all_done(cluster.url, producer, recorder, timeout=60)
        assert all(w.poll() is None for w in workers), log.read_text()[-3000:]
        print(f"failover took {failover:.1f}s; {producer.count()} jobs acknowledged and completed")
    finally:
        producer.stopping.set()
        codes = [stop_worker(w) for w in workers]
        recorder.close()
    assert codes == [0, 0], log.read_text()[-3000:]


def leases(url: str, namespaces: Sequence[str]) -> int:
    """Leases held in ``namespaces``, all told: one per worker process and namespace."""
    total = 0
    for ns in namespaces:
        with zizq.Client.from_url(url, ns) as client:
            total += client.stats().workers
    return total


@pytest.mark.parametrize("batch", [False, True], ids=["one-by-one", "enqueue_many"])
def test_enqueues_acknowledged_during_the_replicas_first_sync_survive_a_failover(
    batch: bool, tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    # A cluster used as soon as it is made: the replicas' first sync may
    # still be running when the enqueues start, so the first WAITs time out
    # and the enqueues are sent again until a replica has the jobs.
    cluster = Cluster(synced=False)
    recorder_server = redis_factory()
    recorder = redis.Redis(port=recorder_server.port)
    log = tmp_path / "worker.stderr"
    worker = None
    try:
        namespaces = cluster.spread_namespaces(1)
        producer = Producer(cluster.url, namespaces, pace=0, wait_replicas=1, wait_timeout=1.0)
        if batch:
            for client in producer.clients:
                jobs = client.enqueue_many([Work(n=n, sleep=0.005) for n in range(100)])
                producer.ids[client.namespace] = [job.id for job in jobs]
                client.close()
        else:
            producer.start()
            wait_until("100 jobs enqueued in each namespace", lambda: producer.count() >= 300, 90)
            producer.stop()
        assert not producer.errors, f"enqueues raised: {producer.errors[:3]}"

        for ns in namespaces:  # a returned enqueue is on the replica
            assert missing_on_replica(cluster, ns, producer.ids[ns]) == 0, ns
        victim = cluster.master_of(namespaces[0])
        worker = start_workers(cluster.url, namespaces, recorder_server.url, log, "-c", "5")
        first = producer.ids[namespaces[0]]
        wait_until("30 jobs of the first namespace ran", lambda: finished(recorder, first) >= 30, 60, interval=0.01)
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait()
        wait_until("a replica took over", lambda: cluster.master_of(namespaces[0]) != victim, 30)
        all_done(cluster.url, producer, recorder, timeout=90)
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        code = stop_worker(worker) if worker is not None else 0
        recorder.close()
        cluster.close()
    assert code == 0, log.read_text()[-3000:]


def missing_on_replica(cluster: Cluster, namespace: str, ids: Sequence[str]) -> int:
    """How many of ``ids`` the replica of the namespace's master lacks."""
    with redis.Redis(port=cluster.master_of(namespace).port) as master:
        port = master.info("replication")["slave0"]["port"]
    with redis.Redis(port=port) as replica:
        replica.execute_command("READONLY")
        return sum(1 for record in replica.hmget("{" + namespace + "}:jobs", list(ids)) if record is None)


def finished(recorder: redis.Redis, ids: Sequence[str]) -> int:
    """How many of ``ids`` have a finished run recorded."""
    with recorder.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.exists("finished:" + job_id)
        return sum(pipe.execute())


async def test_a_client_made_while_a_master_is_down_uses_the_live_nodes(
    cluster: Cluster, tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    # The master of slot 0 is the first master of the slot map, the node
    # redis-py asks first. Its replica may not take over and the cluster
    # serves the slots it still covers, so the dead master stays in the map.
    namespaces = cluster.spread_namespaces(1)
    with redis.Redis(port=cluster.nodes[0].port) as r:
        first_master = next(int(master[1]) for start, _, master, *_ in r.cluster("slots") if start == 0)
    victim = next(n for n in cluster.nodes if n.port == first_master)
    live = next(ns for ns in namespaces if cluster.master_of(ns) != victim)
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as r:
            r.config_set("cluster-require-full-coverage", "no")
            r.config_set("cluster-replica-no-failover", "yes")
    assert victim.proc is not None
    victim.proc.kill()
    victim.proc.wait()

    # retry_for=0: zizq does not try again, so the first try must reach a live node.
    with zizq.Client.from_url(cluster.url, live, retry_for=0) as client:
        job = client.enqueue(Work(n=1))
    # The first call of an asyncio client, too: redis-py 8.2 routed it as if
    # it had no key, to any node, about one in two to the dead master (known
    # issue 15). Ten new clients, so that such a routing cannot pass by luck.
    for _ in range(10):
        async with zizq.AsyncClient.from_url(cluster.url, live, retry_for=0) as aclient:
            assert (await aclient.get_job(job.id)).status == "ready"
    listed_first = f"redis+cluster://127.0.0.1:{victim.port},127.0.0.1:{cluster.alive()[0].port}"
    done = subprocess.run(
        [sys.executable, "-m", "zizq", "jobs", "count", "--url", listed_first, "--namespace", live],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "1", "")
    # And a worker started now runs the job.
    recorder_server = redis_factory()
    log = tmp_path / "worker.stderr"
    worker = start_workers(cluster.url, [live], recorder_server.url, log)
    try:
        with redis.Redis(port=recorder_server.port) as recorder:
            wait_until("the worker ran the job", lambda: finished(recorder, [job.id]) == 1, 30)
    finally:
        assert stop_worker(worker) == 0, log.read_text()[-3000:]

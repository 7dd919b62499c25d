"""Redis Cluster: each namespace lives on the shard that owns its slot; a
worker serves namespaces on every shard; a master killed mid-run is replaced
by its replica, and nothing a producer was told is enqueued gets lost or
stuck.

A real cluster on loopback: six redis-servers joined by `redis-cli --cluster
create` (3 masters, a replica each), cluster-node-timeout 1 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import redis

import zizq

from .conftest import RedisServer, wait_for
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
            async def work(job: Work, meta: zizq.Job, ns: str = ns) -> None:
                ran.append((ns, job.n))

            routers.append(router)
        for c in clients:
            await c.enqueue_many([Work(n=i) for i in range(20)])
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
        # A sync client over the cluster URL reads the same namespaces.
        for ns in namespaces:
            with zizq.Client.from_url(cluster.url, ns, wait_replicas=1) as sync:
                job = sync.enqueue(Work(n=99), delay=60)
                assert sync.get_job(job.id).status == "scheduled"
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

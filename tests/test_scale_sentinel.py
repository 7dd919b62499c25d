"""Redis Sentinel: producers and workers reach the master through a
redis+sentinel:// URL (three sentinels, passwords on the servers and on the
sentinels), and follow the new master when the old one is killed.

Real processes: a master, a replica, three sentinels (quorum 2,
down-after-milliseconds 1 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import zizq

from .conftest import RedisServer
from .fault_harness import Work, stop_worker
from .scale_harness import Producer, SentinelSet, all_done, start_workers, wait_until

pytestmark = [pytest.mark.scale, pytest.mark.timeout(180)]


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    s = SentinelSet("zizq-test", password="m4ster pw", sentinel_password="s3ntinel")
    yield s
    s.close()


async def test_both_clients_reach_the_master_through_the_sentinels(sentinels: SentinelSet, namespace: str) -> None:
    with zizq.Client.from_url(sentinels.url, namespace, wait_replicas=1) as client:
        job = client.enqueue(Work(n=1))
        assert client.get_job(job.id).status == "ready"
    async with zizq.AsyncClient.from_url(sentinels.url, namespace, wait_replicas=1) as aclient:
        assert (await aclient.get_job(job.id)).status == "ready"
        await aclient.enqueue(Work(n=2))
    with redis.Redis(port=sentinels.master.port, password=sentinels.password) as r:
        assert len(r.keys("{" + namespace + "}:*")) > 0  # the writes went to the master
    with pytest.raises(zizq.RedisUnavailable, match=r"No master found for .zizq-test."):
        wrong = sentinels.url.replace("s3ntinel", "wrong")
        with zizq.Client.from_url(wrong, namespace, retry_for=0) as client:
            client.get_job(job.id)


def test_workers_and_producers_follow_the_new_master(
    sentinels: SentinelSet, tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    namespaces = ["sentinel-a", "sentinel-b"]
    recorder_server = redis_factory()
    recorder = redis.Redis(port=recorder_server.port)
    log = tmp_path / "workers.stderr"
    workers = [start_workers(sentinels.url, namespaces, recorder_server.url, log, "-c", "4") for _ in range(2)]
    producer = Producer(sentinels.url, namespaces, wait_replicas=1, wait_timeout=1.0)
    try:
        producer.start()
        wait_until("the workers are running jobs", lambda: len(recorder.keys("finished:*")) >= 100, 30)
        old = sentinels.master
        assert old.proc is not None and sentinels.master_port() == old.port
        before = producer.count()
        old.proc.kill()
        old.proc.wait()
        started = time.monotonic()
        wait_until("the sentinels promoted the replica", lambda: sentinels.master_port() != old.port, 30)
        failover = time.monotonic() - started
        # The new master has no replica until the old one is back (as its
        # replica): until then enqueues with wait_replicas=1 wait.
        sentinels.restart(old)
        wait_until("the old master came back as a replica", sentinels.replica_in_sync, 30)
        wait_until("the producer goes on after the failover", lambda: producer.count() >= before + 300, 60)
        producer.stop()
        assert not producer.errors, f"enqueues raised: {producer.errors[:3]}"
        all_done(sentinels.url, producer, recorder, timeout=60)
        assert all(w.poll() is None for w in workers), log.read_text()[-3000:]
        print(f"failover took {failover:.1f}s; {producer.count()} jobs acknowledged and completed")
    finally:
        producer.stopping.set()
        codes = [stop_worker(w) for w in workers]
        recorder.close()
    assert codes == [0, 0], log.read_text()[-3000:]

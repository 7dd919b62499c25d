"""TLS and ACLs: a redis-server with TLS on, its certificate signed by a CA
the test makes; a producer and a worker, each as a Redis user with exactly
the least-privilege rules zizq documents (zizq.acl.rules)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import zizq
import zizq.acl

from .conftest import RedisServer, free_port, wait_for
from .fault_harness import Work
from .scale_harness import make_tls_files

pytestmark = [pytest.mark.scale, pytest.mark.timeout(120)]


def tls_server(tmp_path: Path, make: Callable[..., RedisServer]) -> tuple[RedisServer, int, dict[str, Path]]:
    files = make_tls_files(tmp_path)
    tls_port = free_port()
    server = make(
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(files["cert"]),
        "--tls-key-file", str(files["key"]),
        "--tls-ca-cert-file", str(files["ca"]),
        "--tls-auth-clients", "no",  # the server is verified; clients prove themselves with a password
    )  # fmt: skip
    return server, tls_port, files


async def test_tls_with_least_privilege_producer_and_worker(
    tmp_path: Path, redis_factory: Callable[..., RedisServer], namespace: str
) -> None:
    server, port, files = tls_server(tmp_path, redis_factory)
    with redis.Redis(port=server.port) as admin:  # the plain port, for setting up only
        for role in zizq.acl.ROLES:
            admin.execute_command("ACL", "SETUSER", role, "on", ">s3cret", *zizq.acl.rules(namespace, role).split())
    ca = files["ca"]

    # The certificate options in the URL for the producer, as keyword
    # arguments for the worker (which must carry them to its own connections).
    producer_url = f"rediss://producer:s3cret@localhost:{port}/0?ssl_ca_certs={ca}"
    with zizq.Client.from_url(producer_url, namespace) as producer:
        ids = [j.id for j in producer.enqueue_many([Work(n=i) for i in range(50)])]
        assert producer.get_job(ids[0]).status == "ready"
        with pytest.raises(redis.exceptions.NoPermissionError):
            producer.redis.blpop([producer.core.key("wake")], 0.01)  # a worker's right, not a producer's
    with zizq.Client.from_url(producer_url, namespace + "-other") as elsewhere:
        with pytest.raises(redis.exceptions.NoPermissionError):
            elsewhere.enqueue(Work(n=0))  # keys outside the namespace

    done: list[int] = []
    router = zizq.Router()

    @router.handler
    async def work(job: Work) -> None:
        done.append(job.n)

    worker_client = zizq.Client.from_url(f"rediss://worker:s3cret@127.0.0.1:{port}", namespace, ssl_ca_certs=str(ca))
    worker = zizq.Worker(worker_client, router, concurrency=4)
    task = asyncio.create_task(worker.run_async())
    try:
        await wait_for(lambda: len(done) == 50, timeout=20)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)
        worker_client.close()
    assert sorted(done) == list(range(50))
    assert worker.stats.completed == 50

    # Without the CA the server's certificate is not trusted; plain TCP to
    # the TLS port is not answered.
    for url in (f"rediss://producer:s3cret@localhost:{port}/0", f"redis://producer:s3cret@localhost:{port}/0"):
        with zizq.Client.from_url(url, namespace, retry_for=0, socket_timeout=2) as client:
            with pytest.raises(zizq.RedisUnavailable):
                client.get_job(ids[0])

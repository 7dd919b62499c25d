"""Redis URLs: every form zizq accepts, and a clear ValidationError naming
the bad part of one it does not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import zizq
from zizq._protocol.call import Call
from zizq.acl import rules, script_commands
from zizq.connect import parse_url, redact

from .conftest import RedisServer, free_port
from .scale_harness import wait_until


def test_standalone_tls_and_unix_urls() -> None:
    t = parse_url("redis://u:p%40ss@example.com:6380/2")
    assert (t.kind, t.hosts, t.options) == (
        "standalone", [("example.com", 6380)], {"username": "u", "password": "p@ss", "db": 2}
    )  # fmt: skip
    t = parse_url("rediss://example.com?ssl_ca_certs=/ca.pem&ssl_cert_reqs=required&socket_timeout=2.5")
    assert t.tls and t.hosts == [("example.com", 6379)]
    assert t.options == {"ssl": True, "ssl_ca_certs": "/ca.pem", "ssl_cert_reqs": "required", "socket_timeout": 2.5}
    assert parse_url("unix:///run/redis.sock?db=1").unix_path == "/run/redis.sock"


def test_cluster_urls() -> None:
    t = parse_url("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert t.kind == "cluster"
    assert t.hosts == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert t.options == {"password": "pw"}
    assert parse_url("redis://h:7000?cluster=true").kind == "cluster"
    assert parse_url("redis://h:7000", cluster=True).kind == "cluster"
    assert parse_url("rediss+cluster://h:7000").tls


def test_sentinel_urls() -> None:
    t = parse_url("redis+sentinel://:masterpw@s1,s2:26380/mymaster/3?sentinel_password=spw&sentinel_username=su")
    assert t.kind == "sentinel" and t.service == "mymaster"
    assert t.hosts == [("s1", 26379), ("s2", 26380)]
    assert t.options == {"password": "masterpw", "db": 3}
    assert t.sentinel_options == {"password": "spw", "username": "su"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:6379", "has no scheme"),
        ("http://localhost", "scheme 'http://' is unknown"),
        ("redis://localhost:99999", "port '99999' is not a number from 1 to 65535"),
        ("redis://localhost:abc", "port 'abc'"),
        ("redis://localhost?tls=yes", "unknown option 'tls'"),
        ("redis://localhost?socket_timeout=soon", "socket_timeout='soon'"),
        ("redis://localhost?cluster=maybe", "'maybe' is not a boolean"),
        ("redis://localhost?ssl_ca_certs=/ca.pem", "'ssl_ca_certs' needs TLS"),
        ("redis://localhost/zero", "database 'zero' is not a number"),
        ("redis://a:1,b:2", "lists several hosts"),
        ("redis+cluster://a:1/3", "only database 0, not 3"),
        ("redis+sentinel://s1:26379", "names no Sentinel service"),
        ("redis+sentinel://s1/m?cluster=true", "cannot be used with Sentinel"),
        ("unix:///tmp/r.sock?cluster=true", "not a socket"),
        ("redis://localhost?sentinel_password=x", "needs a redis+sentinel:// URL"),
        ("redis://", "names no host"),
        ("rediss://:secret@localhost?nope=1", "rediss://:***@localhost"),  # the password is not shown
    ],
)
def test_bad_urls_name_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(zizq.ValidationError, match=None) as info:
        zizq.Client.from_url(url)
    assert message in str(info.value)
    assert "secret" not in str(info.value)


def test_bad_durability_options() -> None:
    with pytest.raises(zizq.ValidationError, match="wait_replicas -1"):
        zizq.Client.from_url("redis://localhost", wait_replicas=-1)
    with pytest.raises(zizq.ValidationError, match="wait_timeout 0"):
        zizq.AsyncClient.from_url("redis://localhost", wait_replicas=1, wait_timeout=0)


def test_redact() -> None:
    assert redact("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"


def test_acl_rules_cover_every_script_command() -> None:
    producer, worker = rules("app", "producer"), rules("app", "worker")
    assert producer.startswith("resetkeys ~{app}:* resetchannels -@all ")
    assert {"hset", "time", "zadd"} <= set(script_commands())
    assert all(f"+{c}" in producer.split() for c in script_commands())
    assert "+blpop" in worker.split() and "+blpop" not in producer.split()
    with pytest.raises(zizq.ValidationError, match="role 'admin'"):
        rules("app", "admin")
    with pytest.raises(zizq.InvalidName):
        rules("a{b", "worker")


def test_wait_replicas_without_replicas_gives_up(redis_server: RedisServer, namespace: str) -> None:
    # A standalone server has no replica: WAIT 1 times out, the enqueue is
    # sent again (the same ids) until retry_for, then RedisUnavailable.
    with zizq.Client.from_url(redis_server.url, namespace, wait_replicas=1, wait_timeout=0.05, retry_for=0.6) as c:
        with pytest.raises(zizq.RedisUnavailable, match="0 of 1 replicas acknowledged the enqueue within 50 ms"):
            c.enqueue_raw("t", 1)
    with zizq.Client.from_url(redis_server.url, namespace, wait_replicas=0) as c:
        assert c.enqueue_raw("t", 1).status == "ready"


def test_readme_scaling_out_matches_the_code(tmp_path: Path) -> None:
    from .test_readme import blocks, section

    text = section("Scaling out")
    for role in ("producer", "worker"):
        assert f"ACL SETUSER app-{role} on >PASSWORD {rules('app', role)}\n" in text, f"README's {role} ACL is stale"
    [example] = blocks(text, "python")
    path = tmp_path / "example.py"
    path.write_text(example + "durable.close()\nassert durable.wait_replicas == 1\n")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def _replicated_pair(redis_factory: Callable[..., RedisServer]) -> tuple[RedisServer, RedisServer]:
    """A master and its replica, in sync. The master pings its replica only
    every hour, so its replication offset moves with writes alone."""
    master = redis_factory("--repl-ping-replica-period", "3600")
    replica = redis_factory("--replicaof", "127.0.0.1", str(master.port))
    with redis.Redis(port=replica.port) as r:
        wait_until("the replica is in sync", lambda: r.info("replication")["master_link_status"] == "up", 30)
    return master, replica


def _first_try(server: RedisServer, call: Call[Any]) -> Any:
    """Send ``call`` once on a connection of its own, as a first try whose
    reply was lost."""
    with redis.Redis(port=server.port) as r:
        return r.eval(call.script.source, len(call.keys), *call.keys, *call.args)


def test_a_repeated_enqueue_that_finds_its_jobs_writes_for_its_wait(
    redis_factory: Callable[..., RedisServer], namespace: str
) -> None:
    # WAIT waits for the writes of its own connection; a repeat on a new
    # connection that found its jobs must write something, or its WAIT
    # would not cover them.
    master, _ = _replicated_pair(redis_factory)
    with zizq.Client.from_url(master.url, namespace) as client, redis.Redis(port=master.port) as r:
        call = client.core.enqueue([zizq.Enqueue.raw("t", 1), zizq.Enqueue.raw("t", 2)])
        _first_try(master, call)
        before_offset, before_records = r.info("replication")["master_repl_offset"], r.hgetall(f"{{{namespace}}}:jobs")
        first = client.run(call.repeated())
        assert len(r.hgetall(f"{{{namespace}}}:jobs")) == 2 and [j.status for j in first] == ["ready", "ready"]
        assert r.info("replication")["master_repl_offset"] > before_offset
        assert r.hgetall(f"{{{namespace}}}:jobs") == before_records


def test_wait_replicas_does_not_return_before_a_replica_has_the_jobs(
    redis_factory: Callable[..., RedisServer], namespace: str
) -> None:
    # The first try wrote the job and its reply was lost while the replica
    # was stopped: the repeat finds the job, and must still not return until
    # the replica has it.
    master, replica = _replicated_pair(redis_factory)
    assert replica.proc is not None
    options: dict[str, Any] = {"wait_replicas": 1, "wait_timeout": 0.2}
    with zizq.Client.from_url(master.url, namespace, retry_for=1, **options) as client:
        call = client.core.enqueue([zizq.Enqueue.raw("t", 1)])
        os.kill(replica.proc.pid, signal.SIGSTOP)
        try:
            _first_try(master, call)
            with pytest.raises(zizq.RedisUnavailable, match="0 of 1 replicas acknowledged"):
                client.run(call.repeated())
        finally:
            os.kill(replica.proc.pid, signal.SIGCONT)
        [job] = client.run(call.repeated(), retry_for=10)
    with redis.Redis(port=replica.port) as r:
        assert r.hexists(f"{{{namespace}}}:jobs", job.id)


def test_a_cluster_client_with_no_node_to_reach_says_so() -> None:
    # The blocking cluster client reads the slot map as it is made.
    url = f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    with pytest.raises(zizq.RedisUnavailable, match=r"cannot reach any node of redis at .*connection refused"):
        zizq.Client.from_url(url)

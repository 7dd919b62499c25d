"""Real Redis topologies for the scale-out tests: a Redis Cluster (3 masters,
a replica each), a Sentinel set (a master, a replica, 3 sentinels), and a
TLS CA with a server certificate. Every process listens on a free loopback
port and is stopped at teardown.

Also a producer thread and worker processes (the fault harness's job kind,
started through the real CLI) shared by the failover tests, and the check
they end with.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.crc import key_slot

import zizq

from .conftest import REDIS_SERVER, ROOT, RedisServer, free_port
from .fault_harness import Work, outcome

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: how soon a dead master is noticed
DOWN_AFTER_MS = 1000  # sentinel down-after-milliseconds


def wait_until(what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass  # a node still starting, or failing over: ask again
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


class Cluster:
    """Six cluster-enabled redis-servers joined by ``redis-cli --cluster
    create`` into 3 masters with one replica each. With ``synced=False`` it
    is ready as soon as every node sees the cluster ok, before the replicas'
    first sync has ended (as a cluster made just before use is). ``args``
    are more redis-server arguments for every node (persistence, say)."""

    def __init__(self, *, synced: bool = True, args: Sequence[str] = ()) -> None:
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(6):
                self.nodes.append(
                    RedisServer(
                        "--cluster-enabled", "yes",
                        "--cluster-config-file", "nodes.conf",
                        "--cluster-port", str(free_port()),  # the bus port; the default, port + 10000, may be taken
                        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                        "--cluster-replica-validity-factor", "0",  # a replica may always take over
                        *args,
                    )
                )  # fmt: skip
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            if synced:
                wait_until("the cluster is up and its replicas in sync", self.healthy, 30)
            else:
                wait_until("every node sees the cluster ok", self.slots_served, 30)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def slots_served(self) -> bool:
        """Every live node sees the cluster ok (all slots have a master)."""
        for node in self.alive():
            with redis.Redis(port=node.port) as r:
                if r.cluster("info")["cluster_state"] != "ok":
                    return False
        return True

    def healthy(self) -> bool:
        """Every live node sees the cluster ok, and every master has an
        online replica that has caught up."""
        masters = 0
        for node in self.alive():
            with redis.Redis(port=node.port) as r:
                if r.cluster("info")["cluster_state"] != "ok":
                    return False
                info = r.info("replication")
                if info["role"] == "master" and info.get("connected_slaves", 0):
                    replica = info["slave0"]
                    if replica["state"] != "online" or replica["offset"] < info["master_repl_offset"] - 1000:
                        return False
                    masters += 1
        return masters == 3

    def master_of(self, namespace: str) -> RedisServer:
        """The node serving the namespace's slot now, as the live masters see it."""
        slot = key_slot(("{" + namespace + "}:x").encode())
        for node in self.alive():
            with redis.Redis(port=node.port) as r:
                if r.info("replication")["role"] != "master":
                    continue
                for start, end, master, *_ in r.cluster("slots"):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == int(master[1]))
        raise AssertionError(f"no live master serves namespace {namespace!r} (slot {slot})")

    def spread_namespaces(self, per_master: int) -> list[str]:
        """Namespace names, ``per_master`` on each of the 3 masters."""
        found: dict[int, list[str]] = {}
        i = 0
        while len(found) < 3 or any(len(v) < per_master for v in found.values()):
            ns = f"shard-{i}"
            i += 1
            port = self.master_of(ns).port
            if len(found.setdefault(port, [])) < per_master:
                found[port].append(ns)
        return [ns for names in zip(*found.values(), strict=True) for ns in names]

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class SentinelSet:
    """A master, one replica, and three sentinels watching them as
    ``service`` (quorum 2). The Redis servers require ``password``, the
    sentinels ``sentinel_password`` (None: no password). ``args`` are more
    redis-server arguments for both servers (persistence, say)."""

    def __init__(
        self, service: str, password: str | None, sentinel_password: str | None, args: Sequence[str] = ()
    ) -> None:
        self.service = service
        self.password = password
        self.sentinel_password = sentinel_password
        self.servers: list[RedisServer] = []
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.sentinel_ports: list[int] = []
        try:
            self.master = self._server(RedisServer(*args))
            self.replica = self._server(RedisServer(*args, "--replicaof", "127.0.0.1", str(self.master.port)))
            for _ in range(3):
                self._start_sentinel()
            wait_until("the sentinels see the master, its replica and each other", self.ready, 30)
        except BaseException:
            self.close()
            raise

    def _server(self, server: RedisServer) -> RedisServer:
        if server not in self.servers:
            self.servers.append(server)
        if self.password is None:
            return server
        # Set after the start (RedisServer's readiness check has no password).
        with redis.Redis(port=server.port) as r:
            r.config_set("masterauth", self.password)
            r.config_set("requirepass", self.password)
        return server

    def restart(self, server: RedisServer) -> None:
        """Start a stopped server again (with what its persistence kept, if
        ``args`` turned it on); the sentinels make it a replica of whichever
        server is master, about 10 s after it answers."""
        server.start()
        self._server(server)

    def replica_up(self, server: RedisServer) -> bool:
        """Whether the sentinels list ``server`` among the master's replicas
        and see it up (not subjectively down, linked), so that a failover
        may promote it."""
        with self._sentinel(self.sentinel_ports[0]) as s:
            for replica in s.sentinel_slaves(self.service):
                if int(replica["port"]) == server.port:
                    return not replica["is_sdown"] and not replica["is_disconnected"]
        return False

    def fail_over(self) -> bool:
        """Ask the sentinels for a failover now (SENTINEL FAILOVER); raises
        ResponseError when they cannot (no good replica, one in progress)."""
        with self._sentinel(self.sentinel_ports[0]) as s:
            return bool(s.sentinel_failover(self.service))

    def _start_sentinel(self) -> None:
        port = free_port()
        folder = Path(self.master.dir) / f"sentinel-{port}"
        folder.mkdir()
        conf = folder / "sentinel.conf"
        lines = [f"port {port}", "bind 127.0.0.1", f"dir {folder}"]
        if self.sentinel_password is not None:
            lines += [
                f'requirepass "{self.sentinel_password}"',
                f'sentinel sentinel-pass "{self.sentinel_password}"',  # to talk to each other
            ]
        lines.append(f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2")
        if self.password is not None:
            lines.append(f'sentinel auth-pass {self.service} "{self.password}"')
        lines += [
            f"sentinel down-after-milliseconds {self.service} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.service} 10000",
            "",
        ]
        conf.write_text("\n".join(lines))
        proc = subprocess.Popen(
            [REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        self.sentinels.append(proc)
        self.sentinel_ports.append(port)

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        login = "" if self.password is None else f":{self.password}@"
        query = "" if self.sentinel_password is None else f"?sentinel_password={self.sentinel_password}"
        return f"redis+sentinel://{login}{hosts}/{self.service}{query}"

    def _sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=self.sentinel_password)

    def ready(self) -> bool:
        for port in self.sentinel_ports:
            with self._sentinel(port) as s:
                state = s.sentinel_master(self.service)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                    return False
        return True

    def master_port(self) -> int:
        with self._sentinel(self.sentinel_ports[0]) as s:
            _host, port = s.sentinel_get_master_addr_by_name(self.service)
            return int(port)

    def replica_in_sync(self) -> bool:
        with redis.Redis(port=self.master_port(), password=self.password) as r:
            info = r.info("replication")
            return bool(info["role"] == "master" and info.get("connected_slaves", 0) >= 1)

    def close(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(10)
        for server in self.servers:
            server.close()


def make_tls_files(folder: Path) -> dict[str, Path]:
    """A CA, and a server certificate it signed for 127.0.0.1 and localhost
    (made with ``cryptography``): PEM files ``ca``, ``cert``, ``key`` in
    ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("zizq test CA"))
        .issuer_name(name("zizq test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


class Producer(threading.Thread):
    """Enqueues Work jobs round-robin over ``namespaces`` until stopped.
    ``ids[ns]`` holds every id whose enqueue returned; ``errors`` every
    exception an enqueue raised."""

    def __init__(self, url: str, namespaces: Sequence[str], pace: float = 0.005, **options: Any) -> None:
        super().__init__(name="scale-producer", daemon=True)
        self.clients = [zizq.Client.from_url(url, ns, **options) for ns in namespaces]
        self.ids: dict[str, list[str]] = {ns: [] for ns in namespaces}
        self.errors: list[Exception] = []
        self.pace = pace
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        try:
            while not self.stopping.is_set():
                client = self.clients[n % len(self.clients)]
                try:
                    job = client.enqueue(Work(n=n, sleep=0.005))
                except Exception as exc:  # every error is evidence: record it, keep producing
                    self.errors.append(exc)
                else:
                    self.ids[client.namespace].append(job.id)
                n += 1
                self.stopping.wait(self.pace)
        finally:
            for client in self.clients:
                client.close()

    def count(self) -> int:
        return sum(len(v) for v in self.ids.values())

    def stop(self) -> None:
        self.stopping.set()
        self.join(45)  # an enqueue in progress retries for up to retry_for (30 s)
        assert not self.is_alive(), "the producer did not stop"


def start_workers(
    url: str, namespaces: Sequence[str], recorder_url: str, log: Path, *options: str
) -> subprocess.Popen[bytes]:
    """One `zizq worker` process serving ``namespaces`` (comma-joined)."""
    with log.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "zizq", "worker", "tests.fault_harness:router", "--url", url,
             "--namespace", ",".join(namespaces), "--log-level", "WARNING", *options],
            cwd=ROOT,
            env={**os.environ, "ZIZQ_FAULT_RECORDER": recorder_url},
            stderr=stderr,
        )  # fmt: skip


def all_done(url: str, producer: Producer, recorder: redis.Redis, timeout: float, **options: Any) -> None:
    """Wait until every job the producer was told it enqueued is completed;
    fail naming what is missing or stuck."""
    problems: list[str] = []

    def check() -> bool:
        problems.clear()
        for ns, ids in producer.ids.items():
            with zizq.Client.from_url(url, ns, **options) as client:
                result = outcome(client, recorder, ids)
            if result.missing:
                problems.append(f"{ns}: {len(result.missing)} acknowledged jobs lost, e.g. {result.missing[:3]}")
            pending = {k: v for k, v in result.statuses.items() if k != "completed"}
            if pending:
                problems.append(f"{ns}: not completed: {pending}")
            unrun = [i for i, runs in result.finished.items() if runs < 1]
            if unrun:
                problems.append(f"{ns}: {len(unrun)} completed jobs with no finished run")
        return not problems

    try:
        wait_until("every acknowledged job completed", check, timeout, interval=0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {'; '.join(problems)}") from None


@contextlib.contextmanager
def closing_all(*things: Any) -> Any:
    try:
        yield
    finally:
        for thing in things:
            thing.close()

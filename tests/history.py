"""A fault-history checker: a seeded, randomized workload against real
redis-server and `zizq worker` processes, with faults injected at random
moments, every event recorded in a history, and invariants checked on that
history at the end (tests/history_checks.py).

One seed fixes the workload and the fault schedule (the timing of the
processes does not replay exactly, but the plan does)::

    .venv/bin/python -m tests.history --seed 7          # one seed, replayed
    .venv/bin/python -m tests.history --seeds 20        # seeds 1..20
    make torture SEEDS=200 [START=1]

The pieces: a queue Redis (AOF, appendfsync always) that the faults hit, and
for some seeds a replica of it; a history Redis that they never touch; a TCP
proxy (tests/test_faults_redis.py) between the workers and the queue Redis,
and for some seeds the producer too; `zizq worker tests.history_app:router`
processes (for a third of the seeds `...:sync_router`: sync handlers, which
the workers run in their handler threads, zizq.worker.sync_lane), restarted
when they die; a producer thread; an observer thread
that reads every job record in one atomic command, over and over.

The faults: kill -9 of a worker, SIGSTOP then SIGCONT (within or past the
lease), kill -9 of Redis and a restart from its AOF, a proxy stall (within or
past the lease), a cut of every connection, SCRIPT FLUSH, and at most once a
run a failover (the replica, once in sync, promoted behind the proxy).

Some seeds run Redis behind three sentinels instead (the workers and the
producer reach it through a redis+sentinel:// URL, the producer with
wait_replicas=1): their faults are kill, stop and flush, and once a run a
Sentinel failover, the master killed (kill -9) and the replica promoted by
the sentinels, either in sync or just restarted from its AOF and still
syncing. Others run a Redis Cluster (3 masters, a replica each, through a
redis+cluster:// URL), with the same faults and once a Cluster failover: the
namespace's master killed, its replica (in sync, or still syncing) taking
over, the old master back as its replica. What holds then is what zizq
promises with wait_replicas=1: every acknowledged enqueue survives, the
replica promoted had it; what workers wrote since (acks, failures, takes)
may be lost, and those jobs run again.

The history (a list in the history Redis): enqueues acknowledged (with their
ids and unique keys), handler starts and ends with their outcome (from the
workers' job_start and job_end events; in the sync app, from the handlers
and the workers' log records), handlers that kill their process,
faults with their start and end, worker processes started and exited,
unique-key conflicts the observer saw, and the promotions of a new master
behind sentinels or in a cluster (planned or not). The workers' DEBUG logs add the acks
Redis accepted and the leases lost ("declared lost").
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import orjson
import redis

import zizq
from zizq.testing import RedisServer

from . import history_checks as checks
from .history_app import HISTORY_KEY, Task, Tick
from .scale_harness import Cluster, SentinelSet
from .test_faults_redis import FlakyProxy

ROOT = Path(__file__).resolve().parent.parent
DURATION = 8.0  # seconds of workload and faults per seed
LEASE = 1.0  # seconds
HEARTBEAT = 0.2  # seconds
SCOPES = ("queued", "active")
FAULT_KINDS = ("kill", "stop", "restart", "stall", "cut", "flush")  # and "failover", at most once a run
# Behind sentinels or in a cluster: no proxy in the way, and a Redis restart fails over there.
HA_FAULT_KINDS = ("kill", "stop", "flush")  # and "sentinel" or "cluster" once
HA_MODES = ("in sync", "syncing")  # the replica a Sentinel or Cluster failover promotes
# The workers' app (tests/history_app.py): async handlers with job hooks, or
# sync ones without, which the worker runs in its handler threads
# (zizq.worker.sync_lane); the sync app for about a third of the seeds.
APPS = {"async": "tests.history_app:router", "sync": "tests.history_app:sync_router"}
SYNC_SHARE = 1 / 3
AOF = ("--appendonly", "yes", "--appendfsync", "always", "--repl-diskless-sync-delay", "0")


# -- the plan ------------------------------------------------------------------


@dataclass
class Send:
    """One enqueue call at ``at`` seconds into the run: one job (``bulk``
    False) or an enqueue_many of ``items``."""

    at: float
    bulk: bool
    items: list[dict[str, Any]]  # Task fields and enqueue options, see Plan.item


@dataclass
class Flow:
    """A workflow at ``at`` seconds: a ``chain`` of ``items`` (each runs
    once the one before completed) or a ``batch`` of them, with an
    on_complete and an on_success callback."""

    at: float
    kind: str
    items: list[dict[str, Any]]


@dataclass
class Fault:
    """A fault at ``at`` seconds: ``kind`` in FAULT_KINDS; ``target`` the
    worker slot (kill, stop); ``length`` seconds (stop, restart's downtime,
    stall)."""

    at: float
    kind: str
    target: int = 0
    length: float = 0.0


@dataclass
class Plan:
    """Everything a seed decides."""

    seed: int
    workers: int
    concurrency: int
    prefetch: int
    producer_via_proxy: bool
    failover: bool  # a replica is promoted once, behind the proxy
    cron: bool
    duration: float  # seconds of workload and faults
    sends: list[Send] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    sentinel: str = ""  # Redis behind sentinels, failing over once with a replica in HA_MODES; "": not
    cluster: str = ""  # a Redis Cluster, failing over once with a replica in HA_MODES; "": not
    app: str = "async"  # the workers' app, one of APPS

    @classmethod
    def of(cls, seed: int, duration: float = DURATION) -> Plan:
        rnd = random.Random(seed)
        concurrency = rnd.choice([1, 2, 4])
        plan = cls(
            seed=seed,
            workers=rnd.choice([2, 3]),
            concurrency=concurrency,
            prefetch=concurrency * rnd.choice([1, 2, 3]),
            producer_via_proxy=rnd.random() < 0.5,
            failover=False,
            cron=rnd.random() < 0.7,
            duration=duration,
        )
        n = 0
        at = 0.0
        while at < duration:
            bulk = rnd.random() < 0.25
            items = []
            for _ in range(rnd.randint(2, 8) if bulk else 1):
                items.append(plan.item(rnd, n))
                n += 1
            plan.sends.append(Send(at, bulk, items))
            at += rnd.expovariate(2.0 * plan.workers * plan.concurrency)  # about a fifth of what they can do
        at = rnd.uniform(0.5, 1.5)
        while at < duration:
            kind = rnd.choice(FAULT_KINDS)
            fault = Fault(at, kind, rnd.randrange(plan.workers))
            if kind == "stop":
                fault.length = rnd.choice([rnd.uniform(0.1, 0.6), rnd.uniform(1.2, 2.5)])  # within, past the lease
            elif kind == "restart":
                fault.length = rnd.uniform(0.0, 1.5)
            elif kind == "stall":
                fault.length = rnd.choice([rnd.uniform(0.1, 0.6), rnd.uniform(1.2, 2.0)])
            plan.faults.append(fault)
            at += fault.length + rnd.expovariate(1.0)
        # Drawn apart, so that adding the failover left the rest of each plan as it was.
        other = random.Random(f"{seed}-failover")
        if other.random() < 0.5:
            plan.failover = plan.producer_via_proxy = True  # the producer must follow the promotion too
            plan.faults.append(Fault(other.uniform(1.0, duration - 1.0), "failover"))
            plan.faults.sort(key=lambda f: f.at)
        plan.flows = flows_of(seed, duration)
        if random.Random(f"{seed}-app").random() < SYNC_SHARE:
            plan.app = "sync"
        sentinel = random.Random(f"{seed}-sentinel")
        cluster = random.Random(f"{seed}-cluster")
        if not plan.failover and sentinel.random() < 0.25:
            plan.sentinel = sentinel.choice(HA_MODES)
            plan.ha_fault(sentinel.uniform(1.0, duration - 2.0), "sentinel")
        elif not plan.failover and cluster.random() < 0.2:
            plan.cluster = cluster.choice(HA_MODES)
            plan.ha_fault(cluster.uniform(1.0, duration - 2.0), "cluster")
        return plan

    def ha_fault(self, at: float, kind: str) -> None:
        """Keep only the faults of HA_FAULT_KINDS, and add a failover of ``kind`` at ``at``."""
        self.faults = [f for f in self.faults if f.kind in HA_FAULT_KINDS]
        self.faults.append(Fault(at, kind))
        self.faults.sort(key=lambda f: f.at)

    @staticmethod
    def item(rnd: random.Random, n: int) -> dict[str, Any]:
        """One job: its Task fields and enqueue options."""
        fields: dict[str, Any] = {"n": n, "sleep": rnd.choice([0.0, 0.01, 0.05, 0.2])}
        options: dict[str, Any] = {"priority": rnd.choice([1, 100, 32768])}
        roll = rnd.random()
        if roll < 0.15:
            fields["fail"] = rnd.randint(1, 3)
        elif roll < 0.2:
            fields["hang"] = True
            options["timeout"] = 0.3
        elif roll < 0.23:
            fields["die"] = True
        elif roll < 0.24:
            fields["pill"] = True
            options["retry_limit"] = 0
        if rnd.random() < 0.2:
            options["delay"] = rnd.uniform(0.05, 1.5)
        if rnd.random() < 0.3:
            scope = rnd.choice(SCOPES)
            options["unique_key"] = f"{scope}-{rnd.randrange(4)}"
            options["scope"] = scope
            if rnd.random() < 0.5:
                fields["fail"] = 1  # the A of issue item 3: fails while a B holds its key
        return {"fields": fields, "options": options}

    def describe(self) -> str:
        jobs = sum(len(s.items) for s in self.sends) + sum(len(f.items) for f in self.flows)
        faults = ", ".join(f"{f.kind}@{f.at:.1f}" for f in self.faults)
        return (
            f"seed {self.seed}: {self.workers} {self.app} workers -c {self.concurrency} --prefetch {self.prefetch}, "
            f"{jobs} jobs in {len(self.sends)} enqueues, cron {'on' if self.cron else 'off'}, "
            + (
                f"Redis behind sentinels (promoting a replica {self.sentinel}); "
                if self.sentinel
                else f"a Redis Cluster (promoting a replica {self.cluster}); "
                if self.cluster
                else f"producer {'via the proxy' if self.producer_via_proxy else 'direct'}; "
            )
            + f"faults: {faults or 'none'}"
        )


def flows_of(seed: int, duration: float) -> list[Flow]:
    """The workflows of a seed, drawn apart (the rest of each plan stays as
    it was): about one a second, chains of 2 or 3 jobs and batches of 3 to
    5, with the jobs of the workload (no unique keys)."""
    rnd = random.Random(f"{seed}-flows")
    flows = []
    n = 100_000
    at = rnd.uniform(0.2, 1.0)
    while at < duration:
        kind = rnd.choice(["chain", "batch"])
        items = []
        for _ in range(rnd.randint(2, 3) if kind == "chain" else rnd.randint(3, 5)):
            item = Plan.item(rnd, n)
            n += 1
            for name in ("unique_key", "scope"):
                item["options"].pop(name, None)
            items.append(item)
        flows.append(Flow(at, kind, items))
        at += rnd.expovariate(1.0)
    return flows


def options_of(item: dict[str, Any]) -> dict[str, Any]:
    """The enqueue options of one planned item."""
    options = dict(item["options"])
    scope = options.pop("scope", None)
    if "unique_key" in options:
        options["unique_key"] = zizq.UniqueKey.raw(options["unique_key"]).scope(scope)
    return options


def replay_command(seed: int, duration: float = DURATION) -> str:
    """The command that runs ``seed`` again, from the checkout's root."""
    command = f"{os.path.relpath(sys.executable, ROOT)} -m tests.history --seed {seed}"
    return command if duration == DURATION else f"{command} --duration {duration:g}"


# -- the run -------------------------------------------------------------------


class Worker:
    """One worker slot: its current `zizq worker` process, restarted when it dies."""

    def __init__(self, run: Run, slot: int) -> None:
        self.run = run
        self.slot = slot
        self.starts = 0
        self.proc = self.start()

    def start(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = open(self.run.dir / f"worker-{self.slot}-{self.starts}.log", "wb")
        plan = self.run.plan
        command = [
            sys.executable,
            *("-m", "zizq", "worker", APPS[plan.app]),
            *("--url", self.run.url, "--namespace", self.run.namespace),
            *("-c", str(plan.concurrency), "--prefetch", str(plan.prefetch)),
            *("--lease", str(LEASE), "--heartbeat-interval", str(HEARTBEAT), "--shutdown-timeout", "10"),
            *("--log-level", "DEBUG"),
        ]
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ZIZQ_HISTORY": self.run.history.url, "ZIZQ_HISTORY_APP": plan.app},
        )
        log.close()
        self.run.record("worker", slot=self.slot, pid=proc.pid)
        return proc

    def alive(self) -> bool:
        return self.proc.poll() is None


class Run:
    """The processes of one seed's run, and its history."""

    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.dir = workdir
        self.namespace = f"h{plan.seed}"
        self.stack = contextlib.ExitStack()
        self.workers: list[Worker] = []
        try:
            self._start_servers()
        except BaseException:
            self.stack.close()
            raise
        self.stop_producing = threading.Event()
        self.cron_start = 0.0

    def _start_servers(self) -> None:
        """The queue Redis (alone, with a replica, behind sentinels, or the
        namespace's shard of a cluster), the history Redis, the proxy."""
        plan = self.plan
        self.replica: RedisServer | None = None
        self.sentinels: SentinelSet | None = None
        self.cluster: Cluster | None = None
        if plan.sentinel:
            self.sentinels = SentinelSet(self.namespace, None, None, AOF)
            self.stack.callback(self.sentinels.close)
            self.queue, self.replica = self.sentinels.master, self.sentinels.replica
        elif plan.cluster:
            self.cluster = Cluster(args=AOF)
            self.stack.callback(self.cluster.close)
            self.queue = self.cluster.master_of(self.namespace)
            self.replica = replica_of(self.queue, self.cluster.nodes)
        else:
            self.queue = self.stack.enter_context(RedisServer(*AOF))
        if plan.failover:
            self.replica = self.stack.enter_context(RedisServer(*AOF, "--replicaof", "127.0.0.1", str(self.queue.port)))
        self.history = self.stack.enter_context(RedisServer())
        self.hist = redis.Redis(port=self.history.port)
        self.stack.callback(self.hist.close)
        self.proxy = FlakyProxy(self.queue.port)
        self.stack.callback(self.proxy.close)
        # What the workers and the admin client use: it follows a promotion.
        self.url = self.sentinels.url if self.sentinels else self.cluster.url if self.cluster else self.proxy.url
        self.admin = zizq.Client.from_url(self.url, self.namespace)
        self.stack.callback(self.admin.close)

    def record(self, event: str, **fields: Any) -> None:
        self.hist.rpush(HISTORY_KEY, orjson.dumps({"t": time.time(), "e": event, "pid": os.getpid(), **fields}))

    def close(self) -> None:
        for w in self.workers:
            if w.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signal.SIGCONT)
                w.proc.kill()
            w.proc.wait(10)
        self.stack.close()

    # -- the workload

    def setup(self) -> None:
        self.admin.set_defaults(
            retry_limit=3,
            backoff=zizq.Backoff(base_ms=0, exponent=0.0, jitter_ms=200),  # retries after 1 to 1.2 s
            max_recoveries=2,
        )
        if self.plan.cron:
            entry = zizq.CronEntry("tick", "* * * * * *", Tick())
            self.cron_start = time.time()
            self.admin.replace_cron("history", [entry])
        self.workers = [Worker(self, slot) for slot in range(self.plan.workers)]

    def producer(self) -> zizq.Client:
        """A client for enqueues: behind sentinels or in a cluster, through
        self.url with wait_replicas=1 (it follows a promotion, and what it
        enqueued survives one)."""
        if self.sentinels or self.cluster:
            return zizq.Client.from_url(self.url, self.namespace, wait_replicas=1)
        url = self.proxy.url if self.plan.producer_via_proxy else self.queue.url
        return zizq.Client.from_url(url, self.namespace)

    def produce(self) -> None:
        client = self.producer()
        started = time.monotonic()
        try:
            for send in self.plan.sends:
                wait = started + send.at - time.monotonic()
                if self.stop_producing.wait(max(0.0, wait)):
                    return
                self.send(client, send)
        finally:
            client.close()

    def send(self, client: zizq.Client, send: Send) -> None:
        sent = time.time()
        try:
            if send.bulk:
                jobs = client.enqueue_many([zizq.Enqueue(Task(**i["fields"]), **options_of(i)) for i in send.items])
            else:
                item = send.items[0]
                jobs = [client.enqueue(Task(**item["fields"]), **options_of(item))]
        except zizq.ZizqError as exc:
            self.record("enqueue_error", sent=sent, error=f"{type(exc).__name__}: {exc}")
            return
        keys = [item["options"].get("unique_key") for item in send.items]
        self.record("enqueue", sent=sent, ids=[j.id for j in jobs], duplicate=[j.duplicate for j in jobs], keys=keys)

    def produce_flows(self) -> None:
        """Send the plan's workflows, each at its time, and record them: the
        jobs as an enqueue, and the chain (its ids in order) or the batch
        (its members and callbacks)."""
        # Not the master's own URL: after a Sentinel failover it is dead, and
        # each flow then waited 15 s for it while no dead worker was restarted (seed 215).
        client = self.producer()
        started = time.monotonic()
        try:
            for flow in self.plan.flows:
                if self.stop_producing.wait(max(0.0, started + flow.at - time.monotonic())):
                    return
                self.send_flow(client, flow)
        finally:
            client.close()

    def send_flow(self, client: zizq.Client, flow: Flow) -> None:
        sent = time.time()
        items = [zizq.Enqueue(Task(**i["fields"]), **options_of(i)) for i in flow.items]
        try:
            if flow.kind == "chain":
                jobs = client.chain(items)
                self.record("chain", ids=[j.id for j in jobs])
            else:
                n = flow.items[0]["fields"]["n"]
                with client.batch(on_complete=Task(n=-n), on_success=Task(n=-n - 1)) as batch:
                    jobs = batch.enqueue_many(items)
                info = client.get_batch(batch.id)
                self.record(
                    "batch",
                    batch=batch.id,
                    members=[j.id for j in jobs],
                    on_complete=info.on_complete,
                    on_success=info.on_success,
                )
        except zizq.ZizqError as exc:
            self.record("enqueue_error", sent=sent, error=f"{type(exc).__name__}: {exc}")
            return
        self.record(
            "enqueue", sent=sent, ids=[j.id for j in jobs], duplicate=[False] * len(jobs), keys=[None] * len(jobs)
        )

    def observe(self) -> None:
        """Read every job record of the namespace in one HGETALL (atomic),
        every 20 ms, and record each job created while another job held its
        unique key within its scope (checks.unique_conflicts)."""
        port = self.queue.port
        conn = redis.Redis(port=port, socket_timeout=1)
        before: dict[str, dict[str, Any]] = {}
        try:
            while not self.stop_producing.wait(0.02):
                if port != self.queue.port:  # a promotion
                    conn.close()
                    port = self.queue.port
                    conn = redis.Redis(port=port, socket_timeout=1)
                try:
                    blobs = conn.hgetall(self.admin.core.key("jobs"))
                except redis.RedisError:
                    continue  # a restart: look again
                keyed = {checks.text(k): msgpack.unpackb(v) for k, v in blobs.items()}
                after = {job_id: r for job_id, r in keyed.items() if r.get("uk")}
                for conflict in checks.unique_conflicts(before, after):
                    self.record("unique", conflict=conflict)
                before = after
        finally:
            conn.close()

    def watch_masters(self) -> None:
        """Behind sentinels or in a cluster, ask every 0.2 s which server is
        the namespace's master, and record each change as a ``promotion``:
        the planned failovers, and those the sentinels or the cluster make
        on their own when the master stalls past their timeout of 1 s (seed
        215, on a busy host), which lose acks as the planned ones do."""
        if not (self.sentinels or self.cluster):
            return
        port = self.queue.port
        while not self.stop_producing.wait(0.2):
            try:
                now = self.master_port()
            except (redis.RedisError, AssertionError, OSError):
                continue  # none, or not known yet: look again
            if now != port:
                self.record("promotion", port=now, before=port)
                port = now

    def master_port(self) -> int:
        """The port of the namespace's master now, as the sentinels or the cluster see it."""
        if self.sentinels is not None:
            return self.sentinels.master_port()
        assert self.cluster is not None
        return self.cluster.master_of(self.namespace).port

    # -- the faults

    def supervise(self, until: float) -> None:
        """Until time.monotonic() reaches ``until``, restart dead workers."""
        while True:
            for w in self.workers:
                if not w.alive():
                    self.record("exit", slot=w.slot, pid=w.proc.pid, code=w.proc.returncode)
                    w.proc = w.start()
            left = until - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.05, left))

    def inject(self, fault: Fault) -> None:
        start = time.time()
        target: dict[str, Any] = {}
        if fault.kind in ("kill", "stop"):
            worker = self.workers[fault.target]
            if not worker.alive():
                return
            target = {"target": worker.proc.pid}
            if fault.kind == "kill":
                worker.proc.kill()
                worker.proc.wait()
            else:
                worker.proc.send_signal(signal.SIGSTOP)
                self.supervise(time.monotonic() + fault.length)
                worker.proc.send_signal(signal.SIGCONT)
        elif fault.kind == "restart":
            assert self.queue.proc is not None
            self.queue.proc.kill()  # kill -9: only what AOF (appendfsync always) has survives
            self.queue.proc.wait()
            self.supervise(time.monotonic() + fault.length)
            self.queue.start()
        elif fault.kind == "stall":
            self.proxy.stall()
            self.supervise(time.monotonic() + fault.length)
            self.proxy.resume()
        elif fault.kind == "cut":
            self.proxy.cut()
        elif fault.kind == "failover":
            if not self.fail_over():
                return
        elif fault.kind == "sentinel":
            if not self.sentinel_failover():
                return
        elif fault.kind == "cluster":
            if not self.cluster_failover():
                return
        elif fault.kind == "flush":
            with redis.Redis(port=self.queue.port) as conn:
                conn.script_flush()
        self.record("fault", kind=fault.kind, start=start, end=time.time(), **target)

    def fail_over(self) -> bool:
        """Promote the replica behind the proxy, as a failover would: wait
        until the replica has finished its first sync (at most 5 s), stall
        every connection, wait until it has every write (at most 2 s; False
        if it has not), promote it (REPLICAOF NO ONE), point the proxy at it
        and cut the connections (the requests held are lost), kill the old
        master, and start a new replica of the new master."""
        assert self.replica is not None
        old, new = self.queue, self.replica
        with redis.Redis(port=old.port) as m, redis.Redis(port=new.port) as r:

            def caught_up() -> bool:
                return _caught_up(m, r)

            if not _within(5, caught_up):
                return False
            self.proxy.stall()
            try:
                if not _within(2, caught_up):
                    return False
                r.replicaof("NO", "ONE")
                new.args = AOF  # a restart keeps it a master
                self.proxy.upstream_port = new.port
                self.proxy.cut()
                self.queue = new
                assert old.proc is not None
                old.proc.kill()
                old.proc.wait()
            finally:
                self.proxy.resume()
        self.replica = self.stack.enter_context(RedisServer(*AOF, "--replicaof", "127.0.0.1", str(new.port)))
        return True

    def sentinel_failover(self) -> bool:
        """Kill the master (kill -9) and let the sentinels promote the
        replica: ``in sync`` (caught up first, at most 5 s), or ``syncing``
        (killed and restarted from its AOF just before, so it resyncs as the
        master dies); then start a new replica of the new master. False if
        the replica did not catch up, or the sentinels promoted nobody within
        30 s (the old master is then started again)."""
        assert self.replica is not None and self.sentinels is not None
        old, new = self.queue, self.replica
        if not self._kill_for_failover(old, new):
            return False
        sentinels = self.sentinels

        def promoted() -> bool:
            try:
                return sentinels.master_port() == new.port
            except redis.RedisError:
                return False

        if not _within(30, promoted):
            old.start()
            return False
        self.queue = new
        self.replica = self.stack.enter_context(RedisServer(*AOF, "--replicaof", "127.0.0.1", str(new.port)))
        return True

    def cluster_failover(self) -> bool:
        """Kill the namespace's master (kill -9) and let its replica take
        over: ``in sync`` (caught up first, at most 5 s), or ``syncing``
        (killed and restarted from its AOF just before); then start the old
        master again, from its AOF: it comes back as the new master's
        replica. False if the replica did not catch up, or did not take over
        within 30 s (the old master is then started again)."""
        assert self.replica is not None and self.cluster is not None
        old, new = self.queue, self.replica
        if not self._kill_for_failover(old, new):
            return False
        cluster, namespace = self.cluster, self.namespace

        def promoted() -> bool:
            try:
                return cluster.master_of(namespace).port == new.port
            except (redis.RedisError, AssertionError):
                return False

        taken_over = _within(30, promoted)
        old.start()
        if taken_over:
            self.queue, self.replica = new, old
        return taken_over

    def _kill_for_failover(self, old: RedisServer, new: RedisServer) -> bool:
        """Kill master ``old`` (kill -9) once replica ``new`` is in sync
        (at most 5 s; False if it is not), or, for a replica ``syncing``,
        right after a restart of ``new`` from its AOF."""
        assert old.proc is not None and new.proc is not None
        if (self.plan.sentinel or self.plan.cluster) == "in sync":
            with redis.Redis(port=old.port) as m, redis.Redis(port=new.port) as r:
                if not _within(5, lambda: _caught_up(m, r)):
                    return False
        else:
            new.proc.kill()
            new.proc.wait()
            new.start()
        old.proc.kill()
        old.proc.wait()
        return True

    # -- the end

    def quiesce(self, timeout: float) -> bool:
        """Stop the cron entry, then wait until no job of the namespace is
        ready, scheduled or in flight; restart workers meanwhile. False if
        that did not happen within ``timeout`` seconds."""
        if self.plan.cron:
            self.admin.delete_cron("history")
            self.record("cron", start=self.cron_start, end=time.time())
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            stats = self.admin.stats()
            pending = stats.in_flight + sum(ready for ready, *_ in stats.queues.values())
            pending += self.admin.count_jobs(status="scheduled") + stats.waiting
            quiet = 0 if pending else quiet + 1
            if quiet == 3:  # three looks in a row: a cron run claimed before the delete has been sent
                return True
            self.supervise(time.monotonic() + 0.1)
        return False

    def stop_workers(self) -> None:
        for w in self.workers:
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(15)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()

    def execute(self) -> checks.Evidence:
        self.setup()
        producer = threading.Thread(target=self.produce, name="producer")
        observer = threading.Thread(target=self.observe, name="observer")
        watcher = threading.Thread(target=self.watch_masters, name="watcher")
        flows = threading.Thread(target=self.produce_flows, name="flows")
        producer.start()
        observer.start()
        watcher.start()
        flows.start()
        started = time.monotonic()
        try:
            for fault in self.plan.faults:
                self.supervise(started + fault.at)
                self.inject(fault)
            self.supervise(started + self.plan.duration)
            producer.join(30)
            flows.join(30)
            quiet = self.quiesce(30)
        finally:
            self.stop_producing.set()
            producer.join(30)
            flows.join(30)
            observer.join(10)
            watcher.join(10)
        self.stop_workers()
        return self.evidence(quiet)

    def evidence(self, quiet: bool) -> checks.Evidence:
        events = [orjson.loads(e) for e in self.hist.lrange(HISTORY_KEY, 0, -1)]
        with redis.Redis(port=self.queue.port) as conn:
            snapshot = checks.snapshot(conn, self.admin.core.key)
            errors = {
                job_id: [orjson.loads(e) for e in conn.lrange(self.admin.core.key("errors", job_id), 0, -1)]
                for job_id in snapshot.records
            }
        logs = "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob("worker-*.log")))
        return checks.Evidence(events, snapshot, errors, logs, quiet)


def _caught_up(m: redis.Redis, r: redis.Redis) -> bool:
    """Whether replica ``r`` has every write of master ``m``, and keeps it
    across a restart.

    Equal offsets alone are not enough: after the master's restart (a new
    replication id, its offset from 0) the replica may still be in its full
    resync, or not linked yet, and its promotion then loses what it had not
    loaded (seed 90: acknowledged jobs in no state at the end). So the link
    must be up, no sync in progress, the same history (replid), the same
    offset. And its AOF must be written again: after a full sync a replica
    rewrites its AOF before it appends to it, and a restart (kill -9) of the
    promoted replica in that window loses what the sync brought (seed 118),
    which no client can prevent."""
    mi, ri, rp = m.info("replication"), r.info("replication"), r.info("persistence")
    return bool(
        not rp.get("aof_rewrite_in_progress")
        and not rp.get("aof_rewrite_scheduled")
        and ri.get("master_link_status") == "up"
        and not ri.get("master_sync_in_progress")
        and ri.get("master_replid") == mi.get("master_replid")
        and mi["master_repl_offset"] == ri.get("slave_repl_offset")
    )


def replica_of(master: RedisServer, nodes: list[RedisServer]) -> RedisServer:
    """The server among ``nodes`` that replicates ``master``."""
    with redis.Redis(port=master.port) as r:
        port = int(r.info("replication")["slave0"]["port"])
    return next(n for n in nodes if n.port == port)


def _within(seconds: float, predicate: Callable[[], bool]) -> bool:
    """Whether ``predicate()`` comes true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- the entry points ----------------------------------------------------------


@dataclass
class Result:
    seed: int
    violations: list[str]
    seconds: float
    summary: str
    kept: Path | None  # where the worker logs and the history (history.jsonl) were kept

    @property
    def ok(self) -> bool:
        return not self.violations


LENT = "the handler threads take and ack for themselves"  # zizq.worker.sync_lane's DEBUG line


def lane_use(ev: checks.Evidence) -> tuple[str, list[str]]:
    """How much of a sync app's run went through the workers' handler
    threads: what to add to the summary, and a violation when no handler
    ran in them (the sync app would then check the event loop's path)."""
    starts = ev.of("start")
    in_lane = sum(bool(s.get("lane")) for s in starts)
    summary = f"{in_lane} of {len(starts)} starts in the handler threads, taking lent {ev.logs.count(LENT)} times"
    if starts and not in_lane:
        return summary, ["sync app: no handler ran in the worker's handler threads (zizq.worker.sync_lane)"]
    return summary, []


def run_seed(seed: int, duration: float = DURATION, keep: bool = False) -> Result:
    """Run one seed's plan and check its history."""
    plan = Plan.of(seed, duration)
    workdir = Path(tempfile.mkdtemp(prefix=f"zizq-history-{seed}-"))
    started = time.monotonic()
    evidence = None
    run = None
    try:
        run = Run(plan, workdir)
        evidence = run.execute()
        violations = checks.check_all(evidence)
        summary = plan.describe() + "; " + evidence.summary()
        if plan.app == "sync":
            use, unused = lane_use(evidence)
            summary += "; " + use
            violations += unused
    except Exception as exc:  # a run that cannot finish is a finding too (or a harness bug: read the logs)
        violations = [f"the run itself failed: {type(exc).__name__}: {exc}"]
        summary = plan.describe()
        traceback.print_exc()
    finally:
        if run is not None:
            run.close()
    if keep or violations:
        if evidence is not None:
            (workdir / "history.jsonl").write_bytes(b"\n".join(orjson.dumps(e) for e in evidence.events))
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return Result(seed, violations, time.monotonic() - started, summary, workdir if keep or violations else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds to run (default 1)")
    parser.add_argument("--start", type=int, default=1, help="the first seed (default 1; 0: a random start)")
    parser.add_argument("--duration", type=float, default=DURATION, help="seconds of workload and faults per seed")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs and history of passing seeds too")
    args = parser.parse_args(argv)
    # The proxy's connections cancelled at its close are no finding: keep them off the report.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    start = args.start or random.randrange(1, 1_000_000)
    seeds = [args.seed] if args.seed is not None else list(range(start, start + args.seeds))
    failed = []
    for seed in seeds:
        result = run_seed(seed, args.duration, args.keep)
        print(f"seed {seed}: {'ok' if result.ok else 'FAILED'} in {result.seconds:.1f}s ({result.summary})", flush=True)
        for v in result.violations:
            print("  " + v, flush=True)
        if result.kept:
            print(f"  worker logs and history kept in {result.kept}", flush=True)
        if not result.ok:
            failed.append(seed)
            print(f"  replay: {replay_command(seed, args.duration)}", flush=True)
    print(f"{len(seeds) - len(failed)} of {len(seeds)} seeds passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

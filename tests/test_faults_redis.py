"""Faults in Redis and in the network to it, injected while a producer
enqueues and two worker processes run: a Redis restart (AOF on), a restart
that leaves Redis loading its data (LOADING) for a while, a proxy that stalls
and cuts the workers' connections, and SCRIPT FLUSH; and an idle worker whose
Redis is demoted to a replica and promoted back.

Real redis-server and worker processes throughout; the job kind, the recorder
and the invariant are in fault_harness.py. Waits poll a condition with a
deadline; the only sleeps are the faults' own durations.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import zizq

from .conftest import ROOT, RedisServer
from .fault_harness import Outcome, Work, outcome, stop_worker

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

T = TypeVar("T")
MakeRedis = Callable[..., RedisServer]
WORKER_OPTIONS = ("-c", "4")
LEASE = 5.0  # seconds: the workers' default lease
JOB_SLEEP = 0.02  # seconds each handler run takes
PRODUCER_PACE = 0.005  # seconds between two enqueues


def wait_until(what: str, predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g}s")
        time.sleep(interval)


def statuses(client: zizq.Client, ids: Sequence[str]) -> list[str | None]:
    """Each job's status (None: no such job), in one round trip."""
    if not ids:
        return []
    return [None if job is None else job.status for job in client.run(client.core.get(ids))]


def enqueue_errors(producer: Producer, acknowledged: int) -> str:
    kinds = sorted({f"{type(e).__module__}.{type(e).__qualname__}: {e}" for e in producer.errors})
    return f"{len(producer.errors)} of {acknowledged + len(producer.errors)} enqueues raised: {kinds}"


class Producer(threading.Thread):
    """Enqueues Work jobs one at a time, straight to Redis, until stopped.
    ``ids`` holds every id whose enqueue returned, in order; ``errors`` every
    exception an enqueue raised."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__(name="fault-producer", daemon=True)
        self.client = zizq.Client.from_url(url, namespace)
        self.ids: list[str] = []
        self.errors: list[Exception] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        try:
            while not self.stopping.is_set():
                try:
                    job = self.client.enqueue(Work(n=n, sleep=JOB_SLEEP))
                except Exception as exc:  # every error is evidence: record it, keep producing
                    self.errors.append(exc)
                else:
                    self.ids.append(job.id)
                n += 1
                self.stopping.wait(PRODUCER_PACE)
        finally:
            self.client.close()

    def snapshot(self) -> list[str]:
        return list(self.ids)

    def stop(self) -> None:
        self.stopping.set()
        # An enqueue in progress retries for up to retry_for (30 s) while Redis is away.
        self.join(40)
        assert not self.is_alive(), "the producer did not stop"


class WorkerProcess:
    """A `zizq worker` process, started as fault_harness.start_worker starts
    one but with stderr kept in a file, so a test can look for tracebacks."""

    def __init__(self, url: str, namespace: str, recorder_url: str, log: Path, *options: str) -> None:
        self.log = log
        with log.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zizq", "worker", "tests.fault_harness:router", "--url", url,
                 "--namespace", namespace, "--log-level", "WARNING", *options],
                cwd=ROOT,
                env={**os.environ, "ZIZQ_FAULT_RECORDER": recorder_url},
                stderr=stderr,
            )  # fmt: skip

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def describe(self) -> str:
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited with {rc}"
        lines = self.stderr().splitlines()
        if "Traceback (most recent call last):" in lines:  # the first traceback, where a crash began
            start = lines.index("Traceback (most recent call last):")
            shown, where = lines[start : start + 40], "first traceback"
        else:
            shown, where = lines[-15:], "stderr ends"
        text = "\n    ".join(shown)
        return f"worker pid {self.proc.pid} {state}; {where}:\n    {text}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                stop_worker(self.proc, timeout=10)


class Scene:
    """One run: a recorder Redis, a producer, worker processes. Everything
    started through it is stopped at teardown, last started first."""

    def __init__(self, tmp_path: Path, make_redis: MakeRedis, namespace: str, stack: contextlib.ExitStack) -> None:
        self.tmp_path = tmp_path
        self.namespace = namespace
        self.stack = stack
        self.recorder_server = make_redis()
        self.recorder = redis.Redis(port=self.recorder_server.port)
        stack.callback(self.recorder.close)
        self.workers: list[WorkerProcess] = []

    def client(self, url: str) -> zizq.Client:
        client = zizq.Client.from_url(url, self.namespace)
        self.stack.callback(client.close)
        return client

    def start_producer(self, url: str) -> Producer:
        producer = Producer(url, self.namespace)
        producer.start()
        self.stack.callback(producer.stop)
        return producer

    def start_worker(self, url: str, *options: str) -> WorkerProcess:
        log = self.tmp_path / f"worker-{len(self.workers)}.stderr"
        worker = WorkerProcess(url, self.namespace, self.recorder_server.url, log, *options)
        self.workers.append(worker)
        self.stack.callback(worker.kill)
        return worker

    def busy(self, check: zizq.Client, producer: Producer, what: str, timeout: float = 15.0) -> None:
        """Wait until every worker process has finished some job."""
        pids = {w.proc.pid for w in self.workers}

        def all_working() -> bool:
            pipe = self.recorder.pipeline(transaction=False)
            for job_id in producer.snapshot()[-500:]:
                pipe.lrange("finished:" + job_id, 0, -1)
            seen = {int(pid) for runs in pipe.execute() for pid in runs}
            return pids <= seen

        try:
            wait_until(what, all_working, timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.report(check, producer.snapshot(), producer)}") from None

    def progress(self, check: zizq.Client, producer: Producer, jobs: int, what: str, timeout: float = 10.0) -> None:
        """Wait until ``jobs`` more of the producer's jobs have completed
        (the producer and the workers are both moving)."""
        start = statuses(check, producer.snapshot()).count("completed")

        def moved() -> bool:
            return statuses(check, producer.snapshot()).count("completed") >= start + jobs

        try:
            wait_until(what, moved, timeout, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.report(check, producer.snapshot(), producer)}") from None

    def report(self, check: zizq.Client, ids: Sequence[str], producer: Producer | None = None) -> str:
        counts: dict[str | None, int] = {}
        for status in statuses(check, ids):
            counts[status] = counts.get(status, 0) + 1
        lines = [f"{len(ids)} jobs acknowledged, by status: {counts}"]
        if producer is not None and producer.errors:
            lines.append(enqueue_errors(producer, len(ids)))
        return "\n".join([*lines, *(w.describe() for w in self.workers)])

    def finish(self, check: zizq.Client, producer: Producer, *, drain: float = 15.0) -> Outcome:
        """Stop the producer, wait for the workers to finish every job, stop
        them gracefully, and check everything that must hold whatever the
        fault was; returns the outcome for the scenario's own checks."""
        producer.stop()
        ids = producer.snapshot()
        assert ids, "the producer enqueued nothing"
        problems: list[str] = []
        if producer.errors:
            problems.append(enqueue_errors(producer, len(ids)))

        def done() -> bool:
            return all(s in ("completed", "dead") for s in statuses(check, ids))

        try:
            wait_until("every acknowledged job completed or dead", done, drain, interval=0.1)
        except AssertionError as exc:
            problems.append(str(exc))
        for w in self.workers:
            if w.proc.poll() is not None:
                problems.append(f"a worker died during the run: {w.describe()}")
            else:
                try:
                    rc = stop_worker(w.proc, timeout=15)
                except subprocess.TimeoutExpired:
                    problems.append(f"a worker did not stop within 15s of SIGTERM: {w.describe()}")
                else:
                    if rc != 0:
                        problems.append(f"a worker stopped with exit code {rc}: {w.describe()}")
            if "Traceback" in w.stderr():
                problems.append(f"a traceback on a worker's stderr: {w.describe()}")
        result = outcome(check, self.recorder, ids)
        if result.missing:
            problems.append(f"{len(result.missing)} acknowledged jobs are missing, e.g. {result.missing[:5]}")
        if result.doubles:
            problems.append(f"{len(result.doubles)} jobs completed twice with no recovery, e.g. {result.doubles[:5]}")
        if problems:
            problems.append(self.report(check, ids))
        assert not problems, "\n".join(problems)
        return result


@pytest.fixture
def scene(tmp_path: Path, redis_factory: MakeRedis, namespace: str) -> Iterator[Scene]:
    with contextlib.ExitStack() as stack:
        yield Scene(tmp_path, redis_factory, namespace, stack)


# -- 3. Redis restarts --------------------------------------------------------


def test_redis_restart_with_aof(scene: Scene, redis_factory: MakeRedis) -> None:
    """Redis stops gracefully (writing its AOF) and comes back on the same port
    and dir a second later: no acknowledged enqueue is lost, and the producer
    and the workers carry on by themselves."""
    target = redis_factory("--appendonly", "yes", "--appendfsync", "everysec")
    check = scene.client(target.url)
    producer = scene.start_producer(target.url)
    for _ in range(2):
        scene.start_worker(target.url, *WORKER_OPTIONS)  # the default lease (5 s) outlasts the outage
    scene.busy(check, producer, "every worker busy before the restart")

    port, data_dir = target.port, target.dir
    before = producer.snapshot()
    target.stop()
    assert target.proc is not None and target.proc.returncode == 0, "redis-server did not shut down cleanly"
    time.sleep(1.0)  # the outage
    target.start()
    assert (target.port, target.dir) == (port, data_dir)
    assert (Path(data_dir) / "appendonlydir").is_dir(), "redis-server wrote no AOF"

    # Everything acknowledged before the shutdown came back from the AOF.
    lost = [i for i, s in zip(before, statuses(check, before), strict=True) if s is None]
    assert not lost, f"{len(lost)} of {len(before)} jobs acknowledged before the restart are gone, e.g. {lost[:5]}"
    wait_until("the producer enqueues again", lambda: len(producer.ids) >= len(before) + 50, 15)
    scene.progress(check, producer, 50, "workers complete jobs again after the restart")

    result = scene.finish(check, producer)
    assert result.statuses["completed"] == sum(result.statuses.values()), result.statuses


def test_redis_answers_loading_after_a_restart(scene: Scene, redis_factory: MakeRedis) -> None:
    """Redis restarts and answers LOADING for about 2 s while it reads its
    data back (slowed down: 1 ms a key, 2,000 padding keys, client requests
    served while loading): the producer's and the workers' calls are retried
    until it is ready, and every job is done."""
    target = redis_factory(
        *("--appendonly", "yes", "--appendfsync", "everysec"),
        *("--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024"),
    )
    admin = redis.Redis(port=target.port)
    scene.stack.callback(admin.close)
    with redis.Redis(port=target.port, db=1) as padding:  # apart from the namespace's keys
        padding.mset({f"pad:{i}": "x" for i in range(2000)})
    check = scene.client(target.url)
    producer = scene.start_producer(target.url)
    for _ in range(2):
        scene.start_worker(target.url, *WORKER_OPTIONS)
    scene.busy(check, producer, "every worker busy before the restart")

    # Rewrite the AOF into one snapshot, so that loading it takes a time set by the keys, not by the run so far.
    admin.bgrewriteaof()
    wait_until("the AOF rewrite ends", lambda: admin.info("persistence")["aof_rewrite_in_progress"] == 0, 15)
    target.stop()
    target.start(loaded=False)
    probe = redis.Redis(port=target.port, retry=Retry(NoBackoff(), 0))  # redis-py's own retries would wait LOADING out
    scene.stack.callback(probe.close)
    with pytest.raises(redis.BusyLoadingError):
        probe.ping()
    wait_until("redis has loaded its data", lambda: _answers(probe), 15)
    scene.progress(check, producer, 50, "workers complete jobs again after loading")

    result = scene.finish(check, producer)
    assert result.statuses["completed"] == sum(result.statuses.values()), result.statuses
    assert any("loading the dataset" in w.stderr() for w in scene.workers), "no worker met LOADING"


def _answers(conn: redis.Redis) -> bool:
    try:
        return bool(conn.ping())
    except redis.BusyLoadingError:
        return False


# -- 4. A flaky network between the workers and Redis -------------------------


class FlakyProxy:
    """A TCP proxy on loopback, run by an event loop in a thread of its own,
    forwarding to a Redis port.

    ``stall()`` stops forwarding in both directions (bytes read are held, as a
    congested link holds them) until ``resume()``; ``cut()`` aborts both sides
    of every open connection, dropping whatever was held.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.accepted = 0
        self._links: dict[asyncio.Task[Any], tuple[asyncio.StreamWriter, ...]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flaky-proxy", daemon=True)
        self._thread.start()
        self._flowing = self._in_loop(asyncio.Event)
        self._in_loop(self._flowing.set)
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port: int = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in the proxy's loop and return its result."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(10)

    def stall(self) -> None:
        self._in_loop(self._flowing.clear)

    def resume(self) -> None:
        self._in_loop(self._flowing.set)

    def open_links(self) -> int:
        """Connections made since the last cut and still open."""
        return self._in_loop(lambda: len(self._links))

    def cut(self) -> int:
        """Abort every open connection, both sides; return how many."""

        def abort_all() -> int:
            # Forget the links now, not when their tasks end: from here on,
            # open_links() counts only connections made after this cut.
            links, self._links = self._links, {}
            for writers in links.values():
                for w in writers:
                    w.transport.abort()
            return len(links)

        return self._in_loop(abort_all)

    def close(self) -> None:
        async def shutdown() -> None:
            self._server.close()
            self._flowing.set()
            for writers in self._links.values():
                for w in writers:
                    w.transport.abort()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                writer.transport.abort()
                return
            self._links[task] = (writer, up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                self._links.pop(task, None)
                writer.transport.abort()
                up_writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                if writer.transport.is_closing():
                    break
                writer.write(data)
                await writer.drain()
        except OSError:  # the other side went away: the connection ends
            pass
        finally:
            # One direction ended: end the other too, as a lost connection would.
            writer.transport.abort()


def test_workers_survive_stalls_and_cuts(scene: Scene, redis_factory: MakeRedis) -> None:
    """The workers reach Redis through a proxy that stalls for 2 s and cuts
    every connection, a few times over, and once stalls longer than the
    lease; the producer reaches Redis directly. The workers recover by
    themselves and finish every job."""
    target = redis_factory()
    proxy = FlakyProxy(target.port)
    scene.stack.callback(proxy.close)  # after the workers have stopped (last in, first out)
    check = scene.client(target.url)
    producer = scene.start_producer(target.url)
    for _ in range(2):
        scene.start_worker(proxy.url, *WORKER_OPTIONS)
    scene.busy(check, producer, "every worker busy before the first fault")

    cut = proxy.cut()
    assert cut >= 2, f"the first cut found only {cut} connections"
    scene.progress(check, producer, 30, "workers recover from a cut")

    proxy.stall()
    time.sleep(2.0)  # the stall
    proxy.resume()
    scene.progress(check, producer, 30, "workers recover from a stall")

    # A stall that ends in a cut: requests and replies held in the proxy are lost.
    proxy.stall()
    time.sleep(2.0)
    assert proxy.cut() >= 2
    proxy.resume()
    scene.progress(check, producer, 30, "workers recover from a stall ending in a cut")

    # Two cuts in a row: the second lands on connections opened after the first.
    accepted = proxy.accepted
    assert proxy.cut() >= 2
    wait_until("the workers reconnect after a cut", lambda: proxy.open_links() >= 2, 10)
    assert proxy.cut() >= 2
    scene.progress(check, producer, 30, "workers recover from two cuts in a row")
    assert proxy.accepted > accepted

    # A stall past the lease (5 s): no heartbeat gets through, so both leases
    # lapse. When the held requests arrive, the first heartbeat finds that no
    # heartbeat at all came for longer than the lease (the gap rule): it
    # extends both leases rather than recover the other worker's jobs.
    proxy.stall()
    time.sleep(LEASE + 1.5)
    proxy.resume()
    scene.progress(check, producer, 30, "workers recover from a stall longer than the lease", timeout=20)

    result = scene.finish(check, producer)
    assert result.statuses["completed"] + result.statuses["dead"] == sum(result.statuses.values())
    lost = [w for w in scene.workers if "was declared lost" in w.stderr()]
    assert lost == [], "\n".join(w.describe() for w in scene.workers)


# -- 5. SCRIPT FLUSH ----------------------------------------------------------


def _flush_scripts(url: str, stop: threading.Event, count: list[int]) -> None:
    """Run SCRIPT FLUSH back to back until ``stop`` is set."""
    conn = redis.Redis.from_url(url)
    try:
        while not stop.is_set():
            conn.script_flush()
            count[0] += 1
    finally:
        conn.close()


@pytest.mark.parametrize("flushes", ["once", "burst"])
def test_script_flush(scene: Scene, redis_factory: MakeRedis, flushes: str) -> None:
    """SCRIPT FLUSH while the producer and the workers are busy: every call
    reloads its script and goes on. "once" is one flush; "burst" flushes back
    to back for a second, so that some flush lands between a client's SCRIPT
    LOAD and its EVALSHA. No error reaches the producer, the workers finish
    everything, and no traceback appears on their stderr."""
    target = redis_factory()
    check = scene.client(target.url)
    producer = scene.start_producer(target.url)
    for _ in range(2):
        scene.start_worker(target.url, *WORKER_OPTIONS)
    scene.busy(check, producer, "every worker busy before the flush")

    admin = redis.Redis(port=target.port)
    scene.stack.callback(admin.close)
    if flushes == "once":
        assert admin.script_flush()
    else:
        stop, count = threading.Event(), [0]
        flusher = threading.Thread(target=_flush_scripts, args=(target.url, stop, count), name="script-flusher")
        flusher.start()
        scene.stack.callback(flusher.join, 10)
        scene.stack.callback(stop.set)
        time.sleep(1.0)  # the burst
        stop.set()
        flusher.join(10)
        assert count[0] > 100, f"only {count[0]} flushes in the burst"
    scene.progress(check, producer, 50, "workers complete jobs after the flush")

    result = scene.finish(check, producer)
    assert result.statuses["completed"] == sum(result.statuses.values()), result.statuses
    for w in scene.workers:
        assert "NoScript" not in w.stderr() and "No matching script" not in w.stderr(), w.describe()


# -- A failover while a worker is idle ----------------------------------------


def test_idle_worker_rides_out_a_demotion(scene: Scene, redis_factory: MakeRedis) -> None:
    """A failover by hand while the worker waits for work in BLPOP: its
    replica is promoted and its master demoted (REPLICAOF), which ends the
    wait (UNBLOCKED, or a closed connection); takes and heartbeats then meet
    READONLY. The old
    master is promoted back; the worker carries on and does a job enqueued
    after."""
    no_delay = ("--repl-diskless-sync-delay", "0")  # a full sync starts at once
    primary = redis_factory(*no_delay)
    replica = redis_factory(*no_delay, "--replicaof", "127.0.0.1", str(primary.port))
    old, new = redis.Redis(port=primary.port), redis.Redis(port=replica.port)
    scene.stack.callback(old.close)
    scene.stack.callback(new.close)
    worker = scene.start_worker(primary.url)

    def blocked() -> bool:
        return any("b" in client["flags"] and client["cmd"] == "blpop" for client in old.client_list())

    wait_until("the worker waits for work", blocked, 15)
    wait_until("the replica is in sync", lambda: new.info("replication")["master_link_status"] == "up", 15)
    new.replicaof("NO", "ONE")
    old.replicaof("127.0.0.1", replica.port)
    wait_until("the old master follows the new", lambda: old.info("replication")["master_link_status"] == "up", 15)
    wait_until("the worker meets a replica", lambda: "read only replica" in worker.stderr(), 15)
    old.replicaof("NO", "ONE")

    check = scene.client(primary.url)
    job = check.enqueue(Work(n=1))
    wait_until("the job enqueued after is done", lambda: check.get_job(job.id).status == "completed", 15)
    assert worker.proc.poll() is None, worker.describe()
    assert stop_worker(worker.proc, timeout=15) == 0, worker.describe()
    # The wait ends with UNBLOCKED, or the demotion closes the connection under it.
    assert "redis unavailable" in worker.stderr() and "Traceback" not in worker.stderr(), worker.describe()

"""Fault injection on worker processes: a worker killed with SIGKILL among
several, a worker frozen with SIGSTOP past its lease and then resumed, and a
poison pill that kills every worker that takes it.

Everything is real: `zizq worker` processes started through the CLI, a
redis-server of the test's own for the queue and another for the recorder
(see fault_harness.py). Workers run with a 1 s lease and a 0.2 s heartbeat so
that a lost worker is noticed fast.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest
import redis

import zizq

from .conftest import RedisServer, free_port, stored
from .fault_harness import Work, outcome, start_worker, stop_worker
from .test_faults_redis import FlakyProxy

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]
IN_FLIGHT = 3  # the status code of in_flight in a stored job record (docs/protocol/keys.md §2.1)

LEASE = 1.0
HEARTBEAT = 0.2
LEASE_OPTIONS = ("--heartbeat-interval", str(HEARTBEAT), "--lease", str(LEASE))
QUEUE = ("-q", "default")


def poll(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait until ``predicate()`` is true; return the seconds it took. Fails
    with ``what`` after ``timeout`` seconds."""
    start = time.monotonic()
    deadline = start + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.01)
    return time.monotonic() - start


def text(value: object) -> str:
    assert isinstance(value, bytes)
    return value.decode()


def pid_of(worker_id: str) -> int:
    """Worker ids are host:pid:random."""
    return int(worker_id.rsplit(":", 2)[1])


@dataclass
class Rig:
    """A queue Redis, a recorder Redis, and the worker processes started on
    them (all killed after the test)."""

    url: str
    namespace: str
    recorder_url: str
    client: zizq.Client
    r: redis.Redis  # raw connection to the queue's Redis
    recorder: redis.Redis
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    server: RedisServer | None = None  # the queue's redis-server

    def start(self, *options: str) -> subprocess.Popen[bytes]:
        proc = start_worker(self.url, self.namespace, self.recorder_url, *LEASE_OPTIONS, *options)
        self.procs.append(proc)
        return proc

    def key(self, *parts: str) -> str:
        return self.client.core.key(*parts)

    def workers(self) -> dict[str, int]:
        """The ids of the workers holding a lease, with their pids."""
        return {text(i): pid_of(text(i)) for i in self.r.zrange(self.key("workers"), 0, -1)}

    def held(self, worker_id: str) -> set[str]:
        """The jobs Redis has in flight for ``worker_id``."""
        return {text(i) for i in self.r.smembers(self.key("worker", worker_id))}

    def held_by(self, worker_id: str, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` that are in flight for ``worker_id`` in their job record."""
        records = [stored(self.r, self.namespace, job_id) for job_id in ids]
        return [
            job_id
            for job_id, record in zip(ids, records, strict=True)
            if record is not None and record["s"] == IN_FLIGHT and record.get("w") == worker_id
        ]

    def jobs(self, ids: Sequence[str]) -> dict[str, zizq.Job]:
        found = self.client.run(self.client.core.get(list(ids)))
        return {job.id: job for job in found if job is not None}

    def all_finished(self, ids: Sequence[str]) -> bool:
        jobs = self.jobs(ids)
        return len(jobs) == len(ids) and all(j.status in ("completed", "dead") for j in jobs.values())

    def pids(self, kind: str, job_id: str) -> list[int]:
        """The pids that recorded ``kind`` ("started" or "finished") for the job."""
        return [int(p) for p in self.recorder.lrange(f"{kind}:{job_id}", 0, -1)]


@pytest.fixture
def rig(redis_factory: Callable[..., RedisServer], namespace: str) -> Iterator[Rig]:
    queue, rec = redis_factory(), redis_factory()
    rig = Rig(
        url=queue.url,
        namespace=namespace,
        recorder_url=rec.url,
        client=zizq.Client.from_url(queue.url, namespace),
        r=redis.Redis(port=queue.port),
        recorder=redis.Redis(port=rec.port),
        server=queue,
    )
    try:
        yield rig
    finally:
        for proc in rig.procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL ends a stopped process too
            proc.wait(10)
        rig.client.close()
        rig.r.close()
        rig.recorder.close()


def test_kill_9_one_worker_of_four(rig: Rig) -> None:
    """1,200 jobs in flight across four workers (400 running, the rest
    prefetched); one is SIGKILLed. Its jobs, running and prefetched, go back
    to ready within the lease (plus a heartbeat) and the other three complete
    them all."""
    # 100 handlers a worker at most: the recorder's connection pool holds 100.
    procs = [rig.start(*QUEUE, "-c", "100", "--prefetch", "300") for _ in range(4)]
    poll(lambda: len(rig.workers()) == 4, 15, "four workers joined")
    ids = [job.id for job in rig.client.enqueue_many([Work(n=i, sleep=1.0) for i in range(1200)])]

    def loaded() -> bool:
        held = [len(rig.held(w)) for w in rig.workers()]
        return int(rig.r.zcard(rig.key("inflight"))) >= 1000 and max(held) >= 250

    poll(loaded, 10, "~1,000 jobs in flight, many of them on one worker")
    workers = rig.workers()
    victim_id = max(workers, key=lambda w: len(rig.held(w)))
    victim = next(p for p in procs if p.pid == workers[victim_id])
    victim.kill()
    killed_at = time.monotonic()
    assert victim.wait(10) == -signal.SIGKILL
    lost = sorted(rig.held(victim_id))  # frozen now: nobody takes for a dead worker
    assert len(lost) >= 250

    def recovered() -> bool:
        gone = not rig.r.exists(rig.key("worker", victim_id)) and victim_id not in rig.workers()
        return gone and not rig.held_by(victim_id, lost)

    poll(recovered, LEASE + 5, "the killed worker's jobs recovered")
    took = time.monotonic() - killed_at
    assert took < LEASE + 2, f"recovery took {took:.2f}s with a {LEASE}s lease"

    poll(lambda: rig.all_finished(ids), 30, "every job finished")
    out = outcome(rig.client, rig.recorder, ids)
    assert out.missing == []
    assert out.doubles == []
    assert out.statuses == Counter(completed=len(ids))
    jobs = rig.jobs(ids)
    lost_set = set(lost)
    assert {i for i, job in jobs.items() if job.recoveries} == lost_set
    assert all(jobs[i].recoveries == 1 for i in lost)
    for job_id in ids:
        finished = rig.pids("finished", job_id)
        if job_id in lost_set:
            # Run to the end once by a survivor; it may also have finished on
            # the victim before the kill, with its ack unsent.
            assert len([p for p in finished if p != victim.pid]) == 1, (job_id, finished)
            assert len(finished) <= 2, (job_id, finished)
        else:
            assert len(finished) == 1, (job_id, finished)
    for proc in procs:
        if proc is not victim:
            assert stop_worker(proc) == 0


def test_sigstop_past_lease_then_sigcont(rig: Rig, capfd: pytest.CaptureFixture[str]) -> None:
    """A worker frozen past its lease loses its jobs to the others, which
    complete them. Resumed, its handlers run to the end, its acks are refused
    (the jobs stay as the others completed them), and it carries on under a
    new id."""
    procs = [rig.start(*QUEUE, "-c", "50") for _ in range(3)]
    poll(lambda: len(rig.workers()) == 3, 15, "three workers joined")
    ids = [job.id for job in rig.client.enqueue_many([Work(n=i, sleep=1.0) for i in range(300)])]
    chosen: list[str] = []

    def settled() -> bool:
        # A worker with a full load whose handlers have all started: frozen
        # now, they sit in their sleep rather than halfway through opening a
        # connection to the recorder, whose connect timeout would fail them on
        # resume (a failure the worker would report, refused, instead of an ack).
        for worker_id, pid in rig.workers().items():
            held = rig.held(worker_id)
            if len(held) == 50 and all(pid in rig.pids("started", i) for i in held):
                chosen.append(worker_id)
                return True
        return False

    poll(settled, 10, "a worker running 50 jobs")
    victim_id = chosen[0]
    victim = next(p for p in procs if p.pid == pid_of(victim_id))
    others = [p for p in procs if p is not victim]
    victim.send_signal(signal.SIGSTOP)
    lost = sorted(rig.held(victim_id))
    assert len(lost) == 50

    def recovered() -> bool:
        gone = not rig.r.exists(rig.key("worker", victim_id)) and victim_id not in rig.workers()
        return gone and not rig.held_by(victim_id, lost)

    took = poll(recovered, LEASE + 5, "the stopped worker's jobs recovered")
    assert took < LEASE + 2
    poll(lambda: rig.all_finished(lost), 15, "the others completed the stopped worker's jobs")
    before = rig.jobs(lost)
    assert all(job.status == "completed" and job.recoveries == 1 for job in before.values())
    assert all(victim.pid not in rig.pids("finished", i) for i in lost)
    capfd.readouterr()  # only what the workers log from here on

    victim.send_signal(signal.SIGCONT)
    logged = ""
    state: dict[str, object] = {}

    def resumed() -> bool:
        nonlocal logged
        logged += capfd.readouterr().err
        state["new ids"] = [w for w, pid in rig.workers().items() if pid == victim.pid and w != victim_id]
        state["not finished by it"] = [i for i in lost if victim.pid not in rig.pids("finished", i)]
        state["acks refused"] = sum(int(n) for n in re.findall(r"(\d+) acks refused", logged))
        return bool(state["new ids"]) and not state["not finished by it"] and state["acks refused"] == len(lost)

    try:
        poll(resumed, 10, "the resumed worker rejoined, ran its old handlers to the end and had every ack refused")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{state}\nworker logs:\n{logged}") from None
    assert f"worker {victim_id} was declared lost" in logged
    assert "failure not recorded" not in logged
    assert rig.jobs(lost) == before  # the late acks changed nothing
    for job_id in lost:
        finished = rig.pids("finished", job_id)
        assert len(finished) == 2 and finished.count(victim.pid) == 1, (job_id, finished)

    poll(lambda: rig.all_finished(ids), 30, "every job finished")
    for proc in others:
        assert stop_worker(proc) == 0
    # Alone now, the resumed worker must run new jobs under its new id.
    more = [job.id for job in rig.client.enqueue_many([Work(n=1000 + i) for i in range(20)])]
    poll(lambda: rig.all_finished(more), 10, "the resumed worker ran new jobs")
    assert all(rig.pids("finished", i) == [victim.pid] for i in more)
    assert stop_worker(victim) == 0

    out = outcome(rig.client, rig.recorder, ids + more)
    assert out.missing == []
    assert out.doubles == []
    assert out.statuses == Counter(completed=len(ids) + len(more))
    lost_set = set(lost)
    for job_id, runs in out.finished.items():
        assert runs == (2 if job_id in lost_set else 1), job_id


def test_poison_pill_is_failed_after_max_recoveries(rig: Rig) -> None:
    """A job whose handler kills its worker: a supervisor restarts the worker
    each time it dies; after max_recoveries + 1 deaths the job is dead with
    zizq.WorkerLost, and the last worker started lives on."""
    max_recoveries = 2
    rig.client.set_defaults(max_recoveries=max_recoveries)
    job = rig.client.enqueue(Work(n=0, die=True), retry_limit=0)
    deaths = 0
    proc = rig.start("-c", "1")
    deadline = time.monotonic() + 40
    while rig.client.get_job(job.id).status != "dead":
        assert time.monotonic() < deadline, f"the poison pill is not dead after {deaths} worker deaths"
        if proc.poll() is not None:
            assert proc.returncode == -signal.SIGKILL
            deaths += 1
            assert deaths <= max_recoveries + 1, "more workers died than max_recoveries allows"
            proc = rig.start("-c", "1")
        time.sleep(0.01)
    assert deaths == max_recoveries + 1

    dead = rig.client.get_job(job.id)
    assert dead.recoveries == max_recoveries + 1
    errors = rig.client.job_errors(job.id)
    assert [e.error_type for e in errors] == ["zizq.WorkerLost"]
    assert f"lost {max_recoveries + 1} times" in errors[0].message
    assert rig.pids("started", job.id) == []  # it died before recording anything, every time
    assert proc.poll() is None, "the worker that recovered the last death must still be running"
    assert stop_worker(proc) == 0


def test_resumed_worker_starts_none_of_the_jobs_it_lost(rig: Rig, capfd: pytest.CaptureFixture[str]) -> None:
    """A worker frozen past its lease with jobs prefetched: another worker
    runs them. Resumed, it finishes the one handler it was running (its ack
    is refused) but starts none of the prefetched jobs: its own record of
    its lease (the last confirmed heartbeat) says the lease is gone."""
    victim = rig.start(*QUEUE, "-c", "1", "--prefetch", "5")
    poll(lambda: len(rig.workers()) == 1, 15, "the worker joined")
    [victim_id] = rig.workers()
    ids = [job.id for job in rig.client.enqueue_many([Work(n=i, sleep=1.0) for i in range(5)])]
    poll(lambda: len(rig.held(victim_id)) == 5 and rig.pids("started", ids[0]) == [victim.pid], 10, "5 jobs held")
    victim.send_signal(signal.SIGSTOP)
    rescuer = rig.start(*QUEUE, "-c", "5")
    poll(lambda: rig.all_finished(ids), LEASE + 15, "the other worker completed the frozen worker's jobs")
    capfd.readouterr()
    victim.send_signal(signal.SIGCONT)
    logged = ""

    def rejoined() -> bool:
        nonlocal logged
        logged += capfd.readouterr().err
        return any(pid == victim.pid and w != victim_id for w, pid in rig.workers().items())

    poll(rejoined, 10, "the resumed worker joined again under a new id")
    poll(lambda: victim.pid in rig.pids("finished", ids[0]), 5, "its running handler ran to the end")
    time.sleep(3 * HEARTBEAT)
    for job_id in ids[1:]:
        assert rig.pids("started", job_id) == [rescuer.pid], (job_id, logged)
    assert stop_worker(victim) == 0 and stop_worker(rescuer) == 0
    out = outcome(rig.client, rig.recorder, ids)
    assert out.statuses == Counter(completed=5) and out.doubles == []


def test_worker_frozen_between_its_lease_check_and_a_start_does_not_start_the_job(rig: Rig) -> None:
    """A worker frozen after its runner found the lease valid for the next
    job and before that job's handler began (history seed 145: a SIGSTOP 1
    ms after a runner came free) must look at its lease again as the
    handler begins: by then another worker runs the job."""
    victim = rig.start(*QUEUE, "-c", "1", "--prefetch", "2")
    poll(lambda: len(rig.workers()) == 1, 15, "the worker joined")
    first, second = (job.id for job in rig.client.enqueue_many([Work(n=0, sleep=0.2, freeze=True), Work(n=1)]))
    poll(lambda: stopped(victim.pid), 10, "the worker froze as the first job ended")
    rescuer = rig.start(*QUEUE, "-c", "1")
    poll(lambda: rig.all_finished([first, second]), LEASE + 15, "the other worker completed the second job")
    victim.send_signal(signal.SIGCONT)
    poll(lambda: len(rig.workers()) == 2 and victim.pid in rig.workers().values(), 10, "the worker went on")
    time.sleep(3 * HEARTBEAT)
    assert rig.pids("started", second) == [rescuer.pid]
    assert stop_worker(victim) == 0 and stop_worker(rescuer) == 0


@pytest.mark.parametrize("router", ["router", "sync_router"], ids=["async", "handler-threads"])
def test_worker_does_not_start_a_prefetched_job_whose_take_a_failover_lost(rig: Rig, router: str) -> None:
    """A failover to a replica that lacked a take puts the job back in its
    queue while the worker that took it still holds it prefetched (history
    seed 79, a Cluster failover). Its calls failed meanwhile, so before it
    starts the job it asks Redis, and leaves it to the next take. The lost
    take is made here by handing the job back by hand, the failover by
    pointing the worker's proxy at a closed port for a moment. The job must
    run once: a start of the copy held would be a second run."""
    assert rig.server is not None
    proxy = FlakyProxy(rig.server.port)
    try:
        options = (*LEASE_OPTIONS, *QUEUE, "-c", "1", "--prefetch", "2")
        victim = start_worker(proxy.url, rig.namespace, rig.recorder_url, *options, router=router)
        rig.procs.append(victim)
        poll(lambda: len(rig.workers()) == 1, 15, "the worker joined")
        [victim_id] = rig.workers()
        first, second = (job.id for job in rig.client.enqueue_many([Work(n=0, sleep=1.0), Work(n=1)]))
        poll(lambda: rig.held(victim_id) == {first, second} and bool(rig.pids("started", first)), 10, "both jobs taken")
        upstream, proxy.upstream_port = proxy.upstream_port, free_port()  # nothing listens there
        proxy.cut()
        rig.client.run(rig.client.core.release(victim_id, [second]))  # the take the failover lost
        time.sleep(3 * HEARTBEAT)
        proxy.upstream_port = upstream
        poll(lambda: rig.all_finished([first, second]), 15, "both jobs completed")
        time.sleep(3 * HEARTBEAT)
        assert rig.pids("started", second) == [victim.pid]
        assert stop_worker(victim) == 0
    finally:
        proxy.close()


def test_worker_hands_back_a_job_whose_take_reply_was_lost(rig: Rig) -> None:
    """A take that ran in Redis but whose reply never came back (a dropped
    connection) leaves its job in flight for a worker that does not know of
    it, while the worker's lease holds. The worker hands it back at its next
    contact with Redis, and runs it. The lost take is made here by hand,
    while the worker's proxy points at a closed port."""
    assert rig.server is not None
    proxy = FlakyProxy(rig.server.port)
    try:
        victim = start_worker(proxy.url, rig.namespace, rig.recorder_url, *LEASE_OPTIONS, *QUEUE, "-c", "1")
        rig.procs.append(victim)
        poll(lambda: len(rig.workers()) == 1, 15, "the worker joined")
        [victim_id] = rig.workers()
        upstream, proxy.upstream_port = proxy.upstream_port, free_port()  # nothing listens there
        proxy.cut()
        # Redis closes the worker's connections when it reads their end: until
        # then its blocked wait (a BLPOP with a take pipelined behind it) could
        # still take the job.
        poll(lambda: rig.client.redis.info("clients")["blocked_clients"] == 0, 5, "the worker's wait closed")
        job = rig.client.enqueue(Work(n=0))
        [taken] = rig.client.run(rig.client.core.take(victim_id, 1, ["default"])).jobs  # its reply lost
        assert taken.id == job.id
        time.sleep(3 * HEARTBEAT)
        proxy.upstream_port = upstream
        poll(lambda: rig.all_finished([job.id]), 15, "the job completed")
        assert rig.pids("started", job.id) == [victim.pid]
        assert stop_worker(victim) == 0
    finally:
        proxy.close()


def test_worker_hands_back_a_lost_take_of_a_job_it_holds_an_older_attempt_of(rig: Rig) -> None:
    """A failover lost the take of a prefetched job (it went back to its
    queue), then a take of the same job by the same worker lost its reply.
    The worker still held the first attempt when it reconciled, so it kept
    the job; it drops that attempt before it starts (Redis has another one
    in flight), and must then hand back the attempt it never received,
    rather than leave it in flight for as long as the worker lives."""
    assert rig.server is not None
    proxy = FlakyProxy(rig.server.port)
    try:
        # Room for a third job: the worker reconciles at once, while it holds both.
        options = (*LEASE_OPTIONS, *QUEUE, "-c", "1", "--prefetch", "3")
        victim = start_worker(proxy.url, rig.namespace, rig.recorder_url, *options)
        rig.procs.append(victim)
        poll(lambda: len(rig.workers()) == 1, 15, "the worker joined")
        [victim_id] = rig.workers()
        first, second = (job.id for job in rig.client.enqueue_many([Work(n=0, sleep=2.0), Work(n=1)]))
        poll(lambda: rig.held(victim_id) == {first, second} and bool(rig.pids("started", first)), 10, "both jobs taken")
        upstream, proxy.upstream_port = proxy.upstream_port, free_port()  # nothing listens there
        proxy.cut()
        rig.client.run(rig.client.core.release(victim_id, [second]))  # the take the failover lost
        time.sleep(0.01)  # a later attempt: dequeued_at is in ms
        [taken] = rig.client.run(rig.client.core.take(victim_id, 1, ["default"])).jobs  # its reply lost
        assert taken.id == second
        time.sleep(3 * HEARTBEAT)
        proxy.upstream_port = upstream
        poll(lambda: rig.all_finished([first, second]), 15, "both jobs completed")
        assert rig.pids("started", second) == [victim.pid]
        assert stop_worker(victim) == 0
    finally:
        proxy.close()


def test_worker_hands_back_a_job_in_flight_for_it_that_no_failed_call_told_of(rig: Rig) -> None:
    """A failover that demotes a master with idle connections loses the
    writes sent to it since the promotion (an ack, say) with no call
    failing: the worker's connections are opened again without an error,
    and the job is in flight for it again on the new master while it knows
    nothing of it. Its heartbeat notices and the worker hands the job back.
    Made here by taking a job for the worker by hand, from a queue it does
    not serve (so it does not take the job again)."""
    victim = rig.start(*QUEUE, "-c", "1")
    poll(lambda: len(rig.workers()) == 1, 15, "the worker joined")
    [victim_id] = rig.workers()
    job = rig.client.enqueue(Work(n=0), queue="elsewhere")
    [taken] = rig.client.run(rig.client.core.take(victim_id, 1, ["elsewhere"])).jobs
    assert taken.id == job.id and rig.held(victim_id) == {job.id}
    poll(lambda: rig.held(victim_id) == set(), 10 * HEARTBEAT + 5.0, "the worker handed the job back")
    back = rig.client.get_job(job.id)
    assert back.status == "ready" and back.attempts == 0
    assert stop_worker(victim) == 0


def stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (by a signal)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("concurrency", ["1", "4"], ids=["prefetched-behind-it", "started-with-it"])
def test_poison_pill_does_not_take_its_neighbours_down(rig: Rig, concurrency: str) -> None:
    """A pill that kills its worker is taken with three other jobs by a
    worker restarted each time it dies. With one runner the three wait
    behind it (prefetched) and their losses do not count. With a runner
    each they are marked started with it and its first death counts
    against them too; handed back, each is then taken alone (the worker
    lets it start before it takes the next), so the pill's second death
    counts against it only. Either way the pill fails as zizq.WorkerLost
    after max_recoveries + 1 losses and the others complete."""
    rig.client.set_defaults(max_recoveries=1)
    items = [zizq.Enqueue(Work(n=0, die=True), retry_limit=0)]
    items += [zizq.Enqueue(Work(n=i), retry_limit=0) for i in range(1, 4)]
    pill, *others = [job.id for job in rig.client.enqueue_many(items)]
    proc = rig.start(*QUEUE, "-c", concurrency, "--prefetch", "4")
    deaths = 0
    deadline = time.monotonic() + 40
    while not rig.all_finished([pill, *others]):
        assert time.monotonic() < deadline, f"not all finished after {deaths} worker deaths"
        if proc.poll() is not None:
            assert proc.returncode == -signal.SIGKILL
            deaths += 1
            assert deaths <= 2, "more workers died than max_recoveries allows"
            proc = rig.start(*QUEUE, "-c", concurrency, "--prefetch", "4")
        time.sleep(0.01)
    assert deaths == 2
    assert [e.error_type for e in rig.client.job_errors(pill)] == ["zizq.WorkerLost"]
    jobs = rig.jobs(others)
    assert {i: j.status for i, j in jobs.items()} == dict.fromkeys(others, "completed")
    assert all(rig.client.job_errors(i) == [] for i in others)
    assert stop_worker(proc) == 0


def test_redis_stalled_past_the_lease_recovers_nobody(rig: Rig) -> None:
    """Redis frozen (SIGSTOP) for three leases while two workers run long
    handlers: when it comes back, the first heartbeat does not declare the
    other worker lost, and no job runs twice."""
    procs = [rig.start(*QUEUE, "-c", "5") for _ in range(2)]
    poll(lambda: len(rig.workers()) == 2, 15, "two workers joined")
    ids = [job.id for job in rig.client.enqueue_many([Work(n=i, sleep=4 * LEASE) for i in range(10)])]
    poll(lambda: all(rig.pids("started", i) for i in ids), 10, "every job started")
    assert rig.server is not None and rig.server.proc is not None
    server = rig.server.proc
    server.send_signal(signal.SIGSTOP)
    try:
        time.sleep(3 * LEASE)
    finally:
        server.send_signal(signal.SIGCONT)
    poll(lambda: rig.all_finished(ids), 30, "every job finished")
    out = outcome(rig.client, rig.recorder, ids)
    assert out.statuses == Counter(completed=10)
    assert all(len(rig.pids("started", i)) == 1 for i in ids), {i: rig.pids("started", i) for i in ids}
    assert all(job.recoveries == 0 for job in rig.jobs(ids).values())
    for proc in procs:
        assert stop_worker(proc) == 0


def blocked_clients(r: redis.Redis) -> int:
    return sum(1 for c in r.client_list() if "b" in str(c.get("flags", "")))


def test_idle_workers_serving_every_queue_all_wake_for_a_new_queue(rig: Rig) -> None:
    """Three idle workers, then 30 jobs in a queue none of them has seen:
    each takes its share at once, not after its blocking wait times out."""
    for _ in range(3):
        rig.start("-c", "10", "--prefetch", "10")
    poll(lambda: len(rig.workers()) == 3 and blocked_clients(rig.r) == 3, 15, "three workers blocked waiting for work")
    rig.client.enqueue_many([Work(n=i, sleep=2.0) for i in range(30)])
    poll(lambda: sorted(len(rig.held(w)) for w in rig.workers()) == [10, 10, 10], 2, "every worker took 10 jobs")

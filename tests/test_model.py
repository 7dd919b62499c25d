"""A model-based test: random sequences of operations against a real Redis,
compared after every step with a small pure-Python model of the rules.

The model follows the contracts in the headers of lua/*.lua (and
zizq-behaviour.md sections 1.2, 3.1, 4.2 and 5): statuses and transitions,
attempts, the retry limit and the backoff delay, kill, retry_at/retry_in,
retention 0 (deleted at once), kept, or short enough to run out (per job, or
the namespace's), expiry and the workers' purge, the unique index lifecycle,
dispatch order (priority, id) over the open queues asked for, pause/resume,
patch, delete, retry of dead jobs, and a worker leaving (its jobs handed back)
and joining again.

Redis's clock cannot be faked, so time is real: a job may be due 100 ms after
it was written. The model keeps, for every scheduled job, the window of
monotonic time in which Redis makes it due, and before a take it sleeps past
any window that the take could fall into, so whether a take promotes a job is
never a guess. A short delay is shorter than that look-ahead, so a short-delay
job is always due by the next take (after a sleep if need be) and the other
delays are far beyond an example: what a take returns never depends on
timing, which Hypothesis needs in order to replay and shrink a sequence.

Retention works the same way. A job finished with a short retention is
expired for the model at once; its window of monotonic time in which Redis
passes its purge_at is kept, and before any call whose outcome depends on it
(a read or change of that job, a unique check it may hold the key for, a
purge) the model sleeps past that window. Checks that depend on
nothing else (the invariants' reads) skip a job whose window they overlap.
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

import zizq
from zizq import Backoff, Enqueue, Job, JobNotFound, Retention, UniqueKey, UniqueKeyHeld
from zizq.errors import JobStateError, LeaseLost
from zizq.worker.worker import PURGE_BATCH

from .conftest import RedisServer

QUEUES = ("a", "b", "c")
PRIORITIES = (0, 7, 32768)
UNIQUE_KEYS = ("k1", "k2")
SCOPES: tuple[str | None, ...] = (None, "queued", "active", "exists")
WORKERS = ("w1", "w2")
RETRY_LIMITS: tuple[int | None, ...] = (None, 0, 1, 2)
# Failure reports: "plain" uses the default backoff (a retry ~16 s on, or dead
# past the retry limit); the retry_* ones give their own time, which bypasses
# the limit; retry_in_0 is due at once but still scheduled.
FAILURES = ("plain", "kill", "retry_in_0", "retry_in_short", "retry_at_far")
OUTCOMES = ("ack", *FAILURES, "release", "keep")  # how a worker round settles a job

SHORT_S = 0.1  # a short delay: due while the example still runs
FAR_S = 3600.0  # a long one: never due within an example
MARGIN_S = 0.05  # slack between the model's clock and Redis's
CALL_S = 0.1  # look-ahead before a take: a job due this soon is waited for
ADVANCE_S = 0.25
KEEP_MS = 3_600_000  # a retention long enough to outlive the example
RETAIN_MS = 150  # a short one: runs out while the example still runs
LEASE_MS = 3_600_000  # a worker lease likewise

DEFAULT_RETRY_LIMIT = 25
DEFAULT_DEAD_MS = 604_800_000
DEFAULT_COMPLETED_MS = 0
DEFAULT_BACKOFF = Backoff(15_000, 4.0, 30_000)
# Backoffs a patch sets: every delay far beyond an example (a^E * 1000 + B
# ms is at least 1 s however small B is, too long to be short and too short
# to be far).
BACKOFFS = (Backoff(3_600_000, 1.0, 0), Backoff(7_200_000, 2.5, 30_000))
RETENTIONS = (
    Retention(completed_ms=RETAIN_MS),
    Retention(dead_ms=RETAIN_MS),
    Retention(completed_ms=KEEP_MS, dead_ms=0),
    Retention(completed_ms=0),
)

CONFLICT: dict[str, frozenset[str]] = {
    "queued": frozenset({"scheduled", "ready"}),
    "active": frozenset({"scheduled", "ready", "in_flight"}),
    "exists": frozenset({"scheduled", "ready", "in_flight", "completed", "dead"}),
}

NEVER = (math.inf, math.inf)  # not scheduled, or never due in this example
AT_ONCE = (-math.inf, -math.inf)  # due at the next take, whenever it comes


@dataclass
class ModelJob:
    """What the model knows of one live job (its hash exists in Redis)."""

    id: str
    queue: str
    priority: int
    status: str
    retry_limit: int | None
    completed_ms: int | None
    dead_ms: int | None
    unique_key: str | None
    unique_while: str | None
    backoff: Backoff | None = None
    attempts: int = 0
    errors: int = 0  # error records: one per failure; retry_job resets attempts, not these
    worker: str | None = None
    # Monotonic window in which Redis makes a scheduled job due: before lo it
    # is certainly not due, after hi certainly due.
    due: tuple[float, float] = NEVER
    # Scheduled with a short delay and no advance since: what enables the
    # advance rule. A model-only flag, so that rule choice never depends on
    # the clock (Hypothesis must replay the same choices).
    short: bool = False
    # Finished with a short retention: expired for the model from then on,
    # and in Redis within this monotonic window.
    expiring: bool = False
    expires: tuple[float, float] = NEVER
    fresh: bool = False  # expiring, and no advance since (as short)

    @property
    def scope(self) -> str | None:
        """The scope the job's unique key holds in (queued when not given)."""
        if self.unique_key is None:
            return None
        return self.unique_while or "queued"

    @property
    def hold(self) -> int | None:
        """How the job holds its unique key (its rank in unique:<key>): 0
        waiting, 1 in flight (active, exists), 2 finished (exists); None
        when its hold has ended or it has no key."""
        if self.scope is None:
            return None
        if self.status in ("ready", "scheduled"):
            return 0
        if self.status == "in_flight":
            return 1 if self.scope != "queued" else None
        return 2 if self.scope == "exists" else None

    @property
    def retention(self) -> Retention | None:
        if self.completed_ms is None and self.dead_ms is None:
            return None
        return Retention(self.completed_ms, self.dead_ms)

    def seen(self, t0: float, t1: float) -> str:
        """What a read made between t0 and t1 finds: "visible", "expired",
        or "unsure" (it overlaps the expiry window)."""
        if not self.expiring or t1 < self.expires[0] - MARGIN_S:
            return "visible"
        if t0 > self.expires[1] + MARGIN_S:
            return "expired"
        return "unsure"


@dataclass(frozen=True)
class EnqueueSpec:
    """One job to enqueue, as the rules draw it."""

    queue: str
    priority: int
    delay: str  # "now", "short" or "far"
    unique_key: str | None
    unique_while: str | None
    retry_limit: int | None
    completed_ms: int | None
    dead_ms: int | None

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"queue": self.queue, "priority": self.priority}
        if self.delay == "short":
            opts["delay"] = SHORT_S
        elif self.delay == "far":
            opts["delay"] = FAR_S
        if self.retry_limit is not None:
            opts["retry_limit"] = self.retry_limit
        if self.completed_ms is not None or self.dead_ms is not None:
            opts["retention"] = Retention(completed_ms=self.completed_ms, dead_ms=self.dead_ms)
        if self.unique_key is not None:
            opts["unique_key"] = UniqueKey(self.unique_key, self.unique_while)  # type: ignore[arg-type]
        return opts


enqueue_specs = st.builds(
    EnqueueSpec,
    queue=st.sampled_from(QUEUES),
    priority=st.sampled_from(PRIORITIES),
    delay=st.integers(0, 9).map(lambda i: "now" if i < 8 else "far" if i < 9 else "short"),
    unique_key=st.one_of(st.none(), st.sampled_from(UNIQUE_KEYS)),
    unique_while=st.sampled_from(SCOPES),
    retry_limit=st.sampled_from(RETRY_LIMITS),
    completed_ms=st.sampled_from((None, KEEP_MS, 0, RETAIN_MS)),
    dead_ms=st.sampled_from((None, 0, RETAIN_MS)),
).map(lambda s: s if s.unique_key is not None else dataclasses.replace(s, unique_while=None))

# Batches whose keyed items all share one key, for duplicates inside a batch.
batches = st.sampled_from(UNIQUE_KEYS).flatmap(
    lambda key: st.lists(
        enqueue_specs.map(lambda s: dataclasses.replace(s, unique_key=key) if s.unique_key is not None else s),
        min_size=2,
        max_size=4,
    )
)


def window(t0: float, t1: float, delay_s: float) -> tuple[float, float]:
    """The due window of a job written by a call made between t0 and t1."""
    if delay_s <= 0:
        return AT_ONCE
    return (t0 + delay_s, t1 + delay_s)


def backoff_ms(attempts: int, backoff: Backoff | None) -> int:
    """The backoff delay with jitter 0, in ms (fail.lua)."""
    b = backoff or DEFAULT_BACKOFF
    return math.floor(math.pow(attempts, b.exponent) * 1000 + b.base_ms)


class ZizqModel(RuleBasedStateMachine):
    def __init__(self, server: RedisServer) -> None:
        super().__init__()
        self.namespace = f"model-{uuid.uuid4().hex[:12]}"
        self.client = zizq.Client.from_url(server.url, self.namespace)
        self.r = redis.Redis(port=server.port)
        self.prefix = self.client.core.prefix
        self.jobs: dict[str, ModelJob] = {}
        self.ids: list[str] = []  # every id ever created, oldest first
        self.gone: set[str] = set()
        self.seen_gone: set[str] = set()  # gone ids already checked through get_job
        self.paused: set[str] = set()
        self.taken: dict[str, list[str]] = {w: [] for w in WORKERS}  # ids each worker ever took
        self.payloads = 0
        # The namespace's retention defaults (set_defaults).
        self.completed_ms = DEFAULT_COMPLETED_MS
        self.dead_ms = DEFAULT_DEAD_MS
        for worker in WORKERS:
            self._join(worker)

    def _join(self, worker: str) -> None:
        """Give a worker a lease that outlives the example: take refuses a
        worker without one."""
        assert not self.client.run(self.client.core.heartbeat(worker, "join", LEASE_MS)).lost

    def teardown(self) -> None:
        keys = list(self.r.scan_iter(match=self.prefix + "*"))
        if keys:
            self.r.delete(*keys)
        self.client.close()
        self.r.close()

    # ---- model helpers -------------------------------------------------

    def _holding(self, key: str | None) -> list[ModelJob]:
        """The jobs holding a unique key (the model of "unique:<key>"),
        expiring ones included, by rank then id."""
        held = [j for j in self.jobs.values() if key is not None and j.unique_key == key and j.hold is not None]
        return sorted(held, key=lambda j: (j.hold or 0, j.id))

    def _held_keys(self) -> list[str]:
        return sorted({j.unique_key for j in self.jobs.values() if j.unique_key is not None and j.hold is not None})

    def _conflicting(self, key: str | None, scope: str, other_than: str | None = None) -> ModelJob | None:
        """The holder an enqueue with this key and scope is a duplicate of
        (and that refuses a retry): the first, by rank then id, that is
        visible and whose status the scope conflicts with."""
        for held in self._holding(key):
            if held.id != other_than and not held.expiring and held.status in CONFLICT[scope]:
                return held
        return None

    def _visible(self, job_id: str | None) -> ModelJob | None:
        """The job, unless it is gone or expired."""
        job = self.jobs.get(job_id) if job_id is not None else None
        return None if job is None or job.expiring else job

    def _expire(self, ids: list[str | None]) -> None:
        """Before a call whose outcome depends on these jobs: sleep until
        Redis has certainly passed the purge_at of the expiring ones."""
        ends = [j.expires[1] for i in ids if i is not None and (j := self.jobs.get(i)) is not None and j.expiring]
        if ends:
            time.sleep(max(0.0, max(ends) + MARGIN_S - time.monotonic() + 0.001))

    def _blocker(self, job: ModelJob) -> ModelJob | None:
        """The other job holding this job's unique key in a status this job's
        scope conflicts with: what refuses its retry, as it would its enqueue."""
        if job.scope is None:
            return None
        return self._conflicting(job.unique_key, job.scope, other_than=job.id)

    def _holders(self, *keys: str | None) -> list[str | None]:
        return [j.id for k in keys for j in self._holding(k)]

    def _delete(self, job: ModelJob) -> None:
        del self.jobs[job.id]
        self.gone.add(job.id)

    def _finish(self, job: ModelJob, status: str, t0: float, t1: float) -> None:
        """The job completed or went dead, in a call made between t0 and t1."""
        job.worker = None
        job.due, job.short = NEVER, False
        if status == "completed":
            retention_ms = self.completed_ms if job.completed_ms is None else job.completed_ms
        else:
            retention_ms = self.dead_ms if job.dead_ms is None else job.dead_ms
        if retention_ms <= 0:
            self._delete(job)
            return
        job.status = status
        if retention_ms == RETAIN_MS:
            job.expiring, job.expires, job.fresh = True, window(t0, t1, RETAIN_MS / 1000), True

    def _holds(self, job_id: str, worker: str) -> bool:
        job = self.jobs.get(job_id)
        return job is not None and job.status == "in_flight" and job.worker == worker

    def _apply_enqueue(self, spec: EnqueueSpec, got: Job, t0: float, t1: float) -> None:
        if spec.unique_key is not None:
            held = self._conflicting(spec.unique_key, spec.unique_while or "queued")
            if held is not None:
                assert got.duplicate, f"expected a duplicate of {held.id}, got a new job {got.id}"
                assert got.id == held.id
                assert got.status == held.status
                return
        assert not got.duplicate, f"unexpected duplicate of {got.id} ({self.jobs.get(got.id)})"
        assert got.id not in self.jobs and got.id not in self.gone
        status = "ready" if spec.delay == "now" else "scheduled"
        assert got.status == status
        job = ModelJob(
            id=got.id,
            queue=spec.queue,
            priority=spec.priority,
            status=status,
            retry_limit=spec.retry_limit,
            completed_ms=spec.completed_ms,
            dead_ms=spec.dead_ms,
            unique_key=spec.unique_key,
            unique_while=spec.unique_while if spec.unique_key is not None else None,
        )
        if spec.delay == "short":
            job.due, job.short = window(t0, t1, SHORT_S), True
        elif spec.delay == "far":
            job.due = window(t0, t1, FAR_S)
        self.jobs[job.id] = job
        self.ids.append(job.id)

    def _pick(self, data: st.DataObject, pools: list[list[str]]) -> str:
        """An id from one of the non-empty pools (drawn, so it shrinks and
        replays); a pool listed twice is drawn twice as often."""
        pool = data.draw(st.sampled_from([p for p in pools if p]))
        return data.draw(st.sampled_from(pool))

    def _live(self, *statuses: str) -> list[str]:
        """Ids of jobs neither gone nor expired, in these statuses (any if none given)."""
        return [i for i in self.ids if (j := self._visible(i)) is not None and (not statuses or j.status in statuses)]

    def _uncertain(self, now: float) -> list[ModelJob]:
        """Scheduled jobs a take starting now might or might not promote."""
        return [
            j
            for j in self.jobs.values()
            if j.status == "scheduled" and j.due[0] - MARGIN_S <= now + CALL_S and now <= j.due[1] + MARGIN_S
        ]

    # ---- rules: producers ----------------------------------------------

    def _payload(self) -> dict[str, int]:
        self.payloads += 1
        return {"n": self.payloads}

    @rule(spec=enqueue_specs)
    def enqueue(self, spec: EnqueueSpec) -> None:
        self._expire(self._holders(spec.unique_key))
        t0 = time.monotonic()
        got = self.client.enqueue_raw("model", self._payload(), **spec.options())
        t1 = time.monotonic()
        self._apply_enqueue(spec, got, t0, t1)

    @rule(specs=batches)
    def enqueue_many(self, specs: list[EnqueueSpec]) -> None:
        items = [Enqueue.raw("model", self._payload(), **s.options()) for s in specs]
        self._expire(self._holders(*(s.unique_key for s in specs)))
        t0 = time.monotonic()
        got = self.client.enqueue_many(items)
        t1 = time.monotonic()
        assert len(got) == len(specs)
        # The script judges each item against the index as the batch left it
        # so far, which is what applying them in order does.
        for spec, job in zip(specs, got, strict=True):
            self._apply_enqueue(spec, job, t0, t1)

    @precondition(lambda self: bool(self._held_keys()))
    @rule(spec=enqueue_specs, data=st.data())
    def enqueue_again(self, spec: EnqueueSpec, data: st.DataObject) -> None:
        """Enqueue with a key that is held, by a job in flight or finished
        when there is one: the conflict rule (the new request's scope against
        the holder's status) where plain enqueues seldom reach it, since most
        holders are waiting in line."""

        def held_by(*statuses: str) -> list[str]:
            return [k for k in self._held_keys() if any(j.status in statuses for j in self._holding(k))]

        key = self._pick(data, [held_by("in_flight"), held_by("completed", "dead"), self._held_keys()])
        self.enqueue(dataclasses.replace(spec, unique_key=key))

    # ---- rules: the worker's calls --------------------------------------

    @rule(
        worker=st.sampled_from(WORKERS),
        n=st.integers(1, 8),
        queues=st.lists(st.sampled_from(QUEUES), min_size=1, max_size=3, unique=True),
    )
    def take(self, worker: str, n: int, queues: list[str]) -> None:
        """Take from the queues named; the jobs stay in flight."""
        self._take(worker, n, queues)

    @rule(
        worker=st.sampled_from(WORKERS),
        n=st.integers(1, 8),
        outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=8, max_size=8),
    )
    def work(self, worker: str, n: int, outcomes: list[str]) -> None:
        """A worker's round: take from every queue, then settle each job taken
        as drawn (outcome i for the i-th job; "keep" leaves it in flight)."""
        for job_id, outcome in zip(self._take(worker, n, None), outcomes, strict=False):
            if outcome == "ack":
                self._ack(worker, [job_id])
            elif outcome == "release":
                self._release(worker, [job_id])
            elif outcome != "keep":
                self._fail(worker, job_id, outcome)

    def _take(self, worker: str, n: int, queues: list[str] | None) -> list[str]:
        # Never take while a short delay might be just running out.
        while True:
            now = time.monotonic()
            uncertain = self._uncertain(now)
            if not uncertain:
                break
            time.sleep(max(j.due[1] for j in uncertain) + MARGIN_S - now + 0.001)
        now = time.monotonic()
        for j in self.jobs.values():
            if j.status == "scheduled" and j.due[1] + MARGIN_S < now:
                j.status = "ready"
                j.due, j.short = NEVER, False
        asked = set(QUEUES if queues is None else queues)
        open_queues = asked - self.paused
        ready = sorted(
            (j for j in self.jobs.values() if j.status == "ready" and j.queue in open_queues),
            key=lambda j: (j.priority, j.id),
        )
        expected = [j.id for j in ready[:n]]

        got = self.client.run(self.client.core.take(worker, n, queues or []))

        assert [j.id for j in got.jobs] == expected
        assert got.more == (len(ready) > n)
        for taken in got.jobs:
            job = self.jobs[taken.id]
            assert taken.status == "in_flight"
            assert taken.attempts == job.attempts
            assert taken.queue == job.queue and taken.priority == job.priority
            job.status = "in_flight"
            job.worker = worker
            if taken.id not in self.taken[worker]:
                self.taken[worker].append(taken.id)
        return expected

    def _any_in_flight(self) -> bool:
        return any(j.status == "in_flight" for j in self.jobs.values())

    def _candidates(self, worker: str) -> list[str]:
        """Ids for a worker's call: mostly the jobs it holds, else another
        worker's, or ones it held once (since finished, failed, released or
        deleted); repeated entries weigh the draw."""
        own = [i for i in self.taken[worker] if self._holds(i, worker)]
        others = [i for w in WORKERS if w != worker for i in self.taken[w] if self._holds(i, w)]
        gone_by = [i for i in self.taken[worker] if not self._holds(i, worker)]
        return own * 4 + others * 2 + gone_by

    def _draw_ids(self, data: st.DataObject) -> tuple[str, list[str]]:
        """Any worker, and a few ids for it to ack or release."""
        worker = data.draw(st.sampled_from(WORKERS), label="worker")
        ids = data.draw(st.lists(st.sampled_from(self._candidates(worker)), min_size=1, max_size=3), label="ids")
        return worker, ids

    @precondition(_any_in_flight)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        self._ack(*self._draw_ids(data))

    def _ack(self, worker: str, ids: list[str]) -> None:
        acked: list[str] = []  # an id given twice is acked once, then missed
        expected_missed: list[str] = []
        for job_id in ids:
            (acked if self._holds(job_id, worker) and job_id not in acked else expected_missed).append(job_id)
        t0 = time.monotonic()
        missed = self.client.run(self.client.core.ack(worker, ids))
        t1 = time.monotonic()
        assert missed == expected_missed
        for job_id in acked:
            self._finish(self.jobs[job_id], "completed", t0, t1)

    @precondition(_any_in_flight)
    @rule(worker=st.sampled_from(WORKERS), mode=st.sampled_from(FAILURES), data=st.data())
    def fail(self, worker: str, mode: str, data: st.DataObject) -> None:
        """One failure report (of a job the worker may not hold: then the
        report must change nothing)."""
        self._fail(worker, data.draw(st.sampled_from(self._candidates(worker)), label="job"), mode)

    def _fail(self, worker: str, job_id: str, mode: str) -> None:
        kwargs: dict[str, Any] = {"message": f"boom {mode}", "kill": mode == "kill", "jitter": 0.0}
        if mode == "retry_in_0":
            kwargs["retry_in_ms"] = 0
        elif mode == "retry_in_short":
            kwargs["retry_in_ms"] = round(SHORT_S * 1000)
        elif mode == "retry_at_far":
            kwargs["retry_at_ms"] = math.floor((time.time() + FAR_S) * 1000)
        t0 = time.monotonic()
        got = self.client.run(self.client.core.fail(worker, job_id, **kwargs))
        t1 = time.monotonic()
        if not self._holds(job_id, worker):
            assert got is None
            return
        assert got is not None
        job = self.jobs[job_id]
        job.attempts += 1
        job.errors += 1
        job.worker = None
        limit = DEFAULT_RETRY_LIMIT if job.retry_limit is None else job.retry_limit
        if mode == "kill" or (mode == "plain" and job.attempts > limit):
            self._finish(job, "dead", t0, t1)
            assert got.status == "dead"
        else:
            job.status = "scheduled"
            delay_ms = backoff_ms(job.attempts, job.backoff)
            if mode == "plain":
                assert got.ready_at - (got.failed_at or 0) == delay_ms
            job.due = {
                "plain": window(t0, t1, delay_ms / 1000),
                "retry_in_0": AT_ONCE,
                "retry_in_short": window(t0, t1, SHORT_S),
                "retry_at_far": window(t0, t1, FAR_S),
            }[mode]
            job.short = mode == "retry_in_short"
            assert got.status == "scheduled"
        assert got.attempts == job.attempts

    @precondition(_any_in_flight)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        self._release(*self._draw_ids(data))

    def _release(self, worker: str, ids: list[str]) -> None:
        released = 0
        for job_id in ids:
            if self._holds(job_id, worker):
                self._requeue(self.jobs[job_id])
                released += 1
        assert self.client.run(self.client.core.release(worker, ids)) == released

    def _requeue(self, job: ModelJob) -> None:
        job.status = "ready"
        job.worker = None

    @precondition(_any_in_flight)
    @rule(worker=st.sampled_from(WORKERS))
    def leave_and_rejoin(self, worker: str) -> None:
        """A stopping worker leaves (its jobs go back untouched, as released)
        and cannot take until it joins again."""
        held = [i for i in self.taken[worker] if self._holds(i, worker)]
        for job_id in held:
            self._requeue(self.jobs[job_id])
        beat = self.client.run(self.client.core.heartbeat(worker, "leave", LEASE_MS))
        assert (beat.lost, beat.recovered, beat.failed) == (False, 0, 0)
        with pytest.raises(LeaseLost):
            self.client.run(self.client.core.take(worker, 1, []))
        self._join(worker)

    # ---- rules: management -----------------------------------------------

    @precondition(lambda self: bool(self.ids))
    @rule(
        data=st.data(),
        priority=st.one_of(st.none(), st.sampled_from(PRIORITIES)),
        queue=st.one_of(st.none(), st.sampled_from(QUEUES)),
        ready_at=st.sampled_from(("unset", "none", "far", "past")),
        retry_limit=st.sampled_from(("unset", *RETRY_LIMITS)),
        backoff=st.sampled_from(("unset", None, *BACKOFFS)),
        retention=st.sampled_from(("unset", None, *RETENTIONS)),
    )
    def patch(
        self,
        data: st.DataObject,
        priority: int | None,
        queue: str | None,
        ready_at: str,
        retry_limit: str | int | None,
        backoff: str | Backoff | None,
        retention: str | Retention | None,
    ) -> None:
        job_id = self._pick(data, [self._live("ready", "scheduled", "in_flight"), self.ids])
        changes: dict[str, Any] = {}
        if priority is not None:
            changes["priority"] = priority
        if queue is not None:
            changes["queue"] = queue
        if ready_at == "none":
            changes["ready_at"] = None
        elif ready_at == "far":
            changes["ready_at"] = datetime.now(UTC) + timedelta(seconds=FAR_S)
        elif ready_at == "past":
            changes["ready_at"] = datetime.now(UTC) - timedelta(seconds=FAR_S)
        for name, value in (("retry_limit", retry_limit), ("backoff", backoff), ("retention", retention)):
            if value != "unset":
                changes[name] = value
        self._expire([job_id])
        job = self._visible(job_id)
        if job is None:
            with pytest.raises(JobNotFound):
                self.client.patch_job(job_id, **changes)
            return
        if job.status in ("completed", "dead"):
            with pytest.raises(JobStateError):
                self.client.patch_job(job_id, **changes)
            return
        got = self.client.patch_job(job_id, **changes)
        if priority is not None:
            job.priority = priority
        if queue is not None:
            job.queue = queue
        if ready_at in ("none", "past") and job.status == "scheduled":
            job.status = "ready"
            job.due, job.short = NEVER, False
        elif ready_at == "far" and job.status in ("ready", "scheduled"):
            job.status = "scheduled"
            job.due, job.short = (time.monotonic() + FAR_S - 1, time.monotonic() + FAR_S + 1), False
        if retry_limit != "unset":
            job.retry_limit = retry_limit  # type: ignore[assignment]
        if backoff != "unset":
            job.backoff = backoff  # type: ignore[assignment]
        if retention is None:  # clears both; a Retention sets the sub-fields it has
            job.completed_ms = job.dead_ms = None
        elif isinstance(retention, Retention):
            job.completed_ms = job.completed_ms if retention.completed_ms is None else retention.completed_ms
            job.dead_ms = job.dead_ms if retention.dead_ms is None else retention.dead_ms
        assert (got.status, got.queue, got.priority, got.retry_limit, got.backoff, got.retention) == (
            job.status,
            job.queue,
            job.priority,
            job.retry_limit,
            job.backoff,
            job.retention,
        )

    @precondition(lambda self: bool(self.ids))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        job_id = self._pick(data, [self._live(), self.ids])
        self._expire([job_id])
        job = self.jobs.get(job_id)
        if job is None or job.expiring:
            # Not found; an expired job's record goes all the same.
            with pytest.raises(JobNotFound):
                self.client.delete_job(job_id)
            if job is not None:
                self._delete(job)
            return
        self.client.delete_job(job_id)
        self._delete(job)
        with pytest.raises(JobNotFound):
            self.client.get_job(job_id)

    @precondition(lambda self: any(j.status == "dead" for j in self.jobs.values()))
    @rule(data=st.data())
    def retry_job(self, data: st.DataObject) -> None:
        dead = self._live("dead")
        blocked = [i for i in dead if self._blocker(self.jobs[i]) is not None]
        job_id = self._pick(data, [blocked, dead, dead, self.ids])
        job = self.jobs.get(job_id)
        self._expire([job_id, *self._holders(job.unique_key if job is not None else None)])
        job = self._visible(job_id)
        if job is None:
            with pytest.raises(JobNotFound):
                self.client.retry_job(job_id)
            return
        if job.status != "dead":
            with pytest.raises(JobStateError):
                self.client.retry_job(job_id)
            return
        blocker = self._blocker(job)
        if blocker is not None:
            with pytest.raises(UniqueKeyHeld, match=f"held by job {blocker.id} "):
                self.client.retry_job(job_id)
            return
        got = self.client.retry_job(job_id)
        job.status = "ready"
        job.attempts = 0
        assert got.status == "ready" and got.attempts == 0 and got.purge_at is None

    @rule(
        clear=st.booleans(),
        completed_ms=st.sampled_from((None, 0, KEEP_MS, RETAIN_MS)),
        dead_ms=st.sampled_from((None, 0, KEEP_MS, RETAIN_MS)),
    )
    def set_retention_defaults(self, clear: bool, completed_ms: int | None, dead_ms: int | None) -> None:
        """The namespace's retention, for jobs without their own: None
        restores the built-in ones; a Retention sets the sub-fields it has."""
        if clear:
            settings = self.client.set_defaults(retention=None)
            self.completed_ms, self.dead_ms = DEFAULT_COMPLETED_MS, DEFAULT_DEAD_MS
        else:
            settings = self.client.set_defaults(retention=Retention(completed_ms, dead_ms))
            self.completed_ms = self.completed_ms if completed_ms is None else completed_ms
            self.dead_ms = self.dead_ms if dead_ms is None else dead_ms
        assert (settings["completed_ms"], settings["dead_ms"]) == (self.completed_ms, self.dead_ms)

    @precondition(lambda self: any(j.expiring for j in self.jobs.values()))
    @rule()
    def purge(self) -> None:
        """The workers' purge: once every expiring job has expired in Redis,
        one call deletes them all (fewer than a batch), and nothing else
        (a job kept longer, or not finished, stays)."""
        expiring = [j for j in self.jobs.values() if j.expiring]
        self._expire([j.id for j in expiring])
        assert self.client.run(self.client.core.purge(PURGE_BATCH)) == len(expiring)
        for job in expiring:
            self._delete(job)

    # Queue "a" is never paused, so that some work always flows.
    @rule(queue=st.sampled_from(QUEUES[1:]), paused=st.booleans())
    def pause_or_resume(self, queue: str, paused: bool) -> None:
        if paused:
            assert self.client.pause_queue(queue) == (queue not in self.paused)
            self.paused.add(queue)
        else:
            assert self.client.resume_queue(queue) == (queue in self.paused)
            self.paused.discard(queue)

    @precondition(lambda self: any(j.short or j.fresh for j in self.jobs.values()))
    @rule()
    def advance(self) -> None:
        """Let short delays and short retentions run out (nothing changes in
        Redis until a take or a read): sleep until every one has certainly
        passed, at most ADVANCE_S."""
        pending = [j.due[1] for j in self.jobs.values() if j.short]
        pending += [j.expires[1] for j in self.jobs.values() if j.fresh]
        time.sleep(min(ADVANCE_S, max(0.0, max(pending) + MARGIN_S - time.monotonic() + 0.001)))
        now = time.monotonic()
        for j in self.jobs.values():
            if j.short:
                assert j.due[1] + MARGIN_S < now
                j.short = False
            if j.fresh:
                assert j.expires[1] + MARGIN_S < now
                j.fresh = False

    # ---- invariants -------------------------------------------------------

    @invariant()
    def jobs_match(self) -> None:
        # One call of the script behind get_job for every id ever made.
        raw: list[Any] = self.r.zrange(self.prefix + "scheduled", 0, -1, withscores=True)
        scheduled = {m.decode(): int(score) for m, score in raw}
        t0 = time.monotonic()
        found: list[Job | None] = self.client.run(self.client.core.get(self.ids))
        t1 = time.monotonic()
        for job_id, got in zip(self.ids, found, strict=True):
            job = self.jobs.get(job_id)
            seen = "expired" if job is None else job.seen(t0, t1)
            if seen == "expired":
                assert got is None, f"job {job_id} should be gone or expired, is {got}"
                continue
            if seen == "unsure":
                continue
            assert job is not None and got is not None, f"job {job_id} is gone, model has {job}"
            assert (got.status, got.attempts, got.queue, got.priority, got.retry_limit) == (
                job.status,
                job.attempts,
                job.queue,
                job.priority,
                job.retry_limit,
            ), f"job {job_id}"
            assert (got.backoff, got.retention) == (job.backoff, job.retention), f"job {job_id}"
            assert (got.unique_key, got.unique_while) == (job.unique_key, job.unique_while)
            assert (got.purge_at is not None) == (job.status in ("completed", "dead"))
            if job.status == "scheduled":
                assert scheduled[job_id] == got.ready_at, f"job {job_id}: scheduled score is not its ready_at"
            if job.errors and not job.expiring:
                errors = self.client.job_errors(job_id)
                assert len(errors) == job.errors, f"job {job_id}: {len(errors)} error records, model has {job.errors}"
                if job.attempts:
                    assert errors[-1].attempt == job.attempts
        # Gone and expired jobs are not found by any read, once each.
        t0 = time.monotonic()
        expired = {j.id for j in self.jobs.values() if j.seen(t0, t0) == "expired"}
        for job_id in sorted((self.gone | expired) - self.seen_gone):
            with pytest.raises(JobNotFound):
                self.client.get_job(job_id)
            with pytest.raises(JobNotFound):
                self.client.job_errors(job_id)
            self.seen_gone.add(job_id)

    @invariant()
    def stats_match(self) -> None:
        """The counts from the indexes, expired jobs left out."""
        t0 = time.monotonic()
        stats = self.client.stats()
        t1 = time.monotonic()

        def count(status: str) -> int:
            return sum(1 for j in self.jobs.values() if j.status == status and j.seen(t0, t1) == "visible")

        assert (stats.ready, stats.scheduled, stats.in_flight) == (
            count("ready"),
            count("scheduled"),
            count("in_flight"),
        )
        if all(j.seen(t0, t1) != "unsure" for j in self.jobs.values()):
            assert (stats.completed, stats.dead) == (count("completed"), count("dead"))
        for q, (ready, paused) in stats.queues.items():
            assert (ready, paused) == (
                sum(1 for j in self.jobs.values() if j.status == "ready" and j.queue == q),
                q in self.paused,
            ), f"queue {q}"

    @invariant()
    def indexes_match(self) -> None:
        p = self.prefix
        pipe = self.r.pipeline(transaction=False)
        for q in QUEUES:
            pipe.zrange(p + "ready:" + q, 0, -1, withscores=True)
        for name in ("scheduled", "inflight", "completed", "dead"):
            pipe.zrange(p + name, 0, -1)
        for w in WORKERS:
            pipe.smembers(p + "worker:" + w)
        pipe.smembers(p + "paused")
        for k in UNIQUE_KEYS:
            pipe.zrange(p + "unique:" + k, 0, -1, withscores=True)
        for job_id in self.ids:
            pipe.hexists(p + "jobs", job_id)
            pipe.llen(p + "errors:" + job_id)
        replies: list[Any] = pipe.execute()

        def ids_where(status: str, worker: str | None = None) -> set[str]:
            return {j.id for j in self.jobs.values() if j.status == status and (worker is None or j.worker == worker)}

        for q in QUEUES:
            got = {m.decode(): int(s) for m, s in replies.pop(0)}
            want = {j.id: j.priority for j in self.jobs.values() if j.status == "ready" and j.queue == q}
            assert got == want, f"ready:{q}"
        for name, status in (
            ("scheduled", "scheduled"),
            ("inflight", "in_flight"),
            ("completed", "completed"),
            ("dead", "dead"),
        ):
            got_ids = {m.decode() for m in replies.pop(0)}
            assert got_ids == ids_where(status), name
        for w in WORKERS:
            got_ids = {m.decode() for m in replies.pop(0)}
            assert got_ids == ids_where("in_flight", w), f"worker:{w}"
        assert {m.decode() for m in replies.pop(0)} == self.paused
        for k in UNIQUE_KEYS:  # ranked by score: 0 and 1 as they are, a purge_at as 2
            got = {m.decode(): min(int(score), 2) for m, score in replies.pop(0)}
            assert got == {j.id: j.hold for j in self._holding(k)}, f"unique:{k}"
        # Jobs deleted (retention 0 included) leave no hash and no error list.
        for job_id in self.ids:
            exists, n_errors = replies.pop(0), replies.pop(0)
            job = self.jobs.get(job_id)
            assert exists == (job is not None), f"job:{job_id}"
            assert n_errors == (job.errors if job is not None else 0), f"errors:{job_id}"


# A passing run takes 5-20 s (a third of it real sleeps). The longer limit is
# for a failing one: Hypothesis may shrink for up to 300 s (replaying
# sequences, sleeps and all), and a timeout mid-shrink would lose the minimal
# failing sequence it prints at the end.
@pytest.mark.timeout(420)
def test_model(redis_server: RedisServer) -> None:
    class OnSessionServer(ZizqModel):
        def __init__(self) -> None:
            super().__init__(redis_server)

    run_state_machine_as_test(
        OnSessionServer,
        settings=settings(
            max_examples=50,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )

"""The worker against a real Redis, run in the test's event loop."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
import redis

import zizq

from .conftest import RedisServer, Start, stored, wait_for
from .jobs_app import Heartbeat, Report, SendEmail


def errors_of(r: redis.Redis, namespace: str, job_id: str) -> list[dict[str, Any]]:
    return [orjson.loads(e) for e in r.lrange("{" + namespace + "}:errors:" + job_id, 0, -1)]


async def test_runs_sync_and_async_handlers(client: zizq.Client, start: Start, r: redis.Redis, namespace: str) -> None:
    seen: list[Any] = []
    router = zizq.Router()

    @router.handler
    async def send(job: SendEmail) -> None:
        seen.append(job)

    @router.handler
    def report(job: Report, meta: zizq.Job) -> None:
        assert threading.current_thread() is not threading.main_thread()
        seen.append((job.number, meta.id, meta.status))

    email = client.enqueue(SendEmail(to="a"))
    rep = client.enqueue(Report(7))
    worker = start(router)
    await wait_for(lambda: worker.stats.completed == 2)
    assert SendEmail(to="a") in seen and (7, rep.id, "in_flight") in seen
    # Completed retention is 0 by default: acked jobs are gone, indexes too.
    await wait_for(lambda: stored(r, namespace, email.id) is None)
    await wait_for(lambda: r.zcard("{" + namespace + "}:inflight") == 0)
    with pytest.raises(zizq.JobNotFound):
        client.get_job(rep.id)


async def test_failure_is_retried_with_backoff(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    router = zizq.Router()

    @router.handler
    def boom(job: Report) -> None:
        raise ValueError(f"bad number {job.number}")

    job = client.enqueue(Report(3))
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 1)
    await wait_for(lambda: client.get_job(job.id).status == "scheduled")
    failed = client.get_job(job.id)
    assert failed.attempts == 1 and failed.failed_at is not None
    # First retry: 1^4 * 1000 + 15000 + U * 30000 * 1 ms after the failure.
    assert 16_000 <= failed.ready_at - failed.failed_at <= 46_000
    [error] = errors_of(r, namespace, job.id)
    assert error["attempt"] == 1 and error["message"] == "bad number 3" and error["error_type"] == "ValueError"
    assert "ValueError: bad number 3" in error["backtrace"] and error["dequeued_at"] == failed.dequeued_at


async def test_error_records_are_bounded(client: zizq.Client, start: Start, r: redis.Redis, namespace: str) -> None:
    router = zizq.Router()

    @router.handler
    def boom(job: Report) -> None:
        raise ValueError("é" * 10_000)  # 20,000 bytes of UTF-8, in the backtrace too

    job = client.enqueue(Report(1))
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 1)
    [error] = errors_of(r, namespace, job.id)
    message, backtrace = error["message"], error["backtrace"]
    # The message keeps its head, the backtrace its tail (the error's line),
    # each cut between characters and marked.
    assert len(message.encode()) <= 4096 and message.startswith("éé")
    assert message.endswith("[... truncated from 20000 bytes ...]")
    assert len(backtrace.encode()) <= 16384 and backtrace.endswith("éé\n")
    assert backtrace.startswith("[... truncated from ") and "Traceback" not in backtrace
    assert client.job_errors(job.id)[0].message == message


async def test_kill_and_retry_outcomes(client: zizq.Client, start: Start, r: redis.Redis, namespace: str) -> None:
    router = zizq.Router()
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)  # whole ms
    runs: list[int] = []  # attempts seen by the runs of the job retried at once

    @router.handler
    async def decide(job: Report, meta: zizq.Job) -> None:
        if job.number == 1:
            raise zizq.KillJob("give up")
        if job.number == 3:
            raise zizq.RetryJob("not before an hour", at=later)
        runs.append(meta.attempts)
        if meta.attempts == 1:
            raise zizq.RetryJob(delay=0)

    killed = client.enqueue(Report(1))
    retried = client.enqueue(Report(2), retry_limit=0)  # RetryJob bypasses the limit
    retried_at = client.enqueue(Report(3), retry_limit=0)
    worker = start(router)
    await wait_for(lambda: worker.stats.completed == 1 and worker.stats.failed == 3)
    dead = client.get_job(killed.id)
    assert dead.status == "dead" and dead.attempts == 1 and dead.purge_at is not None
    assert 604_800_000 - 1000 <= dead.purge_at - (dead.failed_at or 0) <= 604_800_000
    assert errors_of(r, namespace, killed.id)[0]["error_type"] == "zizq.KillJob"
    assert runs == [1, 2]  # the run in progress counts; the failure counted as an attempt
    with pytest.raises(zizq.JobNotFound):  # done on its second run, then deleted
        client.get_job(retried.id)
    waiting = client.get_job(retried_at.id)
    assert (waiting.status, waiting.attempts) == ("scheduled", 1)
    assert waiting.ready_at == int(later.timestamp() * 1000)
    [error] = errors_of(r, namespace, retried_at.id)
    assert (error["attempt"], error["message"], error["error_type"]) == (1, "not before an hour", "zizq.RetryJob")


async def test_retry_limit_sends_job_dead(client: zizq.Client, start: Start) -> None:
    router = zizq.Router()

    @router.handler
    def boom(job: Report) -> None:
        raise RuntimeError("always")

    job = client.enqueue(Report(0), retry_limit=0, backoff=zizq.Backoff(0, 0, 0))
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 1)
    await wait_for(lambda: client.get_job(job.id).status == "dead")


async def test_unknown_type_and_bad_payload_fail(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    router = zizq.Router()

    @router.handler
    async def send(job: SendEmail) -> None:
        pass

    unknown = client.enqueue_raw("nobody_handles_this", {})
    bad = client.enqueue_raw("send_email", {"unexpected": 1}, queue="emails")
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 2)
    await wait_for(lambda: len(errors_of(r, namespace, bad.id)) == 1)
    [e1] = errors_of(r, namespace, unknown.id)
    [e2] = errors_of(r, namespace, bad.id)
    assert e1["error_type"] == "zizq.NoRouteError" and "nobody_handles_this" in e1["message"]
    assert e2["error_type"] == "zizq.PayloadDecodeError" and "SendEmail" in e2["message"]


class NewInvite(zizq.JobKind):
    NAME = "invite"
    to: str
    note: str = ""


class OldInvite(zizq.JobKind):
    """NewInvite as a worker not yet upgraded knows it."""

    NAME = "invite"
    to: str


async def test_an_older_worker_runs_a_newer_producers_job(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A rolling deploy: the producer's Invite has a field the worker's lacks.
    got: list[OldInvite] = []
    router = zizq.Router()
    router.route(OldInvite, got.append)
    client.enqueue(NewInvite(to="ada", note="hi"))
    stale = client.enqueue_raw("invite", {"to": 7})  # an older producer's wrong type
    with caplog.at_level(logging.DEBUG, logger="zizq.job"):
        worker = start(router)
        await wait_for(lambda: worker.stats.completed == 1 and worker.stats.failed == 1)
    assert got == [OldInvite(to="ada")]
    assert "payload for OldInvite: ignored fields it does not define: note" in caplog.text
    [error] = errors_of(r, namespace, stale.id)
    assert error["error_type"] == "zizq.PayloadDecodeError"
    assert error["message"] == "failed to decode job payload as OldInvite: OldInvite.to expects str, got 7 (int)"


async def test_fallback_handler_gets_unrouted_jobs(client: zizq.Client, start: Start) -> None:
    router = zizq.Router()
    got: list[zizq.Job] = []

    @router.fallback
    async def anything(job: zizq.Job) -> None:
        got.append(job)

    client.enqueue_raw("mystery", {"a": 1})
    worker = start(router)
    await wait_for(lambda: worker.stats.completed == 1)
    assert got[0].type == "mystery" and got[0].payload == {"a": 1}


async def test_idle_worker_wakes_on_enqueue(client: zizq.Client, start: Start) -> None:
    started: list[float] = []
    router = zizq.Router()

    @router.handler
    async def beat(job: Heartbeat) -> None:
        started.append(time.monotonic())

    # With max_idle at 60 s, only a wake-up from Redis can make this fast.
    worker = start(router, max_idle=60)
    await asyncio.sleep(0.2)  # let it go idle: blocked in BLPOP
    for _ in range(3):
        t0 = time.monotonic()
        client.enqueue(Heartbeat())
        n = len(started)
        await wait_for(lambda n=n: len(started) > n, timeout=5)  # type: ignore[misc]
        assert started[-1] - t0 < 0.5
    assert worker.stats.completed == 3


async def test_idle_worker_wakes_for_scheduled_job(client: zizq.Client, start: Start) -> None:
    started: list[float] = []
    router = zizq.Router()

    @router.handler
    async def beat(job: Heartbeat) -> None:
        started.append(time.monotonic())

    start(router, max_idle=60)
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    client.enqueue(Heartbeat(), delay=0.5)
    await wait_for(lambda: bool(started), timeout=5)
    assert 0.45 <= started[0] - t0 < 1.5


async def test_concurrency_limit(client: zizq.Client, start: Start) -> None:
    active = 0
    peak = 0
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1

    client.enqueue_many([Report(i) for i in range(40)])
    worker = start(router, concurrency=4, prefetch=8)
    await wait_for(lambda: worker.stats.completed == 40)
    assert peak == 4


async def test_priority_order_with_one_runner(client: zizq.Client, start: Start) -> None:
    order: list[int] = []
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        order.append(job.number)

    client.enqueue_many(
        [
            zizq.Enqueue(Report(i), priority=p, queue=q)
            for i, (p, q) in enumerate([(9, "a"), (1, "b"), (5, "a"), (1, "a"), (5, "b")])
        ]
    )
    worker = start(router, concurrency=1, queues=["a", "b"])
    await wait_for(lambda: worker.stats.completed == 5)
    assert order == [1, 3, 2, 4, 0]


async def test_graceful_stop_finishes_running_and_hands_back_the_rest(client: zizq.Client) -> None:
    release = threading.Event()
    started = threading.Event()
    router = zizq.Router()

    @router.handler
    def report(job: Report) -> None:
        started.set()
        release.wait(10)

    jobs = client.enqueue_many([Report(i) for i in range(5)])
    worker = zizq.Worker(client, router, concurrency=1, prefetch=5)
    task = asyncio.create_task(worker.run_async())
    await wait_for(started.is_set)
    await wait_for(lambda: worker.stats.taken == 5)
    worker.stop()
    # The four waiting jobs go back at once, while the running handler is given time.
    await wait_for(lambda: [client.get_job(j.id).status for j in jobs[1:]] == ["ready"] * 4, timeout=1)
    assert not task.done() and not release.is_set()
    release.set()
    await asyncio.wait_for(task, 10)
    assert worker.stats.completed == 1
    rest = [client.get_job(j.id) for j in jobs[1:]]
    assert [(j.status, j.attempts) for j in rest] == [("ready", 0)] * 4
    with pytest.raises(zizq.JobNotFound):
        client.get_job(jobs[0].id)


async def test_shutdown_timeout_hands_back_a_stuck_job(client: zizq.Client) -> None:
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        await asyncio.sleep(60)

    job = client.enqueue(Report(1))
    worker = zizq.Worker(client, router, shutdown_timeout=0.2)
    task = asyncio.create_task(worker.run_async())
    await wait_for(lambda: worker.stats.taken == 1)
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert client.get_job(job.id).status == "ready"


async def test_bad_worker_options(client: zizq.Client) -> None:
    with pytest.raises(zizq.ZizqError, match="prefetch"):
        zizq.Worker(client, zizq.Router(), concurrency=4, prefetch=2)
    with pytest.raises(zizq.ZizqError, match="concurrency"):
        zizq.Worker(client, zizq.Router(), concurrency=0)
    bad: list[tuple[str, Any, str]] = [
        ("concurrency", "3", "concurrency '3' must be an integer"),
        ("concurrency", 2.5, "concurrency 2.5 must be an integer"),
        ("prefetch", "8", "prefetch '8' must be an integer"),
        ("shutdown_timeout", "30", "shutdown_timeout '30' must be a number of seconds"),
        ("shutdown_timeout", -1, "shutdown_timeout -1 must be a number of seconds 0 or above"),
        ("heartbeat_interval", 0, "heartbeat_interval 0 must be a number of seconds above 0"),
        ("lease", "5", "lease '5' must be a number of seconds"),
        ("max_idle", 0, "max_idle 0 must be a number of seconds above 0"),
        ("purge_interval", None, "purge_interval None must be a number of seconds"),
    ]
    for option, value, message in bad:
        with pytest.raises(zizq.ValidationError, match=re.escape(message)):
            zizq.Worker(client, zizq.Router(), **{option: value})
    with pytest.raises(zizq.ValidationError, match=r"lease 1\.0s must be longer than heartbeat_interval 2\.0s"):
        zizq.Worker(client, zizq.Router(), heartbeat_interval=2, lease=1)
    assert zizq.Worker(client, zizq.Router(), shutdown_timeout=0).shutdown_timeout == 0


async def test_two_workers_share_the_work(client: zizq.Client, start: Start) -> None:
    done: list[int] = []
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        done.append(job.number)
        await asyncio.sleep(0.001)

    a = start(router, concurrency=5)
    b = start(router, concurrency=5)
    client.enqueue_many([Report(i) for i in range(300)])
    await wait_for(lambda: len(done) == 300)
    assert sorted(done) == list(range(300))
    assert a.stats.completed > 0 and b.stats.completed > 0


async def test_worker_from_async_client(redis_server: RedisServer, namespace: str) -> None:
    async with zizq.AsyncClient.from_url(redis_server.url, namespace) as ac:
        router = zizq.Router()
        got: list[int] = []

        @router.handler
        async def report(job: Report) -> None:
            got.append(job.number)

        await ac.enqueue(Report(5))
        worker = zizq.Worker(ac, router)
        task = asyncio.create_task(worker.run_async())
        await wait_for(lambda: got == [5])
        worker.stop()
        await asyncio.wait_for(task, 5)


async def test_a_handler_raising_cancelled_error_fails_its_job_and_the_worker_goes_on(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    router = zizq.Router()
    ran: list[int] = []

    @router.handler
    async def report(job: Report) -> None:
        if job.number == 0:
            raise asyncio.CancelledError  # the handler's own, not a stop
        ran.append(job.number)

    broken = client.enqueue(Report(0), retry_limit=0)
    worker = start(router, concurrency=1)
    await wait_for(lambda: client.get_job(broken.id).status == "dead")
    assert errors_of(r, namespace, broken.id)[0]["error_type"] == "RuntimeError"
    client.enqueue_many([Report(n) for n in range(1, 4)])  # the one runner still runs jobs
    await wait_for(lambda: sorted(ran) == [1, 2, 3])
    assert worker.stats.failed == 1


async def test_each_job_has_its_own_context_variables(client: zizq.Client, start: Start) -> None:
    import contextvars

    tenant: contextvars.ContextVar[int | None] = contextvars.ContextVar("tenant", default=None)
    seen: list[int | None] = []
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        seen.append(tenant.get())
        tenant.set(job.number)  # must not leak into the next job on this runner

    client.enqueue_many([Report(n) for n in range(5)])
    start(router, concurrency=1)
    await wait_for(lambda: len(seen) == 5)
    assert seen == [None] * 5


async def test_a_stop_asked_for_before_the_worker_runs_is_kept(client: zizq.Client) -> None:
    # A supervisor that dies while its worker process is still starting asks
    # for a stop before the event loop runs: the worker must not run on.
    worker = zizq.Worker(client, zizq.Router())
    worker.stop()
    assert worker.stopping
    await asyncio.wait_for(worker.run_async(), timeout=10)


async def test_a_worker_runs_again_after_it_stopped(client: zizq.Client) -> None:
    # Each run has state of its own: a second run takes jobs like the first,
    # and a stop asked for between runs is kept for the next one.
    router = zizq.Router()
    seen: list[int] = []

    @router.handler
    async def report(job: Report) -> None:
        seen.append(job.number)

    worker = zizq.Worker(client, router, heartbeat_interval=0.1, lease=1)

    async def run_until_done(numbers: list[int]) -> None:
        done = worker.stats.completed + len(numbers)
        client.enqueue_many([Report(n) for n in numbers])
        task = asyncio.create_task(worker.run_async())
        await wait_for(lambda: worker.stats.completed == done)
        worker.stop()
        await asyncio.wait_for(task, timeout=10)
        assert not worker.stopping

    await run_until_done([0, 1, 2])
    await run_until_done([10, 11, 12])
    assert sorted(seen) == [0, 1, 2, 10, 11, 12] and worker.stats.completed == 6
    worker.stop()
    assert worker.stopping
    client.enqueue(Report(20))
    await asyncio.wait_for(worker.run_async(), timeout=10)
    assert 20 not in seen and not worker.stopping


def test_handler_whose_annotation_cannot_be_resolved_is_refused_clearly() -> None:
    # With `from __future__ import annotations` (as here) the annotation is the
    # string "Local", which get_type_hints looks up in the module's globals.
    class Local(zizq.JobKind):
        NAME = "local"

    router = zizq.Router()

    def on_local(job: Local) -> None:
        pass

    with pytest.raises(zizq.JobKindError, match=r"on_local.*'Local' is not defined.*router\.route\(Kind, on_local\)"):
        router.handler(on_local)
    router.route(Local, on_local)  # the way the message points to works
    assert router.types == ["local"]


async def test_a_handler_sees_the_attempt_number_its_error_record_gets(client: zizq.Client, start: Start) -> None:
    seen: list[int] = []
    router = zizq.Router()

    @router.handler
    def flaky(job: Report, meta: zizq.Job) -> None:
        seen.append(meta.attempts)
        if meta.attempts < 3:
            raise ValueError(f"attempt {meta.attempts}")

    job = client.enqueue(Report(1), backoff=zizq.Backoff(0, 0, 0))
    worker = start(router)
    await wait_for(lambda: worker.stats.completed == 1)
    assert seen == [1, 2, 3] and worker.stats.failed == 2  # the first run is attempt 1
    with pytest.raises(zizq.JobNotFound, match="deleted at once"):  # completed, retention 0
        client.get_job(job.id)


async def test_error_records_name_the_attempt_the_handler_saw(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    router = zizq.Router()

    @router.handler
    def boom(job: Report, meta: zizq.Job) -> None:
        raise ValueError(f"seen attempts={meta.attempts}")

    job = client.enqueue(Report(1), retry_limit=1, backoff=zizq.Backoff(0, 0, 0))
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 2)
    assert [(e.attempt, e.message) for e in client.job_errors(job.id)] == [
        (1, "seen attempts=1"),
        (2, "seen attempts=2"),
    ]
    assert client.get_job(job.id).attempts == 2  # stored: the runs that failed


def user_frames(backtrace: str) -> list[tuple[str, str]]:
    """(file, function) of each frame of a formatted traceback."""
    return re.findall(r'File "([^"]+)", line \d+, in (\w+)', backtrace)


@pytest.mark.parametrize("middleware", [False, True], ids=["bare", "middleware"])
async def test_stored_backtraces_start_at_the_users_code(client: zizq.Client, start: Start, middleware: bool) -> None:
    router = zizq.Router()

    def deeper(n: int) -> None:
        raise ValueError(f"bad {n}")

    @router.handler
    def sync_boom(job: Report) -> None:
        deeper(job.number)

    @router.handler
    async def async_boom(job: SendEmail) -> None:
        deeper(0)

    async def passing(job: zizq.Job, call_next: Any) -> None:
        await call_next()

    if middleware:
        router.use(passing)
    sync_job, async_job = client.enqueue(Report(1)), client.enqueue(SendEmail(to="a"))
    worker = start(router)
    await wait_for(lambda: worker.stats.failed == 2)
    for job_id, handler in ((sync_job.id, "sync_boom"), (async_job.id, "async_boom")):
        [error] = client.job_errors(job_id)
        assert error.backtrace is not None and error.backtrace.startswith("Traceback (most recent call last):")
        frames = user_frames(error.backtrace)
        # zizq's worker frames above the user's code are gone. A middleware
        # is the user's code too: the trace starts there, and shows the
        # frames between it and the handler as they were.
        assert frames[0] == (__file__, "passing" if middleware else handler), error.backtrace
        assert frames[-2:] == [(__file__, handler), (__file__, "deeper")]
        if not middleware:
            assert len(frames) == 2
        assert error.backtrace.endswith("ValueError: bad " + ("1" if handler == "sync_boom" else "0") + "\n")


async def test_a_failure_with_no_user_frame_keeps_its_whole_backtrace(client: zizq.Client, start: Start) -> None:
    job = client.enqueue_raw("nobody_handles_this", None)
    worker = start(zizq.Router())
    await wait_for(lambda: worker.stats.failed == 1)
    [error] = client.job_errors(job.id)
    assert error.backtrace is not None and "in lookup" in error.backtrace
    assert error.backtrace.endswith("NoRouteError: no route registered for job type 'nobody_handles_this'\n")


async def test_a_worker_warns_once_about_a_queue_nothing_names(
    client: zizq.Client, start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    router = zizq.Router()

    @router.handler
    def send(job: SendEmail) -> None:  # QUEUE "emails"
        pass

    client.enqueue_raw("other", None, queue="reports")
    worker = start(router, queues=["emails", "reports", "emials"])
    await wait_for(lambda: worker.stats.taken == 1)
    await wait_for(lambda: worker.stats.failed == 1)  # "other" has no route
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "a typo?" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("queue 'emials': no handler's JobKind has it as QUEUE")
    assert "emails, reports" in warnings[0]


def test_routing_a_job_type_twice_is_refused() -> None:
    router = zizq.Router()

    @router.handler
    def first(job: Report) -> None:
        pass

    def second(job: Report) -> None:
        pass

    class Impostor(zizq.JobKind):
        NAME = "report"

    with pytest.raises(zizq.JobKindError, match=r"'report'.*already.*\.first; cannot route it to .*\.second"):
        router.handler(second)
    with pytest.raises(zizq.JobKindError, match=r"'report' \(.*Impostor\).*\.first"):
        router.route(Impostor, second)
    router.route(Report, first)  # the same route again changes nothing
    assert router.lookup("report").handler is first and router.queues == ["default"]


async def test_a_worker_of_sync_handlers_runs_them_in_its_own_threads(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every handler sync, no middleware, no hooks (another test module's may
    # be registered): the worker's handler threads take the jobs themselves
    # (zizq.worker.sync_lane); outcomes are the same.
    for name in ("job_start", "job_end", "job_exception"):
        monkeypatch.setattr(zizq.events, name, [])
    router = zizq.Router()
    seen: dict[int, tuple[str, str]] = {}

    @router.handler
    def report(job: Report, meta: zizq.Job) -> None:
        context = zizq.logs.current_job.get()
        assert context is not None and context.job.id == meta.id and meta.attempts == 1
        seen[job.number] = (threading.current_thread().name, context.job.id)
        if job.number == 0:
            raise ValueError("zero")
        if job.number == 1:
            raise asyncio.CancelledError  # the handler's own: a failure like any other

    jobs = [client.enqueue(Report(n), retry_limit=0) for n in range(20)]
    unknown = client.enqueue_raw("nobody_handles_this", {}, retry_limit=0)
    worker = start(router, concurrency=3)
    await wait_for(lambda: worker.stats.completed == 18 and worker.stats.failed == 3)
    assert sorted(seen) == list(range(20))
    assert all(name.startswith("zizq-handler-") for name, _ in seen.values())
    assert [seen[n][1] for n in range(20)] == [j.id for j in jobs]
    assert [errors_of(r, namespace, j.id)[0]["error_type"] for j in jobs[:2]] == ["ValueError", "RuntimeError"]
    [error] = errors_of(r, namespace, unknown.id)
    assert error["error_type"] == "zizq.NoRouteError"
    assert errors_of(r, namespace, jobs[0].id)[0]["backtrace"].startswith("Traceback")
    await wait_for(lambda: r.zcard("{" + namespace + "}:inflight") == 0)


async def test_a_sync_handler_in_the_workers_threads_may_raise_rate_limited(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    router = zizq.Router()
    runs: list[int] = []

    @router.handler
    def report(job: Report, meta: zizq.Job) -> None:
        runs.append(meta.attempts)
        if len(runs) == 1:
            raise zizq.RateLimited("the API said 429", retry_after=0.05)

    job = client.enqueue(Report(1))
    worker = start(router)
    await wait_for(lambda: worker.stats.completed == 1)
    assert runs == [1, 1] and worker.stats.failed == 0  # deferred: no attempt used
    assert errors_of(r, namespace, job.id) == []


async def test_a_sync_handler_in_the_workers_threads_keeps_result_progress_and_cancel(
    client: zizq.Client, start: Start
) -> None:
    router = zizq.Router()
    started = threading.Event()

    @router.handler
    def report(job: Report) -> dict[str, int]:
        if job.number == 0:  # runs until cancelled
            started.set()
            deadline = time.monotonic() + 5
            while not zizq.cancelled() and time.monotonic() < deadline:
                time.sleep(0.01)
            return {"n": -1}
        zizq.progress(0.5, "half")
        return {"n": job.number}

    kept = zizq.Retention(completed_ms=60_000)
    looping = client.enqueue(Report(0), retention=kept)
    worker = start(router, heartbeat_interval=0.2, lease=2)
    await wait_for(started.is_set)
    assert client.cancel_job(looping.id) is True
    dead = await asyncio.to_thread(client.wait, looping.id, 5)
    assert dead.status == "dead" and dead.cancelled_at is not None
    done = await asyncio.to_thread(client.wait, client.enqueue(Report(7), retention=kept).id, 5)
    assert (done.status, done.result, done.progress, done.progress_message) == ("completed", {"n": 7}, 0.5, "half")
    await wait_for(lambda: worker.stats.completed == 1)  # the ack's reply follows the wake-up
    assert worker.stats.failed == 0

"""Results, wait, progress and cancellation.

The scripts on their own first (wait, progress, cancel; ack's result; the
heartbeat's list of cancelled jobs), then both clients against one real
`zizq worker` process (started once for the module, in a namespace of its
own, with a completed retention of a minute), then the command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

import zizq
from zizq._protocol.scripts import script

from .conftest import ROOT, RedisServer, wait_for
from .results_app import Mark, Square, Steps, SyncLoop, SyncSquare, Unkeepable
from .test_scripts import NAMES, Lua, job

# -- the scripts --------------------------------------------------------------


@pytest.fixture
def lua(r: redis.Redis, namespace: str) -> Lua:
    for name in (*NAMES, "wait", "progress", "cancel", "done"):
        r.script_load(script(name).source)
    return Lua(r, namespace)


def test_ack_keeps_the_result_only_when_the_job_is_kept(lua: Lua) -> None:
    [kept] = lua.in_flight(job("kept", completed_ms="60000"))
    assert lua.ack("w", kept, result='{"a":1}') == []
    assert (lua.record(kept) or {})["rs"] == '{"a":1}'
    [gone] = lua.in_flight(job("gone"))
    assert lua.ack("w", gone, result='{"a":1}') == []
    assert lua.record(gone) is None  # a retention of 0: deleted at once, result and all
    [empty] = lua.in_flight(job("empty", completed_ms="60000"))
    lua.ack("w", empty)
    assert "rs" not in (lua.record(empty) or {})  # no result: no field


def test_wait_counts_waiters_and_the_end_of_the_job_wakes_each(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", completed_ms="60000"))
    assert lua.run("wait", job_id) == ["wait", "", ""]
    assert lua.run("wait", job_id) == ["wait", "", ""]
    assert (lua.record(job_id) or {})["wt"] == 2
    assert not lua.r.exists(lua.key("waited", job_id))
    lua.ack("w", job_id, result="7")
    assert lua.r.lrange(lua.key("waited", job_id), 0, -1) == [b"completed", b"completed"]
    assert 0 < lua.r.pttl(lua.key("waited", job_id)) <= 60_000
    assert "wt" not in (lua.record(job_id) or {})
    state, record, error = lua.raw("wait", job_id)  # finished: the record, nobody counted
    assert (state, error) == (b"done", b"") and as_job(job_id, record).result == 7


def as_job(job_id: str, record: bytes) -> zizq.Job:
    from zizq._protocol.records import job_from_record

    return job_from_record(job_id, record)


def test_wait_on_a_job_deleted_at_once_reads_the_done_window(lua: Lua) -> None:
    lua.in_flight(job("done"), job("dead", retry_limit="0", dead_ms="0"))
    done, dead = "done", "dead"
    lua.ack("w", done)
    lua.fail("w", dead)
    assert lua.run("wait", done) == ["gone", "f", ""]
    assert lua.run("wait", dead) == ["gone", "x", ""]
    assert lua.run("wait", "never") == ["gone", "", ""]
    assert lua.run("done", done, dead, "never") == [1, 1, 0]  # dead and deleted at once counts as finished too


def test_delete_wakes_waiters(lua: Lua) -> None:
    lua.enqueue(job("j1"))
    lua.run("wait", "j1")
    assert lua.run("delete", "j1") == 1
    assert lua.r.lrange(lua.key("waited", "j1"), 0, -1) == [b"deleted"]


def test_progress_is_kept_for_the_worker_that_holds_the_job(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1"))
    assert lua.run("progress", "w", job_id, "", "0.25", "a quarter") == 1
    assert {k: v for k, v in (lua.record(job_id) or {}).items() if k in ("pg", "pm")} == {
        "pg": "0.25",
        "pm": "a quarter",
    }
    assert lua.run("progress", "w", job_id, "", "0.5", "") == 1
    assert "pm" not in (lua.record(job_id) or {})
    assert lua.run("progress", "other", job_id, "", "0.75", "") == 0  # not its job
    for bad in ("1.5", "-0.1", "x", "nan"):
        with pytest.raises(redis.ResponseError, match=rf"^ZIZQ INVALID progress {bad} is not a number in 0..1"):
            lua.run("progress", "w", job_id, "", bad, "")


def test_cancel_ends_waiting_and_running_jobs_dead_and_tells_the_worker(lua: Lua) -> None:
    lua.enqueue(job("ready", unique_key="k", unique_while="exists"), job("later", ready_at="9999999999999"))
    [running] = lua.in_flight(job("running", queue="r"))
    [finished] = lua.in_flight(job("done_before", queue="d", completed_ms="60000"))
    lua.ack("w", finished)
    assert lua.run("cancel", "", "ready", "later", running, finished, "nope") == [1, 1, 1, 0, -1]
    for job_id in ("ready", "later", running):
        record = lua.record(job_id) or {}
        assert (record["s"], record.get("a")) == (5, None) and record["cx"] > 0  # dead, no attempt counted
        assert lua.r.zscore(lua.key("dead"), job_id) is not None
    assert lua.r.zcard(lua.key("ready", "q")) == 0 and lua.r.zcard(lua.key("scheduled")) == 0
    assert lua.r.zcard(lua.key("inflight")) == 0
    assert not lua.r.exists(lua.key("unique", "k"))  # released, whatever the scope
    assert lua.ack("w", running) == [running]  # the worker's later ack is refused
    assert lua.run("heartbeat", "w", "beat", 60_000, 0, 0) == ["ok", 0, 0, [running]]
    assert lua.run("heartbeat", "w", "beat", 60_000, 0, 0) == ["ok", 0, 0]  # told once
    with pytest.raises(redis.ResponseError, match=r"^ZIZQ INVALID 1001 ids is more than 1000 a call"):
        lua.run("cancel", "", *(f"j{i}" for i in range(1001)))


# -- both clients, one real worker process --------------------------------------

NAMESPACE = "results-tests"


class WorkerProcess:
    """A `zizq worker tests.results_app:router` on NAMESPACE; its handlers
    mark what they did in ``log``."""

    def __init__(self, url: str, log: Path, output: Path) -> None:
        self.url, self.log, self.output = url, log, output
        with zizq.Client.from_url(url, NAMESPACE) as client:
            client.reset(force=True)
            client.set_defaults(retention=zizq.Retention(completed_ms=60_000))
        log.touch()
        with output.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "zizq", "worker", "tests.results_app:router", "--url", url,
                 "--namespace", NAMESPACE, "-c", "4"],
                cwd=ROOT,
                env={**os.environ, "ZIZQ_TEST_LOG": str(log)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def marks(self) -> list[str]:
        return self.log.read_text().splitlines()

    def until_marked(self, line: str, timeout: float) -> float:
        """Seconds until ``line`` is in the log; fails after ``timeout``."""
        started = time.monotonic()
        while line not in self.marks():
            assert self.proc.poll() is None, self.output.read_text()
            assert time.monotonic() - started < timeout, f"{line!r} not marked within {timeout}s"
            time.sleep(0.01)
        return time.monotonic() - started

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    tmp = tmp_path_factory.mktemp("results")
    w = WorkerProcess(redis_server.url, tmp / "marks.log", tmp / "worker.out")
    yield w
    w.stop()


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, worker: WorkerProcess) -> Any:
    """Client (wrapped, awaited) or AsyncClient on the worker's namespace."""
    from .conftest import Awaited

    if request.param == "sync":
        c = zizq.Client.from_url(worker.url, NAMESPACE)
        yield Awaited(c)
        c.close()
    else:
        ac = zizq.AsyncClient.from_url(worker.url, NAMESPACE)
        yield ac
        await ac.close()


async def test_results_round_trip_through_wait_and_get_job(api: Any) -> None:
    a = await api.enqueue(Square(n=7))
    b = await api.enqueue(SyncSquare(n=5))
    done = await api.wait(a.id, timeout=10)
    assert (done.status, done.result) == ("completed", {"square": 49})
    assert (await api.get_job(a.id)).result == {"square": 49}
    assert (await api.wait(b.id, timeout=10)).result == 25
    assert (await api.wait(b.id)).result == 25  # finished: returns at once


async def test_wait_on_a_job_deleted_at_once_reports_it_completed(api: Any) -> None:
    job = await api.enqueue(Square(n=2), retention=zizq.Retention(completed_ms=0))
    done = await api.wait(job.id, timeout=10)
    assert (done.id, done.status, done.result) == (job.id, "completed", None)
    again = await api.wait(job.id, timeout=10)  # from the done window now
    assert (again.status, again.type) == ("completed", "")


async def test_wait_times_out_with_a_clear_error(api: Any) -> None:
    job = await api.enqueue(Mark(tag="later"), delay=600)
    started = time.monotonic()
    with pytest.raises(zizq.WaitTimeout, match=rf"job '{job.id}' did not finish within the timeout of 0.2s"):
        await api.wait(job.id, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    with pytest.raises(zizq.ValidationError, match=r"wait timeout -1 is not a number of seconds >= 0"):
        await api.wait(job.id, timeout=-1)
    with pytest.raises(zizq.JobNotFound, match="no job with id 'nope'"):
        await api.wait("nope", timeout=1)
    await api.delete_job(job.id)


async def test_wait_ends_when_the_job_is_deleted(api: Any, worker: WorkerProcess) -> None:
    job = await api.enqueue(Mark(tag="deleted"), delay=600)
    if isinstance(api, zizq.AsyncClient):
        waiting = asyncio.ensure_future(api.wait(job.id, timeout=10))
    else:  # the blocking client, in a thread of its own
        waiting = asyncio.ensure_future(asyncio.to_thread(api._client.wait, job.id, 10))
    r = redis.Redis.from_url(worker.url)
    key = api.core.key("jobs")
    await wait_for(lambda: b"\xa2wt" in (r.hget(key, job.id) or b""), 5)  # counted: it blocks now
    r.close()
    started = time.monotonic()
    await api.delete_job(job.id)
    with pytest.raises(zizq.JobNotFound, match="was deleted"):
        await waiting
    assert time.monotonic() - started < 1


async def test_a_result_json_cannot_hold_fails_the_job(api: Any) -> None:
    job = await api.enqueue(Unkeepable(), retry_limit=0)
    dead = await api.wait(job.id, timeout=10)
    assert dead.status == "dead"
    [error] = await api.job_errors(job.id)
    assert dead.last_error == error  # wait brings a dead job's last error
    assert error.error_type == "zizq.ResultError"
    assert "the handler's result cannot be kept" in error.message


async def test_progress_shows_while_the_job_runs_and_cancel_stops_an_async_handler(
    api: Any, worker: WorkerProcess
) -> None:
    tag = f"steps-{type(api).__name__}"
    job = await api.enqueue(Steps(tag=tag))
    worker.until_marked(f"started {tag}", 10)

    async def half_way() -> bool:
        j = await api.get_job(job.id)
        return (j.progress, j.progress_message) == (0.5, "half way")

    await wait_for(half_way, 5)
    assert (await api.get_job(job.id)).status == "in_flight"
    assert await api.cancel_job(job.id) is True
    assert worker.until_marked(f"cancelled {tag}", 5) < 2.5  # a heartbeat (1 s) and the task's cancel
    dead = await api.wait(job.id, timeout=5)
    assert (dead.status, dead.attempts) == ("dead", 0) and dead.cancelled_at is not None
    assert await api.job_errors(job.id) == []
    assert await api.cancel_job(job.id) is False  # finished already
    time.sleep(0.3)
    assert (await api.get_job(job.id)).status == "dead"  # never retried


async def test_a_sync_handler_that_checks_cancelled_stops(api: Any, worker: WorkerProcess) -> None:
    tag = f"loop-{type(api).__name__}"
    job = await api.enqueue(SyncLoop(tag=tag))
    worker.until_marked(f"started {tag}", 10)
    assert await api.cancel_job(job.id) is True
    assert worker.until_marked(f"stopped {tag}", 5) < 2.5
    assert (await api.wait(job.id, timeout=5)).cancelled_at is not None


async def test_a_queued_job_cancelled_never_runs(api: Any, worker: WorkerProcess) -> None:
    tag = f"queued-{type(api).__name__}"
    await api.pause_queue("held")
    first = await api.enqueue(Mark(tag=f"{tag}-1"), queue="held", unique_key=tag)
    assert await api.cancel_job(first.id) is True
    second = await api.enqueue(Mark(tag=f"{tag}-2"), queue="held", unique_key=tag)
    assert not second.duplicate  # the key was released
    await api.resume_queue("held")
    await api.wait(second.id, timeout=10)  # it ran, after where the first one stood
    assert f"ran {tag}-2" in worker.marks() and f"ran {tag}-1" not in worker.marks()
    assert (await api.get_job(first.id)).status == "dead"


async def test_cancel_of_an_unknown_job_and_bulk_cancel(api: Any) -> None:
    with pytest.raises(zizq.JobNotFound, match="no job with id 'nope'"):
        await api.cancel_job("nope")
    jobs = [await api.enqueue(Mark(tag="bulk"), queue="bulk", delay=600) for _ in range(3)]
    assert await api.cancel_jobs(queue="bulk") == 3
    assert {(await api.get_job(j.id)).status for j in jobs} == {"dead"}
    assert await api.cancel_jobs(queue="bulk") == 0
    with pytest.raises(zizq.ValidationError, match="cannot be cancelled"):
        await api.cancel_jobs(status="completed")


def test_progress_outside_a_handler_checks_its_arguments() -> None:
    zizq.progress(0.5)  # outside a handler: nothing to record
    assert zizq.cancelled() is False
    for bad in (1.5, -0.1, float("nan"), "half", True):
        with pytest.raises(zizq.ValidationError, match=r"progress fraction .* is not a number in 0..1"):
            zizq.progress(bad)  # type: ignore[arg-type]


# -- the command line -----------------------------------------------------------


def zizq_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zizq", "jobs", *args, "--url", url, "--namespace", NAMESPACE],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def test_cli_get_shows_result_and_progress_and_cancel_cancels(worker: WorkerProcess) -> None:
    with zizq.Client.from_url(worker.url, NAMESPACE) as client:
        done = client.wait(client.enqueue(Square(n=3)).id, timeout=10)
        out = zizq_cli(worker.url, "get", done.id, "--json")
        assert out.returncode == 0, out.stderr
        assert orjson.loads(out.stdout)["result"] == {"square": 9}
        assert "result" in zizq_cli(worker.url, "get", done.id).stdout

        job = client.enqueue(Steps(tag="cli"))
        worker.until_marked("started cli", 10)
        wait_until(lambda: client.get_job(job.id).progress == 0.5, 5)
        shown = zizq_cli(worker.url, "get", job.id)
        assert "50% half way" in shown.stdout, shown.stdout
        out = zizq_cli(worker.url, "cancel", job.id)
        assert (out.returncode, out.stdout) == (0, "1 job cancelled\n"), out.stderr
        assert client.wait(job.id, timeout=5).cancelled_at is not None
        out = zizq_cli(worker.url, "cancel", job.id)
        assert out.returncode == 0 and "had already finished (dead)" in out.stdout
        out = zizq_cli(worker.url, "cancel", "nope")
        assert out.returncode == 3 and "no job with id 'nope'" in out.stderr and "Traceback" not in out.stderr


def test_cli_wait_prints_the_result_or_the_error_and_says_it_in_its_exit_code(worker: WorkerProcess) -> None:
    with zizq.Client.from_url(worker.url, NAMESPACE) as client:
        square = client.enqueue(Square(n=4))
        out = zizq_cli(worker.url, "wait", square.id, "--timeout", "10")
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith(f"{square.id} completed\n") and orjson.loads(out.stdout.split("\n", 1)[1]) == {
            "square": 16
        }
        dead = client.enqueue(Unkeepable(), retry_limit=0)
        out = zizq_cli(worker.url, "wait", dead.id, "--timeout", "10", "--json")
        assert out.returncode == 5 and orjson.loads(out.stdout)["status"] == "dead", out.stderr
        later = client.enqueue(Mark(tag="cli-later"), delay=600)
        out = zizq_cli(worker.url, "wait", later.id, "--timeout", "0.2")
        assert out.returncode == 6 and "did not finish within the timeout" in out.stderr
        assert "Traceback" not in out.stderr
        client.delete_job(later.id)


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.01)


class Recorder:
    """A Caller for JobControl that records the progress calls it is given
    (what they would write), without Redis: the coalescing is the worker's
    own timing."""

    def __init__(self) -> None:
        from zizq._protocol.jobs import Core

        self.core = Core("x")
        self.written: list[list[Any]] = []

    async def call(self, call: Any) -> Any:
        self.written.append(call.args)
        return True


async def test_progress_reports_are_coalesced_and_the_last_one_flushed() -> None:
    from zizq.worker.control import PROGRESS_EVERY, JobControl

    run = Recorder()
    job = zizq.Job("j1", "t", "q", 1, "in_flight", 0, dequeued_at=5)
    control = JobControl(run, "w", job, asyncio.get_running_loop())

    def handler() -> None:  # a sync handler, in its thread: 1000 reports in about 1 s
        for i in range(1, 1001):
            control.report(i / 1000, f"step {i}")
            time.sleep(0.001)

    started = time.monotonic()
    await asyncio.to_thread(handler)
    seconds = time.monotonic() - started
    await control.flush()
    assert 2 <= len(run.written) <= seconds / PROGRESS_EVERY + 2, run.written
    assert run.written[-1] == ["w", "j1", "5", "1.0", "step 1000"]

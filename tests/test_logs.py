"""The worker's logs, read as text: in-process workers through caplog, and
`zizq worker` processes for the start line and --log-format json."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

import zizq
from zizq import _hotpath
from zizq.logs import JobContextFilter

from .conftest import ROOT, RedisServer, Start, wait_for
from .jobs_app import Report
from .logs_app import Chatty, Doomed, Slow
from .logs_app import router as app_router

JOBS = "zizq.worker.jobs"


def job_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    """(level, message) of the per-job lines logged so far."""
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == JOBS]


def job_record(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord | None:
    """The first per-job record whose message has ``text``."""
    return next((r for r in caplog.records if r.name == JOBS and text in r.getMessage()), None)


def span(ms: int) -> str:
    """How the logs say a delay under 100 s."""
    assert ms < 100_000
    return f"{ms / 1000:.1f} s"


async def test_a_job_is_received_then_done_in_ms(client: zizq.Client, start: Start, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="zizq")
    job = client.enqueue(Chatty(words="hi"), queue="talk")
    start(app_router)
    await wait_for(lambda: job_record(caplog, "done in") is not None)
    received = job_record(caplog, "received")
    assert received is not None and received.levelno == logging.INFO
    assert received.getMessage() == f"chatty[{job.id}] received (queue talk, attempt 1)"
    done = job_record(caplog, "done in")
    assert done is not None and done.levelno == logging.INFO
    assert re.fullmatch(rf"chatty\[{job.id}\] done in \d+\.\d ms", done.getMessage()), done.getMessage()
    assert 0 < vars(done)["duration_ms"] < 5000


async def test_a_failure_says_when_the_retry_comes_and_which_attempt_it_was(
    client: zizq.Client, start: Start, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="zizq")
    client.set_defaults(retry_limit=4)
    router = zizq.Router()

    @router.handler
    def report(job: Report) -> None:
        raise ValueError(f"bad number {job.number}")

    own = client.enqueue(Report(1), retry_limit=2)  # the job's own limit
    default = client.enqueue(Report(2))  # the namespace's
    start(router)
    await wait_for(lambda: len(job_lines(caplog)) == 4)  # two received, two failed
    for job, number, attempts in ((own, 1, 3), (default, 2, 5)):
        failed = client.get_job(job.id)
        assert failed.status == "scheduled" and failed.failed_at is not None
        retry_in = failed.ready_at - failed.failed_at  # what Redis decided
        record = job_record(caplog, f"report[{job.id}] failed")
        assert record is not None and record.levelno == logging.WARNING
        assert record.getMessage() == (
            f"report[{job.id}] failed: ValueError: bad number {number}; "
            f"retry in {span(retry_in)} (attempt 1 of {attempts})"
        ), record.getMessage()
        # No traceback for a job that will be retried.
        assert vars(record)["retry_in_ms"] == retry_in and record.exc_info is None


async def test_a_job_that_dies_logs_its_traceback_at_error(client: zizq.Client, start: Start, caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="zizq")
    job = client.enqueue(Doomed(why="beyond repair"))  # RETRY_LIMIT 0
    start(app_router)
    await wait_for(lambda: job_record(caplog, "dead") is not None)
    record = job_record(caplog, "dead")
    assert record is not None and record.levelno == logging.ERROR
    assert record.getMessage() == f"doomed[{job.id}] failed: ValueError: beyond repair; dead (attempt 1 of 1)"
    assert record.exc_info is not None and isinstance(record.exc_info[1], ValueError)
    assert "Traceback (most recent call last)" in caplog.text
    assert "raise ValueError(job.why)" in caplog.text  # the handler's own frame
    assert client.get_job(job.id).status == "dead"


async def test_kill_retry_request_and_timeout_are_each_said_as_such(
    client: zizq.Client, start: Start, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="zizq")
    router = zizq.Router()

    @router.handler
    async def decide(job: Report) -> None:
        if job.number == 1:
            raise zizq.KillJob("give up")
        raise zizq.RetryJob("not now", delay=60)

    router.route(Slow, app_router.lookup("slow").handler)
    killed = client.enqueue(Report(1))
    retried = client.enqueue(Report(2))
    slow = client.enqueue(Slow())
    start(router)
    await wait_for(lambda: len(job_lines(caplog)) == 6)
    lines = job_lines(caplog)
    assert (
        logging.ERROR,
        f"report[{killed.id}] killed by its handler (zizq.KillJob: give up); dead (attempt 1 of 26)",
    ) in lines
    # A requested retry is no failure: INFO, and it ignores the retry limit.
    assert (
        logging.INFO,
        f"report[{retried.id}] asked for a retry (zizq.RetryJob: not now); retry in 60.0 s (attempt 1)",
    ) in lines
    timed_out = client.get_job(slow.id)
    assert timed_out.failed_at is not None
    assert (
        logging.WARNING,
        f"slow[{slow.id}] timed out (zizq.JobTimeout: the handler ran longer than its timeout of 0.05s); "
        f"retry in {span(timed_out.ready_at - timed_out.failed_at)} (attempt 1 of 26)",
    ) in lines


async def test_a_handlers_own_records_carry_its_job(client: zizq.Client, start: Start, caplog: Any) -> None:
    """Sync handlers (in the thread pool) and async ones (in the job's task)."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(JobContextFilter())
    chatty = client.enqueue(Chatty(words="hi"), queue="talk")
    slow = client.enqueue(Slow())
    worker = start(app_router)
    await wait_for(lambda: worker.stats.completed == 1 and worker.stats.failed == 1)
    own = {r.getMessage(): r for r in caplog.records if r.name == "tests.logs_app"}
    for message, job, attempt in (("saying hi", chatty, 1), ("sleeping", slow, 1)):
        record = own[message]
        fields = (record.job_id, record.job_type, record.queue, record.attempt, record.worker_id, record.namespace)
        assert fields == (job.id, job.type, job.queue, attempt, worker.id, client.namespace)
    started = next(r for r in caplog.records if "started" in r.getMessage())
    assert not hasattr(started, "job_id")  # a record outside any job


async def test_debug_shows_takes_acks_and_heartbeats(client: zizq.Client, start: Start, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG, logger="zizq")
    job = client.enqueue(Chatty(words="hi"))
    worker = start(app_router, heartbeat_interval=0.1, lease=1.0)
    await wait_for(lambda: worker.stats.completed == 1)
    await wait_for(lambda: "heartbeat: lease of" in caplog.text)
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and r.name == "zizq.worker"]
    assert "joined with a lease of 1s, renewed every 0.1s" in debug
    assert f"took 1 jobs (1 held): chatty[{job.id}]" in debug
    assert f"acked 1 jobs: {job.id}" in debug
    assert f"heartbeat: lease of {worker.id} renewed for 1s" in debug


# -- `zizq worker` ------------------------------------------------------------


def run_worker(url: str, namespace: str, output: Path, *options: str) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "zizq", "worker", "tests.logs_app:router", "--url", url,
             "--namespace", namespace, "-q", "default,talk", "-c", "3", "--prefetch", "5", *options],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def run_two_jobs(redis_factory: Any, namespace: str, tmp_path: Path, *options: str) -> tuple[str, zizq.Job, zizq.Job]:
    """A worker on a Redis with a password runs a Chatty job and a Doomed
    one, then stops; returns its output and the two jobs."""
    server: RedisServer = redis_factory()
    with redis.Redis(port=server.port) as r:
        r.config_set("requirepass", "s3cret")
    url = f"redis://:s3cret@127.0.0.1:{server.port}/0"
    output = tmp_path / "worker.out"
    with zizq.Client.from_url(url, namespace) as client:
        chatty = client.enqueue(Chatty(words="hi"), queue="talk")
        doomed = client.enqueue(Doomed(why="beyond repair"))
        proc = run_worker(url, namespace, output, *options)
        try:
            deadline = time.monotonic() + 20
            while client.get_job(doomed.id).status != "dead" or "done in" not in output.read_text():
                assert time.monotonic() < deadline and proc.poll() is None, output.read_text()
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0, output.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
    return output.read_text(), chatty, doomed


def test_the_start_line_and_the_job_lines_as_text(redis_factory: Any, namespace: str, tmp_path: Path) -> None:
    text, chatty, doomed = run_two_jobs(
        redis_factory, namespace, tmp_path, "--log-level", "debug", "--metrics-port", "0"
    )
    assert "s3cret" not in text and "Warning" not in text
    port = re.search(r"127\.0\.0\.1:(\d+)", text)
    assert port is not None
    hot = "Cython" if _hotpath.EXTENSION else "pure Python"
    start = rf"INFO zizq\.worker: zizq {re.escape(zizq.__version__)} worker (\S+) started: "
    start += rf"redis://:\*\*\*@127\.0\.0\.1:{port[1]}/0, namespace {namespace}, queues default, talk, "
    start += rf"concurrency 3, prefetch 5, hot path {hot}, metrics at http://0\.0\.0\.0:\d+/metrics\n"
    started = re.search(start, text)
    assert started is not None, text
    worker_id = started[1]
    handlers = "chatty -> tests.logs_app.chatty, doomed -> tests.logs_app.doomed, slow -> tests.logs_app.slow"
    assert f"INFO zizq.worker: worker {worker_id} handlers (3): {handlers}\n" in text
    assert f"INFO zizq.worker.jobs: chatty[{chatty.id}] received (queue talk, attempt 1)\n" in text
    assert f"INFO tests.logs_app: chatty[{chatty.id}] saying hi\n" in text  # the handler's own, with its job
    dead = f"ERROR zizq.worker.jobs: doomed[{doomed.id}] failed: ValueError: beyond repair; dead (attempt 1 of 1)\n"
    assert dead + "Traceback (most recent call last):\n" in text
    assert re.search(rf"DEBUG zizq\.worker: took \d jobs \(\d held\): .*chatty\[{chatty.id}\]", text)
    assert re.search(rf"DEBUG zizq\.worker: acked 1 jobs: {chatty.id}\n", text)
    # At DEBUG, zizq's own lines; not asyncio's or redis-py's chatter.
    assert " DEBUG asyncio" not in text and " DEBUG redis" not in text


def test_json_records_carry_the_job(redis_factory: Any, namespace: str, tmp_path: Path) -> None:
    text, chatty, doomed = run_two_jobs(redis_factory, namespace, tmp_path, "--log-format", "json")
    records = [orjson.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert "s3cret" not in text
    [started] = [r for r in records if r.get("event") == "started"]
    assert started["level"] == "INFO" and started["logger"] == "zizq.worker"
    assert started["url"].startswith("redis://:***@127.0.0.1:")
    assert (started["namespace"], started["queues"], started["concurrency"], started["prefetch"]) == (
        namespace,
        ["default", "talk"],
        3,
        5,
    )
    assert started["hot_path"] == ("Cython" if _hotpath.EXTENSION else "pure Python")
    assert started["version"] == zizq.__version__ and started["metrics_url"] is None
    worker_id = started["worker_id"]
    per_job = [r for r in records if r["logger"] in ("zizq.worker.jobs", "tests.logs_app")]
    assert len(per_job) == 5  # received and done for chatty with its own line between; received and dead for doomed
    for r in per_job:
        job = chatty if r["job_id"] == chatty.id else doomed
        assert (r["job_id"], r["job_type"], r["queue"], r["attempt"], r["worker_id"], r["namespace"]) == (
            job.id,
            job.type,
            job.queue,
            1,
            worker_id,
            namespace,
        ), r
    [own] = [r for r in per_job if r["logger"] == "tests.logs_app"]
    assert own["message"] == "saying hi" and own["job_id"] == chatty.id
    [done] = [r for r in per_job if r.get("event") == "done"]
    assert done["duration_ms"] > 0
    [dead] = [r for r in per_job if r.get("event") == "dead"]
    assert dead["level"] == "ERROR" and dead["error"] == "ValueError: beyond repair"
    assert "raise ValueError(job.why)" in dead["traceback"]

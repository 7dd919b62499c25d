"""The `zizq` command line, run as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis

import zizq
from zizq.cli.main import parser
from zizq.client.options import default_url

from .conftest import ROOT, RedisServer
from .jobs_app import Sleep


def zizq_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zizq", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_version_and_help() -> None:
    out = zizq_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"zizq {zizq.__version__}"
    for command in ("worker", "enqueue"):
        help_text = zizq_cli(command, "--help").stdout
        assert "--url" in help_text and "ZIZQ_REDIS_URL" in help_text
    assert "--concurrency" in zizq_cli("worker", "--help").stdout


def test_enqueue(redis_server: RedisServer, namespace: str) -> None:
    out = zizq_cli(
        "enqueue",
        "send_email",
        '{"to": "a@b.c"}',
        "--queue",
        "emails",
        "--priority",
        "5",
        "--namespace",
        namespace,
        "--json",
        env={"ZIZQ_REDIS_URL": redis_server.url},
    )
    assert out.returncode == 0, out.stderr
    printed = orjson.loads(out.stdout)
    assert (printed["type"], printed["queue"], printed["priority"], printed["status"]) == (
        "send_email",
        "emails",
        5,
        "ready",
    )
    with zizq.Client.from_url(redis_server.url, namespace) as client:
        assert client.get_job(printed["id"]).payload == {"to": "a@b.c"}


def test_enqueue_by_job_kind(redis_server: RedisServer, namespace: str) -> None:
    def enqueue(*args: str) -> subprocess.CompletedProcess[str]:
        return zizq_cli("enqueue", *args, "--url", redis_server.url, "--namespace", namespace, "--json")

    out = enqueue("tests.jobs_app:SendEmail", '{"to": "a@b.c"}')
    assert out.returncode == 0, out.stderr
    printed = orjson.loads(out.stdout)
    # The kind's NAME, QUEUE and PRIORITY; its field defaults fill the payload.
    assert (printed["type"], printed["queue"], printed["priority"]) == ("send_email", "emails", 50)
    with zizq.Client.from_url(redis_server.url, namespace) as client:
        assert client.get_job(printed["id"]).payload == {"to": "a@b.c", "subject": "hello"}
    out = enqueue("tests.jobs_app:SendEmail", '{"to": "a"}', "--queue", "urgent", "--priority", "3")
    assert (orjson.loads(out.stdout)["queue"], orjson.loads(out.stdout)["priority"]) == ("urgent", 3)
    out = enqueue("tests.jobs_app:Report", "7")  # a TRANSPARENT kind: the one value
    assert out.returncode == 0 and orjson.loads(out.stdout)["type"] == "report"
    # --raw: the text is a type name, colon or not.
    out = enqueue("tests.jobs_app:SendEmail", "{}", "--raw")
    assert out.returncode == 0 and orjson.loads(out.stdout)["type"] == "tests.jobs_app:SendEmail"
    assert orjson.loads(out.stdout)["queue"] == "default"
    out = enqueue("billing:v2-invoice", "{}")  # not module:Kind in form: a type name
    assert out.returncode == 0 and orjson.loads(out.stdout)["type"] == "billing:v2-invoice"


@pytest.mark.parametrize(
    ("spec", "payload", "message"),
    [
        ("tests.jobs_app:SendEmail", '{"subject": "x"}', "SendEmail"),  # the kind's own check: `to` is required
        ("tests.jobs_app:SendEmail", '{"to": "a", "colour": 1}', "'colour'"),
        ("tests.jobs_app:SendEmail", "[1]", "expected a JSON object"),
        ("tests.jobs_app:router", "{}", "'tests.jobs_app:router' is Router, not a zizq.JobKind subclass"),
        ("tests.jobs_app:Nowhere", "{}", "module 'tests.jobs_app' has no 'Nowhere'"),
        ("tests.no_such_module:Kind", "{}", "cannot import 'tests.no_such_module'"),
    ],
)
def test_enqueue_by_job_kind_refuses_bad_input_in_one_line(
    redis_server: RedisServer, namespace: str, r: redis.Redis, spec: str, payload: str, message: str
) -> None:
    out = zizq_cli("enqueue", spec, payload, "--url", redis_server.url, "--namespace", namespace)
    assert out.returncode == 1 and out.stderr.startswith("zizq: error:") and message in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == ""
    assert r.hlen("{" + namespace + "}:jobs") == 0


def test_pause_refuses_a_queue_no_job_was_ever_in(redis_server: RedisServer, namespace: str) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return zizq_cli(*args, "--url", redis_server.url, "--namespace", namespace)

    assert cli("enqueue", "t", "{}", "--queue", "emails").returncode == 0
    out = cli("pause", "emials")
    assert out.returncode == 1 and out.stderr.startswith("zizq: error: queue 'emials' is not known")
    assert "(did you mean 'emails'?)" in out.stderr and "--force" in out.stderr
    with zizq.Client.from_url(redis_server.url, namespace) as client:
        assert not any(q.paused for q in client.list_queues(counts=False))
        out = cli("pause", "emails")
        assert (out.returncode, out.stdout) == (0, "queue 'emails' paused\n")
        out = cli("pause", "later", "--force")  # ahead of time
        assert (out.returncode, out.stdout) == (0, "queue 'later' paused\n")
        out = cli("resume", "later")  # paused ahead of time: resumes without a job
        assert (out.returncode, out.stdout) == (0, "queue 'later' resumed\n")
        out = cli("resume", "emials")  # not "was already resumed": a typo
        assert out.returncode == 1 and "queue 'emials' is not known" in out.stderr
        assert [q.name for q in client.list_queues(counts=False) if q.paused] == ["emails"]
    assert "--force" in zizq_cli("pause", "--help").stdout


def test_enqueue_with_a_delay_schedules_the_job(redis_server: RedisServer, namespace: str, r: redis.Redis) -> None:
    def redis_ms() -> int:
        seconds, micros = r.time()
        return seconds * 1000 + micros // 1000

    before = redis_ms()
    out = zizq_cli("enqueue", "t", "{}", "--delay", "2", "--url", redis_server.url, "--namespace", namespace, "--json")
    after = redis_ms()
    assert out.returncode == 0, out.stderr
    printed = orjson.loads(out.stdout)
    assert printed["status"] == "scheduled"
    assert before + 2000 <= printed["ready_at"] <= after + 2000  # ms, from Redis's clock
    with zizq.Client.from_url(redis_server.url, namespace) as client:
        job = client.get_job(printed["id"])
    assert (job.status, job.ready_at) == ("scheduled", printed["ready_at"])


def test_url_comes_from_the_option_then_the_environment_then_the_default(
    redis_server: RedisServer, redis_factory: Callable[[], RedisServer], namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = redis_factory()
    env = {"ZIZQ_REDIS_URL": other.url}
    given = zizq_cli("enqueue", "t", "{}", "--url", redis_server.url, "--namespace", namespace, "--json", env=env)
    from_env = zizq_cli("enqueue", "t", "{}", "--namespace", namespace, "--json", env=env)
    assert given.returncode == 0 and from_env.returncode == 0, given.stderr + from_env.stderr
    with (
        zizq.Client.from_url(redis_server.url, namespace) as on_given,
        zizq.Client.from_url(other.url, namespace) as on_env,
    ):
        given_id, env_id = orjson.loads(given.stdout)["id"], orjson.loads(from_env.stdout)["id"]
        assert on_given.get_job(given_id).status == on_env.get_job(env_id).status == "ready"
        with pytest.raises(zizq.JobNotFound):
            on_env.get_job(given_id)
        with pytest.raises(zizq.JobNotFound):
            on_given.get_job(env_id)
    monkeypatch.delenv("ZIZQ_REDIS_URL", raising=False)
    assert default_url() == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("enqueue", "t", "{not json"), "not valid JSON"),
        (("enqueue", "t", "{}", "--priority", "70000"), "70000"),
        (("enqueue", "bad,type", "{}"), "'bad,type'"),
        (("enqueue", "t", "{}", "--delay", "-1"), "-1"),
        (("worker", "no_colon_here"), "module:attribute"),
        (("worker", "tests.jobs_app:SendEmail"), "not a zizq.Router"),
    ],
)
def test_errors_exit_1_with_a_message(
    redis_server: RedisServer, namespace: str, args: tuple[str, ...], message: str
) -> None:
    out = zizq_cli(*args, "--url", redis_server.url, "--namespace", namespace)
    assert out.returncode == 1 and message in out.stderr and out.stderr.startswith("zizq: error:")


def test_worker_refuses_an_unknown_log_level() -> None:
    out = zizq_cli("worker", "tests.jobs_app:router", "--log-level", "bogus")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--log-level: invalid choice: 'BOGUS'" in out.stderr and "DEBUG" in out.stderr
    assert parser().parse_args(["worker", "tests.jobs_app:router", "--log-level", "debug"]).log_level == "DEBUG"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_worker_runs_jobs_and_stops_gracefully_on_a_signal(
    redis_server: RedisServer, namespace: str, tmp_path: Path, signum: signal.Signals
) -> None:
    log = tmp_path / "done.log"
    log.touch()
    with zizq.Client.from_url(redis_server.url, namespace) as client:
        client.enqueue(Sleep(seconds=0.0, tag="quick"))
        slow = client.enqueue(Sleep(seconds=1.0, tag="slow"), queue="slow")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zizq",
                "worker",
                "tests.jobs_app:router",
                "-q",
                "default,slow",
                "-c",
                "2",
                "--url",
                redis_server.url,
                "--namespace",
                namespace,
            ],
            cwd=ROOT,
            env={**os.environ, "ZIZQ_TEST_LOG": str(log)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 15
            while "quick" not in log.read_text():
                assert time.monotonic() < deadline and proc.poll() is None, "worker did not run the job"
                time.sleep(0.02)
            deadline = time.monotonic() + 5
            while client.get_job(slow.id).status != "in_flight":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            proc.send_signal(signum)  # the slow job is running: it must be let finish
            output, _ = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, output
        assert log.read_text().split() == ["quick", "slow"]
        with pytest.raises(zizq.JobNotFound):
            client.get_job(slow.id)


# -- stopping -----------------------------------------------------------------


def start_worker(url: str, namespace: str, done_log: Path, output: Path, *options: str) -> subprocess.Popen[bytes]:
    """`zizq worker tests.jobs_app:router`; handlers append their tag to
    ``done_log`` when they end (and to ``done_log`` with the suffix
    ``.started`` when they start), and the worker's output goes to
    ``output``."""
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "zizq", "worker", "tests.jobs_app:router", "--url", url,
             "--namespace", namespace, *options],
            cwd=ROOT,
            env={**os.environ, "ZIZQ_TEST_LOG": str(done_log),
                 "ZIZQ_TEST_STARTED": str(done_log.with_suffix(".started"))},
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


def poll(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.01)


def test_sigterm_hands_back_unstarted_jobs_at_once(redis_server: RedisServer, namespace: str, tmp_path: Path) -> None:
    """One handler runs, four jobs wait in the worker (-c 1 --prefetch 5).
    SIGTERM: the four are ready again within a second, while the running one
    goes on to its end; then the worker sends its ack and exits 0."""
    done, output = tmp_path / "done.log", tmp_path / "worker.out"
    done.touch()
    with zizq.Client.from_url(redis_server.url, namespace) as client:
        jobs = client.enqueue_many([Sleep(seconds=3.0, tag=f"job{i}") for i in range(5)])
        ids = [j.id for j in jobs]

        def statuses() -> list[str]:
            return [j.status if j else "gone" for j in client.run(client.core.get(ids))]

        proc = start_worker(redis_server.url, namespace, done, output, "-c", "1", "--prefetch", "5")
        try:
            poll("the worker takes all five jobs", lambda: statuses() == ["in_flight"] * 5, 15)
            started = done.with_suffix(".started")
            poll("a handler runs", lambda: started.exists() and started.read_text() == "job0\n", 15)
            proc.send_signal(signal.SIGTERM)
            poll("the four waiting jobs are handed back", lambda: statuses()[1:] == ["ready"] * 4, 1.0)
            assert statuses()[0] == "in_flight" and done.read_text() == "", "the running job was cut short"
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, output.read_text()
        assert done.read_text().split() == ["job0"]
        assert statuses() == ["gone"] + ["ready"] * 4  # job0 completed (and was deleted: retention 0)
        assert [client.get_job(i).attempts for i in ids[1:]] == [0] * 4


@pytest.mark.parametrize("redis_up", [True, False], ids=["redis-up", "redis-down"])
def test_second_sigterm_exits_at_once(
    redis_factory: Callable[..., RedisServer], namespace: str, tmp_path: Path, redis_up: bool
) -> None:
    """A second SIGTERM while a handler runs on (the shutdown timeout is 30 s)
    ends the worker within 2 s, with exit code 1. With Redis up, every job it
    held is handed back; with Redis stopped, that is left to the lease."""
    server = redis_factory()
    done, output = tmp_path / "done.log", tmp_path / "worker.out"
    done.touch()
    with zizq.Client.from_url(server.url, namespace, retry_for=0) as client:
        jobs = client.enqueue_many([Sleep(seconds=60.0, tag=f"job{i}") for i in range(3)])
        ids = [j.id for j in jobs]

        def statuses() -> list[str]:
            return [j.status if j else "gone" for j in client.run(client.core.get(ids))]

        proc = start_worker(server.url, namespace, done, output, "-c", "1", "--prefetch", "3")
        try:
            poll("the worker takes the jobs", lambda: statuses() == ["in_flight"] * 3, 15)
            started = done.with_suffix(".started")
            poll("a handler runs", lambda: started.exists() and started.read_text() == "job0\n", 15)
            if not redis_up:
                server.stop()
            proc.send_signal(signal.SIGTERM)
            poll("the worker begins its graceful stop", lambda: "stopping:" in output.read_text(), 10)
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            proc.wait(5)
            assert time.monotonic() - signalled < 2.0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 1, output.read_text()
        assert "Traceback" not in output.read_text(), output.read_text()
        if redis_up:
            assert statuses() == ["ready"] * 3


LATE_SIGNALS = """
import asyncio, time
from zizq.worker.stop import run_until_signalled

async def main() -> None:
    asyncio.get_running_loop().run_in_executor(None, time.sleep, 1.0)  # closing the loop waits for it
    print("closing", flush=True)

run_until_signalled(main, lambda: print("stop", flush=True))
print("ended", flush=True)
"""


def test_signals_while_the_run_closes_do_not_kill_it() -> None:
    """A worker's run ends by closing its event loop, which waits for its
    threads; SIGTERM and SIGINT then (a second signal at the end of a
    graceful stop) neither kill the process nor raise KeyboardInterrupt:
    they reach the stop function, and the process ends as it would have."""
    proc = subprocess.Popen(
        [sys.executable, "-c", LATE_SIGNALS], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"closing\n"
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (proc.returncode, out) == (0, b"stop\nstop\nended\n")


def test_first_sigterm_with_redis_down_ends_within_the_shutdown_timeout(
    redis_factory: Callable[..., RedisServer], namespace: str, tmp_path: Path
) -> None:
    """Redis is stopped while a handler runs on past --shutdown-timeout 2:
    the graceful stop cannot hand anything back, and ends all the same soon
    after the timeout, with exit code 0 (the lease hands the job back)."""
    server = redis_factory()
    done, output = tmp_path / "done.log", tmp_path / "worker.out"
    done.touch()
    with zizq.Client.from_url(server.url, namespace) as client:
        job = client.enqueue(Sleep(seconds=60.0, tag="slow"))
        proc = start_worker(server.url, namespace, done, output, "-c", "1", "--shutdown-timeout", "2")
        try:
            poll("the worker takes the job", lambda: client.get_job(job.id).status == "in_flight", 15)
            server.stop()
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            proc.wait(10)
            assert time.monotonic() - signalled < 2.0 + 2.5  # the timeout, then one try for each last call
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, output.read_text()
    assert "Traceback" not in output.read_text(), output.read_text()


def test_worker_warns_once_about_a_queue_nothing_names(
    redis_server: RedisServer, namespace: str, tmp_path: Path
) -> None:
    output = tmp_path / "worker.out"
    # tests.jobs_app routes Sleep, whose QUEUE is "default"; no job was ever in "emials".
    proc = start_worker(redis_server.url, namespace, tmp_path / "done.log", output, "-q", "default,emials")
    try:
        poll("the warning", lambda: "a typo?" in output.read_text(), 15)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    warnings = [line for line in output.read_text().splitlines() if "a typo?" in line]
    assert len(warnings) == 1 and " WARNING zizq.worker: queue 'emials':" in warnings[0], output.read_text()

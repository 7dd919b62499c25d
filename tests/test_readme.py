"""The README's examples run as written. They use the namespaces they name
(the default one, mostly), so each test gets a Redis server of its own."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import zizq

from .conftest import ROOT, RedisServer

README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def example_env(tmp_path: Path, server: RedisServer) -> dict[str, str]:
    """The examples' environment: the examples' directory on the path, then
    this checkout (its zizq, not whichever one the environment installed).
    Any warning is an error: the examples must run without one."""
    path = os.pathsep.join([str(tmp_path), str(ROOT)])
    return {**os.environ, "ZIZQ_REDIS_URL": server.url, "PYTHONPATH": path, "PYTHONWARNINGS": "error"}


def test_quick_start(tmp_path: Path, redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    jobs_py, enqueue_py = blocks(section("Quick start"), "python")
    [command] = blocks(section("Quick start"), "sh")
    (tmp_path / "jobs.py").write_text(jobs_py)
    (tmp_path / "enqueue.py").write_text(enqueue_py)
    env = example_env(tmp_path, server)
    out = subprocess.run(
        [sys.executable, "enqueue.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    job_id, status = out.stdout.split()
    assert status == "ready"

    argv = shlex.split(command.strip())
    assert argv[0] == "zizq"
    worker = subprocess.Popen(
        [sys.executable, "-m", "zizq", *argv[1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert worker.stdout is not None
        deadline = time.monotonic() + 15
        line = ""
        while "sending" not in line:
            assert time.monotonic() < deadline, "the worker printed nothing"
            line = worker.stdout.readline()
        assert line.strip() == "sending 'Welcome' to ada@example.com"
        with zizq.Client.from_url(server.url) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.get_job(job_id)
                except zizq.JobNotFound:
                    break  # done and deleted (completed retention 0)
                assert time.monotonic() < deadline
                time.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=15)
    assert worker.returncode == 0


def test_results_progress_and_cancel(tmp_path: Path, redis_factory: Callable[[], RedisServer]) -> None:
    """The section's handlers under a real worker; its client script
    waits for a result, watches progress, cancels, and times out."""
    server = redis_factory()
    title = "Enqueue, wait for the result, watch progress, cancel"
    report_py, follow_py = blocks(section(title), "python")
    [command] = blocks(section(title), "sh")
    (tmp_path / "report.py").write_text(report_py)
    (tmp_path / "follow.py").write_text(follow_py)
    env = example_env(tmp_path, server)
    argv = shlex.split(command.strip())
    assert argv[0] == "zizq"
    worker = subprocess.Popen(
        [sys.executable, "-m", "zizq", *argv[1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        out = subprocess.run(
            [sys.executable, "follow.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=15)
    assert out.returncode == 0, out.stderr
    progress, result, cancelled, timed_out = out.stdout.splitlines()
    assert re.fullmatch(r"\d+% image \d+ of 10", progress), progress
    assert result == "completed {'resized': 10}"
    assert cancelled == "dead True"
    assert timed_out.endswith("did not finish within the timeout of 0.5s")
    assert worker.returncode == 0


def test_other_examples_run(tmp_path: Path, redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    (tmp_path / "jobs.py").write_text(blocks(section("Quick start"), "python")[0])
    env = example_env(tmp_path, server)
    for title in ("Defining jobs", "Enqueueing", "Workers", "Job lifecycle", "Operating zizq"):
        for i, code in enumerate(blocks(section(title), "python")):
            path = tmp_path / f"example_{i}.py"
            path.write_text(code)
            out = subprocess.run(
                [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
            )
            assert out.returncode == 0, f"{title} example {i}:\n{out.stderr}"


def test_the_tracing_example_prints_one_trace(tmp_path: Path, redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    (tmp_path / "jobs.py").write_text(blocks(section("Quick start"), "python")[0])
    tracing = README[README.index("### Tracing with OpenTelemetry\n") :]
    (tmp_path / "tracing.py").write_text(blocks(tracing, "python")[0])
    out = subprocess.run(
        [sys.executable, "tracing.py"], cwd=tmp_path, env=example_env(tmp_path, server), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    spans = [line.split(None, 2) for line in out.stdout.splitlines() if not line.startswith("sending")]
    assert [(kind, name) for _, kind, name in spans] == [
        ("PRODUCER", "send emails"),
        ("INTERNAL", "checkout"),
        ("CONSUMER", "process emails"),
    ]
    assert len({trace_id for trace_id, _, _ in spans}) == 1


def test_testing_guide_runs_under_pytest(tmp_path: Path) -> None:
    """The guide's conftest.py starts a redis-server of its own; its tests
    drain the Quick start's queue."""
    conftest_py, test_py = blocks(section("Testing your jobs"), "python")
    (tmp_path / "jobs.py").write_text(blocks(section("Quick start"), "python")[0])
    (tmp_path / "conftest.py").write_text(conftest_py)
    (tmp_path / "test_example.py").write_text(test_py)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    env.pop("ZIZQ_REDIS_URL", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout


# Stands in for sentry-sdk (not a dependency): records what would be sent.
SENTRY_STAND_IN = """
captured = []


def init(**options):
    pass


def capture_exception(error=None, **scope):
    captured.append((error, scope))
    return "event-id"
"""

SENTRY_DRIVER = """
import zizq
import zizq.testing

import errors  # the README's block: subscribes to job_end
import sentry_sdk
from jobs import SendEmail

router = zizq.Router()


@router.handler
def send_email(job: SendEmail) -> None:
    raise ValueError(f"no mailbox for {job.to}")


client = zizq.Client.from_url(namespace="sentry-example")
dies = client.enqueue(SendEmail(to="ada@example.com", subject="Hi"), retry_limit=0)
client.enqueue(SendEmail(to="bob@example.com", subject="Hi"))  # fails, with retries left: not reported
assert zizq.testing.drain(client, router, raise_errors=False) == 2
[(error, scope)] = sentry_sdk.captured
assert isinstance(error, ValueError) and str(error) == "no mailbox for ada@example.com"
assert scope["tags"] == {"zizq.queue": "emails", "zizq.type": "send_email"}
assert scope["extra"] == {"job_id": dies.id, "attempts": 1, "namespace": "sentry-example"}
print("reported", scope["extra"]["job_id"])
"""


def test_app_examples(tmp_path: Path, redis_factory: Callable[[], RedisServer]) -> None:
    """The FastAPI and Django examples need packages zizq does not depend
    on: they are only compiled. The Sentry one runs, with a stand-in for
    sentry_sdk, and reports the job that died."""
    codes = blocks(section("Using zizq in an app"), "python")
    assert len(codes) == 5
    for i, code in enumerate(codes):
        compile(code, f"app example {i}", "exec")
    [sentry_block] = [c for c in codes if "import sentry_sdk" in c]
    server = redis_factory()
    (tmp_path / "jobs.py").write_text(blocks(section("Quick start"), "python")[0])
    (tmp_path / "errors.py").write_text(sentry_block)
    (tmp_path / "sentry_sdk.py").write_text(SENTRY_STAND_IN)
    (tmp_path / "driver.py").write_text(SENTRY_DRIVER)
    out = subprocess.run(
        [sys.executable, "driver.py"],
        cwd=tmp_path,
        env=example_env(tmp_path, server),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("reported ")

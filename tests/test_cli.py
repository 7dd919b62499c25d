"""The `zizq` command line, run as a real subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import zizq

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


def test_worker_runs_jobs_and_stops_gracefully_on_sigterm(
    redis_server: RedisServer, namespace: str, tmp_path: Path
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
            proc.send_signal(signal.SIGTERM)  # the slow job is running: it must be let finish
            output, _ = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, output
        assert log.read_text().split() == ["quick", "slow"]
        with pytest.raises(zizq.JobNotFound):
            client.get_job(slow.id)

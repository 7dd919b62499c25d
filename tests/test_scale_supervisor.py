"""`zizq worker -p N`: N worker processes under a supervisor that restarts a
crashed one, forwards SIGTERM, and exits 0 after a graceful shutdown; a
worker process whose supervisor dies stops by itself."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

import zizq

from .conftest import ROOT, RedisServer
from .fault_harness import Work, outcome
from .scale_harness import wait_until

pytestmark = [pytest.mark.scale, pytest.mark.timeout(120)]


def supervisor(url: str, namespace: str, recorder_url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "zizq", "worker", "tests.fault_harness:router", "-p", "2", "-c", "2",
             "--url", url, "--namespace", namespace, "--log-level", "INFO"],
            cwd=ROOT,
            env={**os.environ, "ZIZQ_FAULT_RECORDER": recorder_url},
            stderr=stderr,
        )  # fmt: skip


def started(log: Path) -> list[int]:
    return [int(pid) for pid in re.findall(r"started worker process (\d+)", log.read_text())]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in state  # exited, not yet reaped by whoever adopted it


def ran_jobs(recorder: redis.Redis, ids: list[str]) -> set[int]:
    pipe = recorder.pipeline(transaction=False)
    for job_id in ids:
        pipe.lrange("finished:" + job_id, 0, -1)
    return {int(pid) for runs in pipe.execute() for pid in runs}


def test_restarts_a_crashed_worker_and_shuts_down_gracefully(
    tmp_path: Path, redis_server: RedisServer, client: zizq.Client, redis_factory: Callable[..., RedisServer]
) -> None:
    recorder_server = redis_factory()
    recorder = redis.Redis(port=recorder_server.port)
    log = tmp_path / "supervisor.stderr"
    proc = supervisor(redis_server.url, client.namespace, recorder_server.url, log)
    try:
        wait_until("two worker processes started", lambda: len(started(log)) == 2, 20)
        first, second = started(log)
        ids = [j.id for j in client.enqueue_many([Work(n=i, sleep=0.01) for i in range(200)])]
        wait_until("both processes ran jobs", lambda: {first, second} <= ran_jobs(recorder, ids), 20)

        os.kill(first, signal.SIGKILL)
        wait_until("the killed process was replaced", lambda: len(started(log)) == 3, 20)
        assert "exited with -9; restarting it" in log.read_text()
        replacement = started(log)[2]
        more = [j.id for j in client.enqueue_many([Work(n=i, sleep=0.01) for i in range(200)])]
        wait_until("the replacement runs jobs", lambda: replacement in ran_jobs(recorder, more), 20)

        # The killed process's jobs come back after its lease (5 s).
        wait_until("every job done", lambda: outcome(client, recorder, ids + more).done, 30)
        assert not outcome(client, recorder, ids + more).missing

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
        assert all(gone(pid) for pid in (second, replacement))
        assert log.read_text().count("exited with 0") == 2
    finally:
        if proc.poll() is None:
            proc.kill()
        recorder.close()


def test_worker_processes_stop_when_their_supervisor_dies(
    tmp_path: Path, redis_server: RedisServer, namespace: str, redis_factory: Callable[..., RedisServer]
) -> None:
    recorder_server = redis_factory()
    log = tmp_path / "supervisor.stderr"
    proc = supervisor(redis_server.url, namespace, recorder_server.url, log)
    try:
        wait_until("two worker processes started", lambda: len(started(log)) == 2, 20)
        children = started(log)
        proc.kill()
        proc.wait()
        wait_until("the orphaned worker processes stopped", lambda: all(gone(pid) for pid in children), 20)
        assert log.read_text().count("is gone; stopping") == 2
        assert len(started(log)) == 2  # and none of them became a supervisor itself
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in started(log):
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_bad_option_fails_once_before_any_process_starts(tmp_path: Path, redis_server: RedisServer) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "zizq", "worker", "tests.fault_harness:router", "-p", "2", "-c", "0",
         "--url", redis_server.url],
        cwd=ROOT, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1
    assert "concurrency 0 must be an integer of at least 1" in out.stderr
    assert "started worker process" not in out.stderr

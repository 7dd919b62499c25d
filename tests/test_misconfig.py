"""Misconfiguration is not an outage: a wrong password, an unknown host, a
database out of range end the CLI and the worker at once with one line; a
closed port fails a CLI command fast and is retried by a worker (one log
line a try, with the real time waited) until a signal stops it. And no
traceback from the CLI for anything the user can fix."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import zizq

from .conftest import ROOT, RedisServer, free_port
from .jobs_app import Sleep

pytestmark = pytest.mark.timeout(60)
PASSWORD = "s3cret"


@pytest.fixture(scope="module")
def locked() -> Iterator[RedisServer]:
    """A redis-server that asks for a password."""
    server = RedisServer()
    with redis.Redis(port=server.port) as admin:
        admin.config_set("requirepass", PASSWORD)
    yield server
    server.close()


# name -> (URL, what the one line must say)
Case = Callable[[RedisServer, RedisServer], tuple[str, str]]
FATAL: dict[str, Case] = {
    "wrong-password": lambda s, lk: (f"redis://:wrong@127.0.0.1:{lk.port}/0", "authentication failed"),
    "no-password": lambda s, lk: (f"redis://127.0.0.1:{lk.port}/0", "authentication failed"),
    "unknown-host": lambda s, lk: ("redis://no-such-host.invalid:6379/0", "host not found"),
    "db-out-of-range": lambda s, lk: (f"redis://127.0.0.1:{s.port}/99", "database 99"),
}


def cli(*args: str, cwd: Path = ROOT, pre: str = "") -> tuple[subprocess.CompletedProcess[str], float]:
    """``zizq ARGS`` in a subprocess (after running the Python code ``pre``);
    the result and the seconds it took."""
    code = f"import sys; {pre}\nfrom zizq.cli import main; sys.exit(main())"
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return out, time.monotonic() - started


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    """The one error line the command printed (it exited 1, no traceback)."""
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zizq: error: "), out.stderr
    return lines[0]


@pytest.mark.parametrize("command", [("queues",), ("jobs", "list")], ids=["queues", "jobs-list"])
@pytest.mark.parametrize("case", [*FATAL, "closed-port"])
def test_cli_says_what_is_wrong_in_one_line_at_once(
    redis_server: RedisServer, locked: RedisServer, case: str, command: tuple[str, ...]
) -> None:
    if case == "closed-port":
        url, says = f"redis://127.0.0.1:{free_port()}/0", "connection refused"
    else:
        url, says = FATAL[case](redis_server, locked)
    out, took = cli(*command, "--url", url)
    line = one_line(out)
    assert says in line.lower() and took < 5, (line, took)
    assert ":wrong@" not in line  # the password is masked


@pytest.mark.parametrize("case", list(FATAL))
def test_worker_ends_at_once_with_one_line(redis_server: RedisServer, locked: RedisServer, case: str) -> None:
    url, says = FATAL[case](redis_server, locked)
    out, took = cli("worker", "tests.jobs_app:router", "--url", url)
    line = one_line(out)  # nothing logged before it: no start line, no retries
    assert says in line.lower() and took < 5, (line, took)


def start_worker(url: str, namespace: str, output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "zizq", "worker", "tests.jobs_app:router", "--url", url, "--namespace", namespace],
            cwd=ROOT,
            env={**os.environ, "ZIZQ_TEST_LOG": str(output.with_suffix(".done"))},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until(what: str, predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.02)


def stop_within(proc: subprocess.Popen[bytes], signum: int, seconds: float) -> int:
    """Send ``signum``; the exit code, which must come within ``seconds``."""
    proc.send_signal(signum)
    signalled = time.monotonic()
    try:
        code = proc.wait(seconds + 5)
    finally:
        if proc.poll() is None:
            proc.kill()
    took = time.monotonic() - signalled
    assert took < seconds, f"the worker took {took:.1f}s to stop"
    return code


def waited(text: str) -> list[float]:
    """The seconds each retry line says Redis has been unreachable."""
    return [float(s) for s in re.findall(r"redis unavailable for (\d+\.\d)s", text)]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_worker_retries_a_closed_port_at_start_up_and_stops_on_a_signal(
    namespace: str, tmp_path: Path, signum: int
) -> None:
    output = tmp_path / "worker.out"
    proc = start_worker(f"redis://127.0.0.1:{free_port()}/0", namespace, output)
    wait_until("three retries", lambda: len(waited(output.read_text())) >= 3, 15)
    assert stop_within(proc, signum, 2.5) == 0, output.read_text()
    text = output.read_text()
    lines = text.strip().splitlines()
    assert "Traceback" not in text and "cron" not in text and "serving" not in text, text
    # One line a try, each with the time waited so far (0.5, then 1 more, 2 more...).
    tries = waited(text)
    assert len(tries) == sum("redis unavailable" in line for line in lines), text
    assert tries == sorted(tries) and tries[0] < 0.5 and 1.0 <= tries[2] < 3.0, text
    assert "connection refused" in text.lower(), text


def test_worker_logs_an_outage_once_a_try_and_stops_on_sigint(
    redis_factory: Callable[..., RedisServer], namespace: str, tmp_path: Path
) -> None:
    """Redis goes away under a running worker: one line a retry, none from
    cron; SIGINT is acted on within 2 s."""
    server = redis_factory()
    output = tmp_path / "worker.out"
    with zizq.Client.from_url(server.url, namespace) as client:
        client.enqueue(Sleep(seconds=0.0, tag="quick"))
        proc = start_worker(server.url, namespace, output)
        try:
            wait_until("the job is done", lambda: output.with_suffix(".done").exists(), 15)
        except BaseException:
            proc.kill()
            raise
    server.stop()

    def retries(text: str) -> list[str]:
        """The take loop's lines (the heartbeat and the workflow loop log their own)."""
        return [line for line in text.splitlines() if "redis unavailable" in line and "taking jobs" in line]

    wait_until("three retries", lambda: len(retries(output.read_text())) >= 3, 15)
    assert stop_within(proc, signal.SIGINT, 2.5) == 0, output.read_text()
    text = output.read_text()
    assert "Traceback" not in text and "cron tick skipped" not in text, text
    assert len(retries(text)) >= 3 and all(re.search(r"for \d+\.\ds", line) for line in retries(text)), text


@pytest.mark.parametrize("front", ["sync", "async"])
async def test_client_gives_up_saying_how_long_it_tried(front: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with pytest.raises(zizq.RedisUnavailable) as caught:
        if front == "sync":
            with zizq.Client.from_url(url, retry_for=1.2) as client:
                client.get_job("0" * 26)
        else:
            aclient = zizq.AsyncClient.from_url(url, retry_for=1.2)
            try:
                await aclient.get_job("0" * 26)
            finally:
                await aclient.close()
    took = time.monotonic() - started
    said = re.search(r"unavailable for (\d+\.\d)s", str(caught.value))
    assert said is not None and abs(float(said.group(1)) - took) < 0.3, (str(caught.value), took)


# -- no traceback for what the user can fix -------------------------------------


def test_metrics_without_the_extra(redis_server: RedisServer) -> None:
    pre = "sys.modules['prometheus_client'] = None"
    out, _ = cli("worker", "tests.jobs_app:router", "--metrics-port", "0", "--url", redis_server.url, pre=pre)
    assert "pip install 'zizq[metrics]'" in one_line(out)


def test_metrics_port_in_use(redis_server: RedisServer) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out, _ = cli(
            "worker", "tests.jobs_app:router", "--metrics-port", str(port), "--metrics-addr", "127.0.0.1",
            "--url", redis_server.url,
        )  # fmt: skip
    line = one_line(out)
    assert f"--metrics-port {port}" in line and "in use" in line, line


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("import os\n\ndef broken(:\n    pass\n", ["line 3", "SyntaxError", "def broken(:"]),
        ("import os\n\nraise RuntimeError('no config file')\n", ["line 3", "RuntimeError: no config file"]),
        ("import helper_of_app\n", ["line 1", "helper_of_app.py", "line 2", "KeyError: 'HOME_OF_APP'"]),
        ("import no_such_module_of_app\n", ["line 1", "ModuleNotFoundError", "no_such_module_of_app"]),
    ],
    ids=["syntax-error", "raises", "raises-deeper", "imports-a-missing-module"],
)
def test_a_handler_module_that_fails_to_import_shows_the_users_file(
    redis_server: RedisServer, tmp_path: Path, source: str, says: list[str]
) -> None:
    (tmp_path / "app_of_user.py").write_text(source)
    (tmp_path / "helper_of_app.py").write_text("import os\nos.environ['HOME_OF_APP']\n")
    out, _ = cli("worker", "app_of_user:router", "--url", redis_server.url, cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("zizq: error: cannot import 'app_of_user'"), out.stderr
    assert str(tmp_path / "app_of_user.py") in out.stderr, out.stderr
    assert "importlib" not in out.stderr and "zizq/cli/" not in out.stderr, out.stderr
    for text in says:
        assert text in out.stderr, out.stderr
    assert len(out.stderr.splitlines()) <= 8, out.stderr


def test_a_missing_handler_module_is_one_line(redis_server: RedisServer, tmp_path: Path) -> None:
    out, _ = cli("worker", "no_such_app:router", "--url", redis_server.url, cwd=tmp_path)
    assert "cannot import 'no_such_app': no module named 'no_such_app'" in one_line(out).lower()


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("tests.jobs_app:SendEmail", "'tests.jobs_app:SendEmail' is type, not a zizq.Router"),
        ("tests.jobs_app:routr", "module 'tests.jobs_app' has no attribute 'routr' (its Routers: router)"),
    ],
)
def test_a_name_that_is_not_a_router_is_one_line(redis_server: RedisServer, spec: str, says: str) -> None:
    out, _ = cli("worker", spec, "--url", redis_server.url)
    assert says in one_line(out)


def test_worker_acts_on_sigint_while_redis_stalls(
    redis_factory: Callable[..., RedisServer], namespace: str, tmp_path: Path
) -> None:
    """Redis stops answering (SIGSTOP) while the worker waits for work: the
    stop begins within 2 s all the same (the take Redis does not answer is
    cut short), and the worker exits once its last calls time out: the
    heartbeat's beat in flight (lease + 1 s), then one try to leave."""
    server = redis_factory()
    assert server.proc is not None
    output = tmp_path / "worker.out"
    with zizq.Client.from_url(server.url, namespace) as client:
        client.enqueue(Sleep(seconds=0.0, tag="quick"))
    proc = start_worker(server.url, namespace, output)
    try:
        wait_until("the job is done", lambda: output.with_suffix(".done").exists(), 15)
        time.sleep(0.2)  # waiting for work
        server.proc.send_signal(signal.SIGSTOP)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        wait_until("the stop begins", lambda: "stopping:" in output.read_text(), 2.5)
        assert proc.wait(5 + 1 + 3) == 0, output.read_text()
    finally:
        server.proc.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in output.read_text(), output.read_text()

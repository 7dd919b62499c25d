"""zizq.testing.RedisServer: a throwaway redis-server for tests and the
benchmark, started for real."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis

import zizq
from zizq.testing import RedisServer

from .conftest import ROOT

linux_only = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")


def refuses(port: int) -> bool:
    """True when nothing answers on ``port`` any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_server_answers_at_its_url_until_closed() -> None:
    with RedisServer() as server:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        with redis.Redis.from_url(server.url) as r:
            r.set("k", "v")
            assert r.get("k") == b"v"
            assert r.config_get("save") == {"save": ""}
            assert r.config_get("appendonly") == {"appendonly": "no"}
        assert Path(server.dir).is_dir()
        assert os.getsid(server.proc.pid) == os.getsid(0)  # type: ignore[union-attr]
    assert server.proc is not None and server.proc.returncode is not None
    assert not Path(server.dir).exists()
    assert refuses(server.port)


def test_args_override_the_defaults_and_a_restart_keeps_port_dir_and_data() -> None:
    with RedisServer("--appendonly", "yes", "--appendfsync", "always") as server:
        port, data_dir = server.port, server.dir
        with redis.Redis(port=port) as r:
            assert r.config_get("appendonly") == {"appendonly": "yes"}
            r.set("kept", "1")
        server.stop()
        assert server.proc is not None and server.proc.returncode == 0
        assert refuses(port)
        server.start()
        assert (server.port, server.dir) == (port, data_dir)
        with redis.Redis(port=port) as r:
            assert r.get("kept") == b"1"


def test_a_server_that_does_not_start_raises_and_leaves_no_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"redis-server on port \d+ did not start"):
        RedisServer("--no-such-directive", "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("timeout", [0, -1.5, "10", True])
def test_a_bad_timeout_is_refused_before_anything_starts(timeout: object) -> None:
    with pytest.raises(zizq.ValidationError, match=rf"timeout {re.escape(repr(timeout))} must be a number of seconds"):
        RedisServer(timeout=timeout)  # type: ignore[arg-type]


@linux_only
def test_cpus_pins_the_server() -> None:
    cpu = min(os.sched_getaffinity(0))
    with RedisServer(cpus={cpu}) as server:
        assert server.proc is not None
        assert os.sched_getaffinity(server.proc.pid) == {cpu}


@linux_only
def test_die_with_parent_ends_the_server_with_a_killed_process() -> None:
    """The process that started the server is killed outright (SIGKILL: no
    cleanup runs); the server, in a session of its own, ends too."""
    code = (
        "import os, signal, zizq.testing\n"
        "s = zizq.testing.RedisServer(die_with_parent=True)\n"
        "print(s.port, s.dir, os.getsid(s.proc.pid) == s.proc.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == -9, out.stderr
    port, data_dir, own_session = out.stdout.split()
    shutil.rmtree(data_dir, ignore_errors=True)  # nothing else removes it after a SIGKILL
    assert own_session == "True"
    deadline = time.monotonic() + 10
    while not refuses(int(port)):
        assert time.monotonic() < deadline, "redis-server outlived the process that started it"
        time.sleep(0.02)

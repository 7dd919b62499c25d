"""The benchmark's processes: its redis-server, pinning, the children that
run one measurement each (stopped as a group, dying with the harness), and
the result line they print.

Every measurement runs in a fresh Python subprocess, ``bench/run.py --child
WORKLOAD``; its environment decides which hot path zizq loads:
``ZIZQ_NO_EXTENSIONS=1`` for the pure-Python twin, unset for the Cython
extension.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from zizq.testing import RedisServer

BENCH = Path(__file__).resolve().parent
RUN_PY = BENCH / "run.py"  # the entry point; also what every zizq child runs
RESULT_MARK = "ZIZQ-BENCH-RESULT "
CHILD_TIMEOUT_S = 300.0
MODES = ("ext", "pure")


# ---------------------------------------------------------------------------
# Processes: every child dies with the harness (PDEATHSIG), and lives in its
# own process group so it can be stopped together with its own children.

try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # not Linux/glibc: fall back to explicit cleanup only
    _LIBC = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _LIBC is not None:
        with contextlib.suppress(Exception):
            _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def popen(args: list[str], cpus: set[int] | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
    def setup() -> None:
        _die_with_parent()
        if cpus:
            os.sched_setaffinity(0, cpus)

    return subprocess.Popen(args, start_new_session=True, preexec_fn=setup, **kwargs)


def pinning(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """CPUs for (redis-server, benchmark processes): with ``--pin`` and two or
    more usable CPUs, Redis gets the first and the benchmark the rest."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def _stop_group(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
    """SIGTERM the process group led by ``proc``, give it ``grace`` seconds,
    then SIGKILL what is left of the group. The leader is reaped last, so its
    id (the group's id) cannot have been reused when the group is signalled."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class BenchServer(RedisServer):
    """The benchmark's redis-server (loopback, no persistence), pinned to
    ``cpus``, ending with the harness; ``conn`` is the connection the
    harness flushes it through before every measurement."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        super().__init__(cpus=cpus, die_with_parent=True)
        self.conn = redis.Redis(host="127.0.0.1", port=self.port)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()
        super().close()


class ChildFailed(Exception):
    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def communicate(proc: subprocess.Popen[Any], what: str) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise ChildFailed(f"{what}: no result in {CHILD_TIMEOUT_S:.0f} s (stopped)", timed_out=True) from None
    except BaseException:  # Ctrl-C: stop the child and its children
        _stop_group(proc)
        raise
    return out.decode(errors="replace"), err.decode(errors="replace")


def last_error(err: str) -> str:
    lines = [ln.strip() for ln in err.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no error output"


def run_child(server: BenchServer, workload: str, mode: str | None, jobs: int, cpus: set[int] | None) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("ZIZQ_NO_EXTENSIONS", None)
    if mode == "pure":
        env["ZIZQ_NO_EXTENSIONS"] = "1"
    server.conn.flushall()
    args = [sys.executable, str(RUN_PY), "--child", workload, "--url", server.url, "--jobs", str(jobs)]
    proc = popen(args, cpus=cpus, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = communicate(proc, f"zizq {workload} ({mode or 'no zizq'})")
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(err)
        raise ChildFailed(f"exit code {proc.returncode}: {last_error(err)}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    if mode is not None and result["extension"] != (mode == "ext"):
        raise ChildFailed(
            f"{workload}: asked for the {mode} path but zizq loaded "
            f"{'the extension' if result['extension'] else 'the pure-Python twin'}"
        )
    return result

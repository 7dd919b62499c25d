"""The peers: their own virtual environment (bench/.venv-peers), and their
children, run through one driver (``python -m peers.driver``, from bench/)
with one adapter each in bench/peers/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import BENCH, RESULT_MARK, BenchServer, ChildFailed, communicate, last_error, popen

PEERS_VENV = BENCH / ".venv-peers"
PEERS_REQUIREMENTS = BENCH / "requirements-peers.txt"
PEERS_REQUIREMENTS_NODEPS = BENCH / "requirements-peers-nodeps.txt"
PEER_LIBS = ("arq", "saq", "rq", "rq-fork", "dramatiq", "celery", "huey", "taskiq", "bullmq")
LIBS = ("zizq", *PEER_LIBS)
# rq-fork enqueues exactly as rq does (same Queue API), so those cells are
# measured once, in the rq row.
SAME_AS = {("rq-fork", "enqueue_single"): "rq", ("rq-fork", "enqueue_bulk"): "rq", ("rq-fork", "memory"): "rq"}
PEER_WORKLOADS = ("enqueue_single", "enqueue_bulk", "process", "latency", "memory")
RQ_FORK_PROCESS_DIVISOR = 10  # a fork per job: ~75 jobs/s here; 10,000 jobs would take over 2 min a run


def _requirements_stamp() -> str:
    import hashlib

    h = hashlib.sha256()
    for path in (PEERS_REQUIREMENTS, PEERS_REQUIREMENTS_NODEPS):
        h.update(path.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def ensure_peers_venv() -> Path:
    """bench/.venv-peers with the pinned peers, made once (and again when the
    requirement files change). Never the project's .venv: the peers' own
    dependencies (arq pins redis<6, Celery pulls kombu, ...) stay out of it."""
    py = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".bench-requirements"
    want = _requirements_stamp()
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    base = getattr(sys, "_base_executable", None) or sys.executable
    print(f"setting up {PEERS_VENV} (the peers' own virtual environment) ...", file=sys.stderr, flush=True)
    if PEERS_VENV.exists():
        shutil.rmtree(PEERS_VENV)
    subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(PEERS_REQUIREMENTS)], check=True)
    # arq 0.28.0 declares redis<6, which no other peer can share (bullmq 3.4
    # wants >=6.2, taskiq-redis 1.2 >=8); it runs on the redis-py 8.1 above.
    subprocess.run([*pip, "--no-deps", "-r", str(PEERS_REQUIREMENTS_NODEPS)], check=True)
    stamp.write_text(want)
    return py


def _peer_args(py: Path, lib: str, workload: str, url: str, jobs: int, *extra: str) -> list[str]:
    return [
        str(py),
        "-m",
        "peers.driver",
        "--lib",
        lib,
        "--workload",
        workload,
        "--url",
        url,
        "--jobs",
        str(jobs),
        *extra,
    ]


def _peer_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTHONPATH", "ZIZQ_NO_EXTENSIONS", "VIRTUAL_ENV"):
        env.pop(var, None)
    return env


def peer_info(py: Path, lib: str) -> dict[str, Any]:
    """Import the adapter (and so the library) once: version, batch API,
    worker set-up. Raises if it cannot be imported."""
    proc = subprocess.run(
        _peer_args(py, lib, "info", "redis://127.0.0.1:1/0", 0, "--versions"),
        cwd=BENCH,
        env=_peer_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError((proc.stderr.strip().splitlines() or ["no output"])[-1])
    info: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    return info


def run_peer_child(
    server: BenchServer, py: Path, lib: str, workload: str, jobs: int, cpus: set[int] | None
) -> dict[str, Any]:
    server.conn.flushall()
    proc = popen(
        _peer_args(py, lib, workload, server.url, jobs),
        cpus=cpus,
        cwd=BENCH,
        env=_peer_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = communicate(proc, f"{lib} {workload}")
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise ChildFailed(f"exit code {proc.returncode}: {last_error(err)}")
    result: dict[str, Any] = json.loads(lines[-1][len(RESULT_MARK) :])
    return result

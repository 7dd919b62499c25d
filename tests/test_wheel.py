"""The sdist builds a wheel that ships the Lua scripts and (unless
ZIZQ_NO_EXTENSIONS=1) the compiled extension: build the sdist, the wheel from
it, install that into a fresh virtual environment, and do one enqueue -> work
-> done round trip with it. That environment is a base install (no extras):
the CLI's tables work there, and each optional piece says in one line which
extra it needs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, RedisServer

ROUND_TRIP = """
import asyncio, sys, zizq, zizq._hotpath, zizq._protocol.scripts

class Ping(zizq.JobKind):
    NAME = "ping"
    n: int

router = zizq.Router()
seen = []

@router.handler
async def ping(job: Ping) -> None:
    seen.append(job.n)

async def main() -> None:
    client = zizq.AsyncClient.from_url(sys.argv[1], sys.argv[2])
    job = await client.enqueue(Ping(n=41))
    worker = zizq.Worker(client, router)
    task = asyncio.create_task(worker.run_async())
    for _ in range(500):
        if seen:
            break
        await asyncio.sleep(0.01)
    worker.stop()
    await task
    try:
        await client.get_job(job.id)
        raise SystemExit("job still there")
    except zizq.JobNotFound:
        pass
    await client.close()
    print("done", seen, zizq._hotpath.EXTENSION, zizq._protocol.scripts.lua_dir())

asyncio.run(main())
"""

JOBS = """
import zizq

class Ping(zizq.JobKind):
    NAME = "ping"
    n: int

router = zizq.Router()

@router.handler
def ping(job: Ping) -> None:
    pass
"""

# The PEP 517 hook a build frontend calls, run without an isolated
# environment (as `pip wheel --no-build-isolation` below): nothing to download.
BUILD_SDIST = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
LEFTOVERS = (".git", ".venv", "build", "dist", "*.egg-info", "*_cache", ".hypothesis", "__pycache__", "*.so", "*.c")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_from_sdist_round_trip(tmp_path: Path, redis_server: RedisServer, namespace: str) -> None:
    pure = os.environ.get("ZIZQ_NO_EXTENSIONS", "") not in ("", "0")
    dist = tmp_path / "dist"
    # From a copy without build leftovers, as a fresh clone: setuptools also
    # packs whatever an earlier build's zizq.egg-info/SOURCES.txt lists.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFTOVERS))
    subprocess.run([sys.executable, "-c", BUILD_SDIST, str(dist)], check=True, timeout=120, cwd=source)
    [sdist] = dist.glob("zizq-*.tar.gz")
    with tarfile.open(sdist) as tar:
        sdist_names = {name.split("/", 1)[-1] for name in tar.getnames()}
    assert {"lua/enqueue.lua", "lua/includes/common.lua", "zizq/_speedups.pyx"} <= sdist_names
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(dist), str(sdist)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    [wheel] = dist.glob("zizq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "zizq/lua/enqueue.lua" in names and "zizq/lua/includes/common.lua" in names
    assert {"zizq/web/templates/base.html", "zizq/web/static/htmx.min.js", "zizq/web/static/htmx.LICENSE"} <= set(names)
    assert any(n.startswith("zizq/_speedups.") and n.endswith(".so") for n in names) != pure

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([venv / "bin" / "pip", "install", "-q", str(wheel)], check=True, timeout=300)
    script = tmp_path / "round_trip.py"
    script.write_text(ROUND_TRIP)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [venv / "bin" / "python", str(script), redis_server.url, namespace],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    word, seen, extension, lua = out.stdout.split(" ", 3)
    assert (word, seen, extension) == ("done", "[41]", str(not pure))
    assert lua.strip().startswith(str(venv))

    # A base install: tables print, and optional pieces name their extra.
    (tmp_path / "base_jobs.py").write_text(JOBS)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(venv / "bin" / "zizq"), *args, "--url", redis_server.url, "--namespace", namespace]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)

    enqueued = cli("enqueue", "ping", '{"n": 1}', "--json")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = json.loads(enqueued.stdout)["id"]
    for shown in (cli("queues"), cli("jobs", "list"), cli("jobs", "get", job_id)):
        assert (shown.returncode, shown.stderr) == (0, ""), shown.args
    assert job_id in cli("jobs", "list").stdout
    for refused, extra in (
        (cli("jobs", "list", "--jq", ".n == 1"), "zizq[jq]"),
        (cli("worker", "base_jobs:router", "--metrics-port", "0"), "zizq[metrics]"),
        (cli("web", "--port", "0"), "zizq[web]"),
    ):
        assert refused.returncode == 1, refused.args
        assert refused.stderr.count("\n") == 1 and f"pip install '{extra}'" in refused.stderr, refused.stderr

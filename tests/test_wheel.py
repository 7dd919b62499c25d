"""The built wheel ships the Lua scripts and (unless ZIZQ_NO_EXTENSIONS=1)
the compiled extension: build it, install it into a fresh virtual
environment, and do one enqueue -> work -> done round trip with it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, RedisServer

ROUND_TRIP = """
import asyncio, sys, zizq, zizq._hotpath, zizq._scripts

class Ping(zizq.JobKind):
    NAME = "ping"
    n: int

router = zizq.Router()
seen = []

@router.handler
async def ping(job: Ping) -> None:
    seen.append(job.n)

async def main() -> None:
    client = zizq.AsyncClient.from_url(sys.argv[1], "wheel")
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
    print("done", seen, zizq._hotpath.EXTENSION, zizq._scripts.lua_dir())

asyncio.run(main())
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_wheel_round_trip(tmp_path: Path, redis_server: RedisServer) -> None:
    pure = os.environ.get("ZIZQ_NO_EXTENSIONS", "") not in ("", "0")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
        cwd=tmp_path,
    )
    [wheel] = dist.glob("zizq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "zizq/lua/enqueue.lua" in names and "zizq/lua/includes/common.lua" in names
    assert any(n.startswith("zizq/_speedups.") and n.endswith(".so") for n in names) != pure

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([venv / "bin" / "pip", "install", "-q", str(wheel)], check=True, timeout=300)
    script = tmp_path / "round_trip.py"
    script.write_text(ROUND_TRIP)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [venv / "bin" / "python", str(script), redis_server.url],
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

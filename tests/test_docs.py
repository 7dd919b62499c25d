"""The documentation site's examples run as written (`make docs` checks its
links; this checks its code).

- The tutorial runs end to end: its files, its `python` and `zizq` commands
  and its worker, except what it says is not run (the install, `zizq top`).
- Every other ```python block under docs/ runs, page by page, in order, in
  a directory of its own with a Redis of its own: a block with a
  `title="name.py"` is saved under that name first, so later blocks can
  import it. A block whose first line is `# not run: <why>` (code for
  another library, say) is only compiled.
"""

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

import pytest

import zizq

from .conftest import ROOT, RedisServer

DOCS = ROOT / "docs"
FENCE = re.compile(r'^```(\w+)(?:[ \t]+title="([^"]+)")?[ \t]*\n(.*?)^```', re.M | re.S)
NOT_RUN = "# not run:"


def blocks(page: Path, lang: str) -> list[tuple[str | None, str]]:
    """The page's fenced blocks in `lang`, in order: (title or None, code)."""
    return [(title, code) for found, title, code in FENCE.findall(page.read_text()) if found == lang]


def env_for(tmp_path: Path, server: RedisServer) -> dict[str, str]:
    path = os.pathsep.join([str(tmp_path), str(ROOT)])
    return {**os.environ, "ZIZQ_REDIS_URL": server.url, "PYTHONPATH": path}


def run(argv: list[str], tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A command of the page: `python x.py` or `zizq ...`, run with this
    interpreter."""
    if argv[0] == "zizq":
        argv = [sys.executable, "-m", "zizq", *argv[1:]]
    elif argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    out = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{shlex.join(argv)}:\n{out.stdout}{out.stderr}"
    return out


def commands(page: Path) -> list[list[str]]:
    """Every command line of the page's ```sh blocks, comments dropped."""
    lines = [line.split("#")[0].strip() for _, code in blocks(page, "sh") for line in code.splitlines()]
    return [shlex.split(line) for line in lines if line]


def test_tutorial(tmp_path: Path, redis_factory: Callable[[], RedisServer]) -> None:
    page = DOCS / "tutorial.md"
    server = redis_factory()
    env = env_for(tmp_path, server)
    files = blocks(page, "python")
    assert [title for title, _ in files] == ["jobs.py", "enqueue.py", "many.py"]
    for title, code in files:
        assert title is not None
        (tmp_path / title).write_text(code)
    install, docker, enqueue, queues, listing, worker_cmd, top = commands(page)
    assert (install[:2], docker[:2], top) == (["pip", "install"], ["docker", "run"], ["zizq", "top"])  # not run

    out = run(enqueue, tmp_path, env)
    (first, ready), (second, scheduled) = (line.split() for line in out.stdout.splitlines())
    assert (ready, scheduled) == ("ready", "scheduled")
    assert "images" in run(queues, tmp_path, env).stdout
    listed = run(listing, tmp_path, env).stdout
    assert first in listed and second in listed

    assert worker_cmd[:2] == ["zizq", "worker"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "zizq", *worker_cmd[1:]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert worker.stdout is not None
        seen: list[str] = []  # until the ready job ran; the scheduled one may be due by then too
        while "resizing cat.png to 200 px" not in "".join(seen):
            line = worker.stdout.readline()
            assert line, f"the worker stopped: {seen}"
            seen.append(line.strip())
        assert run(["python", "many.py"], tmp_path, env).stdout.strip() == "500 enqueued"
        with zizq.Client.from_url(server.url) as client:
            deadline = time.monotonic() + 30
            # The scheduled job falls due 5 s after the enqueue; then nothing is left.
            while client.count_jobs() > 0:
                assert time.monotonic() < deadline, f"{client.count_jobs()} jobs left"
                time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        # Not communicate(): with a timeout it reads the pipe itself and
        # misses what readline() already took into the stream's buffer.
        assert worker.stdout is not None
        with worker.stdout:
            rest = worker.stdout.read()
        worker.wait(30)
    assert worker.returncode == 0
    printed = "\n".join([*seen, rest])  # lines of handlers' threads can run together
    assert "resizing dog.png to 200 px" in printed
    assert printed.count("to 640 px") == 500


def example_pages() -> list[Path]:
    pages = sorted(p for p in DOCS.rglob("*.md") if p.name != "tutorial.md" and blocks(p, "python"))
    return pages


@pytest.mark.parametrize("page", example_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_examples_run(page: Path, tmp_path: Path, redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    env = env_for(tmp_path, server)
    for i, (title, code) in enumerate(blocks(page, "python")):
        name = title or f"example_{i}.py"
        if code.startswith(NOT_RUN):
            compile(code, name, "exec")
            continue
        (tmp_path / name).write_text(code)
        run(["python", name], tmp_path, env)


def test_every_page_with_examples_is_checked() -> None:
    """A page whose examples this file would not find (a fence it does not
    parse) fails here rather than passing unseen."""
    for page in DOCS.rglob("*.md"):
        fences = re.findall(r"^```python", page.read_text(), re.M)
        assert len(fences) == len(blocks(page, "python")), page


def test_every_script_is_documented() -> None:
    """Each script in lua/ has its section in the protocol's scripts page,
    which shows the script's own header."""
    page = (DOCS / "protocol" / "scripts.md").read_text()
    shown = set(re.findall(r"^<!-- lua-header: (\w+) -->$", page, re.M))
    assert shown == {path.stem for path in (ROOT / "lua").glob("*.lua")}

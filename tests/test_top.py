"""`zizq top` in a pseudo-terminal (what is on screen is read back through
pyte, a terminal emulator), and the cost of its refresh with many jobs."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pyte
import pytest
import redis

import zizq
from zizq.top import Top

from .conftest import ROOT, Awaited, RedisServer, take

ROWS, COLS = 45, 150


class Terminal:
    """A process on a pseudo-terminal, with the screen it draws."""

    def __init__(self, args: list[str]) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.ByteStream(self.screen)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}

        def controlling_terminal() -> None:
            # A session of its own whose controlling terminal is the pty, as
            # in a real terminal: Ctrl-C there sends SIGINT.
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env, preexec_fn=controlling_terminal
        )
        os.close(slave)
        self.master = master
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.stream.feed(data)

    def text(self) -> str:
        with self.lock:
            return "\n".join(self.screen.display)

    def send(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def wait(self, predicate: Callable[[str], bool], what: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed {what}:\n{text}")
            time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def world(client: zizq.Client) -> dict[str, Any]:
    """Jobs in every state."""
    ready = client.enqueue_many(
        [zizq.Enqueue.raw("send_email", {"to": f"u{i}@example.com"}, queue="emails", priority=9 - i) for i in range(4)]
        + [zizq.Enqueue.raw("report", {"n": i}, queue="reports", priority=5) for i in range(2)]
    )
    scheduled = client.enqueue_many([zizq.Enqueue.raw("cleanup", {}, delay=600 + 60 * i) for i in range(3)])
    client.enqueue_many(
        [
            zizq.Enqueue.raw("resize", {"img": i}, queue="images", retention=zizq.Retention(completed_ms=60_000))
            for i in range(4)
        ]
    )

    async def fly() -> list[zizq.Job]:
        return await take(Awaited(client), 4, ("images",))

    import asyncio

    flying = asyncio.run(fly())
    client.run(client.core.ack("w1", [flying[0].id]))
    client.run(client.core.fail("w1", flying[1].id, message="broken image", error_type="ValueError", kill=True))
    return {"ready": ready, "scheduled": scheduled, "in_flight": flying[2:]}


@pytest.fixture
def top(redis_server: RedisServer, namespace: str) -> Iterator[Terminal]:
    term = Terminal(
        [sys.executable, "-m", "zizq", "top", "--url", redis_server.url, "--namespace", namespace, "--interval", "0.2"]
    )
    yield term
    term.close()


def row_ids(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.strip() and len(line.split()[0]) == 25]


def test_top_on_a_terminal(top: Terminal, world: dict[str, Any], client: zizq.Client) -> None:
    text = top.wait(lambda t: "Queue: 2 in-flight" in t, "the totals")
    assert "Queue: 2 in-flight, 6 ready, 3 scheduled, 1 completed, 1 dead" in text
    assert "emails 4 ready" in text and "reports 2 ready" in text and "Depth [" in text
    flying = sorted(j.id for j in world["in_flight"])
    assert sorted(row_ids(text)) == flying and "DURATION" in text

    # Ready, in dispatch order: (priority, id) across queues.
    top.send("\t")
    text = top.wait(lambda t: "DELAY" in t and len(row_ids(t)) == 6, "the ready tab")
    ready = sorted(world["ready"], key=lambda j: (j.priority, j.id))
    assert row_ids(text) == [j.id for j in ready]
    assert "1 of 6" in text

    top.send("\t")
    text = top.wait(lambda t: "DUE" in t and len(row_ids(t)) == 3, "the scheduled tab")
    assert row_ids(text) == [j.id for j in world["scheduled"]]  # by due time
    assert "10m" in text or "9m" in text

    # Back to ready; the detail panel shows the selected job with its payload.
    top.send("\x1b[Z")
    top.wait(lambda t: "DELAY" in t, "the ready tab again")
    top.send("\x1b[B")  # down: the second job
    top.send("i")
    text = top.wait(lambda t: f"Detail {ready[1].id}" in t, "the detail panel")
    assert '"n": ' in text or '"to": ' in text
    top.send("i")
    top.wait(lambda t: "Detail" not in t, "the detail panel closed")

    # Search: type "rep" (any queue) leaves only the reports.
    top.send("/")
    top.wait(lambda t: "Search type" in t, "the search prompt")
    top.send("rep\r")
    top.wait(lambda t: "Search queue" in t, "the queue prompt")
    top.send("\r")
    text = top.wait(lambda t: "search: type=rep" in t and len(row_ids(t)) == 2, "the search result")
    assert set(row_ids(text)) == {j.id for j in world["ready"] if j.type == "report"}
    top.send("/\x7f\x7f\x7f\r\r")  # clear the search
    top.wait(lambda t: len(row_ids(t)) == 6 and "search:" not in t, "all ready jobs again")

    # Pause: the list stays as it was, the totals move on.
    top.send("p")
    top.wait(lambda t: "PAUSED" in t, "the paused mark")
    new = client.enqueue_raw("send_email", {"to": "late@example.com"}, queue="emails", priority=0)
    text = top.wait(lambda t: "7 ready" in t, "the new total")
    assert new.id not in text
    top.send("p")
    text = top.wait(lambda t: new.id in t and "PAUSED" not in t, "the new job after resuming")
    assert row_ids(text)[0] == new.id

    # Delete with confirmation: "n" keeps the job, "y" deletes it.
    top.send("g")
    top.send("D")
    top.wait(lambda t: f"Delete job {new.id}? [y/N]" in t, "the delete question")
    top.send("n")
    top.wait(lambda t: "not deleted" in t, "the refusal")
    assert client.get_job(new.id).id == new.id
    top.send("D")
    top.wait(lambda t: "[y/N]" in t, "the delete question again")
    top.send("y")
    top.wait(lambda t: f"deleted {new.id}" in t, "the deletion")
    with pytest.raises(zizq.JobNotFound):
        client.get_job(new.id)

    top.send("q")
    assert top.proc.wait(10) == 0


def test_top_quits_on_ctrl_c(top: Terminal) -> None:
    top.wait(lambda t: "zizq top" in t, "the view")
    top.send("\x03")
    assert top.proc.wait(10) == 0


def commands(r: redis.Redis) -> int:
    stats = r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))


def refresh_cost(r: redis.Redis, top: Top) -> tuple[int, float]:
    r.config_resetstat()
    started = time.perf_counter()
    top.refresh()
    return commands(r), time.perf_counter() - started


def test_top_refresh_reads_windows_not_everything(redis_factory: Callable[..., RedisServer]) -> None:
    # The same view of a small and a large namespace costs the same commands.
    server = redis_factory()
    r = redis.Redis(port=server.port)
    costs = {}
    for ns, n in (("small", 300), ("large", 200_000)):
        client = zizq.Client.from_url(server.url, ns)
        for first in range(0, n, 20_000):
            batch = min(20_000, n - first)
            client.enqueue_many(
                [
                    zizq.Enqueue.raw(
                        "t", None, queue=("a", "b", "c")[i % 3], priority=i % 5, delay=600 if i % 4 == 0 else None
                    )
                    for i in range(batch)
                ]
            )
        top = Top(client, page_rows=30)
        top.state.detail, top.state.tab = True, 1
        top.refresh()  # loads the scripts (EVALSHA's first NOSCRIPT would count)
        top.state.detail = False
        assert top.stats is not None and top.stats.ready + top.stats.scheduled == n
        tab_costs = []
        for tab in range(3):
            top.state.tab = tab
            tab_costs.append(refresh_cost(r, top))
        top.state.detail = True
        tab_costs.append(refresh_cost(r, top))
        costs[ns] = tab_costs
        client.close()
    assert [c for c, _ in costs["small"]] == [c for c, _ in costs["large"]]
    assert max(c for c, _ in costs["large"]) < 150
    assert max(t for _, t in costs["large"]) < 1.0  # generous; the commands are the real bound
    r.close()

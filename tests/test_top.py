"""`zizq top` in a pseudo-terminal (what is on screen is read back through
pyte, a terminal emulator), and the cost of its refresh with many jobs."""

from __future__ import annotations

import asyncio
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pyte
import pytest
import redis

import zizq
from zizq._protocol.query import QueryCore
from zizq._protocol.scripts import script
from zizq.cli.top import _cut, split_keys
from zizq.cli.top_view import RETRY_SCAN, TABS, Top

from .conftest import ROOT, Awaited, RedisServer, take

ROWS, COLS = 45, 150
AGO = r"(\d\.\d s|\d+ s|\d+ min( \d+ s)?) ago"  # a recent time, as top shows it


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
            # A shell's background job ignores SIGINT, and the child would
            # inherit that; in a terminal Ctrl-C reaches top.
            signal.signal(signal.SIGINT, signal.SIG_DFL)

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
    client.enqueue_raw("archive", {}, depends_on=[scheduled[0]])  # waiting
    client.enqueue_many(
        [
            zizq.Enqueue.raw("resize", {"img": i}, queue="images", retention=zizq.Retention(completed_ms=60_000))
            for i in range(5)
        ]
    )

    async def fly() -> list[zizq.Job]:
        return await take(Awaited(client), 5, ("images",))

    flying = asyncio.run(fly())
    client.run(client.core.ack("w1", [flying[0].id]))
    client.run(client.core.fail("w1", flying[1].id, message="broken image", error_type="ValueError", kill=True))
    client.run(
        client.core.fail(
            "w1",
            flying[4].id,
            message="S3 timed out",
            error_type="TimeoutError",
            backtrace=BACKTRACE,
            retry_in_ms=90_000,
        )
    )
    return {"ready": ready, "scheduled": scheduled, "in_flight": flying[2:4], "dead": flying[1], "retry": flying[4]}


BACKTRACE = (
    "Traceback (most recent call last):\n"
    + "".join(f'  File "app/images.py", line {i}, in step_{i}\n    step_{i + 1}()\n' for i in range(60))
    + "TimeoutError: S3 timed out (the end of the backtrace)\n"
)


@pytest.fixture
def top(redis_server: RedisServer, namespace: str) -> Iterator[Terminal]:
    term = Terminal(
        [sys.executable, "-m", "zizq", "top", "--url", redis_server.url, "--namespace", namespace, "--interval", "0.2"]
    )
    yield term
    term.close()


def row_ids(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines() if line.strip() and len(line.split()[0]) == 25]


def row(text: str, job_id: str) -> str:
    """The line of the job list that shows ``job_id`` ('' if none)."""
    return next((line for line in text.splitlines() if line.split()[:1] == [job_id]), "")


def test_top_on_a_terminal(top: Terminal, world: dict[str, Any], client: zizq.Client) -> None:
    text = top.wait(lambda t: "Queue: 2 in-flight" in t, "the totals")
    assert "Queue: 2 in-flight, 6 ready, 4 scheduled, 1 completed, 1 dead, 1 waiting" in text
    assert "last hour: 1 completed, 1 failed, 1 dead" in text  # the attempts that ended
    assert "emails 4 ready" in text and "reports 2 ready" in text and "Depth [" in text
    flying = sorted(j.id for j in world["in_flight"])
    assert sorted(row_ids(text)) == flying and "TAKEN" in text
    # Worker w1 publishes nothing about its handlers: neither running nor prefetched.
    assert [row(text, i).split()[1] for i in flying] == ["?", "?"]

    # Ready, in dispatch order: (priority, id) across queues.
    top.send("\t")
    text = top.wait(lambda t: "READY SINCE" in t and len(row_ids(t)) == 6, "the ready tab")
    ready = sorted(world["ready"], key=lambda j: (j.priority, j.id))
    assert row_ids(text) == [j.id for j in ready]
    assert "1 of 6" in text and " s ago" in text

    top.send("\t")
    text = top.wait(lambda t: "DUE" in t and len(row_ids(t)) == 4, "the scheduled tab")
    assert row_ids(text) == [world["retry"].id] + [j.id for j in world["scheduled"]]  # by due time
    assert re.search(r"in (1 min \d+ s|\d+ s) ", row(text, world["retry"].id))
    assert all(re.search(r"in (9 min \d+ s|1[0-2] min( \d+ s)?) ", row(text, j.id)) for j in world["scheduled"])

    # Back to ready; the detail panel shows the selected job with its payload.
    top.send("\x1b[Z")
    top.wait(lambda t: "READY SINCE" in t, "the ready tab again")
    top.send("\x1b[B")  # down: the second job
    top.send("i")
    text = top.wait(lambda t: f"Detail {ready[1].id}" in t and "payload:" in t, "the detail panel")
    assert f"id: {ready[1].id}" in text and ('"n": ' in text or '"to": ' in text)
    top.send("\x1b")
    top.wait(lambda t: "Detail" not in t, "the detail panel closed")

    # Search: type "rep" (any queue) leaves only the reports. Esc cancels the prompt.
    top.send("/")
    top.wait(lambda t: "Search type" in t, "the search prompt")
    top.send("\x1b")
    top.wait(lambda t: "Search type" not in t, "the prompt cancelled")
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


def test_top_dead_and_retries(top: Terminal, world: dict[str, Any]) -> None:
    dead, retry = world["dead"], world["retry"]
    top.wait(lambda t: "Queue: 2 in-flight" in t, "the view")
    top.send("5")
    text = top.wait(lambda t: "DIED" in t and dead.id in t, "the dead tab")
    assert row_ids(text) == [dead.id] and "1 of 1" in text
    assert re.search(rf" {AGO} +1 +images +resize +ValueError: broken image", row(text, dead.id))

    # Retries: the scheduled job that failed once, not the three fresh ones.
    top.send("4")
    text = top.wait(lambda t: "NEXT TRY" in t and retry.id in t, "the retries view")
    assert row_ids(text) == [retry.id]
    assert re.search(
        rf"in (1 min \d+ s|\d+ s) +1 +{AGO} +images +resize +TimeoutError: S3 timed out", row(text, retry.id)
    )
    assert "scheduled jobs 1-4 of 4 looked at" in text

    # D in the detail panel deletes the job shown; the panel says it is gone.
    top.send("5")
    top.wait(lambda t: "DIED" in t and dead.id in t, "the dead tab again")
    top.send("\r")
    top.wait(lambda t: f"Detail {dead.id}" in t and "status: dead" in t, "the dead job's detail")
    top.send("D")
    top.wait(lambda t: f"Delete job {dead.id}? [y/N]" in t, "the delete question")
    top.send("y")
    text = top.wait(lambda t: f"job {dead.id} is gone" in t, "the panel of a deleted job")
    assert f"deleted {dead.id}" in text and "(no jobs)" in text and "0 dead" in text


def test_top_detail_panel_scrolls_and_closes_on_esc(top: Terminal, world: dict[str, Any]) -> None:
    retry = world["retry"]
    top.wait(lambda t: "Queue: 2 in-flight" in t, "the view")
    top.send("4")
    top.wait(lambda t: "NEXT TRY" in t and retry.id in t, "the retries view")
    top.send("\r")
    # The panel's last line too: a screen read while the frame is drawn has only its top.
    text = top.wait(
        lambda t: f"Detail {retry.id}" in t and "attempt 1, failed" in t and bool(re.search(r"lines 1-\d+ of \d+", t)),
        "the detail panel",
    )
    # Every time in full and from now; the errors newest first, with the backtrace.
    assert re.search(rf"failed_at: 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \({AGO}\)", text)
    assert re.search(r"ready_at: 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC \(in (1 min \d+ s|\d+ s)\)", text)
    assert re.search(r"attempt 1, failed 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC", text)
    assert f"id: {retry.id}" in text and "in step_0" in text and "the end of the backtrace" not in text
    total = int(re.search(r"lines 1-\d+ of (\d+)", text).group(1))  # type: ignore[union-attr]
    assert total > ROWS

    top.send("\x1b[B\x1b[B\x1b[B")  # down three lines
    text = top.wait(lambda t: "lines 4-" in t, "the panel scrolled by three lines")
    assert f"id: {retry.id}" not in text
    top.send("\x1b[6~")  # PgDn
    text = top.wait(lambda t: "lines 4-" not in t and "in step_0" not in t, "the panel a page further")
    top.send("G")
    text = top.wait(lambda t: "the end of the backtrace" in t, "the end of the panel")
    assert f"of {total}" in text and "in step_0 " not in text
    top.send("g")
    top.wait(lambda t: "lines 1-" in t and f"id: {retry.id}" in t, "the top of the panel")

    top.send("\x1b")  # Esc
    text = top.wait(lambda t: "Detail" not in t, "the panel closed")
    assert row_ids(text) == [retry.id] and "NEXT TRY" in text
    top.send("q")
    assert top.proc.wait(10) == 0


def test_top_tells_running_jobs_from_prefetched_ones(top: Terminal, client: zizq.Client) -> None:
    # One handler at a time, three jobs held: one runs, two wait their turn.
    started: list[str] = []
    release = threading.Event()
    router = zizq.Router()

    @router.fallback
    def block(job: zizq.Job) -> None:
        started.append(job.id)
        zizq.progress(0.4, "step 2")  # shown with the running mark
        release.wait(10)

    jobs = client.enqueue_many([zizq.Enqueue.raw("block", {"n": i}) for i in range(3)])
    worker = zizq.Worker(client, router, concurrency=1, prefetch=3, heartbeat_interval=0.2, lease=2, cron=False)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run_async()))
    thread.start()
    try:
        text = top.wait(
            lambda t: len(started) == 1 and "running" in row(t, started[0]) and t.count("prefetched") == 2,
            "one job running and two prefetched",
        )
        text = top.wait(lambda t: "running 40% step 2" in row(t, started[0]), "the running job's progress")
        waiting = [j.id for j in jobs if j.id != started[0]]
        assert all(row(text, i).split()[1] == "prefetched" for i in waiting)
        assert all(worker.id in row(text, j.id) for j in jobs)  # the WORKER column
        top.send("i")  # the detail panel says it too
        text = top.wait(lambda t: "status: in_flight (" in t, "the detail panel")
        assert f"worker {worker.id}" in text
    finally:
        release.set()
        worker.stop()
        thread.join(10)


def test_split_keys_reads_escape_sequences_whole() -> None:
    assert split_keys("\x1b") == ["esc"]
    assert split_keys("\x1b[A\x1b[6~j\x1bOB") == ["up", "pgdn", "j", "down"]
    # Unknown sequences (Ctrl-Up, F5) are not read as "[", "1", ";" ... keys.
    assert split_keys("\x1b[1;5A\x1b[15~q") == ["unknown", "unknown", "q"]
    assert split_keys("\x1bq") == ["esc", "q"]
    # A read that ends inside a sequence waits for the rest.
    assert all(_cut(d) for d in ("\x1b", "j\x1b[", "\x1b[1;", "\x1bO"))
    assert not any(_cut(d) for d in ("\x1b[A", "\x1b[Aq", "j"))


def test_window_script_pages_dead_jobs_and_retries(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    # lua/window.lua on its own: reply {total, next, id, score, record, notes, ...}.
    fresh = client.enqueue_many([zizq.Enqueue.raw("t", {}, delay=60 + i) for i in range(5)])
    client.enqueue_many([zizq.Enqueue.raw("t", {}) for _ in range(4)])
    client.run(client.core.heartbeat("w1", "join", 60_000))
    taken = client.run(client.core.take("w1", 4, [])).jobs
    for i, job in enumerate(taken[:3]):  # three die, a second apart in purge_at
        client.run(client.core.fail("w1", job.id, message=f"boom {i}", kill=True))
    client.run(client.core.fail("w1", taken[3].id, message="later", error_type="E", retry_in_ms=30_000))
    prefix = "{" + namespace + "}:"

    def window(*args: Any) -> list[Any]:
        return r.evalsha(script("window").sha, 1, prefix, *args)  # type: ignore[no-any-return]

    reply = window("dead", 0, 2)
    assert reply[:2] == [3, 2] and len(reply) == 2 + 2 * 4
    # The latest purge_at first (ties: the greater id first; taken[2] failed last).
    assert [reply[i].decode() for i in (2, 6)] == [taken[2].id, taken[1].id]
    assert orjson.loads(reply[5])["error"]["message"] == "boom 2"
    assert window("dead", 2, 2)[:2] == [3, -1]
    # An expired dead job (past purge_at, awaiting the purge) is not listed.
    r.zadd(prefix + "dead", {taken[0].id: 1})
    reply = window("dead", 0, 5)
    assert reply[:2] == [2, -1] and taken[0].id.encode() not in reply

    reply = window("retries", 0, 10, 1000)
    assert reply[:2] == [6, -1] and reply[2].decode() == taken[3].id
    assert orjson.loads(reply[5])["error"]["message"] == "later"
    # The scan stops at a full page: the next one starts after the match.
    rank = r.zrank(prefix + "scheduled", taken[3].id)
    assert isinstance(rank, int)
    assert window("retries", 0, 1, 1000)[:2] == [6, rank + 1 if rank < 5 else -1]
    assert window("retries", rank + 1, 10, 1000) == [6, -1]
    assert window("scheduled", 0, 3)[:2] == [6, 3] and window("scheduled", 3, 3)[:2] == [6, -1]
    assert all(j.id.encode() in window("scheduled", 0, 10) for j in fresh)
    assert window("retries", 0, 2, 2)[:2] == [6, 2]  # the scan size bounds the look
    # Jobs waiting for dependencies, by enqueue time.
    waits = [client.enqueue_raw("w", i, depends_on=[fresh[0]]) for i in range(2)]
    reply = window("waiting", 0, 1)
    assert reply[:3] == [2, 1, waits[0].id.encode()] and window("waiting", 1, 1)[:3] == [2, -1, waits[1].id.encode()]
    with pytest.raises(redis.ResponseError, match="not ready, scheduled, in_flight, waiting, dead or retries"):
        window("completed", 0, 1)
    for scan in ("", "5", "10001"):
        with pytest.raises(redis.ResponseError, match="scan size"):
            window("retries", 0, 10, scan)


def test_window_script_says_which_held_jobs_run(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    client.enqueue_many([zizq.Enqueue.raw("t", {}) for _ in range(3)])
    client.run(client.core.heartbeat("w1", "join", 60_000))
    taken = [j.id for j in client.run(client.core.take("w1", 3, [])).jobs]
    q = QueryCore(client.core)
    page = client.run(q.window("in_flight", 0, 10))
    assert [(row.worker, row.running) for row in page.rows] == [("w1", None)] * 3  # w1 publishes nothing
    r.set(client.core.key("running", "w1"), f"{taken[1]} {taken[2]}")
    page = client.run(q.window("in_flight", 0, 10))
    assert {row.id: row.running for row in page.rows} == {taken[0]: False, taken[1]: True, taken[2]: True}
    r.set(client.core.key("running", "w1"), "")
    assert [row.running for row in client.run(q.window("in_flight", 0, 10)).rows] == [False] * 3


def test_top_retries_page_through_the_scheduled_jobs(client: zizq.Client) -> None:
    # 2,500 fresh jobs due before three failed ones: the failed ones are found
    # on the third scan of 1,000, and Up goes back the way it came.
    client.enqueue_many([zizq.Enqueue.raw("fresh", None, delay=60) for _ in range(2500)])
    client.enqueue_many([zizq.Enqueue.raw("flaky", None) for _ in range(3)])
    client.run(client.core.heartbeat("w1", "join", 60_000))
    for job in client.run(client.core.take("w1", 3, [])).jobs:
        client.run(client.core.fail("w1", job.id, message="flaky", retry_in_ms=600_000))
    top = Top(client, page_rows=10)
    assert top.key("4")
    assert (top.rows, top.total, top.next) == ([], 2503, 1000)
    assert "scheduled jobs 1-1000 of 2503 looked at" in top._depth()
    top.key("down")
    assert (top.rows, top.state.offset, top.next) == ([], 1000, 2000)
    top.key("pgdn")
    assert [r.job.type for r in top.rows if r.job] == ["flaky"] * 3 and top.next == -1
    assert all(r.last_error and r.last_error.message == "flaky" for r in top.rows)
    top.key("up")
    assert (top.rows, top.state.offset, top.state.selected) == ([], 1000, 0)
    top.key("up")
    assert (top.rows, top.state.offset, top.state.back) == ([], 0, [])


def test_top_help_names_the_tabs_and_keys() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "zizq", "top", "--help"], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    for words in (
        "4 Retries",
        "5 Dead",
        "prefetched",
        "Esc (or i) closes it",
        "scroll the open panel",
        "Tab/Shift-Tab",
    ):
        assert words in out, words


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
        top.state.tab = 1
        top.refresh()  # loads the scripts (EVALSHA's first NOSCRIPT would count)
        detail = top.rows[0].id
        top.state.detail = detail
        top.refresh()
        top.state.detail = None
        assert top.stats is not None and top.stats.ready + top.stats.scheduled == n
        top.state.tab = 3
        scan = refresh_cost(r, top)  # Retries when no scheduled job failed: the scan looks at 1,000 at most
        assert top.rows == [] and top.next == (-1 if n == 300 else RETRY_SCAN)
        assert scan[0] < RETRY_SCAN + 50 + 61 and scan[1] < 1.0  # 61: the last hour (a script, 60 HMGETs)
        # 40 jobs of each kind the other tabs show (more than a page): held
        # (half of them running), dead, and failed once (due first).
        client.run(client.core.heartbeat("w1", "join", 60_000))
        taken = [j.id for j in client.run(client.core.take("w1", 120, [])).jobs]
        for i, job_id in enumerate(taken[:80]):
            client.run(client.core.fail("w1", job_id, message="x", kill=i < 40, retry_in_ms=None if i < 40 else 30_000))
        r.set(client.core.key("running", "w1"), " ".join(taken[100:]))
        tab_costs = []
        for tab in range(len(TABS)):
            top.state.tab = tab
            tab_costs.append(refresh_cost(r, top))
            assert len(top.rows) == 30, TABS[tab].title
        top.state.detail = detail
        tab_costs.append(refresh_cost(r, top))
        costs[ns] = tab_costs
        client.close()
    assert [c for c, _ in costs["small"]] == [c for c, _ in costs["large"]]
    assert max(c for c, _ in costs["large"]) < 150 + 61  # 61: the last hour (a script, 60 HMGETs)
    assert max(t for _, t in costs["large"]) < 1.0  # generous; the commands are the real bound
    r.close()

"""Limits and fairness (issue 15): concurrency and rate limits held across
worker processes, per key; slots given back by a lost worker; RateLimited;
groups taking turns; the take's bound; the API, the CLI and bad input.

The worker tests run two real `zizq worker` processes (tests.limits_app)
whose handlers record each run (start and end times, the take's
dequeued_at) in a Redis list.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

import zizq

from .conftest import ROOT, RedisServer
from .limits_app import Call

LEASE_OPTIONS = ("--lease", "1", "--heartbeat-interval", "0.2")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


class Workers:
    """Worker processes on one namespace, and the runs their handlers
    recorded."""

    def __init__(self, server: RedisServer, namespace: str) -> None:
        self.url, self.namespace = server.url, namespace
        self.log_key = f"runs:{namespace}"
        self.r = redis.Redis(port=server.port)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, count: int = 2, concurrency: int = 4) -> None:
        env = {**os.environ, "ZIZQ_LIMITS_LOG": f"{self.url} {self.log_key}"}
        for _ in range(count):
            command = [sys.executable, "-m", "zizq", "worker", "tests.limits_app:router", "--url", self.url]
            command += ["--namespace", self.namespace, "-c", str(concurrency), "--log-level", "WARNING"]
            self.procs.append(subprocess.Popen([*command, *LEASE_OPTIONS], cwd=ROOT, env=env))

    def runs(self) -> list[dict[str, Any]]:
        """Every finished run (deferred ones included), in finishing order."""
        return [json.loads(x) for x in self.r.lrange(self.log_key, 0, -1)]

    def done(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Wait for ``n`` finished (not deferred) runs; return them."""
        wait_for(lambda: len([x for x in self.runs() if not x.get("deferred")]) >= n, timeout, f"{n} runs")
        return [x for x in self.runs() if not x.get("deferred")]

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.r.close()


@pytest.fixture
def workers(redis_server: RedisServer, namespace: str) -> Iterator[Workers]:
    w = Workers(redis_server, namespace)
    yield w
    w.close()


def most_at_once(runs: list[dict[str, Any]]) -> int:
    """The most runs whose [start, end] overlap at one moment."""
    events = sorted([(x["start"], 1) for x in runs] + [(x["end"], -1) for x in runs], key=lambda e: (e[0], e[1]))
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


# -- on worker processes --------------------------------------------------


def test_a_concurrency_limit_holds_across_two_workers(client: zizq.Client, workers: Workers) -> None:
    client.set_limit("api", zizq.Limit(concurrency=3))
    workers.start(2, concurrency=4)
    wait_for(lambda: workers.r.zcard(client.core.key("workers")) == 2, 15, "two workers joined")
    client.enqueue_many([zizq.Enqueue(Call(sleep=0.1), limit="api") for _ in range(15)])
    client.enqueue_many([Call(sleep=0.1, key="free") for _ in range(4)])  # no limit: runs beside them
    runs = workers.done(19)
    limited = [x for x in runs if x["key"] != "free"]
    assert 2 <= most_at_once(limited) <= 3
    assert most_at_once(runs) > most_at_once(limited)  # the jobs without a limit ran beside them
    wait_for(lambda: client.limits()[0].running == 0, 5, "every slot came back")


def test_no_window_of_per_seconds_has_more_than_rate_starts(client: zizq.Client, workers: Workers) -> None:
    client.set_limit("stripe", zizq.Limit(rate=4, per=0.5))
    ids = [j.id for j in client.enqueue_many([zizq.Enqueue(Call(), limit="stripe") for _ in range(12)])]
    workers.start(2, concurrency=4)
    runs = workers.done(12)
    starts = sorted(x["da"] for x in runs)  # Redis ms of each take
    for i, first in enumerate(starts):
        assert len([s for s in starts[i:] if s <= first + 500]) <= 4, starts
    assert starts[-1] - starts[0] >= 2 * 500  # 12 starts at 4 per 0.5 s: at least three windows
    assert starts[-1] - starts[0] < 2500  # idle workers woke when room was due
    assert {x["id"] for x in runs} == set(ids)


def test_a_saturated_key_does_not_hold_up_other_keys(client: zizq.Client, workers: Workers) -> None:
    client.set_limit("account", zizq.Limit(concurrency=1))
    hot = [zizq.Enqueue(Call(sleep=0.2, key="hot"), limit="account", limit_key="hot") for _ in range(5)]
    cold = [zizq.Enqueue(Call(sleep=0.05, key=f"k{i}"), limit="account", limit_key=f"k{i}") for i in range(6)]
    client.enqueue_many(hot + cold)
    workers.start(2, concurrency=4)
    runs = workers.done(11)
    hot_runs = sorted((x for x in runs if x["key"] == "hot"), key=lambda x: x["start"])
    assert most_at_once(hot_runs) == 1
    # Every other key's job ran while the hot key's first jobs were waiting.
    assert max(x["end"] for x in runs if x["key"] != "hot") < hot_runs[2]["start"]


def test_the_slot_of_a_killed_worker_comes_back_within_the_lease(client: zizq.Client, workers: Workers) -> None:
    client.set_limit("one", zizq.Limit(concurrency=1))
    hung = client.enqueue(Call(first="hang", key="hung"), limit="one")
    workers.start(1, concurrency=2)
    wait_for(lambda: workers.r.llen(workers.log_key + ":hung") == 1, 10, "the first job hangs")
    nxt = client.enqueue(Call(key="next"), limit="one")
    workers.start(1, concurrency=2)  # the second worker: the next job waits on the slot
    time.sleep(0.5)
    assert client.get_job(nxt.id).status == "ready"
    os.kill(workers.procs[0].pid, signal.SIGKILL)
    killed = time.time()
    runs = workers.done(2, timeout=10)
    assert {x["id"] for x in runs} == {hung.id, nxt.id}
    assert max(x["end"] for x in runs) - killed < 1 + 0.2 + 1.5  # the lease, a heartbeat, and slack


def test_rate_limited_uses_no_attempt_and_leaves_no_error(client: zizq.Client, workers: Workers) -> None:
    job = client.enqueue(Call(first="429", retry_after=0.3))
    workers.start(2)
    runs = workers.done(1)
    deferred = [x for x in workers.runs() if x.get("deferred")]
    assert len(deferred) == 1
    assert runs[0]["start"] - deferred[0]["end"] >= 0.3
    wait_for(lambda: client.get_job(job.id).status == "completed", 5, "the job completes")
    done = client.get_job(job.id)
    assert done.attempts == 0
    assert client.job_errors(job.id) == []


# -- take, on its own -----------------------------------------------------


def joined(client: zizq.Client, worker: str = "w1") -> str:
    client.run(client.core.heartbeat(worker, "join", 60_000))
    return worker


def test_a_small_group_runs_within_the_first_takes_behind_a_burst(client: zizq.Client) -> None:
    client.enqueue_many([zizq.Enqueue(Call(key="big"), group="big") for _ in range(2000)])
    small = {j.id for j in client.enqueue_many([zizq.Enqueue(Call(key="small"), group="small") for _ in range(5)])}
    worker = joined(client)
    first = [j.id for j in client.run(client.core.take(worker, 10, [])).jobs]
    assert small <= set(first)
    # Priority still comes first; a new group starts at the turn being served.
    urgent = client.enqueue(Call(), group="big", priority=1)
    late = client.enqueue(Call(), group="late")
    second = [j.id for j in client.run(client.core.take(worker, 3, [])).jobs]
    assert second[0] == urgent.id and late.id in second


def test_blocked_jobs_stay_in_place_and_take_moves_on(client: zizq.Client, r: redis.Redis) -> None:
    client.set_limit("api", zizq.Limit(concurrency=1))
    a1, a2 = (client.enqueue(Call(), limit="api", limit_key="a") for _ in range(2))
    free = client.enqueue(Call())
    worker = joined(client)
    taken = client.run(client.core.take(worker, 10, []))
    assert [j.id for j in taken.jobs] == [a1.id, free.id]
    assert not taken.more  # what is left waits for a slot: the worker sleeps
    assert client.get_job(a2.id).status == "ready"
    assert client.limits()[0].waiting == 1
    # The slot comes back at ack and wakes a worker of the queue.
    wake = client.core.key("wake", "default")
    r.delete(wake)
    client.run(client.core.ack(worker, [a1.id]))
    assert r.llen(wake) == 1
    assert [j.id for j in client.run(client.core.take(worker, 10, [])).jobs] == [a2.id]


def test_a_rate_limited_take_says_when_room_is_due(client: zizq.Client) -> None:
    client.set_limit("slow", zizq.Limit(rate=1, per=60))
    client.enqueue_many([zizq.Enqueue(Call(), limit="slow") for _ in range(2)])
    worker = joined(client)
    first = client.run(client.core.take(worker, 10, []))
    second = client.run(client.core.take(worker, 10, []))
    assert len(first.jobs) == 1 and second.jobs == [] and not second.more
    assert second.next_due is not None and 59_000 < second.next_due - second.now <= 60_001


def test_take_passes_over_at_most_1000_blocked_jobs(client: zizq.Client) -> None:
    client.set_limit("shut", zizq.Limit(concurrency=0))
    client.enqueue_many([zizq.Enqueue(Call(), limit="shut") for _ in range(1001)])
    behind = client.enqueue(Call())
    worker = joined(client)
    assert client.run(client.core.take(worker, 5, [])).jobs == []
    client.delete_limit("shut")  # a deleted limit: its jobs run unlimited
    taken = client.run(client.core.take(worker, 1002, []))
    assert len(taken.jobs) == 1002 and taken.jobs[-1].id == behind.id


def test_a_queue_limit_holds_for_every_job_of_the_queue(client: zizq.Client) -> None:
    client.set_limit(zizq.queue_limit("emails"), zizq.Limit(concurrency=2))
    client.enqueue_many([zizq.Enqueue(Call(), queue="emails") for _ in range(4)])
    worker = joined(client)
    assert len(client.run(client.core.take(worker, 10, ["emails"])).jobs) == 2
    assert [s.running for s in client.limits()] == [2]


def test_a_failed_or_released_job_gives_its_slot_back(client: zizq.Client) -> None:
    client.set_limit("api", zizq.Limit(concurrency=1))
    job = client.enqueue(Call(), limit="api")
    worker = joined(client)
    client.run(client.core.take(worker, 1, []))
    client.run(client.core.fail(worker, job.id, message="boom", retry_in_ms=0))
    assert client.limits()[0].running == 0
    client.run(client.core.take(worker, 1, []))  # promoted and taken again
    assert client.limits()[0].running == 1
    client.run(client.core.release(worker, [job.id]))
    assert client.limits()[0].running == 0


def test_limit_key_from_the_job_kind(client: zizq.Client, r: redis.Redis, namespace: str) -> None:
    class Charge(zizq.JobKind):
        NAME = "charge"
        LIMIT = "stripe"
        account: str

        def limit_key(self) -> str:
            return self.account

        def group_key(self) -> str:
            return "tenant-" + self.account

    client.set_limit("stripe", zizq.Limit(concurrency=1, rate=10))
    ids = [client.enqueue(Charge(account=a)).id for a in ("a", "a", "b")]
    worker = joined(client)
    assert [j.id for j in client.run(client.core.take(worker, 10, [])).jobs] == [ids[0], ids[2]]
    state = client.limits()[0]
    assert (state.name, state.running, state.keys, state.starts) == ("stripe", 2, 2, 2)
    assert {k.key for k in state.busiest} == {"a", "b"}


async def test_the_async_client_sets_reads_and_deletes_limits(aclient: zizq.AsyncClient) -> None:
    assert await aclient.set_limit("api", zizq.Limit(concurrency=5, rate=100, per=2))
    assert not await aclient.set_limit("api", zizq.Limit(rate=10))
    [state] = await aclient.limits()
    assert state.limit == zizq.Limit(rate=10) and state.running == 0
    job = await aclient.enqueue(Call(), limit="api", limit_key="acct-42")
    assert job.id
    assert await aclient.delete_limit("api")
    assert not await aclient.delete_limit("api")
    assert await aclient.limits() == []


# -- bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: zizq.Limit(), "needs a concurrency, a rate, or both"),
        (lambda: zizq.Limit(rate=-1), "rate -1"),
        (lambda: zizq.Limit(concurrency=1.5), "concurrency 1.5"),  # type: ignore[arg-type]
        (lambda: zizq.Limit(rate=1, per=0), "per 0"),
        (lambda: zizq.RateLimited(retry_after=-1), "retry_after -1"),
    ],
)
def test_bad_limits_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(zizq.ValidationError, match=message):
        make()


def test_bad_bindings_are_refused_before_anything_is_written(client: zizq.Client) -> None:
    client.set_limit("api", zizq.Limit(concurrency=1))
    with pytest.raises(zizq.ValidationError, match="limit nope does not exist"):
        client.enqueue_many([zizq.Enqueue(Call(), limit="api"), zizq.Enqueue(Call(), limit="nope")])
    with pytest.raises(zizq.ValidationError, match="limit_key 42 is not a non-empty string"):
        client.enqueue(Call(), limit="api", limit_key=42)  # type: ignore[arg-type]
    with pytest.raises(zizq.ValidationError, match="given without a limit"):
        client.enqueue(Call(), limit_key="a")
    with pytest.raises(zizq.ValidationError, match="limit name"):
        client.set_limit("a,b", zizq.Limit(concurrency=1))
    assert client.count_jobs() == 0


# -- the CLI --------------------------------------------------------------


def zizq_cli(server: RedisServer, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zizq", *args, "--url", server.url, "--namespace", namespace]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_cli_limits_set_list_delete(redis_server: RedisServer, namespace: str, client: zizq.Client) -> None:
    done = zizq_cli(redis_server, namespace, "limits", "set", "stripe", "--rate", "100", "--per", "60")
    assert done.returncode == 0, done.stderr
    assert client.limits()[0].limit == zizq.Limit(rate=100, per=60)
    client.enqueue(Call(), limit="stripe", limit_key="acct-1")
    joined(client)
    client.run(client.core.take("w1", 1, []))
    listed = zizq_cli(redis_server, namespace, "limits", "list")
    assert listed.returncode == 0, listed.stderr
    assert "stripe" in listed.stdout and "100 per 60s" in listed.stdout
    as_json = json.loads(zizq_cli(redis_server, namespace, "limits", "list", "--json").stdout)
    assert as_json[0]["name"] == "stripe" and as_json[0]["starts"] == 1
    bad = zizq_cli(redis_server, namespace, "limits", "set", "stripe", "--rate", "-3")
    assert bad.returncode == 2 and "rate -3" in bad.stderr and "Traceback" not in bad.stderr
    gone = zizq_cli(redis_server, namespace, "limits", "delete", "stripe")
    assert gone.returncode == 0 and client.limits() == []
    missing = zizq_cli(redis_server, namespace, "limits", "delete", "stripe")
    assert missing.returncode == 1 and "stripe" in missing.stderr


def test_cli_enqueue_binds_a_limit_and_a_group(redis_server: RedisServer, namespace: str, client: zizq.Client) -> None:
    client.set_limit("api", zizq.Limit(concurrency=1))
    for key in ("acct-1", "acct-1", "acct-2"):
        done = zizq_cli(redis_server, namespace, "enqueue", "call", "{}", "--raw", "--limit", "api", "--limit-key", key)
        assert done.returncode == 0, done.stderr
    done = zizq_cli(redis_server, namespace, "enqueue", "call", "{}", "--raw", "--group", "tenant-7")
    assert done.returncode == 0, done.stderr
    taken = client.run(client.core.take(joined(client), 10, []))
    assert len(taken.jobs) == 3  # one per account, and the grouped job with no limit
    [state] = client.limits()
    assert state.running == 2
    bad = zizq_cli(redis_server, namespace, "enqueue", "call", "{}", "--raw", "--limit", "nope")
    assert bad.returncode != 0 and "nope" in bad.stderr and "Traceback" not in bad.stderr


def test_prometheus_gauges_per_limit(client: zizq.Client, namespace: str) -> None:
    from zizq.metrics import serve_metrics

    from .test_metrics import scrape

    client.set_limit("api", zizq.Limit(concurrency=1))
    client.enqueue_many([zizq.Enqueue(Call(), limit="api", limit_key=k) for k in ("a", "a", "b")])
    client.run(client.core.take(joined(client), 10, []))
    server = serve_metrics(0, client, addr="127.0.0.1")
    try:
        m = scrape(server.port)
    finally:
        server.close()
    labels = (("limit", "api"), ("namespace", namespace))
    assert (m["zizq_limit_running_jobs", labels], m["zizq_limit_waiting_jobs", labels]) == (2, 1)


def test_top_shows_the_limits(client: zizq.Client) -> None:
    from rich.console import Console

    from zizq.cli.top_view import Top

    client.set_limit("api", zizq.Limit(concurrency=1, rate=50, per=2))
    client.enqueue_many([zizq.Enqueue(Call(), limit="api") for _ in range(3)])
    client.run(client.core.take(joined(client), 10, []))
    top = Top(client)
    top.refresh()
    console = Console(width=200, record=True)
    console.print(top.render())
    assert "Limits: api 1/1 running 1/50 per 2s 2 waiting" in console.export_text()


def test_idle_workers_sleep_while_jobs_wait_on_a_limit(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    workers = Workers(server, "sleepy")
    try:
        with zizq.Client.from_url(server.url, "sleepy") as client:
            client.set_limit("slow", zizq.Limit(rate=1, per=60))
            client.enqueue_many([zizq.Enqueue(Call(), limit="slow") for _ in range(3)])
            workers.start(2)
            workers.done(1)
            time.sleep(0.5)  # both workers took, found no room, and went to sleep
            before = int(workers.r.info("commandstats")["cmdstat_evalsha"]["calls"])
            time.sleep(1.5)
            calls = int(workers.r.info("commandstats")["cmdstat_evalsha"]["calls"]) - before
            # Heartbeats (every 0.2 s, two workers) and the odd ack, not a polling take loop.
            assert calls < 40, calls
            assert client.count_jobs(status="ready") == 2
    finally:
        workers.close()


def test_a_cron_template_cannot_carry_a_limit(client: zizq.Client) -> None:
    client.set_limit("api", zizq.Limit(concurrency=1))
    entry = zizq.CronEntry("call", "* * * * *", zizq.Enqueue(Call(), limit="api"))
    with pytest.raises(zizq.ValidationError, match="cannot have a limit or a group"):
        client.replace_cron("calls", [entry])


def test_a_slot_given_back_wakes_the_queue_where_jobs_wait(client: zizq.Client, r: redis.Redis) -> None:
    client.set_limit("api", zizq.Limit(concurrency=1))
    first = client.enqueue(Call(), limit="api", queue="q1")
    client.enqueue(Call(), limit="api", queue="q2")
    worker = joined(client)
    assert [j.id for j in client.run(client.core.take(worker, 5, ["q1", "q2"])).jobs] == [first.id]
    r.delete(client.core.key("wake", "q1"), client.core.key("wake", "q2"))
    client.run(client.core.ack(worker, [first.id]))
    assert (r.llen(client.core.key("wake", "q1")), r.llen(client.core.key("wake", "q2"))) == (0, 1)
    assert client.limits()[0].waiting == 1
    client.run(client.core.take(worker, 5, ["q2"]))  # walks q2 to its end: nothing waits any more
    assert client.limits()[0].waiting == 0

"""The dashboard (zizq.web) over HTTP, served by uvicorn against a real
Redis: pages, access (authorize, CSRF), actions and their events, the cost
of a page, the mounts (Starlette, WSGI), and `zizq web`. The browser tests
are in test_web_browser.py."""

from __future__ import annotations

import asyncio
import contextlib
import html
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from starlette.applications import Starlette
from starlette.routing import Mount

import zizq
from zizq.web import create_app
from zizq.web.reads import RETRY_SCAN, SCAN_CALLS

from .conftest import ROOT, RedisServer, free_port
from .test_readme import blocks, example_env, section
from .test_top import commands
from .web_server import Browser, serve


def dead_job(client: zizq.Client, type_name: str = "charge", queue: str = "billing") -> zizq.Job:
    """A job that failed once with a backtrace and was killed: dead."""
    job = client.enqueue_raw(type_name, {"order": 7}, queue=queue)
    client.run(client.core.heartbeat("w1", "join", 60_000))
    [taken] = client.run(client.core.take("w1", 1, [queue])).jobs
    assert taken.id == job.id
    backtrace = 'Traceback (most recent call last):\n  File "shop.py", line 3\nValueError: card declined'
    client.run(
        client.core.fail("w1", job.id, message="card declined", error_type="ValueError", backtrace=backtrace, kill=True)
    )
    return client.get_job(job.id)


@pytest.fixture
def dashboard(redis_server: RedisServer, namespace: str) -> Iterator[Callable[..., Browser]]:
    """``dashboard(**create_app options)``: a Browser on a served dashboard
    of the test's namespace."""
    clients: list[zizq.AsyncClient] = []
    stack: list[Any] = []

    def make(**options: Any) -> Browser:
        client = zizq.AsyncClient.from_url(redis_server.url, namespace)
        clients.append(client)
        ctx = serve(create_app(client, **options))
        stack.append(ctx)
        return Browser(ctx.__enter__())

    yield make
    for ctx in stack:
        ctx.__exit__(None, None, None)


def test_every_page_shows_the_namespace(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    client.enqueue_many([zizq.Enqueue.raw("send_email", {"to": f"u{i}@x.com"}, queue="emails") for i in range(3)])
    client.enqueue_raw("report", {"month": 11}, queue="reports", delay=600)
    dead = dead_job(client)
    client.pause_queue("reports")
    web = dashboard()
    status, page = web.get("/")
    assert status == 200
    assert 'id="count-ready">3<' in page and 'id="count-scheduled">1<' in page and 'id="count-dead">1<' in page
    assert 'data-queue="reports"' in page and "paused" in page and 'data-queue="emails"' in page
    status, page = web.get(f"/jobs/{dead.id}")
    assert status == 200
    assert "card declined" in page and "ValueError: card declined" in page and "&#34;order&#34;: 7" in page
    assert re.search(r"Attempt 1</b> · failed [0-9: -]+UTC, after [0-9.]+ s", page)  # how long it ran
    status, page = web.get("/state/dead")
    assert status == 200 and dead.id in page and "ValueError: card declined" in page
    status, page = web.get("/state/scheduled")
    assert status == 200 and "report" in page
    status, page = web.get("/state/in_flight")
    assert status == 200 and "None." in page  # the dead job left flight
    client.run(client.core.heartbeat("w2", "join", 60_000))
    [held] = client.run(client.core.take("w2", 1, ["emails"])).jobs
    status, page = web.get("/state/in_flight")
    assert held.id in page and "<code>w2</code>" in page and "in 59 s" in page  # its lease
    status, page = web.get("/workers")
    assert status == 200 and "<code>w2</code>" in page
    for path in ("/cron", "/state/ready", "/state/retries", "/jobs?status=completed"):
        assert web.get(path)[0] == 200, path


def test_the_overview_charts_the_last_hour(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    jobs = client.enqueue_many([zizq.Enqueue.raw("a", i, queue="q") for i in range(4)])
    client.run(client.core.heartbeat("w1", "join", 60_000))
    taken = [j.id for j in client.run(client.core.take("w1", 4, ["q"])).jobs]
    assert sorted(taken) == sorted(j.id for j in jobs)
    assert client.run(client.core.ack("w1", taken[:2])) == []
    client.run(client.core.fail("w1", taken[2], message="x", retry_in_ms=60_000))
    client.run(client.core.fail("w1", taken[3], message="x", kill=True))
    web = dashboard()
    _, page = web.get("/")
    assert 'id="hour-completed">2<' in page and 'id="hour-failed">1<' in page and 'id="hour-dead">1<' in page
    svg = page[page.index('<svg id="throughput-chart"') : page.index("</svg>")]
    minutes = [int(m) for m in re.findall(r'<g data-minute="(\d+)">', svg)]
    assert len(minutes) == 60 and minutes == sorted(minutes)
    # The minutes with counts have a bar and say what they hold.
    titles = re.findall(r"<title>(\d\d:\d\d) UTC: (\d+) completed, (\d+) failed, (\d+) dead</title>", svg)
    assert len(titles) == 60
    assert sum(int(t[1]) for t in titles) == 2 and sum(int(t[2]) + int(t[3]) for t in titles) == 2
    assert svg.count('class="ok"') in (1, 2) and svg.count('class="bad"') in (1, 2)  # (2: a minute turned)


def test_a_filter_narrows_the_job_list_and_bad_input_is_named(
    client: zizq.Client, dashboard: Callable[..., Browser]
) -> None:
    jobs = client.enqueue_many(
        [zizq.Enqueue.raw("send_email", {"to": f"u{i}@x.com"}, queue=("a", "b")[i % 2]) for i in range(10)]
    )
    web = dashboard()
    _, page = web.get("/jobs?status=ready&queue=b&jq=" + quote('.to | startswith("u1") or startswith("u3")'))
    shown = {j.id for j in jobs if f'data-id="{j.id}"' in page}
    assert shown == {jobs[1].id, jobs[3].id}
    status, page = web.get("/jobs?status=ready&priority=9..1")
    assert status == 400 and "lower end 9 is above upper end 1" in page
    status, page = web.get("/jobs?status=lost")
    assert status == 400 and "status &#39;lost&#39; is not one of" in page
    status, page = web.get("/jobs/nope")
    assert status == 404 and "no job with id" in page


def test_a_bulk_delete_confirms_the_count_then_deletes_exactly_the_matches(
    client: zizq.Client, dashboard: Callable[..., Browser]
) -> None:
    client.enqueue_many([zizq.Enqueue.raw("a", i, queue="q") for i in range(5)])
    keep = client.enqueue_many([zizq.Enqueue.raw("b", i, queue="q") for i in range(7)])
    web = dashboard()
    status, page = web.get("/confirm?action=jobs.delete&status=ready&type=a")
    assert status == 200 and 'id="count">5<' in page
    status, _, headers = web.post(
        "/act", {"action": "jobs.delete", "status": "ready", "type": "a", "csrf": web.csrf(page), "back": "/jobs"}
    )
    assert status == 303 and headers["location"].startswith("/jobs?msg=Delete")
    assert {j.id for j in client.iter_jobs()} == {j.id for j in keep}


def test_a_bulk_patch_changes_the_matches(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    moved = client.enqueue_many([zizq.Enqueue.raw("a", i, queue="q", priority=5) for i in range(3)])
    client.enqueue_raw("a", 9, queue="q", priority=50)
    web = dashboard()
    _, page = web.get("/confirm?action=jobs.patch&status=ready&priority=..10&set_queue=r&set_priority=1")
    assert 'id="count">3<' in page and "queue → r" in page
    form = {"action": "jobs.patch", "status": "ready", "priority": "..10", "set_queue": "r", "set_priority": "1"}
    assert web.post("/act", {**form, "csrf": web.csrf(page), "back": "/jobs"})[0] == 303
    assert {(j.id, j.priority) for j in client.iter_jobs(queue="r")} == {(j.id, 1) for j in moved}


def test_actions_need_the_csrf_token(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    job = client.enqueue_raw("a", 1)
    web = dashboard()
    web.get("/")  # the cookie
    for token in ("", "forged"):
        status, page, _ = web.post("/act", {"action": "job.delete", "id": job.id, "csrf": token})
        assert status == 403 and "security token" in page
    stranger = Browser(web.base)  # another site's form: no cookie
    assert stranger.post("/act", {"action": "job.delete", "id": job.id, "csrf": "x"})[0] == 403
    assert client.get_job(job.id).status == "ready"
    # After an action the browser goes back to a page of the dashboard, never elsewhere.
    _, page = web.get("/")
    for back in ("//evil.example", "/\\evil.example", "https://evil.example/"):
        status, _, headers = web.post(
            "/act", {"action": "queue.pause", "name": "q", "back": back, "csrf": web.csrf(page)}
        )
        assert status == 303 and headers["location"].startswith("/?msg="), back


def test_read_only_users_see_no_actions_and_are_refused(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    dead = dead_job(client)
    web = dashboard(authorize=lambda request: "read")
    for path in ("/", f"/jobs/{dead.id}", "/jobs?status=dead", "/cron", "/limits"):
        status, page = web.get(path)
        assert status == 200 and 'name="csrf"' not in page and "Retry" not in page and "Delete" not in page, path
        assert "read-only" in page
    assert web.get(f"/confirm?action=job.retry&id={dead.id}")[0] == 403
    status, page, _ = web.post("/act", {"action": "job.retry", "id": dead.id, "csrf": web.cookies["zizq_csrf"]})
    assert status == 403 and "read-only" in page
    assert client.get_job(dead.id).status == "dead"


async def test_authorize_may_be_async_and_none_is_refused(
    client: zizq.Client, dashboard: Callable[..., Browser]
) -> None:
    async def nobody(request: Any) -> None:
        return None

    job = client.enqueue_raw("a", 1)
    web = dashboard(authorize=nobody)
    for path in ("/", "/jobs", f"/jobs/{job.id}", "/state/dead", "/workers", "/cron", "/limits"):
        status, page = web.get(path)
        assert status == 403 and "You may not see this dashboard" in page, path
        assert job.id not in page and client.namespace not in page, path
    assert web.post("/act", {"action": "job.delete", "id": job.id, "csrf": "x"})[0] == 403
    assert client.get_job(job.id).status == "ready"


def test_each_action_emits_an_event_with_who_did_what(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    dead = dead_job(client)
    seen: list[zizq.WebActionEvent] = []
    unsubscribe = zizq.subscribe("web_action", seen.append)
    try:
        web = dashboard(user=lambda request: "ada")
        _, page = web.get("/")
        token = web.csrf(page)
        assert web.post("/act", {"action": "job.retry", "id": dead.id, "csrf": token})[0] == 303
        assert web.post("/act", {"action": "queue.pause", "name": "billing", "csrf": token})[0] == 303
        status, page, _ = web.post("/act", {"action": "job.retry", "id": dead.id, "csrf": token})
        assert status == 400 and "only dead jobs can be retried" in page  # already retried
        assert web.post("/act", {"action": "jobs.delete", "status": "ready", "type": "charge", "csrf": token})[0] == 303
    finally:
        unsubscribe()
    assert [(e.user, e.action, e.target, e.count) for e in seen] == [
        ("ada", "job.retry", dead.id, 1),
        ("ada", "queue.pause", "billing", 1),
        ("ada", "job.retry", dead.id, 0),
        ("ada", "jobs.delete", '{"status":["ready"],"type":["charge"]}', 1),
    ]
    assert seen[2].error is not None and all(e.error is None for e in seen[:2] + seen[3:])
    assert all(e.namespace == client.namespace for e in seen)


def test_patch_and_cron_actions(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    job = client.enqueue_raw("a", 1, queue="q")
    client.replace_cron("nightly", [zizq.CronEntry("report", "0 3 * * *", zizq.Enqueue.raw("report", {}, queue="r"))])
    web = dashboard()
    _, page = web.get("/cron")
    token = web.csrf(page)
    form = {"action": "job.patch", "id": job.id, "set_priority": "7", "set_ready_at": "2099-01-01T00:00", "csrf": token}
    assert web.post("/act", form)[0] == 303
    patched = client.get_job(job.id)
    assert (patched.priority, patched.status, patched.ready_at) == (7, "scheduled", 4070908800000)
    status, page, _ = web.post("/act", {**form, "set_ready_at": "tomorrow"})
    assert status == 400 and "ready time 'tomorrow'" in page.replace("&#39;", "'")
    assert web.post("/act", {"action": "cron.pause", "group": "nightly", "entry": "report", "csrf": token})[0] == 303
    assert client.get_cron_entry("nightly", "report").paused
    assert web.post("/act", {"action": "cron.run", "group": "nightly", "entry": "report", "csrf": token})[0] == 303
    [run] = client.list_jobs(type="report").jobs
    assert run.queue == "r"


def test_a_page_costs_redis_the_same_with_300_and_200000_jobs(redis_factory: Callable[..., RedisServer]) -> None:
    server = redis_factory()
    r = redis.Redis(port=server.port)
    costs: dict[str, list[int]] = {}
    retries: dict[str, int] = {}
    for ns, n in (("small", 300), ("large", 200_000)):
        client = zizq.Client.from_url(server.url, ns)
        for first in range(0, n, 20_000):
            client.enqueue_many(
                [
                    zizq.Enqueue.raw(
                        "t", {"n": i}, queue=("a", "b", "c")[i % 3], priority=i % 5, delay=600 if i % 4 == 0 else None
                    )
                    for i in range(min(20_000, n - first))
                ]
            )
        client.run(client.core.heartbeat("w1", "join", 60_000))
        # 45 taken, of which 20 died and 10 wait for a retry: each queue
        # keeps 60 ready jobs with 300 in all, more than a page.
        taken = [j.id for j in client.run(client.core.take("w1", 45, [])).jobs]
        for i, job_id in enumerate(taken[:30]):
            client.run(client.core.fail("w1", job_id, message="x", kill=i < 20, retry_in_ms=None if i < 20 else 30_000))
        # 60 jobs waiting for one in flight, and 60 batches: more than a page of each.
        waiting = client.enqueue_many([zizq.Enqueue.raw("w", i, queue="a", depends_on=[taken[40]]) for i in range(60)])
        for _ in range(60):
            client.batch().open()
        paths = [
            "/",
            "/jobs?status=ready",
            "/jobs?status=ready&type=t&priority=..4",
            "/jobs?status=scheduled&jq=" + quote(".n >= 0"),
            "/jobs?status=dead&queue=a,b,c",
            "/jobs?status=ready&order=desc&priority=0..4",
            "/jobs?status=scheduled&order=desc",
            "/jobs?status=dead&order=desc",
            "/state/ready",
            "/state/scheduled",
            "/state/in_flight",
            "/state/dead",
            "/state/waiting",
            "/jobs?status=waiting",
            "/batches",
            f"/batches/{client.list_batches(limit=1)[0].id}",
            f"/jobs/{taken[0]}",
            f"/jobs/{waiting[0].id}",
            "/workers",
        ]
        with serve(create_app(zizq.AsyncClient.from_url(server.url, ns))) as base:
            web = Browser(base)
            for path in paths:
                assert web.get(path)[0] == 200, path  # loads the scripts
            costs[ns] = []
            for path in paths:
                r.config_resetstat()
                started = time.perf_counter()
                status, page = web.get(path)
                costs[ns].append(commands(r))
                assert status == 200 and time.perf_counter() - started < 1.0, path
                if path.startswith(("/jobs?status=ready", "/jobs?status=scheduled", "/jobs?status=waiting")):
                    assert page.count("<tr data-id=") == 50, path
                if path in ("/state/waiting", "/batches"):
                    assert page.count("<tr data-id=") == 50, path
            # The retries page has no index of its own: it looks at up to
            # RETRY_SCAN scheduled jobs (fewer when there are fewer).
            r.config_resetstat()
            assert web.get("/state/retries")[0] == 200
            retries[ns] = commands(r)
        client.close()
    assert costs["small"] == costs["large"]
    assert max(costs["large"]) < 100, costs
    assert retries["small"] < retries["large"] < RETRY_SCAN + 100
    r.close()


def test_mounted_under_a_path_in_starlette_and_in_a_wsgi_app(client: zizq.Client, namespace: str) -> None:
    from a2wsgi import ASGIMiddleware

    job = client.enqueue_raw("a", 1)
    aclient = zizq.AsyncClient.from_url(client.url, namespace)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await aclient.close()

    host = Starlette(routes=[Mount("/ops/queue", create_app(aclient))], lifespan=lifespan)
    with serve(host) as base:
        web = Browser(base)
        _, page = web.get("/ops/queue/")
        assert 'href="/ops/queue/jobs"' in page and 'src="/ops/queue/static/htmx.min.js"' in page
        assert web.get("/ops/queue/static/htmx.min.js")[0] == 200
        status, _, headers = web.post("/ops/queue/act", {"action": "job.delete", "id": job.id, "csrf": web.csrf(page)})
        assert status == 303 and headers["location"].startswith("/ops/queue/?msg=")
    # WSGI: a Flask or Django app hands the dashboard's path to it.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    wsgi = ASGIMiddleware(create_app(aclient), loop=loop)  # type: ignore[arg-type]
    environ = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "/dash",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": __import__("io").BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    seen: list[str] = []
    body = b"".join(wsgi(environ, lambda status, headers, exc_info=None: seen.append(status)))  # type: ignore[arg-type]
    asyncio.run_coroutine_threadsafe(aclient.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()
    assert seen == ["200 OK"] and b'href="/dash/jobs"' in body and namespace.encode() in body


def test_create_app_takes_an_async_client(client: zizq.Client) -> None:
    with pytest.raises(zizq.ValidationError, match=r"needs a zizq\.AsyncClient"):
        create_app(client)  # type: ignore[arg-type]


def test_zizq_web_serves_the_dashboard(redis_server: RedisServer, client: zizq.Client, namespace: str) -> None:
    client.enqueue_raw("a", 1, queue="from-cli")
    port = free_port()
    # 127.0.0.2 is this machine too, but not the address zizq web takes as private: it warns.
    argv = ["web", "--url", redis_server.url, "--namespace", namespace, "--port", str(port), "--read-only"]
    argv += ["--host", "127.0.0.2"]
    proc = subprocess.Popen([sys.executable, "-m", "zizq", *argv], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.2:{port}/", timeout=5) as resp:
                    page = resp.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline, "zizq web did not answer"
                time.sleep(0.05)
        assert 'data-queue="from-cli"' in page and "read-only" in page and 'name="csrf"' not in page
    finally:
        proc.terminate()
        proc.wait(10)
        assert proc.stderr is not None
        warning = proc.stderr.readline()
        proc.stderr.close()
    assert warning == "zizq web: listening on 127.0.0.2 without a login: anyone who reaches it may see every job\n"
    out = subprocess.run(
        [sys.executable, "-m", "zizq", "web", "--url", redis_server.url, "--port", "70000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1 and out.stderr == "zizq: error: --port 70000 is not in 0..65535\n"


def test_the_readme_examples(tmp_path: Path, redis_server: RedisServer) -> None:
    """The mount examples need packages zizq does not depend on (FastAPI,
    Flask, Django): they are only compiled. The audit example runs and
    hears an action."""
    codes = blocks(section("Web dashboard"), "python")
    assert len(codes) == 4
    for i, code in enumerate(codes):
        compile(code, f"web example {i}", "exec")
    [audit] = [c for c in codes if "web_action" in c]
    (tmp_path / "audit.py").write_text(audit)
    driver = f"""
import asyncio, audit, zizq
from zizq.web.actions import run
client = zizq.AsyncClient.from_url({redis_server.url!r}, "readme-web")
asyncio.run(run(client, {{"action": "queue.pause", "name": "emails"}}, "ada"))
"""
    out = subprocess.run(
        [sys.executable, "-c", driver],
        cwd=tmp_path,
        env=example_env(tmp_path, redis_server),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ada queue.pause emails 1 {} None\n"


def test_the_job_list_pages_through_a_state_both_ways(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    # 130 ready jobs over three queues (so the windows cross from one queue's
    # index to the next), 40 of type b; pages of 50 in either order.
    jobs = client.enqueue_many(
        [zizq.Enqueue.raw("b" if i % 13 < 4 else "a", i, queue=("q1", "q2", "q3")[i % 3]) for i in range(130)]
    )
    web = dashboard()
    for order in ("asc", "desc"):
        for type_filter, expected in (("", jobs), ("&type=b", [j for j in jobs if j.type == "b"])):
            seen: list[str] = []
            path = f"/jobs?status=ready&order={order}{type_filter}"
            for _ in range(10):
                status, page = web.get(path)
                assert status == 200
                seen += re.findall(r'<tr data-id="([0-9a-z]+)"', page)
                found = re.search(r'id="next" href="([^"]+)"', page)
                if found is None:
                    break
                path = html.unescape(found[1])
            assert sorted(seen) == sorted(j.id for j in expected), (order, type_filter)
            # Each queue's jobs come in its index's order (FIFO at one priority), or reversed.
            q1 = [i for i in seen if i in {j.id for j in jobs if j.queue == "q1"}]
            assert q1 == sorted(q1, reverse=order == "desc")
            if order == "desc" and not type_filter:
                assert seen[0] in {j.id for j in jobs if j.queue == "q3"}  # the last queue first
    status, page = web.get("/jobs?status=ready&order=up")
    assert status == 400 and "order &#39;up&#39;" in page
    status, page = web.get("/jobs?status=dead&cursor=x")
    assert status == 400 and "cursor &#39;x&#39; is not a cursor" in page


def test_a_thousand_queues(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    client.enqueue_many([zizq.Enqueue.raw("t", i, queue=f"tenant-{i:04}") for i in range(1000)])
    web = dashboard()
    for path in ("/", "/state/ready", "/jobs?status=ready&type=t", "/jobs?status=ready&order=desc"):
        started = time.perf_counter()
        status, page = web.get(path)
        assert status == 200 and time.perf_counter() - started < 2.0, path
    _, page = web.get("/")
    assert page.count("<tr data-queue=") == 200 and "800 more queue(s) match" in page
    _, page = web.get("/?q=tenant-09")
    assert page.count("<tr data-queue=") == 100 and 'data-queue="tenant-0999"' in page
    # A page sends at most SCAN_CALLS walks: here one a queue, each holding one job.
    _, page = web.get("/jobs?status=ready&order=desc")
    assert page.count("<tr data-id=") == SCAN_CALLS and 'id="next"' in page


def test_the_limits_page_shows_live_state_and_an_admin_sets_and_deletes(
    client: zizq.Client, dashboard: Callable[..., Browser]
) -> None:
    client.set_limit("crawl", zizq.Limit(concurrency=2, rate=10, per=60))
    client.set_limit(zizq.queue_limit("emails"), zizq.Limit(rate=5))
    client.enqueue_many(
        [zizq.Enqueue.raw("fetch", i, queue="web", limit="crawl", limit_key="example.com") for i in range(4)]
    )
    client.run(client.core.heartbeat("w1", "join", 60_000))
    assert len(client.run(client.core.take("w1", 4, ["web"])).jobs) == 2  # the concurrency holds the others back
    seen: list[zizq.WebActionEvent] = []
    unsubscribe = zizq.subscribe("web_action", seen.append)
    try:
        web = dashboard(user=lambda request: "ada")
        status, page = web.get("/limits")
        assert status == 200
        crawl = page[page.index('<tr data-limit="crawl">') : page.index("</tr>", page.index('data-limit="crawl"'))]
        assert "2 at once, 10 per 60s, per key" in crawl and "data-running>2<" in crawl  # of 2 for each key
        assert (
            "data-starts>2<" in crawl and "data-waiting>2<" in crawl and "<code>example.com</code> 2 running" in crawl
        )
        assert 'data-limit="queue:emails"' in page and "data-starts>0 / 5<" in page and 'id="set-limit"' in page
        # Set: a confirmation first, then the change.
        status, page = web.get("/confirm?action=limit.set&name=crawl&concurrency=3&rate=&per=")
        assert status == 200 and "Set limit crawl to 3 at once" in page and client.limits()[0].limit.concurrency == 2
        token = web.csrf(page)
        form = {"action": "limit.set", "name": "crawl", "concurrency": "3", "csrf": token, "back": "/limits"}
        status, _, headers = web.post("/act", form)
        assert status == 303 and headers["location"].startswith("/limits?msg=Limit+crawl+changed")
        assert client.limits()[0].limit == zizq.Limit(concurrency=3)
        status, page, _ = web.post("/act", {**form, "concurrency": "", "rate": ""})
        assert status == 400 and "a Limit needs a concurrency, a rate, or both" in page
        status, page, _ = web.post("/act", {**form, "per": "soon"})
        assert status == 400 and "per &#39;soon&#39; is not a number of seconds" in page
        status, page = web.get("/confirm?action=limit.delete&name=queue:emails")
        assert status == 200 and "Delete limit queue:emails" in page
        assert web.post("/act", {"action": "limit.delete", "name": "queue:emails", "csrf": token})[0] == 303
        assert [s.name for s in client.limits()] == ["crawl"]
    finally:
        unsubscribe()
    assert [(e.user, e.action, e.target, e.count, e.changes) for e in seen] == [
        ("ada", "limit.set", "crawl", 1, {"concurrency": 3, "rate": None, "per": 1.0}),
        ("ada", "limit.set", "crawl", 0, {}),
        ("ada", "limit.set", "crawl", 0, {}),
        ("ada", "limit.delete", "queue:emails", 1, {}),
    ]
    assert seen[1].error is not None and seen[2].error is not None
    # A read-only user sees the state, and no control.
    reader = dashboard(authorize=lambda request: "read")
    status, page = reader.get("/limits")
    assert status == 200 and 'data-limit="crawl"' in page
    assert 'id="set-limit"' not in page and "Delete…" not in page and "confirm?" not in page
    assert reader.get("/confirm?action=limit.delete&name=crawl")[0] == 403
    status, _, _ = reader.post("/act", {"action": "limit.delete", "name": "crawl", "csrf": reader.cookies["zizq_csrf"]})
    assert status == 403 and [s.name for s in client.limits()] == ["crawl"]


def test_cancel_one_job_and_every_match_of_a_filter(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    one = client.enqueue_raw("a", 0, queue="q")
    crawls = client.enqueue_many([zizq.Enqueue.raw("crawl", i, queue="q") for i in range(3)])
    other = client.enqueue_raw("b", 0, queue="q")
    seen: list[zizq.WebActionEvent] = []
    unsubscribe = zizq.subscribe("web_action", seen.append)
    try:
        web = dashboard(user=lambda request: "ada")
        _, page = web.get(f"/jobs/{one.id}")
        assert f'href="/confirm?action=job.cancel&id={one.id}"' in page
        status, page = web.get(f"/confirm?action=job.cancel&id={one.id}")
        assert status == 200 and f"Cancel job {one.id} (a, ready)" in page and "Yes, cancel" in page
        token = web.csrf(page)
        status, _, headers = web.post(
            "/act", {"action": "job.cancel", "id": one.id, "csrf": token, "back": f"/jobs/{one.id}"}
        )
        assert status == 303 and headers["location"] == f"/jobs/{one.id}?msg=Job+{one.id}+cancelled."
        _, page = web.get(f"/jobs/{one.id}")
        assert 'id="status">dead<' in page and 'id="cancelled"' in page and 'id="cancel"' not in page
        status, _, headers = web.post("/act", {"action": "job.cancel", "id": one.id, "csrf": token})
        assert status == 303 and "had+already+finished" in headers["location"]
        status, page = web.get("/confirm?action=jobs.cancel&status=ready&type=crawl")
        assert status == 200 and 'id="count">3<' in page
        form = {"action": "jobs.cancel", "status": "ready", "type": "crawl", "csrf": token}
        assert web.post("/act", form)[0] == 303
    finally:
        unsubscribe()
    assert {j.id for j in client.iter_jobs(status="dead")} == {one.id, *(j.id for j in crawls)}
    assert client.get_job(other.id).status == "ready"
    assert [(e.action, e.target, e.count) for e in seen] == [
        ("job.cancel", one.id, 1),
        ("job.cancel", one.id, 0),
        ("jobs.cancel", '{"status":["ready"],"type":["crawl"]}', 3),
    ]


def test_a_job_page_shows_progress_and_result(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    from zizq._protocol.records import encode_result

    running, done = client.enqueue_many(
        [zizq.Enqueue.raw("crawl", i, queue="q", retention=zizq.Retention(completed_ms=60_000)) for i in range(2)]
    )
    client.run(client.core.heartbeat("w1", "join", 60_000))
    client.run(client.core.take("w1", 2, ["q"]))
    assert client.run(client.core.progress("w1", running.id, 0.375, "page 3 of 8"))
    assert client.run(client.core.ack("w1", [done.id], results=[encode_result({"pages": 8, "title": "<b>"})])) == []
    web = dashboard()
    _, page = web.get(f"/jobs/{running.id}")
    assert 'id="progress"><progress max="1" value="0.375">' in page and "37.5 % · page 3 of 8" in page
    assert 'id="result"' not in page
    _, page = web.get(f"/jobs/{done.id}")
    assert 'id="result">{\n  &#34;pages&#34;: 8,\n  &#34;title&#34;: &#34;&lt;b&gt;&#34;\n}</pre>' in page


def test_waiting_jobs_and_batches(client: zizq.Client, dashboard: Callable[..., Browser]) -> None:
    with client.batch(on_complete=zizq.Enqueue.raw("done", {})) as batch:
        thumbs = batch.enqueue_many([zizq.Enqueue.raw("thumb", i, queue="img") for i in range(3)])
        [album] = batch.enqueue_many([zizq.Enqueue.raw("album", {}, queue="img", depends_on=thumbs)])
        with batch.batch() as child:
            child.enqueue_many([zizq.Enqueue.raw("thumb", 9, queue="img")])
    assert album.status == "waiting"
    web = dashboard()
    _, page = web.get("/")
    assert 'id="count-waiting">1<' in page and 'href="/state/waiting"' in page
    status, page = web.get("/state/waiting")
    assert status == 200 and re.findall(r'<tr data-id="([0-9a-z]+)"', page) == [album.id]
    assert f'<a href="/batches/{batch.id}">' in page and '<td class="num">3</td>' in page  # its dependencies
    _, page = web.get("/jobs?status=waiting&type=album")
    assert re.findall(r'<tr data-id="([0-9a-z]+)"', page) == [album.id] and 'id="bulk-cancel"' in page
    _, page = web.get(f"/jobs/{album.id}")
    deps = page[page.index('id="dependencies"') : page.index("</dd>", page.index('id="dependencies"'))]
    assert re.findall(r'href="/jobs/([0-9a-z]+)"', deps) == [t.id for t in thumbs] and deps.count(">ready<") == 3
    assert f'id="batch"><a href="/batches/{batch.id}">' in page and 'id="cancel"' in page
    _, page = web.get(f"/jobs/{thumbs[0].id}")
    assert 'id="dependencies"' not in page and 'id="batch"' in page

    # The batches, newest first; a batch's counts, callbacks and parent.
    status, page = web.get("/batches")
    assert status == 200 and re.findall(r'<tr data-id="([0-9a-z]+)"', page) == [child.id, batch.id]
    assert f'<a href="/batches/{batch.id}">{batch.id}</a></td>\n</tr>' in page  # the child's parent
    status, page = web.get(f"/batches/{batch.id}")
    assert status == 200 and 'id="state">closed<' in page
    assert 'id="total">5<' in page and 'id="completed">0<' in page and 'id="pending">5<' in page  # 4 jobs, 1 batch
    info = client.get_batch(batch.id)
    assert info.on_complete and f'<a href="/jobs/{info.on_complete}">' in page and "not yet" in page
    _, page = web.get(f"/batches/{child.id}")
    assert f'id="parent"><a href="/batches/{batch.id}">' in page and 'id="total">1<' in page

    # Cancelling a dependency kills the job waiting for it.
    _, page = web.get(f"/confirm?action=job.cancel&id={thumbs[0].id}")
    token = web.csrf(page)
    assert web.post("/act", {"action": "job.cancel", "id": thumbs[0].id, "csrf": token})[0] == 303
    _, page = web.get(f"/batches/{batch.id}")
    assert 'id="dead">2<' in page and 'id="pending">3<' in page
    _, page = web.get("/")
    assert 'id="count-waiting">0<' in page

    status, page = web.get("/batches/nope")
    assert status == 404 and "no batch with id &#39;nope&#39;" in page
    status, page = web.get("/batches?offset=x")
    assert status == 400 and "offset &#39;x&#39; is not a whole number" in page
    status, page = web.get("/state/waiting?offset=99999")
    assert status == 400 and "offset 99999 is not in 0..10000" in page

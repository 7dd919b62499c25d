"""The dashboard in a real browser: Debian's headless Chromium driven by
Selenium through Debian's chromedriver (the Makefile installs both), against
the dashboard served by uvicorn on a real Redis. One browser and one server
for the module; the server mounts the dashboard three times, for an admin,
a read-only user and a refused one.

``ZIZQ_WEB_SCREENSHOTS=DIR`` saves the screenshots of the main pages there
(docs/images holds the README's)."""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from starlette.applications import Starlette
from starlette.routing import Mount

import zizq
from zizq.web import create_app

from .conftest import RedisServer
from .test_web import dead_job
from .web_server import serve

pytestmark = pytest.mark.browser

NAMESPACE = "web-browser"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,860"):
        options.add_argument(arg)
    # Debian's driver, given by path: Selenium does not look for one to download.
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def site(redis_server: RedisServer) -> Iterator[str]:
    """The base URL of a server with the dashboard of NAMESPACE at /admin,
    /read (authorize says "read") and /none (authorize says None)."""
    clients = [zizq.AsyncClient.from_url(redis_server.url, NAMESPACE) for _ in range(3)]
    host = Starlette(
        routes=[
            Mount("/admin", create_app(clients[0], refresh=0.2, user=lambda request: "ada")),
            Mount("/read", create_app(clients[1], authorize=lambda request: "read")),
            Mount("/none", create_app(clients[2], authorize=lambda request: None)),
        ],
        lifespan=closing(clients),
    )
    with serve(host) as base:
        yield base


def closing(clients: list[zizq.AsyncClient]) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        for c in clients:
            await c.close()

    return lifespan


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[zizq.Client]:
    """The module's namespace, empty at the start of each test."""
    c = zizq.Client.from_url(redis_server.url, NAMESPACE)
    c.reset(force=True)
    yield c
    c.close()


def wait(browser: WebDriver, what: str, condition: Any, timeout: float = 10) -> Any:
    return WebDriverWait(browser, timeout).until(lambda d: condition(), message=what)


def text(browser: WebDriver, css: str) -> str:
    """The element's text, read in one step in the page: the overview's
    live part is replaced every refresh, so a held element goes stale."""
    return str(browser.execute_script("return document.querySelector(arguments[0]).innerText.trim()", css))


def rows(browser: WebDriver) -> int:
    return len(browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr[data-id]"))


def fetch_status(browser: WebDriver, url: str, body: str | None = None) -> int:
    """The HTTP status of a fetch made by the page (a POST when ``body``)."""
    script = """
        const [url, body, done] = arguments;
        const init = body === null ? {} : {method: "POST", body: body,
            headers: {"Content-Type": "application/x-www-form-urlencoded"}};
        fetch(url, init).then(r => done(r.status));
    """
    return int(browser.execute_async_script(script, url, body))


def test_the_overview_shows_queues_and_counts_and_updates_by_itself(
    browser: WebDriver, site: str, client: zizq.Client
) -> None:
    client.enqueue_many([zizq.Enqueue.raw("send_email", i, queue="emails") for i in range(2)])
    client.enqueue_raw("report", 1, queue="reports", delay=600)
    browser.get(site + "/admin/")
    assert text(browser, "#count-ready") == "2" and text(browser, "#count-scheduled") == "1"
    assert text(browser, '[data-queue="emails"] [data-ready]') == "2"
    client.enqueue_many([zizq.Enqueue.raw("send_email", i, queue="emails") for i in range(3)])
    wait(browser, "the count to update", lambda: text(browser, "#count-ready") == "5")
    assert text(browser, '[data-queue="emails"] [data-ready]') == "5"
    browser.find_element(By.ID, "live-toggle").click()  # pause
    # A refresh sent just before the click may still be on its way.
    in_flight = "return document.querySelector('#overview').classList.contains('htmx-request')"
    wait(browser, "the last refresh to land", lambda: not browser.execute_script(in_flight))
    client.enqueue_raw("send_email", 9, queue="emails")
    assert fetch_status(browser, site + "/admin/") == 200  # the server has it; the page waits
    browser.execute_script("return new Promise(r => setTimeout(r, 600))")
    assert text(browser, "#count-ready") == "5"
    browser.find_element(By.ID, "live-toggle").click()  # resume
    wait(browser, "the count to update after resuming", lambda: text(browser, "#count-ready") == "6")
    # The last hour's chart: 60 minutes, and an ended attempt shows as it happens.
    # Read in one step in the page, as text() does: a refresh replaces the chart.
    width, minutes = browser.execute_script(
        "const c = document.querySelector('#throughput-chart');"
        "return [c.getBoundingClientRect().width, c.querySelectorAll('g[data-minute]').length]"
    )
    assert width > 300 and minutes == 60
    assert text(browser, "#hour-completed") == "0"
    client.run(client.core.heartbeat("w1", "join", 60_000))
    [job] = client.run(client.core.take("w1", 1, ["emails"])).jobs
    assert client.run(client.core.ack("w1", [job.id])) == []
    wait(browser, "the chart to count the ack", lambda: text(browser, "#hour-completed") == "1")
    assert browser.execute_script("return document.querySelectorAll('#throughput-chart rect.ok').length") == 1


def test_a_filter_narrows_the_job_list(browser: WebDriver, site: str, client: zizq.Client) -> None:
    client.enqueue_many([zizq.Enqueue.raw(("a", "b")[i % 2], {"n": i}, queue="q") for i in range(7)])
    browser.get(site + "/admin/jobs")
    assert rows(browser) == 7
    browser.find_element(By.NAME, "type").send_keys("a")
    browser.find_element(By.ID, "apply-filter").click()
    wait(browser, "the filtered list", lambda: "type=a" in browser.current_url)
    assert rows(browser) == 4
    browser.find_element(By.NAME, "jq").send_keys(".n > 3")
    browser.find_element(By.ID, "apply-filter").click()
    wait(browser, "the list filtered by jq", lambda: "jq=.n" in browser.current_url)
    assert rows(browser) == 2


def test_a_dead_job_is_retried_from_its_page_after_a_confirmation(
    browser: WebDriver, site: str, client: zizq.Client
) -> None:
    dead = dead_job(client)
    browser.get(f"{site}/admin/jobs/{dead.id}")
    assert text(browser, "#status") == "dead" and "ValueError: card declined" in browser.page_source
    browser.find_element(By.ID, "retry").click()
    wait(browser, "the confirmation", lambda: "/admin/confirm" in browser.current_url)
    assert text(browser, "#what") == f"Retry job {dead.id} (charge, dead)."
    assert client.get_job(dead.id).status == "dead"  # not before the confirmation
    browser.find_element(By.ID, "confirm").click()
    wait(browser, "the job's page again", lambda: "msg=" in browser.current_url)
    assert text(browser, "#flash") == f"Job {dead.id} is ready again." and text(browser, "#status") == "ready"
    assert client.get_job(dead.id).status == "ready"


def test_a_bulk_delete_by_filter_touches_exactly_the_matching_jobs(
    browser: WebDriver, site: str, client: zizq.Client
) -> None:
    client.enqueue_many([zizq.Enqueue.raw("a", i, queue="q") for i in range(5)])
    keep = client.enqueue_many([zizq.Enqueue.raw("b", i, queue="q") for i in range(7)])
    browser.get(site + "/admin/jobs?status=ready&type=a")
    browser.find_element(By.ID, "bulk-delete").click()
    wait(browser, "the confirmation", lambda: "/admin/confirm" in browser.current_url)
    assert text(browser, "#count") == "5"
    assert client.count_jobs() == 12
    browser.find_element(By.ID, "confirm").click()
    wait(browser, "the job list again", lambda: "msg=" in browser.current_url)
    assert text(browser, "#flash") == "Delete: 5 job(s)."
    assert {j.id for j in client.iter_jobs()} == {j.id for j in keep}


def test_a_read_only_user_sees_no_actions_and_a_forged_action_is_refused(
    browser: WebDriver, site: str, client: zizq.Client
) -> None:
    dead = dead_job(client)
    client.set_limit("crawl", zizq.Limit(concurrency=2))
    for path in ("/read/", f"/read/jobs/{dead.id}", "/read/jobs?status=dead", "/read/limits"):
        browser.get(site + path)
        assert "read-only" in text(browser, "header")
        controls = (
            "main form[method=post], #set-limit, #retry, #delete, #cancel, #bulk-delete, #bulk-cancel, [data-delete]"
        )
        assert not browser.find_elements(By.CSS_SELECTOR, controls), path
    body = f"action=job.delete&id={dead.id}&csrf=forged"
    assert fetch_status(browser, site + "/read/act", body) == 403
    assert fetch_status(browser, site + "/admin/act", body) == 403  # no token: refused for an admin too
    assert client.get_job(dead.id).status == "dead"


def test_authorize_returning_none_gets_403(browser: WebDriver, site: str, client: zizq.Client) -> None:
    job = client.enqueue_raw("a", 1, queue="secret-queue")
    browser.get(site + "/none/")
    assert text(browser, "h1") == "Refused" and "secret-queue" not in browser.page_source
    assert fetch_status(browser, site + "/none/") == 403
    assert fetch_status(browser, f"{site}/none/jobs/{job.id}") == 403


def test_screenshots_of_the_main_pages(browser: WebDriver, site: str, client: zizq.Client, tmp_path: Path) -> None:
    out = Path(os.environ.get("ZIZQ_WEB_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    dead = dead_job(client)
    for type_name, queue in (("refund", "billing"), ("sync_crm", "crm"), ("resize_image", "media")):
        dead_job(client, type_name, queue)
    emails = [{"to": f"user{i}@example.com", "template": "welcome"} for i in range(14)]
    client.enqueue_many([zizq.Enqueue.raw("send_email", p, queue="emails", priority=10) for p in emails])
    client.enqueue_many([zizq.Enqueue.raw("resize_image", {"id": i}, queue="media") for i in range(9)])
    client.enqueue_many([zizq.Enqueue.raw("nightly_report", {"day": i}, queue="reports", delay=3600) for i in range(3)])
    client.enqueue_raw("sync_crm", {"account": 42}, queue="crm")
    client.pause_queue("crm")
    client.replace_cron("nightly", [zizq.CronEntry("report", "0 3 * * *", zizq.Enqueue.raw("nightly_report", {}))])
    # An hour of work for the chart, written as ack and fail would have counted it.
    minute = client.stats().now // 60_000
    for i in range(1, 60):
        counts: dict[Any, Any] = {
            "completed": 300 + int(120 * math.sin(i / 7)) + 17 * (i % 5),
            "failed": 9 * int(i % 11 == 3),
            "dead": int(i % 17 == 5),
        }
        client.redis.hset(client.core.key("tally", str(minute - i)), mapping=counts)
    client.set_limit("crawl", zizq.Limit(concurrency=4, rate=30, per=60))
    client.set_limit(zizq.queue_limit("emails"), zizq.Limit(rate=100, per=1))
    client.enqueue_many(
        [
            zizq.Enqueue.raw("fetch", {"n": i}, queue="web", limit="crawl", limit_key=f"site{i % 2}.example")
            for i in range(7)
        ]
    )
    client.run(client.core.heartbeat("w1", "join", 60_000))
    running = client.run(client.core.take("w1", 7, ["web"])).jobs[0]
    client.run(client.core.progress("w1", running.id, 0.625, "page 5 of 8"))
    shots = {
        "web-overview": "/admin/",
        "web-jobs": "/admin/jobs?status=ready&queue=emails&jq=" + '.to | startswith("user1")',
        "web-job": f"/admin/jobs/{dead.id}",
        "web-limits": "/admin/limits",
        "web-running": f"/admin/jobs/{running.id}",
    }
    for name, path in shots.items():
        browser.get(site + path)
        assert browser.save_screenshot(str(out / f"{name}.png"))
        assert (out / f"{name}.png").stat().st_size > 10_000

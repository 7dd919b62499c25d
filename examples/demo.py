"""A real zizq run, start to finish: a throwaway local Redis, a producer, a
worker, jobs visibly done.

    make demo            (or: python examples/demo.py)

It starts redis-server on a free loopback port (nothing persisted), enqueues
a few hundred jobs of two kinds at different priorities (some delayed, some
flaky so they are retried), runs a worker that does them while a progress line
updates, prints a summary, and stops everything it started.
"""

from __future__ import annotations

import asyncio
import logging
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter

import redis

import zizq
from zizq import _hotpath


class SendEmail(zizq.JobKind):
    NAME = "send_email"
    QUEUE = "emails"
    PRIORITY = 100
    to: str
    subject: str


class ResizeImage(zizq.JobKind):
    NAME = "resize_image"
    QUEUE = "images"
    PRIORITY = 10  # lower runs sooner: images go first
    # Quick retries for the demo; the default curve waits 16 s or more.
    BACKOFF = zizq.Backoff(base_ms=200, exponent=1.0, jitter_ms=100)
    path: str
    width: int
    flaky: bool = False


EMAILS, IMAGES, DELAYED = 200, 150, 50
WAIT_LIMIT = 120.0  # seconds; the run takes a few
done: Counter[str] = Counter()
first_done: dict[str, float] = {}
failures = 0
router = zizq.Router()


@router.handler
async def send_email(job: SendEmail) -> None:
    await asyncio.sleep(random.uniform(0.002, 0.01))  # talking to an SMTP server
    done[SendEmail.NAME] += 1
    first_done.setdefault(SendEmail.NAME, time.monotonic())


@router.handler
def resize_image(job: ResizeImage, meta: zizq.Job) -> None:
    global failures
    time.sleep(random.uniform(0.002, 0.01))  # CPU work, in the worker's thread pool
    if job.flaky and meta.attempts == 1:  # the first run
        failures += 1
        raise OSError(f"{job.path}: disk hiccup")  # fails once, then the retry succeeds
    done[ResizeImage.NAME] += 1
    first_done.setdefault(ResizeImage.NAME, time.monotonic())


def start_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (make demo installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="zizq-demo-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(200):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return proc, url, workdir


async def run(url: str) -> bool:
    """The demo; whether every job was done."""
    client = zizq.AsyncClient.from_url(url, namespace="demo")
    jobs: list[zizq.JobKind | zizq.Enqueue] = []
    jobs += [SendEmail(to=f"user{i}@example.com", subject="Welcome!") for i in range(EMAILS)]
    jobs += [ResizeImage(path=f"/photos/{i}.jpg", width=640, flaky=i % 10 == 0) for i in range(IMAGES)]
    jobs += [
        zizq.Enqueue(SendEmail(to=f"later{i}@example.com", subject="Reminder"), delay=random.uniform(1, 3))
        for i in range(DELAYED)
    ]
    random.shuffle(jobs)
    t0 = time.monotonic()
    enqueued = await client.enqueue_many(jobs)
    scheduled = sum(j.status == "scheduled" for j in enqueued)
    print(
        f"enqueued {len(enqueued)} jobs in one atomic call ({scheduled} scheduled for 1-3 s from now) "
        f"in {1000 * (time.monotonic() - t0):.1f} ms"
    )

    # The progress line counts the flaky failures; the worker's own line for
    # each (WARNING on zizq.worker.jobs, see "Worker logs" in the README)
    # would break it up.
    logging.getLogger("zizq.worker.jobs").setLevel(logging.ERROR)
    worker = zizq.Worker(client, router, concurrency=20)
    total = len(enqueued)
    start = time.monotonic()
    task = asyncio.create_task(worker.run_async())
    shown = ""
    incomplete = ""
    while True:
        finished = sum(done.values())
        bar = "#" * (40 * finished // total)
        line = (
            f"[{bar:<40}] {finished:>3}/{total}  emails {done['send_email']:>3}  "
            f"images {done['resize_image']:>3}  retried {failures:>2}"
        )
        if line != shown:
            print("\r" + line, end="", flush=True)
            shown = line
        if finished == total:
            break
        # Completed jobs are deleted at once (retention 0): none left waiting
        # or running means every job is completed or dead.
        stats = await client.stats()
        if stats.ready + stats.scheduled + stats.in_flight == 0:
            incomplete = f"{stats.dead} jobs are dead: they failed more often than their retry limit allows"
            break
        if time.monotonic() - start > WAIT_LIMIT:
            incomplete = f"stopped waiting after {WAIT_LIMIT:.0f} s with {total - finished} jobs not done"
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - start
    print()
    worker.stop()
    await task
    await client.close()

    print("\nsummary")
    if incomplete:
        print(f"  NOT ALL DONE       {incomplete}")
    print(f"  jobs done          {finished} of {total} ({EMAILS + DELAYED} emails, {IMAGES} images) in {elapsed:.2f} s")
    print(f"  flaky failures     {failures}, each retried with backoff")
    if len(first_done) == 2:
        print(
            f"  priority           images (10) started before emails (100): "
            f"{first_done['resize_image'] <= first_done['send_email']}"
        )
    print(f"  delayed            {scheduled} emails waited for their time, then ran")
    print(f"  client hot path    {'Cython extension' if _hotpath.EXTENSION else 'pure Python'}")
    return not incomplete


def main() -> None:
    proc, url, workdir = start_redis()
    print(f"started a throwaway redis-server at {url}")
    try:
        all_done = asyncio.run(run(url))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)
        print("stopped redis-server; nothing left behind")
    if not all_done:
        sys.exit(1)


if __name__ == "__main__":
    main()

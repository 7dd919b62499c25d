"""The ``zizq`` command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence

import orjson

from . import __version__
from .client import Client, default_url
from .errors import ValidationError, ZizqError
from .group import WorkerGroup
from .router import Router
from .supervisor import ENV as SUPERVISOR_ENV
from .supervisor import Supervisor, child_command, watch_supervisor
from .worker import Worker

URL_HELP = (
    "Redis URL (default: $ZIZQ_REDIS_URL, else redis://localhost:6379/0): redis://, rediss:// (TLS), "
    "redis+cluster://HOST:PORT[,HOST:PORT...], redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE"
)


def load_router(spec: str) -> Router:
    """Import ``module:attribute`` (the current directory is on the path)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ZizqError(f"router {spec!r} is not in the form module:attribute, e.g. app.jobs:router")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ZizqError(f"cannot import {module_name!r}: {exc}") from None
    router = getattr(module, attr, None)
    if not isinstance(router, Router):
        raise ZizqError(f"{spec!r} is {type(router).__name__}, not a zizq.Router")
    return router


def _queues(text: str | None) -> list[str] | None:
    return [q.strip() for q in text.split(",") if q.strip()] if text else None


def cmd_worker(args: argparse.Namespace) -> int:
    router = load_router(args.router)
    namespaces = [ns.strip() for ns in args.namespace.split(",") if ns.strip()]
    if not namespaces:
        raise ValidationError(f"--namespace {args.namespace!r} names no namespace")
    # Built (and so checked) before any process starts, so a bad option
    # fails once instead of in a restart loop.
    workers = [
        Worker(
            Client.from_url(args.url, ns),
            router,
            queues=_queues(args.queues),
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            shutdown_timeout=args.shutdown_timeout,
            heartbeat_interval=args.heartbeat_interval,
            lease=args.lease,
        )
        for ns in namespaces
    ]
    if args.processes < 1:
        raise ValidationError(f"--processes {args.processes!r} must be at least 1")
    # Set in the worker processes a supervisor starts (and not passed on to
    # processes they start in turn).
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)
    if args.processes > 1 and supervisor is None:
        return Supervisor(child_command(args.argv), args.processes, grace=args.shutdown_timeout + 30).run()
    worker: Worker | WorkerGroup = workers[0] if len(workers) == 1 else WorkerGroup(workers)
    if supervisor is not None and not watch_supervisor(int(supervisor), worker.stop):
        return 0
    worker.run()
    code = 1 if worker.forced else 0
    if any(t.name.startswith("zizq-handler") and t.is_alive() for t in threading.enumerate()):
        # Sync handlers abandoned (a second signal, or a timeout) cannot be
        # stopped, and would keep the process alive: leave without them.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = orjson.loads(args.payload)
    except orjson.JSONDecodeError as exc:
        raise ZizqError(f"payload {args.payload!r} is not valid JSON: {exc}") from None
    with Client.from_url(args.url, args.namespace) as client:
        job = client.enqueue_raw(args.type, payload, queue=args.queue, priority=args.priority, delay=args.delay)
    if args.json:
        print(orjson.dumps(job.to_dict()).decode())
    else:
        print(
            f"{job.id} {job.status} queue={job.queue} priority={job.priority}"
            + (" (duplicate)" if job.duplicate else "")
        )
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    with Client.from_url(args.url, args.namespace) as client:
        if args.command == "pause":
            changed = client.pause_queue(args.queue)
        else:
            changed = client.resume_queue(args.queue)
    state = "paused" if args.command == "pause" else "resumed"
    print(f"queue {args.queue!r} {state}" if changed else f"queue {args.queue!r} was already {state}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zizq",
        description="zizq: a job queue on Redis. Run workers and enqueue jobs.",
        epilog="Run 'zizq COMMAND --help' for a command's options.",
    )
    p.add_argument("--version", action="version", version=f"zizq {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--url", default=None, help=URL_HELP)
        sp.add_argument("--namespace", default="zizq", help="namespace (key prefix {NS}:) (default: zizq)")

    w = sub.add_parser(
        "worker",
        help="run a worker process",
        description="Take jobs from Redis and run them with the handlers of a zizq.Router. "
        "Stops gracefully on SIGINT/SIGTERM: no new jobs, unstarted ones handed back, "
        "running ones given --shutdown-timeout seconds to finish, then exit 0. A second signal "
        "stops at once (the running jobs are handed back) and exits 1.",
    )
    w.add_argument("router", help="where the Router is, as module:attribute (e.g. app.jobs:router)")
    w.add_argument("-q", "--queues", help="comma-separated queues to take from (default: every queue)")
    w.add_argument("-c", "--concurrency", type=int, default=10, help="handlers running at once (default: 10)")
    w.add_argument("--prefetch", type=int, default=None, help="jobs held at once (default: = concurrency)")
    w.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="seconds running jobs get to finish on shutdown (default: 30)",
    )
    w.add_argument(
        "--heartbeat-interval", type=float, default=1.0, help="seconds between the worker's heartbeats (default: 1)"
    )
    w.add_argument(
        "--lease",
        type=float,
        default=5.0,
        help="seconds without a heartbeat after which the worker counts as lost and other workers "
        "hand its jobs back to their queues (default: 5)",
    )
    w.add_argument(
        "-p",
        "--processes",
        type=int,
        default=1,
        help="worker processes to run, each with -c handlers, under a supervisor that restarts any that "
        "dies and passes SIGINT/SIGTERM on to all (default: 1, no supervisor)",
    )
    w.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")
    w.add_argument("--url", default=None, help=URL_HELP)
    w.add_argument(
        "--namespace",
        default="zizq",
        help="namespace (key prefix {NS}:), or several separated by commas: one worker per namespace in each "
        "process, each on the Redis Cluster shard that holds it (default: zizq)",
    )
    w.set_defaults(func=cmd_worker)

    e = sub.add_parser(
        "enqueue",
        help="enqueue one job by type name",
        description="Enqueue one job of type TYPE with the JSON payload PAYLOAD, e.g. "
        'zizq enqueue send_email \'{"to": "a@b.c"}\' --queue emails.',
    )
    e.add_argument("type", help="job type name (the JobKind's NAME)")
    e.add_argument("payload", help="the payload, as JSON")
    e.add_argument("--queue", default="default", help="queue (default: default)")
    e.add_argument("--priority", type=int, default=None, help="0..65535, lower runs sooner (default: 32768)")
    e.add_argument("--delay", type=float, default=None, help="seconds to wait before the job is ready")
    e.add_argument("--json", action="store_true", help="print the job as JSON")
    common(e)
    e.set_defaults(func=cmd_enqueue)

    for name, what in (
        ("pause", "Stop workers taking jobs from QUEUE. Its jobs stay ready; enqueueing still works."),
        ("resume", "Let workers take jobs from QUEUE again."),
    ):
        sp = sub.add_parser(name, help=what.split(".")[0].lower(), description=what)
        sp.add_argument("queue", help="queue name")
        common(sp)
        sp.set_defaults(func=cmd_pause)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(
        level=getattr(args, "log_level", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    args.url = args.url or default_url()
    try:
        return int(args.func(args))
    except ZizqError as exc:
        print(f"zizq: error: {exc}", file=sys.stderr)
        return 1

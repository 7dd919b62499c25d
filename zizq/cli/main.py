"""The ``zizq`` command line: the parser, ``main``, and the small commands
(enqueue, pause and resume, cron); the others live in their own modules."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
from collections.abc import Sequence
from typing import Any, cast

import orjson

from zizq import connect, logs
from zizq._version import __version__
from zizq.cli.format import print_error, print_json, stamp
from zizq.cli.jobs import register as register_jobs
from zizq.cli.limits import register as register_limits
from zizq.cli.top import register as register_top
from zizq.cli.web import register as register_web
from zizq.cli.worker import KIND_SPEC, cmd_worker, load_kind
from zizq.client.options import default_url
from zizq.client.sync import Client
from zizq.errors import CronNotFound, ValidationError, ZizqError
from zizq.job import DEFAULT_QUEUE, JobKind

URL_HELP = (
    "Redis URL (default: $ZIZQ_REDIS_URL, else redis://localhost:6379/0): redis://, rediss:// (TLS), "
    "redis+cluster://HOST:PORT[,HOST:PORT...], redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE"
)


def _build(kind: type[JobKind], payload: Any) -> JobKind:
    """``kind`` from a payload typed at the command line: as a worker reads
    one, except that a field the kind does not have is refused (a typo here,
    not a newer producer's field)."""
    if isinstance(payload, dict) and not kind.TRANSPARENT:
        known = {f.name for f in dataclasses.fields(cast(Any, kind))}
        unknown = sorted(set(payload) - known)
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise ValidationError(f"{kind.__qualname__} has no field {names}; its fields: {', '.join(sorted(known))}")
    return kind.from_payload(payload)


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = orjson.loads(args.payload)
    except orjson.JSONDecodeError as exc:
        raise ZizqError(f"payload {args.payload!r} is not valid JSON: {exc}") from None
    options: dict[str, Any] = {"queue": args.queue, "priority": args.priority, "delay": args.delay}
    # Only those given: a JobKind's own limit and group apply otherwise.
    options.update({k: v for k in ("limit", "limit_key", "group") if (v := getattr(args, k)) is not None})
    kind = None if args.raw or not KIND_SPEC.fullmatch(args.type) else load_kind(args.type)
    with Client.from_url(args.url, args.namespace) as client:
        if kind is None:
            job = client.enqueue_raw(args.type, payload, **{**options, "queue": args.queue or DEFAULT_QUEUE})
        else:
            # Built as in code, so the kind's checks run and its defaults apply.
            job = client.enqueue(_build(kind, payload), **options)
    if args.json:
        print_json(job.to_dict())
    else:
        print(
            f"{job.id} {job.status} queue={job.queue} priority={job.priority}"
            + (" (duplicate)" if job.duplicate else "")
        )
    return 0


def _known_queue(client: Client, queue: str, hint: str) -> None:
    """Refuse a queue no job was ever enqueued to (most likely a typo)."""
    known = [q.name for q in client.list_queues(counts=False)]
    if queue in known:
        return
    close = difflib.get_close_matches(queue, known, n=1)
    raise ZizqError(
        f"queue {queue!r} is not known: no job was ever enqueued to it"
        + (f" (did you mean {close[0]!r}?)" if close else "")
        + f"; {hint}"
    )


def cmd_pause(args: argparse.Namespace) -> int:
    with Client.from_url(args.url, args.namespace) as client:
        if args.command == "pause":
            if not args.force:
                _known_queue(client, args.queue, "pass --force to pause it ahead of time")
            changed = client.pause_queue(args.queue)
        else:
            changed = client.resume_queue(args.queue)
            if not changed:  # else a typo would read "was already resumed"
                _known_queue(client, args.queue, "it is not paused either")
    state = "paused" if args.command == "pause" else "resumed"
    print(f"queue {args.queue!r} {state}" if changed else f"queue {args.queue!r} was already {state}")
    return 0


def cmd_cron(args: argparse.Namespace) -> int:
    with Client.from_url(args.url, args.namespace) as client:
        if args.action == "list":
            groups = [client.get_cron(args.group)] if args.group else client.list_crons()
            if args.json:
                print_json([dataclasses.asdict(g) for g in groups])
                return 0
            for g in groups:
                flags = " (paused)" if g.paused else ""
                print(f"{g.name}{flags} timezone={g.timezone or 'UTC'}")
                for e in g.entries:
                    state = " (paused)" if e.paused else ""
                    print(
                        f"  {e.name}{state}  {e.expression!r} {e.timezone}  type={e.job['type']} queue={e.job['queue']}"
                        f"  next={stamp(e.next_enqueue_at)} last={stamp(e.last_enqueue_at)}"
                    )
            if not groups:
                print("no cron groups")
            return 0
        what = f"cron entry {args.entry!r} of group {args.group!r}" if args.entry else f"cron group {args.group!r}"
        if args.action == "delete":
            gone = client.delete_cron_entry(args.group, args.entry) if args.entry else client.delete_cron(args.group)
            if not gone:
                raise CronNotFound(f"no {what}")
            print(f"{what} deleted")
            return 0
        pause = args.action == "pause"
        if args.entry:
            changed = (
                client.pause_cron_entry(args.group, args.entry)
                if pause
                else client.resume_cron_entry(args.group, args.entry)
            )
        else:
            changed = client.pause_cron(args.group) if pause else client.resume_cron(args.group)
        state = "paused" if pause else "resumed"
        print(f"{what} {state}" if changed else f"{what} was already {state}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Refuses an unknown option in the (sub)command that was given it, so
    the usage shown is that command's (argparse shows the top level's)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:  # a leaf command: nothing below it could take them
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    w.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="jobs held at once, running or taken and waiting to run (default: 2 x concurrency)",
    )
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
        "--no-cron",
        dest="cron",
        action="store_false",
        help="do not run the cron tick (by default every worker does; each due run is enqueued once)",
    )
    w.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics over HTTP on PORT (path /metrics); off by default",
    )
    w.add_argument("--metrics-addr", default="0.0.0.0", help="address the metrics server listens on (default: 0.0.0.0)")
    w.add_argument(
        "-p",
        "--processes",
        type=int,
        default=1,
        help="worker processes to run, each with -c handlers, under a supervisor that restarts any that "
        "dies and passes SIGINT/SIGTERM on to all (default: 1, no supervisor)",
    )
    w.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        default="INFO",
        help="logging level, in upper or lower case (default: INFO): DEBUG adds takes, acks and heartbeats; "
        "INFO shows the start line and a line per job received and done; WARNING only failures and problems; "
        "ERROR only jobs that die and errors",
    )
    w.add_argument(
        "--log-format",
        choices=logs.LOG_FORMATS,
        default="text",
        help="text lines, or one JSON object a line with the job's id, type, queue, attempt and worker id "
        "(default: text)",
    )
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
        help="enqueue one job by type name or JobKind",
        description="Enqueue one job of type TYPE with the JSON payload PAYLOAD, e.g. "
        'zizq enqueue send_email \'{"to": "a@b.c"}\' --queue emails. TYPE may name a JobKind as '
        "module:Kind (e.g. app.jobs:SendEmail; the current directory is on the path): the job is built "
        "from PAYLOAD as in code, so the kind's checks run, and its QUEUE, PRIORITY and other defaults "
        "apply unless given here.",
    )
    e.add_argument("type", help="job type name (the JobKind's NAME), or module:Kind")
    e.add_argument("payload", help="the payload, as JSON")
    e.add_argument("--queue", default=None, help="queue (default: the JobKind's QUEUE, else default)")
    e.add_argument(
        "--priority", type=int, default=None, help="0..65535, lower runs sooner (default: the JobKind's, else 32768)"
    )
    e.add_argument("--raw", action="store_true", help="TYPE is a type name even if it reads as module:Kind")
    e.add_argument("--delay", type=float, default=None, help="seconds to wait before the job is ready")
    e.add_argument(
        "--limit", default=None, help="name of the limit the job starts under (see zizq limits; default: the JobKind's)"
    )
    e.add_argument("--limit-key", default=None, help="key the limit holds per, e.g. an account id")
    e.add_argument("--group", default=None, help="group (e.g. a tenant) whose jobs take turns with other groups'")
    e.add_argument("--json", action="store_true", help="print the job as JSON")
    common(e)
    e.set_defaults(func=cmd_enqueue)

    for name, what in (
        (
            "pause",
            "Stop workers taking jobs from QUEUE. Its jobs stay ready; enqueueing still works. "
            "A queue no job was ever enqueued to (not in 'zizq queues') is refused as a likely typo "
            "unless --force.",
        ),
        ("resume", "Let workers take jobs from QUEUE again."),
    ):
        sp = sub.add_parser(name, help=what.split(".")[0].lower(), description=what)
        sp.add_argument("queue", help="queue name")
        if name == "pause":
            sp.add_argument(
                "--force",
                action="store_true",
                help="pause QUEUE even if no job was ever enqueued to it (to pause ahead)",
            )
        common(sp)
        sp.set_defaults(func=cmd_pause)
    c = sub.add_parser(
        "cron",
        help="list, pause, resume or delete cron groups and entries",
        description="Manage the cron groups registered with Client.replace_cron. A paused group or entry "
        "lets its due times pass without enqueueing (no catch-up on resume).",
    )
    csub = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    cl = csub.add_parser("list", help="show groups and entries with their next and last runs (UTC)")
    cl.add_argument("group", nargs="?", help="only this group")
    cl.add_argument("--json", action="store_true", help="print the groups as JSON (times in ms)")
    common(cl)
    cl.set_defaults(func=cmd_cron)
    for name, what in (
        ("pause", "pause a group, or one entry of it"),
        ("resume", "resume a group, or one entry of it"),
        ("delete", "delete a group with its entries, or one entry"),
    ):
        sp = csub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        sp.add_argument("group", help="cron group name")
        sp.add_argument("entry", nargs="?", help="entry name (default: the whole group)")
        common(sp)
        sp.set_defaults(func=cmd_cron)
    register_jobs(sub, common)
    register_limits(sub, common)
    register_top(sub, common)
    register_web(sub, common)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    logs.configure(getattr(args, "log_level", "WARNING"), getattr(args, "log_format", "text"))
    args.url = args.url or default_url()
    try:
        if args.command != "worker":  # a worker checks by itself, and waits for a Redis that is not up yet
            connect.check(args.url)
        return int(args.func(args))
    except ZizqError as exc:
        print_error(exc)
        return 1

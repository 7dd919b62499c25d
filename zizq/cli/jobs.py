"""The ``zizq jobs``, ``zizq queues`` and ``zizq reset`` commands.

Exit codes: 0 done; 1 an error (bad value, Redis unavailable, reset refused
while workers hold leases); 2 a usage error; 3 no job with that id; 4 the
confirmation was declined (or could not be asked: no terminal and no --yes);
5 the job waited for ended dead; 6 the wait's timeout ran out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from zizq.cli.format import error_text, json_text, moment, print_error, print_json, progress_text, relative, table
from zizq.client.sync import Client
from zizq.errors import JobNotFound, ValidationError, WaitTimeout
from zizq.filters import Filter
from zizq.job import Job
from zizq.options import MAX_SECONDS

EXIT_NOT_FOUND = 3
EXIT_DECLINED = 4
EXIT_DEAD = 5  # zizq jobs wait: the job ended dead (or cancelled)
EXIT_TIMEOUT = 6  # zizq jobs wait: still not finished when --timeout ran out

FILTER_HELP = (
    "Filters (all given ones must match; commas separate alternatives): --status ready,scheduled,in_flight,"
    "completed,dead; --queue; --type; --id; ranges --priority/--attempts/--ready-at as N, A..B, ..B or A.. "
    "(ready-at in ms since the epoch); --jq EXPR on the payload (a job matches when it yields anything but "
    "false/null). status, and queue for ready jobs, use indexes; the others read each job of the states walked."
)


def _console() -> Any:
    from rich.console import Console

    # Piped output is not cut to 80 columns: ids must stay whole.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250)


def _filter(args: argparse.Namespace) -> Filter:
    ids = list(args.ids) if getattr(args, "ids", None) else []
    if args.id:
        ids.append(args.id)
    return Filter(
        id=",".join(ids) if ids else None,
        queue=args.queue,
        type=args.type,
        status=args.status,
        priority=args.priority,
        ready_at=args.ready_at,
        attempts=args.attempts,
        jq=args.jq,
    )


def _no_filter(args: argparse.Namespace) -> bool:
    return not any(
        getattr(args, name, None)
        for name in ("ids", "id", "queue", "type", "status", "priority", "ready_at", "attempts", "jq")
    )


def confirm(question: str, yes: bool) -> bool:
    """True with --yes, else the answer to a y/N question on the terminal."""
    if yes:
        return True
    if not sys.stdin.isatty():
        print(f"zizq: {question} Refused: no terminal to ask on; pass --yes", file=sys.stderr)
        return False
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _job_table(jobs: list[Job], now: int) -> Any:
    shown = table(("ID", "STATUS", "QUEUE", "TYPE", "PRIORITY", "ATTEMPTS", "READY"))
    for j in jobs:
        shown.add_row(j.id, j.status, j.queue, j.type, str(j.priority), str(j.attempts), relative(j.ready_at, now))
    return shown


def _now(client: Client) -> int:
    """Redis's clock, in ms since the epoch: the one the job times come from."""
    return client.stats().now


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    page = client.list_jobs(_filter(args), order=args.order, limit=args.limit, after=args.after)
    if args.json:
        print_json({"jobs": [j.to_dict() for j in page.jobs], "next": page.next})
        return 0
    console = _console()
    if page.jobs:
        console.print(_job_table(page.jobs, _now(client)))
    else:
        console.print("no jobs match")
    if page.next:
        console.print(f"more: --after {page.next}")
    return 0


def cmd_count(client: Client, args: argparse.Namespace) -> int:
    n = client.count_jobs(_filter(args))
    if args.json:
        print_json({"count": n})
    else:
        print(n)
    return 0


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    job = client.get_job(args.id)
    if args.json:
        print_json(job.to_dict())
        return 0
    console = _console()
    from rich.table import Table

    fields = Table(box=None, show_header=False)
    fields.add_column(style="bold")
    fields.add_column()
    now = _now(client)
    for key, value in job.to_dict(payload=False).items():
        if key == "result" or key == "progress_message":
            continue
        timed = key.endswith("_at") and isinstance(value, int)
        if key == "progress":
            value = progress_text(value, job.progress_message)
        fields.add_row(key, f"{moment(value, now)}, {value} ms" if timed else str(value))
    console.print(fields)
    if job.result_json is not None:
        console.print("[bold]result[/bold]")
        console.print(json_text(job.result), markup=False)
    console.print("[bold]payload[/bold]")
    console.print(json_text(job.payload), markup=False)
    errors = client.job_errors(job.id)
    if errors:
        e = errors[-1]
        console.print(f"[bold]last error[/bold] (of {len(errors)}; all: zizq jobs errors {job.id})")
        console.print(f"attempt {e.attempt}  failed {moment(e.failed_at, now)}  {error_text(e)}", markup=False)
    return 0


def cmd_errors(client: Client, args: argparse.Namespace) -> int:
    errors = client.job_errors(args.id)
    if args.json:
        print_json([dataclasses.asdict(e) for e in errors])
        return 0
    console = _console()
    if not errors:
        console.print("no errors recorded")
    now = _now(client) if errors else 0
    for e in errors:
        console.print(f"[bold]attempt {e.attempt}[/bold]  failed {moment(e.failed_at, now)}  ", end="")
        console.print(error_text(e), markup=False)
        if e.backtrace:
            console.print(e.backtrace.rstrip(), markup=False)
    return 0


def _patch_changes(sets: list[str]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for item in sets:
        name, eq, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq:
            raise ValidationError(f"--set {item!r} is not FIELD=VALUE")
        if name == "queue":
            changes["queue"] = value
        elif name in ("priority", "retry_limit"):
            if name == "retry_limit" and value in ("", "default", "null"):
                changes[name] = None
            elif value.isascii() and value.isdigit():
                changes[name] = int(value)
            else:
                raise ValidationError(f"--set {item!r}: {value!r} is not a whole number")
        elif name == "ready_at":
            if value in ("", "now", "null"):
                changes["ready_at"] = None
            elif value.isascii() and value.isdigit() and int(value) <= MAX_SECONDS * 1000:
                changes["ready_at"] = datetime.fromtimestamp(int(value) / 1000, UTC)
            else:
                raise ValidationError(f"--set {item!r}: ready_at is ms since the epoch, or 'now'")
        else:
            raise ValidationError(f"--set {item!r}: field {name!r} is not queue, priority, ready_at or retry_limit")
    if not changes:
        raise ValidationError("give at least one --set FIELD=VALUE")
    return changes


def _report(args: argparse.Namespace, key: str, n: int) -> int:
    if args.json:
        print_json({key: n})
    else:
        print(f"{n} job{'s' if n != 1 else ''} {key}")
    return 0


def cmd_patch(client: Client, args: argparse.Namespace) -> int:
    changes = _patch_changes(args.set or [])
    if args.id and _no_filter(argparse.Namespace(**{**vars(args), "id": None})):
        job = client.patch_job(args.id, **changes)
        if args.json:
            print_json(job.to_dict(payload=False))
        else:
            print(f"{job.id} {job.status} queue={job.queue} priority={job.priority}")
        return 0
    f = _filter(args)
    if _no_filter(args) and not confirm("Patch every job that has not finished?", args.yes):
        return EXIT_DECLINED
    return _report(args, "patched", client.patch_jobs(f, **changes))


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    if args.id and _no_filter(argparse.Namespace(**{**vars(args), "id": None})):
        client.delete_job(args.id)
        return _report(args, "deleted", 1)
    if _no_filter(args) and not confirm(f"Delete every job of namespace {client.namespace!r}?", args.yes):
        return EXIT_DECLINED
    return _report(args, "deleted", client.delete_jobs(_filter(args)))


def cmd_retry(client: Client, args: argparse.Namespace) -> int:
    if args.id and _no_filter(argparse.Namespace(**{**vars(args), "id": None})):
        job = client.retry_job(args.id)
        if args.json:
            print_json(job.to_dict(payload=False))
        else:
            print(f"{job.id} {job.status}")
        return 0
    if _no_filter(args) and not confirm(f"Retry every dead job of namespace {client.namespace!r}?", args.yes):
        return EXIT_DECLINED
    return _report(args, "retried", client.retry_jobs(_filter(args)))


def cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    if args.id and _no_filter(argparse.Namespace(**{**vars(args), "id": None})):
        if client.cancel_job(args.id):
            return _report(args, "cancelled", 1)
        job = client.get_job(args.id)
        if not args.json:
            print(f"{job.id} had already finished ({job.status}); nothing changed")
            return 0
        return _report(args, "cancelled", 0)
    if _no_filter(args) and not confirm(
        f"Cancel every job of namespace {client.namespace!r} that has not finished?", args.yes
    ):
        return EXIT_DECLINED
    return _report(args, "cancelled", client.cancel_jobs(_filter(args)))


def cmd_wait(client: Client, args: argparse.Namespace) -> int:
    try:
        job = client.wait(args.id, args.timeout)
    except WaitTimeout as exc:
        print_error(exc)
        return EXIT_TIMEOUT
    if args.json:
        print_json(job.to_dict())
    else:
        print(f"{job.id} {job.status}")
        if job.result_json is not None:
            print(json_text(job.result))
        if job.last_error is not None:
            print(error_text(job.last_error))
    return 0 if job.status == "completed" else EXIT_DEAD


def cmd_queues(client: Client, args: argparse.Namespace) -> int:
    queues = client.list_queues(counts=not args.fast)
    if args.json:
        print_json([dataclasses.asdict(q) for q in queues])
        return 0
    columns = ("QUEUE", "PAUSED", "READY", "SCHEDULED", "IN FLIGHT", "COMPLETED", "DEAD")
    shown = table(columns, right=columns[1:])
    for q in queues:
        counts = [q.ready, q.scheduled, q.in_flight, q.completed, q.dead]
        shown.add_row(q.name, "yes" if q.paused else "", *("-" if c is None else str(c) for c in counts))
    _console().print(shown if queues else "no queues")
    return 0


def cmd_reset(client: Client, args: argparse.Namespace) -> int:
    question = f"Delete every key of namespace {client.namespace!r} (jobs, queues, cron groups, settings)?"
    if not confirm(question, args.yes):
        return EXIT_DECLINED
    n = client.reset(force=args.force)
    print(f"namespace {client.namespace!r} reset: {n} keys deleted")
    return 0


def run(command: Callable[[Client, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        with Client.from_url(args.url, args.namespace) as client:
            try:
                return command(client, args)
            except JobNotFound as exc:
                print_error(exc)
                return EXIT_NOT_FOUND

    return call


def _filters(sp: argparse.ArgumentParser) -> None:
    g = sp.add_argument_group("filters", FILTER_HELP)
    g.add_argument("--status", help="states, e.g. ready,scheduled")
    g.add_argument("--queue", help="queue names, e.g. emails,default")
    g.add_argument("--type", help="job type names")
    g.add_argument("--id", dest="ids", action="append", help="job ids (repeat or separate with commas)")
    g.add_argument("--priority", help="priority range, e.g. 0..100")
    g.add_argument("--attempts", help="attempts range, e.g. 3..")
    g.add_argument("--ready-at", dest="ready_at", help="ready_at range in ms since the epoch")
    g.add_argument("--jq", help="jq expression on the payload, e.g. '.to | endswith(\"@example.com\")'")


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the jobs, queues and reset commands to the ``zizq`` parser."""
    j = sub.add_parser(
        "jobs",
        help="list, count, show, wait for, patch, delete, retry or cancel jobs",
        description="Query and manage jobs. Exit codes: 0 done, 1 error, 2 usage, 3 no such job, "
        "4 confirmation declined, 5 the job waited for ended dead, 6 the wait timed out.",
    )
    jsub = j.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, what: str, func: Callable[[Client, argparse.Namespace], int], one: str = "") -> Any:
        sp = jsub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
        if one:
            sp.add_argument("id", nargs="?" if one == "optional" else None, help="job id")
        sp.add_argument("--json", action="store_true", help="print JSON (for scripts)")
        common(sp)
        sp.set_defaults(func=run(func))
        return sp

    sp = action("list", "list jobs matching filters, in id (creation) order, with payloads in --json", cmd_list)
    _filters(sp)
    sp.add_argument("--order", choices=("asc", "desc"), default="asc", help="by id (default: asc, oldest first)")
    sp.add_argument("--limit", type=int, default=50, help="jobs per page, 1..2000 (default: 50)")
    sp.add_argument("--after", help="cursor: the id printed as 'more: --after ID' by the previous page")
    sp.set_defaults(id=None)
    sp = action("count", "count jobs matching filters", cmd_count)
    _filters(sp)
    sp.set_defaults(id=None)
    action("get", "show one job with its payload (as JSON) and its last error", cmd_get, one="required")
    action("errors", "show a job's error history, oldest first", cmd_errors, one="required")
    sp = action(
        "wait",
        "wait until a job is completed (exit 0, its result printed) or dead (exit 5, its last error printed); "
        "exit 6 when --timeout runs out first",
        cmd_wait,
        one="required",
    )
    sp.add_argument("--timeout", type=float, default=None, help="seconds to wait at most (default: no limit)")
    sp = action(
        "patch",
        "change one job (ID) or every unfinished job matching filters (finished jobs are skipped)",
        cmd_patch,
        one="optional",
    )
    sp.add_argument(
        "--set",
        action="append",
        metavar="FIELD=VALUE",
        help="a change: queue=NAME, priority=N, ready_at=MS|now, retry_limit=N|default (repeatable)",
    )
    sp.add_argument("--yes", action="store_true", help="do not ask before patching every job (no filter)")
    _filters(sp)
    sp = action(
        "delete", "delete one job (ID) or every job matching filters (no filter: every job)", cmd_delete, "optional"
    )
    sp.add_argument("--yes", action="store_true", help="do not ask before deleting every job (no filter)")
    _filters(sp)
    sp = action(
        "retry",
        "put one dead job (ID), or every dead job matching filters, back to ready (no filter: every dead job)",
        cmd_retry,
        "optional",
    )
    sp.add_argument("--yes", action="store_true", help="do not ask before retrying every dead job (no filter)")
    _filters(sp)
    sp = action(
        "cancel",
        "cancel one job (ID) or every unfinished job matching filters: it goes dead with cancelled_at set, "
        "a running one's handler is stopped",
        cmd_cancel,
        "optional",
    )
    sp.add_argument("--yes", action="store_true", help="do not ask before cancelling every unfinished job (no filter)")
    _filters(sp)

    q = sub.add_parser(
        "queues",
        help="list queues with job counts per state",
        description="List every queue ever used with its counts. Ready counts come from the queue's index; "
        "the other states are counted by reading each job not ready (use --fast to skip that).",
    )
    q.add_argument("--fast", action="store_true", help="ready counts and paused flags only (no walk)")
    q.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    common(q)
    q.set_defaults(func=run(cmd_queues))

    r = sub.add_parser(
        "reset",
        help="delete every key of a namespace",
        description="Delete every key of the namespace: jobs, queues, cron groups and settings. Asks for "
        "confirmation unless --yes; refuses while workers hold leases unless --force. Exit 4 when declined.",
    )
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.add_argument("--force", action="store_true", help="reset even while workers hold leases")
    common(r)
    r.set_defaults(func=run(cmd_reset))

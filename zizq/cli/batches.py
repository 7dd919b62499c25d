"""`zizq batches list|get`: batches and their counts (see Client.batch)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from zizq._protocol.flows import BatchInfo
from zizq.cli.format import moment, print_error, print_json, relative, table
from zizq.client.sync import Client
from zizq.errors import BatchNotFound

EXIT_NOT_FOUND = 3


def _state(b: BatchInfo) -> str:
    if b.finished:
        return "finished"
    return "closed" if b.closed else "open"


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    batches = client.list_batches(limit=args.limit, offset=args.offset)
    if args.json:
        print_json([b.to_dict() for b in batches])
        return 0
    if not batches:
        print("no batches")
        return 0
    from rich.console import Console

    columns = ("ID", "STATE", "TOTAL", "PENDING", "COMPLETED", "DEAD", "CREATED")
    shown = table(columns, right=("TOTAL", "PENDING", "COMPLETED", "DEAD"))
    now = client.stats().now
    for b in batches:
        counts = (b.total, b.pending, b.completed, b.dead)
        shown.add_row(b.id, _state(b), *(str(n) for n in counts), relative(b.created_at, now))
    Console(soft_wrap=True).print(shown)
    return 0


def cmd_get(client: Client, args: argparse.Namespace) -> int:
    b = client.get_batch(args.id)
    if args.json:
        print_json(b.to_dict())
        return 0
    now = client.stats().now
    rows: list[tuple[str, str]] = [("id", b.id), ("state", _state(b))]
    rows += [(name, str(getattr(b, name))) for name in ("total", "pending", "completed", "dead")]
    rows.append(("created_at", f"{moment(b.created_at, now)}, {b.created_at} ms"))
    if b.finished_at is not None:
        rows.append(("finished_at", f"{moment(b.finished_at, now)}, {b.finished_at} ms"))
    if b.parent:
        rows.append(("parent", b.parent))
    for name in ("on_success", "on_complete", "on_dead"):
        job_id = getattr(b, name)
        if job_id:
            rows.append((name, f"{job_id} ({'fired' if name in b.fired else 'not fired'})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _run(command: Callable[[Client, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        with Client.from_url(args.url, args.namespace) as client:
            try:
                return command(client, args)
            except BatchNotFound as exc:
                print_error(exc)
                return EXIT_NOT_FOUND

    return call


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the batches command to the ``zizq`` parser."""
    b = sub.add_parser(
        "batches",
        help="list batches or show one, with counts per state",
        description="Batches made with Client.batch: members counted by state, and their callbacks. "
        "Exit codes: 0 done, 1 error, 2 usage, 3 no such batch.",
    )
    bsub = b.add_subparsers(dest="action", required=True, metavar="ACTION")
    sp = bsub.add_parser("list", help="batches, newest first", description="List batches, newest first.")
    sp.add_argument("--limit", type=int, default=50, help="batches to show, 1..500 (default: 50)")
    sp.add_argument("--offset", type=int, default=0, help="skip this many of the newest (default: 0)")
    sp.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    common(sp)
    sp.set_defaults(func=_run(cmd_list))
    sp = bsub.add_parser("get", help="one batch's counts and callbacks", description="Show one batch.")
    sp.add_argument("id", help="batch id")
    sp.add_argument("--json", action="store_true", help="print JSON (times in ms)")
    common(sp)
    sp.set_defaults(func=_run(cmd_get))

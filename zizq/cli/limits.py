"""The ``zizq limits`` command: list the limits with their live state, set
one, delete one.

Exit codes: 0 done; 1 an error (Redis unavailable, no such limit to
delete); 2 a usage error or a bad value.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from zizq.cli.format import print_error, print_json, table
from zizq.client.sync import Client
from zizq.errors import ValidationError
from zizq.limits import Limit, LimitState

EXIT_BAD_VALUE = 2


def state_dict(state: LimitState) -> dict[str, Any]:
    """A limit and its state as the JSON of ``zizq limits list --json``."""
    return {
        "name": state.name,
        "concurrency": state.limit.concurrency,
        "rate": state.limit.rate,
        "per": state.limit.per,
        "running": state.running,
        "starts": state.starts,
        "waiting": state.waiting,
        "keys": state.keys,
        "busiest": [{"key": k.key, "running": k.running, "starts": k.starts} for k in state.busiest],
    }


def limits_table(states: list[LimitState]) -> Any:
    """The table of ``zizq limits list`` (and of ``zizq top``'s limits)."""
    shown = table(
        ("LIMIT", "HOLDS", "RUNNING", "STARTS", "WAITING", "KEYS"), right=("RUNNING", "STARTS", "WAITING", "KEYS")
    )
    for s in states:
        shown.add_row(s.name, str(s.limit), str(s.running), str(s.starts), str(s.waiting), str(s.keys))
    return shown


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    states = client.limits()
    if args.json:
        print_json([state_dict(s) for s in states])
        return 0
    if not states:
        print("no limits")
        return 0
    from rich.console import Console

    Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 250).print(limits_table(states))
    return 0


def cmd_set(client: Client, args: argparse.Namespace) -> int:
    try:
        limit = Limit(concurrency=args.concurrency, rate=args.rate, per=args.per)
        new = client.set_limit(args.name, limit)
    except ValidationError as exc:
        print_error(exc)
        return EXIT_BAD_VALUE
    print(f"limit {args.name} {'set' if new else 'changed'}: {limit}")
    return 0


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    if not client.delete_limit(args.name):
        print_error(f"no limit named {args.name!r}")
        return 1
    print(f"limit {args.name} deleted")
    return 0


def run(command: Callable[[Client, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        with Client.from_url(args.url, args.namespace) as client:
            return command(client, args)

    return call


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the limits command to the ``zizq`` parser."""
    p = sub.add_parser(
        "limits",
        help="list, set or delete concurrency and rate limits",
        description="Concurrency and rate limits held across every worker. A job is bound to a limit by its "
        "JobKind's LIMIT or enqueue(limit=...); a limit named queue:NAME holds for every job of queue NAME. "
        "Exit codes: 0 done, 1 error, 2 usage or bad value.",
    )
    lsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sp = lsub.add_parser("list", help="every limit with jobs running, starts in the window and jobs waiting")
    sp.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    common(sp)
    sp.set_defaults(func=run(cmd_list))
    sp = lsub.add_parser("set", help="create or change a limit (it holds from the next take)")
    sp.add_argument("name", help="the limit's name (queue:NAME for a whole queue)")
    sp.add_argument("--concurrency", type=int, help="the most jobs running at once (per key)")
    sp.add_argument("--rate", type=int, help="the most starts in any window of --per seconds (per key)")
    sp.add_argument("--per", type=float, default=1.0, help="the rate window in seconds (default: 1)")
    common(sp)
    sp.set_defaults(func=run(cmd_set))
    sp = lsub.add_parser("delete", help="delete a limit: its jobs run unlimited")
    sp.add_argument("name", help="the limit's name")
    common(sp)
    sp.set_defaults(func=run(cmd_delete))

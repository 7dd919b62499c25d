"""``zizq top``: a live terminal view of a namespace.

Tabs (Tab/Shift-Tab, or 1-5):
  1 In-Flight  by take time; STATE running (a handler runs it) or prefetched
               (taken ahead, waiting for a free handler), as of the worker's
               last heartbeat
  2 Ready      dispatch order: priority, then id, across queues
  3 Scheduled  by due time
  4 Retries    scheduled jobs that failed before: next try, last error
  5 Dead       the latest first, with the last error

Keys:
  Up/Down (k/j), PgUp/PgDn, g/Home, G/End   move in the list
  Enter or i      open the detail panel of the selected job (every field,
                  the payload, the errors with their backtraces)
  Up/Down, PgUp/PgDn, g/G   scroll the open panel; Esc (or i) closes it
  /               search by type, then by queue (substrings, comma or space
                  for alternatives; both must match; empty clears; Esc
                  cancels); n/N next/previous match
  p               pause the job list (the totals keep updating)
  D               delete the selected job (after a y/N question)
  q or Ctrl-C     quit

Each refresh sends two script calls whatever the number of jobs:
lua/stats.lua (counts per state from ZCARD/ZCOUNT, ready count per queue)
and lua/window.lua (one page of the current tab and those jobs' records
without payloads; the Retries tab looks at up to 1,000 scheduled jobs a
refresh, from the cursor). The detail panel reads one job and its errors.
Nothing reads every job.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from collections.abc import Callable
from typing import Any

from zizq.cli.top_view import ESC, FIXED_LINES, Top
from zizq.client.sync import Client
from zizq.errors import ValidationError

KEYS = {
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
    "\x1b[H": "home",
    "\x1b[1~": "home",
    "\x1b[F": "end",
    "\x1b[4~": "end",
    "\x1b[Z": "shift-tab",
    "\x1bOA": "up",
    "\x1bOB": "down",
    "\x1bOH": "home",
    "\x1bOF": "end",
}


def split_keys(data: str) -> list[str]:
    """Key names from what the terminal sent: known escape sequences by
    name, other sequences as 'unknown' (so their bytes are not read as
    keys), a lone Esc as 'esc'."""
    out = []
    i = 0
    while i < len(data):
        if data[i] != "\x1b":
            out.append(data[i])
            i += 1
            continue
        if data[i + 1 : i + 2] not in ("[", "O"):
            out.append(ESC)
            i += 1
            continue
        # A control sequence: ESC [ or ESC O, parameter and intermediate
        # bytes (0x20-0x3f), one final byte (0x40-0x7e).
        end = i + 2
        while end < len(data) and "\x20" <= data[end] <= "\x3f":
            end += 1
        seq = data[i : end + 1]
        out.append(KEYS.get(seq, "unknown"))
        i = end + 1
    return out


def _read_keys(fd: int) -> str:
    """What the terminal sent; an escape sequence cut by the read is
    completed from what follows within 50 ms (a lone Esc stays one)."""
    data = os.read(fd, 1024).decode(errors="replace")
    while _cut(data) and select.select([fd], [], [], 0.05)[0]:
        data += os.read(fd, 1024).decode(errors="replace")
    return data


def _cut(data: str) -> bool:
    # Ends in ESC, or in ESC [ / ESC O and parameter bytes without the final byte.
    tail = data[data.rfind("\x1b") :] if "\x1b" in data else ""
    return tail == "\x1b" or (tail[1:2] in ("[", "O") and all("\x20" <= c <= "\x3f" for c in tail[2:]))


def run_top(client: Client, interval: float = 1.0) -> int:
    """Run the view on this process's terminal until q or Ctrl-C."""
    import termios
    import tty

    from rich.console import Console
    from rich.live import Live

    if not sys.stdin.isatty():
        raise ValidationError("zizq top needs a terminal")
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    console = Console()
    top = Top(client)

    def fit() -> None:
        top.width, top.height = console.size.width, console.size.height
        top.page_rows = max(3, top.height - FIXED_LINES)

    try:
        tty.setcbreak(fd)
        fit()
        top.refresh()
        with Live(top.render(), console=console, screen=True, auto_refresh=False) as live:
            next_refresh = time.monotonic() + interval
            while True:
                fit()
                ready, _, _ = select.select([fd], [], [], max(0.0, next_refresh - time.monotonic()))
                if ready:
                    data = _read_keys(fd)
                    if not all(top.key(k) for k in split_keys(data)):
                        return 0
                if time.monotonic() >= next_refresh:
                    top.refresh()
                    next_refresh = time.monotonic() + interval
                live.update(top.render(), refresh=True)
    except KeyboardInterrupt:
        return 0
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def cmd_top(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        raise ValidationError(f"--interval {args.interval!r} must be a number of seconds above 0")
    with Client.from_url(args.url, args.namespace) as client:
        return run_top(client, args.interval)


def register(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``zizq top`` to the ``zizq`` parser."""
    t = sub.add_parser(
        "top",
        help="a live terminal view of jobs (needs rich)",
        description=(__doc__ or "").split("\n\n", 1)[1].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default: 1)")
    common(t)
    t.set_defaults(func=cmd_top)

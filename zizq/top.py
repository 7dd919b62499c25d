"""``zizq top``: a live terminal view of a namespace (needs ``rich``:
``pip install 'zizq[ops]'``).

Each refresh sends two script calls whatever the number of jobs:
``lua/stats.lua`` (counts per state from ZCARD/ZCOUNT, ready count per
queue) and ``lua/window.lua`` (one page of the current tab, in dispatch
order, and those jobs' records without payloads). The detail panel reads one
job and its errors. Nothing reads every job.

Keys: Tab/Shift-Tab switch tabs (in flight, ready, scheduled); Up/Down,
PgUp/PgDn, g/Home, G/End move; i toggles the detail panel; / searches
(type, then queue: substrings, comma or space for alternatives; both must
match; empty clears), n/N next/previous match; p pauses the job list (totals
keep updating); D deletes the selected job after a y/N confirmation; q or
Ctrl-C quits.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import __version__, connect
from .client import Client
from .errors import JobNotFound, ValidationError, ZizqError
from .job import ErrorRecord, Job
from .query import QueryCore, Row, Stats

TABS = (("in_flight", "In-Flight", "DURATION"), ("ready", "Ready", "DELAY"), ("scheduled", "Scheduled", "DUE"))
SEARCH_WINDOW = 500  # jobs of a tab a search looks at, from the cursor
MAX_MERGE_OFFSET = 10_000  # deepest offset of the ready tab when several queues are merged


def _span(ms: int) -> str:
    s = max(ms, 0) / 1000
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    if s < 86400:
        return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"
    return f"{int(s // 86400)}d{int(s % 86400 // 3600):02d}h"


def _terms(text: str) -> list[str]:
    return [t for t in text.replace(",", " ").split() if t]


@dataclass
class TopState:
    """What the view shows; changed by keys, read by render."""

    tab: int = 0
    offset: int = 0  # rank of the first row of the page in the tab
    selected: int = 0  # row within the page
    paused: bool = False
    detail: bool = False
    search_type: list[str] = field(default_factory=list)
    search_queue: list[str] = field(default_factory=list)
    prompt: str | None = None  # 'type', 'queue' or 'delete' while asking
    buffer: str = ""
    message: str = ""


class Top:
    """The view's data and key handling, without a terminal (tests drive it
    directly); :func:`run_top` puts it on a terminal."""

    def __init__(self, client: Client, page_rows: int = 20) -> None:
        self.client = client
        self.q = QueryCore(client.core)
        self.page_rows = page_rows
        self.state = TopState()
        self.stats: Stats | None = None
        self.total = 0
        self.rows: list[Row] = []
        self.detail_job: Job | None = None
        self.detail_errors: list[ErrorRecord] = []
        self.error = ""

    @property
    def tab_state(self) -> str:
        return TABS[self.state.tab][0]

    @property
    def searching(self) -> bool:
        return bool(self.state.search_type or self.state.search_queue)

    def _match(self, row: Row) -> bool:
        job = row.job
        if job is None:
            return False
        s = self.state
        return (not s.search_type or any(t in job.type for t in s.search_type)) and (
            not s.search_queue or any(t in job.queue for t in s.search_queue)
        )

    def refresh(self) -> None:
        """Read the counts, and (unless paused) the current tab's page."""
        try:
            self.stats = self.client.stats()
            if not self.state.paused:
                self._read_page()
            self._read_detail()
            self.error = ""
        except ZizqError as exc:  # Redis away for a moment: say so, keep going
            self.error = str(exc)

    def _read_page(self) -> None:
        s = self.state
        queues = list(self.stats.queues) if self.stats else []
        count = SEARCH_WINDOW if self.searching else self.page_rows
        total, rows = self.client.run(self.q.window(self.tab_state, s.offset, count, queues))
        if self.searching:
            rows = [r for r in rows if self._match(r)][: self.page_rows]
        self.total, self.rows = total, rows
        if s.selected >= len(rows):
            s.selected = max(0, len(rows) - 1)

    def _read_detail(self) -> None:
        row = self.selected_row()
        if not self.state.detail or row is None:
            self.detail_job, self.detail_errors = None, []
            return
        try:
            self.detail_job = self.client.get_job(row.id)
            self.detail_errors = self.client.job_errors(row.id)
        except JobNotFound:
            self.detail_job, self.detail_errors = None, []

    def selected_row(self) -> Row | None:
        rows = self.rows
        return rows[self.state.selected] if 0 <= self.state.selected < len(rows) else None

    def _max_offset(self) -> int:
        limit = self.total - 1
        if self.tab_state == "ready" and self.stats and sum(1 for n, _ in self.stats.queues.values() if n) > 1:
            limit = min(limit, MAX_MERGE_OFFSET)
        return max(0, limit)

    def _move(self, delta: int) -> None:
        s = self.state
        target = s.selected + delta
        if 0 <= target < len(self.rows):
            s.selected = target
            return
        step = SEARCH_WINDOW if self.searching else self.page_rows
        if target < 0 and s.offset > 0:
            s.offset = max(0, s.offset - step)
            s.selected = 0 if self.searching else max(0, step + target)
        elif target >= len(self.rows) and s.offset + step <= self._max_offset():
            s.offset += step
            s.selected = 0
        self.refresh()

    def key(self, k: str) -> bool:
        """Handle one key; False to quit."""
        s = self.state
        if s.prompt is not None:
            return self._prompt_key(k)
        s.message = ""
        if k in ("q", "\x03"):
            return False
        if k in ("\t", "shift-tab"):
            s.tab = (s.tab + (1 if k == "\t" else -1)) % len(TABS)
            s.offset = s.selected = 0
        elif k in ("down", "j", "n"):
            self._move(1)
            return True
        elif k in ("up", "k", "N"):
            self._move(-1)
            return True
        elif k == "pgdn":
            self._move(self.page_rows)
            return True
        elif k == "pgup":
            self._move(-self.page_rows)
            return True
        elif k in ("g", "home"):
            s.offset = s.selected = 0
        elif k in ("G", "end"):
            step = SEARCH_WINDOW if self.searching else self.page_rows
            s.offset = max(0, self._max_offset() + 1 - step)
            s.selected = step
        elif k == "i":
            s.detail = not s.detail
        elif k == "p":
            s.paused = not s.paused
            s.message = "updates paused (totals still update)" if s.paused else "updates resumed"
        elif k == "/":
            s.prompt, s.buffer = "type", " ".join(s.search_type)
        elif k == "D":
            if self.selected_row() is not None:
                s.prompt, s.buffer = "delete", ""
        self.refresh()
        return True

    def _prompt_key(self, k: str) -> bool:
        s = self.state
        if s.prompt == "delete":
            row = self.selected_row()
            s.prompt = None
            if k in ("y", "Y") and row is not None:
                try:
                    self.client.delete_job(row.id)
                    s.message = f"deleted {row.id}"
                except JobNotFound:
                    s.message = f"{row.id} was already gone"
            else:
                s.message = "not deleted"
            self.refresh()
            return True
        if k == "\x1b":
            s.prompt = None
        elif k in ("\r", "\n"):
            if s.prompt == "type":
                s.search_type = _terms(s.buffer)
                s.prompt, s.buffer = "queue", " ".join(s.search_queue)
                return True
            s.search_queue = _terms(s.buffer)
            s.prompt = None
            s.offset = s.selected = 0
            self.refresh()
        elif k in ("\x7f", "\b"):
            s.buffer = s.buffer[:-1]
        elif len(k) == 1 and k.isprintable():
            s.buffer += k
        return True

    # Rendering.

    def render(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        s, st = self.state, self.stats
        head = Text()
        head.append("zizq top", style="bold")
        head.append(f" {__version__}  {connect.redact(self.client.url or '')}  namespace {self.client.namespace}")
        if st:
            head.append(f"  workers {st.workers}")
        parts: list[Any] = [head]
        if st:
            parts.append(
                Text(
                    f"Queue: {st.in_flight} in-flight, {st.ready} ready, {st.scheduled} scheduled, "
                    f"{st.completed} completed, {st.dead} dead",
                    style="bold",
                )
            )
            busiest = sorted(st.queues.items(), key=lambda kv: (-kv[1][0], kv[0]))[:8]
            parts.append(
                Text(
                    "Queues: "
                    + ("  ".join(f"{q} {n} ready{' (paused)' if p else ''}" for q, (n, p) in busiest) or "none")
                    + (f"  (+{st.queue_count - len(busiest)} more)" if st.queue_count > len(busiest) else "")
                )
            )
        position = s.offset + s.selected + 1 if self.rows else 0
        bar_width = 30
        filled = round(bar_width * position / self.total) if self.total else 0
        parts.append(Text(f"Depth [{'█' * filled}{'░' * (bar_width - filled)}] {position} of {self.total}"))
        tabs = Text()
        for i, (_, title, _) in enumerate(TABS):
            tabs.append(f" {title} ", style="reverse bold" if i == s.tab else "")
            tabs.append(" ")
        if s.paused:
            tabs.append(" PAUSED ", style="bold yellow")
        if self.searching:
            tabs.append(f" search: type={','.join(s.search_type) or '*'} queue={','.join(s.search_queue) or '*'} ")
        parts.append(tabs)

        _, _, time_col = TABS[s.tab]
        table = Table(box=None, header_style="bold", expand=False)
        for col in ("ID", "PRIORITY", "QUEUE", time_col, "ATTEMPTS", "TYPE"):
            table.add_column(col, no_wrap=True)
        now = st.now if st else int(time.time() * 1000)
        for i, row in enumerate(self.rows):
            job = row.job
            if job is None:
                table.add_row(row.id, "", "(deleted)", "", "", "")
                continue
            if self.tab_state == "in_flight":
                t = _span(now - row.score)
            elif self.tab_state == "ready":
                t = _span(now - job.ready_at)
            else:
                t = _span(row.score - now)
            style = "reverse" if i == s.selected else ""
            table.add_row(job.id, str(job.priority), job.queue, t, str(job.attempts), job.type, style=style)
        parts.append(table if self.rows else Text("  (no jobs)" if not self.searching else "  (no match here)"))
        if s.detail:
            parts.append(self._render_detail(Panel))
        footer = Text()
        if s.prompt == "delete":
            chosen = self.selected_row()
            footer.append(f"Delete job {chosen.id if chosen else '?'}? [y/N] ", style="bold red")
        elif s.prompt:
            footer.append(f"Search {s.prompt} (substrings, comma/space = or; Enter): {s.buffer}", style="bold")
        else:
            footer.append(
                "Tab tabs  ↑↓ PgUp/PgDn g/G move  i detail  / search  n/N next/prev  p pause  D delete  q quit",
                style="dim",
            )
        if s.message:
            footer.append(f"   {s.message}", style="bold")
        if self.error:
            footer.append(f"   error: {self.error}", style="bold red")
        parts.append(footer)
        return Group(*parts)

    def _render_detail(self, panel: Callable[..., Any]) -> Any:
        from rich.text import Text

        job = self.detail_job
        if job is None:
            return panel(Text("(no job selected)"), title="Detail")
        lines = [f"{k}: {v}" for k, v in job.to_dict(payload=False).items()]
        payload = orjson.dumps(job.payload, option=orjson.OPT_INDENT_2).decode()
        text = "\n".join(lines) + "\npayload:\n" + payload
        if self.detail_errors:
            text += "\nerrors:"
            for e in self.detail_errors[-3:]:
                text += f"\n  attempt {e.attempt}: {e.error_type or ''}: {e.message}"
        return panel(Text(text), title=f"Detail {job.id}")


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
    """Key names from what the terminal sent (escape sequences as names)."""
    out = []
    i = 0
    while i < len(data):
        for seq, name in KEYS.items():
            if data.startswith(seq, i):
                out.append(name)
                i += len(seq)
                break
        else:
            out.append(data[i])
            i += 1
    return out


def run_top(client: Client, interval: float = 1.0) -> int:
    """Run the view on this process's terminal until q or Ctrl-C."""
    import termios
    import tty

    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        raise ValidationError("zizq top needs rich: pip install 'zizq[ops]'") from None
    if not sys.stdin.isatty():
        raise ValidationError("zizq top needs a terminal")
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    console = Console()
    top = Top(client, page_rows=max(3, console.size.height - 12))
    try:
        tty.setcbreak(fd)
        top.refresh()
        with Live(top.render(), console=console, screen=True, auto_refresh=False) as live:
            next_refresh = time.monotonic() + interval
            while True:
                top.page_rows = max(3, console.size.height - (22 if top.state.detail else 12))
                ready, _, _ = select.select([fd], [], [], max(0.0, next_refresh - time.monotonic()))
                if ready:
                    data = os.read(fd, 1024).decode(errors="replace")
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

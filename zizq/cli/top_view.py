"""The view of ``zizq top`` (:mod:`zizq.cli.top` puts it on a terminal): what
it shows (totals, tabs, a page of jobs, the detail panel), what the keys do,
and how it is drawn with ``rich``. Times are shown as people say them
(:mod:`zizq.cli.format`)."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass, field
from typing import Any

from zizq import connect
from zizq._protocol.query import QueryCore, Stats, Throughput, WindowRow
from zizq._version import __version__
from zizq.cli.format import error_text, json_text, moment, progress_text, relative, span, table
from zizq.client.sync import Client
from zizq.errors import JobNotFound, ZizqError
from zizq.job import ErrorRecord, Job
from zizq.limits import LimitState


@dataclass(frozen=True)
class Tab:
    """One tab: the state lua/window.lua pages, its title, its columns."""

    state: str  # the window.lua state
    title: str
    columns: tuple[str, ...]


TABS = (
    Tab("in_flight", "In-Flight", ("ID", "STATE", "TAKEN", "PRIORITY", "QUEUE", "FAILURES", "TYPE", "WORKER")),
    Tab("ready", "Ready", ("ID", "PRIORITY", "QUEUE", "READY SINCE", "FAILURES", "TYPE")),
    Tab("scheduled", "Scheduled", ("ID", "DUE", "PRIORITY", "QUEUE", "FAILURES", "TYPE")),
    Tab("retries", "Retries", ("ID", "NEXT TRY", "FAILURES", "LAST FAILED", "QUEUE", "TYPE", "LAST ERROR")),
    Tab("dead", "Dead", ("ID", "DIED", "FAILURES", "QUEUE", "TYPE", "LAST ERROR")),
)
SEARCH_WINDOW = 500  # jobs of a tab a search looks at, from the cursor
RETRY_SCAN = 1000  # scheduled jobs the Retries tab looks at a refresh (lua/window.lua's scan size)
MAX_MERGE_OFFSET = 10_000  # deepest offset of the ready tab when several queues are merged
FIXED_LINES = 9  # lines around the job list: header (6), column names, footer, spare
DETAIL_ROWS = 5  # rows of the job list left above an open detail panel
ESC = "esc"
FREE_TEXT = frozenset({"LAST ERROR", "TYPE", "WORKER", "QUEUE"})  # columns cut first on a narrow terminal
TAB_KEYS = {str(i + 1): i for i in range(len(TABS))}
# The In-Flight tab's STATE: what the holder's heartbeat last published
# (lua/window.lua), None when it publishes nothing.
RUNNING_MARKS = {True: ("running", "green"), False: ("prefetched", "yellow"), None: ("?", "dim")}


def _terms(text: str) -> list[str]:
    return [t for t in text.replace(",", " ").split() if t]


def _one_line(text: str, most: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= most else line[: most - 1] + "…"


@dataclass
class TopState:
    """What the view shows; changed by keys, read by render."""

    tab: int = 0
    offset: int = 0  # where the page starts: a rank in the tab (Retries: in the scheduled jobs)
    back: list[int] = field(default_factory=list)  # offsets of the pages before, when they cannot be computed
    selected: int = 0  # row within the page
    paused: bool = False
    detail: str | None = None  # id of the job in the open detail panel
    scroll: int = 0  # first line of the detail panel shown
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
        self.height = page_rows + FIXED_LINES  # terminal lines, set by run_top
        self.width = 120  # terminal columns, set by run_top
        self.state = TopState()
        self.stats: Stats | None = None
        self.limits: list[LimitState] = []
        self.hour: Throughput | None = None
        self.total = 0
        self.next = -1  # offset of the next page, -1 at the end
        self.rows: list[WindowRow] = []
        self.detail_job: Job | None = None
        self.detail_errors: list[ErrorRecord] = []
        self.detail_gone = False  # the job of the open panel no longer exists
        self.error = ""

    @property
    def tab(self) -> Tab:
        return TABS[self.state.tab]

    @property
    def tab_state(self) -> str:
        return self.tab.state

    @property
    def searching(self) -> bool:
        return bool(self.state.search_type or self.state.search_queue)

    @property
    def scanning(self) -> bool:
        """Whether a page holds an unknown share of the window it looks at
        (a search, or the Retries tab): pages then step by what was looked at."""
        return self.searching or self.tab_state == "retries"

    @property
    def now(self) -> int:
        return self.stats.now if self.stats else int(time.time() * 1000)

    def _match(self, row: WindowRow) -> bool:
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
            self.limits = self.client.limits()
            self.hour = self.client.throughput()
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
        extra = [str(RETRY_SCAN)] if self.tab_state == "retries" else queues
        page = self.client.run(self.q.window(self.tab_state, s.offset, count, extra))
        rows = page.rows
        if self.searching:
            rows = [r for r in rows if self._match(r)][: self.page_rows]
        self.total, self.next, self.rows = page.total, page.next, rows
        if s.selected >= len(rows):
            s.selected = max(0, len(rows) - 1)

    def _read_detail(self) -> None:
        job_id = self.state.detail
        if job_id != (self.detail_job.id if self.detail_job else None):
            self.detail_job, self.detail_errors, self.detail_gone = None, [], False
        if job_id is None:
            return
        try:
            self.detail_job = self.client.get_job(job_id)
            self.detail_errors = self.client.job_errors(job_id)
            self.detail_gone = False
        except JobNotFound:
            self.detail_job, self.detail_errors, self.detail_gone = None, [], True

    def _target(self) -> str | None:
        """The job D deletes: the one in the open detail panel, else the selected one."""
        row = self.selected_row()
        return self.state.detail or (row.id if row else None)

    def selected_row(self) -> WindowRow | None:
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
        if target < 0 and s.offset > 0:
            if self.scanning:
                step = RETRY_SCAN if self.tab_state == "retries" else SEARCH_WINDOW
                s.offset = s.back.pop() if s.back else max(0, s.offset - step)
                s.selected = 1 << 30  # the last row, once read
            else:
                s.offset = max(0, s.offset - self.page_rows)
                s.selected = max(0, self.page_rows + target)
        elif target >= len(self.rows) and 0 <= self.next <= self._max_offset():
            s.back.append(s.offset)
            s.offset = self.next
            s.selected = 0 if self.scanning else max(0, target - len(self.rows))
        self.refresh()

    def key(self, k: str) -> bool:
        """Handle one key; False to quit."""
        s = self.state
        if s.prompt is not None:
            return self._prompt_key(k)
        s.message = ""
        if k in ("q", "\x03"):
            return False
        if k in ("\t", "shift-tab") or k in TAB_KEYS:
            s.tab = TAB_KEYS[k] if k in TAB_KEYS else (s.tab + (1 if k == "\t" else -1)) % len(TABS)
            s.offset = s.selected = 0
            s.back.clear()
            s.detail = None
        elif s.detail and self._detail_key(k):
            return True  # scrolling reads nothing new
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
            s.back.clear()
        elif k in ("G", "end"):
            step = RETRY_SCAN if self.tab_state == "retries" else SEARCH_WINDOW if self.searching else self.page_rows
            s.offset = max(0, self._max_offset() + 1 - step)
            s.selected = 1 << 30
            s.back.clear()
        elif k in ("i", "\r", "\n"):
            chosen = self.selected_row()
            s.detail, s.scroll = (chosen.id if chosen else None), 0
        elif k == "p":
            s.paused = not s.paused
            s.message = "updates paused (totals still update)" if s.paused else "updates resumed"
        elif k == "/":
            s.prompt, s.buffer = "type", " ".join(s.search_type)
        elif k == "D":
            if self._target() is not None:
                s.prompt, s.buffer = "delete", ""
        self.refresh()
        return True

    def _detail_key(self, k: str) -> bool:
        """Keys of the open detail panel: scrolling and closing. False for
        the keys it leaves to the list (p, D, /)."""
        s = self.state
        page = max(1, self._detail_height() - 1)
        moves = {"down": 1, "j": 1, "up": -1, "k": -1, "pgdn": page, "pgup": -page}
        if k in moves:
            s.scroll = max(0, s.scroll + moves[k])
        elif k in ("g", "home"):
            s.scroll = 0
        elif k in ("G", "end"):
            s.scroll = 1 << 30  # clamped to the last screenful when drawn
        elif k in (ESC, "i"):
            s.detail = None
        else:
            return k not in ("p", "D", "/")
        return True

    def _prompt_key(self, k: str) -> bool:
        s = self.state
        if s.prompt == "delete":
            target = self._target()
            s.prompt = None
            if k in ("y", "Y") and target is not None:
                try:
                    self.client.delete_job(target)
                    s.message = f"deleted {target}"
                except JobNotFound:
                    s.message = f"{target} was already gone"
            else:
                s.message = "not deleted"
            self.refresh()
            return True
        if k == ESC:
            s.prompt = None
        elif k in ("\r", "\n"):
            if s.prompt == "type":
                s.search_type = _terms(s.buffer)
                s.prompt, s.buffer = "queue", " ".join(s.search_queue)
                return True
            s.search_queue = _terms(s.buffer)
            s.prompt = None
            s.offset = s.selected = 0
            s.back.clear()
            self.refresh()
        elif k in ("\x7f", "\b"):
            s.buffer = s.buffer[:-1]
        elif len(k) == 1 and k.isprintable():
            s.buffer += k
        return True

    # Rendering.

    def render(self) -> Any:
        from rich.console import Group
        from rich.text import Text

        s, st = self.state, self.stats
        head = Text()
        head.append("zizq top", style="bold")
        head.append(f" {__version__}  {connect.redact(self.client.url or '')}  namespace {self.client.namespace}")
        if st:
            head.append(f"  workers {st.workers}")
        parts: list[Any] = [head]
        if st:
            totals = Text(
                f"Queue: {st.in_flight} in-flight, {st.ready} ready, {st.scheduled} scheduled, "
                f"{st.completed} completed, {st.dead} dead, {st.waiting} waiting",
                style="bold",
            )
            if self.hour:
                h = self.hour
                totals.append(f"   last hour: {h.completed} completed, {h.failed} failed, {h.dead} dead")
            parts.append(totals)
            busiest = sorted(st.queues.items(), key=lambda kv: (-kv[1][0], kv[0]))[:8]
            parts.append(
                Text(
                    "Queues: "
                    + ("  ".join(f"{q} {n} ready{' (paused)' if p else ''}" for q, (n, p) in busiest) or "none")
                    + (f"  (+{st.queue_count - len(busiest)} more)" if st.queue_count > len(busiest) else "")
                )
            )
            parts.append(Text("Limits: " + limits_line(self.limits)))
        parts.append(Text(self._depth()))
        tabs = Text()
        for i, tab in enumerate(TABS):
            tabs.append(f" {i + 1} {tab.title} ", style="reverse bold" if i == s.tab else "")
            tabs.append(" ")
        if s.paused:
            tabs.append(" PAUSED ", style="bold yellow")
        if self.searching:
            tabs.append(f" search: type={','.join(s.search_type) or '*'} queue={','.join(s.search_queue) or '*'} ")
        parts.append(tabs)
        parts.append(self._render_rows())
        if s.detail:
            parts.append(self._render_detail())
        parts.append(self._footer())
        for part in parts:  # one line each, whatever the terminal's width: the layout counts lines
            if isinstance(part, Text):
                part.no_wrap, part.overflow = True, "ellipsis"
        return Group(*parts)

    def _depth(self) -> str:
        s = self.state
        bar_width = 30
        if self.tab_state == "retries":
            end = self.next if self.next >= 0 else self.total
            filled = round(bar_width * end / self.total) if self.total else 0
            looked = f"{s.offset + 1}-{end}" if end > s.offset else "none"
            where = f"scheduled jobs {looked} of {self.total} looked at"
        else:
            position = s.offset + s.selected + 1 if self.rows else 0
            filled = round(bar_width * position / self.total) if self.total else 0
            where = f"{position} of {self.total}"
        return f"Depth [{'█' * filled}{'░' * (bar_width - filled)}] {where}"

    def _render_rows(self) -> Any:
        from rich.text import Text

        s = self.state
        if not self.rows:
            if self.searching:
                return Text("  (no match here)")
            if self.tab_state == "retries" and self.next >= 0:
                return Text("  (none failed before among these; PgDn looks further)")
            return Text("  (no jobs)")
        grid = table(self.tab.columns, free=FREE_TEXT)  # the free text gives way first; its cells never wrap
        first, last = 0, len(self.rows)
        if s.detail:  # a few rows around the selected one, above the panel
            shown = self._rows_above_detail()
            first = max(0, min(s.selected - shown // 2, len(self.rows) - shown))
            last = first + shown
        for i, row in enumerate(self.rows[first:last], first):
            cells = [Text(c, no_wrap=True, overflow="ellipsis") if isinstance(c, str) else c for c in self._cells(row)]
            grid.add_row(*cells, style="reverse" if i == s.selected else "")
        return grid

    def _cells(self, row: WindowRow) -> list[Any]:
        from rich.text import Text

        job, now, state = row.job, self.now, self.tab_state
        if job is None:
            return [row.id, "(deleted)"] + [""] * (len(self.tab.columns) - 2)
        failures, error = str(job.attempts), _error_line(row.last_error)
        if state == "in_flight":
            mark = RUNNING_MARKS[row.running]
            if job.progress is not None:
                mark = (f"{mark[0]} {progress_text(job.progress, job.progress_message)}", mark[1])
            when = relative(row.score, now)
            return [job.id, Text(*mark), when, str(job.priority), job.queue, failures, job.type, row.worker or ""]
        if state == "ready":
            return [job.id, str(job.priority), job.queue, relative(job.ready_at, now), failures, job.type]
        if state == "scheduled":
            return [job.id, relative(row.score, now), str(job.priority), job.queue, failures, job.type]
        failed = relative(job.failed_at, now) if job.failed_at else ""
        if state == "retries":
            return [job.id, relative(row.score, now), failures, failed, job.queue, job.type, error]
        return [job.id, failed, failures, job.queue, job.type, error]

    def _rows_above_detail(self) -> int:
        """Rows of the job list shown above the open detail panel: up to
        DETAIL_ROWS, fewer on a short terminal."""
        return min(DETAIL_ROWS, len(self.rows), max(1, (self.height - FIXED_LINES) // 4))

    def _detail_height(self) -> int:
        """Lines of text the detail panel shows at once: the terminal's
        height less the other lines, the list above and the panel's borders."""
        return max(1, self.height - FIXED_LINES - self._rows_above_detail() - 2)

    def detail_lines(self) -> list[str]:
        """The detail panel's text, one entry a line, wrapped to the panel."""
        job, now = self.detail_job, self.now
        if job is None:
            if self.detail_gone:
                return [f"job {self.state.detail} is gone (finished and not kept, or deleted)"]
            return ["(reading...)"]
        row = next((r for r in self.rows if r.id == job.id), None)
        lines = []
        for k, v in job.to_dict(payload=False).items():
            if k.endswith("_at") and isinstance(v, int):
                v = moment(v, now)
            elif k == "timeout_ms":
                v = f"{v} ({span(v)})"
            elif k == "status" and v == "in_flight" and row is not None:
                doing = {True: "running", False: "prefetched, waiting for a free handler", None: "held"}[row.running]
                v = f"in_flight ({doing}; worker {row.worker or '?'})"
            elif k == "attempts":
                v = f"{v} (failed attempts so far)"
            elif k == "progress":
                v = progress_text(v, job.progress_message)
            elif k == "progress_message":
                continue
            lines.append(f"{k}: {v}")
        lines.append("payload:")
        lines += ["  " + line for line in json_text(job.payload).splitlines()]
        if self.detail_errors:
            lines.append(f"errors ({len(self.detail_errors)}, newest first):")
            for e in reversed(self.detail_errors):
                lines.append(f"  attempt {e.attempt}, failed {moment(e.failed_at, now)}")
                lines.append(f"    {error_text(e)}")
                lines += ["      " + line for line in (e.backtrace or "").rstrip().splitlines()]
        width = max(20, self.width - 4)
        out = []
        for line in lines:
            indent = " " * (len(line) - len(line.lstrip(" ")))
            out += textwrap.wrap(line, width, subsequent_indent=indent + "  ", drop_whitespace=False) or [""]
        return out

    def _render_detail(self) -> Any:
        from rich.panel import Panel
        from rich.text import Text

        s = self.state
        lines = self.detail_lines()
        height = self._detail_height()
        s.scroll = max(0, min(s.scroll, len(lines) - height))
        shown = lines[s.scroll : s.scroll + height]
        title = f"Detail {s.detail}"
        where = f"lines {s.scroll + 1}-{s.scroll + len(shown)} of {len(lines)}"
        return Panel(
            Text("\n".join(shown), no_wrap=True, overflow="crop"),
            title=title,
            subtitle=f"{where}  ↑↓ PgUp/PgDn g/G scroll  Esc close",
            height=len(shown) + 2,
            title_align="left",
            subtitle_align="right",
        )

    def _footer(self) -> Any:
        from rich.text import Text

        s = self.state
        footer = Text()
        if s.prompt == "delete":
            footer.append(f"Delete job {self._target() or '?'}? [y/N] ", style="bold red")
        elif s.prompt:
            footer.append(f"Search {s.prompt} (substrings, comma/space = or; Enter; Esc cancels): {s.buffer}")
        elif s.detail:
            footer.append("↑↓ PgUp/PgDn g/G scroll detail  Esc/i close  Tab/1-5 tabs  D delete  q quit", style="dim")
        else:
            footer.append(
                "Tab/1-5 tabs  ↑↓ PgUp/PgDn g/G move  Enter/i detail  / search  n/N next/prev  p pause  "
                "D delete  q quit",
                style="dim",
            )
        if s.message:
            footer.append(f"   {s.message}", style="bold")
        if self.error:
            footer.append(f"   error: {self.error}", style="bold red")
        return footer


def limits_line(states: list[LimitState], most: int = 6) -> str:
    """The limits, busiest first: running (of the concurrency), starts (of
    the rate), and jobs waiting."""
    if not states:
        return "none"
    busiest = sorted(states, key=lambda s: (-s.running, -s.waiting, s.name))[:most]
    parts = []
    for s in busiest:
        held = []
        if s.limit.concurrency is not None:
            held.append(f"{s.running}/{s.limit.concurrency} running")
        if s.limit.rate is not None:
            held.append(f"{s.starts}/{s.limit.rate} per {s.limit.per:g}s")
        parts.append(f"{s.name} {' '.join(held)} {s.waiting} waiting")
    more = f"  (+{len(states) - most} more)" if len(states) > most else ""
    return "  ".join(parts) + more


def _error_line(error: ErrorRecord | None) -> str:
    if error is None:
        return ""
    return _one_line(error_text(error))

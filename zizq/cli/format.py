"""How the command line shows things, for every command alike: times (a
duration, a time from now, a time in full), JSON, tables, errors and error
records.

Times read as people say them: '3 min 12 s', 'in 40 s', '3 min ago',
'2026-12-07 07:20:01 UTC (3 min ago)'; all in UTC, from ms since the epoch."""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from zizq.job import ErrorRecord

# A duration's largest unit and the one shown after it, with their sizes in s.
_UNITS = (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1))


def span(ms: float) -> str:
    """A duration in ms, for people: '0.4 s', '40 s', '3 min 12 s',
    '2 h 5 min', '3 d 4 h'."""
    s = abs(ms) / 1000
    if s < 10:
        return f"{s:.1f} s"
    whole = int(s)
    for unit, size, small, small_size in _UNITS:
        if whole >= size:
            big, rest = divmod(whole, size)
            rest //= small_size
            return f"{big} {unit} {rest} {small}" if rest else f"{big} {unit}"
    return f"{whole} s"


def progress_text(fraction: float, message: str | None) -> str:
    """A job's progress for people: '40%', '40% resizing 3 of 8'."""
    return f"{fraction:.0%}" + (f" {message}" if message else "")


def relative(ms: int, now_ms: int) -> str:
    """A time (ms since the epoch) from now (ms since the epoch): 'in 40 s',
    '3 min ago'."""
    text = span(ms - now_ms)
    return f"in {text}" if ms > now_ms else f"{text} ago"


def stamp(ms: int | None) -> str:
    """A time (ms since the epoch) in UTC, to the second: '2026-12-07
    07:20:01 UTC'; '-' for None (never)."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def moment(ms: int, now_ms: int) -> str:
    """A time in full: '2026-12-07 07:20:01 UTC (3 min ago)'."""
    return f"{stamp(ms)} ({relative(ms, now_ms)})"


def json_text(value: Any) -> str:
    """``value`` as JSON, indented by two spaces (as stored: not Python's
    repr, so it can be copied into an enqueue)."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def print_json(value: Any) -> None:
    """Print ``value`` as JSON: the ``--json`` output of every command."""
    sys.stdout.write(json_text(value) + "\n")


def print_error(error: object) -> None:
    """Print an error as every command does: one line on stderr, 'zizq:
    error: ...', no traceback."""
    print(f"zizq: error: {error}", file=sys.stderr)


def error_text(error: ErrorRecord) -> str:
    """A recorded failure on one line's worth: 'KeyError: boom' (the message
    alone when no type was recorded)."""
    return f"{error.error_type}: {error.message}" if error.error_type else error.message


def table(columns: Sequence[str], *, right: Collection[str] = (), free: Collection[str] = ()) -> Any:
    """A ``rich`` table without borders, with bold column names: the columns
    in ``right`` aligned right; those in ``free`` (free text, 60 characters
    at most) give way first on a narrow terminal, as rich shrinks only the
    columns that may wrap."""
    from rich.table import Table

    out = Table(box=None, header_style="bold")
    for column in columns:
        wraps = column in free
        out.add_column(
            column,
            no_wrap=not wraps,
            overflow="ellipsis",
            max_width=60 if wraps else None,
            justify="right" if column in right else "left",
        )
    return out

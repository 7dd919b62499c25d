"""zizq.cli.format: the one way the command line shows times, JSON and
error records (``zizq jobs``, ``zizq top`` and ``zizq cron`` use it)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from zizq.cli.format import error_text, json_text, moment, relative, span, stamp
from zizq.job import ErrorRecord

NOW = int(datetime(2026, 12, 7, 7, 23, 1, tzinfo=UTC).timestamp() * 1000)


def test_durations() -> None:
    assert [span(ms) for ms in (0, 400, 40_000, 192_000, 180_000, 7_500_000, 277_200_000, -3_000)] == [
        "0.0 s",
        "0.4 s",
        "40 s",
        "3 min 12 s",
        "3 min",
        "2 h 5 min",
        "3 d 5 h",
        "3.0 s",
    ]


def test_times_from_now_and_in_full() -> None:
    assert relative(NOW + 40_000, NOW) == "in 40 s" and relative(NOW - 180_000, NOW) == "3 min ago"
    assert relative(NOW, NOW) == "0.0 s ago"
    assert stamp(NOW - 180_000) == "2026-12-07 07:20:01 UTC" and stamp(None) == "-"
    assert moment(NOW - 180_000, NOW) == "2026-12-07 07:20:01 UTC (3 min ago)"
    assert moment(NOW + 7_500_000, NOW) == "2026-12-07 09:28:01 UTC (in 2 h 5 min)"


def test_json_and_error_records() -> None:
    value = {"to": "a@x", "urgent": True, "cc": None}
    assert json_text(value) == '{\n  "to": "a@x",\n  "urgent": true,\n  "cc": null\n}'
    assert orjson.loads(json_text(value)) == value

    def record(error_type: str | None) -> ErrorRecord:
        return ErrorRecord(
            attempt=1, message="boom", error_type=error_type, backtrace=None, dequeued_at=None, failed_at=NOW
        )

    assert error_text(record("KeyError")) == "KeyError: boom" and error_text(record(None)) == "boom"

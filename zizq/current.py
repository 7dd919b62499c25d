"""What a handler can tell about, and tell the worker of, the job it runs:
:func:`progress` and :func:`cancelled`.

The worker sets :data:`current` in each job's task (a sync handler's thread
runs in a copy of that context), to the job's :class:`Control`; outside a
handler it is None, and both functions do nothing.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

from zizq.errors import ValidationError


class Control(Protocol):
    """What the worker offers the handler of one job (the worker's
    ``zizq.worker.control.JobControl`` is one)."""

    def report(self, fraction: float, message: str | None) -> None:
        """Note progress (checked already); the worker writes it, coalesced."""

    def is_cancelled(self) -> bool:
        """Whether the job was cancelled while it ran."""


current: ContextVar[Control | None] = ContextVar("zizq_current_job", default=None)


def check_progress(fraction: Any, message: Any) -> None:
    """Raise ValidationError unless ``fraction`` is a number in 0..1 and
    ``message`` a string or None."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
        raise ValidationError(f"progress fraction {fraction!r} is not a number in 0..1")
    if message is not None and not isinstance(message, str):
        raise ValidationError(f"progress message {message!r} is not a string or None")


def progress(fraction: float, message: str | None = None) -> None:
    """Record how far the running job has got: ``fraction`` in 0..1, and an
    optional short message (cut at 1024 bytes). Call it as often as you
    like from a handler, sync or async: the worker writes at most one report
    per job every half second, and the last one before the job's outcome, so
    ``get_job(id).progress`` lags by up to half a second. Raises
    :class:`zizq.ValidationError` for a fraction outside 0..1 (or not a
    number); outside a handler (a handler called directly, in a test) it
    only checks its arguments."""
    check_progress(fraction, message)
    control = current.get()
    if control is not None:
        control.report(float(fraction), message)


def cancelled() -> bool:
    """Whether the running job was cancelled (``cancel_job``) since it
    started: a sync handler cannot be interrupted safely, so a long one
    checks this now and then and returns (or raises) when it is True; the
    job is already dead, its outcome is not recorded. An async handler's
    task is cancelled instead (it gets ``asyncio.CancelledError``). The
    worker learns of a cancel with its next heartbeat (about a second).
    False outside a handler."""
    control = current.get()
    return control is not None and control.is_cancelled()

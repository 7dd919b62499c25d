"""Events: functions called when jobs are enqueued, start, end or raise.

::

    @zizq.on("job_end")
    def log_outcome(event: zizq.JobEvent) -> None:
        print(event.job.type, event.outcome, f"{event.duration:.3f}s")

Subscribers are process-wide and called synchronously, in the thread that
emits (the caller's for ``enqueue``, the worker's event loop for job events),
so they must be quick; an exception in one is logged and ignored. With no
subscriber, emitting costs one list check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from zizq.errors import ValidationError
from zizq.job import Job

log = logging.getLogger("zizq.events")

EventName = Literal["enqueue", "job_start", "job_end", "job_exception", "web_action"]
Outcome = Literal["completed", "failed", "dead", "refused"]


@dataclass(frozen=True, slots=True)
class EnqueueEvent:
    """One enqueue call (``enqueue``, ``enqueue_raw`` or ``enqueue_many``),
    after it returned or raised."""

    namespace: str
    count: int  # jobs in the call
    jobs: list[Job]  # the results ([] when the call raised)
    duration: float  # seconds, middleware included
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class JobEvent:
    """A job starting (``job_start``), its handler raising
    (``job_exception``) or its run ending (``job_end``)."""

    name: EventName
    job: Job
    namespace: str
    worker_id: str
    duration: float | None = None  # seconds the handler (and dequeue middleware) ran; None at job_start
    # job_end only: "completed" (the handler returned; the ack is sent in a
    # batch), "failed" (failure recorded, a retry is scheduled), "dead", or
    # "refused" (the job was no longer this worker's: deleted or recovered).
    outcome: Outcome | None = None
    error: BaseException | None = None  # what the handler raised (a JobTimeout past its timeout)


@dataclass(frozen=True, slots=True)
class WebActionEvent:
    """An action taken in the web dashboard (:mod:`zizq.web`), for the
    app's audit log: who did what to which jobs, emitted after it ran (or
    failed)."""

    namespace: str
    user: str  # who, as the dashboard's ``user`` function names them
    action: str  # "job.retry", "jobs.delete", "queue.pause", "cron.run", ... (see zizq.web)
    target: str  # a job id, a queue, "group/entry", or a bulk action's filter as JSON
    count: int  # jobs (or queues, entries) changed
    changes: dict[str, Any]  # a patch's new values (as given); {} for other actions
    error: BaseException | None = None


Subscriber = Callable[[Any], None]

# One list per event; the worker and clients test these lists directly.
enqueue: list[Subscriber] = []
job_start: list[Subscriber] = []
job_end: list[Subscriber] = []
job_exception: list[Subscriber] = []
web_action: list[Subscriber] = []
_LISTS: dict[str, list[Subscriber]] = {
    "enqueue": enqueue,
    "job_start": job_start,
    "job_end": job_end,
    "job_exception": job_exception,
    "web_action": web_action,
}


def _list(name: str) -> list[Subscriber]:
    try:
        return _LISTS[name]
    except KeyError:
        raise ValidationError(f"event {name!r} is not one of {', '.join(_LISTS)}") from None


def subscribe(name: EventName, fn: Subscriber) -> Callable[[], None]:
    """Call ``fn(event)`` on every ``name`` event in this process; returns a
    function that unsubscribes it."""
    if not callable(fn):
        raise ValidationError(f"event subscriber {fn!r} is not callable")
    subs = _list(name)
    subs.append(fn)
    return lambda: unsubscribe(name, fn)


def unsubscribe(name: EventName, fn: Subscriber) -> None:
    """Stop calling ``fn`` (no error if it was not subscribed)."""
    subs = _list(name)
    if fn in subs:
        subs.remove(fn)


def on(name: EventName) -> Callable[[Subscriber], Subscriber]:
    """Decorator form of :func:`subscribe`."""
    _list(name)

    def register(fn: Subscriber) -> Subscriber:
        subscribe(name, fn)
        return fn

    return register


def emit(subscribers: list[Subscriber], event: Any) -> None:
    """Call each subscriber with ``event``; their exceptions are logged."""
    for fn in tuple(subscribers):
        try:
            fn(event)
        except Exception:
            log.exception("event subscriber %r failed", fn)

"""Every exception zizq raises derives from :class:`ZizqError`.

The tree is shallow; under the root are three kinds::

    ZizqError
    ├── HandlerSignal          raised by a handler, read by the worker
    │   ├── KillJob
    │   ├── RetryJob
    │   └── RateLimited
    ├── JobFailure             recorded on a job by zizq (its error_type)
    │   ├── JobTimeout
    │   ├── WorkerLost
    │   ├── NoRouteError
    │   ├── PayloadDecodeError
    │   └── ResultError
    └── the errors a caller catches, directly under the root:
        ValidationError (InvalidName, InvalidPayload), JobKindError,
        JobNotFound, JobStateError (UniqueKeyHeld), WaitTimeout, LeaseLost,
        RedisUnavailable, RedisMisconfigured, RedisScriptError,
        WorkersActive, CronNotFound, CronEntryExists

A failure's recorded error_type is ``zizq.`` and the class name (for
instance ``zizq.JobTimeout``), whatever base the class has.
"""

from __future__ import annotations

from datetime import timedelta


class ZizqError(Exception):
    """Root of every exception raised by zizq: catch it to catch them all."""


# Signals: a handler raises them to tell the worker what to do with its job.


class HandlerSignal(ZizqError):
    """Raised by a handler to tell the worker what to do with its job (kill
    it, retry it at a chosen time). Caught by the worker, which records the
    failure and acts on it; nothing else should catch these."""


class KillJob(HandlerSignal):
    """Raise from a handler to send the job straight to dead: no more retries.

    Caught by the worker; the message is recorded in the job's error history
    (error_type ``zizq.KillJob``).
    """


class RetryJob(HandlerSignal):
    """Raise from a handler to retry the job at a chosen time.

    ``delay`` is seconds (or a timedelta) from now, ``at`` an aware datetime;
    give one. Caught by the worker: the failure counts as an attempt but
    ignores the retry limit.
    """

    def __init__(self, message: str = "retry requested", *, delay: object = None, at: object = None) -> None:
        super().__init__(message)
        if (delay is None) == (at is None):
            raise ValidationError("RetryJob needs exactly one of delay (seconds) or at (a datetime)")
        self.delay = delay
        self.at = at


class RateLimited(HandlerSignal):
    """Raise from a handler that learns it is over someone else's limit (an
    HTTP 429): the job goes back to wait ``retry_after`` seconds (or a
    timedelta; 0 or more), then runs again. It uses no attempt and leaves no
    error record; its limit slots are given back meanwhile."""

    def __init__(self, message: str = "rate limited", *, retry_after: object = 1.0) -> None:
        super().__init__(message)
        seconds = retry_after.total_seconds() if isinstance(retry_after, timedelta) else retry_after
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 1e9:
            raise ValidationError(f"RateLimited retry_after {retry_after!r} is not 0..1e9 seconds or a timedelta")
        self.retry_after = float(seconds)


# Failures: what zizq itself records on a job that it fails (the error_type of
# the job's error record), not something the handler raised.


class JobFailure(ZizqError):
    """A failure zizq records on a job by itself: the handler ran too long,
    its worker died under it, no handler takes its type, its payload does not
    decode. Seen in a job's error history (``Client.job_errors``, ``zizq jobs
    errors``) and by middleware and event subscribers; rarely caught."""


class JobTimeout(JobFailure):
    """Recorded on a job whose handler ran past its timeout. Raised by the
    worker into the job's outcome (middleware and ``on`` subscribers see it);
    recorded as ``zizq.JobTimeout``."""


class WorkerLost(JobFailure):
    """Recorded on a job whose worker died under it more often than the
    namespace's max_recoveries allows (a poison pill). Recorded by Redis
    (lua/heartbeat.lua) as ``zizq.WorkerLost``; never raised in Python."""


class NoRouteError(JobFailure):
    """A worker received a job whose type no handler is registered for.
    Raised by :meth:`zizq.Router.route`; the worker records it on the job as
    ``zizq.NoRouteError``."""


class PayloadDecodeError(JobFailure):
    """A job's payload (or its stored record) cannot be decoded into its
    handler's type. Raised by ``JobKind.from_payload``; the worker records
    it on the job as ``zizq.PayloadDecodeError``. A caller decoding a payload
    by hand catches it too."""


class ResultError(JobFailure):
    """A handler returned a value that cannot be kept as the job's result:
    JSON cannot hold it, or it is larger than the bound (1 MiB of JSON). The
    worker fails the job with it (recorded as ``zizq.ResultError``; retried
    as any failure is)."""


# Errors a caller catches: bad values, missing jobs, Redis trouble.


class ValidationError(ZizqError, ValueError):
    """A value given to zizq is invalid; nothing was written to Redis. Raised
    by the client, the worker's options and the CLI before any I/O; caught by
    the caller (the ``zizq`` command prints it and exits 1)."""


class InvalidName(ValidationError):
    """A queue, type or namespace name is empty or has a forbidden character.
    Raised when the name is given; caught as a ValidationError."""


class InvalidPayload(ValidationError):
    """A payload cannot be encoded as JSON (or decoded into its job type).
    Raised by enqueue before anything is written; caught by the caller."""


class JobKindError(ZizqError, TypeError):
    """A :class:`zizq.JobKind` subclass is defined wrongly (no NAME, say).
    Raised when the class is defined; fix the class rather than catch it."""


class JobNotFound(ZizqError, LookupError):
    """No job with that id exists (or it is past its purge time). Raised by
    the client's per-job calls; caught by the caller (``zizq jobs`` exits 3)."""


class JobStateError(ZizqError):
    """The job is in a state that does not allow this (patching a finished
    job, retrying one that is not dead). Raised by the client from a script's
    refusal; caught by the caller."""


class UniqueKeyHeld(JobStateError):
    """A dead job cannot be retried: another job holds its unique key in a
    status the dead job's scope conflicts with (the message names both).
    Raised by ``retry_job``; caught by the caller."""


class WaitTimeout(ZizqError, TimeoutError):
    """``wait`` gave up: the job had not finished within the timeout (the
    message names the job and the timeout). Raised by ``Client.wait``;
    caught by the caller, who may wait again."""


class LeaseLost(ZizqError):
    """The worker holds no lease (it was declared lost); it must join again.
    Raised by the client's worker calls; caught by the worker, which rejoins."""


class RedisUnavailable(ZizqError, ConnectionError):
    """Redis could not be reached (or was loading, or read-only) for longer
    than the client's retry window. Raised by any client call; caught by the
    caller (a worker keeps retrying by itself)."""


class RedisMisconfigured(ZizqError):
    """Redis refused the connection for a reason that waiting cannot fix: a
    wrong user or password, an unknown host, a database number the server
    does not have, TLS settings that do not fit the server's. Raised at
    start-up by a worker and by the ``zizq`` command line; caught by the
    caller to report the setting to fix."""


class RedisScriptError(ZizqError):
    """A zizq Lua script refused a call; the message says why. Raised by the
    client for a script error code the table below does not know."""


class WorkersActive(ZizqError):
    """A namespace reset was refused: workers hold leases in it (stop them,
    or reset with ``force=True``). Raised by ``Client.reset``; caught by the
    caller."""


class CronNotFound(ZizqError, LookupError):
    """No cron group (or entry in the group) with that name exists. Raised by
    the client's cron calls; caught by the caller."""


class CronEntryExists(ZizqError):
    """``add_cron_entry`` named an entry that its group already has. Raised by
    the client; caught by the caller."""


# Lua scripts report domain failures as "ZIZQ <CODE> <message>"; this table is
# the one place that turns a code into an exception class.
SCRIPT_ERRORS: dict[str, type[ZizqError]] = {
    "INVALID": ValidationError,
    "NOT_FOUND": JobNotFound,
    "STATE": JobStateError,
    "UNIQUE_HELD": UniqueKeyHeld,
    "LOST": LeaseLost,
    "CRON_NOT_FOUND": CronNotFound,
    "EXISTS": CronEntryExists,
}


def from_script_error(message: str) -> ZizqError | None:
    """The zizq exception for a script error reply, or None if it is not one."""
    if not message.startswith("ZIZQ "):
        return None
    code, _, detail = message[5:].partition(" ")
    return SCRIPT_ERRORS.get(code, RedisScriptError)(detail or code)

"""Every exception zizq raises derives from :class:`ZizqError`."""

from __future__ import annotations


class ZizqError(Exception):
    """Root of every exception raised by zizq."""


class ValidationError(ZizqError, ValueError):
    """A value given to zizq is invalid; nothing was written to Redis."""


class InvalidName(ValidationError):
    """A queue, type or namespace name is empty or has a forbidden character."""


class InvalidPayload(ValidationError):
    """A payload cannot be encoded as JSON (or decoded into its job type)."""


class JobKindError(ZizqError, TypeError):
    """A :class:`zizq.JobKind` subclass is defined wrongly (no NAME, say)."""


class JobNotFound(ZizqError, LookupError):
    """No job with that id exists (or it is past its purge time)."""


class JobStateError(ZizqError):
    """The job is in a state that does not allow this (patching a finished
    job, retrying one that is not dead)."""


class UniqueKeyHeld(JobStateError):
    """A dead job cannot be retried: another job holds its unique key in a
    status the dead job's scope conflicts with (the message names both)."""


class LeaseLost(ZizqError):
    """The worker holds no lease (it was declared lost); it must join again."""


class RedisUnavailable(ZizqError, ConnectionError):
    """Redis could not be reached (or was loading, or read-only) for longer
    than the client's retry window."""


class RedisMisconfigured(ZizqError):
    """Redis refused the connection for a reason that waiting cannot fix: a
    wrong user or password, an unknown host, a database number the server
    does not have, TLS settings that do not fit the server's. Raised at
    start-up by a worker and by the ``zizq`` command line."""


class WorkerLost(ZizqError):
    """Recorded on a job whose worker died under it more often than the
    namespace's max_recoveries allows (a poison pill)."""


class JobTimeout(ZizqError):
    """Recorded on a job whose handler ran past its timeout."""


class RedisScriptError(ZizqError):
    """A zizq Lua script refused a call; the message says why."""


class WorkersActive(ZizqError):
    """A namespace reset was refused: workers hold leases in it (stop them,
    or reset with ``force=True``)."""


class CronNotFound(ZizqError, LookupError):
    """No cron group (or entry in the group) with that name exists."""


class CronEntryExists(ZizqError):
    """``add_cron_entry`` named an entry that its group already has."""


class NoRouteError(ZizqError):
    """A worker received a job whose type no handler is registered for."""


class PayloadDecodeError(ZizqError):
    """A worker could not decode a job's payload into its handler's type."""


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


class KillJob(ZizqError):
    """Raise from a handler to send the job straight to dead: no more retries.

    The message is recorded in the job's error history.
    """


class RetryJob(ZizqError):
    """Raise from a handler to retry the job at a chosen time.

    ``delay`` is seconds (or a timedelta) from now, ``at`` an aware datetime;
    give one. The failure counts as an attempt but ignores the retry limit.
    """

    def __init__(self, message: str = "retry requested", *, delay: object = None, at: object = None) -> None:
        super().__init__(message)
        if (delay is None) == (at is None):
            raise ValidationError("RetryJob needs exactly one of delay (seconds) or at (a datetime)")
        self.delay = delay
        self.at = at

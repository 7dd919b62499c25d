"""zizq: a job queue for Python on Redis.

Typed jobs, priorities, unique jobs, retries with backoff, retention; every
state change is one atomic Lua script in Redis.
"""

from zizq._protocol.query import JobPage, Minute, QueueInfo, Stats, Throughput
from zizq._version import __version__
from zizq.client.aio import AsyncClient
from zizq.client.sync import Client
from zizq.cron import CronEntry, CronEntryState, CronGroup
from zizq.current import cancelled, progress
from zizq.errors import (
    CronEntryExists,
    CronNotFound,
    HandlerSignal,
    InvalidName,
    InvalidPayload,
    JobFailure,
    JobKindError,
    JobNotFound,
    JobStateError,
    JobTimeout,
    KillJob,
    NoRouteError,
    PayloadDecodeError,
    RateLimited,
    RedisMisconfigured,
    RedisScriptError,
    RedisUnavailable,
    ResultError,
    RetryJob,
    UniqueKeyHeld,
    ValidationError,
    WaitTimeout,
    WorkerLost,
    WorkersActive,
    ZizqError,
)
from zizq.events import EnqueueEvent, JobEvent, WebActionEvent, on, subscribe, unsubscribe
from zizq.filters import Filter, Range
from zizq.job import Backoff, ErrorRecord, Job, JobKind, JobStatus, Retention, UniqueKey
from zizq.limits import Limit, LimitKeyState, LimitState, queue_limit
from zizq.options import DefaultsOptions, Enqueue, EnqueueOptions, PatchOptions
from zizq.router import Router
from zizq.worker.group import WorkerGroup
from zizq.worker.worker import Worker, WorkerStats

__all__ = (
    "AsyncClient",
    "Backoff",
    "Client",
    "CronEntry",
    "CronEntryExists",
    "CronEntryState",
    "CronGroup",
    "CronNotFound",
    "DefaultsOptions",
    "Enqueue",
    "EnqueueEvent",
    "EnqueueOptions",
    "ErrorRecord",
    "Filter",
    "HandlerSignal",
    "InvalidName",
    "InvalidPayload",
    "Job",
    "JobEvent",
    "JobFailure",
    "JobKind",
    "JobKindError",
    "JobNotFound",
    "JobPage",
    "JobStateError",
    "JobStatus",
    "JobTimeout",
    "KillJob",
    "Limit",
    "LimitKeyState",
    "LimitState",
    "Minute",
    "NoRouteError",
    "PatchOptions",
    "PayloadDecodeError",
    "QueueInfo",
    "Range",
    "RateLimited",
    "RedisMisconfigured",
    "RedisScriptError",
    "RedisUnavailable",
    "ResultError",
    "Retention",
    "RetryJob",
    "Router",
    "Stats",
    "Throughput",
    "UniqueKey",
    "UniqueKeyHeld",
    "ValidationError",
    "WaitTimeout",
    "WebActionEvent",
    "Worker",
    "WorkerGroup",
    "WorkerLost",
    "WorkerStats",
    "WorkersActive",
    "ZizqError",
    "__version__",
    "cancelled",
    "on",
    "progress",
    "queue_limit",
    "subscribe",
    "unsubscribe",
)

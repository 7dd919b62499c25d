"""The error tree: one root, three kinds under it (handler signals, failures
recorded on jobs, errors a caller catches), and the error types stored on
failed jobs, which the tree must not change."""

from __future__ import annotations

import asyncio
import inspect

import redis

import zizq
from zizq import errors

from .conftest import Start, wait_for
from .jobs_app import Report

SIGNALS = {zizq.KillJob, zizq.RetryJob, zizq.RateLimited}
FAILURES = {zizq.JobTimeout, zizq.WorkerLost, zizq.NoRouteError, zizq.PayloadDecodeError, zizq.ResultError}
# The builtin bases users may catch instead of the zizq class.
BUILTIN_BASES = {
    zizq.ValidationError: ValueError,
    zizq.JobKindError: TypeError,
    zizq.JobNotFound: LookupError,
    zizq.CronNotFound: LookupError,
    zizq.RedisUnavailable: ConnectionError,
}


def public_errors() -> set[type[BaseException]]:
    """Every exception class exported by zizq."""
    found = (getattr(zizq, name) for name in zizq.__all__)
    return {c for c in found if inspect.isclass(c) and issubclass(c, BaseException)}


def test_every_error_is_exported_and_under_the_root() -> None:
    defined = {c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, BaseException)}
    # LeaseLost passes between the client's worker calls and the worker only.
    exported = defined - {errors.LeaseLost}
    assert exported == public_errors(), "an error class of zizq.errors is not in zizq.__all__ (or the reverse)"
    assert all(issubclass(c, zizq.ZizqError) for c in defined)


def test_each_error_is_under_its_kind() -> None:
    assert {c for c in public_errors() if issubclass(c, zizq.HandlerSignal)} == SIGNALS | {zizq.HandlerSignal}
    assert {c for c in public_errors() if issubclass(c, zizq.JobFailure)} == FAILURES | {zizq.JobFailure}
    callers = public_errors() - SIGNALS - FAILURES - {zizq.ZizqError, zizq.HandlerSignal, zizq.JobFailure}
    assert zizq.JobNotFound in callers and zizq.RedisUnavailable in callers
    for c in callers:
        assert not issubclass(c, (zizq.HandlerSignal, zizq.JobFailure)), c


def test_the_tree_is_shallow_and_keeps_builtin_bases() -> None:
    for c in public_errors():
        depth = [k for k in c.__mro__ if issubclass(k, zizq.ZizqError)].index(zizq.ZizqError)
        assert depth <= 2, f"{c.__name__} is {depth} levels below ZizqError"
    for c, builtin in BUILTIN_BASES.items():
        assert issubclass(c, builtin), f"{c.__name__} is no longer a {builtin.__name__}"
    assert issubclass(zizq.InvalidName, ValueError) and issubclass(zizq.UniqueKeyHeld, zizq.JobStateError)


def stored_error_type(client: zizq.Client, job_id: str) -> str | None:
    return client.job_errors(job_id)[-1].error_type


async def test_stored_error_types_are_unchanged(
    client: zizq.Client, start: Start, r: redis.Redis, namespace: str
) -> None:
    router = zizq.Router()

    @router.handler
    async def report(job: Report) -> None:
        if job.number == 1:
            raise zizq.KillJob("give up")
        await asyncio.sleep(10)  # past its timeout

    killed = client.enqueue(Report(1), retry_limit=0)
    timed_out = client.enqueue(Report(2), retry_limit=0, timeout=0.1)
    unrouted = client.enqueue_raw("nobody_handles_this", {}, retry_limit=0)
    undecodable = client.enqueue_raw("report", "not a number", retry_limit=0)
    worker = start(router, concurrency=4)
    await wait_for(lambda: worker.stats.failed == 4, timeout=10)
    assert stored_error_type(client, killed.id) == "zizq.KillJob"
    assert stored_error_type(client, timed_out.id) == "zizq.JobTimeout"
    assert stored_error_type(client, unrouted.id) == "zizq.NoRouteError"
    assert stored_error_type(client, undecodable.id) == "zizq.PayloadDecodeError"


async def test_stored_error_type_of_a_poison_pill_is_unchanged(client: zizq.Client) -> None:
    client.set_defaults(max_recoveries=0)
    job = client.enqueue(Report(1), retry_limit=0)
    client.run(client.core.heartbeat("doomed", "join", 50))
    [taken] = client.run(client.core.take("doomed", 1, [])).jobs
    assert taken.id == job.id

    def recovered() -> bool:  # another worker's beat fails the lapsed worker's job
        return client.run(client.core.heartbeat("rescuer", "join", 60_000)).failed == 1

    await wait_for(recovered, timeout=5)
    assert client.get_job(job.id).status == "dead"
    assert stored_error_type(client, job.id) == "zizq.WorkerLost"

"""Workflows in the clients: batches (:class:`Batch`, :class:`AsyncBatch`),
chains, and reading a job's dependencies, as mixins of :class:`zizq.Client`
and :class:`zizq.AsyncClient`, sync and async side by side. The calls are
built in :mod:`zizq._protocol.flows`; dependencies themselves are an
enqueue option (``depends_on``)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from zizq._protocol.call import Call
from zizq._protocol.flows import BatchInfo, Callback
from zizq._protocol.jobs import Core
from zizq.client.options import Items, as_items
from zizq.errors import BatchNotFound, ValidationError
from zizq.job import Job, JobKind
from zizq.options import Enqueue, EnqueueOptions

T = TypeVar("T")


def _members(items: Items, batch_id: str) -> list[Enqueue]:
    # Each item as an Enqueue that joins the batch (an Enqueue given is
    # marked in place, so depends_on may still name it).
    out = as_items(items)
    for item in out:
        item.batch_id = batch_id
    return out


def _chained(items: Items) -> list[Enqueue]:
    out = as_items(items)
    for before, item in itertools.pairwise(out):
        item.depends_on = [*(item.depends_on or ()), before]
    return out


def _parent_id(parent: Batch | AsyncBatch | str | None, namespace: str) -> str | None:
    if isinstance(parent, (Batch, AsyncBatch)):
        if parent.namespace != namespace:
            raise ValidationError(
                f"parent batch {parent.id} is in namespace {parent.namespace!r}, not {namespace!r}: "
                "a batch and its parent share a namespace"
            )
        return parent.id
    if parent is not None and (not isinstance(parent, str) or not parent):
        raise ValidationError(f"parent {parent!r} is not a zizq.Batch or a batch id")
    return parent


class _BatchBase:
    """What Batch and AsyncBatch share: the id, made by the client, and the
    call that opens the batch, planned (and checked) when it is made."""

    def __init__(
        self,
        client: Any,
        parent: Batch | AsyncBatch | str | None,
        on_success: Callback,
        on_complete: Callback,
        on_dead: Callback,
    ) -> None:
        core: Core = client.core
        self.client = client
        self.namespace = core.namespace
        self.id = core.flows.new_id()
        self._open = core.flows.open(self.id, _parent_id(parent, self.namespace), on_success, on_complete, on_dead)
        self._opened = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} in {self.namespace!r}>"


class Batch(_BatchBase):
    """A group of jobs whose callbacks fire exactly once (see
    :meth:`FlowMethods.batch`). ``with client.batch(...) as batch:``
    opens it, and closes it at the end of the block (even when the block
    raised: the members enqueued run, and the callbacks follow)."""

    def open(self) -> Batch:
        """Create the batch in Redis (the first enqueue does it too); a
        second call does nothing."""
        if not self._opened:
            self.client.run(self._open)
            self._opened = True
        return self

    def enqueue(self, job: JobKind, **options: Unpack[EnqueueOptions]) -> Job:
        """Enqueue ``job`` as a member (the options of ``Client.enqueue``).
        Raises :class:`zizq.BatchClosed` once the batch is closed."""
        return self.enqueue_many([Enqueue(job, **options)])[0]

    def enqueue_many(self, jobs: Items) -> list[Job]:
        """Enqueue members atomically, as ``Client.enqueue_many``; a member
        that is a duplicate (unique key) is not counted."""
        self.open()
        result: list[Job] = self.client.enqueue_many(_members(jobs, self.id))
        return result

    def batch(self, *, on_success: Callback = None, on_complete: Callback = None, on_dead: Callback = None) -> Batch:
        """A child batch: it counts as one member of this one, finished when
        it finishes (dead if any of its members died)."""
        self.open()
        return Batch(self.client, self, on_success, on_complete, on_dead)

    def close(self) -> BatchInfo:
        """Take no new member; the batch finishes once every member has
        (at once if every member has already). Closing twice is harmless."""
        self.open()
        info: BatchInfo = self.client.run(self.client.core.flows.close(self.id))
        return info

    def get(self) -> BatchInfo:
        """The batch's counts now (see :class:`zizq.BatchInfo`)."""
        info: BatchInfo = self.client.get_batch(self.id)
        return info

    def __enter__(self) -> Batch:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncBatch(_BatchBase):
    """The asyncio twin of :class:`Batch`: ``async with client.batch(...)
    as batch:`` and ``await batch.enqueue(...)``."""

    async def open(self) -> AsyncBatch:
        """See :meth:`Batch.open`."""
        if not self._opened:
            await self.client.run(self._open)
            self._opened = True
        return self

    async def enqueue(self, job: JobKind, **options: Unpack[EnqueueOptions]) -> Job:
        """See :meth:`Batch.enqueue`."""
        return (await self.enqueue_many([Enqueue(job, **options)]))[0]

    async def enqueue_many(self, jobs: Items) -> list[Job]:
        """See :meth:`Batch.enqueue_many`."""
        await self.open()
        result: list[Job] = await self.client.enqueue_many(_members(jobs, self.id))
        return result

    async def batch(
        self, *, on_success: Callback = None, on_complete: Callback = None, on_dead: Callback = None
    ) -> AsyncBatch:
        """See :meth:`Batch.batch`."""
        await self.open()
        return AsyncBatch(self.client, self, on_success, on_complete, on_dead)

    async def close(self) -> BatchInfo:
        """See :meth:`Batch.close`."""
        await self.open()
        info: BatchInfo = await self.client.run(self.client.core.flows.close(self.id))
        return info

    async def get(self) -> BatchInfo:
        """See :meth:`Batch.get`."""
        info: BatchInfo = await self.client.get_batch(self.id)
        return info

    async def __aenter__(self) -> AsyncBatch:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _found(batch_id: str, found: list[BatchInfo]) -> BatchInfo:
    if not found:
        raise BatchNotFound(f"no batch with id {batch_id!r} (a finished batch is kept 7 days)")
    return found[0]


def _dependency_ids(job: Job) -> list[str]:
    if not isinstance(job, Job):
        raise ValidationError(f"{job!r} is not a zizq.Job (a handler gets its Job as its second argument)")
    return list(job.depends_on)


class FlowMethods:
    """The workflow API of :class:`zizq.Client` (see the module docstring)."""

    if TYPE_CHECKING:
        core: Core

        def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...
        def enqueue_many(self, jobs: Items) -> list[Job]: ...

    def batch(
        self,
        *,
        on_success: Callback = None,
        on_complete: Callback = None,
        on_dead: Callback = None,
        parent: Batch | AsyncBatch | str | None = None,
    ) -> Batch:
        """A new batch of jobs, opened by ``with`` (or its first enqueue).

        The callbacks are ordinary jobs (a JobKind instance, or a
        :class:`zizq.Enqueue` with options), each enqueued exactly once:
        ``on_dead`` when the first member dies; once the batch is closed and
        every member has finished, ``on_complete``, and ``on_success`` if
        no member died. A member retried after it died (``retry_job``) makes
        the batch unfinished again; a callback that has fired never fires
        again, but ``on_success`` may still fire once every member has
        completed. ``parent``: a batch (or its id) this one is a member of.
        Checks the callbacks (ValidationError) before anything is sent.
        """
        return Batch(self, parent, on_success, on_complete, on_dead)

    def get_batch(self, batch_id: str) -> BatchInfo:
        """The batch's counts (see :class:`zizq.BatchInfo`); raises
        :class:`zizq.BatchNotFound`."""
        return _found(batch_id, self.run(self.core.flows.get([batch_id])))

    def list_batches(self, *, limit: int = 50, offset: int = 0) -> list[BatchInfo]:
        """Batches, newest first: ``limit`` (1..500) from ``offset``."""
        return self.run(self.core.flows.list(offset, limit))

    def chain(self, jobs: Items) -> list[Job]:
        """Enqueue ``jobs`` (atomically, as ``enqueue_many``) each depending
        on the one before: the second runs once the first has completed,
        and so on; a link that dies kills the rest, unless a link has
        ``on_dependency_failure="run"``."""
        return self.enqueue_many(_chained(jobs))

    def get_dependencies(self, job: Job) -> list[Job | None]:
        """The jobs ``job`` depended on (``job.depends_on``), in order, with
        their payloads; None for one that is gone (finished with a
        retention of 0, or purged). In a handler that takes its Job as a
        second argument: ``client.get_dependencies(job)``."""
        ids = _dependency_ids(job)
        return self.run(self.core.get(ids)) if ids else []


class AsyncFlowMethods:
    """The workflow API of :class:`zizq.AsyncClient`: as
    :class:`FlowMethods`, awaited (``batch`` itself does no I/O)."""

    if TYPE_CHECKING:
        core: Core

        async def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...
        async def enqueue_many(self, jobs: Items) -> list[Job]: ...

    def batch(
        self,
        *,
        on_success: Callback = None,
        on_complete: Callback = None,
        on_dead: Callback = None,
        parent: Batch | AsyncBatch | str | None = None,
    ) -> AsyncBatch:
        """See :meth:`FlowMethods.batch`; ``async with`` opens it."""
        return AsyncBatch(self, parent, on_success, on_complete, on_dead)

    async def get_batch(self, batch_id: str) -> BatchInfo:
        """See :meth:`FlowMethods.get_batch`."""
        return _found(batch_id, await self.run(self.core.flows.get([batch_id])))

    async def list_batches(self, *, limit: int = 50, offset: int = 0) -> list[BatchInfo]:
        """See :meth:`FlowMethods.list_batches`."""
        return await self.run(self.core.flows.list(offset, limit))

    async def chain(self, jobs: Items) -> list[Job]:
        """See :meth:`FlowMethods.chain`."""
        return await self.enqueue_many(_chained(jobs))

    async def get_dependencies(self, job: Job) -> list[Job | None]:
        """See :meth:`FlowMethods.get_dependencies`."""
        ids = _dependency_ids(job)
        return await self.run(self.core.get(ids)) if ids else []

"""The query and management API of the clients: list, count, bulk changes,
queues, stats and reset, as mixins of :class:`zizq.Client` and
:class:`zizq.AsyncClient`. The work is in :mod:`zizq._protocol.query`'s plans."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar, Unpack

from zizq._protocol.call import Call
from zizq._protocol.jobs import Core, patch_args
from zizq._protocol.query import (
    DEFAULT_LIMIT,
    JobPage,
    Plan,
    QueryCore,
    QueueInfo,
    Stats,
    Throughput,
    bulk_plan,
    count_plan,
    drive,
    drive_async,
    list_plan,
    queues_plan,
)
from zizq.errors import WorkersActive
from zizq.filters import Filter, as_filter
from zizq.job import Job
from zizq.options import PatchOptions

if TYPE_CHECKING:
    import redis
    import redis.asyncio

T = TypeVar("T")

RESET_BATCH = 1000


def _reset_refused(workers: int) -> WorkersActive:
    return WorkersActive(
        f"{workers} worker(s) hold a lease in this namespace; stop them first, or reset with force=True "
        "(their jobs vanish under them and their acks are refused)"
    )


class QueryMethods:
    """The query and management API of :class:`zizq.Client` (see the module docstring)."""

    if TYPE_CHECKING:
        core: Core
        redis: redis.Redis

        def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    def _plan(self, plan: Plan[T]) -> T:
        return drive(self.run, QueryCore(self.core), plan)

    def list_jobs(
        self,
        where: Filter | None = None,
        *,
        order: str = "asc",
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
        **filters: Any,
    ) -> JobPage:
        """One page of the jobs matching the filter, with payloads, in id
        (creation) order, ``asc`` or ``desc``. ``limit`` 1..2000 (50).
        ``after``: the ``next`` cursor of the previous page. Filter keywords
        are those of :class:`zizq.Filter` (or pass a Filter as ``where``).
        A page is read from live data, not a snapshot: a job that changes
        state while a page is read may be missed or seen twice across pages."""
        return self._plan(list_plan(as_filter(where, filters), order, limit, after))

    def iter_jobs(
        self, where: Filter | None = None, *, order: str = "asc", page_size: int = 500, **filters: Any
    ) -> Iterator[Job]:
        """Every job matching the filter, page by page (see :meth:`list_jobs`)."""
        f = as_filter(where, filters)
        after = None
        while True:
            page = self.list_jobs(f, order=order, limit=page_size, after=after)
            yield from page.jobs
            if page.next is None:
                return
            after = page.next

    def count_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """How many jobs match. Exact and cheap (ZCARD) for status and, for
        ready jobs, queue filters; other filters walk the jobs they cover."""
        return self._plan(count_plan(as_filter(where, filters)))

    def delete_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """Delete every job that matches (no filter: every job); return how
        many. Batches of 1000 are atomic, the whole is not."""
        return self._plan(bulk_plan("delete", as_filter(where, filters), []))

    def retry_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """Put every dead job that matches back to ready (see :meth:`retry_job`);
        return how many. A dead job whose unique key another job holds in a
        conflicting status (where retry_job raises UniqueKeyHeld) is skipped:
        it stays dead and is not counted."""
        return self._plan(bulk_plan("retry", as_filter(where, filters), []))

    def cancel_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """Cancel every job that matches and has not finished (see
        :meth:`cancel_job`; no filter: every such job); return how many.
        A status filter naming finished jobs is refused."""
        return self._plan(bulk_plan("cancel", as_filter(where, filters), []))

    def patch_jobs(self, where: Filter, **options: Unpack[PatchOptions]) -> int:
        """Patch every job matching ``where`` that has not finished (completed
        and dead jobs are skipped; a status filter naming them is refused).
        Options as :meth:`patch_job`. Returns how many jobs changed."""
        return self._plan(bulk_plan("patch", as_filter(where, {}), patch_args(options)))

    def list_queues(self, *, counts: bool = True) -> list[QueueInfo]:
        """Every queue ever used, by name, with ready count and paused flag;
        ``counts`` (default) adds scheduled, in-flight, completed and dead
        counts, which reads the record of every job not ready."""
        return self._plan(queues_plan(counts))

    def stats(self) -> Stats:
        """Job counts per state and ready counts per queue, from the indexes."""
        return self.run(QueryCore(self.core).stats())

    def throughput(self, minutes: int = 60) -> Throughput:
        """The attempts that ended in each of the last ``minutes`` minutes
        (1..60) of Redis time, the current minute last: completed, failed
        (the job retries) and dead. Counted by the scripts that end
        attempts (one small hash a minute, kept 65 minutes), so reading
        them costs the same whatever the number of jobs."""
        return self.run(QueryCore(self.core).throughput(minutes))

    def reset(self, *, force: bool = False) -> int:
        """Delete every key of the namespace: jobs, queues, cron groups,
        settings. Refuses (:class:`zizq.WorkersActive`) while a worker holds
        a lease, unless ``force``. Returns the number of keys deleted."""
        r = self.redis
        workers = int(r.zcount(self.core.key("workers"), int(time_ms(r.time())), "+inf"))
        if workers and not force:
            raise _reset_refused(workers)
        deleted = 0
        batch: list[Any] = []
        for key in r.scan_iter(match=_match(self.core.prefix), count=RESET_BATCH):
            batch.append(key)
            if len(batch) >= RESET_BATCH:
                deleted += int(r.unlink(*batch))
                batch = []
        if batch:
            deleted += int(r.unlink(*batch))
        return deleted


def time_ms(t: Any) -> int:
    """Redis TIME's reply (seconds, microseconds) in ms."""
    return int(t[0]) * 1000 + int(t[1]) // 1000


def _match(prefix: str) -> str:
    # The prefix "{ns}:" has glob characters; escape them for SCAN MATCH.
    return "".join("\\" + c if c in "*?[]{}\\" else c for c in prefix) + "*"


class AsyncQueryMethods:
    """The query and management API of :class:`zizq.AsyncClient`: as
    :class:`QueryMethods`, awaited."""

    if TYPE_CHECKING:
        core: Core
        redis: redis.asyncio.Redis

        async def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    async def _plan(self, plan: Plan[T]) -> T:
        return await drive_async(self.run, QueryCore(self.core), plan)

    async def list_jobs(
        self,
        where: Filter | None = None,
        *,
        order: str = "asc",
        limit: int = DEFAULT_LIMIT,
        after: str | None = None,
        **filters: Any,
    ) -> JobPage:
        """See :meth:`QueryMethods.list_jobs`."""
        return await self._plan(list_plan(as_filter(where, filters), order, limit, after))

    async def iter_jobs(
        self, where: Filter | None = None, *, order: str = "asc", page_size: int = 500, **filters: Any
    ) -> AsyncIterator[Job]:
        """See :meth:`QueryMethods.iter_jobs`."""
        f = as_filter(where, filters)
        after = None
        while True:
            page = await self.list_jobs(f, order=order, limit=page_size, after=after)
            for job in page.jobs:
                yield job
            if page.next is None:
                return
            after = page.next

    async def count_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """See :meth:`QueryMethods.count_jobs`."""
        return await self._plan(count_plan(as_filter(where, filters)))

    async def delete_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """See :meth:`QueryMethods.delete_jobs`."""
        return await self._plan(bulk_plan("delete", as_filter(where, filters), []))

    async def retry_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """See :meth:`QueryMethods.retry_jobs`."""
        return await self._plan(bulk_plan("retry", as_filter(where, filters), []))

    async def cancel_jobs(self, where: Filter | None = None, **filters: Any) -> int:
        """See :meth:`QueryMethods.cancel_jobs`."""
        return await self._plan(bulk_plan("cancel", as_filter(where, filters), []))

    async def patch_jobs(self, where: Filter, **options: Unpack[PatchOptions]) -> int:
        """See :meth:`QueryMethods.patch_jobs`."""
        return await self._plan(bulk_plan("patch", as_filter(where, {}), patch_args(options)))

    async def list_queues(self, *, counts: bool = True) -> list[QueueInfo]:
        """See :meth:`QueryMethods.list_queues`."""
        return await self._plan(queues_plan(counts))

    async def stats(self) -> Stats:
        """See :meth:`QueryMethods.stats`."""
        return await self.run(QueryCore(self.core).stats())

    async def throughput(self, minutes: int = 60) -> Throughput:
        """See :meth:`QueryMethods.throughput`."""
        return await self.run(QueryCore(self.core).throughput(minutes))

    async def reset(self, *, force: bool = False) -> int:
        """See :meth:`QueryMethods.reset`."""
        r = self.redis
        workers = int(await r.zcount(self.core.key("workers"), time_ms(await r.time()), "+inf"))
        if workers and not force:
            raise _reset_refused(workers)
        deleted = 0
        batch: list[Any] = []
        async for key in r.scan_iter(match=_match(self.core.prefix), count=RESET_BATCH):
            batch.append(key)
            if len(batch) >= RESET_BATCH:
                deleted += int(await r.unlink(*batch))
                batch = []
        if batch:
            deleted += int(await r.unlink(*batch))
        return deleted

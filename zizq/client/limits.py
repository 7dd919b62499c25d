"""The limit methods of Client and AsyncClient, side by side: set, delete
and read the named limits (see :mod:`zizq.limits`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from zizq._protocol import limits as calls
from zizq._protocol.call import Call
from zizq._protocol.jobs import Core
from zizq.limits import Limit, LimitState

T = TypeVar("T")


class LimitMethods:
    """The limit API of :class:`zizq.Client` (see the module docstring)."""

    if TYPE_CHECKING:
        core: Core

        def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    def set_limit(self, name: str, limit: Limit) -> bool:
        """Create or change the limit ``name``; it holds from the next take,
        across every worker. A name ``"queue:<q>"`` (:func:`zizq.queue_limit`)
        limits every job of queue q. True when the limit is new."""
        return self.run(calls.set_limit(self.core.keys, name, limit))

    def delete_limit(self, name: str) -> bool:
        """Delete a limit: jobs bound to it run unlimited from the next
        take. False if there was none."""
        return self.run(calls.delete_limit(self.core.keys, name))

    def limits(self) -> list[LimitState]:
        """Every limit with its live state (running now, starts in the
        window, jobs waiting on it), sorted by name."""
        return self.run(calls.read_limits(self.core.keys))


class AsyncLimitMethods:
    """The limit API of :class:`zizq.AsyncClient`: as :class:`LimitMethods`, awaited."""

    if TYPE_CHECKING:
        core: Core

        async def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    async def set_limit(self, name: str, limit: Limit) -> bool:
        """See :meth:`Client.set_limit`."""
        return await self.run(calls.set_limit(self.core.keys, name, limit))

    async def delete_limit(self, name: str) -> bool:
        """See :meth:`Client.delete_limit`."""
        return await self.run(calls.delete_limit(self.core.keys, name))

    async def limits(self) -> list[LimitState]:
        """See :meth:`Client.limits`."""
        return await self.run(calls.read_limits(self.core.keys))

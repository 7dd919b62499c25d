"""The cron methods of Client and AsyncClient, side by side: replace, read,
pause and delete cron groups and entries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from zizq._protocol.call import Call
from zizq._protocol.cron import CronCore, checked_timezone, group_of
from zizq._protocol.jobs import Core
from zizq.cron import CronEntry, CronEntryState, CronGroup

T = TypeVar("T")




class CronMethods:
    """The cron API of :class:`zizq.Client` (see the module docstring)."""

    if TYPE_CHECKING:
        core: Core

        def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    @property
    def _cron(self) -> CronCore:
        return CronCore(self.core)

    def replace_cron(
        self, group: str, entries: Sequence[CronEntry], *, timezone: str | None = None, paused: bool | None = None
    ) -> CronGroup:
        """Make ``group`` hold exactly ``entries``, atomically; call it at
        every start-up. Unchanged entries keep their schedule and paused
        state; changed ones start afresh; missing ones are deleted.
        ``timezone``: the group's default (None: UTC). ``paused``: True or
        False to pause or resume the group, None to leave it."""
        tz = checked_timezone(timezone)
        now, _ = self.run(self._cron.read(group))
        self.run(self._cron.replace("replace", group, entries, now=now, group_tz=tz, paused=paused))
        return self.get_cron(group)

    def add_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """Add an entry (creating the group if needed); raises
        CronEntryExists if the group has an entry of that name."""
        return self._put(group, entry, "add")

    def put_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """Create or replace one entry (creating the group if needed); an
        unchanged entry keeps its schedule."""
        return self._put(group, entry, "put")

    def _put(self, group: str, entry: CronEntry, mode: str) -> CronEntryState:
        now, groups = self.run(self._cron.read(group))
        tz = groups[0].timezone if groups else None
        self.run(self._cron.replace(mode, group, [entry], now=now, group_tz=tz))
        return self.get_cron(group).entry(entry.name)

    def get_cron(self, group: str) -> CronGroup:
        """The group with its entries; raises CronNotFound."""
        return group_of(self.run(self._cron.read(group))[1], group)

    def get_cron_entry(self, group: str, name: str) -> CronEntryState:
        """One entry; raises CronNotFound."""
        return self.get_cron(group).entry(name)

    def list_crons(self) -> list[CronGroup]:
        """Every cron group with its entries, sorted by name."""
        return self.run(self._cron.read(None))[1]

    def delete_cron(self, group: str) -> bool:
        """Delete a group and its entries; False if there was none."""
        return bool(self.run(self._cron.delete(group)))

    def delete_cron_entry(self, group: str, name: str) -> bool:
        """Delete one entry; False if there was none."""
        return bool(self.run(self._cron.delete(group, name)))

    def delete_all_crons(self) -> int:
        """Delete every cron group; return how many there were."""
        return self.run(self._cron.delete(None))

    def pause_cron(self, group: str) -> bool:
        """Pause a group: its due runs pass without enqueueing (no catch-up
        on resume). False if already paused; raises CronNotFound."""
        return self.run(self._cron.pause(True, group))

    def resume_cron(self, group: str) -> bool:
        """Resume a group. False if it was not paused; raises CronNotFound."""
        return self.run(self._cron.pause(False, group))

    def pause_cron_entry(self, group: str, name: str) -> bool:
        """Pause one entry (see :meth:`pause_cron`)."""
        return self.run(self._cron.pause(True, group, name))

    def resume_cron_entry(self, group: str, name: str) -> bool:
        """Resume one entry."""
        return self.run(self._cron.pause(False, group, name))


class AsyncCronMethods:
    """The cron API of :class:`zizq.AsyncClient`: as :class:`CronMethods`, awaited."""

    if TYPE_CHECKING:
        core: Core

        async def run(self, call: Call[T], *, retry_for: float | None = None) -> T: ...

    @property
    def _cron(self) -> CronCore:
        return CronCore(self.core)

    async def replace_cron(
        self, group: str, entries: Sequence[CronEntry], *, timezone: str | None = None, paused: bool | None = None
    ) -> CronGroup:
        """See :meth:`Client.replace_cron`."""
        tz = checked_timezone(timezone)
        now, _ = await self.run(self._cron.read(group))
        await self.run(self._cron.replace("replace", group, entries, now=now, group_tz=tz, paused=paused))
        return await self.get_cron(group)

    async def add_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """See :meth:`Client.add_cron_entry`."""
        return await self._put(group, entry, "add")

    async def put_cron_entry(self, group: str, entry: CronEntry) -> CronEntryState:
        """See :meth:`Client.put_cron_entry`."""
        return await self._put(group, entry, "put")

    async def _put(self, group: str, entry: CronEntry, mode: str) -> CronEntryState:
        now, groups = await self.run(self._cron.read(group))
        tz = groups[0].timezone if groups else None
        await self.run(self._cron.replace(mode, group, [entry], now=now, group_tz=tz))
        return (await self.get_cron(group)).entry(entry.name)

    async def get_cron(self, group: str) -> CronGroup:
        """See :meth:`Client.get_cron`."""
        return group_of((await self.run(self._cron.read(group)))[1], group)

    async def get_cron_entry(self, group: str, name: str) -> CronEntryState:
        """See :meth:`Client.get_cron_entry`."""
        return (await self.get_cron(group)).entry(name)

    async def list_crons(self) -> list[CronGroup]:
        """See :meth:`Client.list_crons`."""
        return (await self.run(self._cron.read(None)))[1]

    async def delete_cron(self, group: str) -> bool:
        """See :meth:`Client.delete_cron`."""
        n: int = await self.run(self._cron.delete(group))
        return bool(n)

    async def delete_cron_entry(self, group: str, name: str) -> bool:
        """See :meth:`Client.delete_cron_entry`."""
        n: int = await self.run(self._cron.delete(group, name))
        return bool(n)

    async def delete_all_crons(self) -> int:
        """See :meth:`Client.delete_all_crons`."""
        return await self.run(self._cron.delete(None))

    async def pause_cron(self, group: str) -> bool:
        """See :meth:`Client.pause_cron`."""
        return await self.run(self._cron.pause(True, group))

    async def resume_cron(self, group: str) -> bool:
        """See :meth:`Client.resume_cron`."""
        return await self.run(self._cron.pause(False, group))

    async def pause_cron_entry(self, group: str, name: str) -> bool:
        """See :meth:`Client.pause_cron_entry`."""
        return await self.run(self._cron.pause(True, group, name))

    async def resume_cron_entry(self, group: str, name: str) -> bool:
        """See :meth:`Client.resume_cron_entry`."""
        return await self.run(self._cron.pause(False, group, name))

"""The two front doors: :class:`Client` (blocking, redis-py) and
:class:`AsyncClient` (asyncio). Both have the same methods with the same
arguments; they only send the calls that :mod:`zizq._protocol` builds."""

from zizq.client.aio import AsyncClient
from zizq.client.options import DEFAULT_URL, default_url
from zizq.client.sync import Client

__all__ = ("DEFAULT_URL", "AsyncClient", "Client", "default_url")

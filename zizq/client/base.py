"""BaseClient: what Client and AsyncClient share apart from their I/O: the
settings, the namespace's Core, the enqueue middleware, and from_url. Each
front door says how it opens a redis-py client (``_connect``) and how it
holds one (``_hold``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Generic, Self, TypeVar

from zizq._protocol.jobs import Core
from zizq.client.options import default_url, durability

R = TypeVar("R")  # the redis-py client: blocking or asyncio


class BaseClient(ABC, Generic[R]):
    """A zizq client for one namespace (see :class:`zizq.Client`)."""

    def __init__(
        self,
        redis_client: R,
        namespace: str = "zizq",
        *,
        url: str | None = None,
        retry_for: float = 30.0,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        connect_options: dict[str, Any] | None = None,
    ) -> None:
        self.core = Core(namespace)
        self.url = url
        self.retry_for = retry_for
        self.enqueue_middleware: list[Any] = []
        self.wait_replicas, self._wait_ms = durability(wait_replicas, wait_timeout)
        # What from_url was given besides the URL, so a worker can open
        # connections of its own to the same place.
        self.connect_options = connect_options or {}
        self._hold(redis_client)

    @abstractmethod
    def _hold(self, redis_client: R) -> None:
        """Keep ``redis_client`` as the one to send calls with."""

    @staticmethod
    @abstractmethod
    def _connect(url: str, options: dict[str, Any]) -> R:
        """A redis-py client of this front door's kind for ``url``; zizq's
        connection options are added to ``options`` (a copy)."""

    @classmethod
    def from_url(
        cls,
        url: str | None = None,
        namespace: str = "zizq",
        *,
        retry_for: float = 30.0,
        cluster: bool | None = None,
        wait_replicas: int = 0,
        wait_timeout: float = 1.0,
        **redis_options: Any,
    ) -> Self:
        """Connect to ``url`` (default: ``ZIZQ_REDIS_URL``, else localhost).

        ``url`` is ``redis://``, ``rediss://`` (TLS), ``unix://``,
        ``redis+cluster://host:port[,host:port…]`` (or ``cluster=True``) or
        ``redis+sentinel://host:port[,host:port…]/SERVICE``; see
        :mod:`zizq.connect` for every form and query option. A malformed URL
        or an unknown option raises :class:`zizq.ValidationError`.

        While Redis cannot be reached (or is loading, or read-only, or the
        cluster is failing over) a call is retried with backoff (0.5 s
        doubling to 30 s) for up to ``retry_for`` seconds, then raises
        :class:`zizq.RedisUnavailable`. An enqueue sent again creates nothing
        twice: a job that ran and was deleted in between is recognised for
        60 s after, so keep ``retry_for`` under 60.

        ``wait_replicas`` (0: off) makes every enqueue wait, with ``WAIT``,
        until that many replicas have the new jobs, for up to
        ``wait_timeout`` seconds; if fewer confirm in time the enqueue is sent
        again (safely: same ids), so a returned enqueue survives a failover.
        Other keyword arguments go to redis-py's client.
        """
        url = url or default_url()
        options = {"cluster": cluster, **redis_options}
        return cls(
            cls._connect(url, dict(options)),
            namespace,
            url=url,
            retry_for=retry_for,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            connect_options=options,
        )

    @property
    def namespace(self) -> str:
        return self.core.namespace

"""Redis URLs: parse them, and build redis-py clients for them.

One place decides what a URL means, so the Client, the AsyncClient and the
worker (which opens connections of its own) all read it the same way:

- ``redis://[[user]:password@]host[:port][/db]`` and ``rediss://…`` (TLS):
  one Redis server. ``unix:///path/to/redis.sock[?db=N]`` for a socket.
- ``redis+cluster://[[user]:password@]host:port[,host:port…]`` and
  ``rediss+cluster://…``: a Redis Cluster, reached through any of the nodes
  listed (the rest are discovered). ``redis://host:port?cluster=true`` (or
  ``cluster=True`` in code) means the same with one node.
- ``redis+sentinel://[[user]:password@]host:port[,host:port…]/SERVICE[/db]``
  and ``rediss+sentinel://…``: the master Sentinel knows as SERVICE; the
  user and password are the master's, ``sentinel_username`` and
  ``sentinel_password`` in the query are the sentinels' own.

Query options (also accepted as keyword arguments, which win): see OPTIONS.
Anything else is a :class:`zizq.ValidationError` naming it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis._parsers import AsyncCommandsParser
from redis.backoff import NoBackoff
from redis.retry import Retry

from zizq.errors import RedisMisconfigured, RedisUnavailable, ValidationError

DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
SCHEMES = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "unix": ("standalone", False),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def _cert_reqs(text: str) -> str:
    if text not in ("none", "optional", "required"):
        raise ValueError(f"{text!r} is not one of none, optional, required")
    return text


# Query options zizq understands, each with its parser. ssl_* need rediss.
OPTIONS: dict[str, Callable[[str], Any]] = {
    "db": int,
    "socket_timeout": float,  # seconds
    "socket_connect_timeout": float,  # seconds
    "health_check_interval": int,  # seconds
    "max_connections": int,
    "client_name": str,
    "cluster": _bool,
    "sentinel_username": str,
    "sentinel_password": str,
    "ssl_ca_certs": str,  # a PEM file of CA certificates
    "ssl_ca_path": str,
    "ssl_certfile": str,  # the client's certificate, for servers that ask for one
    "ssl_keyfile": str,
    "ssl_password": str,
    "ssl_cert_reqs": _cert_reqs,
    "ssl_check_hostname": _bool,
}
_ZIZQ_ONLY = ("cluster", "sentinel_username", "sentinel_password")


@dataclass
class Target:
    """What a URL points at, with the options for redis-py."""

    kind: str  # "standalone", "cluster" or "sentinel"
    tls: bool
    hosts: list[tuple[str, int]] = field(default_factory=list)
    unix_path: str | None = None
    service: str | None = None  # the Sentinel service name
    options: dict[str, Any] = field(default_factory=dict)  # for the Redis connections
    sentinel_options: dict[str, Any] = field(default_factory=dict)  # for the sentinels' connections


def redact(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a malformed URL>"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def _hosts(text: str, url: str, default_port: int) -> list[tuple[str, int]]:
    hosts = []
    for item in text.split(","):
        item = item.strip()
        if item.startswith("["):  # [::1]:6379
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValidationError(f"Redis URL {redact(url)!r}: a host is missing in {text!r}")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise ValidationError(f"Redis URL {redact(url)!r}: port {port_text!r} is not a number from 1 to 65535")
        hosts.append((host, port))
    return hosts


def parse_url(url: str, *, cluster: bool | None = None, **options: Any) -> Target:
    """Parse ``url`` (see the module's docstring) and merge ``options`` (which
    win over the URL's query). ``cluster=True`` makes a redis:// or rediss://
    URL a cluster URL. Raises :class:`zizq.ValidationError`."""
    if not isinstance(url, str) or "://" not in url:
        raise ValidationError(
            f"Redis URL {url!r} has no scheme: use redis://, rediss://, unix://, "
            "redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValidationError(f"Redis URL {redact(url)!r} is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValidationError(f"Redis URL scheme {scheme + '://'!r} is unknown: use one of {', '.join(SCHEMES)}")
    kind, tls = SCHEMES[scheme]

    query: dict[str, Any] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        parser = OPTIONS.get(name)
        if parser is None:
            raise ValidationError(
                f"Redis URL {redact(url)!r}: unknown option {name!r}; known options: {', '.join(OPTIONS)}"
            )
        try:
            query[name] = parser(value)
        except ValueError as exc:
            raise ValidationError(f"Redis URL {redact(url)!r}: option {name}={value!r}: {exc}") from None
    query.update(options)
    if cluster is not None:
        query["cluster"] = cluster
    if query.pop("cluster", False):
        if kind == "sentinel":
            raise ValidationError(f"Redis URL {redact(url)!r}: cluster=true cannot be used with Sentinel")
        if scheme == "unix":
            raise ValidationError(f"Redis URL {redact(url)!r}: cluster=true needs host:port nodes, not a socket")
        kind = "cluster"

    target = Target(kind, tls)
    userinfo, _, hosts_text = parts.netloc.rpartition("@")
    if userinfo:
        user, has_password, password = userinfo.partition(":")
        if user:
            target.options["username"] = unquote(user)
        if has_password:
            target.options["password"] = unquote(password)
    path = [unquote(p) for p in parts.path.split("/") if p]

    if scheme == "unix":
        if not parts.path:
            raise ValidationError(f"Redis URL {redact(url)!r} names no socket path")
        target.unix_path = unquote(parts.path)
        path = []
    elif not hosts_text:
        raise ValidationError(f"Redis URL {redact(url)!r} names no host")
    else:
        default_port = DEFAULT_SENTINEL_PORT if kind == "sentinel" else DEFAULT_PORT
        target.hosts = _hosts(hosts_text, url, default_port)
        if kind == "standalone" and len(target.hosts) > 1:
            raise ValidationError(
                f"Redis URL {redact(url)!r} lists several hosts: use redis+cluster:// or redis+sentinel://"
            )

    if kind == "sentinel":
        if not path:
            raise ValidationError(
                f"Redis URL {redact(url)!r} names no Sentinel service: "
                "redis+sentinel://host:26379[,host:port…]/SERVICE[/db]"
            )
        target.service = path.pop(0)
    if path:
        if len(path) > 1 or not path[0].isdigit():
            raise ValidationError(f"Redis URL {redact(url)!r}: database {'/'.join(path)!r} is not a number")
        query.setdefault("db", int(path[0]))
    if kind == "cluster" and query.get("db", 0) != 0:
        raise ValidationError(f"Redis URL {redact(url)!r}: a cluster has only database 0, not {query['db']!r}")

    for name in ("sentinel_username", "sentinel_password"):
        if name in query:
            if kind != "sentinel":
                raise ValidationError(f"Redis URL {redact(url)!r}: option {name!r} needs a redis+sentinel:// URL")
            target.sentinel_options[name.removeprefix("sentinel_")] = query.pop(name)
    for name in query:
        if name.startswith("ssl_") and not tls:
            raise ValidationError(f"Redis URL {redact(url)!r}: option {name!r} needs TLS (a rediss… URL)")
    if tls:
        query["ssl"] = True
    target.options.update(query)
    return target


def _tls_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k == "ssl" or k.startswith("ssl_")}


class _SentinelRedis(redis.Redis):
    """A master client that also closes its connections to the sentinels."""

    zizq_sentinel: redis.sentinel.Sentinel | None = None

    def close(self) -> None:
        super().close()
        if self.zizq_sentinel is not None:
            for s in self.zizq_sentinel.sentinels:
                s.close()


class _AsyncSentinelRedis(redis.asyncio.Redis):
    zizq_sentinel: redis.asyncio.sentinel.Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.zizq_sentinel is not None:
            for s in self.zizq_sentinel.sentinels:
                await s.aclose()


def _sentinel_kwargs(target: Target, options: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**_tls_options(options), **target.sentinel_options}
    for name in ("socket_timeout", "socket_connect_timeout", "retry"):
        if name in options:
            kwargs[name] = options[name]
    return kwargs


# Errors of a node that does not answer: failed, or not there any more.
_SILENT = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def _others_after(first: Any, nodes: list[Any]) -> list[Any]:
    return [first, *(n for n in nodes if n is not first)]


class _Cluster(redis.RedisCluster):
    """A RedisCluster that reads Redis's command table (which it does once,
    when it is made) from a node that answers. redis-py asks its default node,
    the first master of the slot map; a master that just failed stays in the
    map until its replica has taken over, and the client would raise
    ConnectionError at once although every other node answers."""

    def command(self, **kwargs: Any) -> Any:
        nodes: Any = self  # redis-py's node methods are untyped
        default = nodes.get_default_node()
        error: BaseException | None = None
        for node in _others_after(default, nodes.get_nodes()):
            try:
                reply = super().command(target_nodes=node, **kwargs)
            except _SILENT as exc:
                error = exc
                continue
            if node is not default:
                nodes.set_default_node(node)  # commands without a key go there too
            return reply
        raise error or redis.exceptions.ConnectionError("no node of the cluster answered")


class _AsyncCommandsParser(AsyncCommandsParser):
    """The asyncio twin of :meth:`_Cluster.command`: redis-py's asyncio
    cluster reads the command table at its first call, from the default node."""

    def __init__(self, cluster: redis.asyncio.RedisCluster) -> None:
        super().__init__()
        self.zizq_cluster = cluster

    async def initialize(self, node: Any = None) -> None:
        first = node or getattr(self, "node", None)
        error: BaseException | None = None
        for candidate in _others_after(first, self.zizq_cluster.get_nodes()):
            if candidate is None:
                continue
            try:
                await super().initialize(candidate)
            except _SILENT as exc:
                error = exc
                continue
            if candidate is not first:
                self.zizq_cluster.set_default_node(candidate)
            return
        raise error or redis.exceptions.ConnectionError("no node of the cluster answered")


class _AsyncCluster(redis.asyncio.RedisCluster):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands_parser = _AsyncCommandsParser(self)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        # redis-py 8.2 works out how to route a command before a client that
        # has not read the slot map yet reads it: the first call of a new
        # client is routed as if it had no key, to any node, a failed master
        # too. So the map is read first.
        if self.get_default_node() is None:
            await self.initialize()
        return await super().execute_command(*args, **kwargs)


@dataclass(frozen=True)
class _Flavour:
    """The redis-py classes of one I/O style, blocking or asyncio."""

    redis: Any
    cluster: Any
    cluster_node: Any
    sentinel: Any
    sentinel_master: Any
    # A Sentinel master's single connection (only the worker's asyncio
    # blocker asks for one): asyncio redis-py takes it at the first call, so
    # it can be set after master_for; blocking redis-py would take it at
    # once, asking the sentinels before anything is sent, so it is dropped.
    single_connection: bool


_BLOCKING = _Flavour(redis.Redis, _Cluster, redis.cluster.ClusterNode, redis.sentinel.Sentinel, _SentinelRedis, False)
_ASYNCIO = _Flavour(
    redis.asyncio.Redis,
    _AsyncCluster,
    redis.asyncio.cluster.ClusterNode,
    redis.asyncio.sentinel.Sentinel,
    _AsyncSentinelRedis,
    True,
)


def _client(flavour: _Flavour, url: str, cluster: bool | None, options: dict[str, Any]) -> Any:
    target = parse_url(url, cluster=cluster, **options)
    opts = dict(target.options)
    if target.kind == "cluster":
        opts.pop("db", None)
        opts.pop("single_connection_client", None)
        nodes = [flavour.cluster_node(h, p) for h, p in target.hosts]
        try:
            return flavour.cluster(startup_nodes=nodes, **opts)
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
            _unreachable_cluster(exc, url)
            raise
    if target.kind == "sentinel":
        assert target.service is not None
        single = opts.pop("single_connection_client", False)
        sentinel = flavour.sentinel(target.hosts, sentinel_kwargs=_sentinel_kwargs(target, opts), **opts)
        master = sentinel.master_for(target.service, redis_class=flavour.sentinel_master)
        master.zizq_sentinel = sentinel
        if flavour.single_connection:
            master.single_connection_client = single
        return master
    if target.unix_path is not None:
        opts.pop("ssl", None)
        return flavour.redis(unix_socket_path=target.unix_path, **opts)
    host, port = target.hosts[0]
    return flavour.redis(host=host, port=port, **opts)


def _unreachable_cluster(exc: BaseException, url: str) -> None:
    """Raise the zizq error for ``exc``, met making a blocking cluster client
    (which reads the slot map at once), when no node could be reached:
    RedisMisconfigured when waiting cannot fix it, else RedisUnavailable."""
    problem = misconfiguration(exc, url)
    if problem is not None:
        raise RedisMisconfigured(f"redis at {redact(url)}: {problem}") from exc
    if any(isinstance(e, _SILENT) for e in _chain(exc)):
        raise RedisUnavailable(f"cannot reach any node of redis at {redact(url)}: {reason(exc)}") from exc


def sync_redis(url: str, *, cluster: bool | None = None, **options: Any) -> Any:
    """A blocking redis-py client for ``url``: ``redis.Redis``, a
    ``redis.RedisCluster`` or a Sentinel-managed ``redis.Redis``. ``options``
    go to redis-py (and win over the URL's query)."""
    return _client(_BLOCKING, url, cluster, options)


def async_redis(url: str, *, cluster: bool | None = None, **options: Any) -> Any:
    """The asyncio twin of :func:`sync_redis`."""
    return _client(_ASYNCIO, url, cluster, options)


# Seconds the command line's connectivity check gives Redis to accept the
# connection, and then to answer PING.
CHECK_TIMEOUT = 3.0


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (redis-py wraps socket
    and TLS errors in its ConnectionError)."""
    seen: list[BaseException] = []
    at: BaseException | None = exc
    while at is not None and at not in seen:
        seen.append(at)
        at = at.__cause__ or at.__context__
    return seen


def misconfiguration(exc: BaseException, url: str) -> str | None:
    """What is wrong, when ``exc`` (met connecting to ``url`` or on its
    first command) is an error that waiting cannot fix: authentication,
    an unknown host, a database out of range, TLS settings the server does
    not accept, a TLS file that cannot be read. None for anything else (a
    refused connection, a timeout, LOADING: Redis may still come)."""
    target = parse_url(url)
    for e in _chain(exc):
        text = str(e)
        if isinstance(e, (redis.exceptions.AuthenticationError, redis.exceptions.AuthenticationWrongNumberOfArgsError)):
            return f"authentication failed (check the user and password): {text}"
        if isinstance(e, redis.exceptions.ResponseError):
            if text.startswith(("NOAUTH", "WRONGPASS")):
                return f"authentication failed (check the user and password): {text}"
            if "DB index is out of range" in text or "invalid DB index" in text:
                return f"database {target.options.get('db', 0)} does not exist on this server: {text}"
        if isinstance(e, socket.gaierror) and e.errno != socket.EAI_AGAIN:  # EAI_AGAIN: DNS did not answer
            return f"host not found ({e.strerror}): {', '.join(h for h, _ in target.hosts) or text}"
        if isinstance(e, ssl.SSLError) and not isinstance(e, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
            return f"TLS failed (check the rediss:// URL's ssl_* options): {text}"
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)) and target.tls:
            return f"a TLS file (ssl_ca_certs, ssl_certfile, ssl_keyfile) cannot be read: {e}"
    return None


def reason(exc: BaseException) -> str:
    """Why a connection failed, for a log line: "connection refused" when it
    was (asyncio's own words for it are "Connect call failed"), else the
    error's text."""
    if any(isinstance(e, ConnectionRefusedError) for e in _chain(exc)):
        return "connection refused"
    return str(exc) or type(exc).__name__


def _answered(exc: BaseException) -> bool:
    """Whether ``exc`` is a reply: Redis is there (loading, read-only, a
    command refused), and the command's own retries deal with it."""
    return isinstance(exc, (redis.exceptions.ResponseError, redis.exceptions.BusyLoadingError))


def check(url: str, *, timeout: float = CHECK_TIMEOUT, **options: Any) -> None:
    """PING ``url`` once, on a connection of its own that gets ``timeout``
    seconds to connect and as many to get the answer: what the command line
    does first. Raises :class:`zizq.RedisMisconfigured` for an error waiting
    cannot fix (see :func:`misconfiguration`), :class:`zizq.RedisUnavailable`
    when Redis cannot be reached. ``options`` as for :func:`sync_redis`."""
    options = {**options, "socket_timeout": timeout, "socket_connect_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    client = None
    try:
        client = sync_redis(url, **options)
        client.ping()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        problem = misconfiguration(exc, url)
        if problem is not None:
            raise RedisMisconfigured(f"redis at {redact(url)}: {problem}") from None
        if not _answered(exc):
            raise RedisUnavailable(f"cannot reach redis at {redact(url)}: {reason(exc)}") from None
    finally:
        if client is not None:
            client.close()


async def ping_async(client: Any, url: str) -> None:
    """PING with the asyncio ``client`` of ``url``, once. Raises
    :class:`zizq.RedisMisconfigured` for an error waiting cannot fix; other
    connection errors as they are (the caller retries them); returns when
    Redis answered, even with an error reply."""
    try:
        await client.ping()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError) as exc:
        problem = misconfiguration(exc, url)
        if problem is not None:
            raise RedisMisconfigured(f"redis at {redact(url)}: {problem}") from None
        if not _answered(exc):
            raise


def is_cluster(client: Any) -> bool:
    return isinstance(client, (redis.RedisCluster, redis.asyncio.RedisCluster))


class NotReplicated(redis.exceptions.TimeoutError):
    """Fewer replicas than asked acknowledged a write in time. A TimeoutError
    so that it is retried like one (an enqueue is safe to send again)."""


def _check_replicas(acked: Any, wanted: int, timeout_ms: int) -> None:
    if int(acked) < wanted:
        raise NotReplicated(f"{acked} of {wanted} replicas acknowledged the enqueue within {timeout_ms} ms")


def _first_error(results: list[Any]) -> None:
    for result in results:
        if isinstance(result, Exception):
            raise result


# Errors after which a cluster's map of slots may be out of date (a failover):
# the node-level connections used for WAIT do not refresh it by themselves.
_REFRESH_ON = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.AskError,
    OSError,
)


def _refresh(client: Any) -> None:
    try:
        client.nodes_manager.initialize()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
        pass  # the next call finds out again


async def _refresh_async(client: Any) -> None:
    try:
        await client.nodes_manager.initialize()
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError):
        pass


def send_waiting(
    client: Any, command: str, keys: tuple[str, ...], args: list[Any], wanted: int, timeout_ms: int
) -> Any:
    """``command`` (EVALSHA or EVAL, with ``args`` after it) then ``WAIT
    wanted timeout_ms``, on one connection (WAIT only counts the writes of
    its own connection); returns the script's reply. Raises NotReplicated
    when fewer than ``wanted`` replicas acknowledged within ``timeout_ms``."""
    if is_cluster(client):
        node = client.get_node_from_key(keys[0])
        pipe = client.get_redis_connection(node).pipeline(transaction=False)
    else:
        pipe = client.pipeline(transaction=False)
    try:
        with pipe:
            pipe.execute_command(command, *args)
            pipe.execute_command("WAIT", wanted, timeout_ms)
            reply, acked = pipe.execute(raise_on_error=False)
    except _REFRESH_ON:
        if is_cluster(client):
            _refresh(client)
        raise
    if isinstance(reply, _REFRESH_ON) and is_cluster(client):
        _refresh(client)
    _first_error([reply, acked])
    _check_replicas(acked, wanted, timeout_ms)
    return reply


async def send_waiting_async(
    client: Any, command: str, keys: tuple[str, ...], args: list[Any], wanted: int, timeout_ms: int
) -> Any:
    """The asyncio twin of :func:`send_waiting`."""
    if is_cluster(client):
        await client.initialize()
        node = client.get_node_from_key(keys[0])
        conn = node.acquire_connection()
        try:
            await conn.send_packed_command(conn.pack_commands([(command, *args), ("WAIT", wanted, timeout_ms)]))
            results: list[Any] = []
            for name in (command, "WAIT"):
                try:
                    results.append(await node.parse_response(conn, name))
                except redis.exceptions.ResponseError as exc:
                    results.append(exc)
        except BaseException as exc:
            await conn.disconnect()
            if isinstance(exc, _REFRESH_ON):
                await _refresh_async(client)
            raise
        finally:
            node.release(conn)
        if isinstance(results[0], _REFRESH_ON):
            await _refresh_async(client)
    else:
        async with client.pipeline(transaction=False) as pipe:
            pipe.execute_command(command, *args)
            pipe.execute_command("WAIT", wanted, timeout_ms)
            results = await pipe.execute(raise_on_error=False)
    _first_error(results)
    _check_replicas(results[1], wanted, timeout_ms)
    return results[0]

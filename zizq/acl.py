"""The least-privilege Redis ACL rules for a zizq producer and a zizq worker.

Redis checks the commands a Lua script runs against the ACL of the user who
called it, so a zizq user needs EVALSHA and EVAL (EVAL after a NOSCRIPT)
and every command the scripts in ``lua/`` run, which this module reads from
them; a worker also needs BLPOP (waiting for work), SMEMBERS (reconciling
after a lost reply), RPUSH and DEL (its stop list), SET (the ids of the jobs
it runs, for ``zizq top``). All of them limited to
the namespace's keys, ``{<namespace>}:*``, and no Pub/Sub channels.

``ACL SETUSER <name> on ><password> `` + :func:`rules` makes such a user.
"""

from __future__ import annotations

import re
from functools import cache

from zizq._protocol.scripts import lua_dir
from zizq.errors import ValidationError
from zizq.job import validate_name

ROLES = ("producer", "worker")
_CALL = re.compile(r"redis\.p?call\(\s*['\"]([A-Za-z]+)['\"]")
WORKER_COMMANDS = ("blpop", "smembers", "rpush", "del", "set")
"""Commands a worker sends itself, outside the scripts."""


@cache
def script_commands() -> tuple[str, ...]:
    """Every command the Lua scripts run, lowercase and sorted."""
    found: set[str] = set()
    for path in sorted(lua_dir().rglob("*.lua")):
        found.update(name.lower() for name in _CALL.findall(path.read_text()))
    return tuple(sorted(found))


def rules(namespace: str, role: str) -> str:
    """The ACL rules (the part of ``ACL SETUSER`` after the user's name and
    password) for a ``role`` ("producer" or "worker") of ``namespace``.

    A worker without ``+config|get`` skips its start-up check of
    ``maxmemory-policy``; add it to get the warning. A producer may send
    ``WAIT`` (``wait_replicas``), so it has ``+wait``; one that calls
    ``Client.wait`` also needs ``+blpop`` (not given: it would let a
    producer take a worker's wake token). On Redis Cluster
    add ``+cluster|slots +cluster|shards``: redis-py reads the slot map
    with them.
    """
    validate_name("namespace", namespace)
    if role not in ROLES:
        raise ValidationError(f"ACL role {role!r} is unknown: use 'producer' or 'worker'")
    commands = {"evalsha", "eval", "ping", *script_commands()}
    if role == "producer":
        commands.add("wait")
    if role == "worker":
        commands.update(WORKER_COMMANDS)
    allowed = " ".join(f"+{c}" for c in sorted(commands))
    return f"resetkeys ~{{{namespace}}}:* resetchannels -@all {allowed}"

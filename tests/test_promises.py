"""Promises at their edges, on a real Redis, through the scripts alone.

A unique key guards for as long as any job within its scope holds it, also
when several jobs hold it at once (a job waiting for its retry while a
later one with its key waits in line). An enqueue repeated after its reply
was lost never makes a job again, however the job it made has left: deleted
as it finished, purged after its retention, or deleted by an operator.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from zizq._protocol.scripts import script

from .test_scripts import NAMES, Lua, job, packed


@pytest.fixture
def lua(r: redis.Redis, namespace: str) -> Iterator[Lua]:
    for name in (*NAMES, "purge", "done"):
        assert r.script_load(script(name).source) == script(name).sha
    yield Lua(r, namespace)


# ---------------------------------------------------------------- unique keys


def test_a_queued_key_guards_a_job_waiting_for_its_retry(lua: Lua) -> None:
    """A runs; B with A's key is enqueued (A is not queued); A fails and
    waits for its retry while B waits too; B is taken: A still holds the
    key, so a third job with it is a duplicate of A."""
    lua.enqueue(job("a", unique_key="k"))
    assert lua.take("w", 1, "q").ids == ["a"]
    [(flag, _, _)] = lua.enqueue(job("b", unique_key="k"))
    assert flag == 0
    assert lua.fail("w", "a", retry_in=60_000) is not None  # scheduled, a minute on
    assert lua.take("w", 1, "q").ids == ["b"]
    [(flag, holder, fields)] = lua.enqueue(job("c", unique_key="k"))
    assert (flag, holder, fields["s"]) == (1, "a", "scheduled")
    assert not lua.exists("c")


@pytest.mark.parametrize("back", ["release", "lost worker"])
def test_a_queued_key_guards_a_job_handed_back(lua: Lua, back: str) -> None:
    """As above, with A handed back untouched instead of failed."""
    lua.enqueue(job("a", unique_key="k"))
    assert lua.take("w", 1, "q").ids == ["a"]
    lua.enqueue(job("b", unique_key="k", queue="other"))
    if back == "release":
        assert lua.release("w", "a") == 1
    else:
        lua.run("heartbeat", "w", "join", 0, 0, 0)  # a lease that has lapsed
        time.sleep(0.002)
        assert lua.run("heartbeat", "w2", "join", 60_000, 10, 0) == ["ok", 1, 0]
    assert lua.take("w2", 1, "other").ids == ["b"]
    [(flag, holder, _)] = lua.enqueue(job("c", unique_key="k"))
    assert (flag, holder) == (1, "a")


@pytest.mark.parametrize(("wide", "state"), [("exists", "completed"), ("exists", "dead"), ("active", "in_flight")])
def test_a_narrower_scope_does_not_displace_a_wider_holder(lua: Lua, wide: str, state: str) -> None:
    """A holds its key in a wide scope (exists: kept after it finished;
    active: while it runs). B with the key in the queued scope is allowed
    (A is not queued) and then taken: A still holds the key for a job that
    asks for A's scope."""
    lua.enqueue(job("a", unique_key="k", unique_while=wide, completed_ms=60_000, dead_ms=60_000))
    assert lua.take("w", 1, "q").ids == ["a"]
    if state == "completed":
        assert lua.ack("w", "a") == []
    elif state == "dead":
        assert lua.fail("w", "a", kill=True) is not None
    [(flag, _, _)] = lua.enqueue(job("b", unique_key="k", unique_while="queued"))
    assert flag == 0
    assert lua.take("w", 1, "q").ids == ["b"]
    [(flag, holder, fields)] = lua.enqueue(job("c", unique_key="k", unique_while=wide))
    assert (flag, holder, fields["s"]) == (1, "a", state)


def test_the_key_is_free_once_no_holder_is_left(lua: Lua) -> None:
    """Two jobs held the key at once; once both have run, it is free."""
    lua.enqueue(job("a", unique_key="k"))
    lua.take("w", 1, "q")
    lua.enqueue(job("b", unique_key="k"))
    lua.fail("w", "a", retry_in=0)
    assert sorted(lua.take_until("w", 2, "q").ids) == ["a", "b"]
    assert lua.ack("w", "a", "b") == []
    [(flag, _, _)] = lua.enqueue(job("c", unique_key="k"))
    assert flag == 0


# ---------------------------------------------------------------- the done window


def repeat(lua: Lua, row: list[str | int | float]) -> tuple[int, str]:
    """Send an enqueue again, marked as a repeat (its first reply was lost)."""
    _, flag, got, _ = lua.raw("enqueue", *packed(row), 1)
    return flag, got.decode()


def test_a_repeated_enqueue_does_not_make_a_purged_job_again(lua: Lua) -> None:
    row = job("j1", completed_ms=1)
    lua.enqueue(row)
    lua.take("w", 1, "q")
    assert lua.ack("w", "j1") == []  # kept 1 ms, then purged
    deadline = time.monotonic() + 5
    while lua.run("purge", 100) == 0:
        assert time.monotonic() < deadline, "nothing purged"
        time.sleep(0.002)
    assert not lua.exists("j1")
    before = lua.snapshot()
    assert repeat(lua, row) == (3, "j1")
    assert lua.snapshot() == before
    # It was not deleted as it finished (its retention was not 0).
    assert lua.run("done", "j1") == [0]


@pytest.mark.parametrize("state", ["ready", "in_flight", "completed"])
@pytest.mark.parametrize("how", ["delete", "bulk delete"])
def test_a_repeated_enqueue_does_not_make_a_deleted_job_again(lua: Lua, state: str, how: str) -> None:
    row = job("j1", completed_ms=60_000)
    lua.enqueue(row)
    if state != "ready":
        lua.take("w", 1, "q")
    if state == "completed":
        lua.ack("w", "j1")
    if how == "delete":
        assert lua.run("delete", "j1") == 1
    else:
        assert lua.run("bulk", "delete", "{}", "", 1, "j1") == [1, 0]
    before = lua.snapshot()
    assert repeat(lua, row) == (3, "j1")
    assert lua.snapshot() == before
    assert lua.run("done", "j1") == [0]


def test_a_job_deleted_as_it_finished_is_still_told_apart(lua: Lua) -> None:
    row = job("j1", completed_ms=0)
    lua.enqueue(row)
    lua.take("w", 1, "q")
    lua.ack("w", "j1")
    assert repeat(lua, row) == (3, "j1")
    assert lua.run("done", "j1", "never") == [1, 0]

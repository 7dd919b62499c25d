"""The Lua scripts on their own, on a real Redis, without zizq.Client.

Each test calls a script with EVALSHA exactly as its header documents (KEYS[1]
is the namespace prefix, then ARGV) and checks the reply and the keys it leaves
behind. Where a script reads the clock, the tests read Redis's TIME around the
call or use the ``now`` a take returns, never the client's clock.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
import redis

from zizq._hotpath import encode_id
from zizq._protocol.scripts import script

Value = str | int | float

DEAD_MS_DEFAULT = 604_800_000
NAMES = ("enqueue", "take", "ack", "fail", "release", "get", "heartbeat", "delete", "retry", "bulk", "tally_read")


def text(v: Any) -> Any:
    """A reply with every bytes value decoded, its lists, tuples and dicts kept."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, list | tuple):
        return type(v)(text(x) for x in v)
    if isinstance(v, dict):
        return {text(k): text(x) for k, x in v.items()}
    return v


STATUS_NAMES = {1: "ready", 2: "scheduled", 3: "in_flight", 4: "completed", 5: "dead"}
LEFT_OUT = {"q": "default", "p": 32768, "a": 0}  # stored only when different


def as_map(record: bytes) -> dict[str, str]:
    """A job record (as stored, and as scripts reply with it) the way
    docs/protocol/other-languages.md says to read it: the status by name, the left-out
    defaults filled in; every value as text, for easy comparison."""
    stored = msgpack.unpackb(record)
    fields = {**LEFT_OUT, **stored, "s": STATUS_NAMES[stored["s"]]}
    return {k: str(v) for k, v in fields.items()}


def text_row(values: list[Value]) -> list[Value]:
    return [str(v) if isinstance(v, int) else v for v in values]


def packed(*jobs: list[Value]) -> list[Value]:
    """The enqueue script's arguments for these jobs: the count, and the jobs
    as one MessagePack array of string arrays (numbers written as text)."""
    rows = [text_row(j) for j in jobs]
    return [len(rows), msgpack.packb(rows, use_bin_type=False)]


def job(
    job_id: str,
    *,
    job_type: str = "t",
    queue: str = "q",
    priority: Value = 32768,
    payload: str = '{"n":1}',
    ready_at: Value = "",
    delay: Value = "",
    retry_limit: Value = "",
    backoff: str = "",
    completed_ms: Value = "",
    dead_ms: Value = "",
    unique_key: str = "",
    unique_while: str = "",
    timeout_ms: Value = "",
) -> list[Value]:
    """The 14 enqueue values of one job, in the order enqueue.lua's header gives."""
    return [
        job_id,
        job_type,
        queue,
        priority,
        payload,
        ready_at,
        delay,
        retry_limit,
        backoff,
        completed_ms,
        dead_ms,
        unique_key,
        unique_while,
        timeout_ms,
    ]


@dataclass
class Taken:
    now: int
    next_due: int
    more: int
    jobs: list[tuple[str, dict[str, str]]]

    @property
    def ids(self) -> list[str]:
        return [i for i, _ in self.jobs]


class Lua:
    """Calls the scripts of one namespace and reads its keys."""

    def __init__(self, r: redis.Redis, namespace: str) -> None:
        self.r = r
        self.prefix = "{" + namespace + "}:"

    def raw(self, name: str, *args: Value) -> Any:
        return self.r.evalsha(script(name).sha, 1, self.prefix, *args)

    def run(self, name: str, *args: Value) -> Any:
        """The reply with its text decoded (for scripts that return no job record)."""
        return text(self.raw(name, *args))

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    # The scripts, with their replies decoded.

    def enqueue(self, *jobs: list[Value]) -> list[tuple[int, str, dict[str, str]]]:
        now, *flat = self.raw("enqueue", *packed(*jobs))
        out = []
        for flag, job_id, x in zip(flat[0::3], flat[1::3], flat[2::3], strict=True):
            if flag in (0, 3):  # x is ready_at: give created jobs the fields a client reads
                status = "completed" if flag == 3 else "scheduled" if x > now else "ready"
                out.append((flag, job_id.decode(), {"s": status, "r": str(x)}))
            else:
                out.append((flag, job_id.decode(), as_map(x)))
        return out

    def take(self, worker: str, n: int, *queues: str, start: int | None = None) -> Taken:
        """Take as ``worker`` (joined with a long lease); ``start`` jobs of
        them start at once (default: all)."""
        self.run("heartbeat", worker, "join", 60_000, 0, 0)  # take needs a lease
        reply = self.raw("take", worker, n, n if start is None else start, *queues)
        pairs = reply[3:]
        jobs = [(pairs[i].decode(), as_map(pairs[i + 1])) for i in range(0, len(pairs), 2)]
        return Taken(reply[0], reply[1], reply[2], jobs)

    def take_until(self, worker: str, n: int, *queues: str, timeout: float = 5.0) -> Taken:
        """Take until something comes back (a due scheduled job), with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            taken = self.take(worker, n, *queues)
            if taken.jobs:
                return taken
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing to take within {timeout}s")
            time.sleep(0.005)

    def ack(self, worker: str, *ids: str, da: Value = "", result: Value = "") -> list[str]:
        """Ack ``ids`` of the attempt dequeued at ``da`` ('' for any), each
        with ``result`` (JSON text, '' for none)."""
        return list(self.run("ack", worker, *(v for i in ids for v in (i, da, result))))

    def fail(
        self,
        worker: str,
        job_id: str,
        *,
        message: str = "boom",
        error_type: str = "",
        backtrace: str = "",
        retry_at: Value = "",
        retry_in: Value = "",
        kill: bool = False,
        jitter: float = 0.0,
        da: Value = "",
    ) -> dict[str, str] | None:
        reply = self.raw(
            "fail", worker, job_id, message, error_type, backtrace, retry_at, retry_in, "1" if kill else "0", jitter, da
        )
        return None if reply is None else as_map(reply)

    def release(self, worker: str, *ids: str, da: Value = "") -> int:
        return int(self.run("release", worker, *(v for i in ids for v in (i, da))))

    def get(self, *ids: str) -> list[dict[str, str]]:
        return [as_map(f) if f else {} for f in self.raw("get", *ids)]

    # Reading state directly.

    def record(self, job_id: str) -> dict[str, Any] | None:
        """The job's record exactly as stored, or None."""
        blob = self.r.hget(self.key("jobs"), job_id)
        return None if blob is None else msgpack.unpackb(blob)

    def exists(self, job_id: str) -> bool:
        return bool(self.r.hexists(self.key("jobs"), job_id))

    def job(self, job_id: str) -> dict[str, str]:
        """The job's record read as as_map reads it; {} when there is none."""
        blob = self.r.hget(self.key("jobs"), job_id)
        assert not isinstance(blob, str)  # a client without decode_responses
        return {} if blob is None else as_map(blob)

    def set_fields(self, job_id: str, **changes: Any) -> None:
        """Change a stored record by hand (to set up a state)."""
        record = self.record(job_id)
        assert record is not None
        self.r.hset(self.key("jobs"), job_id, msgpack.packb({**record, **changes}))

    def zset(self, *parts: str) -> list[tuple[str, float]]:
        entries: list[tuple[str, float]] = text(self.r.zrange(self.key(*parts), 0, -1, withscores=True))
        return entries

    def members(self, *parts: str) -> list[str]:
        return [m for m, _ in self.zset(*parts)]

    def unique(self, key: str) -> list[str]:
        """The jobs holding the unique key (unique:<key>), by score then id."""
        return self.members("unique", key)

    def llen(self, *parts: str) -> int:
        return int(self.r.llen(self.key(*parts)))

    def errors(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(e) for e in self.r.lrange(self.key("errors", job_id), 0, -1)]

    def config(self, **values: Value) -> None:
        for name, value in values.items():
            self.r.hset(self.key("config"), name, value)

    def keys(self) -> set[str]:
        """Every key of the namespace, without the prefix."""
        found = text(list(self.r.scan_iter(match=self.prefix + "*", count=1000)))
        return {k[len(self.prefix) :] for k in found}

    def snapshot(self) -> dict[str, bytes]:
        """Every key of the namespace with its serialized value."""
        out: dict[str, bytes] = {}
        for name in self.keys():
            dumped = self.r.dump(self.prefix + name)
            assert isinstance(dumped, bytes)
            out[name] = dumped
        return out

    def now(self) -> int:
        seconds, micros = text(self.r.time())
        return int(seconds) * 1000 + int(micros) // 1000

    def in_flight(self, *jobs: list[Value], worker: str = "w") -> list[str]:
        """Enqueue ready jobs and take them all for ``worker``."""
        self.enqueue(*jobs)
        queues = sorted({str(j[2]) for j in jobs})
        taken = self.take(worker, len(jobs), *queues)
        assert len(taken.jobs) == len(jobs)
        return taken.ids


@pytest.fixture
def lua(r: redis.Redis, namespace: str) -> Iterator[Lua]:
    for name in NAMES:
        assert r.script_load(script(name).source) == script(name).sha
    yield Lua(r, namespace)


# Keys a namespace keeps once every job is gone: settings, the queue registry, wake lists.
BOOKKEEPING = {"beat_at", "config", "paused", "queues", "wake", "workers"}


def leftover(lua: Lua) -> set[str]:
    return {k for k in lua.keys() if k not in BOOKKEEPING and not k.startswith(("wake:", "done:", "tally:"))}


# ---------------------------------------------------------------- enqueue


def test_enqueue_ready_job(lua: Lua) -> None:
    before = lua.now()
    [(flag, job_id, fields)] = lua.enqueue(job("j1", priority=7))
    after = lua.now()
    assert (flag, job_id) == (0, "j1")
    assert fields["s"] == "ready"
    assert before <= int(fields["r"]) <= after
    assert lua.job("j1") == {
        "t": "t",
        "q": "q",
        "p": "7",
        "s": "ready",
        "r": fields["r"],
        "a": "0",
        "d": '{"n":1}',
    }
    assert lua.zset("ready", "q") == [("j1", 7.0)]
    assert lua.members("scheduled") == []
    assert lua.r.smembers(lua.key("queues")) == {b"q"}
    # Stored compact: the status as a number, 0 attempts left out.
    assert lua.record("j1") == {"t": "t", "q": "q", "p": 7, "s": 1, "r": int(fields["r"]), "d": '{"n":1}'}


def test_enqueue_reply_is_now_then_flag_id_and_value_per_job(lua: Lua) -> None:
    lua.enqueue(job("old"))
    before = lua.now()
    now, *flat = lua.raw("enqueue", *packed(job("new"), job("later", delay=60_000), job("old")))
    after = lua.now()
    assert before <= now <= after
    assert flat[0:3] == [0, b"new", now]
    assert flat[3:6] == [0, b"later", now + 60_000]
    assert flat[6:9] == [2, b"old", lua.r.hget(lua.key("jobs"), "old")]  # its record


def test_enqueue_leaves_default_queue_priority_and_attempts_out_of_the_record(lua: Lua) -> None:
    lua.enqueue(job("j1", queue="default", priority=32768))
    record = lua.record("j1")
    assert record is not None and set(record) == {"t", "s", "r", "d"}
    assert lua.get("j1")[0] == {**lua.job("j1"), "q": "default", "p": "32768", "a": "0"}


def test_every_stored_field_is_read_into_its_job_field() -> None:
    from zizq._protocol.records import job_from_record
    from zizq.job import Backoff, Retention

    short = {"t": "kind", "q": "q1", "p": 7, "s": 3, "r": 11, "a": 2, "rl": 5, "bo": "100 2 50", "rc": 12}
    short |= {"rd": 13, "uk": "key", "uw": "active", "da": 14, "fa": 15, "ca": 16, "pa": 17, "to": 18}
    short |= {"rv": 4, "d": "[1]", "tc": "{}", "rs": "9", "pg": "0.5", "pm": "half", "cx": 19, "dl": "a b", "bt": "b1"}
    job = job_from_record(b"id1", msgpack.packb(short), duplicate=True)
    assert (job.id, job.type, job.queue, job.priority, job.status) == ("id1", "kind", "q1", 7, "in_flight")
    assert job.ready_at == 11
    assert (job.attempts, job.retry_limit, job.backoff) == (2, 5, Backoff.decode("100 2 50"))
    assert job.retention == Retention(completed_ms=12, dead_ms=13)
    assert (job.unique_key, job.unique_while) == ("key", "active")
    assert (job.dequeued_at, job.failed_at, job.completed_at, job.purge_at, job.timeout_ms) == (14, 15, 16, 17, 18)
    assert (job.recoveries, job.duplicate, job.payload_json, job.trace_context, job.result_json) == (
        4,
        True,
        b"[1]",
        "{}",
        b"9",
    )
    assert (job.progress, job.progress_message, job.cancelled_at, job.last_error) == (0.5, "half", 19, None)
    assert (job.depends_on, job.batch_id) == (("a", "b"), "b1")


def test_enqueue_stores_optional_fields_only_when_given(lua: Lua) -> None:
    lua.enqueue(
        job(
            "full",
            retry_limit=3,
            backoff="100 2 50",
            completed_ms=1000,
            dead_ms=2000,
            unique_key="k",
            unique_while="active",
        ),
        job("bare"),
    )
    full = lua.job("full")
    assert {k: full[k] for k in ("rl", "bo", "rc", "rd", "uk", "uw")} == {
        "rl": "3",
        "bo": "100 2 50",
        "rc": "1000",
        "rd": "2000",
        "uk": "k",
        "uw": "active",
    }
    assert set(lua.job("bare")) == {"t", "q", "p", "s", "r", "a", "d"}
    assert lua.zset("unique", "k") == [("full", 0.0)]


def test_enqueue_with_delay_is_scheduled(lua: Lua) -> None:
    before = lua.now()
    [(flag, _, fields)] = lua.enqueue(job("j1", delay=60_000))
    after = lua.now()
    assert flag == 0
    assert fields["s"] == "scheduled"
    ready_at = int(fields["r"])
    assert before + 60_000 <= ready_at <= after + 60_000
    assert lua.zset("scheduled") == [("j1", float(ready_at))]
    assert lua.members("ready", "q") == []
    assert lua.job("j1")["s"] == "scheduled"


def test_enqueue_ready_at_decides_the_status(lua: Lua) -> None:
    now = lua.now()
    result = lua.enqueue(job("future", ready_at=now + 60_000), job("past", ready_at=now - 5_000))
    assert [(f["s"], int(f["r"])) for _, _, f in result] == [("scheduled", now + 60_000), ("ready", now - 5_000)]
    # A past ready_at is stored as given, and the job is ready at once.
    assert lua.job("past")["r"] == str(now - 5_000)
    assert lua.members("ready", "q") == ["past"]
    assert lua.members("scheduled") == ["future"]


def test_enqueue_ready_at_wins_over_delay(lua: Lua) -> None:
    now = lua.now()
    [(_, _, fields)] = lua.enqueue(job("j1", ready_at=now + 90_000, delay=1))
    assert int(fields["r"]) == now + 90_000


def test_enqueue_batch_answers_in_input_order(lua: Lua) -> None:
    result = lua.enqueue(job("c"), job("a", delay=10_000), job("b"))
    assert [(flag, job_id, f["s"]) for flag, job_id, f in result] == [
        (0, "c", "ready"),
        (0, "a", "scheduled"),
        (0, "b", "ready"),
    ]


def test_enqueue_retried_with_the_same_id_creates_nothing(lua: Lua) -> None:
    lua.enqueue(job("j1", unique_key="k"))
    before = lua.snapshot()
    [(flag, job_id, fields)] = lua.enqueue(job("j1", payload='"other"', queue="elsewhere", unique_key="k2"))
    assert (flag, job_id) == (2, "j1")
    assert fields == lua.job("j1")
    assert fields["d"] == '{"n":1}'
    assert lua.snapshot() == before


def test_enqueue_retried_batch_creates_only_what_is_new(lua: Lua) -> None:
    lua.enqueue(job("a"))
    result = lua.enqueue(job("a"), job("b"))
    assert [(flag, job_id) for flag, job_id, _ in result] == [(2, "a"), (0, "b")]
    assert lua.members("ready", "q") == ["a", "b"]


@pytest.mark.parametrize(
    "skew_ms", [0, 2_000, -90_000, None], ids=["same clock", "2 s ahead", "90 s behind", "no time in id"]
)
def test_enqueue_repeated_after_the_job_was_done_creates_nothing(lua: Lua, skew_ms: int | None) -> None:
    """The done record goes by Redis's clock, so a producer's skewed clock
    (the time inside its ids) cannot make a repeat create the job again."""
    job_id = "plain-id" if skew_ms is None else encode_id(lua.now() + skew_ms, 1, 2, 3)
    row = job(job_id, completed_ms=0)
    lua.enqueue(row)
    assert lua.take("w", 1).ids == [job_id]
    assert lua.ack("w", job_id) == []  # done, and deleted (retention 0)
    before = lua.snapshot()
    now, flag, got, x = lua.raw("enqueue", *packed(row), 1)  # the reply of the first call was lost
    assert (flag, got.decode()) == (3, job_id)
    assert abs(x - (now if skew_ms is None else now + skew_ms)) < 1_000  # the time in the id
    assert lua.snapshot() == before


def test_enqueue_first_call_does_not_look_for_done_jobs(lua: Lua) -> None:
    """Only a repeated call looks at done:<n>: a first call's ids are new."""
    lua.enqueue(job("j1", completed_ms=0))
    lua.take("w", 1)
    lua.ack("w", "j1")
    [(flag, _, _)] = lua.enqueue(job("j1"))
    assert flag == 0


def test_enqueue_third_argument_may_only_mark_a_repeat(lua: Lua) -> None:
    with pytest.raises(redis.ResponseError, match=r"a third may only be 1"):
        lua.run("enqueue", *packed(job("j1")), "yes")
    assert lua.keys() == set()


def test_enqueue_zero_jobs(lua: Lua) -> None:
    assert lua.enqueue() == []
    assert lua.keys() == set()


# ---------------------------------------------------------------- unique keys


def test_unique_duplicate_returns_the_live_job(lua: Lua) -> None:
    lua.enqueue(job("first", unique_key="k"))
    before = lua.snapshot()
    [(flag, job_id, fields)] = lua.enqueue(job("second", unique_key="k"))
    assert (flag, job_id) == (1, "first")
    assert fields == lua.job("first")  # the whole job, payload included
    assert lua.snapshot() == before
    assert not lua.exists("second")


def test_an_id_repeated_after_a_unique_duplicate_is_not_taken_for_a_created_job(lua: Lua) -> None:
    # The first "x" is a duplicate of "holder", so nothing was made under
    # the id "x": its repeat is judged on its own (a duplicate again here),
    # never reported as an existing job without a record.
    lua.enqueue(job("holder", unique_key="k"))
    result = lua.enqueue(job("x", unique_key="k"), job("x", unique_key="k"), job("y"))
    assert [(flag, job_id) for flag, job_id, _ in result] == [(1, "holder"), (1, "holder"), (0, "y")]
    assert all(fields for _, _, fields in result)
    assert not lua.exists("x")


def test_unique_duplicates_in_one_batch_resolve_to_the_first(lua: Lua) -> None:
    result = lua.enqueue(
        job("a", unique_key="k"),
        job("b", unique_key="k"),
        job("c", unique_key="other"),
        job("d", unique_key="k"),
    )
    assert [(flag, job_id) for flag, job_id, _ in result] == [(0, "a"), (1, "a"), (0, "c"), (1, "a")]
    # The duplicate's fields are read after the batch wrote its first job.
    assert result[1][2] == lua.job("a")
    assert lua.members("ready", "q") == ["a", "c"]
    assert lua.unique("k") == ["a"]


def test_unique_stale_entry_does_not_block(lua: Lua) -> None:
    lua.r.zadd(lua.key("unique", "k"), {"ghost": 0})
    [(flag, job_id, _)] = lua.enqueue(job("j1", unique_key="k"))
    assert (flag, job_id) == (0, "j1")
    assert lua.unique("k") == ["ghost", "j1"]


def test_unique_expired_holder_does_not_block(lua: Lua) -> None:
    lua.enqueue(job("old", unique_key="k"))
    lua.set_fields("old", pa=lua.now() - 1)
    [(flag, job_id, _)] = lua.enqueue(job("new", unique_key="k"))
    assert (flag, job_id) == (0, "new")
    assert lua.unique("k") == ["new", "old"]


# reference §3.1: scope -> the statuses of the holder that make a duplicate.
CONFLICT = {
    "queued": {"scheduled", "ready"},
    "active": {"scheduled", "ready", "in_flight"},
    "exists": {"scheduled", "ready", "in_flight", "completed", "dead"},
}
# The index holds the holder exactly while the holder's own scope would conflict:
# released on take for queued, on completion or death for active, never for exists.
INDEXED = CONFLICT
# Its score: 0 waiting, 1 in flight, purge_at once finished.
SCORE = {"scheduled": 0, "ready": 0, "in_flight": 1}


def put_holder_in(lua: Lua, state: str, scope: str) -> None:
    """Make job "holder" with unique key "k" and bring it to ``state``."""
    delay: Value = 60_000 if state == "scheduled" else ""
    lua.enqueue(job("holder", unique_key="k", unique_while=scope, delay=delay, completed_ms=60_000))
    if state in ("in_flight", "completed", "dead"):
        assert lua.take("w", 1, "q").ids == ["holder"]
    if state == "completed":
        assert lua.ack("w", "holder") == []
    if state == "dead":
        dead = lua.fail("w", "holder", kill=True)
        assert dead is not None and dead["s"] == "dead"
    assert lua.job("holder")["s"] == state


@pytest.mark.parametrize("state", ["scheduled", "ready", "in_flight", "completed", "dead"])
@pytest.mark.parametrize("holder_scope", ["queued", "active", "exists"])
@pytest.mark.parametrize("new_scope", ["queued", "active", "exists"])
def test_unique_scopes(lua: Lua, state: str, holder_scope: str, new_scope: str) -> None:
    put_holder_in(lua, state, holder_scope)
    held = state in INDEXED[holder_scope]
    score = SCORE[state] if state in SCORE else float(lua.job("holder")["pa"])
    assert lua.zset("unique", "k") == ([("holder", score)] if held else [])
    duplicate = held and state in CONFLICT[new_scope]
    [(flag, job_id, _)] = lua.enqueue(job("new", unique_key="k", unique_while=new_scope))
    if duplicate:
        assert (flag, job_id) == (1, "holder")
        assert lua.unique("k") == ["holder"]
        assert not lua.exists("new")
    else:
        assert (flag, job_id) == (0, "new")
        # A holder that does not conflict keeps its hold beside the new job.
        assert set(lua.unique("k")) == ({"holder", "new"} if held else {"new"})


def test_unique_key_without_scope_is_queued(lua: Lua) -> None:
    lua.enqueue(job("a", unique_key="k"))
    lua.take("w", 1, "q")
    assert lua.unique("k") == []
    [(flag, _, _)] = lua.enqueue(job("b", unique_key="k"))
    assert flag == 0


# ---------------------------------------------------------------- invalid input


BAD_JOBS: dict[str, dict[str, Any]] = {
    "negative priority": {"priority": -1},
    "priority too big": {"priority": 65536},
    "fractional priority": {"priority": "1.5"},
    "text priority": {"priority": "high"},
    "empty priority": {"priority": ""},
    "empty type": {"job_type": ""},
    "empty queue": {"queue": ""},
    "empty id": {"job_id": ""},
    "unique_while without key": {"unique_while": "active"},
    "unknown unique_while": {"unique_key": "k", "unique_while": "forever"},
}


@pytest.mark.parametrize("position", [0, 1])
@pytest.mark.parametrize("bad", list(BAD_JOBS.values()), ids=list(BAD_JOBS))
def test_enqueue_invalid_job_writes_nothing(lua: Lua, bad: dict[str, Any], position: int) -> None:
    lua.enqueue(job("existing", unique_key="u"))
    before = lua.snapshot()
    fields: dict[str, Any] = {"job_id": "bad"} | bad
    bad_job = job(fields.pop("job_id"), **fields)
    # A valid new job and one on a new queue, so any partial write would show.
    batch = [job("good", queue="fresh", unique_key="v")]
    batch.insert(position, bad_job)
    with pytest.raises(redis.ResponseError) as err:
        lua.enqueue(*batch)
    assert str(err.value).startswith("ZIZQ INVALID ")
    assert f"job {position}" in str(err.value)
    assert lua.snapshot() == before


@pytest.mark.parametrize(
    "args",
    [
        [2, msgpack.packb([job("j1")], use_bin_type=False)],
        [0, msgpack.packb([job("j1")], use_bin_type=False)],
        ["x", msgpack.packb([job("j1")], use_bin_type=False)],
        [1, b"\xc1 not msgpack"],
        [1, msgpack.packb({"a": 1})],
        [1],
        [1, *job("j1")],
    ],
    ids=["count too high", "count too low", "count not a number", "not msgpack", "a map", "no jobs", "flat values"],
)
def test_enqueue_arguments_must_be_a_count_and_a_batch(lua: Lua, args: list[Value]) -> None:
    with pytest.raises(redis.ResponseError, match=r"^ZIZQ INVALID the arguments are not N and a MessagePack array"):
        lua.run("enqueue", *args)
    assert lua.keys() == set()


@pytest.mark.parametrize(
    "row",
    [
        text_row(job("j1"))[:13],
        [*text_row(job("j1")), ""],
        [*text_row(job("j1")), "", "", "", "", ""],
        [*text_row(job("j1"))[:3], 7, *text_row(job("j1"))[4:]],
        [*text_row(job("j1")), "", "", "", 7],
        "j1",
    ],
    ids=["13 values", "15 values", "19 values", "a number", "a number as trace context", "not an array"],
)
def test_enqueue_job_must_be_14_strings(lua: Lua, row: Any) -> None:
    with pytest.raises(redis.ResponseError, match=r"^ZIZQ INVALID job 0"):
        lua.run("enqueue", 1, msgpack.packb([row], use_bin_type=False))
    assert lua.keys() == set()


def test_enqueue_stores_an_18th_value_as_the_trace_context(lua: Lua) -> None:
    context = '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
    rows = [[*text_row(job("j1")), "", "", "", context], [*text_row(job("j2")), "", "", "", ""]]
    lua.run("enqueue", 2, msgpack.packb(rows, use_bin_type=False))
    assert (lua.record("j1") or {})["tc"] == context
    assert "tc" not in (lua.record("j2") or {})  # '' stores nothing, as 14 values do
    assert not {"lm", "lk", "gk"} & set(lua.record("j1") or {})  # the limit's three, all ''
    taken = lua.take("w", 2, "q")
    assert sorted(taken.ids) == ["j1", "j2"] and (lua.record("j1") or {})["tc"] == context  # never changes


def test_enqueue_short_rows_repeat_the_longer_row_before_them(lua: Lua) -> None:
    context = '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}'
    first = text_row(job("a", priority=7, delay=60_000, retry_limit=3, backoff="100 2 50", timeout_ms=500))
    grouped = [*text_row(job("c", queue="q2")), "", "", "g", context]
    rows = [first, ["b", '"b"'], grouped, ["d", '"d"'], ["e", '"e"']]
    now, *flat = lua.raw("enqueue", len(rows), msgpack.packb(rows, use_bin_type=False))
    assert flat[0::3] == [0] * 5 and text(flat[1::3]) == ["a", "b", "c", "d", "e"]
    assert flat[2::3] == [now + 60_000] * 2 + [now] * 3
    a, b = lua.record("a"), lua.record("b")
    assert a is not None and b == {**a, "d": '"b"'}  # every value but the id and payload from row a
    c, d, e = lua.record("c"), lua.record("d"), lua.record("e")
    assert c is not None and c["tc"] == context and c["gk"] == "g"
    assert d == {**c, "d": '"d"', "gt": c["gt"] + 1} and e == {**c, "d": '"e"', "gt": c["gt"] + 2}  # turns each
    assert lua.members("scheduled") == ["a", "b"] and lua.members("ready", "q2") == ["c", "d", "e"]
    assert lua.members("ready", "q") == []


@pytest.mark.parametrize("size", [0, 31, 32, 255, 256, 65_535, 65_536])
def test_enqueue_short_row_record_holds_its_payload_whole(lua: Lua, size: int) -> None:
    """A short row's record is put together from bytes, with the payload's
    MessagePack str header made in Lua: each of its four forms."""
    payload = "x" * size
    rows = [text_row(job("a")), ["b", payload]]
    lua.run("enqueue", 2, msgpack.packb(rows, use_bin_type=False))
    blob = lua.r.hget(lua.key("jobs"), "b")
    packed_by_redis = lua.r.eval("return cmsgpack.pack(ARGV[1])", 0, payload)
    assert isinstance(blob, bytes) and blob.endswith(b"\xa1d" + packed_by_redis)  # the key d, then as cmsgpack packs it
    assert lua.record("b") == {**(lua.record("a") or {}), "d": payload}


def test_enqueue_short_row_with_the_unique_key_before_it_is_a_duplicate(lua: Lua) -> None:
    rows = [text_row(job("a", unique_key="k")), ["b", "{}"]]
    _, *flat = lua.raw("enqueue", 2, msgpack.packb(rows, use_bin_type=False))
    assert flat[:2] == [0, b"a"] and flat[3:5] == [1, b"a"]
    assert not lua.exists("b") and lua.unique("k") == ["a"]


@pytest.mark.parametrize(
    ("rows", "error"),
    [
        ([["a", "{}"]], "job 0 is not an array of 14, 17 or 18 values"),
        ([job("a"), ["b", 7]], "job 1: value 2 is not a string"),
        ([job("a"), ["b", "{}", ""]], "job 1 is not an array"),
        ([job("a"), ["", "{}"]], "job 1: the id is empty"),
    ],
    ids=["first", "a number", "3 values", "empty id"],
)
def test_enqueue_short_row_only_after_a_longer_one(lua: Lua, rows: list[Any], error: str) -> None:
    packed_rows = msgpack.packb([text_row(r) if len(r) > 3 else r for r in rows], use_bin_type=False)
    with pytest.raises(redis.ResponseError, match=f"^ZIZQ INVALID {error}"):
        lua.run("enqueue", len(rows), packed_rows)
    assert lua.keys() == set()


@pytest.mark.parametrize(
    "bad", [{"ready_at": "soon"}, {"delay": "later"}, {"backoff": "1000 2"}], ids=["ready_at", "delay", "backoff"]
)
def test_enqueue_malformed_numbers_are_invalid(lua: Lua, bad: dict[str, Any]) -> None:
    before = lua.snapshot()
    with pytest.raises(redis.ResponseError, match=r"^ZIZQ INVALID "):
        lua.enqueue(job("good"), job("bad", **bad))
    assert lua.snapshot() == before


def test_enqueue_same_id_twice_in_one_batch_is_created_once(lua: Lua) -> None:
    result = lua.enqueue(job("a", unique_key="k1"), job("a", unique_key="k2"))
    assert [flag for flag, _, _ in result] == [0, 2]
    assert lua.job("a")["uk"] == "k1"
    assert lua.unique("k2") == []


# ---------------------------------------------------------------- wake lists


def test_enqueue_wakes_once_per_queue_and_on_a_new_queue(lua: Lua) -> None:
    lua.enqueue(job("a"), job("b"), job("c"))
    assert lua.llen("wake", "q") == 1
    assert lua.llen("wake") == 1
    lua.enqueue(job("d"))
    assert lua.llen("wake", "q") == 1
    assert lua.llen("wake") == 1

    lua.r.delete(lua.key("wake"))
    lua.enqueue(job("e"))  # a known queue
    assert lua.llen("wake") == 0
    lua.enqueue(job("f", queue="q2"))  # a new one
    assert lua.llen("wake") == 1
    assert lua.llen("wake", "q2") == 1


def test_enqueue_scheduled_wakes_only_when_it_becomes_the_earliest(lua: Lua) -> None:
    lua.enqueue(job("a", delay=60_000))
    assert lua.llen("wake", "q") == 1
    lua.r.delete(lua.key("wake", "q"))
    lua.enqueue(job("later", delay=120_000))
    assert lua.llen("wake", "q") == 0
    lua.enqueue(job("sooner", delay=30_000))
    assert lua.llen("wake", "q") == 1


def test_take_passes_the_wake_token_on_while_work_remains(lua: Lua) -> None:
    lua.enqueue(job("a"), job("b"), job("c"))
    lua.r.delete(lua.key("wake", "q"))  # an idle worker popped it
    assert lua.take("w", 1, "q").more == 1
    assert lua.llen("wake", "q") == 1
    lua.r.delete(lua.key("wake", "q"))
    taken = lua.take("w", 5, "q")
    assert (taken.ids, taken.more) == (["b", "c"], 0)
    assert lua.llen("wake", "q") == 0


# ---------------------------------------------------------------- take


@pytest.mark.parametrize("queues", [["q"], ["q", "empty"], []], ids=["one queue", "two queues", "every queue"])
def test_take_is_fifo_within_a_priority(lua: Lua, queues: list[str]) -> None:
    # Enqueued out of id order: the id, not the arrival, decides.
    lua.enqueue(job("j3"), job("j1"), job("j2"), job("j0", priority=40000))
    lua.enqueue(job("x", queue="empty"))
    lua.take("other", 1, "empty")
    assert lua.take("w", 10, *queues).ids == ["j1", "j2", "j3", "j0"]


def test_take_orders_by_priority_then_id_across_queues(lua: Lua) -> None:
    lua.enqueue(
        job("j01", queue="q1", priority=5),
        job("j04", queue="q1", priority=1),
        job("j02", queue="q2", priority=5),
        job("j05", queue="q2", priority=1),
        job("j03", queue="q3", priority=0),
        job("j06", queue="q3", priority=5),
    )
    first = lua.take("w", 4, "q1", "q2", "q3")
    assert first.ids == ["j03", "j04", "j05", "j01"]
    assert first.more == 1
    rest = lua.take("w", 10, "q1", "q2", "q3")
    assert rest.ids == ["j02", "j06"]
    assert rest.more == 0


def test_take_across_more_queues_than_it_takes_finds_the_smallest(lua: Lua) -> None:
    # The N smallest may all sit in one queue, behind heads that tie on
    # priority with other queues' heads: the id decides.
    lua.enqueue(
        job("a1", queue="q1", priority=1),
        job("a2", queue="q1", priority=1),
        job("a3", queue="q1", priority=1),
        job("b0", queue="q2", priority=2),
        job("a0", queue="q3", priority=1),
        job("c0", queue="q4", priority=0),
        job("d9", queue="q5", priority=1),
    )
    queues = ("q1", "q2", "q3", "q4", "q5")
    assert lua.take("w", 3, *queues).ids == ["c0", "a0", "a1"]
    assert lua.take("w", 2, *queues).ids == ["a2", "a3"]
    assert lua.take("w", 5, *queues).ids == ["d9", "b0"]


@pytest.mark.parametrize("named", [True, False], ids=["queues named", "every queue"])
def test_take_across_queues_follows_priority_then_id_whatever_the_count(lua: Lua, named: bool) -> None:
    # Takes of random sizes over queues of random jobs: together they give
    # every job once, in (priority, id) order, as one sort of them all would.
    rng = random.Random(14)
    queues = [f"q{i}" for i in range(7)]
    jobs = [(f"j{i:03d}", rng.choice(queues), rng.choice([0, 1, 5, 32768])) for i in range(80)]
    rng.shuffle(jobs)
    lua.enqueue(*(job(i, queue=q, priority=p) for i, q, p in jobs))
    got: list[str] = []
    while len(got) < len(jobs):
        taken = lua.take("w", rng.randint(1, 12), *(queues if named else ()))
        assert taken.ids, f"a take found nothing with {len(jobs) - len(got)} jobs ready"
        got += taken.ids
    assert got == [i for _, i in sorted((p, i) for i, _, p in jobs)]


def test_take_limit_and_more(lua: Lua) -> None:
    lua.enqueue(*(job(f"j{i}") for i in range(5)))
    two = lua.take("w", 2, "q")
    assert (two.ids, two.more) == (["j0", "j1"], 1)
    none = lua.take("w", 0, "q")
    assert (none.ids, none.more) == ([], 1)
    rest = lua.take("w", 10, "q")
    assert (rest.ids, rest.more) == (["j2", "j3", "j4"], 0)
    empty = lua.take("w", 10, "q")
    assert (empty.ids, empty.more) == ([], 0)


def test_take_puts_jobs_in_flight(lua: Lua) -> None:
    lua.enqueue(job("j1", unique_key="k", unique_while="active"))
    before = lua.now()
    taken = lua.take("w1", 1, "q")
    assert before <= taken.now <= lua.now()
    [(job_id, fields)] = taken.jobs
    assert job_id == "j1"
    assert fields == lua.job("j1")
    assert fields["s"] == "in_flight"
    assert fields["da"] == str(taken.now)
    assert fields["w"] == "w1"
    assert fields["d"] == '{"n":1}'
    assert lua.zset("inflight") == [("j1", float(taken.now))]
    assert lua.r.smembers(lua.key("worker", "w1")) == {b"j1"}
    assert lua.members("ready", "q") == []


def test_take_reports_next_due(lua: Lua) -> None:
    assert lua.take("w", 1).next_due == -1
    [(_, _, late)] = lua.enqueue(job("late", delay=60_000))
    [(_, _, soon)] = lua.enqueue(job("soon", delay=30_000))
    taken = lua.take("w", 1, "q")
    assert taken.ids == []
    assert taken.next_due == int(soon["r"]) < int(late["r"])


def calls(lua: Lua) -> dict[str, int]:
    """The commands the scripts ran since the last CONFIG RESETSTAT, by name."""
    stats = lua.r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()}


def test_take_with_nothing_due_reads_the_scheduled_head_once(lua: Lua) -> None:
    [(_, _, later)] = lua.enqueue(job("later", delay=60_000))
    lua.enqueue(job("a"), job("b"))
    lua.run("heartbeat", "w", "join", 60_000, 0, 0)
    lua.r.config_resetstat()
    reply = lua.raw("take", "w", 5, 5, "q")
    assert reply[1:3] == [int(later["r"]), 0] and reply[3::2] == [b"a", b"b"]
    counted = calls(lua)
    # The head of "scheduled" is not due, so nothing is: no range query, and
    # the same read gives next_due (one ZRANGE; the other reads the queue).
    # The queue was read to its end (2 of 5): no ZCARD.
    assert counted["zrange"] == 2 and "zrangebyscore" not in counted and "zcard" not in counted


def test_take_that_empties_its_queue_still_reports_a_suspect_held_back(lua: Lua) -> None:
    lua.enqueue(job("j0"), job("j1"))
    record = lua.record("j1") or {}
    lua.r.hset(lua.key("jobs"), "j1", msgpack.packb({**record, "sx": 1}))
    lua.r.delete(lua.key("wake", "q"))
    taken = lua.take("w", 5, "q", start=1)
    assert (taken.ids, taken.more) == (["j0"], 2)
    assert lua.r.zrange(lua.key("ready", "q"), 0, -1) == [b"j1"]
    assert lua.llen("wake", "q") == 1  # the wake-up is passed on for j1


def test_take_promotes_due_scheduled_jobs(lua: Lua) -> None:
    [(_, _, fields)] = lua.enqueue(job("j1", delay=50))
    ready_at = int(fields["r"])
    first = lua.take("w", 1, "q")
    if first.now < ready_at:
        assert first.ids == []
        assert first.next_due == ready_at
    taken = first if first.ids else lua.take_until("w", 1, "q")
    assert taken.ids == ["j1"]
    assert taken.now >= ready_at
    assert taken.next_due == -1
    # Promotion does not rewrite ready_at.
    assert lua.job("j1")["r"] == str(ready_at)
    assert lua.members("scheduled") == []


def test_take_promotes_jobs_of_every_queue(lua: Lua) -> None:
    [(_, _, fields)] = lua.enqueue(job("j1", queue="other", delay=30))
    deadline = time.monotonic() + 5
    while lua.r.zscore(lua.key("ready", "other"), "j1") is None:
        assert time.monotonic() < deadline, "j1 was never promoted"
        assert lua.take("w", 1, "q").ids == []
        time.sleep(0.005)
    assert lua.job("j1")["s"] == "ready"
    assert lua.job("j1")["r"] == fields["r"]
    assert lua.zset("ready", "other") == [("j1", 32768.0)]
    assert lua.members("scheduled") == []
    assert lua.llen("wake", "other") == 1


def test_take_drops_scheduled_entries_of_deleted_jobs(lua: Lua) -> None:
    lua.r.zadd(lua.key("scheduled"), {"ghost": 1})
    taken = lua.take("w", 1, "q")
    assert taken.ids == []
    assert lua.members("scheduled") == []
    assert lua.members("ready", "q") == []


def test_take_without_queues_serves_every_known_queue(lua: Lua) -> None:
    lua.enqueue(job("a", queue="q1"), job("b", queue="q2", priority=1), job("c", queue="q3", delay=60_000))
    taken = lua.take("w", 10)
    assert taken.ids == ["b", "a"]
    assert taken.more == 0


def test_take_skips_paused_queues(lua: Lua) -> None:
    lua.enqueue(job("a", queue="q1", priority=0), job("b", queue="q2"), job("c", queue="q2"))
    lua.r.sadd(lua.key("paused"), "q1")
    assert lua.take("w", 1, "q1").ids == []
    named = lua.take("w", 1, "q1", "q2")
    assert (named.ids, named.more) == (["b"], 1)
    every = lua.take("w", 5)
    assert (every.ids, every.more) == (["c"], 0)  # q1's job does not count as "more"
    assert lua.members("ready", "q1") == ["a"]
    lua.r.srem(lua.key("paused"), "q1")
    assert lua.take("w", 5).ids == ["a"]


def test_take_with_a_queue_named_twice_delivers_each_job_once(lua: Lua) -> None:
    lua.enqueue(job("a"), job("b"))
    assert lua.take("w", 2, "q", "q").ids == ["a", "b"]


@pytest.mark.parametrize(("scope", "kept"), [("queued", False), ("active", True), ("exists", True)])
def test_take_releases_the_unique_key_only_for_queued(lua: Lua, scope: str, kept: bool) -> None:
    lua.enqueue(job("j1", unique_key="k", unique_while=scope))
    lua.take("w", 1, "q")
    assert lua.zset("unique", "k") == ([("j1", 1.0)] if kept else [])


def test_take_keeps_a_key_that_another_job_holds(lua: Lua) -> None:
    lua.enqueue(job("j1", unique_key="k"))
    lua.r.zadd(lua.key("unique", "k"), {"someone-else": 0})
    lua.take("w", 1, "q")
    assert lua.unique("k") == ["someone-else"]


# ---------------------------------------------------------------- ack


def test_ack_with_no_retention_deletes_everything(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", unique_key="k", unique_while="exists"))
    # One failed attempt first, so there is an error history to delete.
    assert lua.fail("w", job_id, retry_in=0) is not None
    assert lua.take_until("w", 1, "q").ids == [job_id]
    assert lua.ack("w", job_id) == []
    assert leftover(lua) == set()
    assert lua.get(job_id) == [{}]


def test_ack_of_several_jobs_remembers_each_as_done(lua: Lua) -> None:
    # Deleted together (one HDEL, one done-bucket HSET): each id is in the
    # done window, and a repeated enqueue of any of them creates nothing.
    rows = [job(f"j{i}", completed_ms=0) for i in range(3)]
    ids = lua.in_flight(*rows, job("kept", completed_ms=60_000))
    assert lua.ack("w", *ids) == []
    assert lua.get("j0", "j1", "j2") == [{}, {}, {}]
    assert lua.job("kept")["s"] == "completed"
    before = lua.snapshot()
    reply = lua.raw("enqueue", *packed(*rows), 1)  # the reply of the first call was lost
    assert [(flag, got.decode()) for flag, got in zip(reply[1::3], reply[2::3], strict=True)] == [
        (3, "j0"),
        (3, "j1"),
        (3, "j2"),
    ]
    assert lua.snapshot() == before


def test_ack_keeps_the_job_for_its_own_retention(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", completed_ms=60_000))
    before = lua.now()
    assert lua.ack("w", job_id) == []
    after = lua.now()
    fields = lua.job(job_id)
    assert fields["s"] == "completed"
    completed_at = int(fields["ca"])
    assert before <= completed_at <= after
    assert int(fields["pa"]) == completed_at + 60_000
    assert "w" not in fields
    assert lua.zset("completed") == [(job_id, float(fields["pa"]))]
    assert lua.members("inflight") == []
    assert lua.r.exists(lua.key("worker", "w")) == 0
    assert lua.get(job_id) == [fields]


def test_ack_uses_the_namespace_retention(lua: Lua) -> None:
    lua.config(completed_ms=30_000)
    lua.in_flight(job("kept"), job("dropped", completed_ms=0))
    assert lua.ack("w", "kept", "dropped") == []
    fields = lua.job("kept")
    assert int(fields["pa"]) == int(fields["ca"]) + 30_000
    # The job's own retention of 0 wins over the namespace's.
    assert not lua.exists("dropped")
    assert lua.members("completed") == ["kept"]


@pytest.mark.parametrize(("scope", "kept"), [("active", False), ("exists", True)])
def test_ack_releases_the_unique_key_unless_exists(lua: Lua, scope: str, kept: bool) -> None:
    [job_id] = lua.in_flight(job("j1", unique_key="k", unique_while=scope, completed_ms=60_000))
    lua.ack("w", job_id)
    assert lua.zset("unique", "k") == ([(job_id, float(lua.job(job_id)["pa"]))] if kept else [])


def test_ack_twice_or_by_another_worker_misses(lua: Lua) -> None:
    [a, b] = lua.in_flight(job("a"), job("b", completed_ms=60_000))
    before = lua.snapshot()
    assert lua.ack("intruder", a, b) == [a, b]
    assert lua.snapshot() == before
    assert lua.ack("w", a, "unknown", b) == ["unknown"]
    assert lua.ack("w", a, b) == [a, b]


def test_ack_misses_jobs_not_in_flight(lua: Lua) -> None:
    lua.enqueue(job("ready"), job("later", delay=60_000))
    before = lua.snapshot()
    assert lua.ack("w", "ready", "later") == ["ready", "later"]
    assert lua.snapshot() == before


def tallies(lua: Lua) -> dict[str, int]:
    """The tally:<minute> hashes summed, field by field."""
    out: dict[str, int] = {}
    for name in lua.keys():
        if name.startswith("tally:"):
            for field, n in text(lua.r.hgetall(lua.key(name))).items():
                out[field] = out.get(field, 0) + int(n)
    return out


def test_ack_and_fail_count_the_minute_once_a_call(lua: Lua) -> None:
    # A completed retention, so the ack writes no done:<n> window (which has its PEXPIREAT).
    kept = [job(i, completed_ms=60_000) for i in ("a", "b", "c")]
    a, b, c, d, e = lua.in_flight(*kept, job("d", retry_limit=0), job("e"))
    lua.r.config_resetstat()
    before = lua.now()
    assert lua.ack("w", a, b, c, "unknown") == ["unknown"]
    stats = lua.r.info("commandstats")
    assert stats["cmdstat_hincrby"]["calls"] == 1 and stats["cmdstat_pexpireat"]["calls"] == 1  # not one a job
    assert lua.fail("w", d) is not None  # past its retry limit of 0: dead
    assert lua.fail("w", e) is not None  # retries
    after = lua.now()
    assert lua.ack("w", a) == [a] and lua.fail("w", e) is None  # a miss counts nothing
    assert tallies(lua) == {"completed": 3, "dead": 1, "failed": 1}
    for name in lua.keys():
        if name.startswith("tally:"):
            minute = int(name.split(":")[1])
            assert before // 60_000 <= minute <= after // 60_000
            assert lua.r.pexpiretime(lua.key(name)) == (minute + 1) * 60_000 + 65 * 60_000


def test_a_tally_already_counting_this_minute_keeps_its_expiry_without_a_write(lua: Lua) -> None:
    # A completed retention, so the ack writes no done:<n> window (which has its PEXPIREAT).
    a, b = lua.in_flight(job("a", completed_ms=60_000), job("b", completed_ms=60_000))
    while True:
        minute = lua.now() // 60_000
        assert lua.ack("w", a) == []
        lua.r.config_resetstat()
        assert lua.ack("w", b) == []
        if lua.now() // 60_000 == minute:
            break
        a, b = lua.in_flight(job("a2", completed_ms=60_000), job("b2", completed_ms=60_000))  # the minute turned
    counted = calls(lua)
    assert counted["hincrby"] == 1 and "pexpireat" not in counted
    assert text(lua.r.hgetall(lua.key("tally", str(minute)))) == {"completed": "2"}
    assert lua.r.pexpiretime(lua.key("tally", str(minute))) == (minute + 1) * 60_000 + 65 * 60_000


def test_tally_read_reports_each_minute_oldest_first(lua: Lua) -> None:
    now = lua.now()
    minute = now // 60_000
    lua.r.hset(lua.key("tally", str(minute)), mapping={"completed": 5, "dead": 1})
    lua.r.hset(lua.key("tally", str(minute - 2)), mapping={"failed": 2})
    lua.r.hset(lua.key("tally", str(minute - 3)), mapping={"completed": 9})  # before the window
    reply = lua.run("tally_read", 3)
    if reply[1] != minute - 2:  # the minute turned meanwhile
        pytest.skip("the minute turned during the test")
    assert reply[2:] == [0, 2, 0, 0, 0, 0, 5, 0, 1] and now <= reply[0] < (minute + 1) * 60_000
    assert len(lua.run("tally_read", 60)) == 2 + 3 * 60
    for bad in ("0", "61", "x", ""):
        with pytest.raises(redis.ResponseError, match=f"ZIZQ INVALID minute count {bad} is not in 1..60"):
            lua.run("tally_read", bad)


# ---------------------------------------------------------------- fail


def test_fail_records_the_attempt(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1"))
    dequeued_at = lua.job(job_id)["da"]
    fields = lua.fail("w", job_id, message='boom "quoted" é', error_type="app.Error", backtrace="line 1\nline 2")
    assert fields is not None
    assert fields == lua.job(job_id)
    assert fields["a"] == "1"
    assert fields["s"] == "scheduled"
    assert "w" not in fields
    failed_at = int(fields["fa"])
    assert lua.errors(job_id) == [
        {
            "attempt": 1,
            "message": 'boom "quoted" é',
            "error_type": "app.Error",
            "backtrace": "line 1\nline 2",
            "dequeued_at": int(dequeued_at),
            "failed_at": failed_at,
        }
    ]
    assert lua.members("inflight") == []
    assert lua.r.exists(lua.key("worker", "w")) == 0
    assert lua.zset("scheduled") == [(job_id, float(fields["r"]))]


@pytest.mark.parametrize("attempts_before", [0, 1, 2, 5])
def test_fail_default_backoff(lua: Lua, attempts_before: int) -> None:
    [job_id] = lua.in_flight(job("j1"))
    lua.set_fields(job_id, a=attempts_before)
    fields = lua.fail("w", job_id)
    assert fields is not None
    a = attempts_before + 1
    assert fields["a"] == str(a)
    assert int(fields["r"]) - int(fields["fa"]) == math.floor(a**4 * 1000 + 15_000)


@pytest.mark.parametrize(
    ("backoff", "config", "jitter", "attempts_before", "delay"),
    [
        ("100 2 0", {}, 0.0, 2, 3**2 * 1000 + 100),
        ("0 1.5 0", {}, 0.0, 1, math.floor(2**1.5 * 1000)),
        ("", {}, 0.5, 2, 3**4 * 1000 + 15_000 + math.floor(0.5 * 30_000 * 3)),
        ("1000 1 200", {}, 0.25, 0, 1000 + 1000 + 50),
        ("", {"backoff_base_ms": 500, "backoff_exponent": 2, "backoff_jitter_ms": 100}, 0.5, 3, 16_000 + 500 + 200),
    ],
    ids=["job backoff", "fractional exponent", "default jitter", "job jitter", "namespace backoff"],
)
def test_fail_backoff_formula(
    lua: Lua, backoff: str, config: dict[str, Value], jitter: float, attempts_before: int, delay: int
) -> None:
    if config:
        lua.config(**config)
    [job_id] = lua.in_flight(job("j1", backoff=backoff))
    lua.set_fields(job_id, a=attempts_before)
    fields = lua.fail("w", job_id, jitter=jitter)
    assert fields is not None
    assert int(fields["r"]) - int(fields["fa"]) == delay


def test_fail_retry_in_and_retry_at_bypass_the_retry_limit(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", retry_limit=0))
    fields = lua.fail("w", job_id, retry_in=5_000)
    assert fields is not None
    assert (fields["s"], fields["a"]) == ("scheduled", "1")
    assert int(fields["r"]) == int(fields["fa"]) + 5_000

    lua.r.zadd(lua.key("scheduled"), {job_id: 0})  # make it due now
    assert lua.take("w", 1, "q").ids == [job_id]
    retry_at = lua.now() + 90_000
    fields = lua.fail("w", job_id, retry_at=retry_at)
    assert fields is not None
    assert (fields["s"], fields["a"], fields["r"]) == ("scheduled", "2", str(retry_at))
    assert lua.zset("scheduled") == [(job_id, float(retry_at))]
    assert len(lua.errors(job_id)) == 2


def test_fail_retry_at_wins_over_retry_in(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1"))
    retry_at = lua.now() + 77_000
    fields = lua.fail("w", job_id, retry_at=retry_at, retry_in=1)
    assert fields is not None
    assert fields["r"] == str(retry_at)


def test_fail_kill_makes_the_job_dead(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", retry_limit=10))
    fields = lua.fail("w", job_id, kill=True, retry_in=1000)
    assert fields is not None
    assert fields["s"] == "dead"
    assert fields["a"] == "1"
    assert int(fields["pa"]) == int(fields["fa"]) + DEAD_MS_DEFAULT
    assert fields == lua.job(job_id)
    assert lua.zset("dead") == [(job_id, float(fields["pa"]))]
    assert lua.members("scheduled") == []
    assert len(lua.errors(job_id)) == 1


def test_fail_past_the_retry_limit_makes_the_job_dead(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", retry_limit=1))
    first = lua.fail("w", job_id)
    assert first is not None and (first["s"], first["a"]) == ("scheduled", "1")
    lua.r.zadd(lua.key("scheduled"), {job_id: 0})
    assert lua.take("w", 1, "q").ids == [job_id]
    second = lua.fail("w", job_id)
    assert second is not None
    assert (second["s"], second["a"]) == ("dead", "2")
    assert int(second["pa"]) == int(second["fa"]) + DEAD_MS_DEFAULT
    assert [e["attempt"] for e in lua.errors(job_id)] == [1, 2]


def test_fail_uses_the_namespace_retry_limit(lua: Lua) -> None:
    lua.config(retry_limit=0, dead_ms=1000)
    [job_id] = lua.in_flight(job("j1"))
    fields = lua.fail("w", job_id)
    assert fields is not None
    assert fields["s"] == "dead"
    assert int(fields["pa"]) == int(fields["fa"]) + 1000


@pytest.mark.parametrize("where", ["job", "namespace"])
def test_fail_dead_with_no_retention_deletes_everything(lua: Lua, where: str) -> None:
    if where == "namespace":
        lua.config(dead_ms=0)
    dead_ms: Value = 0 if where == "job" else ""
    [job_id] = lua.in_flight(job("j1", unique_key="k", unique_while="exists", dead_ms=dead_ms))
    fields = lua.fail("w", job_id, kill=True)
    assert fields is not None
    assert fields["s"] == "dead"  # the reply still says what happened
    assert leftover(lua) == set()


@pytest.mark.parametrize(("scope", "kept"), [("queued", False), ("active", False), ("exists", True)])
def test_fail_dead_releases_the_unique_key_unless_exists(lua: Lua, scope: str, kept: bool) -> None:
    [job_id] = lua.in_flight(job("j1", unique_key="k", unique_while=scope))
    lua.fail("w", job_id, kill=True)
    assert lua.unique("k") == ([job_id] if kept else [])


def test_fail_retry_restores_a_queued_unique_key(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", unique_key="k"))
    assert lua.unique("k") == []
    lua.fail("w", job_id)
    assert lua.zset("unique", "k") == [(job_id, 0.0)]


def test_fail_retry_holds_the_key_beside_a_job_that_claimed_it_meanwhile(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", unique_key="k"))
    [(flag, _, _)] = lua.enqueue(job("j2", unique_key="k"))
    assert flag == 0
    lua.fail("w", job_id)
    assert lua.unique("k") == ["j1", "j2"]


def test_fail_retry_takes_a_key_back_from_an_expired_holder(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1", unique_key="k"))
    put_holder_in(lua, "completed", "exists")  # claims the key j1 released when taken
    assert lua.unique("k") == ["holder"]
    lua.set_fields("holder", pa=lua.now() - 1)
    lua.fail("w", job_id)
    assert lua.unique("k") == [job_id, "holder"]
    [(flag, holder, _)] = lua.enqueue(job("j2", unique_key="k", unique_while="exists"))
    assert (flag, holder) == (1, job_id)


def test_fail_trims_the_error_history(lua: Lua) -> None:
    lua.config(error_history=3)
    [job_id] = lua.in_flight(job("j1"))
    for attempt in range(1, 6):
        if attempt > 1:
            assert lua.take_until("w", 1, "q").ids == [job_id]
        lua.fail("w", job_id, message=f"failure {attempt}", retry_in=0)
    errors = lua.errors(job_id)
    assert [e["attempt"] for e in errors] == [3, 4, 5]
    assert [e["message"] for e in errors] == ["failure 3", "failure 4", "failure 5"]


def test_fail_with_no_error_history(lua: Lua) -> None:
    lua.config(error_history=0)
    [job_id] = lua.in_flight(job("j1"))
    fields = lua.fail("w", job_id)
    assert fields is not None and fields["s"] == "scheduled"
    assert lua.errors(job_id) == []


def test_fail_by_another_worker_changes_nothing(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1"))
    before = lua.snapshot()
    assert lua.fail("intruder", job_id) is None
    assert lua.fail("w", "unknown") is None
    assert lua.snapshot() == before


def test_fail_twice_changes_nothing_the_second_time(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1"))
    assert lua.fail("w", job_id) is not None
    before = lua.snapshot()
    assert lua.fail("w", job_id) is None
    assert lua.snapshot() == before


# ---------------------------------------------------------------- release


def test_ack_fail_and_release_act_on_the_attempt_named(lua: Lua) -> None:
    [job_id] = lua.in_flight(job("j1"))
    da = (lua.record(job_id) or {})["da"]
    assert lua.ack("w", job_id, da=da - 1) == [job_id]
    assert lua.release("w", job_id, da=da - 1) == 0
    assert lua.fail("w", job_id, da=da - 1) is None
    assert (lua.record(job_id) or {})["s"] == 3  # still in flight, untouched
    assert lua.release("w", job_id, da=da) == 1


@pytest.mark.parametrize(("name", "takes"), [("ack", "triples"), ("release", "pairs")])
def test_ack_and_release_refuse_unpaired_arguments(lua: Lua, name: str, takes: str) -> None:
    [job_id] = lua.in_flight(job("j1"))
    with pytest.raises(redis.ResponseError, match=rf"^ZIZQ INVALID {name} takes {takes} of job id"):
        lua.run(name, "w", job_id)
    assert (lua.record(job_id) or {})["s"] == 3


def test_take_marks_the_first_s_jobs_started(lua: Lua) -> None:
    lua.enqueue(*(job(f"j{i}") for i in range(3)))
    taken = lua.take("w", 3, "q", start=1)
    assert taken.ids == ["j0", "j1", "j2"]
    assert [(lua.record(i) or {}).get("st") for i in taken.ids] == [1, None, None]
    with pytest.raises(redis.ResponseError, match=r"^ZIZQ INVALID the start count x"):
        lua.raw("take", "w", 1, "x")


def test_take_does_not_prefetch_a_suspect(lua: Lua) -> None:
    lua.enqueue(*(job(f"j{i}") for i in range(3)))
    for i in (1, 2):
        record = lua.record(f"j{i}") or {}
        lua.r.hset(lua.key("jobs"), f"j{i}", msgpack.packb({**record, "sx": 1}))
    taken = lua.take("w", 3, "q", start=1)
    assert (taken.ids, taken.more) == (["j0"], 2)
    assert lua.r.zrange(lua.key("ready", "q"), 0, -1) == [b"j1", b"j2"]  # in their place
    # A suspect is taken alone, first and with a free runner.
    assert (lua.take("w2", 3, "q", start=2).ids, lua.take("w3", 3, "q", start=0).ids) == (["j1"], [])
    assert lua.take("w4", 3, "q", start=2).ids == ["j2"]


def test_release_puts_jobs_back_in_their_place(lua: Lua) -> None:
    lua.enqueue(job("j1"), job("j2"), job("j3"))
    [job_id] = lua.take("w", 1, "q").ids
    lua.set_fields(job_id, a=2)
    lua.r.delete(lua.key("wake", "q"))
    assert lua.release("w", job_id) == 1
    fields = lua.job(job_id)
    assert fields["s"] == "ready"
    assert fields["a"] == "2"
    assert "w" not in fields
    assert lua.errors(job_id) == []
    assert lua.members("inflight") == []
    assert lua.r.exists(lua.key("worker", "w")) == 0
    assert lua.llen("wake", "q") == 1
    assert lua.take("w", 3, "q").ids == ["j1", "j2", "j3"]


def test_release_only_what_the_worker_holds(lua: Lua) -> None:
    [a, b] = lua.in_flight(job("a"), job("b"))
    lua.enqueue(job("c"))
    assert lua.release("intruder", a, b) == 0
    assert lua.release("w", a, "c", "unknown") == 1
    assert lua.job(a)["s"] == "ready"
    assert lua.job(b)["s"] == "in_flight"
    assert lua.release("w", a) == 0


@pytest.mark.parametrize("scope", ["queued", "active", "exists"])
def test_release_leaves_the_unique_key_pointing_at_the_job(lua: Lua, scope: str) -> None:
    lua.in_flight(job("j1", unique_key="k", unique_while=scope))
    lua.release("w", "j1")
    assert lua.zset("unique", "k") == [("j1", 0.0)]
    [(flag, job_id, _)] = lua.enqueue(job("j2", unique_key="k", unique_while=scope))
    assert (flag, job_id) == (1, "j1")


def test_release_holds_the_key_beside_a_job_that_claimed_it_meanwhile(lua: Lua) -> None:
    lua.in_flight(job("j1", unique_key="k"))
    lua.enqueue(job("j2", unique_key="k"))
    lua.release("w", "j1")
    assert lua.unique("k") == ["j1", "j2"]


# ---------------------------------------------------------------- get


def test_get_answers_in_order(lua: Lua) -> None:
    lua.enqueue(job("a"), job("b", delay=60_000))
    a, missing, b = lua.get("a", "missing", "b")
    assert a == lua.job("a")
    assert missing == {}
    assert b == lua.job("b")
    assert lua.get() == []


def test_get_hides_expired_jobs(lua: Lua) -> None:
    [job_id, other] = lua.in_flight(job("j1", completed_ms=60_000), job("j2", completed_ms=60_000))
    lua.ack("w", job_id, other)
    lua.set_fields(job_id, pa=lua.now() - 1)
    assert lua.get(job_id, other) == [{}, lua.job(other)]


# ---------------------------------------------------------------- retry


def make_dead(lua: Lua, job_id: str, **options: Any) -> None:
    """Enqueue a job (kept 60 s when dead) and kill it."""
    lua.in_flight(job(job_id, dead_ms=60_000, **options))
    killed = lua.fail("w", job_id, kill=True)
    assert killed is not None and killed["s"] == "dead"


@pytest.mark.parametrize("state", ["scheduled", "ready", "in_flight", "completed", "dead"])
@pytest.mark.parametrize("holder_scope", ["queued", "active", "exists"])
@pytest.mark.parametrize("scope", ["queued", "active", "exists"])
def test_retry_judges_the_unique_key_as_enqueue_does(lua: Lua, state: str, holder_scope: str, scope: str) -> None:
    make_dead(lua, "d", unique_key="k", unique_while=scope)
    lua.r.delete(lua.key("unique", "k"))  # so that the holder is created whatever the scopes
    put_holder_in(lua, state, holder_scope)
    refused = state in INDEXED[holder_scope] and state in CONFLICT[scope]
    before = lua.snapshot()
    if refused:
        with pytest.raises(redis.ResponseError) as info:
            lua.raw("retry", "d")
        message = str(info.value)
        assert message.startswith("ZIZQ UNIQUE_HELD job d cannot be retried")
        assert f"held by job holder ({state})" in message and f"scope {scope}" in message
        assert lua.snapshot() == before  # nothing written
    else:
        assert as_map(lua.raw("retry", "d"))["s"] == "ready"
        assert lua.members("ready", "q")[-1:] == ["d"]
        assert ("d", 0.0) in lua.zset("unique", "k")  # a waiting holder, as a new job would be


def test_retry_is_not_blocked_by_an_expired_or_missing_holder(lua: Lua) -> None:
    make_dead(lua, "d", unique_key="k")
    make_dead(lua, "e", unique_key="k2", unique_while="exists")
    put_holder_in(lua, "completed", "exists")
    lua.set_fields("holder", pa=lua.now() - 1)
    assert as_map(lua.raw("retry", "d"))["s"] == "ready"
    assert lua.unique("k") == ["d", "holder"]
    lua.r.zadd(lua.key("unique", "k2"), {"ghost": 0})
    assert as_map(lua.raw("retry", "e"))["s"] == "ready"
    assert lua.unique("k2") == ["e", "ghost"]


def test_bulk_retry_skips_a_job_whose_key_is_held_and_does_not_count_it(lua: Lua) -> None:
    # Two dead jobs with one key: the first retried takes the key, so the
    # second now conflicts with it and stays dead; a third, unkeyed, goes.
    for job_id in ("d1", "d2"):
        make_dead(lua, job_id, unique_key="k")
    make_dead(lua, "d3")
    changed, left = lua.run("bulk", "retry", "{}", "dead", 3, "d1", "d2", "d3")
    assert (changed, left) == (2, 2)  # d2 is still in "dead": the walk goes on past it
    assert [lua.job(i)["s"] for i in ("d1", "d2", "d3")] == ["ready", "dead", "ready"]
    assert lua.unique("k") == ["d1"]


def test_a_record_no_script_can_read_is_skipped_not_a_failure_halfway(lua: Lua) -> None:
    # Written by hand or by a broken client: take moves the jobs it can
    # read and drops the index entry of the other; get hides it; delete
    # removes it. No script stops halfway on it.
    lua.enqueue(job("a", priority=1), job("bad", priority=2), job("c", priority=3))
    lua.r.hset(lua.key("jobs"), "bad", b"\xc1 not msgpack")
    taken = lua.take("w", 3, "q")
    assert taken.ids == ["a", "c"]
    assert lua.members("ready", "q") == [] and lua.members("inflight") == ["a", "c"]
    assert lua.get("bad") == [{}]
    assert lua.run("delete", "bad") == 1
    assert not lua.exists("bad")

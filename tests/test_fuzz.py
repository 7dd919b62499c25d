"""Fuzzing enqueue through zizq.Client, against a real Redis.

The property: every enqueue either round-trips exactly (the stored payload
is what orjson makes of the value, the options are stored as given or
normalised) or raises a ZizqError, and then Redis holds nothing new for the
namespace. An oracle written from the spec (SPEC.md §1, zizq.Client.enqueue)
predicts which of the two must happen. The suite runs on the Cython hot path
and on its pure-Python twin, so both are fuzzed.

The cases at the end are minimal examples of bugs found this way, kept as
regression tests.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import zizq
from zizq import Backoff, Enqueue, Retention, UniqueKey
from zizq.job import UNIQUE_SCOPES

from .conftest import take

FORBIDDEN = ",*?[]{}\\\x00"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The scripts take ms values, limits and backoff parts only as plain integers
# of at most 15 digits (natural() in lua/includes/common.lua), so stored
# numbers stay exact (< 2**53) and print as integers.
SCRIPT_MAX = 10**15
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Fuzzed(zizq.JobKind):
    """Payload {"value": v}, with per-type defaults to test precedence."""

    NAME = "fuzzed"
    QUEUE = "fuzz-q"
    PRIORITY = 7
    RETRY_LIMIT = 2
    value: Any


class FuzzedScalar(zizq.JobKind):
    """Payload v itself, with other per-type defaults."""

    NAME = "fuzzed_scalar"
    TRANSPARENT = True
    TIMEOUT = 1.5
    RETENTION = Retention(dead_ms=1_000)
    value: Any


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()  # an option not passed at all
OPTIONS = ("queue", "priority", "delay", "ready_at", "retry_limit", "backoff", "retention", "unique_key", "timeout")


@dataclass
class Case:
    path: str  # "raw" (enqueue_raw), "object" (Fuzzed), "scalar" (FuzzedScalar)
    type_name: Any
    payload: Any
    options: dict[str, Any] = field(default_factory=dict)

    def submit(self, client: zizq.Client) -> zizq.Job:
        if self.path == "raw":
            return client.enqueue_raw(self.type_name, self.payload, **self.options)
        return client.enqueue(self.job(), **self.options)

    def item(self) -> Enqueue:
        if self.path == "raw":
            return Enqueue.raw(self.type_name, self.payload, **self.options)
        return Enqueue(self.job(), **self.options)

    def job(self) -> zizq.JobKind:
        return Fuzzed(self.payload) if self.path == "object" else FuzzedScalar(self.payload)


# -- strategies --------------------------------------------------------------

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
names_ok = st.text(st.characters(codec="utf-8", exclude_characters=FORBIDDEN), min_size=1, max_size=10)
names_bad = st.one_of(
    st.just(""),
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=3), st.sampled_from(list(FORBIDDEN)), st.text(max_size=3)),
    st.integers(),
    st.none(),
    st.binary(max_size=3),
    st.just(["default"]),
)
surrogate_text = st.builds(
    lambda a, s, b: a + s + b, st.text(max_size=3), st.sampled_from(SURROGATES), st.text(max_size=3)
)

leaf_ok = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.datetimes(),  # orjson writes these as strings
    st.uuids(),
)
leaf_bad = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.integers(min_value=2**64),
    st.integers(max_value=-(2**63) - 1),
    surrogate_text,
    st.builds(object),
    st.sets(st.integers(), max_size=3),
    st.frozensets(st.integers(), max_size=2),
    st.binary(max_size=4),
    st.builds(bytearray, st.binary(max_size=3)),
    st.complex_numbers(allow_nan=False, allow_infinity=False, max_magnitude=10),
    st.decimals(allow_nan=False, allow_infinity=False, places=2, max_value=100, min_value=-100),
    st.just(Ellipsis),
)
keys_any = st.one_of(st.text(max_size=5), st.text(max_size=5), surrogate_text, st.integers(-2, 2), st.none())


def nest(leaf: Any, depth: int, how: str) -> Any:
    for _ in range(depth):
        leaf = [leaf] if how == "list" else (leaf,) if how == "tuple" else {"k": leaf}
    return leaf


def json_values(leaf: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(keys, children, max_size=4),
        ),
        max_leaves=12,
    )


payloads_ok = st.one_of(
    json_values(leaf_ok, st.text(max_size=5)),
    st.builds(nest, leaf_ok, st.integers(100, 200), st.sampled_from(["list", "tuple", "dict"])),
)
payloads_any = st.one_of(
    json_values(st.one_of(leaf_ok, leaf_ok, leaf_bad), keys_any),
    # Deep nesting on both sides of orjson's limit (254 levels).
    st.builds(nest, st.one_of(leaf_ok, leaf_bad), st.integers(150, 300), st.sampled_from(["list", "tuple", "dict"])),
)

non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
wrong_scalars = st.one_of(
    st.text(max_size=3), st.binary(max_size=2), st.just(Decimal(1)), st.just(1 + 0j), st.just([1])
)
offsets = st.builds(timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23)))
unique_keys = st.one_of(st.text("abc", min_size=1, max_size=3), st.text(min_size=1, max_size=6))
big_ints = st.one_of(st.integers(0, SCRIPT_MAX - 1), st.just(SCRIPT_MAX - 1))
too_big = st.one_of(st.integers(SCRIPT_MAX, 2**70), st.just(SCRIPT_MAX))
small_ms = st.one_of(st.none(), st.integers(0, 10**9), big_ints)

OK: dict[str, st.SearchStrategy[Any]] = {
    "queue": names_ok,
    "priority": st.integers(0, 65535),
    "delay": st.one_of(
        st.integers(0, 10**11),  # zizq._protocol.enqueue.MAX_SECONDS
        st.floats(0, 1e11),
        st.sampled_from([0, 0.0, -0.0, 0.0004, 0.0005, 0.001]),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10**6)),
    ),
    "ready_at": st.datetimes(min_value=datetime(1970, 1, 2), timezones=st.one_of(st.just(UTC), offsets)),
    "retry_limit": st.one_of(st.integers(0, 30), st.integers(0, SCRIPT_MAX - 1), st.just(SCRIPT_MAX - 1)),
    "backoff": st.builds(
        Backoff,
        base_ms=st.one_of(st.integers(0, 10**6), big_ints),
        exponent=st.one_of(st.floats(0, 16), st.integers(0, 16)),
        jitter_ms=st.one_of(st.integers(0, 10**6), big_ints),
    ),
    "retention": st.builds(Retention, small_ms, small_ms),
    "unique_key": st.one_of(unique_keys, st.builds(UniqueKey, unique_keys, st.sampled_from([None, *UNIQUE_SCOPES]))),
    "timeout": st.one_of(
        st.floats(1e-9, 1e8),
        st.integers(1, 10**8),
        st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=10_000)),
    ),
}
BAD: dict[str, st.SearchStrategy[Any]] = {
    "queue": names_bad,
    "priority": st.one_of(
        st.integers(max_value=-1),
        st.integers(min_value=65536),
        st.booleans(),
        st.floats(),
        wrong_scalars,
    ),
    "delay": st.one_of(
        st.integers(min_value=10**11 + 1),  # past zizq._protocol.enqueue.MAX_SECONDS
        st.floats(min_value=1.000001e11, allow_infinity=False),
        st.just(timedelta.max),
        st.integers(max_value=-1),
        st.floats(max_value=-1e-300),
        non_finite,
        st.timedeltas(max_value=timedelta(microseconds=-1)),
        st.booleans(),
        wrong_scalars,
    ),
    "ready_at": st.one_of(
        st.datetimes(),  # naive
        st.datetimes(max_value=datetime(1969, 12, 31), timezones=st.just(UTC)),  # before the epoch: the scripts refuse
        st.integers(),
        st.dates(),
        wrong_scalars,
    ),
    "retry_limit": st.one_of(st.integers(max_value=-1), too_big, st.booleans(), st.floats(), wrong_scalars),
    "backoff": st.one_of(
        st.builds(Backoff, base_ms=too_big, exponent=st.just(2), jitter_ms=st.integers(0, 9)),
        st.builds(Backoff, base_ms=st.integers(0, 9), exponent=st.just(2.5), jitter_ms=too_big),
        st.just({"base_ms": 1, "exponent": 2, "jitter_ms": 3}),
        st.just((1, 2, 3)),
        st.integers(),
    ),
    "retention": st.one_of(
        st.builds(Retention, too_big, small_ms),
        st.builds(Retention, small_ms, too_big),
        st.just({"completed_ms": 1}),
        st.integers(),
        st.just(timedelta(1)),
    ),
    "unique_key": st.one_of(st.just(""), st.integers(), st.binary(max_size=3), st.booleans(), st.just(["k"])),
    "timeout": st.one_of(
        st.sampled_from([0, 0.0, -0.0, 10**9, 1e9]),
        st.integers(max_value=0),
        st.floats(max_value=0.0),
        st.floats(min_value=1e9),
        non_finite,
        st.booleans(),
        wrong_scalars,
    ),
}


@st.composite
def cases(draw: st.DrawFn, valid: bool | None = None) -> Case:
    """A case; all parts valid (valid=True), or anything (valid=False); half
    and half when not said."""
    if valid is None:
        valid = draw(st.booleans())
    path = draw(st.sampled_from(["raw", "object", "scalar"]))
    case = Case(path, "fuzz_type", draw(payloads_ok if valid else payloads_any))
    if path == "raw":
        case.type_name = draw(names_ok if valid else st.one_of(names_ok, names_ok, names_bad))
    for name in OPTIONS:
        pick = draw(st.integers(0, 9))
        if pick < 5 or (valid and name == "ready_at" and "delay" in case.options):
            continue
        if valid or pick < 9:
            case.options[name] = draw(OK[name])
        else:
            case.options[name] = draw(BAD[name])
    return case


@st.composite
def bad_cases(draw: st.DrawFn) -> Case:
    """A valid case with exactly one part made invalid."""
    case = draw(cases(valid=True))
    part = draw(st.sampled_from(["payload", "type", *OPTIONS]))
    if part == "payload":
        case.payload = draw(st.one_of(leaf_bad, st.lists(leaf_bad, min_size=1, max_size=2)))
    elif part == "type":
        case.path = "raw"
        case.type_name = draw(names_bad)
    elif part == "ready_at" and "delay" not in case.options:
        case.options["ready_at"], case.options["delay"] = draw(OK["ready_at"]), draw(OK["delay"])
    else:
        case.options[part] = draw(BAD[part])
    return case


# -- the oracle ----------------------------------------------------------------


class Invalid(Exception):
    """The oracle says zizq must refuse this."""


@dataclass
class Expected:
    type: str
    queue: str
    priority: int
    payload_json: bytes
    delay_ms: int | None = None
    ready_at_ms: int | None = None
    retry_limit: int | None = None
    backoff: Backoff | None = None
    retention: Retention | None = None
    unique_key: str | None = None
    unique_while: str | None = None
    timeout_ms: int | None = None


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def script_int(what: str, v: int | None) -> None:
    if v is not None and not 0 <= v < SCRIPT_MAX:
        raise Invalid(f"{what} {v!r} is past what the scripts take")


def name(v: Any) -> str:
    if not isinstance(v, str) or not v or set(v) & set(FORBIDDEN):
        raise Invalid(f"name {v!r}")
    return v


def seconds(v: Any) -> float:
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise Invalid(f"seconds {v!r}")
    return v


def payload_json(value: Any) -> bytes:
    """JSON holds the value exactly, or the value is invalid: orjson can
    write it, and it has no NaN or infinity anywhere."""
    try:
        data = orjson.dumps(value)
    except TypeError as exc:
        raise Invalid(f"payload: {exc}") from None

    def walk(v: Any) -> None:
        if isinstance(v, float) and not math.isfinite(v):
            raise Invalid("payload has a non-finite float")
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        elif isinstance(v, (Fuzzed, FuzzedScalar)):
            walk(v.value)

    walk(value)
    return data


def predict(case: Case) -> Expected:
    """What enqueue must store for this case; raises Invalid if it must refuse."""
    o = case.options
    if case.path == "raw":
        kind: type[zizq.JobKind] | None = None
        type_name = name(case.type_name)
        data = payload_json(case.payload)
        queue = name(o.get("queue", "default"))
    else:
        kind = Fuzzed if case.path == "object" else FuzzedScalar
        type_name = kind.NAME
        data = payload_json(case.job().to_payload())
        queue = name(o.get("queue") if o.get("queue") is not None else kind.QUEUE)

    def given(option: str, default: Any = None) -> Any:
        v = o.get(option)
        return default if v is None else v

    priority = given("priority", (kind.PRIORITY if kind else None) or 32768)
    if not is_int(priority) or not 0 <= priority <= 65535:
        raise Invalid(f"priority {priority!r}")
    retry_limit = given("retry_limit", kind.RETRY_LIMIT if kind else None)
    if retry_limit is not None and (not is_int(retry_limit) or retry_limit < 0):
        raise Invalid(f"retry_limit {retry_limit!r}")
    script_int("retry_limit", retry_limit)
    backoff = given("backoff")
    if backoff is not None and not isinstance(backoff, Backoff):
        raise Invalid(f"backoff {backoff!r}")
    if backoff is not None:
        script_int("backoff", backoff.base_ms)
        script_int("backoff", backoff.jitter_ms)
    retention = given("retention")
    if retention is not None and not isinstance(retention, Retention):
        raise Invalid(f"retention {retention!r}")
    if kind is not None and kind.RETENTION is not None:
        base = kind.RETENTION
        retention = Retention(
            base.completed_ms if retention is None or retention.completed_ms is None else retention.completed_ms,
            base.dead_ms if retention is None or retention.dead_ms is None else retention.dead_ms,
        )
    if retention is not None and retention.completed_ms is None and retention.dead_ms is None:
        retention = None  # nothing to store
    if retention is not None:
        script_int("retention", retention.completed_ms)
        script_int("retention", retention.dead_ms)
    unique = given("unique_key")
    if isinstance(unique, str):
        if not unique:
            raise Invalid("empty unique key")
        unique = UniqueKey(unique)
    elif unique is not None and not isinstance(unique, UniqueKey):
        raise Invalid(f"unique_key {unique!r}")
    timeout = given("timeout", kind.TIMEOUT if kind else None)
    timeout_ms = None
    if timeout is not None:
        s = seconds(timeout)
        if not 0 < s < 10**9:
            raise Invalid(f"timeout {timeout!r}")
        timeout_ms = max(1, round(s * 1000))
    delay, ready_at = given("delay"), given("ready_at")
    if delay is not None and ready_at is not None:
        raise Invalid("delay and ready_at")
    delay_ms = ready_at_ms = None
    if delay is not None:
        s = seconds(delay)
        if not math.isfinite(s) or not 0 <= s <= 1e11:  # zizq._protocol.enqueue.MAX_SECONDS
            raise Invalid(f"delay {delay!r}")
        delay_ms = round(s * 1000)
        script_int("delay", delay_ms)
    if ready_at is not None:
        if not isinstance(ready_at, datetime) or ready_at.utcoffset() is None:
            raise Invalid(f"ready_at {ready_at!r}")
        ready_at_ms = (ready_at - EPOCH) // timedelta(milliseconds=1)  # exact
        script_int("ready_at", ready_at_ms)  # so no time before 1970
    return Expected(
        type=type_name,
        queue=queue,
        priority=priority,
        payload_json=data,
        delay_ms=delay_ms,
        ready_at_ms=ready_at_ms,
        retry_limit=retry_limit,
        backoff=backoff,
        retention=retention,
        unique_key=unique.key if unique else None,
        unique_while=unique.unique_while if unique else None,
        timeout_ms=timeout_ms,
    )


def expect(case: Case) -> Expected | None:
    try:
        return predict(case)
    except Invalid as why:
        event(f"invalid: {str(why).split(' ')[0]}")
        return None


# -- checking ----------------------------------------------------------------


def redis_ms(r: redis.Redis) -> int:
    s, us = r.time()
    return int(s) * 1000 + int(us) // 1000


def snapshot(r: redis.Redis, namespace: str) -> dict[bytes, Any]:
    """Every key of the namespace (but the wake lists) with its content.
    (Not DUMP: a hash's DUMP changes with its internal layout, on reads too.)"""
    prefix = ("{" + namespace + "}:").encode()
    keys = [k for k in r.keys(prefix + b"*") if isinstance(k, bytes) and k[len(prefix) :].split(b":")[0] != b"wake"]
    pipe = r.pipeline(transaction=False)
    for k in keys:
        pipe.type(k)
    types = pipe.execute()
    read: dict[bytes, Callable[[bytes], Any]] = {
        b"hash": pipe.hgetall,
        b"set": pipe.smembers,
        b"string": pipe.get,
        b"list": lambda k: pipe.lrange(k, 0, -1),
        b"zset": lambda k: pipe.zrange(k, 0, -1, withscores=True),
    }
    for k, t in zip(keys, types, strict=True):
        read[t](k)
    return {k: (t, v) for k, t, v in zip(keys, types, pipe.execute(), strict=True)}


def holder_of(r: redis.Redis, namespace: str, unique_key: str | None) -> str | None:
    if unique_key is None:
        return None
    # These jobs all wait in line, so the first holder is the one an enqueue names.
    held: list[bytes] = r.zrange("{" + namespace + "}:unique:" + unique_key, 0, 0)  # type: ignore[assignment]
    return held[0].decode() if held else None


def check_job(job: zizq.Job, want: Expected, t0: int, t1: int, *, stored: bool) -> None:
    assert (job.type, job.queue, job.priority, job.attempts) == (want.type, want.queue, want.priority, 0)
    assert job.retry_limit == want.retry_limit
    assert job.backoff == want.backoff
    assert job.retention == want.retention
    assert (job.unique_key, job.unique_while) == (want.unique_key, want.unique_while)
    assert job.timeout_ms == want.timeout_ms
    assert job.duplicate is False and job.recoveries == 0
    if want.ready_at_ms is not None:
        assert job.ready_at == want.ready_at_ms
        if not t0 <= job.ready_at <= t1:
            assert job.status == ("scheduled" if job.ready_at > t1 else "ready")
    else:
        delay = want.delay_ms or 0
        assert t0 + delay <= job.ready_at <= t1 + delay
        assert job.status == ("scheduled" if delay > 0 else "ready")
    if stored:
        assert job.payload_json == want.payload_json
        assert job.payload == orjson.loads(want.payload_json)
    else:
        assert job.payload_json is None


def check_case(client: zizq.Client, r: redis.Redis, case: Case) -> None:
    ns = client.namespace
    want = expect(case)
    holder = holder_of(r, ns, want.unique_key) if want else None
    before = snapshot(r, ns)
    t0 = redis_ms(r)
    try:
        job = case.submit(client)
    except zizq.ZizqError as exc:
        assert snapshot(r, ns) == before, f"{exc!r} left writes behind"
        assert want is None, f"a valid case was refused: {exc!r}"
        event(f"refused: {type(exc).__name__}")
        return
    t1 = redis_ms(r)
    assert want is not None, f"an invalid case was accepted: {job!r}"
    if holder is not None:
        event("duplicate")
        assert job.duplicate and job.id == holder
        assert snapshot(r, ns) == before
        return
    event(f"created: {case.path}")
    check_job(job, want, t0, t1, stored=False)
    check_job(client.get_job(job.id), want, t0, t1, stored=True)


# -- properties --------------------------------------------------------------


@FUZZ
@given(case=cases())
def test_enqueue_round_trips_or_refuses(client: zizq.Client, r: redis.Redis, case: Case) -> None:
    check_case(client, r, case)


@settings(FUZZ, max_examples=60)
@given(good=st.lists(cases(valid=True), min_size=1, max_size=5), bad=st.none() | bad_cases(), at=st.integers(0, 5))
def test_enqueue_many_is_all_or_nothing(
    client: zizq.Client, r: redis.Redis, good: list[Case], bad: Case | None, at: int
) -> None:
    ns = client.namespace
    batch = list(good)
    if bad is not None:
        assume(expect(bad) is None)
        batch.insert(min(at, len(batch)), bad)
    wants = [predict(c) for c in good]
    before = snapshot(r, ns)
    t0 = redis_ms(r)
    if bad is not None:
        event("batch with a bad item")
        with pytest.raises(zizq.ZizqError):
            client.enqueue_many([c.item() for c in batch])
        assert snapshot(r, ns) == before
        return
    event("good batch")
    holders = {w.unique_key: holder_of(r, ns, w.unique_key) for w in wants if w.unique_key}
    jobs = client.enqueue_many([c.item() for c in batch])
    t1 = redis_ms(r)
    assert len(jobs) == len(batch)
    for job, want in zip(jobs, wants, strict=True):
        holder = holders.get(want.unique_key) if want.unique_key else None
        if holder is not None:  # held before, or by an earlier job of this batch
            assert job.duplicate and job.id == holder
            continue
        check_job(job, want, t0, t1, stored=False)
        check_job(client.get_job(job.id), want, t0, t1, stored=True)
        if want.unique_key:
            holders[want.unique_key] = job.id


@pytest.mark.parametrize("char", ["x", "é", "€", "😀", "\ud800"], ids=["ascii", "latin", "bmp", "astral", "surrogate"])
@settings(FUZZ, max_examples=2)
@given(size=st.integers(500_000, 1_100_000), path=st.sampled_from(["raw", "object", "scalar"]))
def test_large_string_payloads(client: zizq.Client, r: redis.Redis, char: str, size: int, path: str) -> None:
    check_case(client, r, Case(path, "big", char * size))


# -- minimal examples of bugs found ------------------------------------------


def refused_cleanly(client: zizq.Client, r: redis.Redis, call: Callable[[], object]) -> None:
    before = snapshot(r, client.namespace)
    with pytest.raises(zizq.ZizqError):
        call()
    assert snapshot(r, client.namespace) == before


@pytest.mark.parametrize("where", ["queue", "type", "unique_key", "UniqueKey"])
def test_lone_surrogate_in_a_name_is_refused(client: zizq.Client, r: redis.Redis, where: str) -> None:
    bad = "q\ud800"
    calls: dict[str, Callable[[], object]] = {
        "queue": lambda: client.enqueue_raw("t", 1, queue=bad),
        "type": lambda: client.enqueue_raw(bad, 1),
        "unique_key": lambda: client.enqueue_raw("t", 1, unique_key=bad),
        "UniqueKey": lambda: client.enqueue_raw("t", 1, unique_key=UniqueKey(bad, "active")),
    }
    refused_cleanly(client, r, calls[where])


# Found by this file, fixed since: a delay past ~1e14 s made ready_at a float
# Lua wrote as '1e+17'-style text; enqueue reported ready_at -2**63 and every
# later read of the job raised ValueError.
@pytest.mark.parametrize("delay", [1e15, 2**70, 1e300], ids=["1e15", "2**70", "1e300"])
def test_huge_delay_is_refused_or_round_trips(client: zizq.Client, r: redis.Redis, delay: float) -> None:
    t0 = redis_ms(r)
    try:
        job = client.enqueue_raw("t", 1, delay=delay)
    except zizq.ValidationError:
        assert snapshot(r, client.namespace) == {}
        return
    assert job.ready_at > t0
    assert client.get_job(job.id).ready_at == job.ready_at


class Five(enum.IntEnum):
    FIVE = 5


@pytest.mark.parametrize("option", ["priority", "retry_limit", "retention"])
def test_int_subclass_option_round_trips_or_is_refused(client: zizq.Client, r: redis.Redis, option: str) -> None:
    value: Any = Retention(Five.FIVE, Five.FIVE) if option == "retention" else Five.FIVE
    try:
        job = client.enqueue_raw("t", 1, **{option: value})
    except zizq.ZizqError:
        assert snapshot(r, client.namespace) == {}
        return
    stored = client.get_job(job.id)
    assert getattr(stored, option) == value


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_very_deep_payload_is_invalid(client: zizq.Client, r: redis.Redis, depth: int) -> None:
    refused_cleanly(client, r, lambda: client.enqueue_raw("t", nest(1, depth, "list")))


def test_ready_at_keeps_its_exact_millisecond(client: zizq.Client) -> None:
    at = datetime(2039, 6, 18, 13, 49, 28, 311_000, tzinfo=UTC)
    job = client.enqueue_raw("t", 1, ready_at=at)
    assert job.ready_at == 2_192_017_768_311


# Found by this file, fixed since: a retention beyond ~1e17 ms was accepted,
# then purge_at was written as '1.18e+21' when the job finished and every read
# of the job raised ValueError.
async def test_huge_retention_is_refused_or_survives_the_ack(api: Any) -> None:
    try:
        job = await api.enqueue_raw("t", 1, retention=Retention(completed_ms=2**70))
    except zizq.ValidationError:
        return
    [taken] = await take(api)
    assert await api.run(api.core.ack("w1", [taken.id])) == []
    done = await api.get_job(job.id)
    assert done.status == "completed" and done.purge_at is not None

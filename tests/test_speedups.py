"""The Cython hot path (zizq._speedups) and its pure-Python twin agree.

Both modules are imported directly, whatever the chooser picked, and every
test runs on each of them; tests of the extension skip when it is not built,
except the one that fails when ZIZQ_EXPECT_EXTENSION=1 and it did not load.
Golden files in tests/golden/ pin the bytes so both cannot drift together.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import zizq
from zizq import _hotpath
from zizq import _speedups_py as pure


def _load_extension() -> types.ModuleType | None:
    try:
        return importlib.import_module("zizq._speedups")
    except ImportError:
        return None


ext = _load_extension()
NO_EXTENSIONS = os.environ.get("ZIZQ_NO_EXTENSIONS", "") not in ("", "0")
EXPECT_EXTENSION = os.environ.get("ZIZQ_EXPECT_EXTENSION") == "1"

needs_ext = pytest.mark.skipif(ext is None, reason="zizq._speedups (the Cython extension) is not built")
IMPLS = [pytest.param(pure, id="pure"), pytest.param(ext, id="ext", marks=needs_ext)]
# The names the chooser re-exports: the whole contract between the twins.
CONTRACT = [name for name in _hotpath.__all__ if name != "EXTENSION"]

GOLDEN = Path(__file__).resolve().parent / "golden"
HASH_CASES: list[dict[str, Any]] = json.loads((GOLDEN / "hashes.json").read_text("utf-8"))["cases"]
ID_CASES: list[dict[str, Any]] = json.loads((GOLDEN / "ids.json").read_text("utf-8"))["cases"]
ID_RE = re.compile(r"[0-9a-z]{25}")

# zizq-behaviour.md section 3.2: the zizq-ruby unique keys, "{ClassName}:" +
# sha256_hex(sorted compact JSON of {"args": [...], "kwargs": {...}}).
RUBY_VECTORS: list[tuple[str, list[Any], dict[str, Any], str]] = [
    (
        "ExampleJob",
        ["Bill", "Ben"],
        {"example": 42},
        "ExampleJob:0b9ca7f07581994caa848878576fed30e09e7177611c01aeafe7113921090c29",
    ),
    (
        "ExampleJob",
        ["Bill", "Ben"],
        {"example": 99},
        "ExampleJob:3be19cc482f366dcd538c22b8536d7947672071b8c8fb3a2486ebfd04b2216b6",
    ),
    (
        "ExampleJob",
        ["Bill", "Ben"],
        {},
        "ExampleJob:bcd08012e829243d82e953a8140ffb58aeeb839e545ee1547a894bb2c9ba1b8f",
    ),
    (
        "SendEmailJob",
        [42],
        {"template": "welcome"},
        "SendEmailJob:eb28cc4280934762bacd3f603600949c984ff96efe48831313e2e94f7f64ada1",
    ),
]

# --- strategies -------------------------------------------------------------

# Unicode without lone surrogates (they are not encodable as UTF-8).
texts = st.text(st.characters(codec="utf-8"), max_size=12)
int64s = st.integers(min_value=-(2**63), max_value=2**64 - 1)  # what orjson writes
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


def _json_values(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
        max_leaves=25,
    )


json_values = _json_values(st.none() | st.booleans() | int64s | finite_floats | texts)
# Without floats, canonical_json must equal the stdlib's sorted compact JSON
# (the Python form zizq-behaviour.md gives for the Rust/Ruby unique keys).
float_free_values = _json_values(st.none() | st.booleans() | int64s | texts)

id_fields = st.tuples(
    st.integers(0, 2**48 - 1), st.integers(0, 2**24 - 1), st.integers(0, 2**24 - 1), st.integers(0, 2**32 - 1)
)

EXAMPLES = settings(max_examples=200, deadline=None)


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 != 1.0, 0.0 != -0.0,
    dict key order counts)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return bool(a.hex() == b.hex())
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _outcome(func: Any, *args: Any) -> Any:
    """What a call returned, or the type of the exception it raised."""
    try:
        return func(*args)
    except Exception as exc:
        return type(exc)


def reference_id(timestamp: int, counter_hi: int, counter_lo: int, entropy: int) -> str:
    """SCRU128 text computed independently: the 128-bit int in base 36."""
    n = (((timestamp * 2**24 + counter_hi) * 2**24 + counter_lo) * 2**32) + entropy
    digits = ""
    while n:
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[n % 36] + digits
        n //= 36
    return digits.rjust(25, "0")


# --- which implementation is loaded -----------------------------------------


def test_extension_loaded_when_expected() -> None:
    if not EXPECT_EXTENSION:
        pytest.skip("ZIZQ_EXPECT_EXTENSION=1 is not set")
    assert ext is not None, "ZIZQ_EXPECT_EXTENSION=1 but zizq._speedups cannot be imported (not built?)"
    assert _hotpath.EXTENSION, "ZIZQ_EXPECT_EXTENSION=1 but zizq._hotpath chose the pure-Python twin"


def test_chooser_follows_the_environment() -> None:
    assert _hotpath.EXTENSION is (ext is not None and not NO_EXTENSIONS)
    chosen = ext if _hotpath.EXTENSION else pure
    assert chosen is not None
    for name in CONTRACT:
        assert getattr(_hotpath, name) is getattr(chosen, name), name


def _chooser_in_subprocess(env_value: str | None, prelude: str = "") -> tuple[bool, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZIZQ_")}
    if env_value is not None:
        env["ZIZQ_NO_EXTENSIONS"] = env_value
    code = prelude + "import zizq._hotpath as h; print(h.EXTENSION, h.encode_payload.__module__)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    return out[0] == "True", out[1]


@pytest.mark.parametrize(
    ("env_value", "forced_pure"), [(None, False), ("", False), ("0", False), ("1", True), ("yes", True)]
)
def test_chooser_env_var(env_value: str | None, forced_pure: bool) -> None:
    loaded, module = _chooser_in_subprocess(env_value)
    expect_extension = ext is not None and not forced_pure
    assert loaded is expect_extension
    assert module == ("zizq._speedups" if expect_extension else "zizq._speedups_py")


def test_chooser_falls_back_when_the_extension_is_missing() -> None:
    # sys.modules[name] = None makes "import name" raise ImportError.
    loaded, module = _chooser_in_subprocess(None, "import sys; sys.modules['zizq._speedups'] = None; ")
    assert (loaded, module) == (False, "zizq._speedups_py")


# --- same names, same signatures ---------------------------------------------


def _defined_in(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and getattr(value, "__module__", None) == module.__name__
    }


def _shape(obj: Any) -> list[tuple[str, Any, Any]] | None:
    """Parameter names, kinds and defaults (annotations differ: .pyx vs .py)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None  # not inspectable (a cdef class's __init__)
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


@needs_ext
def test_same_public_names() -> None:
    assert ext is not None
    assert _defined_in(pure) == _defined_in(ext) == set(CONTRACT)


@needs_ext
@pytest.mark.parametrize("name", CONTRACT)
def test_same_signatures(name: str) -> None:
    assert ext is not None
    p, e = getattr(pure, name), getattr(ext, name)
    assert isinstance(p, type) == isinstance(e, type)
    if isinstance(p, type):
        methods = {m for m in dir(p) if not m.startswith("_")}
        assert methods == {m for m in dir(e) if not m.startswith("_")}
        pairs = [(getattr(p, m), getattr(e, m)) for m in methods] + [(p, e)]
    else:
        pairs = [(p, e)]
    for py_obj, ext_obj in pairs:
        py_shape, ext_shape = _shape(py_obj), _shape(ext_obj)
        if py_shape is not None and ext_shape is not None:
            assert py_shape == ext_shape, (name, py_obj)
    assert _shape(p) is not None  # the pure twin, at least, is always inspectable


# --- payloads and unique-key hashing -----------------------------------------


@needs_ext
@EXAMPLES
@given(json_values)
def test_encoders_agree(value: Any) -> None:
    assert ext is not None
    assert ext.encode_payload(value) == pure.encode_payload(value)
    assert ext.canonical_json(value) == pure.canonical_json(value)
    assert ext.hash_of(value) == pure.hash_of(value)


@pytest.mark.parametrize("impl", IMPLS)
@EXAMPLES
@given(value=json_values)
def test_encode_payload_round_trips(impl: types.ModuleType, value: Any) -> None:
    data = impl.encode_payload(value)
    assert isinstance(data, bytes)
    assert same(orjson.loads(data), value)
    canonical = impl.canonical_json(value)
    assert orjson.loads(canonical) == value
    assert impl.hash_of(value) == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize("impl", IMPLS)
@EXAMPLES
@given(value=float_free_values)
def test_canonical_json_is_sorted_compact_json(impl: types.ModuleType, value: Any) -> None:
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert impl.canonical_json(value) == expected
    assert impl.hash_of(value) == hashlib.sha256(expected).hexdigest()


@dataclasses.dataclass
class Point:
    x: float
    y: float


@dataclasses.dataclass
class Unsorted:
    z: int
    a: Any


@pytest.mark.parametrize("impl", IMPLS)
def test_canonical_json_sorts_dataclass_fields(impl: types.ModuleType) -> None:
    """orjson writes a dataclass's fields in their declared order; the
    canonical form sorts them like any object's keys, nested ones included."""
    value = {"k": Unsorted(1, [Unsorted(2, None)])}
    assert impl.canonical_json(value) == b'{"k":{"a":[{"a":null,"z":2}],"z":1}}'
    assert impl.hash_of(Unsorted(1, 2)) == impl.hash_of({"a": 2, "z": 1})


@pytest.mark.parametrize("impl", IMPLS)
def test_tuples_and_dataclasses_encode_as_json(impl: types.ModuleType) -> None:
    value = {"b": (1, "two"), "a": Point(0.5, -1.0)}
    assert impl.encode_payload(value) == b'{"b":[1,"two"],"a":{"x":0.5,"y":-1.0}}'
    assert impl.canonical_json(value) == b'{"a":{"x":0.5,"y":-1.0},"b":[1,"two"]}'


class Opaque:
    def __repr__(self) -> str:
        return "Opaque(7)"


nan, inf = float("nan"), float("inf")
# (value, what the message must mention)
BAD_PAYLOADS = [
    pytest.param(nan, "nan", id="nan"),
    pytest.param(inf, "inf", id="inf"),
    pytest.param(-inf, "-inf", id="-inf"),
    pytest.param([1.0, {"a": [2, -inf]}], "-inf", id="nested -inf"),
    pytest.param({"a": (1, nan)}, "nan", id="nan in tuple"),
    pytest.param({"p": Point(1.0, nan)}, "nan", id="nan in dataclass"),
    pytest.param(2**64, "64-bit", id="2**64"),
    pytest.param(-(2**63) - 1, "64-bit", id="-2**63-1"),
    pytest.param([0, {"big": 10**30}], "64-bit", id="nested 10**30"),
    pytest.param("\ud800", "utf-8", id="lone surrogate"),
    pytest.param({"k": ["ok", "lone \udfff surrogate"]}, "utf-8", id="nested lone surrogate"),
    pytest.param({1: "x"}, "key", id="int key"),
    pytest.param({"a": {None: 1}}, "key", id="nested None key"),
    pytest.param(object(), "object", id="object"),
    pytest.param({"o": Opaque()}, "Opaque", id="nested object"),
    pytest.param(b"bytes", "bytes", id="bytes"),
    pytest.param({1, 2}, "set", id="set"),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("func", ["encode_payload", "canonical_json", "hash_of"])
@pytest.mark.parametrize(("value", "mention"), BAD_PAYLOADS)
def test_bad_payloads_are_refused(impl: types.ModuleType, func: str, value: Any, mention: str) -> None:
    with pytest.raises(zizq.InvalidPayload) as info:
        getattr(impl, func)(value)
    assert isinstance(info.value, zizq.ZizqError)
    assert isinstance(info.value, zizq.ValidationError)
    assert mention.lower() in str(info.value).lower()


@needs_ext
@pytest.mark.parametrize("func", ["encode_payload", "canonical_json"])
@pytest.mark.parametrize(("value", "mention"), BAD_PAYLOADS)
def test_bad_payload_messages_agree(func: str, value: Any, mention: str) -> None:
    assert ext is not None
    with pytest.raises(zizq.InvalidPayload) as from_pure:
        getattr(pure, func)(value)
    with pytest.raises(zizq.InvalidPayload) as from_ext:
        getattr(ext, func)(value)
    assert str(from_pure.value) == str(from_ext.value)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("value", [2**64, Opaque()], ids=["2**64", "Opaque(7)"])
def test_bad_payload_message_names_the_value(impl: types.ModuleType, value: Any) -> None:
    with pytest.raises(zizq.InvalidPayload, match=re.escape(repr(value))):
        impl.encode_payload({"key": [value]})


# --- golden bytes --------------------------------------------------------------


def test_golden_file_holds_the_ruby_vectors() -> None:
    by_tagged = {case["tagged"]: case["value"] for case in HASH_CASES}
    for _tag, args, kwargs, key in RUBY_VECTORS:
        assert by_tagged[key] == {"args": args, "kwargs": kwargs}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", HASH_CASES, ids=[case["name"] for case in HASH_CASES])
def test_golden_hashes(impl: types.ModuleType, case: dict[str, Any]) -> None:
    value = case["value"]
    assert impl.encode_payload(value) == case["payload"].encode("utf-8")
    assert impl.canonical_json(value) == case["canonical"].encode("utf-8")
    assert impl.hash_of(value) == case["hash"] == hashlib.sha256(case["canonical"].encode("utf-8")).hexdigest()
    assert case["tagged"] == f"{case['tag']}:{case['hash']}"


@pytest.mark.parametrize("case", HASH_CASES, ids=[case["name"] for case in HASH_CASES])
def test_golden_unique_keys(case: dict[str, Any]) -> None:
    # Through the public API, on whichever path the chooser loaded.
    assert zizq.UniqueKey.hash_of(case["value"]).key == case["hash"]
    assert zizq.UniqueKey.tagged_hash_of(case["tag"], case["value"]).key == case["tagged"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("tag", "args", "kwargs", "key"), RUBY_VECTORS)
def test_ruby_vectors(impl: types.ModuleType, tag: str, args: list[Any], kwargs: dict[str, Any], key: str) -> None:
    assert f"{tag}:{impl.hash_of({'args': args, 'kwargs': kwargs})}" == key
    # Key order in the value must not matter.
    assert f"{tag}:{impl.hash_of({'kwargs': kwargs, 'args': args})}" == key


@pytest.mark.parametrize(("tag", "args", "kwargs", "key"), RUBY_VECTORS)
def test_ruby_vectors_through_unique_key(tag: str, args: list[Any], kwargs: dict[str, Any], key: str) -> None:
    unique = zizq.UniqueKey.tagged_hash_of(tag, {"args": args, "kwargs": kwargs})
    assert unique.key == key
    assert len(unique.key) == len(tag) + 1 + 64
    assert unique.unique_while is None


# --- ids ---------------------------------------------------------------------------


@needs_ext
@EXAMPLES
@given(id_fields)
def test_encode_id_agrees(fields: tuple[int, int, int, int]) -> None:
    assert ext is not None
    assert ext.encode_id(*fields) == pure.encode_id(*fields)


@pytest.mark.parametrize("impl", IMPLS)
@EXAMPLES
@given(fields=id_fields)
def test_encode_id_matches_reference(impl: types.ModuleType, fields: tuple[int, int, int, int]) -> None:
    text = impl.encode_id(*fields)
    assert text == reference_id(*fields)
    assert ID_RE.fullmatch(text)
    n = int(text, 36)
    assert (n >> 80, (n >> 56) & 0xFFFFFF, (n >> 32) & 0xFFFFFF, n & 0xFFFFFFFF) == fields


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", ID_CASES, ids=[case["id"] for case in ID_CASES])
def test_golden_ids(impl: types.ModuleType, case: dict[str, Any]) -> None:
    fields = (case["timestamp"], case["counter_hi"], case["counter_lo"], case["entropy"])
    assert impl.encode_id(*fields) == case["id"] == reference_id(*fields)


@needs_ext
@pytest.mark.parametrize(
    "fields",
    [(2**48, 0, 0, 0), (0, 0, 0, 2**32), (-1, 0, 0, 0)],
    ids=["timestamp 2**48", "entropy 2**32", "timestamp -1"],
)
def test_encode_id_out_of_range_agrees(fields: tuple[int, int, int, int]) -> None:
    assert ext is not None
    assert _outcome(pure.encode_id, *fields) == _outcome(ext.encode_id, *fields)


@pytest.mark.parametrize("impl", IMPLS)
def test_id_generator(impl: types.ModuleType) -> None:
    gen = impl.IdGenerator()
    ids = [gen.generate() for _ in range(10_000)]
    now_ms = time.time_ns() // 1_000_000
    assert all(ID_RE.fullmatch(i) for i in ids)
    assert all(a < b for a, b in itertools.pairwise(ids))
    assert len(set(ids)) == len(ids)
    for text in (ids[0], ids[-1]):
        assert abs((int(text, 36) >> 80) - now_ms) < 1000


@pytest.mark.parametrize("impl", IMPLS)
def test_id_generators_are_independent(impl: types.ModuleType) -> None:
    a, b = impl.IdGenerator(), impl.IdGenerator()
    ids = [g.generate() for _ in range(500) for g in (a, b)]
    assert len(set(ids)) == len(ids)


def test_pure_id_generator_survives_a_clock_step_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only the twin's clock can be swapped; the extension binds time_ns at import.
    clock = [1_700_000_000_000]
    monkeypatch.setattr(pure, "time", types.SimpleNamespace(time_ns=lambda: clock[0] * 1_000_000))
    gen = pure.IdGenerator()
    first = gen.generate()
    clock[0] -= 5_000  # within the 10 s allowance: keep counting on the old timestamp
    second = gen.generate()
    assert first < second
    assert int(second, 36) >> 80 == 1_700_000_000_000
    clock[0] -= 20_000  # beyond it: restart from the clock
    third = gen.generate()
    assert int(third, 36) >> 80 == 1_700_000_000_000 - 25_000

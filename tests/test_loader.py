"""The include loader (zizq._protocol.scripts.expand), the pass that leaves
unused helpers out (shake), and the scripts they build."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import redis

from zizq._protocol.scripts import expand, lua_dir, script, shake

SCRIPTS = sorted(p.stem for p in lua_dir().glob("*.lua"))


def write(base: Path, name: str, content: str) -> None:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def test_include_is_pasted_in_place(tmp_path: Path) -> None:
    write(tmp_path, "inc/a.lua", "local A = 1\n")
    source = 'local before = 0\n--@include "inc/a.lua"\nlocal after = A\n'
    assert expand(source, tmp_path) == "local before = 0\nlocal A = 1\n\nlocal after = A\n"


def test_include_named_twice_is_pasted_once(tmp_path: Path) -> None:
    write(tmp_path, "a.lua", "local A = 1")
    out = expand('--@include "a.lua"\nlocal x = A\n--@include "a.lua"\n', tmp_path)
    assert out.count("local A = 1") == 1
    assert "--@include" not in out
    assert out.index("local A = 1") < out.index("local x = A")


def test_nested_includes_resolve_from_the_base(tmp_path: Path) -> None:
    write(tmp_path, "includes/outer.lua", '--@include "includes/inner.lua"\nlocal OUTER = INNER')
    write(tmp_path, "includes/inner.lua", "local INNER = 1")
    out = expand('--@include "includes/outer.lua"\n', tmp_path)
    assert out.index("local INNER = 1") < out.index("local OUTER = INNER")
    assert "--@include" not in out


def test_recursive_includes_terminate_and_paste_each_file_once(tmp_path: Path) -> None:
    write(tmp_path, "a.lua", '--@include "b.lua"\nlocal A = 1')
    write(tmp_path, "b.lua", '--@include "a.lua"\nlocal B = 2')
    out = expand('--@include "a.lua"\n--@include "b.lua"\nreturn A + B\n', tmp_path)
    assert out.count("local A = 1") == 1
    assert out.count("local B = 2") == 1
    assert "--@include" not in out
    assert out.rstrip().endswith("return A + B")


def test_self_include_terminates(tmp_path: Path) -> None:
    write(tmp_path, "a.lua", '--@include "a.lua"\nlocal A = 1')
    assert expand('--@include "a.lua"\n', tmp_path).count("local A = 1") == 1


def test_seen_is_shared_across_calls(tmp_path: Path) -> None:
    write(tmp_path, "a.lua", "local A = 1")
    seen: set[str] = set()
    assert "local A = 1" in expand('--@include "a.lua"', tmp_path, seen)
    assert seen == {"a.lua"}
    assert "local A = 1" not in expand('--@include "a.lua"', tmp_path, seen)


def test_only_a_whole_include_line_counts(tmp_path: Path) -> None:
    write(tmp_path, "a.lua", "local A = 1")
    source = 'local s = \'--@include "a.lua"\'\n  --@include "a.lua"\n'
    assert expand(source, tmp_path) == source


def test_source_without_includes_is_unchanged(tmp_path: Path) -> None:
    source = "-- a comment\nreturn 1\n"
    assert expand(source, tmp_path) == source


def test_missing_include_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape("'includes/nowhere.lua'")):
        expand('--@include "includes/nowhere.lua"\n', tmp_path)


def test_missing_nested_include_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "a.lua", '--@include "gone.lua"\n')
    with pytest.raises(FileNotFoundError, match=re.escape("'gone.lua'")):
        expand('--@include "a.lua"\n', tmp_path)


HELPERS = """\
local LIMIT = 10
local UNUSED = 3
local TABLE = {
  a = 1,
}
local function used(x)
  return x + LIMIT
end
local function only_in_a_comment(x)
  return x
end
local function only_by_the_unused(x)
  return x
end
local function unused(x)
  return only_by_the_unused(x) + UNUSED
end
local made = redis.call('TIME')
"""


def test_shake_leaves_out_what_nothing_names() -> None:
    uses = "--[[ unused(1) is not a use ]]\n-- only_in_a_comment(1) is not one\nreturn used(1) + TABLE.a\n"
    out = shake(HELPERS + uses)
    assert "local function used(x)" in out
    assert "local LIMIT = 10" in out  # named by a helper kept
    assert "local TABLE = {\n  a = 1,\n}\n" in out
    for gone in ("UNUSED =", "function unused", "function only_by_the_unused", "function only_in_a_comment"):
        assert gone not in out
    # A value made with a call stays, named or not: the call may matter.
    assert "local made = redis.call('TIME')" in out


def test_shake_keeps_a_helper_named_in_a_string_or_after_code() -> None:
    out = shake(HELPERS + "local s = 'unused' -- only_in_a_comment\nreturn s\n")
    assert "local function unused(x)" in out
    assert "local function only_by_the_unused(x)" in out
    assert "local function only_in_a_comment(x)" in out


def test_shake_leaves_a_script_without_helpers_unchanged() -> None:
    source = "--[[ header naming used ]]\nlocal x = KEYS[1]\nreturn x\n"
    assert shake(source) == source


def test_shaken_scripts_run_the_same(r: redis.Redis) -> None:
    """A helper left out is one nothing calls: a script built from the
    helpers above returns what the unshaken one returns."""
    source = HELPERS + "return used(1) + TABLE.a\n"
    assert r.eval(shake(source), 0) == r.eval(source, 0) == 12


def test_the_scripts_are_all_there() -> None:
    assert {"enqueue", "take", "ack", "fail", "release", "get"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_is_expanded_and_documented(name: str) -> None:
    s = script(name)
    assert s.name == name
    assert s.sha == hashlib.sha1(s.source.encode()).hexdigest()
    assert not re.search(r"^\s*--@include", s.source, re.MULTILINE)
    # A shared helper is pasted once at most.
    assert s.source.count("local function fail_with(") <= 1
    assert s.source.startswith("--[[")
    header = s.source[: s.source.index("]]")]
    assert "KEYS[1]" in header
    assert "Returns" in header


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_compiles_in_redis(r: redis.Redis, name: str) -> None:
    s = script(name)
    assert r.script_load(s.source) == s.sha
    assert r.script_exists(s.sha) == [True]

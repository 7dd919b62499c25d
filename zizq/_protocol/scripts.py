"""Loads the Lua scripts in ``lua/`` and runs them with EVALSHA.

A script may pull in shared code with a line ``--@include "includes/x.lua"``;
each include is pasted once, in place. The ``lua/`` folder ships inside the
wheel as ``zizq/lua``; in a source checkout it is the top-level ``lua/``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_INCLUDE = re.compile(r'^--@include "([^"]+)"\s*$', re.MULTILINE)


def lua_dir() -> Path:
    """The folder holding the scripts."""
    package = Path(__file__).resolve().parent.parent  # zizq/
    for candidate in (package / "lua", package.parent / "lua"):
        if (candidate / "enqueue.lua").is_file():
            return candidate
    raise FileNotFoundError(f"zizq's Lua scripts are missing: no lua/ in or beside {package}")


def expand(source: str, base: Path, seen: set[str] | None = None) -> str:
    """``source`` with every include line replaced by the file it names
    (relative to ``base``), recursively; a file already pasted is skipped."""
    seen = set() if seen is None else seen

    def paste(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in seen:
            return f"-- {name}: already included"
        seen.add(name)
        path = base / name
        if not path.is_file():
            raise FileNotFoundError(f"Lua include {name!r} not found in {base}")
        return expand(path.read_text(), base, seen)

    return _INCLUDE.sub(paste, source)


@dataclass(frozen=True)
class Script:
    """One operation's Lua source, with its SHA1 for EVALSHA."""

    name: str
    source: str
    sha: str


@cache
def script(name: str) -> Script:
    """The script ``lua/<name>.lua``, includes expanded."""
    base = lua_dir()
    source = expand((base / f"{name}.lua").read_text(), base)
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())

"""Loads the Lua scripts in ``lua/`` and runs them with EVALSHA.

A script may pull in shared code with a line ``--@include "includes/x.lua"``;
each include is pasted once, in place, and the top-level helpers the script
never names are then left out (``shake``): Redis runs a script's top level
on every call, so each helper it defines costs every call. The ``lua/``
folder ships inside the wheel as ``zizq/lua``; in a source checkout it is
the top-level ``lua/``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

_INCLUDE = re.compile(r'^--@include "([^"]+)"\s*$', re.MULTILINE)
# A top-level definition ``shake`` may leave out: a function, from its
# ``local function`` line to the ``end`` at the start of a line; or a value
# made without a call (no parenthesis): one line, or a table from a line
# ending in ``{`` to the ``}`` at the start of a line.
_DEFINITION = re.compile(
    r"^local function (\w+)\(.*?^end\b[^\n]*\n"
    r"|^local (\w+) = \{[ \t]*(?:--[^\n]*)?\n[^()]*?^\}[^\n]*\n"
    r"|^local (\w+) = [^(){\n]*(?:\{[^(){}\n]*\}[^(){\n]*)?\n",
    re.MULTILINE | re.DOTALL,
)
_WORD = re.compile(r"\w+")
_COMMENT = re.compile(r"--\[\[.*?\]\]|^[ \t]*--[^\n]*", re.MULTILINE | re.DOTALL)


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


def shake(source: str) -> str:
    """``source`` without the top-level definitions (see ``_DEFINITION``)
    that the rest of it never names: a helper named only by helpers left
    out goes too. A name counts wherever it is a whole word outside the
    comments (``--[[ ]]`` blocks and lines that start with ``--``), strings
    included, so a doubt keeps the helper."""
    found = {m.start(): m for m in _DEFINITION.finditer(source)}
    named = set(_WORD.findall(_COMMENT.sub("", _DEFINITION.sub("", source))))
    grew = True
    while grew:
        grew = False
        for start, m in list(found.items()):
            if (m.group(1) or m.group(2) or m.group(3)) in named:
                named.update(_WORD.findall(_COMMENT.sub("", m.group(0))))
                del found[start]
                grew = True
    out, at = [], 0
    for start in sorted(found):
        out.append(source[at:start])
        at = found[start].end()
    out.append(source[at:])
    return "".join(out)


@dataclass(frozen=True)
class Script:
    """One operation's Lua source, with its SHA1 for EVALSHA."""

    name: str
    source: str
    sha: str


@cache
def script(name: str) -> Script:
    """The script ``lua/<name>.lua``, includes expanded and unused helpers
    left out."""
    base = lua_dir()
    source = shake(expand((base / f"{name}.lua").read_text(), base))
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())

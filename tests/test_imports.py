"""The package's import structure: every module imports on its own, the
import graph has no cycle, and no module takes a private name from another.

The graph is read from the source (``ast``), not from a running import: an
edge A -> B for each ``import zizq.B`` or ``from zizq.B import x`` in module
A, wherever it is: at module level, inside a function or method (a deferred
import is a dependency all the same, only a hidden one), and under ``if
TYPE_CHECKING:``. A type-only import does not run, but it is a dependency of
the design: the module cannot be read or type-checked without the other one,
and a helper that needs part of a bigger object should take a small Protocol
of what it uses instead (STYLE.md). Messages mark such imports.

``from zizq.P import m`` where ``m`` is a module of P is an edge to
``zizq.P.m``; importing a name from a package (``from zizq import
__version__``) is an edge to that package's ``__init__``. A module's parent
packages, which Python imports first, are not edges: every module would
otherwise depend on ``zizq/__init__.py``, which imports the whole public API.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "zizq"

def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_module(name: str) -> bool:
    """Whether ``name`` (``zizq.a.b``) is a module or package of zizq, a
    compiled one (``zizq._speedups``) included."""
    if name in MODULES:
        return True
    path = ROOT.joinpath(*name.split("."))
    return any(path.parent.glob(path.name + ".*")) or path.is_dir()


@dataclass(frozen=True)
class Import:
    """One import statement of one module: ``source`` takes ``names`` (empty
    for ``import x``) from ``target``, at ``line``; ``typing`` when it is
    under ``if TYPE_CHECKING:``."""

    source: str
    target: str
    names: tuple[str, ...]
    line: int
    typing: bool = False

    def __str__(self) -> str:
        return f"{self.source} line {self.line} imports {self.target}" + (" (TYPE_CHECKING)" if self.typing else "")


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST, typing: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of ``tree``, at any depth, and whether it is
    only for the type checker (in the body of an ``if TYPE_CHECKING:``)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, typing
        elif isinstance(node, ast.If) and _type_checking_only(node):
            for inner in node.body:
                yield from _statements(ast.Module(body=[inner], type_ignores=[]), True)
            for inner in node.orelse:
                yield from _statements(ast.Module(body=[inner], type_ignores=[]), typing)
        else:
            yield from _statements(node, typing)


def imports_of(name: str) -> list[Import]:
    """The zizq imports of module ``name``, one per target module."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    found = []
    for node, typing in _statements(tree):
        line = node.lineno
        if isinstance(node, ast.Import):
            found += [Import(name, a.name, (), line, typing) for a in node.names if a.name.split(".")[0] == "zizq"]
        elif node.module and node.level == 0 and node.module.split(".")[0] == "zizq":
            names = [a.name for a in node.names]
            submodules = [n for n in names if is_module(f"{node.module}.{n}")]
            found += [Import(name, f"{node.module}.{n}", (), line, typing) for n in submodules]
            rest = tuple(n for n in names if n not in submodules)
            if rest:
                found.append(Import(name, node.module, rest, line, typing))
    return found


def graph() -> dict[str, list[Import]]:
    """Module -> its imports of other zizq modules (.py ones)."""
    return {m: [i for i in imports_of(m) if i.target in MODULES and i.target != m] for m in MODULES}


def strongly_connected(edges: dict[str, list[Import]]) -> list[frozenset[str]]:
    """The sets of modules that import each other, directly or not (Tarjan's
    algorithm); a module in no cycle is left out."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for edge in edges[v]:
            w = edge.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            members = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                members.add(w)
                if w == v:
                    break
            if len(members) > 1:
                found.append(frozenset(members))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def path(edges: dict[str, list[Import]], start: str, goal: str) -> list[Import] | None:
    """A shortest chain of imports from ``start`` to ``goal``, or None."""
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    for v in queue:  # breadth first
        for edge in edges.get(v, []):
            if edge.target == goal:
                return [*paths[v], edge]
            if edge.target not in paths:
                paths[edge.target] = [*paths[v], edge]
                queue.append(edge.target)
    return None


def describe(cycle: list[Import]) -> str:
    """'zizq.a -> zizq.b -> zizq.a' and where each import is."""
    chain = " -> ".join([cycle[0].source, *(i.target for i in cycle)])
    return f"{chain} ({'; '.join(map(str, cycle))})"


@pytest.mark.timeout(240)  # a fresh interpreter per module: about 0.5 s each, 1.5 s on a loaded machine
def test_each_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    """Each module imported first, in an interpreter of its own (after the
    package's __init__, as any import of it is): a module that works only
    when another was imported before it fails here."""

    def imports(name: str) -> str | None:
        out = subprocess.run(
            [sys.executable, "-W", "error", "-c", f"import {name}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return f"{name}:\n{out.stderr.strip()}" if out.returncode else None

    names = [name for name in MODULES if name != "zizq.__main__"]  # __main__ runs the command line when imported
    with ThreadPoolExecutor(4) as pool:
        failed = [problem for problem in pool.map(imports, names) if problem]
    assert not failed, "modules that do not import on their own:\n" + "\n".join(failed)


def cycle_report(edges: dict[str, list[Import]]) -> list[str]:
    """Each cycle of the graph, once, with the imports that make it."""
    problems = []
    for members in strongly_connected(edges):
        first = min(members)
        cycle = path({m: [i for i in edges[m] if i.target in members] for m in members}, first, first)
        assert cycle is not None
        problems.append(f"import cycle: {describe(cycle)}; modules in it: {', '.join(sorted(members))}")
    return problems


def test_no_import_cycles() -> None:
    problems = cycle_report(graph())
    assert not problems, "\n".join(problems)


def test_the_cycle_check_finds_a_cycle_and_names_it() -> None:
    def edge(a: str, b: str) -> Import:
        return Import(a, b, (), 1)

    edges = {
        "zizq.a": [edge("zizq.a", "zizq.b")],
        "zizq.b": [edge("zizq.b", "zizq.c")],
        "zizq.c": [edge("zizq.c", "zizq.a")],
        "zizq.d": [edge("zizq.d", "zizq.a")],
    }
    [problem] = cycle_report(edges)
    assert problem.startswith("import cycle: zizq.a -> zizq.b -> zizq.c -> zizq.a (zizq.a line 1 imports zizq.b;")
    assert problem.endswith("modules in it: zizq.a, zizq.b, zizq.c")
    del edges["zizq.b"][0]
    assert cycle_report(edges) == []


def test_the_graph_counts_function_level_and_type_checking_imports() -> None:
    [metrics] = [i for i in imports_of("zizq.cli.worker") if i.target == "zizq.metrics"]
    assert metrics.names == ("serve_metrics",) and not metrics.typing  # inside a function
    [worker] = [i for i in imports_of("zizq.metrics") if i.target == "zizq.worker.worker"]
    assert worker.typing and worker.names == ("Worker",)


def private_names(imp: Import) -> list[str]:
    """The names starting with ``_`` that ``imp`` takes from another module;
    dunders such as ``__version__`` are public. Importing a module whose
    name starts with ``_`` (``from zizq import _hotpath``) takes no name."""
    return [n for n in imp.names if n.startswith("_") and not (n.startswith("__") and n.endswith("__"))]


def test_no_module_imports_another_modules_private_names() -> None:
    found = [f"{i}: {', '.join(private_names(i))}" for m in MODULES for i in imports_of(m) if private_names(i)]
    assert not found, "private names imported across modules (make them public there):\n" + "\n".join(found)


def test_the_private_name_check_tells_names_from_modules() -> None:
    assert private_names(Import("zizq.a", "zizq.b", ("_hidden", "__version__", "shown"), 1)) == ["_hidden"]
    hotpath = [i for i in imports_of("zizq.job") if i.target == "zizq._hotpath"]
    assert hotpath and not private_names(hotpath[0])  # `from zizq import _hotpath, _shapes`


def test_only_zizq_otel_imports_opentelemetry() -> None:
    """zizq.otel is the one module that needs the otel extra, and nothing
    imports it: the client, the worker and the CLI run (and trace nothing)
    without it. (redis-py 8 imports opentelemetry itself when installed.)"""
    code = "import sys, zizq, zizq.worker, zizq.cli.main, zizq.testing; print('zizq.otel' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert [m for m in MODULES if "opentelemetry" in MODULES[m].read_text()] == ["zizq.otel"]
    assert [m for m in MODULES for i in imports_of(m) if i.target == "zizq.otel"] == []

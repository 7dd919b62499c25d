"""MkDocs hooks: what the site takes from the repository at build time, so
that no page holds a copy that can go stale.

A page asks for it with a comment on a line of its own:

- ``<!-- readme -->``: the whole README.md (the home page);
- ``<!-- readme-section: Title -->``: the text of the README section under
  ``## Title``, up to the next ``## `` heading;
- ``<!-- lua-header: enqueue -->``: the header comment (``--[[ ... ]]``) of
  ``lua/enqueue.lua``, exactly as it is in the file;
- ``<!-- zizq-help -->``: the ``--help`` of ``zizq`` and of every command
  and action it lists, as the installed ``zizq`` entry point prints it.

On the API reference pages, the reST markup of the docstrings (roles such
as ``:class:``, a paragraph's closing ``::``) is dropped from the HTML.

README links are written relative to the repository's root; they are made
relative to the page that includes them. A link to a repository file
outside docs/ becomes a link into ``repo_url`` when mkdocs.yml sets one,
and its bare text otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import io
import os
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKER = re.compile(r"^<!-- (readme|readme-section|lua-header|zizq-help)(?::\s*(.*?))? -->$", re.M)
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```.*?^```)", re.M | re.S)
# The width `zizq --help` wraps at, so the page does not depend on the
# terminal that builds it.
HELP_COLUMNS = "88"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace each marker comment of the page by what it names."""
    page_path = page.file.src_uri
    repo_url = (config.get("repo_url") or "").rstrip("/")

    def expand(match: re.Match[str]) -> str:
        kind, arg = match[1], (match[2] or "").strip()
        if kind == "readme":
            return rebase_links(readme(), page_path, repo_url)
        if kind == "readme-section":
            return rebase_links(readme_section(arg), page_path, repo_url, anchors_on="index.md")
        if kind == "lua-header":
            return lua_header(arg)
        return cli_help()

    return MARKER.sub(expand, markdown)


# The docstrings are written with reST's roles (:class:`zizq.Worker`) and
# literal-block colons (``example::``); the API pages render them as
# Markdown, where those would show as written.
ROLE = re.compile(r":(?:func|class|meth|attr|mod|exc|data|obj):(<code>)")
LITERAL_COLONS = re.compile(r"(?:<p>::</p>\n?|(?<=\S)::(?=</p>))")


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Drop the reST markup left in the rendered docstrings of the API pages."""
    if not page.file.src_uri.startswith("reference/"):
        return html
    html = ROLE.sub(r"\1", html)
    return LITERAL_COLONS.sub(lambda m: "" if m[0].startswith("<p>") else ":", html)


def readme() -> str:
    return (ROOT / "README.md").read_text()


def readme_section(title: str) -> str:
    """The text of the README's ``## title`` section, without its heading
    (the page has its own)."""
    text = readme()
    heading = f"\n## {title}\n"
    start = text.find(heading)
    if start < 0:
        raise ValueError(f"README.md has no section '## {title}'")
    end = text.find("\n## ", start + 1)
    return text[start + len(heading) : end if end > 0 else None]


def rebase_links(text: str, page_path: str, repo_url: str, anchors_on: str | None = None) -> str:
    """Make README links (relative to the repository's root) work from the
    page at ``page_path`` (relative to docs/). Fenced code is left alone.
    ``anchors_on``: the page that holds the README's own anchors, when it is
    not this one."""
    page_dir = os.path.dirname(page_path)

    def rebase(match: re.Match[str]) -> str:
        bang, label, target = match[1], match[2], match[3]
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
            return match[0]
        if target.startswith("#"):
            if anchors_on is None:
                return match[0]
            return f"{bang}[{label}]({os.path.relpath(anchors_on, page_dir or '.')}{target})"
        path, _, anchor = target.partition("#")
        in_repo = os.path.normpath(path)
        if in_repo.startswith("docs/") or in_repo == "docs":
            new = os.path.relpath(in_repo[len("docs/") :] or ".", page_dir or ".")
            return f"{bang}[{label}]({new}{'#' + anchor if anchor else ''})"
        if repo_url:
            return f"{bang}[{label}]({repo_url}/blob/HEAD/{in_repo}{'#' + anchor if anchor else ''})"
        return label

    parts = FENCE.split(text)
    return "".join(part if part.startswith("```") else LINK.sub(rebase, part) for part in parts)


def lua_header(name: str) -> str:
    """The opening ``--[[ ... ]]`` comment of lua/<name>.lua, as a code block."""
    path = ROOT / "lua" / f"{name}.lua"
    source = path.read_text()
    if not source.startswith("--[["):
        raise ValueError(f"{path} does not open with a --[[ ... ]] header comment")
    header = source[len("--[[") : source.index("]]")].strip("\n").removeprefix(" ")
    return f"From the header of `lua/{name}.lua`:\n\n```text\n{header}\n```\n"


@functools.cache
def cli_help() -> str:
    """``zizq --help``, then the help of each command, and of each action of
    a command that has actions, found in the help texts themselves."""
    return "\n".join(help_sections([]))


def help_sections(words: list[str]) -> list[str]:
    text = run_help(words)
    level = "###" if len(words) > 1 else "##"
    sections = [f"{level} `{' '.join(['zizq', *words])}`\n\n```text\n{text.rstrip()}\n```\n"]
    for name in subcommands(text):
        sections += help_sections([*words, name])
    return sections


def run_help(words: list[str]) -> str:
    """What ``zizq <words> --help`` prints. The CLI runs in this process
    (its console-script entry point, as installed), which saves starting a
    Python per command."""
    [entry] = importlib.metadata.entry_points(group="console_scripts", name="zizq")
    main = entry.load()
    out = io.StringIO()
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_COLUMNS
    try:
        with contextlib.redirect_stdout(out):
            main([*words, "--help"])
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise RuntimeError(f"zizq {' '.join(words)} --help exited {exc.code}") from exc
    else:
        raise RuntimeError(f"zizq {' '.join(words)} --help did not exit")
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns
    return out.getvalue()


def subcommands(help_text: str) -> list[str]:
    """The commands argparse lists under a COMMAND or ACTION positional."""
    block = re.search(r"^  (?:COMMAND|ACTION)\n((?:    .*\n|      .*\n)+)", help_text, re.M)
    if block is None:
        return []
    return re.findall(r"^    ([a-z][a-z0-9-]*)(?:\s|$)", block[1], re.M)

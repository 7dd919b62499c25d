"""Print the lowest version pyproject.toml declares for each runtime
dependency and each extra (not the dev tools, nor the docs extra's), one ``name==version`` a line:
the constraints `make lock` resolves lock/constraints-oldest.txt from."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

# Tools, not what zizq runs on: make test-oldest takes their newest releases.
DEV_EXTRAS = ("dev", "docs")
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floors() -> list[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = [*project["dependencies"], *(r for name, reqs in extras.items() if name not in DEV_EXTRAS for r in reqs)]
    lines = []
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)", requirement)
        if match is None:
            sys.exit(f"floors.py: {requirement!r} is not of the form name>=version")
        lines.append(f"{match[1]}=={match[2]}")
    return lines


if __name__ == "__main__":
    print("\n".join(floors()))

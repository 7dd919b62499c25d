"""Builds zizq, with the Cython extension zizq._speedups unless
ZIZQ_NO_EXTENSIONS=1 asks for the pure-Python build. Copies lua/ into the
package so the scripts ship inside the wheel."""

import os
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

PURE = os.environ.get("ZIZQ_NO_EXTENSIONS", "") not in ("", "0")


class BuildPyWithLua(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "zizq" / "lua"
        shutil.copytree(Path(__file__).parent / "lua", target, dirs_exist_ok=True)


ext_modules = []
if not PURE:
    from Cython.Build import cythonize

    ext_modules = cythonize(["zizq/_speedups.pyx"], language_level=3)
print(f"zizq build: {'pure Python (ZIZQ_NO_EXTENSIONS)' if PURE else 'with the Cython extension zizq._speedups'}")

setup(ext_modules=ext_modules, cmdclass={"build_py": BuildPyWithLua})

"""The ``zizq`` command line: one module per command group."""

from zizq.cli.main import main

__all__ = ("main",)

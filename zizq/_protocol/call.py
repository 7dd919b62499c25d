"""A Call: one script invocation, described without I/O (script, keys,
arguments, how to decode the reply), that either client sends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from zizq._protocol.scripts import Script
from zizq.job import (
    validate_name,
)

T = TypeVar("T")


Value = str | bytes | int | float


def prefix(namespace: str) -> str:
    """The key prefix of a namespace: ``{<namespace>}:``, one hash slot."""
    return "{" + validate_name("namespace", namespace) + "}:"


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One script call: what to send, and how to read the reply.

    ``repeat_args``, when given, are sent instead of ``args`` when the call is
    sent again after an error that may have hidden its success (enqueue then
    asks the script to look for jobs that have already run).
    """

    script: Script
    keys: tuple[str, ...]
    args: list[Value]
    decode: Callable[[Any], T]
    repeat_args: list[Value] | None = None

    def repeated(self) -> Call[T]:
        """This call as it is sent again after an error."""
        if self.repeat_args is None:
            return self
        return Call(self.script, self.keys, self.repeat_args, self.decode)

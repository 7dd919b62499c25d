"""``zizq worker -p N``: N worker processes under one supervisor.

The supervisor starts each worker as ``python -m zizq worker …`` with the
same arguments, in a process group of its own (so a Ctrl-C at a terminal
reaches the supervisor alone, which passes it on exactly once). It

- restarts a worker process that exits while the supervisor is not stopping
  (after 1 s, doubling up to 30 s while it keeps dying within 30 s of its
  start);
- forwards SIGINT and SIGTERM to every worker process: the first asks each
  to stop gracefully, a second stops them at once (see ``zizq worker``);
- waits for them all, and exits 0 if every one exited 0, else 1.

A worker process watches its supervisor too: if the supervisor dies
(SIGKILL), the worker stops gracefully by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from zizq.errors import ValidationError

log = logging.getLogger("zizq.supervisor")
ENV = "ZIZQ_SUPERVISOR_PID"
"""Set in each worker process's environment: the supervisor's pid."""
FIRST_RESTART_DELAY = 1.0  # seconds
MAX_RESTART_DELAY = 30.0  # seconds
STABLE_AFTER = 30.0  # seconds a process must run before its restart delay resets


@dataclass
class _Slot:
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = FIRST_RESTART_DELAY
    restart_at: float | None = None
    code: int | None = None  # the last exit code


class Supervisor:
    """Runs ``processes`` copies of ``command`` (an argv list) and keeps them
    running until SIGINT or SIGTERM.

    :param grace: seconds the worker processes get to exit after the first
        signal before they are killed (their shutdown timeout plus a margin).
    """

    def __init__(self, command: Sequence[str], processes: int, *, grace: float = 60.0) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValidationError(f"processes {processes!r} must be a whole number, at least 1")
        self.command = list(command)
        self.slots = [_Slot() for _ in range(processes)]
        self.grace = grace
        self.signals = 0
        self._stop_deadline: float | None = None
        # Signals caught and not yet passed on. A signal handler only
        # appends here: it runs between any two bytecodes of the main
        # thread, so it must take no lock (an Event's would deadlock when a
        # signal lands while the main thread holds it).
        self._pending: list[int] = []

    def _start(self, slot: _Slot) -> None:
        env = {**os.environ, ENV: str(os.getpid())}
        slot.proc = subprocess.Popen(self.command, env=env, process_group=0)
        slot.started = time.monotonic()
        slot.restart_at = None
        log.info("started worker process %d", slot.proc.pid)

    def _caught(self, signum: int, frame: object) -> None:
        self._pending.append(signum)

    def _forward(self, signum: int) -> None:
        self.signals += 1
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.grace
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signum)

    def _reap(self, slot: _Slot, now: float) -> None:
        assert slot.proc is not None
        code = slot.proc.poll()
        if code is None:
            return
        slot.code, pid, slot.proc = code, slot.proc.pid, None
        if self.signals:
            log.info("worker process %d exited with %d", pid, code)
            return
        if now - slot.started >= STABLE_AFTER:
            slot.delay = FIRST_RESTART_DELAY
        slot.restart_at = now + slot.delay
        log.warning("worker process %d exited with %d; restarting it in %.0fs", pid, code, slot.delay)
        slot.delay = min(slot.delay * 2, MAX_RESTART_DELAY)

    def run(self) -> int:
        """Supervise until every worker process has exited after a signal;
        returns the exit code (0: all exited 0)."""
        # Every caught signal (SIGCHLD too) also writes a byte to this pipe,
        # which ends the wait below at once.
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        previous_fd = signal.set_wakeup_fd(wake_w)
        handlers = {sig: signal.signal(sig, self._caught) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD)}
        try:
            for slot in self.slots:
                self._start(slot)
            while True:
                while self._pending:
                    signum = self._pending.pop(0)
                    if signum != signal.SIGCHLD:
                        self._forward(signum)
                now = time.monotonic()
                for slot in self.slots:
                    if slot.proc is not None:
                        self._reap(slot, now)
                    elif slot.restart_at is not None and not self.signals and now >= slot.restart_at:
                        self._start(slot)
                running = [s.proc for s in self.slots if s.proc is not None]
                if self.signals and not running:
                    break
                if self._stop_deadline is not None and now > self._stop_deadline:
                    for proc in running:
                        log.warning("worker process %d did not exit in %.0fs; killing it", proc.pid, self.grace)
                        proc.kill()
                    self._stop_deadline = None
                waits = [s.restart_at - now for s in self.slots if s.restart_at is not None and not self.signals]
                if not self._pending and select.select([wake_r], [], [], max(0.0, min([1.0, *waits])))[0]:
                    with contextlib.suppress(BlockingIOError):  # drained: the pending list says what came
                        while os.read(wake_r, 512):
                            pass
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(previous_fd)
            os.close(wake_r)
            os.close(wake_w)
        return 0 if all(s.code == 0 for s in self.slots) else 1


def watch_supervisor(supervisor: int, on_lost: Callable[[], None], interval: float = 1.0) -> bool:
    """In a worker process started by the Supervisor of pid ``supervisor``:
    call ``on_lost`` (once) when the supervisor is gone, checking every
    ``interval`` seconds from a daemon thread. False, and no thread, if it
    is gone already."""

    def lost() -> bool:
        if os.getppid() == supervisor:
            return False
        log.warning("the supervisor (pid %d) is gone; stopping", supervisor)
        return True

    if lost():
        return False

    def watch() -> None:
        while not lost():
            time.sleep(interval)
        on_lost()

    threading.Thread(target=watch, name="zizq-supervisor-watch", daemon=True).start()
    return True


def child_command(argv: Sequence[str]) -> list[str]:
    """The command a Supervisor runs for ``zizq`` arguments ``argv``."""
    return [sys.executable, "-m", "zizq", *argv]

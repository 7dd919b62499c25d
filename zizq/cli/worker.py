"""``zizq worker``: import the user's Router (or a JobKind for ``zizq
enqueue``), build the workers, and run them in this process, a group, or a
supervisor of processes; metrics on request."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import re
import sys
import threading
import traceback

from zizq.client.sync import Client
from zizq.errors import ValidationError, ZizqError
from zizq.job import JobKind
from zizq.router import Router
from zizq.worker.group import WorkerGroup
from zizq.worker.supervisor import ENV as SUPERVISOR_ENV
from zizq.worker.supervisor import Supervisor, child_command, watch_supervisor
from zizq.worker.worker import Worker


def _import(spec: str) -> object:
    """The attribute named by ``module:attribute`` (the current directory is
    on the path), or None when the module has no such attribute."""
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):  # the module's own import
            raise ZizqError(f"cannot import {module_name!r}:\n{_import_failure(exc)}") from None
        raise ZizqError(f"cannot import {module_name!r}: {exc} (the current directory is on the path)") from None
    except Exception as exc:  # a SyntaxError, or whatever the module raised
        raise ZizqError(f"cannot import {module_name!r}:\n{_import_failure(exc)}") from None
    return getattr(module, attr, None)


def load_router(spec: str) -> Router:
    """Import ``module:attribute`` (the current directory is on the path)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ZizqError(f"router {spec!r} is not in the form module:attribute, e.g. app.jobs:router")
    router = _import(spec)
    if router is None:
        module = sys.modules[module_name]
        routers = sorted(name for name, value in vars(module).items() if isinstance(value, Router))
        known = f"its Routers: {', '.join(routers)}" if routers else "it has no zizq.Router"
        raise ZizqError(f"module {module_name!r} has no attribute {attr!r} ({known})")
    if not isinstance(router, Router):
        raise ZizqError(f"{spec!r} is {type(router).__name__}, not a zizq.Router")
    return router


def _import_failure(exc: Exception) -> str:
    """What went wrong importing the user's module: the frames of the
    user's code (not importlib's, not zizq's) and the error, as a traceback
    shows them, without its header."""
    machinery = (os.path.dirname(importlib.__file__), os.path.dirname(__file__))
    lines = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if not frame.filename.startswith(("<frozen ", *machinery)):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line}")
    return "\n".join([*lines, *"".join(traceback.format_exception_only(exc)).rstrip().splitlines()])


def _queues(text: str | None) -> list[str] | None:
    return [q.strip() for q in text.split(",") if q.strip()] if text else None


def cmd_worker(args: argparse.Namespace) -> int:
    router = load_router(args.router)
    namespaces = [ns.strip() for ns in args.namespace.split(",") if ns.strip()]
    if not namespaces:
        raise ValidationError(f"--namespace {args.namespace!r} names no namespace")
    if args.processes < 1:
        raise ValidationError(f"--processes {args.processes!r} must be at least 1")
    if args.processes > 1 and args.metrics_port is not None:
        raise ValidationError("--metrics-port serves one process's metrics: use it with -p 1 (one port per process)")
    # Built (and so checked) before any process starts, so a bad option
    # fails once instead of in a restart loop.
    workers = [
        Worker(
            Client.from_url(args.url, ns),
            router,
            queues=_queues(args.queues),
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            shutdown_timeout=args.shutdown_timeout,
            heartbeat_interval=args.heartbeat_interval,
            lease=args.lease,
            cron=args.cron,
        )
        for ns in namespaces
    ]
    # Set in the worker processes a supervisor starts (and not passed on to
    # processes they start in turn).
    supervisor = os.environ.pop(SUPERVISOR_ENV, None)
    if args.processes > 1 and supervisor is None:
        return Supervisor(child_command(args.argv), args.processes, grace=args.shutdown_timeout + 30).run()
    worker: Worker | WorkerGroup = workers[0] if len(workers) == 1 else WorkerGroup(workers)
    if supervisor is not None and not watch_supervisor(int(supervisor), worker.stop):
        return 0
    if args.metrics_port is not None:
        _serve_metrics(args, namespaces[0], workers)
    worker.run()
    code = 1 if worker.forced else 0
    if any(t.name.startswith("zizq-handler") and t.is_alive() for t in threading.enumerate()):
        # Sync handlers abandoned (a second signal, or a timeout) cannot be
        # stopped, and would keep the process alive: leave without them.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
    return code


# module.path:Attribute, which names a JobKind (a type name may hold a colon
# too: --raw takes the text as a type name whatever its form).
KIND_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def load_kind(spec: str) -> type[JobKind]:
    """Import the JobKind named by ``module:Kind``."""
    kind = _import(spec)
    if not (isinstance(kind, type) and issubclass(kind, JobKind) and "NAME" in kind.__dict__):
        module_name, _, attr = spec.partition(":")
        what = (
            f"not defined: module {module_name!r} has no {attr!r}"
            if kind is None
            else f"{kind.__qualname__ if isinstance(kind, type) else type(kind).__name__}, "
            "not a zizq.JobKind subclass with a NAME"
        )
        raise ZizqError(f"{spec!r} is {what} (pass --raw to use it as a type name)")
    return kind


def _serve_metrics(args: argparse.Namespace, namespace: str, workers: list[Worker]) -> None:
    """Start the metrics server of ``zizq worker --metrics-port``. The extra
    not installed, or a port that cannot be listened on: one line."""
    try:
        from zizq.metrics import serve_metrics
    except ImportError as exc:
        raise ZizqError(
            f"--metrics-port needs {exc.name or 'prometheus-client'}: pip install 'zizq[metrics]'"
        ) from None
    try:
        # Job counts cover every namespace; queue gauges the first one's.
        serve_metrics(args.metrics_port, Client.from_url(args.url, namespace), workers, addr=args.metrics_addr)
    except OSError as exc:
        what = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ZizqError(f"--metrics-port {args.metrics_port}: cannot listen on {args.metrics_addr}: {what}") from None

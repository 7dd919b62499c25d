"""Router: finds the handler for a job by its type name."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from zizq.errors import JobKindError, NoRouteError, ValidationError
from zizq.job import Job, JobKind

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Route:
    """A handler and how to call it."""

    kind: type[JobKind] | None  # None for the fallback, which gets the Job
    handler: Callable[..., Any]
    is_async: bool
    wants_job: bool  # the handler takes the Job metadata as a second argument

    def arguments(self, job: Job) -> tuple[Any, ...]:
        """The handler's arguments for ``job``: the decoded payload (and the
        Job itself when asked for). Raises PayloadDecodeError."""
        if self.kind is None:
            return (job,)
        payload = self.kind.from_payload(job.payload)
        return (payload, job) if self.wants_job else (payload,)


def _route(kind: type[JobKind] | None, handler: Callable[..., Any]) -> Route:
    if not callable(handler):
        raise JobKindError(f"handler {handler!r} is not callable")
    params = [
        p
        for p in inspect.signature(handler).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return Route(kind, handler, inspect.iscoroutinefunction(handler), len(params) >= 2)


def _name(thing: object) -> str:
    """A class or function as ``module.qualname``."""
    return f"{getattr(thing, '__module__', '?')}.{getattr(thing, '__qualname__', repr(thing))}"


class Router:
    """Maps job type names to handlers.

    ::

        router = zizq.Router()

        @router.handler
        async def send_email(job: SendEmail) -> None: ...

        router.route(Heartbeat, on_heartbeat)     # the same, without a decorator

    A handler takes the payload (a JobKind instance), and optionally the
    :class:`zizq.Job` metadata as a second argument. It may be sync (run in
    the worker's thread pool) or async. Each NAME has one handler: routing
    it to another raises :class:`zizq.JobKindError`. A job whose type has no
    route fails with :class:`zizq.NoRouteError` unless a fallback is set.
    """

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self._fallback: Route | None = None
        self.middleware: list[Callable[..., Any]] = []

    def use(self, fn: F) -> F:
        """Add dequeue middleware ``async def fn(job, call_next)`` wrapping
        every handler call (see :mod:`zizq.middleware`); the first added runs
        outermost. Returns ``fn``, so it works as a decorator."""
        if not inspect.iscoroutinefunction(fn):
            raise ValidationError(f"dequeue middleware {fn!r} must be an async function: async def fn(job, call_next)")
        self.middleware.append(fn)
        return fn

    def route(self, kind: type[JobKind], handler: Callable[..., Any]) -> None:
        """Send jobs of ``kind`` (by its NAME) to ``handler``."""
        if not (isinstance(kind, type) and issubclass(kind, JobKind) and "NAME" in kind.__dict__):
            raise JobKindError(f"{kind!r} is not a JobKind subclass with a NAME")
        route = _route(kind, handler)
        earlier = self._routes.get(kind.NAME)
        if earlier is not None and (earlier.kind, earlier.handler) != (kind, handler):
            raise JobKindError(
                f"job type {kind.NAME!r} ({_name(kind)}) has a handler already, {_name(earlier.handler)}; "
                f"cannot route it to {_name(handler)} too: one handler per job type"
            )
        self._routes[kind.NAME] = route

    def handler(self, fn: F) -> F:
        """Decorator: route the JobKind named by the first parameter's annotation."""
        try:
            hints = typing.get_type_hints(fn)
        except (NameError, TypeError) as exc:
            # A string annotation (``from __future__ import annotations``)
            # resolves in the handler's module globals only: a JobKind defined
            # inside a function is not there. (TypeError: not a function at all.)
            raise JobKindError(
                f"handler {getattr(fn, '__qualname__', fn)}: cannot resolve its annotations ({exc}); "
                f"register it with router.route(Kind, {getattr(fn, '__name__', 'handler')}) instead"
            ) from exc
        params = list(inspect.signature(fn).parameters)
        kind = hints.get(params[0]) if params else None
        if kind is None:
            raise JobKindError(f"{fn.__qualname__}: annotate the first parameter with its JobKind")
        self.route(kind, fn)
        return fn

    def fallback(self, fn: F) -> F:
        """Decorator: handle jobs of every unrouted type; ``fn(job: zizq.Job)``."""
        self._fallback = _route(None, fn)
        return fn

    def lookup(self, type_name: str) -> Route:
        """The route for a type name; raises NoRouteError if none."""
        route = self._routes.get(type_name, self._fallback)
        if route is None:
            raise NoRouteError(f"no route registered for job type {type_name!r}")
        return route

    @property
    def queues(self) -> list[str]:
        """The queues the routed JobKinds enqueue to by default (their QUEUE)."""
        return sorted({r.kind.QUEUE for r in self._routes.values() if r.kind is not None})

    @property
    def types(self) -> list[str]:
        """The job type names with a route."""
        return sorted(self._routes)

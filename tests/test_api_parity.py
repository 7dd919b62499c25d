"""The two front doors have one API: every public method of Client has an
AsyncClient twin (and the other way round) with the same parameters, and is
awaited there unless it is one of the documented exceptions. The options
each method takes are declared once (zizq/_protocol/options.py)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

import pytest

import zizq
from zizq.options import EnqueueOptions

from .jobs_app import SendEmail

# Methods whose twins differ in name: the context-manager protocol.
RENAMED = {"__enter__": "__aenter__", "__exit__": "__aexit__"}
# Plain (not awaited) on AsyncClient too: construction, registering
# middleware, and making a batch (opened by ``async with``).
NOT_AWAITED = {"__init__", "from_url", "use", "batch"}
# An async iterator on AsyncClient (``async for``), an iterator on Client.
ITERATORS = {"iter_jobs"}
# Parameters whose annotation differs: middleware is a coroutine on
# AsyncClient.
OWN_TYPES = {("use", "fn")}
# Client.redis is an attribute, AsyncClient.redis a property (the redis-py
# client of the running event loop).
NOT_COMPARED = {"redis"}


def public(cls: type) -> dict[str, Any]:
    """The methods and properties of ``cls`` a user calls, by name (the
    context-manager methods under their Client names)."""
    twins = {async_name: name for name, async_name in RENAMED.items()}
    found = {}
    for name in dir(cls):
        if name in NOT_COMPARED or (name.startswith("_") and name not in {*NOT_AWAITED, *RENAMED, *twins}):
            continue
        found[twins.get(name, name)] = inspect.getattr_static(cls, name)
    return found


def function(member: Any) -> Callable[..., Any]:
    return member.__func__ if isinstance(member, (classmethod, staticmethod)) else member


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    return [(p.name, p.kind, p.default, p.annotation) for p in inspect.signature(fn).parameters.values()]


def test_every_method_has_a_twin() -> None:
    sync, aio = public(zizq.Client), public(zizq.AsyncClient)
    assert sorted(sync) == sorted(aio)
    assert len(sync) > 40  # the mixins' methods are seen too


@pytest.mark.parametrize("name", sorted(public(zizq.Client)))
def test_same_parameters_and_awaited(name: str) -> None:
    check_twins(name)


def check_twins(name: str) -> None:
    sync = inspect.getattr_static(zizq.Client, name)
    aio = inspect.getattr_static(zizq.AsyncClient, RENAMED.get(name, name))
    assert type(sync) is type(aio)  # both methods, classmethods or properties
    if isinstance(sync, property):
        return
    sync_fn, aio_fn = function(sync), function(aio)
    sync_params, aio_params = parameters(sync_fn), parameters(aio_fn)
    for params in (sync_params, aio_params):
        for i, (param, kind, default, _) in enumerate(params):
            if (name, param) in OWN_TYPES:
                params[i] = (param, kind, default, "(its own)")
    assert sync_params == aio_params
    assert not inspect.iscoroutinefunction(sync_fn) and not inspect.isasyncgenfunction(sync_fn)
    if name in ITERATORS:
        assert inspect.isgeneratorfunction(sync_fn) and inspect.isasyncgenfunction(aio_fn)
    else:
        assert inspect.iscoroutinefunction(aio_fn) is (name not in NOT_AWAITED)


@pytest.mark.parametrize("side", [zizq.Client, zizq.AsyncClient])
def test_a_parameter_on_one_side_only_is_caught(side: type, monkeypatch: pytest.MonkeyPatch) -> None:
    original = function(inspect.getattr_static(side, "get_job"))

    def get_job(self: Any, job_id: str, *, fresh: bool = False) -> Any:
        return original(self, job_id)

    async def get_job_async(self: Any, job_id: str, *, fresh: bool = False) -> Any:
        return await original(self, job_id)

    check_twins("get_job")
    monkeypatch.setattr(side, "get_job", get_job if side is zizq.Client else get_job_async)
    with pytest.raises(AssertionError, match="fresh"):
        check_twins("get_job")


def test_enqueue_request_attributes_are_the_options() -> None:
    """zizq.Enqueue carries each option as a typed attribute for middleware;
    they are the options of EnqueueOptions, with the same types, None when
    not given."""
    hints = typing.get_type_hints(zizq.Enqueue)
    assert hints.pop("job") == zizq.JobKind | None
    assert hints.pop("type") == str | None
    assert hints.pop("payload") == Any
    assert hints.pop("batch_id") == str | None
    assert hints == typing.get_type_hints(EnqueueOptions)
    item = zizq.Enqueue(None, priority=3)
    assert {name: getattr(item, name) for name in hints} == {**dict.fromkeys(hints), "priority": 3}


@pytest.mark.parametrize(
    ("call", "known"),
    [
        (lambda c: c.enqueue(SendEmail(to="a@b.c"), prority=1), ""),
        (lambda c: c.enqueue_raw("t", 1, prority=1), ""),
        (lambda c: zizq.Enqueue(None, prority=1), ""),  # type: ignore[call-arg]
        (lambda c: c.patch_job("x" * 25, prority=1), "; the options are .*ready_at"),
        (lambda c: c.patch_jobs(zizq.Filter(), prority=1), "; the options are .*ready_at"),
        (lambda c: c.set_defaults(prority=1), "; the options are .*max_recoveries"),
    ],
)
def test_an_unknown_option_is_named(call: Callable[[zizq.Client], Any], known: str) -> None:
    """A keyword no option has is refused before anything is sent, as
    Python refuses a keyword a function does not take, naming it."""
    client = zizq.Client.from_url("redis://127.0.0.1:1/0", retry_for=0)
    with pytest.raises(TypeError, match=rf"unexpected keyword argument 'prority'{known}"):
        call(client)

"""The types a JobKind field can hold, as shapes that check values and
decode JSON back into them.

A shape is made once per annotation (when its JobKind class is defined, or at
its first use when the annotation names a class defined later). It checks a
value when a job is built and, at the worker, turns a decoded JSON value into
what the field holds: nested dataclasses from objects, tuples from arrays.

The rules, as README.md states them: ``bool`` is not an ``int`` (JSON tells
them apart); an ``int`` is a ``float`` (JSON has one number type); ``list[X]``
takes a list, ``tuple[...]`` a tuple; dict keys are ``str``; ``Any`` and
``object`` are not checked. A type JSON cannot hold (datetime, set, bytes, a
class that is not a dataclass) is refused where the class is defined.
"""

from __future__ import annotations

import dataclasses
import logging
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

from zizq.errors import InvalidPayload, JobKindError, PayloadDecodeError

log = logging.getLogger("zizq.job")

# Where a value fails its shape: (path, the expected type, the value).
Problem = tuple[str, str, Any]

HOLDABLE = (
    "int, float, str, bool, None, list[X], tuple[X, ...], dict[str, X], a dataclass, X | None, Literal[...] or Any"
)


class Shape:
    """What a field holds. ``ok`` is the fast test, ``problem`` finds the
    innermost part that fails (for the message), ``decode`` builds the value
    from decoded JSON (unchanged unless ``needs_decode``)."""

    text = "Any"
    needs_decode = False
    # Classes whose every instance fits: a value of one is checked with one
    # set lookup, without calling ok().
    exact: frozenset[type] = frozenset()

    def ok(self, value: Any) -> bool:
        return True

    def problem(self, value: Any, path: str) -> Problem | None:
        return None if self.ok(value) else (path, self.text, value)

    def decode(self, value: Any, path: str) -> Any:
        return value


class _Int(Shape):
    text = "int"
    exact = frozenset({int})

    def ok(self, value: Any) -> bool:
        return value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool))


class _Float(Shape):
    text = "float"
    exact = frozenset({int, float})

    def ok(self, value: Any) -> bool:
        cls = value.__class__
        return cls is float or cls is int or (isinstance(value, (int, float)) and not isinstance(value, bool))


class _Str(Shape):
    text = "str"
    exact = frozenset({str})

    def ok(self, value: Any) -> bool:
        return isinstance(value, str)


class _Bool(Shape):
    text = "bool"
    exact = frozenset({bool})

    def ok(self, value: Any) -> bool:
        return value is True or value is False


class _None(Shape):
    text = "None"
    exact = frozenset({type(None)})

    def ok(self, value: Any) -> bool:
        return value is None


ANY = Shape()
SCALARS: dict[Any, Shape] = {
    int: _Int(),
    float: _Float(),
    str: _Str(),
    bool: _Bool(),
    None: _None(),
    type(None): _None(),
    Any: ANY,
    object: ANY,
}


class _Literal(Shape):
    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values
        self.text = f"Literal[{', '.join(map(repr, values))}]"

    def ok(self, value: Any) -> bool:
        # 1 == True and 1 == 1.0 in Python; not in JSON.
        return any(
            value == v and isinstance(value, type(v)) and isinstance(value, bool) == isinstance(v, bool)
            for v in self.values
        )


class _List(Shape):
    def __init__(self, item: Shape) -> None:
        self.item = item
        self.text = f"list[{item.text}]"
        self.needs_decode = item.needs_decode

    def ok(self, value: Any) -> bool:
        if not isinstance(value, list):
            return False
        item = self.item
        return item is ANY or all(item.ok(x) for x in value)

    def problem(self, value: Any, path: str) -> Problem | None:
        if not isinstance(value, list):
            return (path, self.text, value)
        return _first(self.item.problem(x, f"{path}[{i}]") for i, x in enumerate(value))

    def decode(self, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            return value
        return [self.item.decode(x, f"{path}[{i}]") for i, x in enumerate(value)]


class _Tuple(Shape):
    """``tuple[X, ...]`` (``items`` is one shape, ``variadic``) or
    ``tuple[X, Y]``. Stored as a JSON array, decoded as a tuple."""

    needs_decode = True

    def __init__(self, items: tuple[Shape, ...], variadic: bool) -> None:
        self.items = items
        self.variadic = variadic
        inner = f"{items[0].text}, ..." if variadic else ", ".join(s.text for s in items) or "()"
        self.text = f"tuple[{inner}]"

    def _shapes(self, value: tuple[Any, ...]) -> tuple[Shape, ...] | None:
        if self.variadic:
            return self.items * len(value)
        return self.items if len(value) == len(self.items) else None

    def ok(self, value: Any) -> bool:
        if not isinstance(value, tuple):
            return False
        shapes = self._shapes(value)
        return shapes is not None and all(s.ok(x) for s, x in zip(shapes, value, strict=True))

    def problem(self, value: Any, path: str) -> Problem | None:
        shapes = self._shapes(value) if isinstance(value, tuple) else None
        if shapes is None:
            return (path, self.text, value)
        return _first(s.problem(x, f"{path}[{i}]") for i, (s, x) in enumerate(zip(shapes, value, strict=True)))

    def decode(self, value: Any, path: str) -> Any:
        if not isinstance(value, list):
            return value
        shapes = self._shapes(tuple(value)) or (ANY,) * len(value)  # a wrong length fails the check
        return tuple(s.decode(x, f"{path}[{i}]") for i, (s, x) in enumerate(zip(shapes, value, strict=True)))


class _Dict(Shape):
    def __init__(self, value: Shape) -> None:
        self.value = value
        self.text = f"dict[str, {value.text}]"
        self.needs_decode = value.needs_decode

    def ok(self, value: Any) -> bool:
        if not isinstance(value, dict):
            return False
        shape = self.value
        return all(isinstance(k, str) and shape.ok(v) for k, v in value.items())

    def problem(self, value: Any, path: str) -> Problem | None:
        if not isinstance(value, dict):
            return (path, self.text, value)
        for k, v in value.items():
            if not isinstance(k, str):
                return (f"{path} key", "str", k)
            found = self.value.problem(v, f"{path}[{k!r}]")
            if found:
                return found
        return None

    def decode(self, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: self.value.decode(v, f"{path}[{k!r}]") for k, v in value.items()}


class _Union(Shape):
    def __init__(self, options: tuple[Shape, ...]) -> None:
        self.options = options
        self.text = " | ".join(s.text for s in options)
        self.needs_decode = any(s.needs_decode for s in options)
        self.exact = frozenset().union(*(s.exact for s in options))

    def ok(self, value: Any) -> bool:
        return any(s.ok(value) for s in self.options)

    def problem(self, value: Any, path: str) -> Problem | None:
        if self.ok(value):
            return None
        # X | None given a list, a dict...: say where inside X it fails.
        others = [s for s in self.options if not isinstance(s, _None)]
        found = others[0].problem(value, path) if len(others) == 1 else None
        return found if found and found[0] != path else (path, self.text, value)

    def decode(self, value: Any, path: str) -> Any:
        # The first option the value fits, in order. When it fits none, the
        # first option's attempt is kept so the message says where it failed.
        attempt: Any = value
        error: PayloadDecodeError | InvalidPayload | None = None
        for shape in self.options:
            try:
                decoded = shape.decode(value, path)
            except (PayloadDecodeError, InvalidPayload) as exc:
                error = error or exc
                continue
            if shape.ok(decoded):
                return decoded
            if attempt is value:
                attempt = decoded
        if attempt is value and error is not None:
            raise error
        return attempt


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """A field to check and decode: its name, its shape, and whether a
    payload must carry it (no default)."""

    name: str
    shape: Shape
    required: bool


class _Dataclass(Shape):
    """A nested dataclass: checked field by field, decoded from a JSON object."""

    needs_decode = True

    def __init__(self, cls: type) -> None:
        self.cls = cls
        self.text = cls.__qualname__
        self.fields: tuple[Field, ...] = ()  # filled in once made (a dataclass may hold itself)

    def ok(self, value: Any) -> bool:
        return isinstance(value, self.cls) and all(f.shape.ok(getattr(value, f.name)) for f in self.fields)

    def problem(self, value: Any, path: str) -> Problem | None:
        if not isinstance(value, self.cls):
            return (path, self.text, value)
        return _first(f.shape.problem(getattr(value, f.name), f"{path}.{f.name}") for f in self.fields)

    def decode(self, value: Any, path: str) -> Any:
        return build(self.cls, self.fields, value, path) if isinstance(value, dict) else value


def _first(problems: typing.Iterable[Problem | None]) -> Problem | None:
    return next((p for p in problems if p is not None), None)


_DATACLASSES: dict[type, _Dataclass] = {}


def shape_of(annotation: Any, localns: dict[str, Any] | None) -> Shape:
    """The shape of a resolved annotation. Raises JobKindError for a type a
    JSON payload cannot hold, NameError for a name not defined yet."""
    try:
        scalar = SCALARS.get(annotation)
    except TypeError:  # unhashable: not a type at all
        scalar = None
    if scalar is not None:
        return scalar
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Union or origin is types.UnionType:
        return _Union(tuple(shape_of(a, localns) for a in args))
    if origin is Literal:
        bad = [v for v in args if v is not None and type(v) not in (str, int, bool)]
        if bad:
            raise JobKindError(f"Literal value {bad[0]!r} is not a str, int, bool or None")
        return _Literal(args)
    if annotation is list or origin is list:
        return _List(shape_of(args[0], localns) if args else ANY)
    if annotation is dict or origin is dict:
        if args and args[0] is not str:
            raise JobKindError(f"{_text(annotation)}: a JSON object's keys are str; use dict[str, ...]")
        return _Dict(shape_of(args[1], localns) if args else ANY)
    if annotation is tuple or origin is tuple:
        if not args:
            return _Tuple((ANY,), variadic=True)
        if len(args) == 2 and args[1] is Ellipsis:
            return _Tuple((shape_of(args[0], localns),), variadic=True)
        if args == ((),):  # tuple[()]
            return _Tuple((), variadic=False)
        return _Tuple(tuple(shape_of(a, localns) for a in args), variadic=False)
    if isinstance(annotation, typing.TypeVar):
        return ANY
    if isinstance(annotation, typing.NewType):
        return shape_of(annotation.__supertype__, localns)
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass_shape(annotation, localns)
    raise JobKindError(f"{_text(annotation)} is not a type a JSON payload can hold (use {HOLDABLE})")


def _text(annotation: Any) -> str:
    if isinstance(annotation, type) and get_origin(annotation) is None:
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _dataclass_shape(cls: type, localns: dict[str, Any] | None) -> _Dataclass:
    shape = _DATACLASSES.get(cls)
    if shape is None:
        shape = _DATACLASSES[cls] = _Dataclass(cls)
        try:
            shape.fields = fields_of(cls, localns)
        except BaseException:
            del _DATACLASSES[cls]
            raise
    return shape


def fields_of(cls: type, localns: dict[str, Any] | None) -> tuple[Field, ...]:
    """The checked fields of a dataclass (those set by its ``__init__``),
    from its annotations resolved once. Raises JobKindError naming the field
    whose type a payload cannot hold, or whose default does not fit it;
    NameError when an annotation names something not defined yet."""
    try:
        hints = typing.get_type_hints(cls, localns=localns)
    except NameError:
        raise
    except Exception as exc:  # a malformed string annotation, say
        raise JobKindError(f"{cls.__qualname__}: cannot resolve its annotations: {exc}") from None
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        try:
            shape = shape_of(hints[f.name], localns)
        except JobKindError as exc:
            raise JobKindError(f"{cls.__qualname__}.{f.name}: {exc}") from None
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.default is not dataclasses.MISSING and not shape.ok(f.default):
            raise JobKindError(f"{cls.__qualname__}.{f.name}: default {f.default!r:.80} does not fit {shape.text}")
        out.append(Field(f.name, shape, no_default))
    return tuple(out)


def refusal(kind: str, fields: tuple[Field, ...], obj: Any) -> InvalidPayload:
    """The error for an instance whose fields do not fit their types: it
    names the kind, the path of the first bad value, the type expected there
    and the value (its repr cut at 80 characters)."""
    found = _first(f.shape.problem(getattr(obj, f.name), f.name) for f in fields)
    assert found is not None, "refusal() is only called for a value that fails its check"
    path, expected, value = found
    return InvalidPayload(f"{kind}.{path} expects {expected}, got {value!r:.80} ({type(value).__name__})")


def build(cls: type, fields: tuple[Field, ...], value: dict[str, Any], path: str) -> Any:
    """An instance of ``cls`` from a decoded JSON object. Fields the class
    does not define are dropped (a newer producer wrote them; logged at
    debug), missing ones take their defaults; a missing field without a
    default raises PayloadDecodeError."""
    kwargs = {}
    for f in fields:
        where = f"{path}.{f.name}" if path else f.name
        if f.name in value:
            v = value[f.name]
            kwargs[f.name] = f.shape.decode(v, where) if f.shape.needs_decode else v
        elif f.required:
            raise PayloadDecodeError(f"field {where} is missing (it has no default)")
    if len(kwargs) < len(value):
        unknown = ", ".join(sorted(k for k in value if k not in kwargs))
        at = f" at {path}" if path else ""
        log.debug("payload for %s%s: ignored fields it does not define: %s", cls.__qualname__, at, unknown)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a dataclass whose __init__ is its own
        raise PayloadDecodeError(f"{path or cls.__qualname__}: {exc}") from None

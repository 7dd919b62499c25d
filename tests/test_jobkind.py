"""The job model (JobKind, Job, UniqueKey, Backoff, Retention) and the
validation of enqueue options, all without Redis: zizq._protocol.enqueue.enqueue_args
builds the 14 script arguments of one job or refuses it before anything is
sent."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import logging
import re
import typing
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

import orjson
import pytest

import zizq
from zizq import _hotpath
from zizq._protocol.enqueue import enqueue_args

ID_RE = re.compile(r"[0-9a-z]{25}")
FORBIDDEN = [",", "*", "?", "[", "]", "{", "}", "\\", "\x00"]
BAD_NAMES = [pytest.param("", id="empty")] + [pytest.param(f"a{c}b", id=f"contains {c!r}") for c in FORBIDDEN]
GOOD_NAMES = ["emails", "billing.payments", "send_email", "with space", "a:b", "émails", "日本", "x" * 200]


class SendEmail(zizq.JobKind):
    NAME = "send_email"
    QUEUE = "emails"
    to: str
    subject: str = "hello"


class Ping(zizq.JobKind):
    """A unit type: no fields, payload null."""

    NAME = "ping"


class UserId(zizq.JobKind):
    """A transparent type: the payload is the bare field value."""

    NAME = "user_id"
    TRANSPARENT = True
    value: int


class Report(zizq.JobKind):
    """Every class-level option set, for the precedence tests."""

    NAME = "report"
    QUEUE = "reports"
    PRIORITY = 10
    RETRY_LIMIT = 3
    BACKOFF = zizq.Backoff(base_ms=1000, exponent=2.0, jitter_ms=500)
    RETENTION = zizq.Retention(completed_ms=60_000, dead_ms=86_400_000)
    UNIQUE_WHILE = "active"
    user: int

    def unique_key(self) -> zizq.UniqueKey | None:
        return zizq.UniqueKey.tagged_hash_of(self.NAME, {"user": self.user})


class Versioned(zizq.JobKind, abstract=True):
    version: int = 1


class Audited(Versioned):
    NAME = "audited"
    who: str = "system"


def args_of(item: zizq.Enqueue) -> list[Any]:
    args = enqueue_args(item, _hotpath.IdGenerator())
    assert len(args) == 14
    assert isinstance(args[0], str) and ID_RE.fullmatch(args[0])
    return args


# --- JobKind classes -------------------------------------------------------------


def test_subclasses_are_dataclasses_built_with_keywords() -> None:
    job = SendEmail(to="a@b.c", subject="hi")
    assert (job.to, job.subject) == ("a@b.c", "hi")
    assert job == SendEmail(to="a@b.c", subject="hi")
    assert SendEmail(to="a@b.c").subject == "hello"
    assert [f.name for f in dataclasses.fields(SendEmail)] == ["to", "subject"]
    assert repr(job) == "SendEmail(to='a@b.c', subject='hi')"
    kinds: list[type] = [SendEmail, Ping, UserId, Report, Audited]
    assert all(dataclasses.is_dataclass(kind) for kind in kinds)


def test_class_options_are_not_fields() -> None:
    assert [f.name for f in dataclasses.fields(Report)] == ["user"]
    with pytest.raises(TypeError):
        Report(user=1, NAME="other")  # type: ignore[call-arg]


def test_class_defaults() -> None:
    assert SendEmail.QUEUE == "emails"
    assert Ping.QUEUE == "default"
    assert Ping.PRIORITY is None and Ping.RETRY_LIMIT is None and Ping.BACKOFF is None
    assert Ping.RETENTION is None and Ping.UNIQUE_WHILE is None and Ping.TRANSPARENT is False


def test_name_is_required() -> None:
    with pytest.raises(zizq.JobKindError, match="NoName") as info:

        class NoName(zizq.JobKind):
            x: int

    assert isinstance(info.value, zizq.ZizqError)


def test_name_is_not_inherited_from_a_concrete_kind() -> None:
    with pytest.raises(zizq.JobKindError, match="LouderEmail"):

        class LouderEmail(SendEmail):
            pass


def test_abstract_kinds_need_no_name() -> None:
    assert "NAME" not in vars(Versioned)
    assert [f.name for f in dataclasses.fields(Audited)] == ["version", "who"]
    job = Audited(version=2, who="me")
    assert job.to_payload() is job
    assert _hotpath.encode_payload(job.to_payload()) == b'{"version":2,"who":"me"}'
    assert Audited.from_payload({"version": 3}) == Audited(version=3, who="system")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_name(name: str) -> None:
    with pytest.raises(zizq.JobKindError) as info:

        class BadName(zizq.JobKind):
            NAME = name

    assert "BadName" in str(info.value)
    assert repr(name) in str(info.value)


@pytest.mark.parametrize("name", [5, None, b"bytes"])
def test_name_must_be_a_string(name: Any) -> None:
    with pytest.raises(zizq.JobKindError, match="NotStr"):

        class NotStr(zizq.JobKind):
            NAME = name


@pytest.mark.parametrize("queue", BAD_NAMES)
def test_bad_queue(queue: str) -> None:
    with pytest.raises(zizq.JobKindError) as info:

        class BadQueue(zizq.JobKind):
            NAME = "bad_queue"
            QUEUE = queue

    assert "BadQueue" in str(info.value)
    assert repr(queue) in str(info.value)


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names(name: str) -> None:
    class Good(zizq.JobKind):
        NAME = name
        QUEUE = name

    assert Good.NAME == Good.QUEUE == name


@pytest.mark.parametrize("priority", [-1, 65536, 2**31, True, "5", 1.5])
def test_bad_class_priority(priority: Any) -> None:
    with pytest.raises(zizq.JobKindError) as info:

        class BadPriority(zizq.JobKind):
            NAME = "bad_priority"
            PRIORITY = priority

    assert "BadPriority" in str(info.value)
    assert repr(priority) in str(info.value)


@pytest.mark.parametrize("priority", [0, 1, 32768, 65535])
def test_good_class_priority(priority: int) -> None:
    class GoodPriority(zizq.JobKind):
        NAME = "good_priority"
        PRIORITY = priority

    assert GoodPriority.PRIORITY == priority


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("RETRY_LIMIT", -1),
        ("RETRY_LIMIT", "3"),
        ("RETRY_LIMIT", True),
        ("UNIQUE_WHILE", "sometimes"),
        ("BACKOFF", (1000, 2.0, 0)),
        ("RETENTION", {"completed_ms": 1}),
    ],
)
def test_bad_class_options(option: str, value: Any) -> None:
    with pytest.raises(zizq.JobKindError, match="BadOption"):
        type("BadOption", (zizq.JobKind,), {"NAME": "bad_option", option: value})


def test_unit_type() -> None:
    assert Ping().to_payload() is None
    assert _hotpath.encode_payload(Ping().to_payload()) == b"null"
    assert Ping.from_payload(None) == Ping()
    assert Ping.from_payload({}) == Ping()


def test_transparent_type() -> None:
    assert UserId(value=42).to_payload() == 42
    assert _hotpath.encode_payload(UserId(value=42).to_payload()) == b"42"
    assert UserId.from_payload(42) == UserId(value=42)


def test_transparent_needs_exactly_one_field() -> None:
    with pytest.raises(zizq.JobKindError, match=r"Pair.*2 fields"):

        class Pair(zizq.JobKind):
            NAME = "pair"
            TRANSPARENT = True
            a: int
            b: int

    with pytest.raises(zizq.JobKindError, match=r"Nothing.*0 fields"):

        class Nothing(zizq.JobKind):
            NAME = "nothing"
            TRANSPARENT = True


def test_object_payloads() -> None:
    job = SendEmail(to="a@b.c")
    assert _hotpath.encode_payload(job.to_payload()) == b'{"to":"a@b.c","subject":"hello"}'
    assert SendEmail.from_payload({"to": "a@b.c"}) == job
    assert SendEmail.from_payload({"subject": "s", "to": "x"}) == SendEmail(to="x", subject="s")


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (SendEmail, None),
        (SendEmail, ["a@b.c"]),
        (SendEmail, "a@b.c"),
        (SendEmail, {}),  # missing "to"
        (SendEmail, {"to": 5}),  # not a str
        (Ping, [1]),
        (Ping, 0),
        (Audited, {"who": "me", "version": "2"}),
    ],
)
def test_from_payload_wrong_shape(kind: type[zizq.JobKind], payload: Any) -> None:
    with pytest.raises(zizq.PayloadDecodeError, match=kind.__qualname__) as info:
        kind.from_payload(payload)
    assert isinstance(info.value, zizq.ZizqError)


# --- Field types: checked when built, decoded at the worker -----------------------


@dataclasses.dataclass
class Line:
    sku: str
    qty: int
    note: str | None = None


class Order(zizq.JobKind):
    NAME = "order"
    id: int
    lines: list[Line]
    total: float = 0.0
    tags: dict[str, int] = dataclasses.field(default_factory=dict)
    pair: tuple[int, str] = (0, "")
    status: Literal["new", "paid"] = "new"
    gift: Line | None = None
    urgent: bool = False
    extra: Any = None


class Counted(zizq.JobKind):
    NAME = "counted"
    n: int


@dataclasses.dataclass
class Tree:
    label: str
    children: list[Tree] = dataclasses.field(default_factory=list)


class Forward(zizq.JobKind):
    """Names a class defined after it: resolved at its first use."""

    NAME = "forward"
    part: DefinedLater


@dataclasses.dataclass
class DefinedLater:
    x: int


Cents = typing.NewType("Cents", int)


def order(**changes: Any) -> dict[str, Any]:
    fields = {"id": 1, "lines": [Line("a", 1), Line("b", 2), Line("c", 3)]}
    return {**fields, **changes}


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        (Counted, {"n": "not an int"}, "Counted.n expects int, got 'not an int' (str)"),
        (Counted, {"n": True}, "Counted.n expects int, got True (bool)"),
        (Counted, {"n": 1.0}, "Counted.n expects int, got 1.0 (float)"),
        (Counted, {"n": None}, "Counted.n expects int, got None (NoneType)"),
        (SendEmail, {"to": datetime(2030, 1, 1)}, "SendEmail.to expects str, got datetime.datetime(2030, 1, 1, 0, 0)"),
        (SendEmail, {"to": b"a@b.c"}, "SendEmail.to expects str, got b'a@b.c' (bytes)"),
        (Order, order(id=False), "Order.id expects int, got False (bool)"),
        (Order, order(total="1.5"), "Order.total expects float, got '1.5' (str)"),
        (Order, order(total=True), "Order.total expects float, got True (bool)"),
        (Order, order(lines=(Line("a", 1),)), "Order.lines expects list[Line], got (Line("),
        (Order, order(lines=[Line("a", 1), {"sku": "b", "qty": 2}]), "Order.lines[1] expects Line, got {'sku'"),
        (Order, order(lines=[Line("a", 1), Line("c", "3")]), "Order.lines[1].qty expects int, got '3'"),  # type: ignore[arg-type]
        (Order, order(gift=Line("g", 1, note=5)), "Order.gift.note expects str | None, got 5 (int)"),  # type: ignore[arg-type]
        (Order, order(gift="g"), "Order.gift expects Line | None, got 'g' (str)"),
        (Order, order(tags={"a": "1"}), "Order.tags['a'] expects int, got '1' (str)"),
        (Order, order(tags={1: 1}), "Order.tags key expects str, got 1 (int)"),
        (Order, order(tags=[("a", 1)]), "Order.tags expects dict[str, int], got [('a', 1)] (list)"),
        (Order, order(pair=[1, "a"]), "Order.pair expects tuple[int, str], got [1, 'a'] (list)"),
        (Order, order(pair=(1, 2)), "Order.pair[1] expects str, got 2 (int)"),
        (Order, order(pair=(1,)), "Order.pair expects tuple[int, str], got (1,) (tuple)"),
        (Order, order(status="lost"), "Order.status expects Literal['new', 'paid'], got 'lost' (str)"),
        (Order, order(urgent=1), "Order.urgent expects bool, got 1 (int)"),
        (Counted, {"n": "x" * 500}, "Counted.n expects int, got '" + "x" * 79 + " (str)"),
    ],
)
def test_a_field_value_that_does_not_fit_its_annotation_is_refused(
    kind: type[zizq.JobKind], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(zizq.InvalidPayload) as info:
        kind(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, zizq.ValidationError)


def test_values_that_fit_are_kept_as_given() -> None:
    job = Order(
        id=2**62,
        lines=[],
        total=3,  # an int is a float: JSON has one number type
        tags={"a": 1},
        pair=(1, "x"),
        status="paid",
        gift=Line("g", 1, note="hi"),
        urgent=True,
        extra={"anything": [datetime, object()]},  # Any: not checked
    )
    assert job.total == 3 and type(job.total) is int
    assert Order(id=1, lines=[Line("a", 1)], gift=None).gift is None
    assert Tree("a", [Tree("b"), Tree("c", [Tree("d")])]).children[1].children[0].label == "d"

    class Loose(zizq.JobKind):
        NAME = "loose"
        a: list  # type: ignore[type-arg]
        b: dict  # type: ignore[type-arg]
        c: tuple  # type: ignore[type-arg]
        d: object
        e: tuple[int, ...]
        f: Cents

    Loose(a=[1, "x", None], b={"k": object()}, c=(1, "x"), d=object(), e=(1, 2, 3), f=Cents(5))
    with pytest.raises(zizq.InvalidPayload, match=r"Loose.b key expects str, got 1"):
        Loose(a=[], b={1: 1}, c=(), d=None, e=(), f=Cents(0))
    with pytest.raises(zizq.InvalidPayload, match=r"Loose.e\[2\] expects int, got 'x'"):
        Loose(a=[], b={}, c=(), d=None, e=(1, 2, "x"), f=Cents(0))  # type: ignore[arg-type]
    with pytest.raises(zizq.InvalidPayload, match=r"Loose.f expects int, got 0.5"):
        Loose(a=[], b={}, c=(), d=None, e=(), f=0.5)  # type: ignore[arg-type]


def test_literal_values_are_matched_as_json_matches_them() -> None:
    class Flag(zizq.JobKind):
        NAME = "flag"
        v: Literal[1, "one", True, None]

    for good in (1, "one", True, None):
        assert Flag(v=good).v is good
    bad: Any
    for bad in (1.0, False, "1", 2):
        with pytest.raises(zizq.InvalidPayload) as info:
            Flag(v=bad)
        assert f"Flag.v expects Literal[1, 'one', True, None], got {bad!r}" in str(info.value)


def test_a_recursive_dataclass_is_checked_at_every_depth() -> None:
    class Render(zizq.JobKind):
        NAME = "render"
        tree: Tree

    with pytest.raises(zizq.InvalidPayload, match=r"Render.tree.children\[0\].children\[0\].label expects str"):
        Render(tree=Tree("a", [Tree("b", [Tree(7)])]))  # type: ignore[arg-type]


def test_positional_and_transparent_kinds_are_checked() -> None:
    with pytest.raises(zizq.InvalidPayload, match=r"UserId.value expects int, got '42'"):
        UserId("42")  # type: ignore[arg-type]
    with pytest.raises(zizq.InvalidPayload, match=r"Audited.version expects int, got '2'"):
        Audited(version="2")  # type: ignore[arg-type]


def test_an_own_post_init_runs_after_the_check() -> None:
    seen: list[Any] = []

    class Normalised(zizq.JobKind):
        NAME = "normalised"
        email: str

        def __post_init__(self) -> None:  # no super().__post_init__()
            seen.append(self.email)
            self.email = self.email.lower()

    class Child(Normalised):
        NAME = "child"

    assert Normalised(email="A@B.C").email == "a@b.c" and Child(email="X").email == "x"
    with pytest.raises(zizq.InvalidPayload, match=r"Normalised.email expects str, got 5"):
        Normalised(email=5)  # type: ignore[arg-type]
    with pytest.raises(zizq.InvalidPayload, match=r"Child.email expects str"):
        Child(email=None)  # type: ignore[arg-type]
    assert seen == ["A@B.C", "X"]


class Opaque2:
    pass


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("annotation", "message"),
    [
        (datetime, "datetime is not a type a JSON payload can hold"),
        (set[int], "set[int] is not a type a JSON payload can hold"),
        (bytes, "bytes is not a type"),
        (Opaque2, "Opaque2 is not a type"),
        (Colour, "Colour is not a type"),
        (list[datetime], "datetime is not a type"),
        (int | datetime, "datetime is not a type"),
        (dict[int, str], "dict[int, str]: a JSON object's keys are str; use dict[str, ...]"),
        (Literal[Colour.RED], "Literal value <Colour.RED: 'red'> is not a str, int, bool or None"),
        (Sequence[int], "Sequence[int] is not a type"),
    ],
    ids=str,
)
def test_a_type_a_payload_cannot_hold_is_refused_where_the_kind_is_defined(annotation: Any, message: str) -> None:
    with pytest.raises(zizq.JobKindError) as info:
        type("Unholdable", (zizq.JobKind,), {"NAME": "u", "__annotations__": {"ok": int, "field": annotation}})
    assert str(info.value).startswith("Unholdable.field: ")
    assert message in str(info.value)


def test_a_nested_dataclass_is_checked_where_the_kind_is_defined() -> None:
    @dataclasses.dataclass
    class Stamped:
        at: datetime

    with pytest.raises(zizq.JobKindError, match=r"Holder.stamp: .*Stamped.at: datetime is not a type"):

        class Holder(zizq.JobKind):
            NAME = "holder"
            stamp: Stamped


def test_a_default_that_does_not_fit_is_refused_where_the_kind_is_defined() -> None:
    with pytest.raises(zizq.JobKindError, match=r"Defaulted.n: default '1' does not fit int"):

        class Defaulted(zizq.JobKind):
            NAME = "defaulted"
            n: int = "1"  # type: ignore[assignment]


def test_annotations_are_resolved_once_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    class Once(zizq.JobKind):
        NAME = "once"
        line: Line

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("annotations resolved again")

    monkeypatch.setattr(typing, "get_type_hints", refuse)
    for _ in range(3):
        Once(line=Line("a", 1))
        Once.from_payload({"line": {"sku": "a", "qty": 1}})


def test_a_kind_defined_in_a_function_can_name_a_class_defined_there() -> None:
    @dataclasses.dataclass
    class Point:
        x: int

    class Move(zizq.JobKind):
        NAME = "move"
        to: Point

    assert Move.from_payload({"to": {"x": 1}}) == Move(to=Point(1))
    with pytest.raises(zizq.InvalidPayload, match=r"Move.to.x expects int, got '1'"):
        Move(to=Point("1"))  # type: ignore[arg-type]


def test_a_name_defined_after_the_kind_resolves_at_first_use() -> None:
    assert Forward(part=DefinedLater(1)).part.x == 1
    assert Forward.from_payload({"part": {"x": 2}}) == Forward(part=DefinedLater(2))
    with pytest.raises(zizq.InvalidPayload, match=r"Forward.part expects DefinedLater, got 3"):
        Forward(part=3)  # type: ignore[arg-type]

    class Dangling(zizq.JobKind):
        NAME = "dangling"
        part: NeverDefined  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(zizq.JobKindError, match=r"Dangling: cannot resolve its field annotations: .*NeverDefined"):
        Dangling(part=1)


def test_unknown_fields_in_a_payload_are_ignored(caplog: pytest.LogCaptureFixture) -> None:
    # A newer producer added "cc" (and "x" inside a line): an older worker
    # still runs the job, and says so at debug.
    with caplog.at_level(logging.DEBUG, logger="zizq"):
        assert SendEmail.from_payload({"to": "a", "cc": "b", "bcc": None}) == SendEmail(to="a")
        got = Order.from_payload({"id": 1, "lines": [{"sku": "a", "qty": 1, "x": 0}], "new": 1})
        assert Ping.from_payload({"x": 1}) == Ping()
    assert got == Order(id=1, lines=[Line("a", 1)])
    assert "payload for SendEmail: ignored fields it does not define: bcc, cc" in caplog.text
    assert "payload for Line at lines[0]: ignored fields it does not define: x" in caplog.text
    assert "payload for Order: ignored fields it does not define: new" in caplog.text
    assert all(r.name == "zizq.job" and r.levelno == logging.DEBUG for r in caplog.records)


def test_missing_fields_take_their_defaults() -> None:
    assert Audited.from_payload({}) == Audited(version=1, who="system")
    assert Audited.from_payload(None) == Audited()  # a unit kind that gained fields with defaults
    with pytest.raises(zizq.PayloadDecodeError, match=r"as SendEmail: field to is missing \(it has no default\)"):
        SendEmail.from_payload({"subject": "s"})
    with pytest.raises(zizq.PayloadDecodeError, match=r"as Order: field lines\[1\].qty is missing"):
        Order.from_payload({"id": 1, "lines": [{"sku": "a", "qty": 1}, {"sku": "b"}]})


def test_a_payload_decodes_to_what_was_enqueued() -> None:
    job = Order(
        id=1,
        lines=[Line("a", 1), Line("b", 2, note="n")],
        total=2.5,
        tags={"t": 1},
        pair=(3, "p"),
        status="paid",
        gift=Line("g", 1),
        urgent=True,
        extra={"k": [1]},
    )
    decoded = Order.from_payload(orjson.loads(_hotpath.encode_payload(job.to_payload())))
    assert decoded == job
    assert type(decoded.lines[0]) is Line and type(decoded.pair) is tuple and type(decoded.gift) is Line
    tree = Tree("a", [Tree("b", [Tree("c")])])

    class Render(zizq.JobKind):
        NAME = "render"
        TRANSPARENT = True
        tree: Tree

    assert Render.from_payload(orjson.loads(_hotpath.encode_payload(Render(tree).to_payload()))) == Render(tree)


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        (Counted, {"n": "5"}, "Counted.n expects int, got '5' (str)"),
        (Counted, {"n": True}, "Counted.n expects int, got True (bool)"),
        (UserId, "42", "UserId.value expects int, got '42' (str)"),
        (Order, {"id": 1, "lines": [{"sku": "a", "qty": 1.5}]}, r"Order.lines[0].qty expects int, got 1.5 (float)"),
        (Order, {"id": 1, "lines": "a"}, "Order.lines expects list[Line], got 'a' (str)"),
        (Order, {"id": 1, "lines": [], "pair": [1, 2]}, "Order.pair[1] expects str, got 2 (int)"),
        (Order, {"id": 1, "lines": [], "gift": 5}, "Order.gift expects Line | None, got 5 (int)"),
        (Order, {"id": 1, "lines": [], "gift": {"sku": "g", "qty": "1"}}, "Order.gift.qty expects int, got '1' (str)"),
        (Order, {"id": 1, "lines": [], "gift": {"qty": 1}}, "field gift.sku is missing (it has no default)"),
    ],
)
def test_a_stored_value_of_the_wrong_type_fails_to_decode(kind: type[zizq.JobKind], payload: Any, message: str) -> None:
    # Written by an older producer, or by hand: the job fails with a clear
    # error instead of the handler getting a value of another type.
    with pytest.raises(zizq.PayloadDecodeError) as info:
        kind.from_payload(payload)
    assert str(info.value) == f"failed to decode job payload as {kind.__qualname__}: {message}"


def test_unique_key_defaults_to_none() -> None:
    assert SendEmail(to="x").unique_key() is None
    assert Ping().unique_key() is None
    key = Report(user=7).unique_key()
    assert key is not None and key.key == "report:" + hashlib.sha256(b'{"user":7}').hexdigest()


# --- UniqueKey, Backoff, Retention ----------------------------------------------------


def test_unique_key_constructors() -> None:
    assert zizq.UniqueKey.raw("order-17") == zizq.UniqueKey("order-17", None)
    digest = hashlib.sha256(b'{"a":2,"b":[1,"x"]}').hexdigest()
    assert zizq.UniqueKey.hash_of({"b": [1, "x"], "a": 2}).key == digest
    assert zizq.UniqueKey.tagged_hash_of("T", {"b": [1, "x"], "a": 2}).key == f"T:{digest}"


@pytest.mark.parametrize(
    ("job", "payload"),
    [
        (UserId(5), 5),  # transparent: the bare value
        (Ping(), None),  # no fields: null
        (SendEmail(to="a", subject="b"), {"subject": "b", "to": "a"}),  # fields hashed with keys sorted
    ],
    ids=["transparent", "unit", "fields"],
)
def test_a_job_kind_hashes_as_its_stored_payload(job: zizq.JobKind, payload: Any) -> None:
    key = zizq.UniqueKey.hash_of(job)
    assert key == zizq.UniqueKey.hash_of(payload) == zizq.UniqueKey.hash_of(job, only=["."])
    assert key.key == hashlib.sha256(_hotpath.canonical_json(payload)).hexdigest()
    assert zizq.UniqueKey.tagged_hash_of("t", job).key == "t:" + key.key
    assert zizq.UniqueKey.hash_of(job, except_=[".nothing"]) == key


@pytest.mark.parametrize("path", [".to[0]", ".to.first", ".to[0].x"])
def test_a_path_into_a_string_is_refused(path: str) -> None:
    # Python would index "abc"[0]; jq refuses to, and so does a path.
    value = {"to": "abc"}
    for option in ("only", "except_"):
        with pytest.raises(zizq.ValidationError, match=re.escape(f"path {path!r} indexes into the string 'abc'")):
            zizq.UniqueKey.hash_of(value, **{option: [path]})
    with pytest.raises(zizq.ValidationError, match="indexes into the string 's'"):
        zizq.UniqueKey.tagged_hash_of("t", "s", only=[".a"])


def test_unique_key_scope() -> None:
    key = zizq.UniqueKey.raw("k")
    for scope in ("queued", "active", "exists"):
        scoped = key.scope(scope)
        assert (scoped.key, scoped.unique_while) == ("k", scope)
    assert key.unique_while is None  # frozen: scope() made a new key
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.key = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("make", "bad"),
    [
        (lambda: zizq.UniqueKey(""), ""),
        (lambda: zizq.UniqueKey(5), 5),  # type: ignore[arg-type]
        (lambda: zizq.UniqueKey.raw("k").scope("always"), "always"),  # type: ignore[arg-type]
        (lambda: zizq.UniqueKey("k", "forever"), "forever"),  # type: ignore[arg-type]
    ],
    ids=["empty key", "int key", "bad scope", "bad scope in constructor"],
)
def test_unique_key_validation(make: Any, bad: object) -> None:
    with pytest.raises(zizq.ValidationError) as info:
        make()
    assert repr(bad) in str(info.value)


def test_unique_key_of_unserialisable_value() -> None:
    with pytest.raises(zizq.InvalidPayload):
        zizq.UniqueKey.hash_of({"x": float("nan")})
    with pytest.raises(zizq.InvalidPayload):
        zizq.UniqueKey.tagged_hash_of("T", object())


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"base_ms": -1, "exponent": 2.0, "jitter_ms": 0}, "-1"),
        ({"base_ms": 1.5, "exponent": 2.0, "jitter_ms": 0}, "1.5"),
        ({"base_ms": True, "exponent": 2.0, "jitter_ms": 0}, "True"),
        ({"base_ms": 0, "exponent": 2.0, "jitter_ms": -5}, "-5"),
        ({"base_ms": 0, "exponent": 2.0, "jitter_ms": "5"}, "'5'"),
        ({"base_ms": 0, "exponent": float("nan"), "jitter_ms": 0}, "nan"),
        ({"base_ms": 0, "exponent": float("inf"), "jitter_ms": 0}, "inf"),
        ({"base_ms": 0, "exponent": -0.5, "jitter_ms": 0}, "-0.5"),
        ({"base_ms": 0, "exponent": 16.5, "jitter_ms": 0}, "16.5"),
        ({"base_ms": 0, "exponent": "2", "jitter_ms": 0}, "'2'"),
        ({"base_ms": 0, "exponent": False, "jitter_ms": 0}, "False"),
    ],
)
def test_backoff_validation(kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(zizq.ValidationError) as info:
        zizq.Backoff(**kwargs)
    assert bad in str(info.value)
    assert isinstance(info.value, zizq.ZizqError)


def test_backoff_round_trips_through_its_text_form() -> None:
    for backoff in (zizq.Backoff(15000, 4.0, 30000), zizq.Backoff(0, 0, 0), zizq.Backoff(1, 1.1, 2)):
        assert zizq.Backoff.decode(backoff.encode()) == backoff
    assert zizq.Backoff(1000, 2, 500).encode() == "1000 2.0 500"


@pytest.mark.parametrize(
    ("kwargs", "bad"),
    [
        ({"completed_ms": -1}, "-1"),
        ({"dead_ms": -86_400_000}, "-86400000"),
        ({"dead_ms": 1.0}, "1.0"),
        ({"completed_ms": "60"}, "'60'"),
        ({"completed_ms": True}, "True"),
    ],
)
def test_retention_validation(kwargs: dict[str, Any], bad: str) -> None:
    with pytest.raises(zizq.ValidationError) as info:
        zizq.Retention(**kwargs)
    assert bad in str(info.value)


def test_retention_defaults() -> None:
    assert zizq.Retention() == zizq.Retention(None, None)
    assert zizq.Retention(completed_ms=0).dead_ms is None


# --- Job.to_dict ------------------------------------------------------------------------


def test_job_to_dict_minimal() -> None:
    job = zizq.Job(id="03g0ej3ybwh5uh1ap10xgufm3", type="t", queue="q", priority=5, status="ready", ready_at=1000)
    assert job.to_dict() == {
        "id": "03g0ej3ybwh5uh1ap10xgufm3",
        "type": "t",
        "queue": "q",
        "priority": 5,
        "status": "ready",
        "ready_at": 1000,
        "attempts": 0,
    }
    assert job.payload is None


def test_job_to_dict_full() -> None:
    job = zizq.Job(
        id="03g0ej3ybwh5uh1ap10xgufm3",
        type="send_email",
        queue="emails",
        priority=32768,
        status="dead",
        ready_at=1000,
        attempts=4,
        retry_limit=3,
        backoff=zizq.Backoff(base_ms=15000, exponent=4.0, jitter_ms=30000),
        retention=zizq.Retention(dead_ms=604_800_000),
        unique_key="send_email:abc",
        unique_while="active",
        dequeued_at=2000,
        failed_at=3000,
        completed_at=None,
        purge_at=4000,
        payload_json=b'{"to":"a@b.c","n":[1,2.5,null]}',
    )
    out = job.to_dict()
    assert list(out) == [
        "id", "type", "queue", "priority", "status", "ready_at", "attempts", "retry_limit", "backoff",
        "retention", "unique_key", "unique_while", "dequeued_at", "failed_at", "purge_at", "payload",
    ]  # fmt: skip
    assert out["backoff"] == {"base_ms": 15000, "exponent": 4.0, "jitter_ms": 30000}
    assert out["retention"] == {"dead_ms": 604_800_000}
    assert out["payload"] == {"to": "a@b.c", "n": [1, 2.5, None]}
    assert "payload" not in job.to_dict(payload=False)
    assert "duplicate" not in out and "payload_json" not in out


def test_job_to_dict_null_payload_is_kept() -> None:
    job = zizq.Job(id="x" * 25, type="ping", queue="q", priority=1, status="ready", ready_at=0, payload_json=b"null")
    assert "payload" in job.to_dict() and job.to_dict()["payload"] is None


def test_job_to_dict_retention_with_both_and_completed_only() -> None:
    def retention_of(retention: zizq.Retention) -> Any:
        job = zizq.Job(
            id="x" * 25, type="t", queue="q", priority=1, status="completed", ready_at=0, retention=retention
        )
        return job.to_dict()["retention"]

    assert retention_of(zizq.Retention(completed_ms=0, dead_ms=5)) == {"completed_ms": 0, "dead_ms": 5}
    assert retention_of(zizq.Retention(completed_ms=10)) == {"completed_ms": 10}


# --- enqueue_args: good jobs ----------------------------------------------------------------


def test_enqueue_args_for_a_plain_kind() -> None:
    args = args_of(zizq.Enqueue(SendEmail(to="a@b.c")))
    assert args[1:] == ["send_email", "emails", "32768", b'{"to":"a@b.c","subject":"hello"}'] + [""] * 9


def test_enqueue_args_use_the_class_defaults() -> None:
    key = "report:" + hashlib.sha256(b'{"user":7}').hexdigest()
    assert args_of(zizq.Enqueue(Report(user=7)))[1:] == [
        "report", "reports", "10", b'{"user":7}', "", "", "3", "1000 2.0 500", "60000", "86400000", key, "active", "",
    ]  # fmt: skip


def test_enqueue_args_per_call_options_beat_class_defaults() -> None:
    item = zizq.Enqueue(
        Report(user=7),
        queue="urgent",
        priority=0,
        delay=1.5,
        retry_limit=0,
        backoff=zizq.Backoff(1, 1.0, 0),
        retention=zizq.Retention(dead_ms=1000),  # completed_ms still from the class
        unique_key=zizq.UniqueKey.raw("mine").scope("exists"),
        timeout=2.5,
    )
    assert args_of(item)[1:] == [
        "report", "urgent", "0", b'{"user":7}', "", "1500", "0", "1 1.0 0", "60000", "1000", "mine", "exists", "2500",
    ]  # fmt: skip


def test_enqueue_args_retention_merges_per_sub_field() -> None:
    args = args_of(zizq.Enqueue(Report(user=1), retention=zizq.Retention(completed_ms=5)))
    assert args[9:11] == ["5", "86400000"]
    args = args_of(zizq.Enqueue(SendEmail(to="x"), retention=zizq.Retention(completed_ms=5)))
    assert args[9:11] == ["5", ""]


def test_enqueue_args_unique_scope() -> None:
    # An unscoped key takes the class's UNIQUE_WHILE; a string key is raw.
    assert args_of(zizq.Enqueue(Report(user=1), unique_key="k"))[11:13] == ["k", "active"]
    assert args_of(zizq.Enqueue(SendEmail(to="x"), unique_key="k"))[11:13] == ["k", ""]
    assert args_of(zizq.Enqueue.raw("t", 1, unique_key=zizq.UniqueKey.raw("k").scope("active")))[11:13] == [
        "k",
        "active",
    ]


def test_enqueue_args_unit_and_transparent_payloads() -> None:
    assert args_of(zizq.Enqueue(Ping()))[1:5] == ["ping", "default", "32768", b"null"]
    assert args_of(zizq.Enqueue(UserId(value=9)))[1:5] == ["user_id", "default", "32768", b"9"]


def test_enqueue_args_raw() -> None:
    item = zizq.Enqueue.raw("send_email", {"to": "a@b.c"}, queue="emails", priority=65535, retry_limit=2)
    assert args_of(item)[1:] == ["send_email", "emails", "65535", b'{"to":"a@b.c"}', "", "", "2"] + [""] * 6
    assert args_of(zizq.Enqueue.raw("t", None))[1:5] == ["t", "default", "32768", b"null"]


@pytest.mark.parametrize(
    ("when", "expected_ms"),
    [
        (datetime(2030, 1, 1, tzinfo=UTC), 1_893_456_000_000),
        (datetime(2030, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 1_893_456_000_000),
        (datetime(2030, 1, 1, 0, 0, 0, 1500, tzinfo=UTC), 1_893_456_000_001),
        (datetime(1970, 1, 1, tzinfo=UTC), 0),
    ],
)
def test_enqueue_args_ready_at(when: datetime, expected_ms: int) -> None:
    assert args_of(zizq.Enqueue(Ping(), ready_at=when))[5:7] == [str(expected_ms), ""]


@pytest.mark.parametrize(
    ("delay", "expected_ms"),
    [(0, 0), (1, 1000), (0.25, 250), (0.0014, 1), (1.0006, 1001), (timedelta(minutes=1), 60_000), (timedelta(0), 0)],
)
def test_enqueue_args_delay(delay: Any, expected_ms: int) -> None:
    assert args_of(zizq.Enqueue(Ping(), delay=delay))[5:7] == ["", str(expected_ms)]


def test_enqueue_args_ids_increase() -> None:
    ids = _hotpath.IdGenerator()
    made = [enqueue_args(zizq.Enqueue(Ping()), ids)[0] for _ in range(100)]
    assert made == sorted(made) and len(set(made)) == 100


# --- enqueue_args: bad options ----------------------------------------------------------------

naive = datetime(2030, 1, 1)


class Opaque:
    def __repr__(self) -> str:
        return "Opaque(7)"


BAD_OPTIONS = [
    pytest.param("priority", -1, id="priority -1"),
    pytest.param("priority", 65536, id="priority 65536"),
    pytest.param("priority", True, id="priority True"),
    pytest.param("priority", "5", id="priority '5'"),
    pytest.param("priority", 5.0, id="priority 5.0"),
    pytest.param("delay", -1, id="delay -1"),
    pytest.param("delay", -0.001, id="delay -0.001"),
    pytest.param("delay", float("nan"), id="delay nan"),
    pytest.param("delay", float("inf"), id="delay inf"),
    pytest.param("delay", "5", id="delay '5'"),
    pytest.param("delay", True, id="delay True"),
    pytest.param("delay", timedelta(seconds=-1), id="delay -1s timedelta"),
    pytest.param("ready_at", naive, id="naive ready_at"),
    pytest.param("ready_at", "2030-01-01T00:00:00Z", id="ready_at str"),
    pytest.param("ready_at", 1_893_456_000_000, id="ready_at int"),
    pytest.param("retry_limit", -1, id="retry_limit -1"),
    pytest.param("retry_limit", "3", id="retry_limit '3'"),
    pytest.param("retry_limit", False, id="retry_limit False"),
    pytest.param("backoff", (1, 2.0, 3), id="backoff tuple"),
    pytest.param("retention", {"dead_ms": 1}, id="retention dict"),
    pytest.param("unique_key", 17, id="unique_key int"),
    pytest.param("unique_key", "", id="unique_key empty"),
] + [pytest.param("queue", name.values[0], id=f"queue {name.id}") for name in BAD_NAMES]


@pytest.mark.parametrize("kind", [SendEmail, Report, None], ids=["kind", "kind with defaults", "raw"])
@pytest.mark.parametrize(("option", "bad"), BAD_OPTIONS)
def test_enqueue_args_bad_option(
    request: pytest.FixtureRequest, kind: type[SendEmail | Report] | None, option: str, bad: Any
) -> None:
    options: dict[str, Any] = {option: bad}
    if kind is None:
        item = zizq.Enqueue.raw("t", {"a": 1}, **options)
    else:
        item = zizq.Enqueue(SendEmail(to="x") if kind is SendEmail else Report(user=1), **options)
    with pytest.raises(zizq.ValidationError) as info:
        enqueue_args(item, _hotpath.IdGenerator())
    assert repr(bad) in str(info.value), str(info.value)


def test_enqueue_args_delay_and_ready_at_together() -> None:
    item = zizq.Enqueue(Ping(), delay=5, ready_at=datetime(2030, 1, 1, tzinfo=UTC))
    with pytest.raises(zizq.ValidationError, match=r"delay.*ready_at"):
        enqueue_args(item, _hotpath.IdGenerator())


@pytest.mark.parametrize("type_name", [*BAD_NAMES, pytest.param(None, id="None"), pytest.param(7, id="int")])
def test_enqueue_args_bad_raw_type_name(type_name: Any) -> None:
    with pytest.raises(zizq.InvalidName) as info:
        enqueue_args(zizq.Enqueue.raw(type_name, {}), _hotpath.IdGenerator())
    assert repr(type_name) in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(float("nan"), id="nan"),
        pytest.param({"x": [float("-inf")]}, id="nested -inf"),
        pytest.param(
            "\ud800",
            id="lone surrogate",
        ),
        pytest.param(
            Opaque(),
            id="object",
        ),
        pytest.param(
            2**64,
            id="2**64",
        ),
    ],
)
def test_enqueue_args_unserialisable_payload(payload: Any) -> None:
    with pytest.raises(zizq.InvalidPayload) as info:
        enqueue_args(zizq.Enqueue.raw("t", payload), _hotpath.IdGenerator())
    bad = payload["x"][0] if isinstance(payload, dict) else payload
    message = str(info.value)
    assert repr(bad) in message, message


def test_enqueue_args_rejects_a_non_jobkind() -> None:
    with pytest.raises(zizq.ValidationError, match=re.escape(repr({"to": "x"}))):
        enqueue_args(zizq.Enqueue({"to": "x"}), _hotpath.IdGenerator())  # type: ignore[arg-type]


def test_enqueue_args_rejects_an_abstract_kind() -> None:
    with pytest.raises(zizq.ZizqError, match="Versioned"):
        enqueue_args(zizq.Enqueue(Versioned(version=1)), _hotpath.IdGenerator())


def test_enqueue_args_unserialisable_unique_value() -> None:
    class Keyed(zizq.JobKind):
        NAME = "keyed"
        x: float

        def unique_key(self) -> zizq.UniqueKey | None:
            return zizq.UniqueKey.hash_of(self.x)

    with pytest.raises(zizq.InvalidPayload, match="nan"):
        enqueue_args(zizq.Enqueue(Keyed(x=float("nan"))), _hotpath.IdGenerator())


class Configured(zizq.JobKind):
    """Every class default set, and a unique key of its own."""

    NAME = "configured"
    QUEUE = "reports"
    PRIORITY = 7
    RETRY_LIMIT = 3
    BACKOFF = zizq.Backoff(base_ms=100, exponent=2, jitter_ms=10)
    RETENTION = zizq.Retention(completed_ms=1000)
    UNIQUE_WHILE = "active"
    TIMEOUT = 2.5
    n: int

    def unique_key(self) -> zizq.UniqueKey | None:
        return None if self.n < 0 else zizq.UniqueKey.hash_of({"n": self.n})


class ScopedKey(zizq.JobKind):
    NAME = "scoped"
    n: int

    def unique_key(self) -> zizq.UniqueKey:
        return zizq.UniqueKey.raw(f"n{self.n}").scope("exists")


class Fixed:
    """An id source that always gives the same id."""

    def generate(self) -> str:
        return "0" * 25


@pytest.mark.parametrize(
    "job",
    [SendEmail(to="a@b.c"), Ping(), UserId(5), Configured(n=1), Configured(n=-1), ScopedKey(n=2)],
    ids=["plain", "unit", "transparent", "every default and a key", "every default, no key", "scoped key"],
)
def test_the_fast_path_for_a_bare_job_gives_what_the_general_one_gives(job: zizq.JobKind) -> None:
    # A bare JobKind (no per-call options) skips the general path: same
    # arguments, same result template, for every kind of class default.
    from zizq._protocol.enqueue import _plan_item, plan_enqueue
    from zizq.options import Enqueue

    for _ in range(2):  # the second time from the per-class cache
        assert plan_enqueue(job, Fixed()) == _plan_item(Enqueue(job), Fixed())

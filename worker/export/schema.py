"""The column types of a phase's records, read from its workflow.

A record is the ``Record`` envelope (worker/records.py) around ``data``, the fields the
phase's nodes extracted. The envelope's columns come from ``Record`` itself; ``data`` is a
struct with one field per name the phase's nodes write, typed from the workflow:

- an extract field: ``string`` (also ``html``), ``int64``, ``float64`` or ``bool`` by its
  ``type``; a struct of its sub-fields when it has ``fields``; a list of that with
  ``multiple: true`` or after a ``split`` processor (a ``join`` makes it one value); with
  ``as: object``, a map from text to the type of its ``value`` sub-field;
- a script's ``as`` value, and a field whose ``default`` does not have the field's type:
  ``json`` (any JSON value, kept as JSON text where a column needs one type);
- a name two nodes of the phase write with different types: ``json``.

A phase the workflow does not describe (its records are all there is) has ``data`` as
``json``. The export writes the datasets by these types (worker/export/formats.py), and the
manifest shows them (``describe``). A list or map is never null in the export: an empty
one is ``[]`` or ``{}`` (``fill_empty``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from worker.paths import PHASE_KEY
from worker.records import Record
from workflows import Workflow
from workflows.processors import yields_list
from workflows.spec import ExtractNode, FieldSpec, ScriptNode

ScalarName = Literal["string", "int64", "float64", "bool", "timestamp"]


@dataclass(frozen=True, slots=True)
class Scalar:
    name: ScalarName


@dataclass(frozen=True, slots=True)
class Json:
    """Any JSON value."""


@dataclass(frozen=True, slots=True)
class ListOf:
    item: ColumnType


@dataclass(frozen=True, slots=True)
class MapOf:
    """Text keys (an ``as: object`` field) to values of one type."""

    value: ColumnType


@dataclass(frozen=True, slots=True)
class StructOf:
    fields: tuple[tuple[str, ColumnType], ...]


ColumnType = Scalar | Json | ListOf | MapOf | StructOf

STRING: Final = Scalar("string")
JSON: Final = Json()
_FIELD_SCALARS: Final[dict[str, Scalar]] = {
    "string": STRING,
    "html": STRING,
    "int": Scalar("int64"),
    "float": Scalar("float64"),
    "bool": Scalar("bool"),
}


def describe(kind: ColumnType) -> str:
    """``string``, ``list<string>``, ``map<string, float64>``, ``struct<a: int64>``, ``json``."""
    if isinstance(kind, Scalar):
        return kind.name
    if isinstance(kind, Json):
        return "json"
    if isinstance(kind, ListOf):
        return f"list<{describe(kind.item)}>"
    if isinstance(kind, MapOf):
        return f"map<string, {describe(kind.value)}>"
    return "struct<" + ", ".join(f"{n}: {describe(t)}" for n, t in kind.fields) + ">"


def _envelope_type(info: msgspec.inspect.Type) -> ColumnType:
    if isinstance(info, msgspec.inspect.UnionType):  # ``X | None``: the column is nullable
        (info,) = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
    if isinstance(info, msgspec.inspect.StrType):
        return STRING
    if isinstance(info, msgspec.inspect.LiteralType) and all(
        isinstance(v, str) for v in info.values
    ):  # ``change``: one of a few words
        return STRING
    if isinstance(info, msgspec.inspect.IntType):
        return Scalar("int64")
    if isinstance(info, msgspec.inspect.FloatType):
        return Scalar("float64")
    if isinstance(info, msgspec.inspect.BoolType):
        return Scalar("bool")
    if isinstance(info, msgspec.inspect.DateTimeType):
        return Scalar("timestamp")
    return JSON


def _record_fields() -> tuple[tuple[str, ColumnType], ...]:
    info = msgspec.inspect.type_info(Record)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple((f.name, _envelope_type(f.type)) for f in info.fields if f.name != "data")


# Every field of Record in its order, ``data`` excepted; ``phase`` is the datasets'
# partition key, in the path rather than in the files.
RECORD_FIELDS: Final = _record_fields()
RECORD_ORDER: Final = (*(name for name, _ in RECORD_FIELDS), "data")
FILE_FIELDS: Final = tuple((n, t) for n, t in RECORD_FIELDS if n != PHASE_KEY)


@dataclass(frozen=True, slots=True)
class PhaseSchema:
    """The records of one phase: the envelope's columns (without ``phase``) and ``data``."""

    phase: str
    engine: str
    data: StructOf | Json

    def columns(self) -> tuple[tuple[str, ColumnType], ...]:
        """The columns of the dataset files, in order."""
        return (*FILE_FIELDS, ("data", self.data))

    def data_fields(self) -> tuple[tuple[str, ColumnType], ...]:
        return self.data.fields if isinstance(self.data, StructOf) else ()

    def describe(self) -> dict[str, str]:
        """Column name to type, as the manifest shows it: ``phase`` (the partition), the
        envelope, then each ``data.<field>`` (or ``data`` when it is JSON)."""
        described = {name: describe(kind) for name, kind in RECORD_FIELDS}
        if isinstance(self.data, Json):
            described["data"] = "json"
        for name, kind in self.data_fields():
            described[f"data.{name}"] = describe(kind)
        return described


def unknown_phase(phase: str) -> PhaseSchema:
    """The schema of records of a phase the workflow does not describe."""
    return PhaseSchema(phase, "", JSON)


def schemas_of(workflow: Workflow) -> dict[str, PhaseSchema]:
    """Each phase that writes records, by name, in the workflow's order."""
    out: dict[str, PhaseSchema] = {}
    for phase in workflow.phases:
        if not workflow.has_records(phase):
            continue
        engine = workflow.engine_of(phase)
        fields: dict[str, ColumnType] = {}
        described = True
        for node in phase.nodes:
            if isinstance(node, ExtractNode):
                written: Iterable[tuple[str, ColumnType]] = (
                    (name, field_type(spec)) for name, spec in node.fields.items()
                )
            elif isinstance(node, ScriptNode):
                written = [(node.as_, JSON)] if node.writes_records and node.as_ else []
            else:
                described = described and not node.writes_records
                continue
            for name, kind in written:
                known = fields.get(name)
                fields[name] = kind if known is None or known == kind else JSON
        data: StructOf | Json = StructOf(tuple(fields.items())) if described else JSON
        out[phase.name] = PhaseSchema(phase.name, engine, data)
    return out


def field_type(spec: FieldSpec) -> ColumnType:
    """The type of the values an extract field gives (module docstring)."""
    if isinstance(spec, str):
        return STRING
    base: ColumnType
    if spec.fields is not None:
        base = StructOf(tuple((name, field_type(sub)) for name, sub in spec.fields.items()))
    else:
        base = _FIELD_SCALARS[spec.type]
    kind: ColumnType
    if spec.as_ == "object":
        value = (spec.fields or {}).get("value")
        kind = MapOf(JSON if value is None else field_type(value))
    elif yields_list(spec.process, multiple=spec.multiple):  # split and join change it
        kind = ListOf(base)
    else:
        kind = base
    return kind if spec.default is None or fits(kind, spec.default) else JSON


def fits(kind: ColumnType, value: Any) -> bool:
    """Whether ``value`` (decoded JSON) has the type ``kind``; null fits every type."""
    if value is None or isinstance(kind, Json):
        return True
    if isinstance(kind, Scalar):
        if kind.name in {"string", "timestamp"}:
            return isinstance(value, str)
        if kind.name == "bool":
            return isinstance(value, bool)
        if kind.name == "int64":
            return isinstance(value, int) and not isinstance(value, bool) and _int64(value)
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(kind, ListOf):
        return isinstance(value, list) and all(fits(kind.item, v) for v in value)
    if isinstance(kind, MapOf):
        return isinstance(value, dict) and all(fits(kind.value, v) for v in value.values())
    if not isinstance(value, dict):
        return False
    types = dict(kind.fields)
    return all(name not in types or fits(types[name], v) for name, v in value.items())


def _int64(value: int) -> bool:
    return -(1 << 63) <= value < (1 << 63)


@functools.cache
def needs_filling(kind: ColumnType) -> bool:
    """Whether a value of this type can hold a list or map (``fill_empty`` has work)."""
    if isinstance(kind, ListOf | MapOf):
        return True
    if isinstance(kind, StructOf):
        return any(needs_filling(t) for _, t in kind.fields)
    return False


def fill_empty(kind: ColumnType, value: Any) -> Any:
    """``value`` with every null list ``[]`` and every null map ``{}`` (in place where it
    is a container; returns the value to store)."""
    if isinstance(kind, ListOf):
        if value is None:
            return []
        if isinstance(value, list) and needs_filling(kind.item):
            value[:] = [fill_empty(kind.item, v) for v in value]
        return value
    if isinstance(kind, MapOf):
        if value is None:
            return {}
        if isinstance(value, dict) and needs_filling(kind.value):
            for key, item in value.items():
                value[key] = fill_empty(kind.value, item)
        return value
    if isinstance(kind, StructOf) and isinstance(value, dict):
        for name, sub in kind.fields:
            if needs_filling(sub):
                value[name] = fill_empty(sub, value.get(name))
    return value


def conform(kind: ColumnType, value: Any, bad: list[int]) -> Any:
    """``value`` reduced to what a column of type ``kind`` holds: a value of another type
    becomes null (and ``bad[0]`` counts it), JSON text stays text. For the rare batch
    whose values do not all fit their columns (formats.py tries the batch whole first)."""
    if value is None or isinstance(kind, Json):
        return value
    if isinstance(kind, Scalar):
        if kind.name == "timestamp":
            return value if isinstance(value, str) and _timestamp(value) else _bad(bad)
        return value if fits(kind, value) else _bad(bad)
    if isinstance(kind, ListOf):
        if not isinstance(value, list):
            return _bad(bad)
        return [conform(kind.item, v, bad) for v in value]
    if isinstance(kind, MapOf):
        if not isinstance(value, dict):
            return _bad(bad)
        return {str(k): conform(kind.value, v, bad) for k, v in value.items()}
    if not isinstance(value, dict):
        return _bad(bad)
    return {name: conform(sub, value.get(name), bad) for name, sub in kind.fields}


def _bad(bad: list[int]) -> None:
    bad[0] += 1


def _timestamp(text: str) -> bool:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return False
    return parsed.tzinfo is not None


def walk_json(kind: ColumnType) -> Iterator[ColumnType]:
    """Every type inside ``kind``, itself first."""
    yield kind
    if isinstance(kind, ListOf):
        yield from walk_json(kind.item)
    elif isinstance(kind, MapOf):
        yield from walk_json(kind.value)
    elif isinstance(kind, StructOf):
        for _, sub in kind.fields:
            yield from walk_json(sub)


def parse_type(text: str) -> ColumnType:
    """The type ``describe`` wrote as ``text`` (a manifest's schema read back)."""
    kind, rest = _parse(text.strip())
    if rest.strip():
        raise ValueError(f"unexpected {rest!r} after a type in {text!r}")
    return kind


def _parse(text: str) -> tuple[ColumnType, str]:
    for scalar in ("string", "int64", "float64", "bool", "timestamp"):
        if text.startswith(scalar):
            return Scalar(scalar), text[len(scalar) :]
    if text.startswith("json"):
        return JSON, text[4:]
    if text.startswith("list<"):
        item, rest = _parse(text[5:])
        return ListOf(item), _expect(rest, ">")
    if text.startswith("map<string, "):
        value, rest = _parse(text[12:])
        return MapOf(value), _expect(rest, ">")
    if text.startswith("struct<"):
        rest = text[7:]
        fields: list[tuple[str, ColumnType]] = []
        while not rest.startswith(">"):
            name, sep, rest = rest.partition(": ")
            if not sep:
                raise ValueError(f"a struct field without a type in {text!r}")
            kind, rest = _parse(rest)
            fields.append((name, kind))
            rest = rest.removeprefix(", ")
        return StructOf(tuple(fields)), rest[1:]
    raise ValueError(f"not a column type: {text!r}")


def _expect(rest: str, token: str) -> str:
    if not rest.startswith(token):
        raise ValueError(f"expected {token!r} at {rest!r}")
    return rest[len(token) :]


def schema_from(phase: str, described: dict[str, str]) -> PhaseSchema:
    """A phase's schema from its manifest entry (``PhaseSchema.describe``)."""
    if "data" in described:
        return PhaseSchema(phase, "", JSON)
    fields: list[tuple[str, ColumnType]] = []
    for name, text in described.items():
        if name.startswith("data."):
            try:
                kind = parse_type(text)
            except ValueError:  # a field name that reads as type syntax: keep its values
                kind = JSON
            fields.append((name.removeprefix("data."), kind))
    return PhaseSchema(phase, "", StructOf(tuple(fields)))

"""Structural validation: every wrong key, type and bound in a document, each with its path;
and the best-effort view of the document that semantic rules judge when it has some.

``msgspec.convert`` stops at the first error and names dict values ``fields[...]``, which
tells an author little. This walker follows ``msgspec.inspect.type_info`` of the target
type over the raw data and collects them all; ``validate_data`` converts only data it found
clean, so both agree on what is valid (the walker may only be stricter in its wording).

The same walk builds the *view*: the document as typed objects, its broken parts left out
(a key with a default gets the default, a required one a placeholder of its type, a broken
list item or mapping entry is dropped), so the semantic rules still judge every part that
is sound in the same run. Every problem leaves a hole in ``Gaps`` (``workflows/gaps.py``),
which keeps the rules quiet where a hole could make them echo a structural problem.
Structs are built by their constructor, which checks nothing: a value of the right kind
that breaks a bound (``max_depth: -1``) stays in the view as it is, under its hole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from msgspec import inspect as mi

from workflows import paths
from workflows.errors import Problem, closest, did_you_mean
from workflows.gaps import Gaps

_MAPPING_TYPES = (mi.StructType, mi.DictType, mi.TypedDictType, mi.DataclassType)
_LIST_TYPES = (mi.CollectionType, mi.TupleType)


class _Missing:
    """No usable value: the data was of the wrong kind, or named an unknown node type."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(slots=True)
class Salvage:
    """What the walk found: every structural problem, the view (``MISSING`` when nothing
    of the document is usable, e.g. it is not a mapping) and where the holes are."""

    problems: list[Problem] = field(default_factory=list)
    value: Any = MISSING
    gaps: Gaps = field(default_factory=Gaps)


def check_structure(data: object, target: Any) -> list[Problem]:
    """All structural problems of ``data`` read as ``target`` (a type msgspec understands)."""
    return salvage(data, target).problems


def salvage(data: object, target: Any) -> Salvage:
    """Every structural problem of ``data`` read as ``target``, and its best-effort view."""
    walk = _Walk(Salvage())
    walk.result.value = walk.value(data, mi.type_info(target), "")
    return walk.result


class _Walk:
    """One walk over a document: problems and holes go to ``result`` as they are found."""

    def __init__(self, result: Salvage) -> None:
        self.result = result

    def problem(self, path: str, message: str) -> None:
        self.result.problems.append(Problem(path, message))
        self.result.gaps.hole(path)

    def value(self, data: object, t: mi.Type, path: str) -> Any:
        """The view of ``data`` read as ``t``; ``MISSING`` when it has none."""
        if isinstance(t, mi.UnionType):
            return self.union(data, t, path)
        if not _kind_matches(t, data):
            self.problem(path, f"expected {_expected(t)}, got {_got(data)}")
            return MISSING
        if isinstance(t, mi.StructType):
            assert isinstance(data, dict)
            return self.struct(data, t, path, tag_checked=False)
        if isinstance(t, mi.DictType):
            assert isinstance(data, dict)
            return self.mapping(data, t, path)
        if isinstance(t, mi.CollectionType):
            assert isinstance(data, list)
            return self.items(data, t, path)
        if isinstance(t, mi.LiteralType):
            return self.literal(data, t, path)
        error = _scalar_error(data, t)
        if error:
            self.problem(path, error)
        if isinstance(t, mi.FloatType) and isinstance(data, int):
            return float(data)  # as msgspec converts it
        return data

    def union(self, data: object, t: mi.UnionType, path: str) -> Any:
        if data is None and any(isinstance(m, mi.NoneType) for m in t.types):
            return None
        if isinstance(data, dict):
            tagged = [m for m in t.types if isinstance(m, mi.StructType) and m.tag_field]
            if tagged:
                return self.tagged(data, tagged, path)
        for member in t.types:
            if not isinstance(member, mi.NoneType) and _kind_matches(member, data):
                return self.value(data, member, path)
        self.problem(path, f"expected {_expected_union(t.types)}, got {_got(data)}")
        return MISSING

    def tagged(self, data: dict[Any, Any], members: list[mi.StructType], path: str) -> Any:
        tag_field = str(members[0].tag_field)
        by_tag = {str(m.tag): m for m in members}
        tag_path = paths.key(path, tag_field)
        valid = ", ".join(sorted(by_tag))
        if tag_field not in data:
            self.problem(tag_path, f"required key missing (one of: {valid})")
            return MISSING
        tag = data[tag_field]
        if not isinstance(tag, str):
            self.problem(tag_path, f"expected a string, got {_got(tag)}")
            return MISSING
        member = by_tag.get(tag)
        if member is None:
            noun = (
                "node type" if all(m.cls.__name__.endswith("Node") for m in members) else tag_field
            )
            message = f"unknown {noun} {tag!r} (expected one of: {valid})"
            self.problem(tag_path, message + did_you_mean(tag, by_tag))
            return MISSING
        return self.struct(data, member, path, tag_checked=True)

    def struct(
        self, data: dict[Any, Any], t: mi.StructType, path: str, *, tag_checked: bool
    ) -> Any:
        by_name = {f.encode_name: f for f in t.fields}
        allowed = set(by_name)
        if t.tag_field:
            allowed.add(t.tag_field)
            if not tag_checked and data.get(t.tag_field) != t.tag:
                self.problem(paths.key(path, t.tag_field), f"must be {t.tag!r}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            spec = by_name.get(name) if isinstance(name, str) else None
            if spec is not None:
                kwargs[spec.name] = self.value(value, spec.type, paths.key(path, name))
            elif name != t.tag_field and t.forbid_unknown_fields:
                self.unknown_key(name, allowed, path)
        for spec in t.fields:
            if spec.required and spec.encode_name not in data:
                self.problem(paths.key(path, spec.encode_name), "required key missing")
        return self.build(t, kwargs, path)

    def unknown_key(self, name: object, allowed: set[str], path: str) -> None:
        message = f"unknown key {name!r} (expected one of: {', '.join(sorted(allowed))})"
        self.problem(paths.key(path, name), message + did_you_mean(name, allowed))
        meant = closest(name, allowed)
        if meant is not None:
            # A typo: the key it resembles is as good as broken, its default a guess.
            self.result.gaps.hole(paths.key(path, meant))

    def build(self, t: mi.StructType, kwargs: dict[str, Any], path: str) -> Any:
        """The Struct of ``kwargs``: broken optional keys take their default, broken or
        missing required ones a placeholder (under the hole their problem left)."""
        values: dict[str, Any] = {}
        for spec in t.fields:
            value = kwargs.get(spec.name, MISSING)
            if value is MISSING and spec.required:
                value = placeholder(spec.type)
                if value is MISSING:
                    return MISSING
            if value is not MISSING:
                values[spec.name] = value
        self.result.gaps.struct(path)
        return t.cls(**values)

    def mapping(self, data: dict[Any, Any], t: mi.DictType, path: str) -> dict[Any, Any]:
        size_error = _size_error(len(data), t.min_length, t.max_length, "entry", "entries")
        if size_error:
            self.problem(path, size_error)
        out: dict[Any, Any] = {}
        for name, value in data.items():
            item_path = paths.key(path, name)
            key_ok = _kind_matches(t.key_type, name)
            if not key_ok:
                self.problem(item_path, f"key must be {_expected(t.key_type)}, got {_got(name)}")
            else:
                key_error = _scalar_error(name, t.key_type)
                if key_error:
                    self.problem(item_path, f"key {key_error}")
                    key_ok = False
            item = self.value(value, t.value_type, item_path)
            if key_ok and item is not MISSING:
                out[name] = item
        return out

    def items(self, data: list[Any], t: mi.CollectionType, path: str) -> list[Any]:
        size_error = _size_error(len(data), t.min_length, t.max_length, "item", "items")
        if size_error:
            self.problem(path, size_error)
        out: list[Any] = []
        kept: list[int] = []
        for i, item in enumerate(data):
            value = self.value(item, t.item_type, paths.index(path, i))
            if value is not MISSING:
                out.append(value)
                kept.append(i)
        if len(kept) < len(data):
            self.result.gaps.keep(path, kept)
        return out

    def literal(self, data: object, t: mi.LiteralType, path: str) -> Any:
        if data in t.values and any(_same_kind(v, data) for v in t.values):
            return data
        shown = ", ".join(_show(v) for v in t.values)
        got = repr(data) if isinstance(data, str) else _show(data)
        message = f"invalid value {got} (expected one of: {shown})"
        if isinstance(data, str):
            message += did_you_mean(data, [v for v in t.values if isinstance(v, str)])
        self.problem(path, message)
        return MISSING


def placeholder(t: mi.Type) -> Any:
    """A stand-in of type ``t`` for a required value that is broken or missing; it lives
    under a hole, so no rule reports on it. ``MISSING`` for a node (no type to guess)."""
    simple: dict[type[mi.Type], Any] = {
        mi.NoneType: None,
        mi.AnyType: None,
        mi.BoolType: False,
        mi.IntType: 0,
        mi.FloatType: 0.0,
        mi.StrType: "",
    }
    if type(t) in simple:
        return simple[type(t)]
    if isinstance(t, mi.LiteralType):
        return t.values[0]
    if isinstance(t, _LIST_TYPES):
        return []
    if isinstance(t, mi.DictType):
        return {}
    if isinstance(t, mi.StructType) and not t.tag_field:
        values = {f.name: placeholder(f.type) for f in t.fields if f.required}
        if any(v is MISSING for v in values.values()):
            return MISSING
        return t.cls(**values)
    if isinstance(t, mi.UnionType):
        for member in t.types:
            value = placeholder(member)
            if value is not MISSING:
                return value
    return MISSING


def _scalar_error(data: object, t: mi.Type) -> str | None:
    """What is wrong with a scalar of the right kind (length, pattern, bounds), if anything."""
    if isinstance(t, mi.StrType) and isinstance(data, str):
        size_error = _size_error(len(data), t.min_length, t.max_length, "character", "characters")
        if size_error:
            return size_error
        if t.pattern is not None and not re.search(t.pattern, data):
            return f"must match {t.pattern}, got {_quote(data)}"
    elif isinstance(t, mi.IntType | mi.FloatType) and isinstance(data, int | float):
        return _bound_error(data, t)
    return None


def _bound_error(value: float, t: mi.IntType | mi.FloatType) -> str | None:
    if t.ge is not None and not value >= t.ge:
        return f"must be >= {t.ge}"
    if t.gt is not None and not value > t.gt:
        return f"must be > {t.gt}"
    if t.le is not None and not value <= t.le:
        return f"must be <= {t.le}"
    if t.lt is not None and not value < t.lt:
        return f"must be < {t.lt}"
    if t.multiple_of is not None and value % t.multiple_of:
        return f"must be a multiple of {t.multiple_of}"
    return None


def _size_error(
    size: int, min_length: int | None, max_length: int | None, one: str, many: str
) -> str | None:
    if min_length is not None and size < min_length:
        if min_length == 1:
            return "must not be empty"
        return f"must have at least {min_length} {many}"
    if max_length is not None and size > max_length:
        return f"must have at most {max_length} {one if max_length == 1 else many}"
    return None


def _kind_matches(t: mi.Type, data: object) -> bool:
    """Whether ``data`` is the JSON kind ``t`` needs, before any constraint."""
    if isinstance(t, mi.NoneType):
        return data is None
    if isinstance(t, mi.BoolType):
        return isinstance(data, bool)
    if isinstance(t, mi.IntType):
        return isinstance(data, int) and not isinstance(data, bool)
    if isinstance(t, mi.FloatType):
        return isinstance(data, int | float) and not isinstance(data, bool)
    if isinstance(t, mi.StrType):
        return isinstance(data, str)
    if isinstance(t, mi.LiteralType):
        return any(_same_kind(v, data) for v in t.values)
    if isinstance(t, _LIST_TYPES):
        return isinstance(data, list)
    if isinstance(t, _MAPPING_TYPES):
        return isinstance(data, dict)
    # Anything else (Any, and types the workflow language does not use) is left to msgspec.
    return True


def _same_kind(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    return type(a) is type(b)


def _expected(t: mi.Type) -> str:
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.IntType):
        return "an integer"
    if isinstance(t, mi.FloatType):
        return "a number"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.LiteralType):
        return "one of: " + ", ".join(_show(v) for v in t.values)
    if isinstance(t, _LIST_TYPES):
        return "a list"
    if isinstance(t, _MAPPING_TYPES):
        return "a mapping"
    return type(t).__name__


def _expected_union(types: Iterable[mi.Type]) -> str:
    # "or null" is left out: optional keys are simply omitted, nobody writes null on purpose.
    members = [m for m in types if not isinstance(m, mi.NoneType)] or [mi.NoneType()]
    literals = [v for m in members if isinstance(m, mi.LiteralType) for v in m.values]
    if literals and all(isinstance(m, mi.LiteralType) for m in members):
        return "one of: " + ", ".join(map(_show, literals))
    parts = list(dict.fromkeys(_expected(m) for m in members))
    return " or ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _got(data: object) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return f"boolean {'true' if data else 'false'}"
    if isinstance(data, int):
        return f"integer {data}"
    if isinstance(data, float):
        return f"number {data}"
    if isinstance(data, str):
        return f"string {_quote(data)}"
    if isinstance(data, list):
        return "a list"
    if isinstance(data, dict):
        return "a mapping"
    return f"a {type(data).__name__}"


def _show(value: object) -> str:
    """A literal value as an author would write it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z0-9_.-]+", value) else _quote(value)
    return str(value)


def _quote(text: str, limit: int = 60) -> str:
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return json.dumps(text, ensure_ascii=False)

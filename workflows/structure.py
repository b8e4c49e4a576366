"""Structural validation: every wrong key, type and bound in a document, each with its path.

``msgspec.convert`` stops at the first error and names dict values ``fields[...]``, which
tells an author little. This walker follows ``msgspec.inspect.type_info`` of the target
type over the raw data and collects them all; ``validate_data`` converts only data it found
clean, so both agree on what is valid (the walker may only be stricter in its wording).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from msgspec import inspect as mi

from workflows import paths
from workflows.errors import Problem, did_you_mean

_MAPPING_TYPES = (mi.StructType, mi.DictType, mi.TypedDictType, mi.DataclassType)
_LIST_TYPES = (mi.CollectionType, mi.TupleType)


def check_structure(data: object, target: Any) -> list[Problem]:
    """All structural problems of ``data`` read as ``target`` (a type msgspec understands)."""
    out: list[Problem] = []
    _check(data, mi.type_info(target), "", out)
    return out


def _check(data: object, t: mi.Type, path: str, out: list[Problem]) -> None:
    if isinstance(t, mi.UnionType):
        _check_union(data, t, path, out)
        return
    if not _kind_matches(t, data):
        out.append(Problem(path, f"expected {_expected(t)}, got {_got(data)}"))
        return
    if isinstance(t, mi.StructType):
        assert isinstance(data, dict)
        _check_struct(data, t, path, out, tag_checked=False)
    elif isinstance(t, mi.DictType):
        assert isinstance(data, dict)
        _check_dict(data, t, path, out)
    elif isinstance(t, mi.CollectionType):
        assert isinstance(data, list)
        _check_list(data, t, path, out)
    elif isinstance(t, mi.LiteralType):
        _check_literal(data, t, path, out)
    else:
        error = _scalar_error(data, t)
        if error:
            out.append(Problem(path, error))


def _check_union(data: object, t: mi.UnionType, path: str, out: list[Problem]) -> None:
    if data is None and any(isinstance(m, mi.NoneType) for m in t.types):
        return
    if isinstance(data, dict):
        tagged = [m for m in t.types if isinstance(m, mi.StructType) and m.tag_field]
        if tagged:
            _check_tagged(data, tagged, path, out)
            return
    for member in t.types:
        if not isinstance(member, mi.NoneType) and _kind_matches(member, data):
            _check(data, member, path, out)
            return
    out.append(Problem(path, f"expected {_expected_union(t.types)}, got {_got(data)}"))


def _check_tagged(
    data: dict[Any, Any], members: list[mi.StructType], path: str, out: list[Problem]
) -> None:
    tag_field = str(members[0].tag_field)
    by_tag = {str(m.tag): m for m in members}
    tag_path = paths.key(path, tag_field)
    valid = ", ".join(sorted(by_tag))
    if tag_field not in data:
        out.append(Problem(tag_path, f"required key missing (one of: {valid})"))
        return
    tag = data[tag_field]
    if not isinstance(tag, str):
        out.append(Problem(tag_path, f"expected a string, got {_got(tag)}"))
        return
    member = by_tag.get(tag)
    if member is None:
        noun = "node type" if all(m.cls.__name__.endswith("Node") for m in members) else tag_field
        message = f"unknown {noun} {tag!r} (expected one of: {valid})"
        out.append(Problem(tag_path, message + did_you_mean(tag, by_tag)))
        return
    _check_struct(data, member, path, out, tag_checked=True)


def _check_struct(
    data: dict[Any, Any], t: mi.StructType, path: str, out: list[Problem], *, tag_checked: bool
) -> None:
    by_name = {f.encode_name: f for f in t.fields}
    allowed = set(by_name)
    if t.tag_field:
        allowed.add(t.tag_field)
        if not tag_checked and data.get(t.tag_field) != t.tag:
            out.append(Problem(paths.key(path, t.tag_field), f"must be {t.tag!r}"))
    for name, value in data.items():
        field = by_name.get(name) if isinstance(name, str) else None
        if field is not None:
            _check(value, field.type, paths.key(path, name), out)
        elif name != t.tag_field and t.forbid_unknown_fields:
            message = f"unknown key {name!r} (expected one of: {', '.join(sorted(allowed))})"
            out.append(Problem(paths.key(path, name), message + did_you_mean(name, allowed)))
    out.extend(
        Problem(paths.key(path, field.encode_name), "required key missing")
        for field in t.fields
        if field.required and field.encode_name not in data
    )


def _check_dict(data: dict[Any, Any], t: mi.DictType, path: str, out: list[Problem]) -> None:
    size_error = _size_error(len(data), t.min_length, t.max_length, "entry", "entries")
    if size_error:
        out.append(Problem(path, size_error))
    for name, value in data.items():
        item_path = paths.key(path, name)
        if not _kind_matches(t.key_type, name):
            out.append(Problem(item_path, f"key must be {_expected(t.key_type)}, got {_got(name)}"))
        else:
            key_error = _scalar_error(name, t.key_type)
            if key_error:
                out.append(Problem(item_path, f"key {key_error}"))
        _check(value, t.value_type, item_path, out)


def _check_list(data: list[Any], t: mi.CollectionType, path: str, out: list[Problem]) -> None:
    size_error = _size_error(len(data), t.min_length, t.max_length, "item", "items")
    if size_error:
        out.append(Problem(path, size_error))
    for i, item in enumerate(data):
        _check(item, t.item_type, paths.index(path, i), out)


def _check_literal(data: object, t: mi.LiteralType, path: str, out: list[Problem]) -> None:
    if data in t.values and any(_same_kind(v, data) for v in t.values):
        return
    shown = ", ".join(_show(v) for v in t.values)
    got = repr(data) if isinstance(data, str) else _show(data)
    message = f"invalid value {got} (expected one of: {shown})"
    if isinstance(data, str):
        message += did_you_mean(data, [v for v in t.values if isinstance(v, str)])
    out.append(Problem(path, message))


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

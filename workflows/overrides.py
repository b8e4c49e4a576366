"""``--set key=value``: change a parsed document before it is validated.

Overrides edit the raw data, not the ``Workflow``, so an override is validated exactly like
the file it amends and its mistakes are reported the same way.

A path is dotted keys with list items by index or, for items that have a ``name``, by name:
``max_depth``, ``phases[0].engine``, ``phases[page].nodes[1].limit``. A phase's position
changes as a file is edited, its name does not; a name made only of digits would read as an
index, and phase names are seldom that.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from workflows import yaml_safe
from workflows.errors import Problem, WorkflowInvalid, did_you_mean

_KEY = re.compile(r"[^.\[\]=\s]+")
_ITEM = re.compile(r"\[(?P<item>[^\[\]=\s]+)\]")
_EXAMPLE = "e.g. max_depth=2 or phases[page].engine=http"


@dataclass(frozen=True, slots=True)
class _Named:
    """``[name]`` in a path: the item of a list whose ``name`` is this."""

    name: str


_Part = str | int | _Named


class _BadPath(ValueError):
    """A path that is not dotted keys and [index] or [name] items; says where."""


def apply_overrides(data: dict[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``path=value`` applied in order.

    Missing mappings along the path are created. Values are read as YAML (``5``, ``true``,
    ``[a, b]``), and a value that is not valid YAML is taken as a plain string. Raises
    ``WorkflowInvalid`` naming every malformed or impossible override.
    """
    result, problems = override(data, sets)
    if problems:
        raise WorkflowInvalid(problems)
    return result


def override(data: dict[str, Any], sets: Iterable[str]) -> tuple[dict[str, Any], list[Problem]]:
    """A copy of ``data`` with every override that can apply applied, in order, and a
    problem for each that cannot (so validation can still judge the rest)."""
    result = copy.deepcopy(data)
    problems: list[Problem] = []
    for item in sets:
        path, sep, text = item.partition("=")
        path = path.strip()
        if not sep:
            problems.append(Problem("", f"--set {item!r}: expected key=value, {_EXAMPLE}"))
            continue
        try:
            parts = parse_path(path)
        except _BadPath as bad:
            problems.append(Problem("", f"--set {item!r}: {bad}"))
            continue
        error = _assign(result, parts, parse_value(text))
        if error:
            problems.append(Problem(path, f"--set: {error}"))
    return result, problems


def parse_path(path: str) -> list[_Part]:
    """The keys, indexes and names of an override path; raises ``_BadPath`` saying what is
    wrong with it, and where."""
    if not path:
        raise _BadPath(f"the path before '=' is empty ({_EXAMPLE})")
    parts: list[_Part] = []
    position = 0
    while position < len(path):
        char = path[position]
        if position == 0 or char == ".":
            start = position if position == 0 else position + 1
            key = _KEY.match(path, start)
            if key is None:
                raise _BadPath(_bad(path, start, "a key"))
            parts.append(key.group())
            position = key.end()
        elif char == "[":
            item = _ITEM.match(path, position)
            if item is None and "]" not in path[position:]:
                raise _BadPath(
                    f"bad path {path!r}: the '[' after {path[:position]!r} is not closed"
                )
            if item is None:
                raise _BadPath(_bad(path, position + 1, "an index or a name, then ']'"))
            text = item.group("item")
            parts.append(int(text) if text.isdigit() else _Named(text))
            position = item.end()
        else:
            raise _BadPath(_bad(path, position, "'.', '[' or '='"))
    return parts


def _bad(path: str, position: int, wanted: str) -> str:
    rest = path[position:]
    got = f"got {rest[0]!r}" if rest else "got the end of it"
    if rest[:1].isspace():
        got = "got a space (a path has none)"
    where = f"after {path[:position]!r}" if position else "first"
    return f"bad path {path!r}: expected {wanted} {where}, {got}"


def parse_value(text: str) -> Any:
    """A ``--set`` value as YAML would read it; a plain string if it is not YAML."""
    stripped = text.strip()
    try:
        node = yaml_safe.compose(stripped)
        value = None if node is None else yaml_safe.construct(node)
    except yaml.YAMLError:
        return text
    # "a: b" would be a mapping; only explicit flow collections ({...}, [...]) are data.
    if isinstance(value, dict | list) and stripped[:1] not in ("{", "["):
        return text
    return value


def _assign(root: dict[str, Any], parts: list[_Part], value: Any) -> str | None:
    """Set ``value`` at ``parts`` inside ``root``; the reason it cannot be done, if not."""
    container: Any = root
    walked = ""
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        if isinstance(part, int | _Named):
            if not isinstance(container, list):
                return f"{walked or 'the document'} is not a list"
            index = part if isinstance(part, int) else _index_of(container, part.name, walked)
            if isinstance(index, str):
                return index
            if index >= len(container):
                return f"{walked} has {len(container)} items, no index {index}"
            if last:
                container[index] = value
                return None
            container = container[index]
            walked = f"{walked}[{part if isinstance(part, int) else part.name}]"
        else:
            if not isinstance(container, dict):
                return f"{walked} is not a mapping"
            if last:
                container[part] = value
                return None
            if container.get(part) is None:
                if not isinstance(parts[position + 1], str):
                    return f"{walked + '.' if walked else ''}{part} is not a list"
                container[part] = {}
            container = container[part]
            walked = f"{walked}.{part}" if walked else part
    return None


def _index_of(items: list[Any], name: str, walked: str) -> int | str:
    """The index of the item of ``items`` named ``name``, or why there is none."""
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    found = [i for i, item_name in enumerate(names) if item_name == name]
    if len(found) == 1:
        return found[0]
    if found:
        return f"{walked} has {len(found)} items named {name!r}; use an index"
    known = [str(n) for n in names if isinstance(n, str)]
    noun = "phase" if walked.rpartition(".")[2] == "phases" else "item"
    listing = f"{walked}: {', '.join(known)}" if known else f"{walked} has no named items"
    return f"no {noun} named {name!r} ({listing})" + did_you_mean(name, known)

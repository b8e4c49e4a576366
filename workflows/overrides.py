"""``--set key=value``: change a parsed document before it is validated.

Overrides edit the raw data, not the ``Workflow``, so an override is validated exactly like
the file it amends and its mistakes are reported the same way.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable
from typing import Any

import yaml

from workflows import yaml_safe
from workflows.errors import Problem, WorkflowInvalid

_PATH = re.compile(r"[^.\[\]=\s]+(?:\.[^.\[\]=\s]+|\[\d+\])*")
_TOKEN = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def apply_overrides(data: dict[str, Any], sets: Iterable[str]) -> dict[str, Any]:
    """A copy of ``data`` with each ``path=value`` applied in order.

    Paths are dotted keys with list indexes (``phases[0].engine``); missing mappings along
    the way are created. Values are read as YAML (``5``, ``true``, ``[a, b]``), and a value
    that is not valid YAML is taken as a plain string. Raises ``WorkflowInvalid`` naming
    every malformed or impossible override.
    """
    result = copy.deepcopy(data)
    problems: list[Problem] = []
    for item in sets:
        path, sep, text = item.partition("=")
        path = path.strip()
        if not sep or not _PATH.fullmatch(path):
            problems.append(Problem("", f"--set {item!r}: expected key=value, e.g. max_depth=2"))
            continue
        error = _assign(result, path, parse_value(text))
        if error:
            problems.append(Problem(path, f"--set: {error}"))
    if problems:
        raise WorkflowInvalid(problems)
    return result


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


def _assign(root: dict[str, Any], path: str, value: Any) -> str | None:
    """Set ``value`` at ``path`` inside ``root``; the reason it cannot be done, if not."""
    tokens: list[str | int] = [
        int(index) if index else name for index, name in _TOKEN.findall(path)
    ]
    container: Any = root
    walked = ""
    for position, token in enumerate(tokens):
        last = position == len(tokens) - 1
        if isinstance(token, int):
            if not isinstance(container, list):
                return f"{walked or 'the document'} is not a list"
            if token >= len(container):
                return f"{walked} has {len(container)} items, no index {token}"
            if last:
                container[token] = value
                return None
            container = container[token]
            walked = f"{walked}[{token}]"
        else:
            if not isinstance(container, dict):
                return f"{walked} is not a mapping"
            if last:
                container[token] = value
                return None
            if container.get(token) is None:
                if isinstance(tokens[position + 1], int):
                    return f"{walked + '.' if walked else ''}{token} is not a list"
                container[token] = {}
            container = container[token]
            walked = f"{walked}.{token}" if walked else token
    return None

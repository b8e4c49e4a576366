"""Reading workflow documents (YAML or JSON, text, bytes or a file) into a ``Workflow``.

Documents may come from strangers (the HTTP API), so parsing is bounded: a size cap, no
YAML aliases, limited nesting, and duplicate keys are errors rather than last-one-wins.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from workflows import paths, yaml_safe
from workflows.errors import Problem, WorkflowInvalid
from workflows.overrides import override
from workflows.spec import Workflow
from workflows.validate import validate_data

Format = Literal["yaml", "json"]

DEFAULT_MAX_BYTES = 1024 * 1024
MAX_NESTING = yaml_safe.MAX_NESTING

_JSON_OFFSET = re.compile(r"\s*\(byte (\d+)\)$")


def load_workflow(
    text: str | bytes,
    *,
    filename: str | None = None,
    fmt: Format | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    overrides: Sequence[str] = (),
) -> Workflow:
    """Parse, override and validate a workflow document; raises ``WorkflowInvalid``.

    ``fmt`` defaults to the ``filename``'s extension (``.json`` is JSON), else YAML, which
    also reads JSON. ``filename`` only labels problems; it is never read.
    """
    data, read_problems = _read(text, filename=filename, fmt=fmt, max_bytes=max_bytes)
    if data is None:
        raise WorkflowInvalid(read_problems, source=filename)
    # Every problem in one run: an override that cannot apply, a duplicate key, and what
    # validation finds in the rest. The command line's own mistakes come first.
    data, set_problems = override(data, overrides)
    try:
        workflow = validate_data(data, source=filename, earlier=read_problems)
    except WorkflowInvalid as error:
        raise WorkflowInvalid(set_problems + error.problems, source=filename) from None
    if set_problems:
        raise WorkflowInvalid(set_problems, source=filename)
    return workflow


def load_workflow_file(
    path: str | os.PathLike[str],
    *,
    fmt: Format | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    overrides: Sequence[str] = (),
) -> Workflow:
    """``load_workflow`` on a file; ``OSError`` (missing, a directory...) is left to the caller.

    Reads at most ``max_bytes + 1`` bytes, so a huge file costs no memory to reject.
    """
    with Path(path).open("rb") as file:
        raw = file.read(max_bytes + 1)
    return load_workflow(
        raw, filename=os.fspath(path), fmt=fmt, max_bytes=max_bytes, overrides=overrides
    )


def parse_document(
    text: str | bytes,
    *,
    filename: str | None = None,
    fmt: Format | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """The raw top-level mapping of a document, not yet validated; raises ``WorkflowInvalid``."""
    data, problems = _read(text, filename=filename, fmt=fmt, max_bytes=max_bytes)
    if problems or data is None:
        raise WorkflowInvalid(problems, source=filename)
    return data


def _read(
    text: str | bytes, *, filename: str | None, fmt: Format | None, max_bytes: int
) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The top-level mapping of a document and the problems of reading it: no mapping
    when it cannot be read (too large, not UTF-8 or YAML or JSON, not a mapping); a
    mapping with problems when its keys repeat (the last of each kept)."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    if len(raw) > max_bytes:
        return None, [Problem("", f"document is larger than the limit of {max_bytes} bytes")]
    try:
        decoded = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        return None, [Problem("", f"document is not UTF-8 (byte {error.start})")]
    if fmt is None:
        fmt = "json" if filename and filename.lower().endswith(".json") else "yaml"
    data, problems = _parse_json(decoded) if fmt == "json" else _parse_yaml(decoded)
    if data is None and not problems:
        return None, [Problem("", "document is empty")]
    if data is not None and not isinstance(data, dict):
        return None, [Problem("", f"a workflow must be a mapping, got {_kind(data)}")]
    return data, problems


def _parse_yaml(text: str) -> tuple[Any, list[Problem]]:
    try:
        node = yaml_safe.compose(text)
        if node is None:
            return None, []
        return yaml_safe.construct(node), yaml_safe.duplicate_keys(node)
    except yaml.YAMLError as error:
        return None, [yaml_safe.error_problem(error, text)]


def _parse_json(text: str) -> tuple[Any, list[Problem]]:
    if not text.strip():
        return None, []
    raw = text.encode()
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        return None, [_json_error(raw, str(error))]
    except RecursionError:
        return None, [Problem("", f"JSON error: nested deeper than {MAX_NESTING} levels")]
    if _nesting(data) > MAX_NESTING:
        return None, [Problem("", f"JSON error: nested deeper than {MAX_NESTING} levels")]
    # msgspec keeps the last of duplicate keys; a second, pair-preserving pass finds them.
    try:
        pairs = json.loads(text, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):  # stricter than msgspec somewhere: nothing to add
        return data, []
    return data, _json_duplicates(pairs, "")


def _json_error(raw: bytes, message: str) -> Problem:
    message = message.removeprefix("JSON is malformed: ")
    offset = _JSON_OFFSET.search(message)
    if offset is None:
        return Problem("", f"JSON error: {message}")
    position = int(offset.group(1))
    before = raw[:position]
    line = before.count(b"\n") + 1
    column = len(before[before.rfind(b"\n") + 1 :].decode(errors="replace")) + 1
    what = message[: offset.start()]
    return Problem("", f"JSON error at line {line}, column {column}: {what}")


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as its key/value pairs, duplicates included."""


def _json_duplicates(value: Any, path: str) -> list[Problem]:
    problems: list[Problem] = []
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        for name, item in value:
            item_path = paths.key(path, name)
            if name in seen:
                problems.append(Problem(item_path, f"duplicate key {name!r}"))
            seen.add(name)
            problems += _json_duplicates(item, item_path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            problems += _json_duplicates(item, paths.index(path, i))
    return problems


def _nesting(value: Any) -> int:
    """How deeply lists and mappings nest, without recursion (the input is untrusted)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_NESTING:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _kind(data: object) -> str:
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int | float):
        return "a number"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list):
        return "a list"
    return f"a {type(data).__name__}"

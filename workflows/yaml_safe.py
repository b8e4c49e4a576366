"""A YAML loader fit for documents from strangers.

On top of PyYAML's safe loading it refuses anchors and aliases (a few lines of aliases
expand to gigabytes: "billion laughs") and deep nesting before any node is built, reports
every duplicate mapping key with its path instead of silently keeping the last one, and
resolves plain scalars by the YAML 1.2 core schema, the one JSON agrees with: ``on``/``no``
stay strings, ``010`` is ten, ``1:30`` and ``2024-01-01`` are strings rather than a
sexagesimal int and a date.

libyaml parses when it is installed (about ten times faster than pure Python on a
1 MiB document); the pure-Python parser is the fallback, with the same rules.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from workflows import paths, yaml_errors
from workflows.errors import Problem

MAX_NESTING = 64

_HAS_LIBYAML: bool = bool(getattr(yaml, "__with_libyaml__", False))


class YamlRejected(yaml.MarkedYAMLError):
    """A construct this loader refuses, located like PyYAML's own errors."""


class _CoreResolver(BaseResolver):
    """Implicit tags of the YAML 1.2 core schema (yaml.org/spec/1.2.2, 10.3.2)."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_CoreResolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


class _StrictConstructor(SafeConstructor):
    """Safe construction, with ints read the core-schema way (``010`` is ten, not eight)."""

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)

    # PyYAML's registry is a class attribute; a copy leaves SafeLoader's own untouched.
    yaml_constructors = {
        **SafeConstructor.yaml_constructors,
        "tag:yaml.org,2002:int": construct_yaml_int,
    }


class PyStrictLoader(Reader, Scanner, Parser, Composer, _StrictConstructor, _CoreResolver):
    """The pure-Python loader."""

    def __init__(self, stream: str | bytes) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        Composer.__init__(self)
        _StrictConstructor.__init__(self)
        _CoreResolver.__init__(self)


if _HAS_LIBYAML:
    from yaml._yaml import CParser

    class CStrictLoader(CParser, _StrictConstructor, _CoreResolver):
        """The libyaml loader."""

        def __init__(self, stream: str | bytes) -> None:
            CParser.__init__(self, stream)
            _StrictConstructor.__init__(self)
            _CoreResolver.__init__(self)


def _loader(text: str | bytes, *, use_libyaml: bool | None) -> PyStrictLoader | CStrictLoader:
    if _HAS_LIBYAML if use_libyaml is None else use_libyaml:
        return CStrictLoader(text)
    return PyStrictLoader(text)


def compose(text: str | bytes, *, use_libyaml: bool | None = None) -> Node | None:
    """The document's node tree (None when empty); raises ``yaml.YAMLError``.

    The events are screened first, so a refused construct never reaches the composer.
    """
    try:
        _screen(_loader(text, use_libyaml=use_libyaml))
    except yaml.MarkedYAMLError as error:
        if not _parser_nesting_limit(error):
            raise
        # Some libyaml releases stop at their own depth limit (1000) while scanning ahead,
        # before the screen sees the 65th level. The pure-Python screen reports the same
        # document the way every parser should: Trawl's limit, at the level that passed it.
        _screen(PyStrictLoader(text))
        raise
    loader = _loader(text, use_libyaml=use_libyaml)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def construct(node: Node) -> Any:
    """Python data from a node tree that ``compose`` returned."""
    loader = PyStrictLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _screen(loader: PyStrictLoader | CStrictLoader) -> None:
    """Refuse aliases, anchors and deep nesting, reading events only (nothing is built)."""
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise _rejected("aliases (*name) are not allowed", event)
            if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                raise _rejected("anchors (&name) are not allowed", event)
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_NESTING:
                    raise _rejected(f"nested deeper than {MAX_NESTING} levels", event)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _parser_nesting_limit(error: yaml.MarkedYAMLError) -> bool:
    return "maximum nesting depth" in (error.problem or "")


def _rejected(problem: str, event: yaml.Event) -> YamlRejected:
    start = event.start_mark
    mark = None
    if start is not None:  # libyaml's marks are another class; PyYAML's errors want this one
        mark = yaml.Mark("<document>", start.index, start.line, start.column, None, 0)
    return YamlRejected(problem=problem, problem_mark=mark)


def duplicate_keys(node: Node, path: str = "") -> list[Problem]:
    """Every key that appears twice in one mapping, with where it first appeared."""
    problems: list[Problem] = []
    if isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            problems += duplicate_keys(item, paths.index(path, i))
    elif isinstance(node, MappingNode):
        first_line: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                continue
            ident = (key_node.tag, key_node.value)
            key_path = paths.key(path, key_node.value)
            line = key_node.start_mark.line + 1
            if ident in first_line:
                problems.append(
                    Problem(
                        key_path,
                        f"duplicate key {key_node.value!r} "
                        f"(first at line {first_line[ident]}, again at line {line})",
                    )
                )
            else:
                first_line[ident] = line
            problems += duplicate_keys(value_node, key_path)
    return problems


def error_problem(error: yaml.YAMLError, text: str = "") -> Problem:
    """A parse error as a Problem that says where (1-based line and column)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        what = yaml_errors.describe(error, text)
        return Problem("", f"YAML error at line {mark.line + 1}, column {mark.column + 1}: {what}")
    if isinstance(error, yaml.reader.ReaderError):
        before = text[: error.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        return Problem("", f"YAML error at line {line}, column {column}: {error.reason}")
    return Problem("", f"YAML error: {error}")

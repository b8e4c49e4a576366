"""Field processors: the small text edits a field's ``process`` list applies, in order.

Authors used to clean values with a regex alone, which cannot remove a ``¶`` from the end of
a heading and keep the rest, or turn ``"a, b, c"`` into a list. A processor is a name
(``strip``) or a one-key mapping of a name to its argument (``{replace: [old, new]}``):

=======================  ==========================================================
``strip``                whitespace off both ends
``collapse_whitespace``  every whitespace run (line breaks too) one space; ends stripped
``lower``, ``upper``     case
``{strip_chars: S}``     the characters of S off both ends
``{remove: S}``          every occurrence of S removed
``{replace: [A, B]}``    every occurrence of A replaced by B
``{regex_replace: [P, R]}``  every match of the RE2 pattern P replaced by R, where ``\\1``
                         and ``\\g<name>`` are groups and ``\\\\`` is a backslash
``{prefix: S}``, ``{suffix: S}``  S added before or after
``{default_if_empty: V}``  an empty text becomes V (a text, or null: then the value is
                         missing, so ``default`` and ``required`` apply)
``{split: S}``           text to a list: split on S, each part stripped, empty parts left out
``{join: S}``            a list to one text, its items joined by S
``{slice: [START, END]}``  Python slice: characters of a text, items of a list
=======================  ==========================================================

A value is a text or a list of texts (``multiple: true``, or after ``split``). Every
processor but ``join`` and ``slice`` applies to each item of a list (``split`` flattens),
and an item that becomes null leaves the list. ``join`` needs a list: validation follows
the value's shape through the list and says so where it is a text.

Processors cannot make a value grow without bound: a step's result may be at most as long
as its input or ``MAX_GROWN_CHARS``, whichever is more (a list counts the characters of its
items), and a ``split`` may make at most ``MAX_LIST_ITEMS`` items. A step that would
exceed that raises ``ProcessLimitError`` before building the result; the extract node
turns it into a null and a warning, as it does a failed conversion. Patterns are bounded
as every user regex is (``workflows/regex.py``).

Everything here is a pure function of the spec and the value; ``compile_processors`` runs
once per field spec (nodes/extract.py keeps the result per spec object).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from workflows import regex
from workflows.errors import did_you_mean

Value = str | list[str]
# One step over a whole value, given the room (characters) its result may take.
Step = Callable[[Value, int], Value | None]
# One step over one text (applied to each item of a list).
TextStep = Callable[[str, int], Value | None]

# How long a processed value may grow past its input (characters).
MAX_GROWN_CHARS = 1 << 20
# How many items a list may have after a split (each is a Python object: ~50 bytes more
# than its text, so a page of "a,a,a,..." must not become millions of them).
MAX_LIST_ITEMS = 100_000


class ProcessorError(ValueError):
    """A processor spec that cannot run (validation names its path)."""


class ProcessLimitError(ValueError):
    """A step whose result would be longer than the room it has."""


def _check_room(size: int, room: int) -> None:
    if size > room:
        raise ProcessLimitError(
            f"the result would be {size} characters; at most {room} (MAX_GROWN_CHARS or the "
            "input's length)"
        )


def size_of(value: Value) -> int:
    """The characters a value holds (a list: its items')."""
    return len(value) if isinstance(value, str) else sum(map(len, value))


# -- the processors: each builder checks its argument and returns the step


def _no_arg(fn: Callable[[str], str]) -> Callable[[Any], TextStep]:
    def build(_: Any) -> TextStep:
        def step(text: str, room: int) -> Value:
            out = fn(text)
            _check_room(len(out), room)  # upper() and lower() can lengthen ("ß" -> "SS")
            return out

        return step

    return build


def _text_arg(arg: Any, what: str, *, empty: bool = False) -> str:
    if not isinstance(arg, str) or (not empty and not arg):
        kind = "a string" if empty else "a non-empty string"
        raise ProcessorError(f"takes {what}, {kind}; got {_show(arg)}")
    return arg


def _pair(arg: Any, what: str) -> tuple[str, str]:
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
        raise ProcessorError(f"takes {what}, a list of two strings; got {_show(arg)}")
    return arg[0], arg[1]


def _strip_chars(arg: Any) -> TextStep:
    chars = _text_arg(arg, "the characters to strip")
    return lambda text, room: text.strip(chars)


def _remove(arg: Any) -> TextStep:
    old = _text_arg(arg, "the text to remove")
    return lambda text, room: text.replace(old, "")


def _replace(arg: Any) -> TextStep:
    old, new = _pair(arg, "[OLD, NEW]")
    if not old:
        raise ProcessorError("OLD (the text to replace) must not be empty")
    grows = len(new) - len(old)

    def step(text: str, room: int) -> Value:
        if grows > 0:
            _check_room(len(text) + text.count(old) * grows, room)
        return text.replace(old, new)

    return step


def _prefix(arg: Any) -> TextStep:
    before = _text_arg(arg, "the text to add", empty=True)

    def step(text: str, room: int) -> Value:
        _check_room(len(before) + len(text), room)
        return before + text

    return step


def _suffix(arg: Any) -> TextStep:
    after = _text_arg(arg, "the text to add", empty=True)

    def step(text: str, room: int) -> Value:
        _check_room(len(text) + len(after), room)
        return text + after

    return step


def _default_if_empty(arg: Any) -> TextStep:
    if arg is not None and not isinstance(arg, str):
        raise ProcessorError(
            f"takes the value for an empty text, a string or null; got {_show(arg)}"
        )

    def step(text: str, room: int) -> Value | None:
        if text:
            return text
        if arg is not None:
            _check_room(len(arg), room)
        return arg

    return step


def _split(arg: Any) -> TextStep:
    sep = _text_arg(arg, "the separator")

    def step(text: str, room: int) -> Value:
        _check_items(text.count(sep) + 1)
        return [part for piece in text.split(sep) if (part := piece.strip())]

    return step


def _check_items(count: int) -> None:
    if count > MAX_LIST_ITEMS:
        raise ProcessLimitError(f"the list would have {count} items; at most {MAX_LIST_ITEMS}")


def _regex_replace(arg: Any) -> TextStep:
    pattern_text, template = _pair(arg, "[PATTERN, REPLACEMENT]")
    try:
        pattern = regex.compile_pattern(pattern_text)
    except regex.RegexError as exc:
        raise ProcessorError(f"PATTERN: {exc}") from None
    pieces = _template(template, pattern)
    literal = "".join(p for p in pieces if isinstance(p, str)) if _all_text(pieces) else None

    def step(text: str, room: int) -> Value:
        out: list[str] = []
        size = 0  # of ``out``; checked (with the rest of the text) as each match is added
        last = 0
        for match in pattern.finditer(text):
            start, end = match.start(), match.end()
            if literal is not None:
                replacement = literal
            else:
                replacement = "".join(
                    p if isinstance(p, str) else (match.group(p) or "") for p in pieces
                )
            size += start - last + len(replacement)
            _check_room(size + len(text) - end, room)
            out.append(text[last:start])
            out.append(replacement)
            last = end
        out.append(text[last:])
        return "".join(out)

    return step


def _all_text(pieces: list[str | int]) -> bool:
    return all(isinstance(p, str) for p in pieces)


def _template(template: str, pattern: regex.Pattern) -> list[str | int]:
    """``template`` as literal texts and group numbers; a reference to a group the pattern
    lacks is an error now, not a surprise on the thousandth page."""
    groups = int(getattr(pattern, "groups", 0))  # RE2's patterns know their group count
    names = pattern.groupindex
    pieces: list[str | int] = []
    literal: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char != "\\":
            literal.append(char)
            i += 1
            continue
        nxt = template[i + 1 : i + 2]
        if nxt == "\\":
            literal.append("\\")
            i += 2
            continue
        if nxt.isdigit():
            j = i + 1
            while j < len(template) and j < i + 3 and template[j].isdigit():
                j += 1
            ref: str = template[i + 1 : j]
            i = j
        elif nxt == "g" and template[i + 2 : i + 3] == "<" and ">" in template[i + 3 :]:
            close = template.index(">", i + 3)
            ref = template[i + 3 : close]
            i = close + 1
        else:
            raise ProcessorError(
                f"REPLACEMENT: unknown escape {template[i : i + 2]!r} (groups are \\1 or "
                "\\g<name>; a backslash is \\\\)"
            )
        if ref.isdigit():
            number = int(ref)
            if number > groups:
                raise ProcessorError(
                    f"REPLACEMENT: group {number} does not exist (the pattern has {groups})"
                )
        elif ref in names:
            number = names[ref]
        else:
            known = ", ".join(sorted(names)) or "none"
            raise ProcessorError(
                f"REPLACEMENT: no group named {ref!r} (named groups: {known})"
                + did_you_mean(ref, names)
            )
        if literal:
            pieces.append("".join(literal))
            literal = []
        pieces.append(number)
    if literal:
        pieces.append("".join(literal))
    return pieces


def _join(arg: Any) -> Step:
    sep = _text_arg(arg, "the separator", empty=True)

    def step(value: Value, room: int) -> Value:
        if isinstance(value, str):
            return value
        _check_room(size_of(value) + len(sep) * max(len(value) - 1, 0), room)
        return sep.join(value)

    return step


def _slice(arg: Any) -> Step:
    if not (
        isinstance(arg, list)
        and len(arg) == 2
        and all(a is None or (isinstance(a, int) and not isinstance(a, bool)) for a in arg)
    ):
        raise ProcessorError(
            f"takes [START, END], two integers or nulls (negative counts from the end); "
            f"got {_show(arg)}"
        )
    window = slice(arg[0], arg[1])
    return lambda value, room: value[window]


Shape = Literal["same", "list", "text"]


@dataclass(frozen=True, slots=True)
class _Kind:
    """One processor: how its argument is built into a step, how that argument is written
    (None: it takes none), and the shape of what it gives."""

    build: Callable[[Any], Step]
    takes: str | None
    shape: Shape = "same"


def _each_of(build: Callable[[Any], TextStep]) -> Callable[[Any], Step]:
    """A builder of a step over one text, made a builder of a step over a whole value."""
    return lambda arg: _each(build(arg))


_KINDS: dict[str, _Kind] = {
    "strip": _Kind(_each_of(_no_arg(str.strip)), None),
    "collapse_whitespace": _Kind(_each_of(_no_arg(lambda t: " ".join(t.split()))), None),
    "lower": _Kind(_each_of(_no_arg(str.lower)), None),
    "upper": _Kind(_each_of(_no_arg(str.upper)), None),
    "strip_chars": _Kind(_each_of(_strip_chars), "CHARS"),
    "remove": _Kind(_each_of(_remove), "TEXT"),
    "replace": _Kind(_each_of(_replace), "[OLD, NEW]"),
    "regex_replace": _Kind(_each_of(_regex_replace), "[PATTERN, REPLACEMENT]"),
    "prefix": _Kind(_each_of(_prefix), "TEXT"),
    "suffix": _Kind(_each_of(_suffix), "TEXT"),
    "default_if_empty": _Kind(_each_of(_default_if_empty), "VALUE"),
    "split": _Kind(_each_of(_split), "SEPARATOR", shape="list"),
    "join": _Kind(_join, "SEPARATOR", shape="text"),
    "slice": _Kind(_slice, "[START, END]"),
}

NAMES: tuple[str, ...] = tuple(sorted(_KINDS))


def _show(arg: Any) -> str:
    try:
        text = json.dumps(arg, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(arg)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse(spec: object) -> tuple[str, _Kind, Any]:
    """The name, kind and argument of one processor spec (raises ProcessorError)."""
    if isinstance(spec, str):
        name, arg, bare = spec, None, True
    elif isinstance(spec, Mapping):
        if len(spec) != 1:
            keys = ", ".join(map(str, spec)) or "none"
            raise ProcessorError(
                f"a processor is a name or a mapping of one name to its argument; got "
                f"{len(spec)} keys ({keys})"
            )
        ((name, arg),) = spec.items()
        bare = False
    else:
        raise ProcessorError(
            f"a processor is a name or a mapping of one name to its argument; got {_show(spec)}"
        )
    kind = _KINDS.get(name)
    if kind is None:
        raise ProcessorError(
            f"unknown processor {name!r} (expected one of: {', '.join(NAMES)})"
            + did_you_mean(name, NAMES)
        )
    if kind.takes is None and not bare:
        raise ProcessorError(f"{name} takes no argument: write it as a bare name, {name}")
    if kind.takes is not None and bare:
        raise ProcessorError(f"{name} needs an argument: write {{{name}: {kind.takes}}}")
    return name, kind, arg


_JOIN_NEEDS_A_LIST = (
    "join needs a list, and the value here is a text (use multiple: true, or a split before it)"
)


def _steps(specs: Sequence[object], *, multiple: bool) -> Iterator[tuple[int, Step | str]]:
    """Each processor's index and step, or the message of what is wrong with it; the
    value's shape (text or list) is followed from ``multiple`` through the list."""
    is_list = multiple
    for i, spec in enumerate(specs):
        try:
            name, kind, arg = _parse(spec)
        except ProcessorError as exc:
            yield i, str(exc)
            continue
        joins_a_text = name == "join" and not is_list
        if kind.shape != "same":
            is_list = kind.shape == "list"
        if joins_a_text:
            yield i, _JOIN_NEEDS_A_LIST
            continue
        try:
            yield i, kind.build(arg)
        except ProcessorError as exc:
            message = str(exc)
            yield i, f"{name} {message}" if message.startswith("takes ") else f"{name}: {message}"


def _each(step: TextStep) -> Step:
    """``step`` over a text, or over each text of a list (lists it gives are flattened in,
    nulls left out), the list sharing the room."""

    def apply(value: Value, room: int) -> Value | None:
        if isinstance(value, str):
            return step(value, room)
        out: list[str] = []
        for item in value:
            result = step(item, room)
            if result is None:
                continue
            if isinstance(result, str):
                out.append(result)
            else:
                out.extend(result)
                _check_items(len(out))
            room -= size_of(result)
        return out

    return apply


def problems(specs: Sequence[object], *, multiple: bool) -> list[tuple[int, str]]:
    """Every processor of ``specs`` that cannot run, by index, with why."""
    return [(i, found) for i, found in _steps(specs, multiple=multiple) if isinstance(found, str)]


def yields_list(specs: Sequence[object], *, multiple: bool) -> bool:
    """Whether the processed value is a list (else a text)."""
    is_list = multiple
    for spec in specs:
        try:
            _, kind, _ = _parse(spec)
        except ProcessorError:
            continue
        if kind.shape != "same":
            is_list = kind.shape == "list"
    return is_list


class Pipeline:
    """A field's processors, compiled: called with a value, gives the processed value
    (None: it became missing). Raises ``ProcessLimitError`` for a value that would grow
    past its bound."""

    __slots__ = ("_steps",)

    def __init__(self, steps: Sequence[Step]) -> None:
        self._steps = tuple(steps)

    def __call__(self, value: Value) -> Value | None:
        for step in self._steps:
            result = step(value, max(size_of(value), MAX_GROWN_CHARS))
            if result is None:
                return None
            value = result
        return value


def compile_processors(specs: Sequence[object], *, multiple: bool) -> Pipeline:
    """The pipeline of ``specs``; raises ProcessorError (index and reason) when one cannot
    run (validation reports those first)."""
    steps: list[Step] = []
    for i, found in _steps(specs, multiple=multiple):
        if isinstance(found, str):
            raise ProcessorError(f"process[{i}]: {found}")
        steps.append(found)
    return Pipeline(steps)

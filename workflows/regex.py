"""Regexes written by workflow authors: RE2 syntax, matched in time linear in the input.

Python's ``re`` backtracks: ``/(a+)+$`` against thirty ``a``s takes minutes, and a workflow
is a stranger's input. RE2 (google-re2) never backtracks, and refuses what would need it
(backreferences, lookaround) at validation, with a message that says so. Each compiled
program is bounded in memory, and the pattern in length.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Protocol, cast

import re2

MAX_PATTERN_CHARS = 4096
# RE2's budget for one compiled program; a pattern that needs more is refused.
MAX_PROGRAM_BYTES = 8 << 20

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors come back as exceptions, not lines on stderr
_OPTIONS.max_mem = MAX_PROGRAM_BYTES


class Match(Protocol):
    def group(self, group: int | str = 0, /) -> str | None: ...
    def start(self, group: int | str = 0, /) -> int: ...
    def end(self, group: int | str = 0, /) -> int: ...


class Pattern(Protocol):
    """The part of a compiled pattern Trawl uses (the same names as ``re.Pattern``)."""

    @property
    def pattern(self) -> str: ...
    @property
    def groupindex(self) -> Mapping[str, int]: ...
    def search(self, text: str) -> Match | None: ...
    def fullmatch(self, text: str) -> Match | None: ...
    def finditer(self, text: str) -> Iterator[Match]: ...


class RegexError(ValueError):
    """A pattern RE2 cannot run; the message says why, for a person."""


def error(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used, if it cannot."""
    try:
        compile_pattern(pattern)
    except RegexError as exc:
        return str(exc)
    return None


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> Pattern:
    """``pattern`` compiled once per process (raises ``RegexError``)."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise RegexError(f"regex is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS}")
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise RegexError(_reason(exc)) from None
    return cast(Pattern, compiled)


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    hint = ""
    if (
        "invalid perl operator: (?<" in text
        or "invalid perl operator: (?=" in text
        or "invalid perl operator: (?!" in text
    ):
        hint = " (lookaround is not supported: RE2 syntax)"
    elif "invalid escape sequence: \\" in text and text[-1:].isdigit():
        hint = " (backreferences are not supported: RE2 syntax)"
    elif "pattern too large" in text:
        hint = f" (its program would exceed {MAX_PROGRAM_BYTES >> 20} MiB)"
    reason, _, fragment = text.partition(": ")
    near = f" at {fragment!r}" if fragment else ""
    return f"invalid regex: {reason}{near}{hint}"

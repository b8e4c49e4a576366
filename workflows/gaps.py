"""Where a document is broken, so semantic rules can judge the rest of it without noise.

Structural validation (``workflows/structure.py``) builds a best-effort ``Workflow`` from a
document that has problems: a value of the wrong kind is left out (its default applies) or
replaced by a placeholder when the key is required, and a broken list item or mapping entry
is dropped. Semantic rules then run on that view, and ``Gaps`` tells them two things:

- **what a path in the view is in the document.** Dropping ``phases[1]`` makes the
  document's ``phases[2]`` the view's ``phases[1]``; ``original`` maps the view's paths
  back, so every problem names the place an author sees.
- **whether a problem could be an echo of a structural one.** Every structural problem
  leaves a *hole* at its path (and an unknown key that looks like a typo leaves one where
  the key it resembles would be). A semantic problem is hidden when a hole lies at or above
  its path, or overlaps what it depends on: by default the innermost struct around it (a
  node, a field, a transition), or the paths its rule names (``phases[*].name`` for a
  transition to an unknown phase).

An empty ``Gaps`` hides nothing and translates nothing: a ``Workflow`` built in code is
judged as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from workflows import paths


class _AnyIndex:
    """The ``[*]`` of a dependency pattern: any index of a list."""

    def __repr__(self) -> str:
        return "[*]"


ANY_INDEX: Final = _AnyIndex()

Token = str | int | _AnyIndex
Tokens = tuple[Token, ...]

_TOKEN = re.compile(
    r"\.?(?P<key>[A-Za-z0-9_-]+)"
    r"|\[(?P<index>[0-9]+)\]"
    r"|\[(?P<any>\*)\]"
    r'|\[(?P<quoted>"(?:[^"\\]|\\.)*")\]'
)


def tokens(path: str) -> Tokens:
    """``phases[1].fields["a b"]`` as ``("phases", 1, "fields", "a b")``; ``[*]`` is
    ``ANY_INDEX``. Text that is not a path spelt by ``workflows.paths`` ends as one key."""
    out: list[Token] = []
    position = 0
    while position < len(path):
        match = _TOKEN.match(path, position)
        if match is None or (position and not match.group(0).startswith((".", "["))):
            out.append(path[position:])
            break
        if match.group("key") is not None:
            out.append(match.group("key"))
        elif match.group("index") is not None:
            out.append(int(match.group("index")))
        elif match.group("any") is not None:
            out.append(ANY_INDEX)
        else:
            out.append(str(json.loads(match.group("quoted"))))
        position = match.end()
    return tuple(out)


def spell(parts: Iterable[Token]) -> str:
    """The path of ``parts``, spelt as ``workflows.paths`` spells it."""
    path = ""
    for part in parts:
        if isinstance(part, _AnyIndex):
            path += "[*]"
        elif isinstance(part, int):
            path = paths.index(path, part)
        else:
            path = paths.key(path, part)
    return path


def _same(a: Token, b: Token) -> bool:
    if isinstance(a, _AnyIndex):
        return isinstance(b, int | _AnyIndex)
    if isinstance(b, _AnyIndex):
        return isinstance(a, int)
    return type(a) is type(b) and a == b


def _prefix(short: Tokens, long: Tokens) -> bool:
    """Whether ``short`` is ``long`` or one of its ancestors."""
    return len(short) <= len(long) and all(map(_same, short, long))


def _overlap(a: Tokens, b: Tokens) -> bool:
    """Whether one of ``a`` and ``b`` is at or under the other."""
    return _prefix(a, b) or _prefix(b, a)


@dataclass(slots=True)
class Gaps:
    """The holes of a document and how its view renumbers lists (paths in document terms)."""

    holes: list[Tokens] = field(default_factory=list)
    # A list some of whose items were dropped: the document index of each item kept.
    kept: dict[Tokens, list[int]] = field(default_factory=dict)
    # Where the view has a Struct (the document's root excluded): the default dependency.
    structs: set[Tokens] = field(default_factory=set)

    def hole(self, path: str) -> None:
        """Mark ``path`` (in the document) as broken."""
        self.holes.append(tokens(path))

    def keep(self, path: str, indexes: Sequence[int]) -> None:
        """The list at ``path`` keeps only the items at ``indexes``, in order."""
        self.kept[tokens(path)] = list(indexes)

    def struct(self, path: str) -> None:
        """The view has a Struct at ``path``."""
        if path:
            self.structs.add(tokens(path))

    def original(self, path: str) -> str:
        """The document's path of the view's ``path``."""
        return spell(self._original(tokens(path)))

    def hides(self, path: str, depends_on: Iterable[str] | None = None) -> bool:
        """Whether a problem at the view's ``path`` may be an echo of a structural one: a
        hole lies at or above it, or overlaps one of ``depends_on`` (view paths; ``[*]``
        for any index). ``None`` depends on the innermost struct around ``path``."""
        if not self.holes:
            return False
        where = self._original(tokens(path))
        if any(_prefix(hole, where) for hole in self.holes):
            return True
        if depends_on is None:
            owners = [where[:n] for n in range(len(where), 0, -1) if where[:n] in self.structs]
            needs = owners[:1]
        else:
            needs = [self._original(tokens(dependency)) for dependency in depends_on]
        return any(_overlap(hole, need) for hole in self.holes for need in needs)

    def touches(self, path: str) -> bool:
        """Whether anything at, above or under the view's ``path`` is broken."""
        where = self._original(tokens(path))
        return any(_overlap(hole, where) for hole in self.holes)

    def touches_before(self, list_path: str, position: int) -> bool:
        """Whether the list at the view's ``list_path``, or one of its items before the
        view's item ``position`` (dropped ones included), is broken."""
        where = self._original(tokens(list_path))
        end = self._original((*tokens(list_path), position))[-1]
        assert isinstance(end, int)
        for hole in self.holes:
            if _prefix(hole, where):
                return True
            if len(hole) > len(where) and _prefix(where, hole):
                index = hole[len(where)]
                if isinstance(index, int) and index < end:
                    return True
        return False

    def _original(self, parts: Tokens) -> Tokens:
        out: list[Token] = []
        for part in parts:
            if isinstance(part, int):
                kept = self.kept.get(tuple(out))
                if kept is not None and part < len(kept):
                    part = kept[part]  # noqa: PLW2901 - the document's index of the view's
            out.append(part)
        return tuple(out)

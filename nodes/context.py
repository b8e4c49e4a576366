"""What a node chain reads and writes while it runs over one page."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Link:
    """A link a node emitted: absolute URL (not yet canonical), its marker, its depth."""

    url: str
    marker: str | None
    depth: int


@dataclass(slots=True)
class NodeContext:
    """The one record of a page (``data``), the links emitted so far, and warnings."""

    depth: int  # the page's depth; its links are one deeper
    data: dict[str, Any] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    warnings: Counter[str] = field(default_factory=Counter)

    def warn(self, kind: str, count: int = 1) -> None:
        """Count a recoverable problem (a value that would not convert, a bad script result)."""
        self.warnings[kind] += count

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
    # The same warnings by "kind|field" where a field is to blame, so a run can say which.
    warning_fields: Counter[str] = field(default_factory=Counter)

    def warn(self, kind: str, count: int = 1, *, field: str | None = None) -> None:
        """Count a recoverable problem (a value that would not convert, a bad script result),
        naming the record field it concerns when there is one."""
        self.warnings[kind] += count
        if field is not None:
            self.warning_fields[f"{kind}|{field}"] += count

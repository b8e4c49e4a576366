"""The SeenSet port: which task keys an execution has already claimed.

``add_new`` is the only way in, and it is atomic: when two workers discover one URL at the
same moment, exactly one of them is told it is new, and only that one publishes it.

A key remembers who claimed it (``claimer``, a short token of the parent task). The same
claimer asking again is told the key is new again: a task redelivered after its worker died
between claiming links and publishing them gets to publish them, instead of finding them
claimed by its own earlier attempt and losing them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence


class SeenSet(abc.ABC):
    """Task keys per execution, added if absent."""

    @abc.abstractmethod
    async def add_new(
        self, execution_id: str, keys: Sequence[str], *, claimer: str = ""
    ) -> list[bool]:
        """Add ``keys``; for each, True if this call added it, or if ``claimer`` (non-empty)
        is who added it before (it is the caller's to publish). A key repeated within one
        call is new at most once, at its first place."""

    @abc.abstractmethod
    async def discard(self, execution_id: str, keys: Sequence[str]) -> None:
        """Remove ``keys`` again, when publishing them failed, so a retry can claim them."""

    @abc.abstractmethod
    async def forget(self, execution_id: str) -> None:
        """Drop everything of a finished execution."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

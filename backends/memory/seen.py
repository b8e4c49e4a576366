"""MemorySeenSet: a set per execution. Each call runs without awaiting, so it is atomic."""

from __future__ import annotations

from collections.abc import Sequence

from backends.seen import SeenSet


class MemorySeenSet(SeenSet):
    """Seen task keys of the executions in this process."""

    def __init__(self) -> None:
        self._keys: dict[str, dict[str, str]] = {}

    async def add_new(
        self, execution_id: str, keys: Sequence[str], *, claimer: str = ""
    ) -> list[bool]:
        seen = self._keys.setdefault(execution_id, {})
        added: list[bool] = []
        this_call: set[str] = set()
        for key in keys:
            owner = seen.get(key)
            if owner is None:
                seen[key] = claimer
                new = True
            else:
                new = bool(claimer) and owner == claimer and key not in this_call
            this_call.add(key)
            added.append(new)
        return added

    async def discard(self, execution_id: str, keys: Sequence[str]) -> None:
        seen = self._keys.get(execution_id)
        if seen is not None:
            for key in keys:
                seen.pop(key, None)

    async def forget(self, execution_id: str) -> None:
        self._keys.pop(execution_id, None)

    def size(self, execution_id: str) -> int:
        """How many keys an execution holds (tests, progress displays)."""
        return len(self._keys.get(execution_id, ()))

"""SqliteSeenSet: the memory seen-set, with its keys and claimers kept in SQLite."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from backends.memory.seen import MemorySeenSet
from backends.sqlite.db import SqliteDb

_UPSERT = "INSERT OR REPLACE INTO seen (execution_id, key, claimer) VALUES (?, ?, ?)"
_DELETE = "DELETE FROM seen WHERE execution_id = ? AND key = ?"


class SqliteSeenSet(MemorySeenSet):
    """Seen task keys in memory, journaled to ``db``; ``open`` loads what a file holds."""

    def __init__(self, db: SqliteDb) -> None:
        super().__init__()
        self._db = db

    @classmethod
    async def open(cls, db: SqliteDb) -> SqliteSeenSet:
        seen = cls(db)
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for execution_id, key, claimer in db.query("SELECT execution_id, key, claimer FROM seen"):
            groups[(execution_id, claimer)].append(key)
        for (execution_id, claimer), keys in groups.items():
            await MemorySeenSet.add_new(seen, execution_id, keys, claimer=claimer)
        return seen

    async def add_new(
        self, execution_id: str, keys: Sequence[str], *, claimer: str = ""
    ) -> list[bool]:
        known = self.size(execution_id)
        added = await super().add_new(execution_id, keys, claimer=claimer)
        if self.size(execution_id) != known:
            # Only the keys this call added are new rows; a claimer's re-claim changes nothing.
            fresh: dict[str, None] = {}
            for key, is_new in zip(keys, added, strict=True):
                if is_new:
                    fresh[key] = None
            self._db.write(_UPSERT, [(execution_id, key, claimer) for key in fresh])
        return added

    async def discard(self, execution_id: str, keys: Sequence[str]) -> None:
        await super().discard(execution_id, keys)
        self._db.write(_DELETE, [(execution_id, key) for key in keys])

    async def forget(self, execution_id: str) -> None:
        await super().forget(execution_id)
        self._db.write("DELETE FROM seen WHERE execution_id = ?", [(execution_id,)])

    async def close(self) -> None:
        self._db.flush()

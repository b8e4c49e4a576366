"""KnownClaims: the seen-set keys this process has seen claimed, and by whom, so that
RedisSeenSet need not ask Redis about them again.

Most links a crawler finds are links it has found before: on a documentation site of 2,000
pages with ~100 links each, 99% of the keys ``add_new`` is asked about are claimed already.
Sending them all to Redis costs a round trip per page and the packing of every key, the
largest share of a worker's Redis time. A key Redis said is held by claimer C can be
answered here for any other claimer: Redis would say "claimed" too, since a claim is only
ever undone by ``discard`` or by Redis losing its data, and a request from C itself is
never answered here but sent to Redis, which tells C the key is its own (or new).

So an answer from here differs from Redis's only after a discard made elsewhere (a publish
failed in another process) or a loss of Redis's data, and then only for keys C claimed. No
link is lost by that: C is the task that publishes them. Either C got as far as publishing
them (they are in the queue and in the StateStore's ledger, and calling them claimed spares
a duplicate), or it did not, and then C is retried (a discard follows a failed publish,
which hands C back to the queue) and claims them again through Redis. A task C that is
never retried ends as a failure or a dead letter, and replaying it claims them again.

Bounded: two generations of at most ``capacity / 2`` keys each; when the young one is
full, the old one is dropped and the young one takes its place. The oldest claims are
forgotten first, and forgetting one only means asking Redis about it again. Executions are
kept apart (a key is looked up within its execution only).
"""

from __future__ import annotations

from collections.abc import Iterable

from backends.errors import InvalidInputError

DEFAULT_CAPACITY = 100_000


class KnownClaims:
    """Claims made by this process: execution -> key -> claimer, in two generations."""

    __slots__ = ("_half", "_old", "_young", "_young_size")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise InvalidInputError(f"the claims cache capacity must be >= 0, not {capacity}")
        self._half = capacity // 2
        self._young: dict[str, dict[str, str]] = {}
        self._old: dict[str, dict[str, str]] = {}
        self._young_size = 0

    def owners(self, execution_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """The two generations of one execution's claims (empty dicts when none): look a
        key up in the first, then the second."""
        return self._young.get(execution_id, _EMPTY), self._old.get(execution_id, _EMPTY)

    def remember(self, execution_id: str, holders: Iterable[tuple[str, str]]) -> None:
        """Each ``(key, claimer)``: Redis just said ``claimer`` holds ``key``."""
        if not self._half:
            return
        claims = self._young.get(execution_id)
        if claims is None:
            claims = self._young[execution_id] = {}
        for key, claimer in holders:
            if key not in claims:
                self._young_size += 1
            claims[key] = claimer
            if self._young_size >= self._half:
                self._old, self._young, self._young_size = self._young, {}, 0
                claims = self._young[execution_id] = {}

    def drop(self, execution_id: str, keys: Iterable[str]) -> None:
        """Forget ``keys`` (discarded: they may be claimed again, by anyone)."""
        young, old = self._young.get(execution_id), self._old.get(execution_id)
        for key in keys:
            if young is not None and young.pop(key, None) is not None:
                self._young_size -= 1
            if old is not None:
                old.pop(key, None)

    def forget(self, execution_id: str) -> None:
        """Forget everything of one execution."""
        young = self._young.pop(execution_id, None)
        if young is not None:
            self._young_size -= len(young)
        self._old.pop(execution_id, None)

    def __len__(self) -> int:
        return self._young_size + sum(len(claims) for claims in self._old.values())


_EMPTY: dict[str, str] = {}

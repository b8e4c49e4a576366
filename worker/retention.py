"""Row retention: one pass over what executions that ended more than ``days`` ago no longer
need, the same for ``trawl prune`` and the orchestrator's hourly job.

The store decides what goes (``RetentionStore`` in ``backends/state.py``); this walks the
executions it names a page at a time, in id order, and prunes each in its own short
statements, so a pass of any size holds no lock for long and can be stopped between two
executions. Claims that expired before the same cutoff go too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from backends.state import PRUNE_BATCH, PruneCounts, RetentionStore

# Executions asked for at a time.
PAGE = 100
# What TRAWL_RETENTION_DAYS defaults to: longer than any queue keeps a task (Pub/Sub: 7
# days) and than part files live in the bucket (30 days), so nothing pruned is still useful.
DEFAULT_DAYS = 90

Pruned = Callable[[str, PruneCounts], None]


def cutoff(now: datetime, days: int) -> datetime:
    """Executions that ended before this are pruned; ValueError for fewer than 1 day."""
    if days < 1:
        raise ValueError(f"a retention of {days} days prunes nothing that has ended; use 1 or more")
    return now - timedelta(days=days)


async def prune(
    state: RetentionStore,
    *,
    now: datetime,
    days: int,
    dry_run: bool = False,
    batch: int = PRUNE_BATCH,
    each: Pruned | None = None,
) -> PruneCounts:
    """Prune (``dry_run``: count) every execution that ended more than ``days`` before
    ``now`` and the claims that expired before then; the totals. ``each`` is told of every
    execution that had something, with its counts, as it goes."""
    ended_before = cutoff(now, days)
    total = PruneCounts()
    after = ""
    while True:
        found = await state.prunable_executions(ended_before=ended_before, after=after, limit=PAGE)
        for execution_id in found:
            counts = await state.prune_execution(
                execution_id, ended_before=ended_before, batch=batch, dry_run=dry_run
            )
            if counts.executions:
                total += counts
                if each is not None:
                    each(execution_id, counts)
        if len(found) < PAGE:
            break
        after = found[-1]
    claims = await state.prune_claims(expired_before=ended_before, batch=batch, dry_run=dry_run)
    return total + PruneCounts(claims=claims)


def describe(counts: PruneCounts) -> str:
    """``counts`` in words, for a log line or a summary."""
    return (
        f"{counts.executions} execution(s): {counts.tasks} task row(s), "
        f"{counts.part_outputs} part-file entr(ies), {counts.sessions} login session(s), "
        f"{counts.webhooks} settled webhook call(s); {counts.claims} expired claim(s)"
    )

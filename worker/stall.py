"""Is an execution stalled, and why: what ``trawl status``, the API and the console show.

An execution is stalled when it is running, has unfinished tasks and no task has finished
for ``stall_after_s`` (since it started, if none ever has). The likely cause, from what the
StateStore knows:

- no worker is running: no worker has taken its turn at the sweep for that long;
- no worker has pulled one of its tasks for that long: they are not in the queue, so they
  were dead-lettered (``trawl failures replay``) or lost (the reconciler publishes them again
  after ``TRAWL_RECONCILE_AFTER_S``);
- workers hold its tasks but none finishes: they wait on politeness (per-host rate,
  concurrency, crawl-delay) or on retry backoff.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from backends.state import Activity, Execution, Progress, StateStore
from worker.reconcile import LEASE_TTL_S, SWEEP_CLAIM
from worker.report import OK, Health  # the report's health part, decided here


def classify(
    execution: Execution,
    progress: Progress,
    activity: Activity,
    *,
    now: datetime,
    stall_after_s: float,
    workers_seen_at: datetime | None,
) -> Health:
    """The health of one execution at ``now``."""
    if execution.status != "running" or progress.finished >= progress.published:
        return OK
    since = activity.last_finished_at or execution.started_at or execution.created_at
    stall_after = timedelta(seconds=stall_after_s)
    idle = now - since
    if idle < stall_after:
        return OK
    if workers_seen_at is None:
        return Health(state="stalled", since=since, cause="no worker has ever checked in")
    if now - workers_seen_at >= stall_after:
        cause = f"no worker is running: none has checked in for {_ago(now - workers_seen_at)}"
        return Health(state="stalled", since=since, cause=cause)
    leased = activity.last_leased_at
    lease_window = timedelta(seconds=max(LEASE_TTL_S, stall_after_s))
    unfinished = progress.published - progress.finished
    if leased is None or now - leased >= lease_window:
        pulled = now - max(leased, since) if leased is not None else idle
        cause = (
            f"no worker has pulled a task for {_ago(pulled)}: its {unfinished} unfinished "
            "task(s) are not in the queue (dead-lettered: trawl failures replay; or lost: "
            "the reconciler publishes them again after TRAWL_RECONCILE_AFTER_S)"
        )
        return Health(state="stalled", since=since, cause=cause)
    cause = (
        f"workers hold its tasks but none has finished for {_ago(idle)}: all waiting on "
        "politeness (per-host rate, concurrency or crawl-delay) or retry backoff"
    )
    return Health(state="stalled", since=since, cause=cause)


async def health_of(
    state: StateStore,
    execution: Execution,
    progress: Progress,
    *,
    now: datetime,
    stall_after_s: float,
) -> Health:
    """``classify`` over what the StateStore knows; two cheap reads, only while running."""
    if execution.status != "running" or progress.finished >= progress.published:
        return OK
    activity = await state.activity(execution.id)
    seen = await state.last_claimed(SWEEP_CLAIM)
    return classify(
        execution,
        progress,
        activity,
        now=now,
        stall_after_s=stall_after_s,
        workers_seen_at=seen,
    )


def _ago(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min"

"""``trawl prune [--dry-run] [--days N]``: delete from Postgres what executions that ended
more than TRAWL_RETENTION_DAYS ago no longer need, now (the orchestrator does it hourly).

One line per execution pruned (or, with ``--dry-run``, that would be), then the totals.
What goes and what stays is in docs/operations.md, "Retention".
"""

from __future__ import annotations

import argparse
from datetime import UTC

from backends.clock import SystemClock
from backends.state import PruneCounts
from trawl.cli_common import EXIT_OK, EXIT_USAGE, CommandError


def add_prune(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``trawl prune``."""
    p = commands.add_parser(
        "prune",
        help="delete the Postgres rows executions that ended long ago no longer need",
        description="Delete what executions that ended more than TRAWL_RETENTION_DAYS (or "
        "--days) ago no longer need: their task rows, part-file entries, login sessions and "
        "settled webhook calls, and claims expired as long ago. Their status, counts, "
        "failures and exports stay. The orchestrator does this every hour; this does it now. "
        "Safe beside running workers and another prune.",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
    )
    p.add_argument(
        "--days",
        type=int,
        metavar="N",
        help="keep N days of ended executions instead of TRAWL_RETENTION_DAYS",
    )
    p.set_defaults(handler=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from trawl.dist_commands import _run, _settings
    from trawl.distributed import open_state
    from worker.retention import cutoff, describe, prune

    settings = _settings()
    days = settings.retention_days if args.days is None else args.days
    if args.days is not None and args.days < 1:
        raise CommandError(f"--days must be 1 or more, not {args.days}", EXIT_USAGE)
    if days == 0:
        print(
            "TRAWL_RETENTION_DAYS is 0: every row is kept, nothing pruned "
            "(--days N prunes once all the same)"
        )
        return EXIT_OK
    verb = "would prune" if args.dry_run else "pruned"

    def each(execution_id: str, counts: PruneCounts) -> None:
        print(
            f"{verb} {execution_id}: {counts.tasks} task row(s), {counts.part_outputs} "
            f"part-file entr(ies), {counts.sessions} login session(s), {counts.webhooks} "
            "settled webhook call(s)",
            flush=True,
        )

    async def main() -> tuple[PruneCounts, str]:
        async with open_state(settings) as state:
            now = SystemClock().wall()
            total = await prune(state, now=now, days=days, dry_run=args.dry_run, each=each)
        return total, f"{cutoff(now, days).astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"

    total, before = _run(main)
    print(f"{verb} {describe(total)}; executions ended before {before}")
    return EXIT_OK

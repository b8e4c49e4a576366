"""``trawl schedules list|show|create|edit|pause|resume|delete``: a tenant's schedules
(docs/schedules.md), from the operator's side, on the deployment's backends.

They make the same checks as ``/v1/schedules`` (orchestrator/schedules.py, over the same
services the orchestrator builds), so a schedule made here is one the API would have
accepted; the orchestrators' schedulers fire it. Exit codes: 0 done, 1 refused (a bad field,
no such schedule, the tenant's cap), 2 bad arguments, 3 a backend cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from orchestrator.schedule_wire import ScheduleCreate, ScheduleUpdate
from trawl.cli_common import EXIT_INVALID, EXIT_OK, CommandError

if TYPE_CHECKING:
    from orchestrator.services import Services

EXIT_BACKEND = 3
T = TypeVar("T")


def add_schedules(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``trawl schedules``."""
    p = commands.add_parser(
        "schedules",
        help="a tenant's scheduled executions",
        description="List, show, create, edit, pause, resume and delete a tenant's schedules "
        "on the deployment's backends (TRAWL_* settings), with the API's checks. Exit codes: "
        "0 done; 1 refused (each bad field named); 2 bad arguments; 3 a backend cannot be "
        "reached.",
    )
    sub = p.add_subparsers(title="schedules commands", metavar="COMMAND", required=True)

    s = sub.add_parser("list", help="the tenant's schedules: next run, last run and outcome")
    _tenant(s)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(handler=cmd_schedules, action="list")

    s = sub.add_parser("show", help="one schedule and its newest fires")
    _tenant(s)
    s.add_argument("schedule_id", metavar="ID")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(handler=cmd_schedules, action="show")

    s = sub.add_parser(
        "create",
        help="start WORKFLOW at the times a cron expression names",
        description="Prints the new schedule's id on stdout and its next run on stderr.",
    )
    _tenant(s)
    s.add_argument("workflow", metavar="WORKFLOW", help="a stored workflow's name")
    s.add_argument("--cron", required=True, help="five fields, e.g. '*/15 * * * *'")
    _settings_arguments(s, creating=True)
    s.set_defaults(handler=cmd_schedules, action="create")

    s = sub.add_parser("edit", help="change a schedule's times, overrides or policies")
    _tenant(s)
    s.add_argument("schedule_id", metavar="ID")
    s.add_argument("--cron", help="five fields, e.g. '0 6 * * MON-FRI'")
    _settings_arguments(s, creating=False)
    s.set_defaults(handler=cmd_schedules, action="edit")

    for action, text in (
        ("pause", "no fire until it is resumed"),
        ("resume", "fire again, from its next time after now"),
        ("delete", "delete it and its history (its executions stay)"),
    ):
        s = sub.add_parser(action, help=text)
        _tenant(s)
        s.add_argument("schedule_id", metavar="ID")
        s.set_defaults(handler=cmd_schedules, action=action)


def _tenant(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant the schedules belong to")


def _settings_arguments(parser: argparse.ArgumentParser, *, creating: bool) -> None:
    parser.add_argument(
        "--tz",
        default="UTC" if creating else None,
        metavar="ZONE",
        help="IANA time zone the times are in (default UTC)" if creating else "IANA time zone",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="an override each execution starts with (repeatable)",
    )
    parser.add_argument("--version", type=int, metavar="N", help="run this version of it")
    parser.add_argument("--webhook", metavar="URL", help="signed POST when each execution ends")
    parser.add_argument(
        "--overlap",
        choices=("skip", "allow"),
        default="skip" if creating else None,
        help="a fire while the last execution still runs: skip it (default) or start anyway",
    )
    parser.add_argument(
        "--missed",
        choices=("skip", "run_once"),
        default="skip" if creating else None,
        help="fires that passed while no scheduler ran: skip them (default) or run one",
    )
    if creating:
        parser.add_argument("--paused", action="store_true", help="create it paused")


def cmd_schedules(args: argparse.Namespace) -> int:
    from backends.errors import TrawlError
    from trawl.distributed import open_ports
    from trawl.orchestrator_main import services_for
    from trawl.settings import load_settings

    try:
        settings = load_settings()
    except ValueError as error:
        raise CommandError(str(error)) from None

    async def main() -> int:
        async with open_ports(settings) as ports:
            services = services_for(settings, ports)
            try:
                return await run_schedules(services, args)
            finally:
                await services.admission.close()

    try:
        return asyncio.run(main())
    except TrawlError as error:
        raise CommandError(f"{error} ({error.error_class})", EXIT_BACKEND) from None


async def run_schedules(services: Services, args: argparse.Namespace) -> int:
    """One ``trawl schedules`` command over ``services`` (what the command line opens, or a
    test's memory services)."""
    from orchestrator.schedules import (
        ScheduleCapReached,
        ScheduleEditConflict,
        create_schedule,
        edit_schedule,
        owned_schedule,
    )
    from orchestrator.schedules_api import schedule_out

    tenant = args.tenant.strip()
    if not tenant:
        raise CommandError("--tenant must not be empty")
    state = services.ports.state
    if args.action == "list":
        found = [schedule_out(s) for s in await state.list_schedules(tenant)]
        _print_list(found, as_json=args.json)
        return EXIT_OK
    if args.action == "create":
        try:
            created = await create_schedule(services, tenant, _create_request(args))
        except ScheduleCapReached as error:
            raise CommandError(str(error), EXIT_INVALID) from None
        print(created.id)
        when = _when(created.next_run_at) if created.next_run_at else "never (paused)"
        print(f"schedule {created.id} of {created.workflow!r}: next run {when}", file=sys.stderr)
        return EXIT_OK
    schedule = await owned_schedule(services, tenant, args.schedule_id)
    if schedule is None:
        raise CommandError(f"no schedule {args.schedule_id} of tenant {tenant!r}", EXIT_INVALID)
    if args.action == "show":
        out = schedule_out(schedule, await state.schedule_fires(schedule.id))
        _print_one(out, as_json=args.json)
        return EXIT_OK
    if args.action == "delete":
        await state.delete_schedule(schedule.id)
        print(f"deleted schedule {schedule.id}")
        return EXIT_OK
    request = _update_request(args)
    try:
        edited = await edit_schedule(services, tenant, schedule.id, request)
    except ScheduleEditConflict as error:
        raise CommandError(str(error), EXIT_INVALID) from None
    if edited is None:
        raise CommandError(f"no schedule {args.schedule_id} of tenant {tenant!r}", EXIT_INVALID)
    state_text = "paused" if not edited.enabled else f"next run {_when(edited.next_run_at)}"
    print(f"schedule {edited.id}: {edited.cron} ({edited.timezone}), {state_text}")
    return EXIT_OK


def _create_request(args: argparse.Namespace) -> ScheduleCreate:
    return _decode(
        {
            "workflow": args.workflow,
            "cron": args.cron,
            "timezone": args.tz,
            "set": args.sets or [],
            "workflow_version": args.version,
            "webhook": args.webhook,
            "overlap": args.overlap,
            "missed": args.missed,
            "enabled": not args.paused,
        },
        ScheduleCreate,
    )


def _update_request(args: argparse.Namespace) -> ScheduleUpdate:
    if args.action in ("pause", "resume"):
        return ScheduleUpdate(enabled=args.action == "resume")
    given = {
        "cron": args.cron,
        "timezone": args.tz,
        "set": args.sets,
        "workflow_version": args.version,
        "webhook": args.webhook,
        "overlap": args.overlap,
        "missed": args.missed,
    }
    changes = {k: v for k, v in given.items() if v is not None}
    if not changes:
        raise CommandError("nothing to change: give --cron, --tz, --set, --overlap, ...")
    return _decode(changes, ScheduleUpdate)


def _decode(fields: dict[str, Any], into: type[T]) -> T:
    """The request as the API would decode it; a field it refuses is a usage error."""
    try:
        return msgspec.convert(fields, into)
    except msgspec.ValidationError as error:
        raise CommandError(f"invalid schedule: {error}") from None


def _print_list(found: Sequence[Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(msgspec.to_builtins(list(found)), indent=2))
        return
    rows = [("ID", "WORKFLOW", "CRON", "TIMEZONE", "STATE", "NEXT RUN", "LAST RUN", "OUTCOME")]
    rows += [
        (
            s.id,
            s.workflow if s.workflow_version is None else f"{s.workflow} v{s.workflow_version}",
            s.cron,
            s.timezone,
            "enabled" if s.enabled else "paused",
            _when(s.next_run_at),
            _when(s.last_run_at),
            s.last_outcome or "-",
        )
        for s in found
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(found)} schedule(s)", file=sys.stderr)


def _print_one(s: Any, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(msgspec.to_builtins(s), indent=2))
        return
    version = "latest" if s.workflow_version is None else str(s.workflow_version)
    print(f"schedule {s.id}: {s.workflow} ({version} version), {s.cron} in {s.timezone}")
    print(f"state: {'enabled' if s.enabled else 'paused'}; next run {_when(s.next_run_at)}")
    print(f"policies: overlap {s.overlap}, missed {s.missed}; overrides: {s.set or '-'}")
    counts = ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items())) or "none yet"
    print(f"fires: {counts}")
    for fire in s.history:
        what = fire.execution_id or fire.reason or ""
        count = f" x{fire.count}" if fire.count > 1 else ""
        print(f"  {_when(fire.scheduled_for)} {fire.outcome}{count} {what}".rstrip())
        if fire.execution_id and fire.reason:
            print(f"      {fire.reason}")


def _when(at: datetime | None) -> str:
    """A time as these commands show it (UTC, to the second), or "-"."""
    return "-" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"

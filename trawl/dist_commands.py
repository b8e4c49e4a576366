"""The distributed commands: ``migrate``, ``worker``, ``orchestrator``, ``keys``,
``webhooks``, ``submit``, ``status``, ``export``.

They read their settings from the environment (TRAWL_*, PUBSUB_EMULATOR_HOST,
STORAGE_EMULATOR_HOST) and talk to the real backends. A backend that cannot be reached is
reported in one line naming it, with exit code 3, never as a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Any, TypeVar

from backends.errors import TrawlError
from trawl.cli_common import EXIT_OK, CommandError, add_set_argument, load_workflow_arg
from trawl.settings import Settings, load_settings

EXIT_BACKEND = 3
EXIT_TIMEOUT = 124  # status --wait / cancel gave up waiting (as timeout(1) does)
LOCAL_RUN_HELP = (
    "an execution id, or an embedded run's output: the --out directory of `trawl run` "
    "(its newest run) or one run in it"
)
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as error:
        raise CommandError(str(error)) from None


def _run(main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main``; a backend failure becomes one line and exit code 3."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except TrawlError as error:
        raise CommandError(f"{error} ({error.error_class})", EXIT_BACKEND) from None


def add_distributed(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the distributed commands."""
    p = commands.add_parser("migrate", help="create or upgrade the Postgres schema")
    p.set_defaults(handler=cmd_migrate)

    p = commands.add_parser(
        "worker",
        help="run a worker: pull tasks from Pub/Sub until SIGTERM",
        description="A stateless worker. Settings from TRAWL_* variables; /healthz and "
        "/readyz on TRAWL_HEALTH_HOST:PORT.",
    )
    p.set_defaults(handler=cmd_worker)

    p = commands.add_parser(
        "setup",
        help="one-shot: migrate Postgres, create the Pub/Sub topics and subscriptions and "
        "the GCS bucket, those that are missing",
    )
    p.add_argument("--no-bucket", action="store_true", help="leave the bucket alone")
    p.set_defaults(handler=cmd_setup)

    p = commands.add_parser(
        "orchestrator",
        help="serve the HTTP API (workflows, executions, exports, preview)",
        description="The orchestrator. Settings from TRAWL_* variables; listens on "
        "TRAWL_API_HOST:PORT; OpenAPI at /schema.",
    )
    p.set_defaults(handler=cmd_orchestrator)

    _add_keys(commands)
    _add_webhooks(commands)

    p = commands.add_parser("failures", help="an execution's failed tasks and dead letters")
    failures = p.add_subparsers(title="failures commands", metavar="COMMAND", required=True)
    f = failures.add_parser("list", help="tasks that failed for good, newest first")
    f.add_argument("execution_id", metavar="ID", help=LOCAL_RUN_HELP)
    f.add_argument("--limit", type=int, default=50)
    f.set_defaults(handler=cmd_failures_list)
    f = failures.add_parser(
        "replay",
        help="put the execution's dead-lettered tasks back on the task topic",
        description="Tasks Pub/Sub dead-lettered (max delivery attempts) are unfinished: "
        "their execution waits for them. Replay publishes them again for the workers.",
    )
    f.add_argument("execution_id", metavar="ID")
    f.set_defaults(handler=cmd_failures_replay)

    p = commands.add_parser("submit", help="start an execution on the distributed backends")
    p.add_argument("workflow", metavar="WORKFLOW")
    p.add_argument("--tenant", default="default")
    p.add_argument(
        "--recrawl-of",
        metavar="ID",
        help="recrawl this ended execution of the same workflow: its pages are asked again "
        "with conditional requests, records are marked new, changed or unchanged",
    )
    add_set_argument(p)
    p.set_defaults(handler=cmd_submit)

    p = commands.add_parser(
        "status",
        help="an execution's status and counts",
        description="An execution's status, counts and health (stalled, with the likely "
        f"cause). Exit codes: 0 ok; 1 no such execution; {EXIT_BACKEND} a backend cannot be "
        f"reached; {EXIT_TIMEOUT} --wait gave up after --timeout before it had finished.",
    )
    p.add_argument(
        "execution_id",
        metavar="ID",
        help="an execution id, or a `trawl run --out` directory (its newest run) or one run in it",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="wait until it has finished (a cancelled one: until its export is written)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=0,
        help=f"with --wait: give up after S s, exit code {EXIT_TIMEOUT}",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_status)

    p = commands.add_parser(
        "cancel",
        help="cancel an execution; its export holds what was done",
        description="Workers stop taking its tasks; once none is still working on one, its "
        "counters stop and its export is written, so both agree. Waits for that up to "
        f"--timeout S (then exit code {EXIT_TIMEOUT}; the workers' sweep writes it later).",
    )
    p.add_argument("execution_id", metavar="ID")
    p.add_argument("--timeout", type=float, default=90.0, help="wait this long at most")
    p.set_defaults(handler=cmd_cancel)

    p = commands.add_parser(
        "reconcile",
        help="publish again the tasks of an execution that the queue lost",
        description="Tasks registered but unfinished for longer than --after S (default "
        "TRAWL_RECONCILE_AFTER_S) that no worker holds are published again; prints how many. "
        "Workers do this on their own once an execution makes no progress for that long.",
    )
    p.add_argument("execution_id", metavar="ID")
    p.add_argument("--after", type=float, default=None, metavar="S")
    p.set_defaults(handler=cmd_reconcile)

    p = commands.add_parser(
        "export",
        help="read an execution's export",
        description="Its records, each once: JSON lines or CSV (every phase, phase by phase, "
        "each by URL), or one phase's Parquet file. Prints how many on stderr with -o.",
    )
    p.add_argument("execution_id", metavar="ID", help=LOCAL_RUN_HELP)
    p.add_argument("-o", "--out", metavar="FILE", help="a file (default: stdout)")
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    p.add_argument(
        "--phase",
        metavar="P",
        help="only this phase's records (Parquet: required when several phases have records)",
    )
    p.set_defaults(handler=cmd_export)


def _add_keys(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trawl keys create|list|revoke``."""
    p = commands.add_parser("keys", help="manage API keys")
    keys = p.add_subparsers(title="keys commands", metavar="COMMAND", required=True)
    k = keys.add_parser(
        "create",
        help="create an API key for a tenant; printed once",
        description="Prints the key on stdout (this once) and its public id on stderr; the "
        "id names the key in `trawl keys list` and `trawl keys revoke`.",
    )
    k.add_argument("--tenant", required=True, help="the tenant the key acts for")
    k.add_argument(
        "--expires-in", type=float, metavar="DAYS", help="the key expires after DAYS days"
    )
    k.add_argument(
        "--admin",
        action="store_true",
        help="the key may also list, create and revoke keys through the API",
    )
    k.set_defaults(handler=cmd_keys_create)
    k = keys.add_parser(
        "list", help="API keys: id, tenant, admin, created, expires, revoked (never the key)"
    )
    k.add_argument("--tenant", help="only this tenant's keys")
    k.set_defaults(handler=cmd_keys_list)
    k = keys.add_parser(
        "revoke",
        help="revoke an API key at once, by its id",
        description="Its next request is a 401 (API key revoked). Exit code 1: no such key.",
    )
    k.add_argument("key_id", metavar="ID", help="the key's id, as `trawl keys list` shows it")
    k.set_defaults(handler=cmd_keys_revoke)


def _add_webhooks(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``trawl webhooks secret``."""
    p = commands.add_parser("webhooks", help="webhook signing secrets")
    hooks = p.add_subparsers(title="webhooks commands", metavar="COMMAND", required=True)
    w = hooks.add_parser(
        "secret",
        help="print the secret a tenant's webhook calls are signed with",
        description="Print the secret a tenant's webhook calls are signed with, derived "
        "from TRAWL_WEBHOOK_SECRET (the tenant reads the same from GET /v1/webhook-secret). "
        "No backend is contacted.",
    )
    w.add_argument("--tenant", required=True, help="the tenant's name")
    w.set_defaults(handler=cmd_webhooks_secret)


def cmd_webhooks_secret(args: argparse.Namespace) -> int:
    from worker.webhook_signing import SECRET_SETTING, tenant_secret

    tenant = args.tenant.strip()
    if not tenant:
        raise CommandError("--tenant must not be empty")
    secret = _settings().webhook_secret
    if not secret:
        raise CommandError(f"{SECRET_SETTING} is not set: this deployment sends no webhooks")
    print(tenant_secret(secret, tenant))
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    from backends.postgres import migrate

    settings = _settings()
    applied = _run(lambda: migrate(settings.database_url))
    print("applied: " + ", ".join(applied) if applied else "schema up to date")
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    """What a deployment runs once before its processes start (compose's setup job)."""
    from backends.postgres import migrate
    from trawl.distributed import make_blobs, make_queue

    settings = _settings()

    async def main() -> list[str]:
        done = [f"postgres: {', '.join(await migrate(settings.database_url)) or 'up to date'}"]
        queue = make_queue(settings)
        try:
            await queue.ensure_resources()
        finally:
            await queue.close()
        done.append(f"pubsub: {settings.pubsub_topic} -> {settings.pubsub_subscription}")
        if not args.no_bucket:
            blobs = make_blobs(settings)
            try:
                await blobs.ensure_bucket()
            finally:
                await blobs.close()
            done.append(f"gcs: bucket {settings.gcs_bucket}")
        return done

    for line in _run(main):
        print(line)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from trawl.distributed import open_ports, submit
    from worker.recrawl import RecrawlRefused, RecrawlSource, check_previous

    workflow = load_workflow_arg(args.workflow, args.sets)
    source = Path(args.workflow).read_text(encoding="utf-8", errors="replace")
    settings = _settings()

    async def main() -> str:
        async with open_ports(settings) as ports:
            recrawl = None
            if args.recrawl_of:
                try:
                    await check_previous(
                        ports.state,
                        ports.blobs,
                        args.recrawl_of,
                        tenant=args.tenant,
                        workflow=workflow.name,
                    )
                except RecrawlRefused as error:
                    raise CommandError(f"--recrawl-of {args.recrawl_of}: {error}", 1) from None
                recrawl = RecrawlSource(ports.blobs, args.recrawl_of)
            execution = await submit(
                ports,
                workflow,
                tenant=args.tenant,
                source_text=source,
                queue_window=settings.queue_window,
                recrawl=recrawl,
            )
            return execution.id

    print(_run(main))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from trawl import local_outputs

    if local_outputs.is_local(args.execution_id):  # an embedded run's --out: no backends
        return local_outputs.cmd_status(args.execution_id, as_json=args.json)
    from trawl.status import status

    settings = _settings()
    report = _run(
        lambda: status(settings, args.execution_id, wait=args.wait, timeout_s=args.timeout)
    )
    if report is None:
        raise CommandError(f"no execution {args.execution_id}", 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_status(report)
    if args.wait and not _finished(report):
        print(f"gave up waiting after {args.timeout:g} s", file=sys.stderr)
        return EXIT_TIMEOUT
    return EXIT_OK


def _finished(report: dict[str, Any]) -> bool:
    return report["status"] in ("completed", "cancelled", "failed") and report["settled"]


def cmd_cancel(args: argparse.Namespace) -> int:
    from trawl.status import cancel

    settings = _settings()
    before, report = _run(lambda: cancel(settings, args.execution_id, timeout_s=args.timeout))
    if before is None:
        raise CommandError(f"no execution {args.execution_id}", 1)
    if report is None:
        raise CommandError(f"execution {args.execution_id} is already {before.status}", 1)
    _print_status(report)
    if not _finished(report):
        print(
            f"cancelled; its export is written once no worker holds its tasks (gave up "
            f"waiting after {args.timeout:g} s: trawl status {args.execution_id} --wait)",
            file=sys.stderr,
        )
        return EXIT_TIMEOUT
    return EXIT_OK


def cmd_reconcile(args: argparse.Namespace) -> int:
    from trawl.status import reconcile_now

    settings = _settings()
    after = settings.reconcile_after_s if args.after is None else args.after
    if after < 0:
        raise CommandError("--after must not be negative", 2)
    execution, count = _run(lambda: reconcile_now(settings, args.execution_id, after_s=after))
    if execution is None:
        raise CommandError(f"no execution {args.execution_id}", 1)
    if execution.status != "running":
        raise CommandError(
            f"execution {args.execution_id} is {execution.status}: only a running "
            "execution's tasks are re-published",
            1,
        )
    print(f"re-published {count} task(s)")
    return EXIT_OK


def _print_status(report: dict[str, Any]) -> None:
    from worker.report import report_lines

    pages = report["pages"]
    print(
        f"execution {report['execution_id']} ({report['workflow']} "
        f"v{report['workflow_version']}): {report['status']}"
    )
    print(
        f"pages: {pages['finished']}/{pages['published']} finished, "
        f"{pages['succeeded']} succeeded, {pages['failed']} failed, "
        f"{pages['filtered']} filtered; records {report['records']}"
    )
    if report["failures_by_class"]:
        failures = ", ".join(f"{k} {v}" for k, v in sorted(report["failures_by_class"].items()))
        print(f"failures: {failures}")
    for line in report_lines(report):
        print(line)
    health = report.get("health") or {}
    if health.get("state") == "stalled":
        print(f"stalled since {health['since']}: {health['cause']}")


def cmd_export(args: argparse.Namespace) -> int:
    from backends.errors import InvalidInputError
    from trawl import local_outputs
    from trawl.status import export_lines

    local = local_outputs.is_local(args.execution_id)
    if local:
        local_outputs.execution_dir(args.execution_id)  # no file written for a bad directory
    if args.format == "parquet" and not args.out and sys.stdout.isatty():
        raise CommandError("Parquet is binary: give -o FILE, or redirect stdout")
    settings = None if local else _settings()
    sys.stdout.flush()  # the records go to its bytes, after anything printed before
    out = open(args.out, "wb") if args.out else sys.stdout.buffer  # noqa: SIM115
    try:
        if settings is None:
            count = local_outputs.cmd_export(args.execution_id, args.format, out, args.phase)
        else:
            count = _run(
                lambda: export_lines(settings, args.execution_id, args.format, out, args.phase)
            )
    except (InvalidInputError, CommandError) as error:
        if args.out:  # nothing half-written is left behind
            out.close()
            Path(args.out).unlink(missing_ok=True)
        if isinstance(error, CommandError):
            raise
        raise CommandError(str(error), 1) from None
    finally:
        if args.out:
            out.close()
        else:
            out.flush()
    if args.out:
        print(f"{count} records in {args.out}", file=sys.stderr)
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from trawl.worker_main import run_worker

    settings = _settings()
    return _run(lambda: run_worker(settings))


def cmd_orchestrator(args: argparse.Namespace) -> int:
    from trawl.orchestrator_main import run_orchestrator

    settings = _settings()
    return _run(lambda: run_orchestrator(settings))


def cmd_keys_create(args: argparse.Namespace) -> int:
    from backends.clock import SystemClock
    from orchestrator.auth import expiry_in, issue_key
    from trawl.distributed import open_state

    tenant = args.tenant.strip()
    if not tenant:
        raise CommandError("--tenant must not be empty")
    try:
        expires_at = expiry_in(args.expires_in, SystemClock().wall())
    except ValueError as error:
        raise CommandError(f"--expires-in: {error}") from None
    settings = _settings()

    async def main() -> tuple[str, Any]:
        async with open_state(settings) as state:
            return await issue_key(state, tenant, admin=args.admin, expires_at=expires_at)

    key, record = _run(main)
    print(key)
    kind = "admin API key" if record.admin else "API key"
    expiry = f", expires {_when(record.expires_at)}" if record.expires_at else ""
    print(
        f"{kind} {record.id} for tenant {tenant!r}{expiry}; the key is not shown again, "
        "store it now",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    from trawl.distributed import open_state

    tenant = args.tenant.strip() if args.tenant is not None else None
    if tenant == "":
        raise CommandError("--tenant must not be empty")
    settings = _settings()

    async def main() -> list[Any]:
        async with open_state(settings) as state:
            return await state.list_api_keys(tenant)

    found = _run(main)
    rows = [("ID", "TENANT", "ADMIN", "CREATED", "EXPIRES", "REVOKED")]
    for key in found:
        admin = "yes" if key.admin else "no"
        times = (_when(key.created_at), _when(key.expires_at), _when(key.revoked_at))
        rows.append((key.id, key.tenant, admin, *times))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"{len(found)} key(s)", file=sys.stderr)
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from trawl.distributed import open_state

    settings = _settings()

    async def main() -> Any:
        async with open_state(settings) as state:
            return await state.revoke_api_key(args.key_id.strip())

    key = _run(main)
    if key is None:
        raise CommandError(f"no API key {args.key_id} (trawl keys list shows the ids)", 1)
    print(f"revoked API key {key.id} of tenant {key.tenant!r} at {_when(key.revoked_at)}")
    return EXIT_OK


def _when(at: Any) -> str:
    """A time as the keys commands show it (UTC, to the second), or "-"."""
    return "-" if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z"


def cmd_failures_list(args: argparse.Namespace) -> int:
    from trawl import local_outputs
    from trawl.distributed import open_state

    if local_outputs.is_local(args.execution_id):  # an embedded run's --out: no backends
        return local_outputs.cmd_failures_list(args.execution_id, limit=args.limit)
    settings = _settings()

    async def main() -> list[Any]:
        async with open_state(settings) as state:
            if await state.get_execution(args.execution_id) is None:
                raise CommandError(f"no execution {args.execution_id}", 1)
            return await state.failures(args.execution_id, limit=args.limit)

    found = _run(main)
    for failure in found:
        print(f"{failure.at:%Y-%m-%d %H:%M:%S} {failure.error_class} {failure.url}")
        print(f"    {failure.message} (attempt {failure.attempt}, phase {failure.phase})")
    print(f"{len(found)} failure(s)", file=sys.stderr)
    return EXIT_OK


def cmd_failures_replay(args: argparse.Namespace) -> int:
    from backends.gcp.dead_letters import replay_dead_letters
    from trawl.distributed import make_queue, open_state

    settings = _settings()

    async def main() -> Any:
        async with open_state(settings) as state:
            execution = await state.get_execution(args.execution_id)
        if execution is None:
            raise CommandError(f"no execution {args.execution_id}", 1)
        if execution.status != "running":
            raise CommandError(
                f"execution {args.execution_id} is {execution.status}: only a running "
                "execution's dead letters are replayed",
                1,
            )
        queue = make_queue(settings)
        try:
            return await replay_dead_letters(queue, args.execution_id)
        finally:
            await queue.close()

    replay = _run(main)
    print(
        f"replayed {replay.replayed} task(s); left {replay.other_executions} of other "
        f"executions and {replay.unreadable} unreadable message(s)"
    )
    return EXIT_OK

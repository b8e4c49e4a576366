"""``trawl run`` and ``trawl preview``: the commands that fetch, in this process."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

from backends.errors import TrawlError
from trawl.cli_common import (
    EXIT_ALL_FAILED,
    EXIT_NOTHING_CRAWLED,
    EXIT_OK,
    CommandError,
    add_set_argument,
    load_workflow_arg,
    print_warnings,
    start_url_warnings,
)
from workflows import Workflow
from workflows.urls import BadUrl, canonicalize

if TYPE_CHECKING:
    from backends.blobs import BlobStore
    from trawl.embedded import RunResult

EXIT_INTERRUPTED = 130
EXIT_NOT_COMPLETED = 3


def add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run a whole crawl in this process",
        description="Run a workflow in this process (memory queues, records under --out). "
        "Progress on stderr. Exit codes: 0 the crawl completed; 1 invalid workflow; 2 "
        "unreadable file or bad arguments; 3 the run could not complete; 4 completed but "
        "nothing was crawled (e.g. every start URL out of scope); 5 completed but every "
        "page failed; 130 interrupted.",
    )
    parser.add_argument("workflow", metavar="WORKFLOW", help="a .yaml, .yml or .json file")
    parser.add_argument(
        "--out",
        default="out",
        help="output directory (default: ./out), or gs://BUCKET/PREFIX to write the parts and "
        "the export to GCS (the run's state then stays in ./.trawl/gs/BUCKET/PREFIX)",
    )
    parser.add_argument(
        "--engine",
        choices=("http", "browser"),
        help="the engine of phases that do not choose one (overrides the workflow's default)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="tasks in flight (TRAWL_WORKER_CONCURRENCY)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest unfinished run in --out where it stopped (same workflow)",
    )
    add_set_argument(parser)
    parser.set_defaults(handler=cmd_run)


def _workflow_with_engine(args: argparse.Namespace) -> Workflow:
    sets = list(args.sets)
    if getattr(args, "engine", None):
        sets.insert(0, f"engine={args.engine}")
    return load_workflow_arg(args.workflow, sets)


def cmd_run(args: argparse.Namespace) -> int:
    """The embedded default: the whole crawl, a live progress line, a summary table."""
    from trawl.embedded import ResumeError, crawl
    from trawl.settings import load_settings

    workflow = _workflow_with_engine(args)
    print_warnings(start_url_warnings(workflow))
    if args.concurrency is not None and args.concurrency < 1:
        raise CommandError("--concurrency must be at least 1")
    settings = _settings(load_settings)
    out_dir, location = output_target(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"{out_dir}: cannot create the output directory: {error}") from None
    source = Path(args.workflow).read_text(encoding="utf-8", errors="replace")
    started = time.monotonic()

    async def run() -> RunResult:
        blobs = open_bucket(location) if location else None
        try:
            return await crawl(
                workflow,
                out_dir=out_dir,
                settings=settings,
                source_text=source,
                concurrency=args.concurrency,
                resume=args.resume,
                blobs=blobs,
                location=location,
            )
        finally:
            if blobs is not None:
                await blobs.close()

    try:
        result = asyncio.run(run())
    except ResumeError as error:
        raise CommandError(str(error)) from None
    except TrawlError as error:
        raise CommandError(str(error), EXIT_NOT_COMPLETED) from None
    print_summary(result, time.monotonic() - started)
    if result.execution.status == "cancelled":
        return EXIT_INTERRUPTED
    if result.execution.status != "completed":
        return EXIT_NOT_COMPLETED
    code, reason = run_verdict(result)
    if reason:
        print(f"trawl: {reason}", file=sys.stderr)
    return code


def output_target(out: str) -> tuple[Path, str]:
    """``--out`` as the local directory for the run (its outputs, or only its state when
    the outputs go to GCS) and the GCS location ("" for a local run)."""
    if not out.startswith("gs://"):
        return Path(out), ""
    parts = urlsplit(out)
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket or parts.query or parts.fragment:
        raise CommandError(f"--out {out}: expected gs://BUCKET or gs://BUCKET/PREFIX")
    state = Path(".trawl") / "gs" / bucket
    return (state / prefix if prefix else state), f"gs://{bucket}/{prefix}".rstrip("/")


def open_bucket(location: str) -> BlobStore:
    """The GCS blob store of ``gs://bucket/prefix`` (credentials as Google's libraries find
    them; STORAGE_EMULATOR_HOST for an emulator)."""
    from backends.gcp.gcs import GcsBlobStore

    try:
        return GcsBlobStore.from_url(location)
    except TrawlError as error:
        raise CommandError(f"--out {location}: {error}") from None
    except Exception as error:  # no credentials, a malformed bucket name...
        raise CommandError(f"--out {location}: cannot use the bucket: {error}") from None


def print_summary(result: RunResult, elapsed_s: float, stream: TextIO | None = None) -> None:
    """The summary table of a finished run, its failures and warnings, and where its
    records, summary and failed pages are (stderr by default)."""
    from rich.console import Console

    from trawl.progress import summary_table
    from worker.export import describe_warnings

    console = Console(file=stream or sys.stderr, highlight=False)
    console.print(summary_table(result.progress, elapsed_s, result.execution.status))
    p = result.progress
    if p.failures_by_class:
        failures = ", ".join(f"{k} {v}" for k, v in sorted(p.failures_by_class.items()))
        console.print(f"failures: {failures}")
    if p.warnings:
        examples = result.export.warning_examples if result.export is not None else []
        console.print("warnings: " + describe_warnings(p.warnings, examples), soft_wrap=True)
    if result.export is not None:
        records_file = result.where(result.export.export_path)
        console.print(f"records: {result.export.records} in {records_file}", soft_wrap=True)
        console.print(f"summary: {result.where(result.export.summary_path)}", soft_wrap=True)
        if result.export.failures:
            failures_file = result.where(result.export.failures_path)
            console.print(
                f"failed pages: {result.export.failures} in {failures_file}", soft_wrap=True
            )


def run_verdict(result: RunResult) -> tuple[int, str | None]:
    """The exit code of a completed run and, when it is not 0, the one-line reason: a run
    that fetched nothing, or whose every page failed, completed but did not work."""
    pages = result.progress.pages()
    succeeded, failed, filtered = pages["succeeded"], pages["failed"], pages["filtered"]
    if succeeded + failed == 0:
        if pages["published"] == 0:
            why = "no start URL is in scope (see the warnings above)"
        else:
            why = f"all {filtered} page(s) were filtered (e.g. disallowed by robots.txt)"
        return EXIT_NOTHING_CRAWLED, f"nothing was crawled: {why}"
    if succeeded == 0:
        classes = ", ".join(
            f"{k} {v}" for k, v in sorted(result.progress.failures_by_class.items())
        )
        where = ""
        if result.export is not None and result.export.failures_path:
            where = f"; see {result.where(result.export.failures_path)}"
        return EXIT_ALL_FAILED, f"every page failed: {failed} failed ({classes}){where}"
    return EXIT_OK, None


def _settings(load: Any) -> Any:
    try:
        return load()
    except ValueError as error:
        raise CommandError(str(error)) from None


def add_preview(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "preview",
        help="run one phase on one page and print its record and links",
        description="Fetch URL, run one phase's nodes on it and print, as JSON, the record "
        "and every link with the phase it would go to (or why it would be dropped). "
        "Nothing is enqueued or written.",
    )
    parser.add_argument("workflow", metavar="WORKFLOW")
    parser.add_argument("url", metavar="URL")
    parser.add_argument("--phase", help="the phase to run (default: the start phase)")
    parser.add_argument("--depth", type=int, default=0, help="the page's depth (default 0)")
    parser.add_argument("--engine", choices=("http", "browser"))
    add_set_argument(parser)
    parser.set_defaults(handler=cmd_preview)


def cmd_preview(args: argparse.Namespace) -> int:
    """What one phase makes of one page, before a whole crawl is started."""
    from trawl.settings import load_settings

    workflow = _workflow_with_engine(args)
    phase_name = args.phase or workflow.first_phase
    if phase_name not in {p.name for p in workflow.phases}:
        names = ", ".join(p.name for p in workflow.phases)
        raise CommandError(f"--phase {phase_name!r}: the workflow has no such phase ({names})")
    try:
        url = canonicalize(args.url)
    except BadUrl as error:
        raise CommandError(str(error)) from None
    settings = _settings(load_settings)
    try:
        report = asyncio.run(preview(workflow, url, phase_name, args.depth, settings))
    except TrawlError as error:
        from worker.preview import fetch_error_message

        raise CommandError(fetch_error_message(url, error), EXIT_NOT_COMPLETED) from None
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    return EXIT_OK


async def preview(
    workflow: Workflow, url: str, phase_name: str, depth: int, settings: Any
) -> dict[str, Any]:
    """The record and the judged links of ``phase_name`` run on ``url``."""
    from trawl.embedded import open_fetchers
    from worker.preview import phase_only, preview_page

    async with open_fetchers(phase_only(workflow, phase_name), settings) as (fetchers, _robots):
        return await preview_page(workflow, url, phase_name, depth, fetchers)

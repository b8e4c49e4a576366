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

import msgspec

from backends.errors import TrawlError
from backends.task import SEED_PHASE
from trawl.cli_common import (
    EXIT_ALL_FAILED,
    EXIT_NOTHING_CRAWLED,
    EXIT_OK,
    CommandError,
    add_set_argument,
    concurrency_arg,
    load_workflow_arg,
    print_warnings,
    start_url_warnings,
)
from trawl.secrets_commands import add_secret_argument, run_secrets
from workflows import Workflow
from workflows.urls import BadUrl, canonicalize

if TYPE_CHECKING:
    from backends.blobs import BlobStore
    from trawl.embedded import RunResult
    from worker.fetchers.cache import HttpCache
    from worker.recrawl import RecrawlSource

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
        "--concurrency",
        type=concurrency_arg,
        default=None,
        metavar="auto|N",
        help="pages in flight: auto (the default, unless TRAWL_WORKER_AUTOSCALE=0) rises and "
        "falls with CPU, memory and event-loop lag up to TRAWL_WORKER_CONCURRENCY; N: exactly N",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the newest unfinished run in --out where it stopped (same workflow)",
    )
    add_cache_arguments(parser)
    add_secret_argument(parser)
    parser.add_argument(
        "--recrawl",
        metavar="DIR",
        help="recrawl an earlier run of the same workflow (its --out directory: its newest "
        "run; or one run in it): its pages are asked again with conditional requests, and "
        "records are marked new, changed or unchanged",
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
    settings = _settings(load_settings)
    secrets = run_secrets(workflow, args.ask_secrets)  # exit 2 naming any that is missing
    cache = open_cache(args, workflow)
    recrawl = recrawl_source(args.recrawl, workflow) if args.recrawl else None
    if recrawl is not None and args.resume:
        raise CommandError(
            "--recrawl starts a new run; --resume goes on with one (a recrawl resumes as one)"
        )
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
                recrawl=recrawl,
                cache=cache,
                secrets=secrets,
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


def recrawl_source(target: str, workflow: Workflow) -> RecrawlSource:
    """The earlier run ``--recrawl DIR`` names (an output directory: its newest run with an
    export; or one run in it), checked to be a run of ``workflow`` (exit code 2 if not)."""
    from backends.local import LocalBlobStore
    from trawl.local_outputs import execution_dir
    from worker.recrawl import RecrawlRefused, RecrawlSource, previous_export

    if not Path(target).is_dir():
        raise CommandError(f"--recrawl {target}: not a directory (a `trawl run --out` one)")
    try:
        run = execution_dir(target)
    except CommandError as error:  # no finished run there: a bad argument here
        raise CommandError(f"--recrawl {error}") from None
    source = RecrawlSource(LocalBlobStore(run.parent), run.name)
    try:
        asyncio.run(previous_export(source, workflow=workflow.name))
    except RecrawlRefused as error:
        raise CommandError(f"--recrawl {target}: {error}") from None
    return source


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
    from worker.report import Sitemaps, recrawl_view, report_lines

    console = Console(file=stream or sys.stderr, highlight=False)
    console.print(summary_table(result.progress, elapsed_s, result.execution.status))
    p = result.progress
    if p.failures_by_class:
        failures = ", ".join(f"{k} {v}" for k, v in sorted(p.failures_by_class.items()))
        console.print(f"failures: {failures}")
    if p.warnings:
        examples = result.export.warning_examples if result.export is not None else []
        console.print("warnings: " + describe_warnings(p.warnings, examples), soft_wrap=True)
    view = {
        **recrawl_view(result.execution, p.funnel),
        "sitemaps": msgspec.to_builtins(Sitemaps.of(p)),
    }
    for line in report_lines(view):
        console.print(line, soft_wrap=True)
    duplicates = duplicate_marker_line(p.funnel)
    if duplicates:
        console.print(duplicates, soft_wrap=True)
    if result.cache is not None:
        console.print(f"cache: {result.cache.describe()}", soft_wrap=True)
    if result.proxies:
        console.print("proxies: " + proxies_line(result.proxies), soft_wrap=True)
    if result.concurrency:
        console.print(f"concurrency: {result.concurrency}", soft_wrap=True)
    if result.export is not None:
        records_file = result.where(result.export.export_path)
        console.print(f"records: {result.export.records} in {records_file}", soft_wrap=True)
        console.print(f"summary: {result.where(result.export.summary_path)}", soft_wrap=True)
        if result.export.failures:
            failures_file = result.where(result.export.failures_path)
            console.print(
                f"failed pages: {result.export.failures} in {failures_file}", soft_wrap=True
            )


def duplicate_marker_line(funnel: dict[str, dict[str, int]]) -> str | None:
    """The links dropped because another marker claimed their URL first on the same page
    (``link_claims: first``), by marker and phase; None when there were none."""
    lost = [
        f"{marker or '(no marker)'} -> {phase} {stages['duplicate_marker']}"
        for row, stages in sorted(funnel.items())
        if stages.get("duplicate_marker")
        for phase, _, marker in [row.partition("|")]
    ]
    if not lost:
        return None
    return (
        f"links claimed first by another marker on the same page: {', '.join(lost)} "
        "(link_claims: every crawls them under each marker)"
    )


def run_verdict(result: RunResult) -> tuple[int, str | None]:
    """The exit code of a completed run and, when it is not 0, the one-line reason: a run
    that fetched nothing, or whose every page failed, completed but did not work."""
    pages = result.progress.pages()
    # Sitemaps read are tasks too, but no pages: a run whose sitemaps listed nothing in
    # scope crawled nothing.
    seeds = result.progress.by_phase.get(SEED_PHASE, {})
    succeeded, failed, filtered = (
        pages[k] - seeds.get(k, 0) for k in ("succeeded", "failed", "filtered")
    )
    if succeeded + failed == 0:
        if pages["published"] - sum(seeds.values()) == 0:
            sitemaps = ", nor any URL of its sitemaps" if seeds else ""
            why = f"no start URL is in scope{sitemaps} (see the warnings above)"
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


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache DIR`` and ``--cache-ttl S``: an HTTP cache for writing a workflow."""
    parser.add_argument(
        "--cache",
        metavar="DIR",
        help="keep every page fetched under DIR and answer later runs from it without "
        "asking the site (pages of phases with script nodes are always fetched)",
    )
    parser.add_argument(
        "--cache-ttl",
        type=float,
        metavar="SECONDS",
        help="with --cache: pages stored longer ago than this are fetched again "
        "(default: they never expire)",
    )


def open_cache(args: argparse.Namespace, workflow: Workflow) -> HttpCache | None:
    """The HTTP cache ``--cache`` names (None without it); the directory is created."""
    from worker.fetchers.cache import HttpCache, secret_headers

    if args.cache_ttl is not None and (args.cache is None or args.cache_ttl <= 0):
        raise CommandError("--cache-ttl needs --cache DIR and a number of seconds above 0")
    if args.cache is None:
        return None
    root = Path(args.cache)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CommandError(f"--cache {root}: cannot use it as a directory: {error}") from None
    return HttpCache(root, ttl_s=args.cache_ttl, private_headers=secret_headers(workflow))


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
    add_cache_arguments(parser)
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
    cache = open_cache(args, workflow)
    try:
        report = asyncio.run(preview(workflow, url, phase_name, args.depth, settings, cache=cache))
    except TrawlError as error:
        from worker.preview import fetch_error_message

        raise CommandError(fetch_error_message(url, error), EXIT_NOT_COMPLETED) from None
    print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
    if cache is not None:
        print(f"cache: {cache.stats.describe()} ({cache.root})", file=sys.stderr)
    return EXIT_OK


async def preview(
    workflow: Workflow,
    url: str,
    phase_name: str,
    depth: int,
    settings: Any,
    *,
    cache: HttpCache | None = None,
) -> dict[str, Any]:
    """The record and the judged links of ``phase_name`` run on ``url`` (answered from
    ``cache`` when it can be)."""
    from trawl.embedded import open_fetchers
    from worker.preview import phase_only, preview_page

    opened = open_fetchers(phase_only(workflow, phase_name), settings, cache=cache)
    async with opened as (fetchers, _robots):
        return await preview_page(workflow, url, phase_name, depth, fetchers)


def proxies_line(health: list[dict[str, object]]) -> str:
    """Each proxy's health in a run's summary: ``127.0.0.1:3128 ok 40 failed 1 banned 2``
    (credentials never: proxies are named by host and port)."""
    parts = []
    for proxy in health:
        counts = " ".join(f"{k} {proxy[k]}" for k in ("ok", "failed", "banned") if proxy.get(k))
        resting = " (resting)" if proxy.get("resting") else ""
        parts.append(f"{proxy['proxy']} {counts or 'unused'}{resting}")
    return "; ".join(parts)

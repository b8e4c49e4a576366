"""Composition root of the embedded shape: ``trawl run`` and the engines of ``trawl preview``.

It picks what an embedded crawl runs over: the memory adapters journaled to a SQLite file
per execution (``backends.sqlite``, so an interrupted run can be resumed), a rate limiter of
its own and a local directory for the outputs; opens the engines (``worker/engines.py``)
behind the SSRF guard of a user's own machine; starts the execution (``worker/start.py``)
or resumes the newest unfinished one; and hands the rest to the runtime
(``worker/embedded.py``), which runs until the execution completes or a stop arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import msgspec

from backends.blobs import BlobStore
from backends.clock import Clock, SystemClock
from backends.errors import InvalidInputError
from backends.fetcher import Fetcher
from backends.local import LocalBlobStore
from backends.memory import MemoryRateLimiter, MemorySeenSet, MemoryStateStore, MemoryTaskQueue
from backends.queue import TaskQueue
from backends.ratelimit import RateLimiter, RatePolicy
from backends.seen import SeenSet
from backends.sqlite import RunStore, StoreBusy, find_runs, open_run, state_file
from backends.state import Execution, ExecutionStatus, Progress, StateStore
from trawl.progress import ProgressDisplay
from trawl.settings import Settings
from worker.assemble import Assembly, Ports
from worker.autoscale import Concurrency
from worker.context import ExecutionContext
from worker.embedded import ProgressCallback, assemble_embedded, run_until_complete
from worker.engines import open_engines
from worker.export import ExportResult
from worker.fetchers.cache import CacheStats, HttpCache
from worker.netguard import NetGuard
from worker.recrawl import RecrawlSource
from worker.robots import RobotsCache
from worker.secrets import SecretsMissing, load_secrets
from worker.start import publish_start_urls, start_execution, store_workflow
from worker.telemetry import Telemetry
from workflows.secret_refs import missing as missing_secrets
from workflows.spec import Workflow

TENANT = "local"
# Nothing else runs these tasks: a delivery is only redelivered when handed back.
ACK_DEADLINE_S = 3600.0
ALLOW_PRIVATE_ENV = "TRAWL_ALLOW_PRIVATE_NETWORKS"
STOPPING_NOTE = "stopping: finishing the pages in flight (Ctrl-C again to stop at once)"
_TRUE = frozenset({"1", "true", "yes", "on"})


def embedded_guard(environ: Mapping[str, str] | None = None) -> NetGuard:
    """The SSRF guard of ``trawl run`` and ``trawl preview``: on a user's own machine private
    networks are allowed, unless TRAWL_ALLOW_PRIVATE_NETWORKS is set to a false value
    (``0``, ``false``...) in the environment (default: os.environ)."""
    raw = (os.environ if environ is None else environ).get(ALLOW_PRIVATE_ENV, "").strip()
    return NetGuard(allow_private=not raw or raw.lower() in _TRUE)


@contextlib.asynccontextmanager
async def open_fetchers(
    workflow: Workflow,
    settings: Settings,
    *,
    guard: NetGuard | None = None,
    browser_restart_after: int = 500,
    cache: HttpCache | None = None,
) -> AsyncIterator[tuple[dict[str, Fetcher], RobotsCache]]:
    """The fetchers a workflow needs (the browser only if a phase uses it) and robots.txt,
    all behind ``guard``; None: ``embedded_guard()``, the policy of ``trawl run``.
    ``cache``: answered from an HTTP cache where they can be (``--cache DIR``)."""
    async with open_engines(
        guard if guard is not None else embedded_guard(),
        workflow=workflow,
        chromium_path=settings.chromium(),
        browser_restart_after=browser_restart_after,
        cache=cache,
    ) as engines:
        yield engines


@dataclass(slots=True)
class RunResult:
    """An embedded run that ended: the execution, its counts, its export (None when none
    was written) and the output directory the export's paths are relative to."""

    execution: Execution
    progress: Progress
    export: ExportResult | None
    out_dir: Path
    location: str = ""  # where the outputs went when not in out_dir (gs://bucket/prefix)
    cache: CacheStats | None = None  # what the HTTP cache did (``--cache``), if there was one
    # Each proxy's health at the end (``ProxyPool.health``), for a workflow with proxies.
    proxies: list[dict[str, object]] = field(default_factory=list)
    # Each engine's concurrency at the end and, autoscaled, its range: "http auto 24 (16 to 28)".
    concurrency: str = ""

    def where(self, path: str) -> str:
        """Where an output object (a path relative to the outputs) is, for people."""
        if self.location:
            return f"{self.location.rstrip('/')}/{path}"
        return str(self.out_dir / path)


async def run_embedded(
    workflow: Workflow,
    *,
    out_dir: Path,
    fetchers: Mapping[str, Fetcher],
    robots: RobotsCache,
    source_text: str = "",
    concurrency: int | Concurrency = 16,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval_s: float = 0.5,
    telemetry: Telemetry | None = None,
    persist: bool = True,
    resume: bool = False,
    limiter: RateLimiter | None = None,
    host_policy: RatePolicy | None = None,
    blobs: BlobStore | None = None,
    location: str = "",
    recrawl: RecrawlSource | None = None,
    secrets: Mapping[str, str] | None = None,
) -> RunResult:
    """Crawl ``workflow`` to completion (or until ``stop``), writing under ``out_dir`` (or
    to ``blobs``, e.g. a GCS bucket named by ``location``, with only the run's state in
    ``out_dir``).

    With ``persist`` the execution's state (seen set, queued tasks, counters) is kept in
    ``<out_dir>/<execution>/state.db`` as the crawl goes; ``resume`` continues the newest
    unfinished execution in ``out_dir`` from that file (ResumeError if there is none, or if
    it ran a different workflow). ``limiter`` (default: this run's own) and ``host_policy``
    let several runs share per-host permits and a ceiling per host across all of them.
    ``recrawl``: the new execution recrawls that earlier one (worker/recrawl.py).
    ``secrets``: what ``${secret:NAME}`` resolves to (``trawl run`` reads them from the
    environment); SecretsMissing, before anything is written, when one the workflow names
    is not among them. They are kept in memory only, never in the store file."""
    clock = clock or SystemClock()
    telemetry = telemetry or Telemetry.create()
    secrets = dict(secrets or {})
    lacking = missing_secrets(workflow, secrets)
    if lacking:
        raise SecretsMissing(lacking)
    store = await open_store(workflow, out_dir, clock, persist=persist, resume=resume)
    try:
        for name, value in secrets.items():
            await store.state.put_secret(TENANT, name, value)
        ports = Ports(
            queue=store.queue,
            seen=store.seen,
            limiter=limiter or MemoryRateLimiter(clock),
            state=store.state,
            blobs=blobs or LocalBlobStore(out_dir),
        )
        stages = assemble_embedded(
            ports,
            fetchers=fetchers,
            robots=robots,
            clock=clock,
            concurrency=concurrency,
            telemetry=telemetry,
            host_policy=host_policy,
            drained=_drained(store.queue),
        )
        await _begin(
            store,
            stages,
            workflow,
            source_text=source_text,
            clock=clock,
            telemetry=telemetry,
            recrawl=recrawl,
        )
        ended = await run_until_complete(
            stages,
            store.execution_id,
            clock=clock,
            stop=stop or asyncio.Event(),
            on_progress=on_progress,
            progress_interval_s=progress_interval_s,
        )
        pool = (await stages.contexts.get(store.execution_id)).proxy_pool
    finally:
        await store.close()
    result = RunResult(ended.execution, ended.progress, ended.export, out_dir, location)
    result.proxies = pool.health() if pool is not None else []
    result.concurrency = stages.pipeline.concurrency.describe()
    return result


def _drained(queue: TaskQueue) -> Callable[[], bool] | None:
    """Whether this run's own queue has nothing to hand out (no task ready or waiting out a
    delay): with nothing in flight either, the crawl is at its end and the sink flushes at
    once."""
    if not isinstance(queue, MemoryTaskQueue):
        return None
    return lambda: queue.pending() == queue.in_flight()


async def _begin(
    store: EmbeddedStore,
    stages: Assembly,
    workflow: Workflow,
    *,
    source_text: str,
    clock: Clock,
    telemetry: Telemetry,
    recrawl: RecrawlSource | None = None,
) -> None:
    """Start the store's new execution, or go on with the resumed one: its start URLs that
    are neither queued nor finished yet are published (all of them, unless resuming)."""
    if store.resumed is None:
        version = await store_workflow(stages.ports.state, TENANT, workflow, source_text)
        await start_execution(
            stages.ports,
            workflow,
            tenant=TENANT,
            version=version,
            clock=clock,
            execution_id=store.execution_id,
            stages=stages,
            telemetry=telemetry,
            recrawl=recrawl,
        )
        store.save()  # the run can be found (and resumed) from now on
        return
    ctx = ExecutionContext.build(store.resumed, workflow)
    ctx.secrets = await load_secrets(stages.ports.state, TENANT, workflow)
    stages.contexts.put(ctx)
    await publish_start_urls(
        ctx,
        stages.frontier,
        stages.completion,
        skip=store.queued_or_finished,
        telemetry=telemetry,
    )


class ResumeError(InvalidInputError):
    """``--resume`` found nothing to resume, or a run of another workflow."""

    error_class = "resume"


@dataclass(slots=True)
class EmbeddedStore:
    """The adapters of one embedded execution: a new one, or (``resumed``) one that runs
    again, with the keys of the tasks it already queued or finished."""

    execution_id: str
    state: StateStore
    seen: SeenSet
    queue: TaskQueue
    run: RunStore | None = None
    resumed: Execution | None = None
    queued_or_finished: frozenset[str] = frozenset()

    def save(self) -> None:
        """Write what the store file holds so far to disk."""
        if self.run is not None:
            self.run.db.flush()

    async def close(self) -> None:
        if self.run is not None:
            await self.run.close()


async def open_store(
    workflow: Workflow,
    out_dir: Path,
    clock: Clock,
    *,
    persist: bool = True,
    resume: bool = False,
) -> EmbeddedStore:
    """The adapters of a new execution of ``workflow`` (in memory, or in a store file with
    ``persist``), or with ``resume`` those of the newest unfinished one in ``out_dir``,
    running again."""
    if resume:
        return await _resume(workflow, out_dir, clock)
    execution_id = uuid.uuid4().hex
    if not persist:
        queue = MemoryTaskQueue(clock, ack_deadline_s=ACK_DEADLINE_S)
        return EmbeddedStore(execution_id, MemoryStateStore(), MemorySeenSet(), queue)
    run = await open_run(state_file(out_dir, execution_id), clock, ack_deadline_s=ACK_DEADLINE_S)
    return EmbeddedStore(execution_id, run.state, run.seen, run.queue, run)


async def _resume(workflow: Workflow, out_dir: Path, clock: Clock) -> EmbeddedStore:
    unfinished = [r for r in find_runs(out_dir) if r.status != "completed"]
    if not unfinished:
        raise ResumeError(
            f"--resume: no unfinished run in {out_dir} (run without --resume to start one)"
        )
    found = unfinished[0]
    try:
        run = await open_run(found.path, clock, ack_deadline_s=ACK_DEADLINE_S)
    except StoreBusy as error:
        raise ResumeError(f"--resume: {error}") from None
    try:
        execution = await _continue(run.state, found.execution_id, workflow, found.path.parent)
        finished = run.state.finished_keys(execution.id)
        await run.queue.restore(keep=lambda task: task.ledger_key not in finished)
        keys = finished | {task.ledger_key for task in run.queue.queued_tasks()}
    except BaseException:
        await run.close()
        raise
    return EmbeddedStore(
        execution.id, run.state, run.seen, run.queue, run, execution, frozenset(keys)
    )


async def _continue(
    state: StateStore, execution_id: str, workflow: Workflow, where: Path
) -> Execution:
    """The stored execution, running again, if it ran this very ``workflow``."""
    execution = await state.get_execution(execution_id)
    assert execution is not None
    stored = await state.get_workflow(TENANT, execution.workflow, execution.workflow_version)
    spec_json = msgspec.json.encode(workflow).decode()
    if stored is None or stored.spec_json != spec_json:
        raise ResumeError(
            f"--resume: {where} is a run of a different workflow "
            f"({execution.workflow!r} as it was then); run without --resume to start anew"
        )
    resumable: set[ExecutionStatus] = {"pending", "running", "cancelled", "failed"}
    await state.transition(execution_id, "running", from_statuses=resumable)
    execution = await state.get_execution(execution_id)
    assert execution is not None
    return execution


async def crawl(
    workflow: Workflow,
    *,
    out_dir: Path,
    settings: Settings,
    source_text: str = "",
    concurrency: int | Literal["auto"] | None = None,
    stream: TextIO | None = None,
    handle_signals: bool = True,
    resume: bool = False,
    blobs: BlobStore | None = None,
    location: str = "",
    recrawl: RecrawlSource | None = None,
    cache: HttpCache | None = None,
    secrets: Mapping[str, str] | None = None,
) -> RunResult:
    """Run ``workflow`` in this process with a progress display. The first Ctrl-C (or
    SIGTERM) stops cleanly: pages in flight get a short drain, the export of what was done
    is written, and the run can be resumed. A second one stops at once (KeyboardInterrupt):
    no export, but what the store holds is still resumable. ``resume`` continues the newest
    unfinished run in ``out_dir`` (ResumeError if there is none); ``recrawl`` starts one
    that recrawls an earlier run. ``cache``: pages answered from an HTTP cache where they
    can be, its counts in the result. ``secrets``: as for ``run_embedded``.
    ``concurrency``: N pages at once, "auto" autoscaled (worker/autoscale.py), None as the
    settings say (autoscaled unless TRAWL_WORKER_AUTOSCALE=0)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    installed = False
    display = ProgressDisplay(stream)

    def on_signal() -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # the second: out of the event loop at once
        stop.set()
        display.note(STOPPING_NOTE)

    if handle_signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, on_signal)
            loop.add_signal_handler(signal.SIGTERM, on_signal)
            installed = True
    levels = settings.concurrency(concurrency)
    display.levels = levels.levels
    try:
        async with open_fetchers(workflow, settings, cache=cache) as (fetchers, robots):
            result = await run_embedded(
                workflow,
                out_dir=out_dir,
                fetchers=fetchers,
                robots=robots,
                source_text=source_text,
                concurrency=levels,
                stop=stop,
                on_progress=display.update,
                resume=resume,
                blobs=blobs,
                location=location,
                recrawl=recrawl,
                secrets=secrets,
            )
            result.cache = cache.stats if cache is not None else None
            return result
    finally:
        display.close()
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)

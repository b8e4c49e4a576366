"""``trawl run --resume``: an interrupted crawl goes on where it stopped.

The Aqua shop is served here with a request counter per path. One crawl runs through
uninterrupted; another is stopped once half of the shop's pages were requested, then
resumed: its export must equal the uninterrupted one's, and no page may have been fetched
twice beyond those in flight at the interrupt. The other tests cover the SQLite store
itself, ``--resume`` refusing what it cannot do, and Ctrl-C twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from aiohttp import web

from backends.clock import FakeClock
from backends.sqlite import (
    SqliteDb,
    SqliteSeenSet,
    SqliteStateStore,
    SqliteTaskQueue,
    open_run,
    state_file,
)
from backends.state import Execution, TaskResult
from backends.task import Task
from examples.aqua.generate import build_site
from examples.aqua.server import make_app
from tests.crawling import RUN_FIELDS
from tests.site import SiteServer
from trawl.cli import main
from trawl.embedded import STOPPING_NOTE, ResumeError, RunResult, open_fetchers, run_embedded
from trawl.local_outputs import exported_lines
from trawl.settings import Settings
from workflows import Workflow, load_workflow_file

REPO = Path(__file__).resolve().parents[2]
AQUA_HTTP = REPO / "examples" / "aqua" / "aqua-http.yaml"
CONCURRENCY = 8
SUMMARY_KEYS = ("pages", "records", "by_phase", "by_marker", "failures_by_class", "warnings")


# -- the shop, counted


@dataclass
class CountedShop:
    """The Aqua shop with a counter of requests per path (robots.txt aside), and a stop
    event it sets once ``stop_after`` pages have been requested."""

    base: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    stop: asyncio.Event | None = None
    stop_after: int = 0

    def reset(self, stop: asyncio.Event | None = None, stop_after: int = 0) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        self.stop, self.stop_after = stop, stop_after
        return counts


@asynccontextmanager
async def counted_shop() -> AsyncIterator[CountedShop]:
    shop = CountedShop()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/robots.txt":
            shop.counts[request.path_qs] += 1
            if shop.stop is not None and sum(shop.counts.values()) >= shop.stop_after:
                shop.stop.set()
        response: web.StreamResponse = await handler(request)
        return response

    app = make_app(build_site())
    app.middlewares.append(count)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        shop.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        yield shop
    finally:
        await runner.cleanup()
        sock.close()


def aqua(base: str) -> Workflow:
    # A local server: the shipped rate would only make the test slower.
    return load_workflow_file(
        AQUA_HTTP,
        overrides=[
            f"start_urls=[{base}/]",
            "politeness.requests_per_second=1000",
            "politeness.burst=100",
        ],
    )


async def run(
    workflow: Workflow, out: Path, *, stop: asyncio.Event | None = None, resume: bool = False
) -> RunResult:
    async with (
        asyncio.timeout(60),
        open_fetchers(workflow, Settings()) as (fetchers, robots),
    ):
        return await run_embedded(
            workflow,
            out_dir=out,
            fetchers=fetchers,
            robots=robots,
            concurrency=CONCURRENCY,
            stop=stop,
            resume=resume,
            progress_interval_s=0.1,
        )


def export_of(result: RunResult) -> tuple[set[str], dict[str, Any]]:
    """The export's records as JSON lines without the per-run fields, and the summary."""
    assert result.export is not None
    lines = exported_lines(result.out_dir / result.execution.id)
    records = set()
    for line in lines:
        record = json.loads(line)
        for name in RUN_FIELDS:
            record.pop(name)
        records.add(json.dumps(record, sort_keys=True))
    summary = json.loads((result.out_dir / result.export.summary_path).read_text("utf-8"))
    return records, summary


def record_paths(result: RunResult, base: str) -> set[str]:
    assert result.export is not None
    lines = exported_lines(result.out_dir / result.execution.id)
    return {json.loads(line)["url"].removeprefix(base) for line in lines}


# -- the acceptance test


async def test_an_interrupted_crawl_resumed_has_the_uninterrupted_export(tmp_path: Path) -> None:
    async with counted_shop() as shop:
        workflow = aqua(shop.base)
        full = await run(workflow, tmp_path / "full")
        full_counts = shop.reset()
        assert full.execution.status == "completed"
        want_records, want_summary = export_of(full)
        assert max(full_counts.values()) == 1  # a clean run fetches each page once
        pages = sum(full_counts.values())
        assert pages > 100

        stop = asyncio.Event()
        shop.reset(stop, stop_after=pages // 2)
        out = tmp_path / "resumed"
        first = await run(workflow, out, stop=stop)
        first_counts = shop.reset()
        assert first.execution.status == "cancelled"
        assert 0 < first.progress.finished < first.progress.published
        done_before = record_paths(first, shop.base)
        assert done_before

        second = await run(workflow, out, resume=True)
        second_counts = shop.reset()

    assert second.execution.id == first.execution.id
    assert second.execution.status == "completed"
    records, summary = export_of(second)
    assert records == want_records
    assert {k: summary[k] for k in SUMMARY_KEYS} == {k: want_summary[k] for k in SUMMARY_KEYS}
    assert summary["status"] == "completed"
    # Every page was fetched; none that had a record before the interrupt was fetched again,
    # and no more were fetched twice than could be in flight at the interrupt.
    both = first_counts + second_counts
    assert set(both) == set(full_counts)
    assert not done_before & set(second_counts), sorted(done_before & set(second_counts))
    again = sum(n - 1 for n in both.values())
    assert again <= CONCURRENCY, {p: n for p, n in both.items() if n > 1}


# -- what --resume refuses


def test_resume_with_nothing_to_resume_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(AQUA_HTTP.read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "out"

    assert main(["run", str(workflow), "--out", str(out), "--resume"]) == 2

    err = capsys.readouterr().err
    assert err == (
        f"trawl: --resume: no unfinished run in {out} (run without --resume to start one)\n"
    )


async def test_resume_refuses_a_run_of_another_workflow(tmp_path: Path) -> None:
    stop = asyncio.Event()
    stop.set()  # stopped before it could fetch anything: cancelled, resumable
    out = tmp_path / "out"
    async with counted_shop() as shop:
        first = await run(aqua(shop.base), out, stop=stop)
        assert first.execution.status == "cancelled"
        changed = load_workflow_file(
            AQUA_HTTP, overrides=[f"start_urls=[{shop.base}/]", "max_depth=3"]
        )
        with pytest.raises(ResumeError) as refused:
            await run(changed, out, resume=True)
    assert str(refused.value) == (
        f"--resume: {out / first.execution.id} is a run of a different workflow "
        "('aqua-shop' as it was then); run without --resume to start anew"
    )


async def test_resume_refuses_a_run_another_process_has_open(tmp_path: Path) -> None:
    stop = asyncio.Event()
    stop.set()
    async with counted_shop() as shop:
        workflow = aqua(shop.base)
        first = await run(workflow, tmp_path, stop=stop)
        held = await open_run(
            state_file(tmp_path, first.execution.id), FakeClock(), ack_deadline_s=60
        )
        try:
            with pytest.raises(ResumeError) as refused:
                await run(workflow, tmp_path, resume=True)
        finally:
            await held.close()
        resumed = await run(workflow, tmp_path, resume=True)
    assert str(refused.value) == (
        f"--resume: {tmp_path / first.execution.id} is in use by another trawl run"
    )
    assert resumed.execution.status == "completed"


async def test_resume_leaves_completed_runs_alone(tmp_path: Path) -> None:
    async with counted_shop() as shop:
        workflow = aqua(shop.base)
        done = await run(workflow, tmp_path)
        assert done.execution.status == "completed"
        with pytest.raises(ResumeError, match="no unfinished run"):
            await run(workflow, tmp_path, resume=True)


# -- Ctrl-C twice


@pytest.mark.integration  # runs `python -m trawl run` as a child process
def test_ctrl_c_twice_stops_at_once_and_the_run_can_be_resumed(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "resume-twice"
    start = site.url(f"/graph/{token}/40/0?delay_ms=400")
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        f"""\
name: twice
start_urls: ["{start}"]
engine: http
politeness: {{requests_per_second: 1000, burst: 100, max_concurrency_per_host: 8,
              respect_robots_txt: false}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
      - {{type: extract_links}}
""",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "trawl", "run", str(workflow), "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(child.stderr, lines), daemon=True)
    reader.start()
    try:
        site.log.wait_for_sync(
            lambda log: sum(e.path.startswith(f"/graph/{token}/") for e in log) >= 3,
            timeout_s=30,
        )
        child.send_signal(signal.SIGINT)
        # Two signals sent at once are one: the second goes once the first was taken.
        wait_for_line(lines, STOPPING_NOTE, timeout_s=10)
        child.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        child.wait(timeout=20)
        reader.join(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    err = "".join(iter_lines(lines))
    child.stderr.close()
    # At once: no 5 s drain, no export; the store is left resumable.
    assert time.monotonic() - interrupted_at < 4, err
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "trawl: interrupted"
    assert not list(out.glob("*/export/manifest.json"))

    assert main(["run", str(workflow), "--out", str(out), "--resume"]) == 0
    (records_line,) = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("records: ")
    ]
    assert records_line.startswith("records: 40 in ")
    fetched = Counter(e.path for e in site.log.entries() if e.path.startswith(f"/graph/{token}/"))
    assert len(fetched) == 40
    # Fetched again: the pages in flight at the second Ctrl-C, and those finished in the
    # sink's last half second, whose results had not been written yet. Never more often.
    assert max(fetched.values()) <= 2
    assert sum(n - 1 for n in fetched.values()) <= 2 * CONCURRENCY


def read_lines(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def wait_for_line(lines: queue.Queue[str | None], wanted: str, timeout_s: float) -> None:
    """Take lines until ``wanted``; put back nothing (what came before is not needed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        assert line is not None, f"no {wanted!r} line before the end of the output"
        if line.rstrip("\n") == wanted:
            return


def iter_lines(lines: queue.Queue[str | None]) -> list[str]:
    """What the child wrote after the line waited for (it has exited and been read)."""
    rest = []
    while (line := lines.get(timeout=10)) is not None:
        rest.append(line)
    return rest


# -- the store itself


async def test_the_store_file_brings_back_state_seen_set_and_queue(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / "state.db"
    db = SqliteDb(path)
    state = await SqliteStateStore.open(db, clock)
    seen = await SqliteSeenSet.open(db)
    queue = SqliteTaskQueue(db, clock)
    await state.put_workflow("t", "wf", "name: wf", "{}")
    execution = Execution(id="e1", workflow="wf", workflow_version=1, created_at=clock.wall())
    await state.create_execution(execution)
    await state.transition("e1", "running", from_statuses={"pending"})
    assert await seen.add_new("e1", ["a", "b", "c"], claimer="p") == [True, True, True]
    assert await state.add_tasks("e1", ["a", "b", "c"]) == ["a", "b", "c"]
    tasks = [Task(execution_id="e1", url=u, depth=1, phase="x") for u in "abc"]
    await queue.publish(tasks)
    delivery = await queue.receive()
    fail = TaskResult(
        key="a", url="a", phase="x", depth=1, outcome="failed", error_class="http_404"
    )
    await state.finish_tasks("e1", [fail])
    await delivery.ack()
    await queue.receive()  # "b" in flight when the process goes away
    before = await state.progress("e1")
    failures = await state.failures("e1")
    await queue.close()
    db.close()

    clock.advance(60)  # a later process: timestamps must come back as they were
    db = SqliteDb(path)
    state = await SqliteStateStore.open(db, clock)
    seen = await SqliteSeenSet.open(db)
    queue = SqliteTaskQueue(db, clock)
    try:
        restored = await state.get_execution("e1")
        assert restored is not None
        assert (restored.status, restored.started_at) == ("running", execution.created_at)
        assert await state.progress("e1") == before
        assert before.published == 3 and before.finished == 1
        assert await state.failures("e1") == failures
        assert state.finished_keys("e1") == {"a"}
        assert await seen.add_new("e1", ["a", "d"]) == [False, True]
        assert await seen.add_new("e1", ["b"], claimer="p") == [True]  # still p's claim
        assert await queue.restore() == 2
        assert [(await queue.receive()).task.url for _ in range(2)] == ["b", "c"]
    finally:
        await queue.close()
        db.close()


async def test_a_restored_queue_drops_what_keep_refuses(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    db = SqliteDb(path)
    queue = SqliteTaskQueue(db)
    await queue.publish([Task(execution_id="e", url=u, depth=0, phase="x") for u in "abc"])
    await queue.close()
    db.close()

    db = SqliteDb(path)
    queue = SqliteTaskQueue(db)
    assert await queue.restore(keep=lambda task: task.url != "b") == 2
    assert sorted(task.url for task in queue.queued_tasks()) == ["a", "c"]
    await queue.close()
    db.close()
    db = SqliteDb(path)
    assert len(db.query("SELECT id FROM queue")) == 2  # the refused one is gone for good
    db.close()


async def test_the_store_file_brings_back_held_and_released_tasks(tmp_path: Path) -> None:
    clock = FakeClock()
    db = SqliteDb(tmp_path / "state.db")
    state = await SqliteStateStore.open(db, clock)
    keys = ["a", "b", "c", "d"]
    await state.register_tasks("e1", keys, payloads=[k.upper() for k in keys], window=2)
    await state.finish_tasks(
        "e1", [TaskResult(key="a", url="a", phase="x", depth=1, outcome="succeeded")]
    )
    assert await state.release_tasks("e1", window=2) == ["C"]
    db.close()

    db = SqliteDb(tmp_path / "state.db")
    state = await SqliteStateStore.open(db, clock)
    try:
        assert await state.release_tasks("e1", window=2) == []  # b and c fill the window
        await state.finish_tasks(
            "e1", [TaskResult(key="b", url="b", phase="x", depth=1, outcome="succeeded")]
        )
        assert await state.release_tasks("e1", window=2) == ["D"]
    finally:
        db.close()

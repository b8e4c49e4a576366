"""What ``trawl run`` loads and how it ends: an http-only crawl never imports Playwright, the
distributed backends or the other commands' modules; a run's last pages complete it at once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore, MemoryTaskQueue
from backends.state import TaskResult
from backends.task import Task
from tests.site import SiteServer
from tests.unit.test_cli_run import write_workflow
from trawl.cli import REGISTRARS, _registrar, build_parser
from worker.process import Outcome
from worker.records import Record
from worker.sink import Sink

REPO = Path(__file__).resolve().parents[2]

# Never on the http engine's path: the browser, the distributed backends and the server.
NEVER_ON_HTTP = (
    "playwright",
    "worker.fetchers.browser",
    "asyncpg",
    "redis",
    "google",
    "litestar",
    "opentelemetry.sdk",
    "orchestrator",
    "trawl.dist_commands",
    "trawl.schedule_commands",
)


def imported(importtime_stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reported loading."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in importtime_stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


@pytest.mark.integration  # runs `python -m trawl run` as a child process
def test_http_run_imports_no_browser_nor_backends(site: SiteServer, tmp_path: Path) -> None:
    workflow = write_workflow(tmp_path / "wf.yaml", site.url("/"))
    out = tmp_path / "out"
    argv = [sys.executable, "-X", "importtime", "-m", "trawl", "run", str(workflow)]
    child = subprocess.run(
        [*argv, "--out", str(out), "--set", "max_depth=1"],
        check=False,
        cwd=REPO,
        env={**os.environ, "TRAWL_ALLOW_PRIVATE_NETWORKS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert "records: " in child.stderr  # it crawled and wrote its export
    modules = imported(child.stderr)
    assert "aiohttp" in modules and "trawl.embedded" in modules  # the report is read right
    found = {p: loaded(modules, p) for p in NEVER_ON_HTTP}
    assert {p: m for p, m in found.items() if m} == {}


def test_each_registrar_adds_the_commands_it_is_listed_with() -> None:
    for module, function, names in REGISTRARS:
        parser = argparse.ArgumentParser()
        commands = parser.add_subparsers()
        _registrar(module, function)(commands)
        assert tuple(commands.choices) == names, f"{module}.{function}"


def test_a_named_command_registers_only_its_own_module() -> None:
    def commands(parser: argparse.ArgumentParser) -> list[str]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(sub.choices)

    assert commands(build_parser("run")) == ["run"]
    assert commands(build_parser("status"))[:2] == ["migrate", "worker"]
    everything = commands(build_parser())
    assert everything[:4] == ["validate", "schema", "run", "preview"]
    assert len(everything) == sum(len(names) for _, _, names in REGISTRARS)


async def outcome_of(queue: MemoryTaskQueue, url: str) -> Outcome:
    await queue.publish([Task(execution_id="e", url=url, depth=0, phase="p")])
    delivery = await queue.receive()
    result = TaskResult(key=url, url=url, phase="p", depth=0, outcome="succeeded")
    record = Record(
        execution_id="e",
        workflow="w",
        phase="p",
        url=url,
        marker=None,
        depth=0,
        status=200,
        fetched_at=datetime(2026, 12, 7, tzinfo=UTC),
        data={},
    )
    return Outcome(delivery, result, record)


@pytest.mark.parametrize("idle", [True, False])
async def test_the_last_pages_are_counted_at_once_when_nothing_else_is_coming(
    tmp_path: Path, idle: bool
) -> None:
    queue = MemoryTaskQueue()
    blobs = LocalBlobStore(tmp_path)
    flushed = asyncio.Event()

    async def on_flushed(execution_id: str) -> None:
        flushed.set()

    sink = Sink(
        blobs=blobs,
        state=MemoryStateStore(),
        clock=queue._clock,
        worker_id="t",
        max_delay_s=3600.0,  # the batching delay alone would hold them for an hour
        on_flushed=on_flushed,
    )
    sink.idle = lambda: idle
    inbox: asyncio.Queue[Outcome | None] = asyncio.Queue()
    run = asyncio.create_task(sink.run(inbox))
    await inbox.put(await outcome_of(queue, "http://x.test/1"))
    await inbox.put(await outcome_of(queue, "http://x.test/2"))
    if idle:
        await asyncio.wait_for(flushed.wait(), 5)
        assert queue.pending() == 0  # both counted and acked
        parts = [await blobs.read(b.path) for b in await blobs.list("")]
        assert [part.count(b"\n") for part in parts] == [2]  # both, in one part file
    else:
        for _ in range(20):  # let the sink take both in
            await asyncio.sleep(0)
        assert inbox.empty() and not flushed.is_set()
        assert queue.pending() == 2
    await inbox.put(None)
    await asyncio.wait_for(run, 5)
    assert queue.pending() == 0

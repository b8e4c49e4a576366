"""Incremental recrawls as a user runs them: ``trawl run --recrawl DIR`` against a site that
answers conditional requests (tests/recrawl_site.py), the requests counted at the server.

Run 1 marks every record new; run 2 recrawls it: every page is asked with its validators,
answered 304 (or, without validators, compared by hash), nothing is extracted and the
export repeats run 1's data marked unchanged. After one page changes (and starts linking a
new page), run 3 recrawls run 2: exactly that record is changed, the new page new, the rest
unchanged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.local import LocalBlobStore
from tests.recrawl_site import PAGES, RecrawlSite
from trawl.cli import main
from trawl.embedded import RunResult, open_fetchers, run_embedded
from trawl.local_outputs import exported_records
from trawl.settings import Settings
from worker.recrawl import RecrawlSource
from workflows import Workflow, load_workflow_file

# Differs from one run to the next whatever the site did.
RUN_FIELDS = ("execution_id", "fetched_at", "change")


@pytest.fixture
def recrawl_site() -> Iterator[RecrawlSite]:
    site = RecrawlSite().start()
    try:
        yield site
    finally:
        site.stop()


def write_workflow(path: Path, site: RecrawlSite, name: str = "recrawl-test") -> Path:
    path.write_text(
        f"""\
name: {name}
start_urls: ["{site.url("/")}"]
engine: http
max_depth: 3
politeness: {{requests_per_second: 500, burst: 50, max_concurrency_per_host: 8,
             respect_robots_txt: false}}
retries: {{max_attempts: 2, backoff_s: 0.05}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
      - {{type: extract_links}}
""",
        encoding="utf-8",
    )
    return path


def only_run(out: Path) -> Path:
    (run,) = [child for child in out.iterdir() if (child / "export").is_dir()]
    return run


def summary_of(run: Path) -> dict[str, Any]:
    return json.loads((run / "export" / "summary.json").read_text(encoding="utf-8"))


def by_path(site: RecrawlSite, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    base = site.url("")
    return {r["url"].removeprefix(base): r for r in records}


def stage_total(summary: dict[str, Any], stage: str) -> int:
    return sum(stages.get(stage, 0) for stages in summary["funnel"].values())


def without_run_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in RUN_FIELDS}


def run(workflow: Path, out: Path, *extra: str) -> Path:
    """``trawl run WORKFLOW --out OUT ...`` to completion; the run's directory."""
    assert main(["run", str(workflow), "--out", str(out), *extra]) == 0
    return only_run(out)


def check_first_run(site: RecrawlSite, first: dict[str, dict[str, Any]]) -> None:
    """A first execution: every record new, with the response's validators and hash."""
    assert sorted(first) == site.paths()
    assert {r["change"] for r in first.values()} == {"new"}
    assert first["/p/1"]["etag"] == site.pages["/p/1"].tag()
    assert first["/p/1"]["last_modified"] == "Mon, 05 Jan 2026 08:00:00 GMT"
    assert (first["/lm"]["etag"], first["/plain"]["etag"]) == (None, None)
    assert all(len(r["content_hash"]) == 64 for r in first.values())
    assert not site.counts.conditional


def test_a_recrawl_asks_conditionally_and_marks_what_changed(
    recrawl_site: RecrawlSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = recrawl_site
    workflow = write_workflow(tmp_path / "wf.yaml", site)
    paths = site.paths()  # "/", /p/1..5, /lm, /plain
    assert len(paths) == PAGES + 3

    run1 = run(workflow, tmp_path / "run1")
    first = by_path(site, exported_records(run1))
    check_first_run(site, first)
    assert summary_of(run1)["recrawl_of"] is None
    capsys.readouterr()

    # Run 2 recrawls run 1 against the same site: one conditional request per page that
    # has validators, all answered 304; /plain is fetched whole and found the same by hash.
    site.counts.reset()
    run2 = run(workflow, tmp_path / "run2", "--recrawl", str(tmp_path / "run1"))
    with_validators = [p for p in paths if p != "/plain"]
    assert site.counts.requests == dict.fromkeys(paths, 1)
    assert site.counts.conditional == dict.fromkeys(with_validators, 1)
    assert site.counts.not_modified == dict.fromkeys(with_validators, 1)

    summary = summary_of(run2)
    assert (summary["recrawl_of"], summary["records"]) == (run1.name, len(paths))
    assert summary["changes"] == {"changed": 0, "unchanged": len(paths)}
    totals = {stage: stage_total(summary, stage) for stage in ("fetched", "unchanged")}
    assert totals == {"fetched": len(paths), "unchanged": len(paths)}
    assert stage_total(summary, "extracted") == 0
    second = by_path(site, exported_records(run2))
    assert {r["change"] for r in second.values()} == {"unchanged"}
    assert {p: without_run_fields(r) for p, r in second.items()} == {
        p: without_run_fields(r) for p, r in first.items()
    }
    line = f"recrawl of {run1.name}: {len(paths)} unchanged, 0 changed"
    assert line in capsys.readouterr().err
    assert main(["status", str(tmp_path / "run2")]) == 0
    assert line in capsys.readouterr().out

    # One page changes and links a page nobody linked before; run 3 recrawls run 2.
    site.change("/p/2", "Page 2, revised", links=["/", "/fresh"])
    site.counts.reset()
    run3 = run(workflow, tmp_path / "run3", "--recrawl", str(tmp_path / "run2"))
    third = by_path(site, exported_records(run3))
    assert {p: r["change"] for p, r in third.items()} == {
        **dict.fromkeys(paths, "unchanged"),
        "/p/2": "changed",
        "/fresh": "new",
    }
    assert third["/p/2"]["data"] == {"title": "Page 2, revised"}
    assert third["/p/2"]["etag"] == site.pages["/p/2"].tag() != second["/p/2"]["etag"]
    assert third["/p/2"]["content_hash"] != second["/p/2"]["content_hash"]
    assert third["/fresh"]["data"] == {"title": "Fresh page"}
    assert third["/fresh"]["parent_url"] == site.url("/p/2")
    asked = (site.counts.conditional["/p/2"], site.counts.not_modified["/p/2"])
    assert asked == (1, 0)
    assert site.counts.conditional["/fresh"] == 0
    summary = summary_of(run3)
    assert summary["changes"] == {"changed": 1, "unchanged": len(paths) - 1}
    assert stage_total(summary, "extracted") == 2  # /p/2 and /fresh


def test_recrawl_refuses_a_run_of_another_workflow(
    recrawl_site: RecrawlSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = recrawl_site
    other = write_workflow(tmp_path / "other.yaml", site, name="other-workflow")
    assert main(["run", str(other), "--out", str(tmp_path / "other"), "--set", "max_pages=1"]) == 0
    previous = only_run(tmp_path / "other").name
    capsys.readouterr()

    workflow = write_workflow(tmp_path / "wf.yaml", site)
    out = tmp_path / "out"
    code = main(["run", str(workflow), "--out", str(out), "--recrawl", str(tmp_path / "other")])

    assert code == 2
    assert capsys.readouterr().err == (
        f"trawl: --recrawl {tmp_path / 'other'}: execution {previous} ran workflow "
        "'other-workflow', not 'recrawl-test'; a recrawl goes over an execution of the same "
        "workflow\n"
    )
    assert not out.exists()


def test_recrawl_and_resume_do_not_go_together(
    recrawl_site: RecrawlSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = write_workflow(tmp_path / "wf.yaml", recrawl_site)
    assert main(["run", str(workflow), "--out", str(tmp_path / "a"), "--set", "max_pages=1"]) == 0
    capsys.readouterr()
    resume = ["--out", str(tmp_path / "b"), "--resume"]
    code = main(["run", str(workflow), *resume, "--recrawl", str(tmp_path / "a")])
    assert code == 2
    assert "--recrawl starts a new run; --resume goes on with one" in capsys.readouterr().err


async def test_an_interrupted_recrawl_resumes_as_a_recrawl(
    recrawl_site: RecrawlSite, tmp_path: Path
) -> None:
    site = recrawl_site
    workflow = load_workflow_file(write_workflow(tmp_path / "wf.yaml", site))
    first = await crawl(workflow, tmp_path / "run1")
    previous = RecrawlSource(LocalBlobStore(first.out_dir), first.execution.id)
    paths = site.paths()
    site.counts.reset()

    # Stopped (as by Ctrl-C) once the site has answered three of its pages.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def halfway(requests: int) -> None:
        if requests == 3:
            loop.call_soon_threadsafe(stop.set)

    site.on_request = halfway
    out = tmp_path / "run2"
    stopped = await crawl(workflow, out, recrawl=previous, stop=stop)
    site.on_request = None
    assert stopped.execution.status == "cancelled"
    assert stopped.progress.finished < len(paths)
    resumed = await crawl(workflow, out, resume=True)

    assert resumed.execution.id == stopped.execution.id
    assert resumed.execution.status == "completed"
    records = exported_records(out / resumed.execution.id)
    assert sorted(by_path(site, records)) == paths
    assert {r["change"] for r in records} == {"unchanged"}
    summary = summary_of(out / resumed.execution.id)
    assert summary["recrawl_of"] == first.execution.id
    assert summary["changes"] == {"changed": 0, "unchanged": len(paths)}
    # Every page asked once, but the one in flight at the stop (one at a time).
    assert sum(site.counts.requests.values()) <= len(paths) + 1
    assert site.counts.requests.keys() == set(paths)


async def crawl(
    workflow: Workflow,
    out: Path,
    *,
    recrawl: RecrawlSource | None = None,
    stop: asyncio.Event | None = None,
    resume: bool = False,
) -> RunResult:
    async with asyncio.timeout(60), open_fetchers(workflow, Settings()) as (fetchers, robots):
        return await run_embedded(
            workflow,
            out_dir=out,
            fetchers=fetchers,
            robots=robots,
            concurrency=1,
            stop=stop,
            resume=resume,
            recrawl=recrawl,
        )


def test_recrawl_of_a_directory_without_a_finished_run_is_a_bad_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(
        "name: recrawl-test\nstart_urls: [http://127.0.0.1:9/]\nengine: http\n"
        "phases: [{name: page, nodes: [{type: extract, fields: {title: h1}}]}]\n",
        encoding="utf-8",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    assert main(["run", str(workflow), "--out", str(out), "--recrawl", str(empty)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trawl: --recrawl {empty}: no finished run here"), err
    assert not out.exists()

"""Smoke tests of the benchmarks in bench/: a refactor that breaks one fails the suite.

Two kinds:

- fast: the generated site, and the report code of ``bench.run``, ``bench.memory``,
  ``bench.distributed`` and ``bench.cpu_per_page`` over the results committed in
  bench/results/ (the figures docs/operations.md and bench/README.md quote), which must
  still summarise and render to what was published;
- ``integration``: each entry point crawling a tiny generated site for real, through its
  ``main()`` as its command line calls it. They start processes (``trawl run``, nginx, the
  load clients, ``trawl worker`` and the services), hence the marker. Only Trawl's own
  crawlers run: the peers need their venvs built from the network, and the browser engine's
  path is the http one's with another fetcher.

Generated sites go under the test's tmp_path, never bench/site/, and nothing is saved to
bench/results/ (``--no-save``).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from backends.errors import PermanentError
from backends.fetcher import FetchRequest
from bench import (
    autoscaling,
    capacity,
    capacity_report,
    capacity_site,
    cpu_per_page,
    distributed,
    docsite,
    export,
    memory,
    run,
    serve,
)
from tests.services.gcs import gcs_emulator
from tests.services.pubsub import pubsub_emulator

__all__ = ["gcs_emulator", "pubsub_emulator"]

RESULTS = Path(run.__file__).resolve().parent / "results"
TINY = 30  # pages of a smoke test's site: a crawl of it takes well under a second


@pytest.fixture
def site_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where bench.docsite writes sites during the test."""
    root = tmp_path / "site"
    monkeypatch.setattr(docsite, "SITE_ROOT", root)
    return root


def _committed(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


# --- fast: the site and the reports -------------------------------------------------------------


def test_docsite_writes_every_page_it_lists(
    site_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docsite.main(["--pages", str(TINY)])

    root = site_root / f"docs-{TINY}"
    assert f"{root}: {TINY} pages" in capsys.readouterr().out
    paths = (root / "pages.txt").read_text().split()
    assert len(paths) == TINY and paths[0] == "/index.html"
    assert all((root / p.lstrip("/")).is_file() for p in paths)
    meta = json.loads((root / "site.json").read_text())
    assert meta["pages"] == TINY and meta["total_links"] > TINY


def test_run_report_reproduces_the_published_comparison() -> None:
    result = _committed("20261123T100716Z.json")
    names = [row["crawler"] for row in result["summary"]]

    assert run.summarize(result["runs"], names) == result["summary"]
    targets = [list(t) for t in run.targets(result["summary"])]
    assert [t for t in targets if t in result["targets"]] == result["targets"]  # + newer ones
    table = run.markdown(result).splitlines()
    trawl_http = "| trawl-http | http | 5000 | 3/3 | 659.2 | 412-698 | 1.41 | 67 | 48 |"
    assert any(line.startswith(trawl_http) for line in table)
    rows = {line.split(" | ")[0].removeprefix("| ") for line in table if line.startswith("| ")}
    assert set(names) <= rows
    assert "| trawl-http pages/s >= 5x scrapy | yes | 8.64x (goal >= 5x) |" in table
    assert any(line.startswith("Server ceiling") and "7415 pages/s" in line for line in table)


def test_memory_report_reproduces_the_published_curves() -> None:
    result = _committed("memory-20261123T104227Z.json")

    table = memory.markdown(result).splitlines()
    http = next(line for line in table if line.startswith("| http | 20000 |"))
    assert "| yes | 733.9 | 1.33 | 80 | 55 | 68.4 | 68.4 |" in http
    assert any(line.startswith("| browser | 2000 | yes |") for line in table)
    assert sum(line.startswith("RSS curve,") for line in table) == 2


def test_distributed_report_reproduces_the_published_round_trips() -> None:
    rows = _committed("distributed-20261123T111110Z.json")

    table = distributed.table(rows)
    assert "| 1 | 2000 | 5.5 | 363.7 | 3.031 | 0.304 | 0.106 | 0.061 | 1.0 |" in table
    assert table in (RESULTS / "distributed.md").read_text()


def test_cpu_per_page_report_reproduces_the_published_ratio() -> None:
    [newest] = sorted(RESULTS.glob("cpu-per-page-2*.json"))[-1:]
    result = json.loads(newest.read_text())

    assert cpu_per_page.summarize(result["runs"]) == result["summary"]
    assert cpu_per_page.markdown(result) == (RESULTS / "cpu-per-page.md").read_text()
    assert result["meta"]["command"] in (RESULTS / "cpu-per-page.md").read_text()
    assert result["summary"]["ratio_median"] <= cpu_per_page.GOAL_RATIO  # the acceptance
    assert all(run["valid"] for run in result["runs"])


def test_export_report_reproduces_the_published_comparison() -> None:
    [newest] = sorted(RESULTS.glob("export-*.json"))[-1:]
    result = json.loads(newest.read_text())
    assert export.markdown(result) == (RESULTS / "export.md").read_text()
    assert result["records"] == 1_000_000
    assert result["builds"]["streamed"]["peak_rss_mb"] < export.RSS_GOAL_MB


def test_capacity_report_reproduces_the_published_verdict() -> None:
    [newest] = sorted(RESULTS.glob("capacity-*.json"))[-1:]
    result = json.loads(newest.read_text())

    assert capacity_report.markdown(result) + "\n" == (RESULTS / "capacity.md").read_text()
    again = json.loads(json.dumps(capacity.reanalysed(result)["analysis"]))
    assert again == result["analysis"]  # the analysis of today reads the figures alike
    verdict = result["analysis"]["one_execution"]["verdict"]
    assert verdict.startswith("First saturating backend: **")
    assert result["elapsed_s"] < 600  # the acceptance: under ten minutes on this machine


def test_capacity_site_discovers_each_page_once_then_one_new_page_per_page() -> None:
    width = 16
    discovered: dict[int, int] = {0: -1}  # page -> the page that discovered it
    order = [0]
    new_per_page = []
    for index in range(200):  # crawled breadth first, as a queue would
        n = order[index]
        new = [m for m in capacity_site.links_of(width, n) if m not in discovered]
        discovered.update(dict.fromkeys(new, n))
        order += new
        new_per_page.append(len(new))

    assert set(range(width)) <= set(order[: width * 2])  # the fan-out reaches every chain
    assert set(new_per_page[width:]) == {1}  # after the fan-out: one new page per page
    assert all(discovered[m] == m - width for m in order if m >= width)


async def test_capacity_fetcher_serves_the_synthetic_site_without_a_network() -> None:
    fetcher = capacity_site.SyntheticFetcher(delay_s=0, cpu_s=0)
    async with fetcher.open(FetchRequest(capacity_site.start_url(16))) as page:
        hrefs = [a.attr("href") for a in page.css("a")]
        title = page.css_first("title")
        assert title is not None and title.text() == "Page 0"
    assert hrefs == [f"/w16/p{m}" for m in (16, 1, 2, 3, 4, 0)]
    with pytest.raises(PermanentError, match="not a page of the synthetic site"):
        async with fetcher.open(FetchRequest("http://synthetic.test/elsewhere")):
            pass
    assert fetcher.fetches == 1


# --- integration: each entry point on a tiny site -----------------------------------------------


@pytest.mark.integration
def test_run_measures_trawl_http(site_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--pages", str(TINY), "--runs", "1", "--only", "trawl-http", "--skip-browser"]
    assert run.main([*argv, "--timeout", "60", "--no-save"]) == 0

    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.startswith("| trawl-http |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["http", str(TINY), "1/1"], captured.err
    assert float(cells[4]) > 0 and float(cells[6]) > 0  # pages/s, CPU ms/page
    assert cells[-1] == "0 / 0"  # nothing missing, nothing extra
    assert "Server ceiling" in captured.out
    assert "| trawl-http pages/s >= 5x scrapy | n/a |" in captured.out


@pytest.mark.integration
def test_memory_samples_a_crawl(site_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--http-pages", str(TINY), "--skip-browser", "--timeout", "60", "--no-save"]
    assert memory.main(argv) == 0

    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.startswith("| http |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == [str(TINY), "yes"], captured.err
    assert float(cells[5]) > 0  # peak RSS MB
    assert "RSS curve, http engine" in captured.out


@pytest.mark.integration
def test_serve_measures_its_ceiling(site_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    serve.main(["--pages", str(TINY), "--ceiling", "--repeat", "1"])

    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("serving ")
    ceiling = ast.literal_eval(lines[1])
    assert ceiling["pages"] == TINY and ceiling["failed"] == 0
    assert ceiling["pages_per_s"] > 0


@pytest.mark.integration
def test_distributed_counts_round_trips(
    site_root: Path,
    tmp_path: Path,
    pubsub_emulator: str,
    gcs_emulator: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--pages", str(TINY), "--workers", "1", "--concurrency", "8"]
    distributed.main([*argv, "--work", str(tmp_path / "work"), "--no-save"])

    out = capsys.readouterr().out.splitlines()
    figures = json.loads(out[0])
    assert figures["status"] == "completed" and figures["pages"] == TINY
    assert figures["redis_per_page"] > 0 and figures["postgres_xacts_per_page"] > 0
    assert figures["pubsub_per_page"]["acks"] > 0
    assert any(line.startswith(f"| 1 | {TINY} |") for line in out)


@pytest.mark.integration
def test_cpu_per_page_measures_trawl_run_and_a_worker(
    site_root: Path,
    tmp_path: Path,
    pubsub_emulator: str,
    gcs_emulator: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--pages", str(TINY), "--runs", "1", "--concurrency", "8"]
    assert cpu_per_page.main([*argv, "--work", str(tmp_path / "work"), "--no-save"]) == 0

    out = capsys.readouterr().out
    for kind in ("embedded", "worker"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {kind} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "1/1", out  # valid: every page, each with its title
        assert float(cells[2]) > 0  # CPU ms per page
    assert "Ratio worker / embedded, CPU per page (crawl)" in out


@pytest.mark.integration
def test_export_builds_both_ways(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each build in a child process of its own, on a tiny synthetic execution."""
    assert export.main(["--records", "2000", "--no-save"]) == 0

    report = capsys.readouterr().out
    assert "| streamed | 2,000 |" in report
    assert "| in-memory | 2,000 |" in report


@pytest.mark.integration
def test_capacity_names_what_saturates_first(
    pubsub_emulator: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both series on their quick sizes: 1 and 2 workers on one execution, then 2 workers
    on three small executions, over a Redis and a PgBouncer of the run's own."""
    assert capacity.main(["--quick", "--no-save"]) == 0

    out = capsys.readouterr().out
    one, many = out.split("## Many small executions")
    for workers in (1, 2):
        row = next(line for line in one.splitlines() if line.startswith(f"| {workers} |"))
        assert float(row.split("|")[2]) > 0  # pages/s
    assert "| 2 | 3 |" in many  # 2 workers completed all 3 executions
    assert out.count("First limit hit, at ") + out.count("No limit was hit up to ") == 2
    assert out.count("First saturating backend: **") + out.count("No backend saturated") == 1
    assert "One step only (2 workers): no latency to compare with." in many
    assert "## Cost per operation" in out


@pytest.mark.integration
def test_autoscaling_times_the_backlog_read_and_a_worker_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Its quick sizes: two executions' backlog read thrice, one worker started."""
    result = autoscaling.main(["--quick", "--no-save"])

    assert result["backlog"]["reads"] == 3
    assert result["worker_start"]["ready_s_median"] > 0
    assert "| one backlog read (2 running executions" in capsys.readouterr().out

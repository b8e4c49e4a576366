"""``trawl run`` and ``trawl preview`` as a user sees them: exit codes, stderr, files, JSON.

The crawls go to the local test site (tests/site.py); ``trawl run`` runs in this process
through ``trawl.cli.main`` except for Ctrl-C, which is a real SIGINT to a child process.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.site import SiteServer
from trawl.cli import main

REPO = Path(__file__).resolve().parents[2]


def write_workflow(path: Path, start_url: str, *, rate: float = 200, burst: int = 20) -> Path:
    path.write_text(
        f"""\
name: cli-run
start_urls: ["{start_url}"]
engine: http
max_depth: 4
politeness:
  requests_per_second: {rate}
  burst: {burst}
  max_concurrency_per_host: 8
  respect_robots_txt: false
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
      - {{type: extract_links}}
""",
        encoding="utf-8",
    )
    return path


def dataset_lines(folder: Path) -> list[str]:
    """The records of an export's folder: one dataset per phase, gzipped JSON lines (beside
    the same rows in Parquet)."""
    return [
        line
        for part in sorted(folder.glob("phase=*/*.jsonl.gz"))
        for line in gzip.decompress(part.read_bytes()).decode("utf-8").splitlines()
    ]


def test_run_completes_with_summary_and_records_path(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = write_workflow(tmp_path / "wf.yaml", site.url("/graph/cli-run/30/0"))
    out = tmp_path / "out"

    assert main(["run", str(workflow), "--out", str(out)]) == 0

    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    # stderr is not a terminal here: plain progress lines, no live display or colours.
    assert "\x1b[" not in err
    assert "\r" not in err
    progress = [line for line in err.splitlines() if line.startswith("pages done ")]
    assert progress, err
    assert "pages/s" in progress[-1]
    # The http engine's concurrency, autoscaled by default: in the progress and the summary.
    assert " concurrency http " in progress[-1], progress[-1]
    assert any(line.startswith("concurrency: http auto ") for line in err.splitlines()), err
    # The summary: a table per phase with the total, then where the records are.
    assert "crawl completed in " in err
    assert any(line.split()[:4] == ["│", "page", "│", "30"] for line in err.splitlines()), err
    (records_line,) = [line for line in err.splitlines() if line.startswith("records: ")]
    count, _, path = records_line.removeprefix("records: ").partition(" in ")
    assert count == "30"
    records = dataset_lines(Path(path))
    assert len(records) == 30
    assert Path(path).is_relative_to(out)
    (summary_line,) = [line for line in err.splitlines() if line.startswith("summary: ")]
    summary = json.loads(Path(summary_line.removeprefix("summary: ")).read_text())
    assert summary["status"] == "completed"
    assert summary["pages"]["succeeded"] == 30


def test_missing_workflow_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["run", str(missing), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"trawl: {missing}: no such file\n"
    assert not (tmp_path / "out").exists()


PREVIEW_WORKFLOW = """\
name: preview-test
start_urls: [http://127.0.0.1:9/]
engine: http
scope:
  allowed_domains: [127.0.0.1]  # any port: the test site's is not the start URL's
  exclude: ["/product/3"]
  ignore_query_params: [utm_*]
start_phase: listing
phases:
  - name: listing
    nodes:
      - {type: extract_links, selector: "ul.products a", marker: product}
    transitions:
      - {when: {marker: product}, to: product}
  - name: product
    nodes:
      - type: extract
        fields: {name: h1, sku: {css: "[data-sku]", attr: data-sku}}
      - {type: extract_links, selector: "ul.related a.product", marker: related}
    transitions:
      - {when: {marker: related}, to: product}
"""


def test_preview_prints_the_record_and_judged_links(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = tmp_path / "preview.yaml"
    workflow.write_text(PREVIEW_WORKFLOW, encoding="utf-8")
    url = site.url("/product/1?case=preview")

    assert main(["preview", str(workflow), url, "--phase", "product"]) == 0

    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["url"] == url
    assert report["phase"] == "product"
    assert report["engine"] == "http"
    assert report["status"] == 200
    assert report["record"] == {"name": "Aqua Filter 1", "sku": "AF-0001"}
    links = {link["url"]: link for link in report["links"]}
    assert links[site.url("/product/2")] == {
        "url": site.url("/product/2"),
        "marker": "related",
        "depth": 1,
        "phase": "product",
    }
    # Dropped links say why, and have no phase.
    (dropped,) = [link for link in report["links"] if "dropped" in link]
    assert dropped["url"].startswith(site.url("/product/3"))
    assert dropped["dropped"] == "out_of_scope"
    assert "phase" not in dropped
    # Nothing is crawled: the page itself, once, and none of its links.
    assert site.log.paths().count("/product/1?case=preview") == 1


def test_preview_of_the_start_phase_follows_transitions(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = tmp_path / "preview.yaml"
    workflow.write_text(PREVIEW_WORKFLOW, encoding="utf-8")

    assert main(["preview", str(workflow), site.url("/")]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["phase"] == "listing"
    assert report["record"] is None  # the listing phase has no extract node
    judged = [(link["url"], link.get("phase"), link.get("dropped")) for link in report["links"]]
    assert judged == [
        (site.url(f"/product/{n}"), None, "out_of_scope")
        if n == 3
        else (site.url(f"/product/{n}"), "product", None)
        for n in range(1, 6)
    ]


@pytest.mark.integration  # runs `python -m trawl run` as a child process
def test_sigint_stops_the_run_cancelled_with_its_export(site: SiteServer, tmp_path: Path) -> None:
    # Two pages a second over 300 pages: minutes, unless interrupted.
    token = "cli-sigint"
    workflow = write_workflow(
        tmp_path / "wf.yaml", site.url(f"/graph/{token}/300/0"), rate=2, burst=2
    )
    out = tmp_path / "out"
    child = subprocess.Popen(
        [sys.executable, "-m", "trawl", "run", str(workflow), "--out", str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        site.log.wait_for_sync(
            lambda log: sum(e.path.startswith(f"/graph/{token}/") for e in log) >= 3,
            timeout_s=30,
        )
        child.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert time.monotonic() - interrupted_at < 10, err
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert "crawl cancelled in " in err
    (records_line,) = [line for line in err.splitlines() if line.startswith("records: ")]
    count, _, path = records_line.removeprefix("records: ").partition(" in ")
    records = [json.loads(line) for line in dataset_lines(Path(path))]
    assert len(records) == int(count) >= 3
    summary = json.loads(Path(path).with_name("summary.json").read_text())
    assert summary["status"] == "cancelled"
    assert summary["records"] == len(records)
    assert summary["pages"]["published"] > summary["pages"]["finished"]

"""Runs that tell the truth: exit codes and reasons when nothing was crawled or every page
failed, start URLs the scope keeps out, failures.jsonl, warnings that name their field, and
``status``/``failures list``/``export`` reading an embedded run's output directory.

The crawls go to the local test site (tests/site.py) through ``trawl.cli.main``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from backends.local import LocalBlobStore
from backends.memory import MemoryStateStore
from backends.state import Execution, TaskResult
from tests.site import SiteServer
from trawl.cli import main
from worker.export import build_export, describe_warnings
from workflows.urls import canonicalize

T0 = datetime(2026, 1, 1, tzinfo=UTC)

# Every command here must work with no backend at all: these point nowhere.
NO_BACKENDS = {
    "TRAWL_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
    "TRAWL_REDIS_URL": "redis://127.0.0.1:1/0",
}


def workflow(
    path: Path,
    start_urls: list[str],
    *,
    scope: str = "{}",
    fields: str = "{title: h1}",
    max_attempts: int = 2,
) -> Path:
    urls = ", ".join(f'"{u}"' for u in start_urls)
    path.write_text(
        f"""\
name: honest
start_urls: [{urls}]
engine: http
max_depth: 2
scope: {scope}
retries: {{max_attempts: {max_attempts}, backoff_s: 0}}
politeness: {{requests_per_second: 500, burst: 50, max_concurrency_per_host: 8,
              respect_robots_txt: false}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {fields}}}
      - {{type: extract_links}}
""",
        encoding="utf-8",
    )
    return path


def only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


# -- trawl validate


def test_validate_warns_of_start_urls_the_scope_keeps_out_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workflow(
        tmp_path / "wf.yaml",
        [
            "http://shop.example/",
            "http://other.example/a",
            "http://shop.example/old/1",
            "http://shop.example/x?ok=1",
        ],
        scope='{allowed_domains: [shop.example], exclude: ["/old/"]}',
    )

    assert main(["validate", str(path)]) == 0

    captured = capsys.readouterr()
    assert captured.out == f"OK: {path} (honest, 1 phase)\n"
    assert captured.err.splitlines() == [
        "warning: start_urls[1]: http://other.example/a is out of scope, so it is not crawled: "
        "its host other.example is not in scope.allowed_domains (shop.example)",
        "warning: start_urls[2]: http://shop.example/old/1 is out of scope, so it is not "
        "crawled: it is excluded by the scope.exclude pattern '/old/'",
    ]


def test_validate_names_include_patterns_a_start_url_misses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workflow(
        tmp_path / "wf.yaml", ["http://shop.example/"], scope='{include: ["/products/"]}'
    )

    assert main(["validate", str(path)]) == 0

    assert capsys.readouterr().err == (
        "warning: start_urls[0]: http://shop.example/ is out of scope, so it is not crawled: "
        "it matches no scope.include pattern ('/products/')\n"
    )


def test_validate_of_an_in_scope_workflow_prints_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workflow(tmp_path / "wf.yaml", ["http://shop.example/"])
    assert main(["validate", str(path)]) == 0
    assert capsys.readouterr().err == ""


# -- trawl run: exit codes


def test_run_with_every_start_url_out_of_scope_exits_4_and_says_why(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = site.url("/graph/honest-scope/5/0")
    path = workflow(tmp_path / "wf.yaml", [start], scope='{exclude: ["/graph/honest-scope/"]}')

    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 4

    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"warning: start_urls[0]: {start} is out of scope, so it is not crawled: "
        "it is excluded by the scope.exclude pattern '/graph/honest-scope/'"
    )
    assert (
        err[-1] == "trawl: nothing was crawled: no start URL is in scope (see the warnings above)"
    )
    assert not any(p.startswith("/graph/honest-scope/") for p in site.log.paths())
    summary = json.loads((only_run(tmp_path / "out") / "export/summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["pages"]["published"] == 0


def test_run_whose_every_page_failed_exits_5_naming_the_failures_file(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = site.url("/status/404?case=honest-all-failed")
    path = workflow(tmp_path / "wf.yaml", [start])
    out = tmp_path / "out"

    assert main(["run", str(path), "--out", str(out)]) == 5

    err = capsys.readouterr().err.splitlines()
    failures_file = only_run(out) / "export" / "failures.jsonl"
    assert err[-1] == f"trawl: every page failed: 1 failed (http_404 1); see {failures_file}"
    assert f"failed pages: 1 in {failures_file}" in err
    (line,) = failures_file.read_text().splitlines()
    failure = json.loads(line)
    assert failure.pop("at").endswith("Z")
    assert failure == {
        "url": start,
        "phase": "page",
        "error_class": "http_404",
        "message": f"HTTP 404 from {start}",
        "attempts": 1,
    }


# -- failures.jsonl and warnings


def mixed_run(site: SiteServer, tmp_path: Path, token: str) -> tuple[Path, list[str]]:
    """A hub that works, two pages that fail for good, one that fails after 2 attempts."""
    targets = [f"/status/404?t={token}", f"/status/410?t={token}", f"/status/503?t={token}"]
    query = "&".join(f"to={t.replace('?', '%3F').replace('=', '%3D')}" for t in targets)
    start = site.url(f"/hub?{query}")
    path = workflow(tmp_path / "wf.yaml", [start], fields="{title: h1, n: {css: h1, type: int}}")
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    return out, [canonicalize(start), *(site.url(t) for t in targets)]


def test_failures_jsonl_lists_every_failed_page_with_class_message_and_attempts(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, (_, url_404, url_410, url_503) = mixed_run(site, tmp_path, "honest-mixed")

    failures_file = only_run(out) / "export" / "failures.jsonl"
    failures = {
        f["url"]: (f["error_class"], f["message"], f["attempts"], f["phase"])
        for f in map(json.loads, failures_file.read_text().splitlines())
    }
    assert failures == {
        url_404: ("http_404", f"HTTP 404 from {url_404}", 1, "page"),
        url_410: ("http_410", f"HTTP 410 from {url_410}", 1, "page"),
        url_503: ("http_5xx", f"HTTP 503 from {url_503}", 2, "page"),
    }
    err = capsys.readouterr().err
    assert "failures: http_404 1, http_410 1, http_5xx 1" in err
    assert f"failed pages: 3 in {failures_file}" in err


def test_warnings_name_field_phase_and_example_urls(
    site: SiteServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = "honest-warn"
    start = site.url(f"/graph/{token}/5/0")
    path = workflow(tmp_path / "wf.yaml", [start], fields="{title: h1, n: {css: h1, type: int}}")
    out = tmp_path / "out"

    assert main(["run", str(path), "--out", str(out)]) == 0

    summary = json.loads((only_run(out) / "export/summary.json").read_text())
    assert summary["warnings"] == {"field_conversion": 5}
    (example,) = summary["warning_examples"]
    pages = {site.url(f"/graph/{token}/5/{n}") for n in range(5)}
    assert example["kind"] == "field_conversion"
    assert (example["phase"], example["field"], example["count"]) == ("page", "n", 5)
    assert len(example["urls"]) == 3
    assert set(example["urls"]) <= pages
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warnings: ")]
    assert line == f"warnings: field_conversion 5 (n in phase page: {', '.join(example['urls'])})"


# -- status, failures list and export on an output directory


def test_status_reads_the_newest_run_of_an_output_directory(
    site: SiteServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _ = mixed_run(site, tmp_path, "honest-status")
    run = only_run(out)
    capsys.readouterr()
    for name, value in NO_BACKENDS.items():
        monkeypatch.setenv(name, value)

    assert main(["status", str(out)]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"execution {run.name} (honest v1, local {run}): completed"
    assert lines[1] == "pages: 4/4 finished, 1 succeeded, 3 failed, 0 filtered; records 1"
    assert lines[2] == "failures: http_404 1, http_410 1, http_5xx 1"
    assert lines[3] == f"failed pages: {run / 'export' / 'failures.jsonl'}"
    assert lines[4].startswith("warnings: field_conversion 1 (n in phase page: ")

    assert main(["status", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["execution_id"] == run.name
    assert report["path"] == str(run)
    assert report["pages"]["failed"] == 3


def test_failures_list_of_an_output_directory_newest_first(
    site: SiteServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, _ = mixed_run(site, tmp_path, "honest-flist")
    lines_in_file = (only_run(out) / "export/failures.jsonl").read_text().splitlines()
    newest = json.loads(lines_in_file[-1])
    capsys.readouterr()
    for name, value in NO_BACKENDS.items():
        monkeypatch.setenv(name, value)

    assert main(["failures", "list", str(out), "--limit", "1"]) == 0

    captured = capsys.readouterr()
    at = newest["at"].replace("T", " ").removesuffix("Z")
    assert captured.out.splitlines() == [
        f"{at} {newest['error_class']} {newest['url']}",
        f"    {newest['message']} (attempt {newest['attempts']}, phase page)",
    ]
    assert captured.err == "1 failure(s)\n"

    assert main(["failures", "list", str(out)]) == 0
    assert capsys.readouterr().err == "3 failure(s)\n"


def test_export_csv_of_an_output_directory(
    site: SiteServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, (hub, *_) = mixed_run(site, tmp_path, "honest-export")
    capsys.readouterr()
    for name, value in NO_BACKENDS.items():
        monkeypatch.setenv(name, value)

    assert main(["export", str(out), "--format", "csv"]) == 0

    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["url"], r["phase"], r["data.title"], r["data.n"]) for r in rows] == [
        (hub, "page", "Hub", "")
    ]

    target = tmp_path / "records.jsonl"
    assert main(["export", str(only_run(out)), "--out", str(target)]) == 0
    assert capsys.readouterr().err == f"1 records in {target}\n"
    assert [json.loads(x)["url"] for x in target.read_text().splitlines()] == [hub]


def test_a_directory_without_a_run_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in (["status", str(empty)], ["failures", "list", str(empty)]):
        assert main(command) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == (
            f"trawl: {empty}: no finished run here (no <execution>/export/summary.json); "
            "give the --out directory of `trawl run` or one execution in it\n"
        )
    assert main(["export", str(empty), "--out", str(tmp_path / "x.jsonl")]) == 1
    assert not (tmp_path / "x.jsonl").exists()


# -- the export a distributed execution writes (same code; the store holds the bucket's prefix)


async def test_the_export_has_failures_jsonl_and_warning_examples(
    tmp_path: Path,
) -> None:
    state = MemoryStateStore()
    blobs = LocalBlobStore(tmp_path / "trawl" / "outputs")
    execution = Execution(
        id="ex-1", workflow="shop", workflow_version=1, created_at=T0, status="completed"
    )
    await state.create_execution(execution)
    await state.add_tasks("ex-1", ["http://s/a", "http://s/b", "http://s/c"])

    def done(url: str, outcome: str, **extra: object) -> TaskResult:
        fields = {"key": url, "url": url, "phase": "product", "depth": 1, "outcome": outcome}
        return msgspec.convert({**fields, **extra}, TaskResult)

    await state.finish_tasks(
        "ex-1",
        [
            done("http://s/a", "failed", error_class="timeout", error_message="slow", attempt=3),
            done(
                "http://s/b",
                "succeeded",
                warnings={"field_conversion": 2},
                warning_fields={"field_conversion|price": 1, "field_conversion|specs.value": 1},
            ),
            done("http://s/c", "failed", error_class="http_404", error_message="gone", attempt=1),
        ],
    )

    result = await build_export(blobs, state, execution)

    assert result.failures_path == "ex-1/export/failures.jsonl"
    outputs = tmp_path / "trawl" / "outputs"
    lines = (outputs / result.failures_path).read_text().splitlines()
    assert [
        {k: v for k, v in json.loads(line).items() if k != "at"} for line in lines
    ] == [
        {"url": "http://s/a", "phase": "product", "error_class": "timeout", "message": "slow",
         "attempts": 3},
        {"url": "http://s/c", "phase": "product", "error_class": "http_404", "message": "gone",
         "attempts": 1},
    ]  # fmt: skip
    summary = json.loads((outputs / result.summary_path).read_text())
    assert summary["warning_examples"] == [
        {"kind": "field_conversion", "phase": "product", "field": "price", "count": 1,
         "urls": ["http://s/b"]},
        {"kind": "field_conversion", "phase": "product", "field": "specs.value", "count": 1,
         "urls": ["http://s/b"]},
    ]  # fmt: skip
    assert describe_warnings(summary["warnings"], result.warning_examples) == (
        "field_conversion 2 (price in phase product 1: http://s/b; "
        "specs.value in phase product 1: http://s/b)"
    )

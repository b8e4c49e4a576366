"""A Sphinx-like docs site crawled with ``trawl run``: code blocks keep their lines, a
processor takes the ``¶`` off headings, and a required field missing on one page is listed
as ``missing_required`` (and, with ``records.missing_required: drop``, that page's record
is left out and counted as ``record_dropped``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docs_site import ADDRESS_TEXT, INSTALL_CODE, USAGE_CODE, DocsSite
from trawl.cli import main
from trawl.local_outputs import exported_records
from workflows import validate_data
from workflows.errors import WorkflowInvalid

WORKFLOW = """\
name: sphinx-docs
start_urls: ["{start}"]
engine: http
politeness:
  requests_per_second: 500
  burst: 50
  max_concurrency_per_host: 8
  respect_robots_txt: false
start_phase: toc
phases:
  - name: toc
    nodes:
      - {{type: extract_links, selector: "nav.toc a", marker: doc}}
    transitions:
      - {{when: {{marker: doc}}, to: doc}}
  - name: doc
    nodes:
      - type: extract
        fields:
          title: {{css: h1, process: [{{remove: "¶"}}, strip]}}
          code: {{css: "div.highlight pre", multiple: true}}
          address: address
          version: {{css: ".version span", required: true}}
"""


@pytest.fixture(scope="module")
def docs() -> Iterator[DocsSite]:
    with DocsSite() as site:
        yield site


def run(docs: DocsSite, tmp_path: Path, *settings: str) -> Path:
    """``trawl run`` over the docs site (``--set`` each of ``settings``); the run's
    directory."""
    workflow = tmp_path / "docs.yaml"
    workflow.write_text(WORKFLOW.format(start=docs.url("/")), encoding="utf-8")
    out = tmp_path / "out"
    overrides = [arg for setting in settings for arg in ("--set", setting)]
    assert main(["run", str(workflow), "--out", str(out), *overrides]) == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def records_by_url(run_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["url"]: r["data"] for r in exported_records(run_dir)}


def summary_of(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "export" / "summary.json").read_text())
    return summary


def test_a_docs_site_reads_right_and_lists_the_missing_required_field(
    docs: DocsSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = run(docs, tmp_path)
    err = capsys.readouterr().err

    assert records_by_url(run_dir) == {
        docs.url("/install.html"): {
            "title": "Installation",
            "code": [INSTALL_CODE],
            "address": ADDRESS_TEXT,
            "version": "1.0",
        },
        docs.url("/usage.html"): {
            "title": "Usage",
            "code": [USAGE_CODE],
            "address": ADDRESS_TEXT,
            "version": None,  # kept: the policy is warn
        },
        docs.url("/faq.html"): {
            "title": "FAQ",
            "code": [],  # multiple with no match: an empty list, not null
            "address": ADDRESS_TEXT,
            "version": "1.0",
        },
    }
    listed = f"missing_required 1 (version in phase doc: {docs.url('/usage.html')})"
    assert f"warnings: {listed}" in err
    summary = summary_of(run_dir)
    assert summary["records"] == 3
    assert summary["warnings"] == {"missing_required": 1}

    assert main(["status", str(run_dir)]) == 0
    assert f"warnings: {listed}\n" in capsys.readouterr().out


def test_drop_leaves_the_record_out_and_counts_it(
    docs: DocsSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = run(docs, tmp_path, "records.missing_required=drop")
    err = capsys.readouterr().err

    assert sorted(records_by_url(run_dir)) == [docs.url("/faq.html"), docs.url("/install.html")]
    usage = docs.url("/usage.html")
    assert (
        f"warnings: missing_required 1 (version in phase doc: {usage}), "
        f"record_dropped 1 (version in phase doc: {usage})"
    ) in err
    summary = summary_of(run_dir)
    assert summary["records"] == 2
    assert summary["warnings"] == {"missing_required": 1, "record_dropped": 1}
    # The page was fetched like the others; only its record is missing.
    assert summary["pages"]["succeeded"] == 4
    assert summary["funnel"]["doc|doc"]["fetched"] == 3
    assert summary["funnel"]["doc|doc"]["extracted"] == 2


def test_only_top_level_fields_can_be_required() -> None:
    workflow: dict[str, Any] = {
        "name": "req-test",
        "start_urls": ["http://docs.test/"],
        "engine": "http",
        "phases": [
            {
                "name": "doc",
                "nodes": [
                    {
                        "type": "extract",
                        "fields": {
                            "title": {"css": "h1", "required": True},
                            "rows": {
                                "css": "tr",
                                "multiple": True,
                                "fields": {"cell": {"css": "td", "required": True}},
                            },
                        },
                    }
                ],
            }
        ],
    }
    with pytest.raises(WorkflowInvalid) as invalid:
        validate_data(workflow)
    assert [str(p) for p in invalid.value.problems] == [
        "phases[0].nodes[0].fields.rows.fields.cell.required: only the top-level fields of an "
        "extract node can be required"
    ]

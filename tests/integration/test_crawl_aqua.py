"""The Aqua shop crawled end to end gives exactly the answer its generator says it must.

``examples.aqua.generate`` writes the shop and, from the same model, the records and counts
a correct crawl of it produces (depths, the 404s, the robots.txt block, the bestseller seen
on every listing page, the discontinued items the filter drops). Each test serves the shop on
a free port, runs the shipped workflow through ``trawl run``'s own code path
(``trawl.embedded.crawl``) with only the start URL overridden, and compares the export.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from examples.aqua.generate import Engine, build_site, expected, expected_counts
from examples.aqua.server import serve
from trawl.embedded import crawl
from trawl.local_outputs import exported_lines
from trawl.settings import Settings
from workflows import load_workflow_file

pytestmark = pytest.mark.integration

AQUA = Path(__file__).resolve().parents[2] / "examples" / "aqua"
WORKFLOWS = {"http": AQUA / "aqua-http.yaml", "browser": AQUA / "aqua.yaml"}
SUMMARY_KEYS = ("pages", "records", "by_phase", "by_marker", "failures_by_class")


async def crawl_aqua(
    engine: Engine, out_dir: Path, settings: Settings, overrides: tuple[str, ...] = ()
) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(records, summary, expected records, expected counts) of one crawl of the shop."""
    site = build_site()
    async with serve(site, "127.0.0.1") as base:
        workflow = load_workflow_file(
            WORKFLOWS[engine], overrides=[f"start_urls=[{base}/]", *overrides]
        )
        progress = io.StringIO()
        result = await crawl(
            workflow, out_dir=out_dir, settings=settings, stream=progress, handle_signals=False
        )
    assert result.execution.status == "completed", progress.getvalue()
    assert result.export is not None
    lines = exported_lines(out_dir / result.execution.id)
    records = [json.loads(line) for line in lines]
    for record in records:
        assert record.pop("execution_id") == result.execution.id
        assert record.pop("fetched_at").endswith("Z")
        parent = record.pop("parent_url")  # whichever linking page was crawled first
        assert parent is None or parent.startswith(base)
        assert len(record.pop("content_hash")) == 64  # of the page's HTML, as the nodes read it
    summary = json.loads((out_dir / result.export.summary_path).read_text(encoding="utf-8"))
    assert summary["status"] == "completed"
    return records, summary, expected(site, base, engine), expected_counts(site)


async def test_http_crawl_gives_the_expected_records(tmp_path: Path) -> None:
    records, summary, want, counts = await crawl_aqua("http", tmp_path, Settings())
    assert records == want
    assert {k: summary[k] for k in SUMMARY_KEYS} == {k: counts[k] for k in SUMMARY_KEYS}


@pytest.mark.browser
@pytest.mark.timeout(300)  # about 50 s on two idle cores; the browser is CPU-bound
async def test_browser_crawl_gives_the_expected_records(tmp_path: Path, chromium_path: str) -> None:
    records, summary, want, counts = await crawl_aqua(
        "browser",
        tmp_path,
        Settings(chromium_path=chromium_path),
        # A local server: the rate need not hold back a crawl bound by the browser anyway.
        overrides=("politeness.requests_per_second=200", "politeness.burst=20"),
    )
    assert len(records) == len(want)
    for got, wanted in zip(records, want, strict=True):
        assert got == wanted, got["url"]
    assert {k: summary[k] for k in SUMMARY_KEYS} == {k: counts[k] for k in SUMMARY_KEYS}

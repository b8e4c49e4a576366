"""The JavaScript-heavy benchmark site and bench.browser's report, without a browser: the
site is deterministic, every page is reachable from /index.html through the links its
script renders, a crawler that did not run the scripts is caught, and the table reads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from bench import browser, docsite, jssite


@pytest.fixture
def site_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "site"
    monkeypatch.setattr(docsite, "SITE_ROOT", root)
    return root


def _links(root: Path, path: str, index: int) -> set[str]:
    """The same-site pages page ``index`` links to, as its script would render them."""
    text = (root / "data" / f"{index}.js").read_text()
    data = json.loads(text.removeprefix("window.__DATA__=").rstrip().removesuffix(";"))
    hrefs = [c[0] for c in data["crumbs"]] + [r[0] for r in data["related"]] + [data["next"][0]]
    hrefs += [p["link"][0] for s in data["sections"] for p in s["paras"] if "link" in p]
    base = f"http://site{path}"
    return {urlsplit(urldefrag(urljoin(base, h))[0]).path for h in hrefs}


def test_every_page_is_reachable_and_needs_javascript(site_root: Path) -> None:
    site = jssite.generate(60)
    paths = site.paths()
    assert len(paths) == 60 and paths[0] == "/index.html"
    index_of = {p: i for i, p in enumerate(paths)}
    seen, todo = {"/index.html"}, ["/index.html"]
    while todo:
        path = todo.pop()
        for link in _links(site.root, path, index_of[path]) - seen:
            assert link in index_of, link
            seen.add(link)
            todo.append(link)
    assert seen == set(paths)
    shell = (site.root / "index.html").read_text()
    assert "<title>Loading...</title>" in shell and "<a " not in shell
    titles = jssite.titles(site)
    assert set(titles) == set(paths) and "Loading..." not in titles.values()
    # What the nodes never see is there for the browser to fetch.
    assert (site.root / "assets" / "img" / "hero.png").read_bytes().startswith(b"\x89PNG")
    assert (site.root / "assets" / "fonts" / "sans.woff2").stat().st_size > 0
    assert len((site.root / "assets" / "vendor.js").read_bytes()) > 100_000


def test_the_site_is_the_same_every_time(site_root: Path, tmp_path: Path) -> None:
    first = jssite.generate(30)
    data = (first.root / "data" / "7.js").read_bytes()
    again = jssite.generate(30, name="js-30-again")
    assert (again.root / "data" / "7.js").read_bytes() == data
    assert again.total_links == first.total_links


def test_a_crawl_that_read_the_shell_is_caught(site_root: Path) -> None:
    site = jssite.generate(10)
    titles = jssite.titles(site)
    base = "http://127.0.0.1:1"
    good = [(base + p, t) for p, t in titles.items()]
    assert browser.wrong_titles(good, titles) == []
    shell = [(base + p, "Loading...") for p in titles]
    assert browser.wrong_titles(shell, titles) == sorted(titles)


def _run(name: str, round_no: int, pps: float, cpu: float, pss: float) -> dict[str, Any]:
    return {
        "crawler": name,
        "round": round_no,
        "valid": True,
        "invalid_because": None,
        "pages_per_s": pps,
        "cpu_ms_per_page": cpu,
        "peak_pss_mb": pss,
        "peak_rss_mb": pss * 2,
    }


def test_the_report_compares_trawl_with_each_peer() -> None:
    runs = [
        _run("trawl-browser", 1, 8.0, 100.0, 500.0),
        _run("playwright-loop", 1, 4.0, 200.0, 1000.0),
        _run("trawl-browser", 2, 10.0, 120.0, 600.0),
        {**_run("playwright-loop", 2, 9.0, 90.0, 900.0), "valid": False, "invalid_because": "x"},
    ]
    summary = browser.summarize(runs, ["trawl-browser", "playwright-loop"])
    trawl, loop = summary
    assert (trawl["pages_per_s"], trawl["valid_runs"]) == (9.0, 2)
    assert (loop["trawl_speed_x"], loop["trawl_cpu_x"], loop["trawl_pss_x"]) == (2.25, 0.55, 0.55)
    meta = {
        "started_at": "2026-12-07T00:00:00Z",
        "site": {"pages": 300, "links_per_page": 25},
        "server": "nginx",
        "concurrency": 8,
        "chromium": "Chromium 1",
        "cpus": 2,
        "loadavg_start": 1.0,
        "runs": 2,
        "command": "python -m bench.browser",
    }
    table = browser.markdown({"meta": meta, "summary": summary, "runs": runs})
    row = next(line for line in table.splitlines() if line.startswith("| playwright-loop"))
    assert re.sub(r"\s+", " ", row) == (
        "| playwright-loop | 1/2 | 4.00 | 4.00-4.00 | 200 | 200-200 | 1000 | 2000 | "
        "2.25 | 0.55 | 0.55 |"
    )
    assert "- playwright-loop round 2: x" in table

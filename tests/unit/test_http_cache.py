"""The HTTP cache for writing workflows: ``trawl run --cache DIR``, ``trawl preview --cache``.

A first run against a local site fills DIR; a second one with the same DIR gives the same
records without a single request to the site (robots.txt included). A corrupt entry is a
miss, never a crash; expired, oversized, live (script phase) and credential-only
differences behave as docs/cli.md says.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from backends.clock import FakeClock
from backends.errors import PermanentError
from backends.fetcher import FetchRequest
from tests.claims_site import PagesSite, page
from trawl.cli import main
from trawl.local_outputs import execution_dir, exported_records
from worker.fetchers.cache import CachingFetcher, HttpCache
from worker.fetchers.http import HttpFetcher

RUN_FIELDS = ("execution_id", "fetched_at")

WORKFLOW = """\
name: cache-test
start_urls: ["{start}"]
engine: http
max_depth: 2
politeness: {{requests_per_second: 5, burst: 1, max_concurrency_per_host: 2}}
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
      - {{type: extract_links}}
"""


@pytest.fixture
def site() -> Iterator[PagesSite]:
    with PagesSite() as server:
        server.texts["/robots.txt"] = "User-agent: *\nDisallow: /private\n"
        server.pages["/"] = page("Home", *(("l", f"/p/{n}") for n in range(1, 5)))
        for n in range(1, 5):
            server.pages[f"/p/{n}"] = page(f"Page {n}", ("l", "/"), ("l", "/private"))
        server.pages["/private"] = page("Private")
        yield server


def run(workflow: Path, out: Path, cache: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["run", str(workflow), "--out", str(out), "--cache", str(cache)]) == 0
    return capsys.readouterr().err


def records(out: Path) -> list[dict[str, Any]]:
    rows = exported_records(execution_dir(str(out)))
    return [{k: v for k, v in r.items() if k not in RUN_FIELDS} for r in rows]


def test_a_second_run_is_served_from_the_cache_without_a_request(
    site: PagesSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(WORKFLOW.format(start=site.url("/")), encoding="utf-8")
    cache = tmp_path / "cache"

    first = run(workflow, tmp_path / "one", cache, capsys)
    asked = site.total_requests()
    assert asked == 6  # robots.txt and five pages; /private is disallowed
    assert "cache: 0 hits, 6 misses" in first, first

    second = run(workflow, tmp_path / "two", cache, capsys)

    assert site.total_requests() == asked  # not one request more
    assert "cache: 6 hits, 0 misses" in second, second
    assert records(tmp_path / "two") == records(tmp_path / "one")
    assert len(records(tmp_path / "two")) == 5

    # A corrupt entry is a miss: that page is fetched again and written over.
    entries = sorted(cache.glob("*/*.json"))
    assert len(entries) == 6
    (home,) = [e for e in entries if json.loads(e.read_bytes())["final_url"] == site.url("/")]
    home.write_bytes(b'{"format": 1, "html": "trunc')

    third = run(workflow, tmp_path / "three", cache, capsys)

    assert site.total_requests() == asked + 1
    assert site.count("/") == 2
    assert "cache: 5 hits, 1 misses, 1 unreadable entries replaced" in third, third
    assert records(tmp_path / "three") == records(tmp_path / "one")
    assert json.loads(home.read_bytes())["final_url"] == site.url("/")


def test_preview_with_the_cache_needs_no_site_the_second_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    workflow = tmp_path / "wf.yaml"
    with PagesSite() as server:
        server.pages["/"] = page("Home", ("l", "/a"))
        workflow.write_text(WORKFLOW.format(start=server.url("/")), encoding="utf-8")
        argv = ["preview", str(workflow), server.url("/"), "--cache", str(cache)]
        assert main(argv) == 0
        first = capsys.readouterr()
        assert "cache: 0 hits, 1 misses" in first.err
    # The site is gone: the page comes from the cache.
    assert main(argv) == 0
    second = capsys.readouterr()
    assert "cache: 1 hits, 0 misses" in second.err
    assert json.loads(second.out) == json.loads(first.out)
    assert json.loads(second.out)["record"] == {"title": "Home"}


def test_cache_arguments_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workflow = tmp_path / "wf.yaml"
    workflow.write_text(WORKFLOW.format(start="http://127.0.0.1:9/"), encoding="utf-8")
    assert main(["run", str(workflow), "--cache-ttl", "60"]) == 2
    assert "--cache-ttl needs --cache DIR" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert main(["run", str(workflow), "--cache", str(blocker)]) == 2
    assert f"--cache {blocker}: cannot use it as a directory" in capsys.readouterr().err


# -- the fetcher over a live site


@pytest.fixture
async def http() -> AsyncIterator[HttpFetcher]:
    fetcher = HttpFetcher()
    await fetcher.start()
    yield fetcher
    await fetcher.close()


async def fetch(fetcher: CachingFetcher, request: FetchRequest) -> str:
    async with fetcher.open(request) as got:
        return got.html


async def test_what_is_served_from_the_cache_and_what_is_not(
    http: HttpFetcher, tmp_path: Path
) -> None:
    clock = FakeClock()
    cache = HttpCache(tmp_path, ttl_s=60, clock=clock, private_headers=["X-Tenant-Token"])
    cached = cache.fetcher(http, "http")
    with PagesSite({"/": page("Home")}) as server:
        base = FetchRequest(url=server.url("/"), user_agent="ua-1")
        assert await cached.stored(base) is False
        await fetch(cached, base)
        assert server.count("/") == 1
        assert await cached.stored(base) is True

        # Credentials and secret headers are not part of the key, nor stored.
        secret = dataclasses.replace(
            base, headers={"Authorization": "Bearer s3cr3t", "X-Tenant-Token": "t0k3n"}
        )
        assert "Home" in await fetch(cached, secret)
        assert server.count("/") == 1
        stored = b"".join(p.read_bytes() for p in sorted(tmp_path.glob("*/*.json")))  # noqa: ASYNC240
        assert b"s3cr3t" not in stored and b"t0k3n" not in stored

        # What changes the answer is: another user agent, another header.
        await fetch(cached, dataclasses.replace(base, user_agent="ua-2"))
        await fetch(cached, dataclasses.replace(base, headers={"Accept-Language": "de"}))
        assert server.count("/") == 3

        # A phase with script nodes needs the live page: always fetched.
        live = dataclasses.replace(base, live=True)
        assert await cached.stored(live) is False
        await fetch(cached, live)
        # An entry larger than this request allows is a miss, fetched again (and too big).
        with pytest.raises(PermanentError, match="larger than"):
            await fetch(cached, dataclasses.replace(base, max_body_bytes=10))
        assert server.count("/") == 5

        # Past the TTL an entry is fetched again.
        clock.advance(61)
        await fetch(cached, base)
        assert server.count("/") == 6

    assert (cache.stats.hits, cache.stats.bypassed) == (1, 1)

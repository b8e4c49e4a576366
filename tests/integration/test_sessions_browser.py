"""Sessions on the browser engine, in real headless Chromium: the login-protected site
(tests/login_site.py) crawled logged in, after a form login (its cookies put into the
execution's browser contexts) and after a script login (run in a context of its own, its
HttpOnly cookie taken out). The password never reaches an output file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from backends.fetcher import Fetcher
from tests.login_site import PASSWORD, USER, LoginSite
from tests.unit.test_sessions import every_byte_under, form_login, private_workflow, titles
from trawl.embedded import RunResult, run_embedded
from worker.engines import open_robots
from worker.fetchers.browser import BrowserFetcher
from worker.fetchers.http import HttpFetcher
from worker.robots import RobotsCache

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]

DEADLINE_S = 60.0
SCRIPT = f"""async (secrets) => {{
  document.querySelector('#user').value = {USER!r};
  document.querySelector('#password').value = secrets.PASS;
  document.querySelector('form').submit();
}}"""


@pytest.fixture
def login_site() -> Iterator[LoginSite]:
    with LoginSite(size=6) as site:
        yield site


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engines(
    browser_fetcher: BrowserFetcher,
) -> AsyncIterator[tuple[dict[str, Fetcher], RobotsCache]]:
    """One Chromium for the module's crawls (a launch costs seconds), and the http engine."""
    http = HttpFetcher()
    await http.start()
    try:
        async with open_robots() as robots:
            yield {"http": http, "browser": browser_fetcher}, robots
    finally:
        await http.close()


async def crawl(
    engines: tuple[dict[str, Fetcher], RobotsCache], workflow: Any, out: Path
) -> RunResult:
    fetchers, robots = engines
    async with asyncio.timeout(DEADLINE_S):
        return await run_embedded(
            workflow,
            out_dir=out,
            fetchers=fetchers,
            robots=robots,
            concurrency=3,
            progress_interval_s=0.1,
            secrets={"PASS": PASSWORD},
        )


async def test_a_form_login_carries_its_cookie_into_the_browser_engine(
    engines: tuple[dict[str, Fetcher], RobotsCache], login_site: LoginSite, tmp_path: Path
) -> None:
    workflow = private_workflow(login_site, engine="browser")

    result = await crawl(engines, workflow, tmp_path)

    assert result.execution.status == "completed"
    assert titles(tmp_path, result.execution.id) == {str(n): f"Private {n}" for n in range(6)}
    assert login_site.logins() == 1
    assert [s.method for s in login_site.requests("/login")] == ["POST"]
    assert all(s.cookie.startswith("sid=") for s in login_site.requests("/private/"))
    assert PASSWORD.encode() not in every_byte_under(tmp_path)


async def test_a_script_login_runs_in_the_browser_and_both_engines_carry_its_cookie(
    engines: tuple[dict[str, Fetcher], RobotsCache], login_site: LoginSite, tmp_path: Path
) -> None:
    login = {
        "url": login_site.url("/login"),
        "script": SCRIPT,
        "secrets": ["PASS"],
        "success_selector": "#logged-in",
        "timeout_s": 15,
    }
    # The start page in the browser, the pages it links to over plain http: the script's
    # HttpOnly cookie goes to both.
    workflow = private_workflow(
        login_site,
        login=login,
        engine="browser",
        phases=[
            {
                "name": "start",
                "nodes": [
                    {"type": "extract", "fields": {"title": "h1"}},
                    {"type": "extract_links", "marker": "next"},
                ],
                "transitions": [{"when": {"marker": "next"}, "to": "page"}],
            },
            {
                "name": "page",
                "engine": "http",
                "nodes": [
                    {"type": "extract", "fields": {"title": "h1"}},
                    {"type": "extract_links"},
                ],
            },
        ],
    )

    result = await crawl(engines, workflow, tmp_path)

    assert result.execution.status == "completed"
    assert titles(tmp_path, result.execution.id) == {str(n): f"Private {n}" for n in range(6)}
    assert login_site.logins() == 1
    (post,) = [s for s in login_site.requests("/login") if s.method == "POST"]
    assert post.form == {"user": USER, "password": PASSWORD}  # typed in by the script
    crawled = login_site.requests("/private/")[1:]  # after the login's own landing page
    assert len(crawled) == 6 and all(s.cookie.startswith("sid=") for s in crawled)
    assert PASSWORD.encode() not in every_byte_under(tmp_path)


async def test_a_script_login_that_does_not_reach_the_selector_fails_with_login_failed(
    engines: tuple[dict[str, Fetcher], RobotsCache], login_site: LoginSite, tmp_path: Path
) -> None:
    login = {**form_login(login_site), "timeout_s": 2}
    del login["form"]
    login.update(script=SCRIPT.replace("secrets.PASS", "'wrong'"), secrets=[])
    workflow = private_workflow(login_site, login=login, engine="browser")

    result = await crawl(engines, workflow, tmp_path)

    assert result.progress.failures_by_class == {"login_failed": 1}
    failures = (tmp_path / result.execution.id / "export" / "failures.jsonl").read_text()
    assert "does not match success_selector '#logged-in'" in failures
    assert login_site.logins() == 0
    assert login_site.requests("/private/") == []

"""The browser engine through proxies: Chromium gets the workflow's proxy per browser
context, logs in to it with the credentials of a secret, and leaves a banned one aside,
as the http engine does (tests/unit/test_proxy_crawl.py has the rest)."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import pytest

from tests.proxy_lab import AUTH_PASSWORD, proxy_lab
from tests.proxying import assert_nowhere, everything_written, titles, workflow
from trawl.embedded import open_fetchers, run_embedded
from trawl.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.browser]

PAGES = 5


async def test_chromium_crawls_through_a_proxy_that_wants_credentials(
    chromium_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with proxy_lab(("banned", "ban"), ("login", "auth"), pages=PAGES) as lab:
        banned, login = lab.proxies["banned"], lab.proxies["login"]
        wf = workflow(
            lab,
            {"urls": [banned.url(), f"http://crawler:${{secret:PROXY_PASSWORD}}@{login.address}"]},
            engine="browser",
        )
        async with (
            asyncio.timeout(120),
            open_fetchers(wf, Settings(chromium_path=chromium_path)) as (fetchers, robots),
        ):
            result = await run_embedded(
                wf,
                out_dir=tmp_path,
                fetchers=fetchers,
                robots=robots,
                concurrency=4,
                secrets={"PROXY_PASSWORD": AUTH_PASSWORD},
            )
        # Every page through the proxy that logs in (Chromium answers its 407 challenge with
        # the secret's credentials, so it may have asked once per context), none straight.
        assert lab.vias() == Counter({"login": PAGES})
        assert set(login.answered) <= {407}
        assert banned.answered == Counter({403: 1}) and banned.forwarded == 0
    assert result.execution.status == "completed"
    assert sorted(titles(tmp_path, result.execution.id).values()) == [
        f"Page {i}" for i in range(PAGES)
    ]
    assert f"proxy {banned.address} banned (HTTP 403)" in caplog.text
    assert_nowhere(AUTH_PASSWORD, everything_written(tmp_path), caplog.text)

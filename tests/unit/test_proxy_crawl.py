"""Crawls through proxies, as users see them: ``trawl run`` through a banned and a working
proxy, a proxy that wants credentials from a secret, a provider's list, a CAPTCHA page, and
a page every proxy is banned for. The proxies and the site are the real thing on 127.0.0.1
(tests/proxy_lab.py); each counts what reached it.

The password of the proxy that wants one is looked for in every file a run writes and in
everything it logs: it must be nowhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections import Counter
from pathlib import Path

import msgspec
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.proxy_lab import AUTH_PASSWORD, proxy_lab
from tests.proxying import assert_nowhere, everything_written, titles, workflow
from trawl.cli import main
from trawl.embedded import RunResult, open_fetchers, run_embedded
from trawl.settings import Settings
from worker.telemetry import Telemetry
from workflows import Workflow

PAGES = 15


async def crawl(
    wf: Workflow,
    out_dir: Path,
    secrets: dict[str, str] | None = None,
    telemetry: Telemetry | None = None,
) -> RunResult:
    """What ``trawl run`` does, with ``secrets`` as its environment would give them."""
    async with asyncio.timeout(60), open_fetchers(wf, Settings()) as (fetchers, robots):
        return await run_embedded(
            wf,
            out_dir=out_dir,
            fetchers=fetchers,
            robots=robots,
            concurrency=8,
            secrets=secrets,
            telemetry=telemetry,
        )


def pages_by_error(reader: InMemoryMetricReader) -> Counter[str]:
    """trawl.pages of failed pages by their error.type."""
    counts: Counter[str] = Counter()
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "trawl.pages":
                    for point in metric.data.data_points:
                        if point.attributes.get("trawl.outcome") == "failed":
                            counts[str(point.attributes.get("error.type"))] += int(point.value)
    return counts


def proxy_counts(reader: InMemoryMetricReader) -> Counter[tuple[str, str]]:
    """trawl.proxy.requests by (proxy, outcome)."""
    counts: Counter[tuple[str, str]] = Counter()
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "trawl.proxy.requests":
                    for point in metric.data.data_points:
                        attrs = point.attributes
                        counts[(str(attrs["trawl.proxy"]), str(attrs["trawl.outcome"]))] += int(
                            point.value
                        )
    return counts


def test_trawl_run_goes_around_a_banned_proxy_with_credentials_from_a_secret(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TRAWL_SECRET_PROXY_PASSWORD", AUTH_PASSWORD)
    out = tmp_path / "out"
    with proxy_lab(("banned", "ban"), ("login", "auth"), pages=PAGES) as lab:
        banned, login = lab.proxies["banned"], lab.proxies["login"]
        proxied = f"http://crawler:${{secret:PROXY_PASSWORD}}@{login.address}"
        path = tmp_path / "wf.json"
        path.write_bytes(msgspec.json.encode(workflow(lab, {"urls": [banned.url(), proxied]})))

        assert main(["run", str(path), "--out", str(out)]) == 0

        # Every page, each fetched once through the proxy that logs in, none straight.
        assert lab.vias() == Counter({"login": PAGES})
        assert login.forwarded == PAGES and login.answered == Counter()
        # The banned proxy was tried once, answered 403 itself and was set aside.
        assert (banned.forwarded, banned.answered) == (0, Counter({403: 1}))
    captured = capsys.readouterr()
    assert "crawl completed" in captured.err
    # The run's summary names each proxy by host and port with its health.
    assert f"{banned.address} banned 1 (resting)" in captured.err
    assert f"{login.address} ok {PAGES}" in captured.err
    [run] = [p for p in out.iterdir() if p.is_dir()]
    assert sorted(titles(out, run.name).values()) == sorted(f"Page {i}" for i in range(PAGES))
    summary = json.loads(next(run.rglob("summary.json")).read_text())
    assert summary["pages"]["succeeded"] == PAGES and summary["failures_by_class"] == {}
    assert f"proxy {banned.address} banned (HTTP 403)" in caplog.text
    assert_nowhere(AUTH_PASSWORD, everything_written(tmp_path), caplog.text, *captured)


async def test_proxy_health_is_counted_by_host_and_port(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    telemetry = Telemetry.create(meter_provider=MeterProvider(metric_readers=[reader]))
    with socket.socket() as closed:  # a port nothing listens on: a dead proxy
        closed.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{closed.getsockname()[1]}"
    with proxy_lab(("banned", "ban"), ("good", "open"), pages=PAGES) as lab:
        banned, good = lab.proxies["banned"], lab.proxies["good"]
        wf = workflow(lab, {"urls": [banned.url(), f"http://{dead}", good.url()]})
        result = await crawl(wf, tmp_path, telemetry=telemetry)
    assert result.execution.status == "completed"
    assert result.progress.pages()["succeeded"] == PAGES
    # The first page: banned through the first proxy, refused by the second (both then
    # rest), fetched through the third on its third try; every other page through it.
    assert proxy_counts(reader) == Counter(
        {(banned.address, "banned"): 1, (dead, "failed"): 1, (good.address, "ok"): PAGES}
    )


async def test_a_page_banned_through_every_proxy_fails_as_proxy_banned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-" + AUTH_PASSWORD
    with proxy_lab(("login", "auth"), pages=PAGES) as lab:
        login = lab.proxies["login"]
        wf = workflow(
            lab,
            {
                "urls": [f"http://crawler:${{secret:PROXY_PASSWORD}}@{login.address}"],
                "ban": {"cooldown_s": 0.05},
            },
            retries={"max_attempts": 2, "backoff_s": 0},
        )
        reader = InMemoryMetricReader()
        telemetry = Telemetry.create(meter_provider=MeterProvider(metric_readers=[reader]))
        result = await crawl(wf, tmp_path, {"PROXY_PASSWORD": wrong}, telemetry)
        # Tried twice (the second time once the proxy was back), never passed on.
        assert login.answered == Counter({407: 2}) and login.forwarded == 0
    assert result.execution.status == "completed"
    assert result.progress.failures_by_class == {"proxy_banned": 1}
    [failure] = [
        json.loads(line)
        for line in (tmp_path / result.execution.id / "export" / "failures.jsonl")
        .read_text()
        .splitlines()
    ]
    assert failure["error_class"] == "proxy_banned"
    # The pages counter says by which class pages failed (the dashboards group by it).
    assert pages_by_error(reader) == Counter({"proxy_banned": 1})
    assert failure["message"] == (
        f"{lab.url('/p/0')}: proxy {login.address} is banned (HTTP 407); the page is tried "
        "again through another proxy"
    )
    assert_nowhere(wrong, everything_written(tmp_path), caplog.text, *capsys.readouterr())


async def test_a_provider_list_and_a_captcha_selector(tmp_path: Path) -> None:
    with proxy_lab(("captcha", "captcha"), ("good", "open"), pages=PAGES) as lab:
        captcha, good = lab.proxies["captcha"], lab.proxies["good"]
        lab.provider_key = "k3y-from-a-secret"
        lab.provider_list = f"# today's proxies\n{captcha.address}\n{good.url()}\n"
        wf = workflow(
            lab,
            {
                "provider_url": lab.url("/proxies.txt?key=${secret:PROVIDER_KEY}"),
                "ban": {"selector": "#captcha"},
            },
        )
        result = await crawl(wf, tmp_path, {"PROVIDER_KEY": lab.provider_key})
        assert lab.provider_calls == 1
        assert lab.vias() == Counter({"good": PAGES})
        assert captcha.answered == Counter({200: 1})
    assert result.execution.status == "completed"
    assert len(titles(tmp_path, result.execution.id)) == PAGES
    assert_nowhere(lab.provider_key, everything_written(tmp_path))

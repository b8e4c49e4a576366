"""Sessions as a user sees them: a login-protected site (tests/login_site.py) crawled with
its password from a secret, embedded (``trawl run``) and by two distributed workers over
the memory adapters; the fixed headers and cookies of a workflow, and where they go; a
login that fails, and one the site drops. The password never reaches a file or a log."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from backends.clock import SystemClock
from backends.memory import MemoryStateStore, MemoryTaskQueue
from backends.queue import Delivery, TaskQueue
from backends.state import Execution
from backends.task import Task
from tests.crawling import FAST_POLITENESS
from tests.login_site import PASSWORD, USER, LoginSite
from tests.unit.test_worker_function import memory_ports
from trawl.cli import main
from trawl.embedded import RunResult, open_fetchers, run_embedded
from trawl.local_outputs import exported_records
from trawl.settings import Settings
from worker.context import ExecutionContext
from worker.endings import HandBack
from worker.engines import Engines, open_engines
from worker.netguard import NetGuard
from worker.runtime import Worker, WorkerOptions, run_until_idle
from worker.secrets import SecretsMissing
from worker.session import Sessions
from worker.start import start_execution, store_workflow
from workflows import Workflow, validate_data

DEADLINE_S = 60.0
SECRETS = {"PASS": PASSWORD}


@pytest.fixture
def login_site() -> Iterator[LoginSite]:
    with LoginSite(size=8) as site:
        yield site


def form_login(site: LoginSite) -> dict[str, Any]:
    return {
        "url": site.url("/login"),
        "form": {"user": USER, "password": "${secret:PASS}"},
        "success_selector": "#logged-in",
        "timeout_s": 10,
    }


def private_workflow(site: LoginSite, **fields: Any) -> Workflow:
    data: dict[str, Any] = {
        "name": "private-crawl",
        "start_urls": [site.url("/private/0")],
        "engine": "http",
        "max_depth": 10,
        "scope": {"exclude": ["/login"]},
        "politeness": FAST_POLITENESS,
        "fetch": {"timeout_s": 10},
        "retries": {"max_attempts": 2, "backoff_s": 0.05},
        "login": form_login(site),
        "phases": [
            {
                "name": "page",
                "nodes": [
                    {"type": "extract", "fields": {"title": "h1"}},
                    {"type": "extract_links"},
                ],
            }
        ],
        **fields,
    }
    return validate_data(data)


async def crawl(
    workflow: Workflow, out: Path, secrets: dict[str, str] | None = None, concurrency: int = 4
) -> RunResult:
    async with (
        asyncio.timeout(DEADLINE_S),
        open_fetchers(workflow, Settings()) as (fetchers, robots),
    ):
        return await run_embedded(
            workflow,
            out_dir=out,
            fetchers=fetchers,
            robots=robots,
            concurrency=concurrency,
            progress_interval_s=0.1,
            secrets=SECRETS if secrets is None else secrets,
        )


def titles(out: Path, execution_id: str) -> dict[str, str]:
    return {
        r["url"].rsplit("/", 2)[-1]: r["data"]["title"]
        for r in exported_records(out / execution_id)
    }


def every_byte_under(root: Path) -> bytes:
    """Every file under ``root``, gzipped ones opened, as one blob to search."""
    blobs = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            blobs.append(gzip.decompress(data) if path.suffix == ".gz" else data)
    return b"\n".join(blobs)


def write_workflow(path: Path, site: LoginSite, *, password: str = "${secret:PASS}") -> Path:
    path.write_text(
        f"""\
name: private-cli
start_urls: ["{site.url("/private/0")}"]
engine: http
max_depth: 10
scope: {{exclude: ["/login"]}}
politeness: {{requests_per_second: 200, burst: 20, respect_robots_txt: false}}
retries: {{max_attempts: 2, backoff_s: 0.05}}
login:
  url: "{site.url("/login")}"
  form: {{user: {USER}, password: "{password}"}}
  success_selector: "#logged-in"
phases:
  - name: page
    nodes:
      - {{type: extract, fields: {{title: h1}}}}
      - {{type: extract_links}}
""",
        encoding="utf-8",
    )
    return path


# -- embedded: trawl run


def test_trawl_run_logs_in_with_the_secret_from_the_environment_and_gets_every_private_page(
    login_site: LoginSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TRAWL_SECRET_PASS", PASSWORD)
    workflow = write_workflow(tmp_path / "wf.yaml", login_site)
    out = tmp_path / "out"

    assert main(["run", str(workflow), "--out", str(out)]) == 0

    (run,) = [p for p in out.iterdir() if p.is_dir()]
    assert titles(out, run.name) == {str(n): f"Private {n}" for n in range(8)}
    posts = login_site.requests("/login")
    assert [(s.method, s.form) for s in posts] == [("POST", {"user": USER, "password": PASSWORD})]
    private = login_site.requests("/private/")
    # The login's redirect lands on /private/0 (with the new cookie), then the crawl.
    assert len(private) == 1 + 8
    assert all(s.cookie.startswith("sid=") for s in private)  # never logged out
    captured = capsys.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert PASSWORD not in text
    assert PASSWORD.encode() not in every_byte_under(out)


def test_trawl_run_without_the_secret_exits_2_naming_the_key_and_the_secret(
    login_site: LoginSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("TRAWL_SECRET_PASS", raising=False)
    workflow = write_workflow(tmp_path / "wf.yaml", login_site)

    assert main(["run", str(workflow), "--out", str(tmp_path / "out")]) == 2

    err = capsys.readouterr().err
    assert "login.form.password: secret 'PASS' is not set" in err
    assert "TRAWL_SECRET_<NAME>" in err
    assert login_site.requests() == []  # nothing was fetched
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_wrong_password_fails_every_page_with_login_failed_and_says_why(
    login_site: LoginSite,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "not-the-password-91ab"
    monkeypatch.setenv("TRAWL_SECRET_PASS", wrong)
    workflow = write_workflow(tmp_path / "wf.yaml", login_site)
    out = tmp_path / "out"

    assert main(["run", str(workflow), "--out", str(out)]) == 5  # every page failed

    err = capsys.readouterr().err
    assert "login_failed 1" in err
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    failures = (run / "export" / "failures.jsonl").read_text(encoding="utf-8")
    assert '"error_class":"login_failed"' in failures.replace(" ", "")
    assert "does not match success_selector '#logged-in'" in failures
    assert len(login_site.requests("/login")) == 1  # one login, not one per try
    assert login_site.requests("/private/") == []  # no logged-out page was crawled
    assert wrong not in err
    assert wrong.encode() not in every_byte_under(out)


# -- embedded: what is sent, and where


async def test_fixed_headers_and_cookies_go_with_every_request_and_never_to_another_host(
    login_site: LoginSite, tmp_path: Path
) -> None:
    site = login_site
    workflow = validate_data(
        {
            "name": "headers-crawl",
            "start_urls": [site.url("/echo"), site.url("/hop")],
            "engine": "http",
            "politeness": FAST_POLITENESS,
            "fetch": {
                "headers": {
                    "Authorization": "Bearer ${secret:TOKEN}",
                    "X-Api-Key": "${secret:KEY}",
                },
                "cookies": {"consent": "yes", "sid": "${secret:SID}"},
            },
            "phases": [{"name": "page", "nodes": [{"type": "extract", "fields": {"t": "h1"}}]}],
        }
    )
    secrets = {"TOKEN": "tok-6d1e", "SID": "cookie-5b9a", "KEY": "key-0c4f"}

    result = await crawl(workflow, tmp_path, secrets)

    assert result.execution.status == "completed"
    on_site = [s for s in site.requests("/echo") if s.host.startswith("127.0.0.1")]
    sent = ("Bearer tok-6d1e", "key-0c4f", "consent=yes; sid=cookie-5b9a")
    assert [(s.authorization, s.api_key, s.cookie) for s in on_site] == [sent]
    (hop,) = site.requests("/hop")
    assert (hop.authorization, hop.api_key, hop.cookie) == sent
    # /hop redirects to another host (localhost): neither the headers nor the cookies
    # follow it there.
    (elsewhere,) = [s for s in site.requests("/echo") if s.host.startswith("localhost")]
    assert (elsewhere.authorization, elsewhere.api_key, elsewhere.cookie) == ("", "", "")
    assert b"tok-6d1e" not in every_byte_under(tmp_path)


async def test_a_start_naming_a_missing_secret_is_refused_before_anything_is_written(
    login_site: LoginSite, tmp_path: Path
) -> None:
    with pytest.raises(SecretsMissing) as refused:
        await crawl(private_workflow(login_site), tmp_path, secrets={})
    assert [str(p) for p in refused.value.problems] == [
        "login.form.password: secret 'PASS' is not set"
    ]
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's own temporary folder
    assert login_site.requests() == []


async def test_a_session_the_site_drops_is_renewed_once_and_the_crawl_goes_on(
    tmp_path: Path,
) -> None:
    with LoginSite(size=8, session_pages=5) as site:
        result = await crawl(private_workflow(site), tmp_path, concurrency=1)
        assert result.execution.status == "completed"
        assert titles(tmp_path, result.execution.id) == {str(n): f"Private {n}" for n in range(8)}
        assert site.logins() == 2
        assert result.progress.pages()["failed"] == 0


async def test_a_site_that_keeps_dropping_the_session_fails_its_pages_with_login_failed(
    tmp_path: Path,
) -> None:
    with LoginSite(size=8, session_pages=1) as site:
        result = await crawl(private_workflow(site), tmp_path, concurrency=1)
        assert site.logins() == 2  # the first login and one more, never a third
    progress = result.progress
    assert progress.failures_by_class == {"login_failed": progress.pages()["failed"]}
    assert progress.pages()["failed"] >= 1
    failures = (tmp_path / result.execution.id / "export" / "failures.jsonl").read_text()
    assert "led to the login page although the crawl logged in again" in failures


# -- distributed: two workers, one login


class FirstTasksOnly(TaskQueue):
    """The shared queue as one worker sees it: it receives ``limit`` tasks, then none (it
    still publishes, acks and nacks through the shared queue)."""

    def __init__(self, inner: MemoryTaskQueue, limit: int) -> None:
        self.inner = inner
        self.left = limit

    async def publish(self, tasks: Sequence[Task]) -> None:
        await self.inner.publish(tasks)

    async def receive(self) -> Delivery:
        if self.left <= 0:
            await asyncio.Event().wait()  # nothing more for this worker
        self.left -= 1
        return await self.inner.receive()

    async def close(self) -> None:
        return None


@pytest.fixture
async def engines() -> AsyncIterator[Engines]:
    async with open_engines(NetGuard.allow_all()) as opened:
        yield opened


async def test_the_second_worker_uses_the_session_the_first_stored(
    login_site: LoginSite, engines: Engines, tmp_path: Path
) -> None:
    ports = memory_ports(tmp_path)
    assert isinstance(ports.queue, MemoryTaskQueue)
    await ports.state.put_secret("acme", "PASS", PASSWORD)
    workflow = private_workflow(login_site)
    version = await store_workflow(ports.state, "acme", workflow)
    execution = await start_execution(ports, workflow, tenant="acme", version=version)

    # Worker 1 takes the start URL only: it logs in, crawls it, stores the session.
    first_ports = dataclasses.replace(ports, queue=FirstTasksOnly(ports.queue, 1))
    first = Worker(
        first_ports,
        fetchers=engines.fetchers,
        robots=engines.robots,
        options=WorkerOptions(worker_id="w1", concurrency=1),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(first.run(stop))
    async with asyncio.timeout(DEADLINE_S):
        while (await ports.state.progress(execution.id)).finished < 1:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    stop.set()
    await running
    stored = await ports.state.get_session(execution.id)
    assert stored is not None and stored.error is None
    assert [c.name for c in stored.cookies] == ["sid"]

    # Worker 2, a process of its own (its own contexts), crawls the rest with that session.
    async with asyncio.timeout(DEADLINE_S):
        await run_until_idle(
            ports,
            fetchers=engines.fetchers,
            robots=engines.robots,
            options=WorkerOptions(worker_id="w2", concurrency=4),
        )

    final = await ports.state.get_execution(execution.id)
    assert final is not None and final.status == "completed"
    assert titles(tmp_path, execution.id) == {str(n): f"Private {n}" for n in range(8)}
    assert login_site.logins() == 1  # worker 2 did not log in again
    parts = [p.path for p in await ports.blobs.list(f"{execution.id}/parts/")]
    assert any("part-w1-" in p for p in parts) and any("part-w2-" in p for p in parts)
    assert all(
        s.cookie == f"sid={stored.cookies[0].value}" for s in login_site.requests("/private/")
    )
    assert PASSWORD.encode() not in every_byte_under(tmp_path)


async def test_of_two_workers_needing_the_session_at_once_one_logs_in_and_one_waits(
    login_site: LoginSite, engines: Engines
) -> None:
    state = MemoryStateStore()
    workflow = private_workflow(login_site)
    execution = Execution(
        id="e-race", workflow=workflow.name, workflow_version=1, created_at=SystemClock().wall()
    )
    contexts = [ExecutionContext.build(execution, workflow) for _ in range(2)]
    for ctx in contexts:
        ctx.secrets = SECRETS
    workers = [Sessions(state, engines.fetchers, SystemClock()) for _ in range(2)]

    first, second = await asyncio.gather(
        workers[0].ensure(contexts[0]), workers[1].ensure(contexts[1]), return_exceptions=True
    )

    assert first is None  # it took the claim and logged in
    assert isinstance(second, HandBack)  # its task goes back to the queue, untried
    assert login_site.logins() == 1
    await workers[1].ensure(contexts[1])  # when the task comes back: the stored session
    assert contexts[1].session == contexts[0].session == await state.get_session("e-race")
    assert login_site.logins() == 1


async def test_a_login_that_fails_for_a_passing_reason_is_tried_again_with_the_page(
    tmp_path: Path,
) -> None:
    with LoginSite(size=4, failing_logins=1) as site:
        result = await crawl(private_workflow(site), tmp_path, concurrency=1)
        assert result.execution.status == "completed"
        assert result.progress.pages()["succeeded"] == 4
        assert [s.method for s in site.requests("/login")] == ["POST", "POST"]  # 503, then in
        assert site.logins() == 1

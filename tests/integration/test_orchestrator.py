"""The orchestrator end to end, over the real services: a YAML workflow posted over HTTP,
started, crawled by two `trawl worker` processes, read back from the records endpoint; the
same records as `trawl run`. Then tenancy and a property-based run over the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from examples.aqua.generate import expected, expected_counts
from tests.cluster import ROOT, TRAWL, Cluster
from tests.integration.test_distributed import AQUA_HTTP, cluster, shop, without_run_fields
from tests.services import free_port
from tests.services.gcs import gcs_emulator
from tests.services.postgres import postgres_database, private_pgbouncer
from tests.services.pubsub import pubsub_emulator
from trawl.local_outputs import exported_records

__all__ = ["cluster", "gcs_emulator", "postgres_database", "private_pgbouncer", "shop"]
__all__ += ["pubsub_emulator"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SCHEMATHESIS = Path(TRAWL[0]).with_name("schemathesis")


class Orchestrator:
    def __init__(self, cluster: Cluster, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**cluster.env, "PORT": str(self.port), "TRAWL_MAX_RUNNING_EXECUTIONS": "3"}
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [*TRAWL, "orchestrator"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    async def wait_ready(self, http: aiohttp.ClientSession, deadline_s: float = 60) -> None:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"orchestrator exited\n{self.logs()}"
            try:
                async with http.get(f"{self.base}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await _tick()
        raise AssertionError(f"orchestrator not up after {deadline_s} s\n{self.logs()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


async def _tick() -> None:
    await asyncio.sleep(0.2)  # between polls of a condition that has its own deadline


@pytest.fixture
def orchestrator(cluster: Cluster, tmp_path: Path) -> Iterator[Orchestrator]:
    server = Orchestrator(cluster, tmp_path / "orchestrator.log")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def new_key(cluster: Cluster, tenant: str) -> dict[str, str]:
    done = cluster.run("keys", "create", "--tenant", tenant)
    assert done.returncode == 0, done.stderr
    assert "not shown again" in done.stderr
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


async def until_finished(
    http: aiohttp.ClientSession, server: Orchestrator, cluster: Cluster, url: str, auth: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while True:
        async with http.get(url, headers=auth) as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
        if body["status"] in ("completed", "failed", "cancelled"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"still {body}\n{server.logs()}\n{cluster.all_logs()}")
        await _tick()


def trawl_run(workflow: Path, base: str, out: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [*TRAWL, "run", str(workflow), "--out", str(out), "--set", f"start_urls=[{base}/]"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [manifest] = out.glob("*/export/manifest.json")
    return exported_records(manifest.parent.parent)


async def test_post_start_crawl_and_read_back_the_records(
    cluster: Cluster,
    orchestrator: Orchestrator,
    shop: tuple[Any, str],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    site, base = shop
    auth = new_key(cluster, "acme")
    await orchestrator.wait_ready(http)
    async with http.get(f"{orchestrator.base}/readyz") as response:
        assert response.status == 200, await response.text()
        checked = (await response.json())["checked"]
        assert checked == ["postgres", "redis", "pubsub", "gcs", "scheduler"]

    yaml_headers = auth | {"Content-Type": "application/yaml"}
    async with http.post(
        f"{orchestrator.base}/v1/workflows", data=AQUA_HTTP.read_bytes(), headers=yaml_headers
    ) as response:
        assert response.status == 201, await response.text()
        assert (await response.json())["name"] == "aqua-shop"
    start = {"set": [f"start_urls=[{base}/]"]}
    async with http.post(
        f"{orchestrator.base}/v1/workflows/aqua-shop/executions", json=start, headers=auth
    ) as response:
        assert response.status == 202, await response.text()
        execution_id = (await response.json())["id"]
    for _ in range(2):
        cluster.start_worker()

    url = f"{orchestrator.base}/v1/executions/{execution_id}"
    final = await until_finished(http, orchestrator, cluster, url, auth)
    assert final["status"] == "completed", final
    assert final["pages"]["finished"] == final["pages"]["published"] > 100
    assert final["pages_per_second"] > 0
    failures = expected_counts(site)["failures_by_class"]
    assert {e["error_class"]: e["count"] for e in final["top_errors"]} == failures

    async with http.get(f"{url}/records", headers=auth) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        served = [json.loads(line) for line in (await response.text()).splitlines() if line]
    embedded = await asyncio.to_thread(trawl_run, AQUA_HTTP, base, tmp_path / "embedded")
    assert len(served) == len(embedded)
    check_funnel(final, records=len(served))
    plain = without_run_fields(served)  # execution_id, fetched_at, parent_url differ per run
    assert plain == without_run_fields(embedded)
    assert plain == expected(site, base, "http")

    await check_csv(http, cluster, url, auth, records=len(served))
    async with http.get(f"{url}/outputs", headers=auth) as response:
        outputs = await response.json()
        kinds = {o["kind"] for o in outputs}
        assert {"export", "summary"} <= kinds
        export = next(o for o in outputs if o["kind"] == "export")
        assert export["records"] == len(served) and export["size_bytes"] > 0
    async with http.get(f"{url}/events", headers=auth) as response:
        text = await response.text()
        assert "event: progress" in text and "data: completed" in text

    await only_its_tenant_sees_it(http, cluster, orchestrator, url)
    assert cluster.stop_workers() == [0, 0]
    check_failure_commands(cluster, execution_id, failures)


def check_failure_commands(cluster: Cluster, execution_id: str, failures: dict[str, int]) -> None:
    listed = cluster.run("failures", "list", execution_id)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.strip() == f"{sum(failures.values())} failure(s)"
    for error_class in failures:
        assert error_class in listed.stdout
    replay = cluster.run("failures", "replay", execution_id)
    assert replay.returncode == 1
    assert "is completed: only a running execution's dead letters are replayed" in replay.stderr


async def check_csv(
    http: aiohttp.ClientSession, cluster: Cluster, url: str, auth: Any, records: int
) -> None:
    """The API's CSV export: a flattened header, a row per record, as `trawl export` has it."""
    async with http.get(f"{url}/records?format=csv", headers=auth) as response:
        assert response.status == 200
        csv_lines = (await response.text()).splitlines()
    header, *rows = csv_lines
    assert "data.name" in header.split(",")
    assert len(rows) == records
    execution_id = url.rsplit("/", 1)[-1]
    assert cluster.export(execution_id, "csv").splitlines() == csv_lines


def check_funnel(execution: dict[str, Any], records: int) -> None:
    funnel = {(row["phase"], row["marker"]): row for row in execution["funnel"]}
    products = funnel[("product", "product")]
    assert products["extracted"] == records
    stages = ("discovered", "in_scope", "new", "fetched", "extracted")
    counts = [products[stage] for stage in stages]
    assert counts == sorted(counts, reverse=True), products  # each stage keeps at most all


async def only_its_tenant_sees_it(
    http: aiohttp.ClientSession, cluster: Cluster, orchestrator: Orchestrator, url: str
) -> None:
    """Another tenant gets 404 for all of it; a bad key is a 401."""
    other = new_key(cluster, "globex")
    for path in ("", "/records", "/outputs"):
        async with http.get(f"{url}{path}", headers=other) as response:
            assert response.status == 404
    async with http.get(f"{orchestrator.base}/v1/workflows/aqua-shop", headers=other) as r:
        assert r.status == 404
    bad = {"Authorization": "Bearer trawl_not-a-key"}
    async with http.get(f"{orchestrator.base}/v1/workflows", headers=bad) as response:
        assert response.status == 401


SCHEMATHESIS_CONFIG = """
[[operations]]
include-name = [
  "POST /v1/workflows",
  "PUT /v1/workflows/{name}",
  "POST /v1/workflows/{name}/executions",
  "POST /v1/preview",
  "POST /v1/schedules",
  "PATCH /v1/schedules/{schedule_id}",
  "PUT /v1/secrets/{name}",
]
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "404", "409", "422", "429"]
"""


async def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    cluster: Cluster, orchestrator: Orchestrator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Every operation, fuzzed from the OpenAPI schema, against the real backends, with
    every check: what the schema calls valid is accepted. The one allowance: operations that
    take a workflow document, overrides or a secret's value (a raw body the document does not
    describe) may answer 422, since a document that fits the
    schema can still break rules no schema expresses (a selector's syntax, a transition to
    a phase that does not exist, a page that cannot be fetched); never 400."""
    auth = new_key(cluster, "fuzz")
    await orchestrator.wait_ready(http)
    (tmp_path / "schemathesis.toml").write_text(SCHEMATHESIS_CONFIG)
    done = await asyncio.to_thread(
        subprocess.run,
        [
            str(SCHEMATHESIS),
            "run",
            f"{orchestrator.base}/schema/openapi.json",
            "--header",
            f"Authorization:{auth['Authorization']}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            "30",
            "--seed",
            "7",
            "--workers",
            "1",  # with threads, Hypothesis's lambda-source cache trips over itself
            "--no-color",
            "--generation-database",
            "none",
            # An event stream lasts as long as its execution; the check needs its headers.
            "--request-timeout",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    report = done.stdout
    first_problem = min(
        (i for i in (report.find("= ERRORS ="), report.find("= FAILURES =")) if i >= 0),
        default=max(len(report) - 8000, 0),
    )
    assert done.returncode == 0, report[first_problem:][:12000] + done.stderr + orchestrator.logs()


def test_setup_prepares_every_backend_once(cluster: Cluster) -> None:
    """What compose's one-shot job runs: twice is harmless."""
    first = cluster.run("setup")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["postgres", "pubsub", "gcs"]
    again = cluster.run("setup")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == "postgres: up to date"

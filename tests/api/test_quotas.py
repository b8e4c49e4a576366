"""Per-key request rates and per-tenant preview and stream quotas: one tenant's traffic
cannot take the API from another."""

from __future__ import annotations

import asyncio
from pathlib import Path

from litestar.exceptions import TooManyRequestsException

from orchestrator.quotas import Quotas, StreamSlots, TenantGate
from orchestrator.services import Limits
from tests.api.memory_app import memory_api


async def test_a_key_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    quotas = Quotas(api_requests_per_s=0.5, api_burst=3)
    async with memory_api(tmp_path, limits=Limits(quotas=quotas)) as api:
        greedy, other = await api.key("acme"), await api.key("globex")
        statuses = [
            (await api.client.get("/v1/workflows", headers=greedy)).status_code for _ in range(6)
        ]
        assert statuses[:3] == [200, 200, 200]
        assert 429 in statuses[3:]
        refused = await api.client.get("/v1/workflows", headers=greedy)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        assert "this API key is over its request rate" in refused.json()["detail"]
        # Another key (another tenant) is not slowed down by it.
        assert (await api.client.get("/v1/workflows", headers=other)).status_code == 200


async def test_event_streams_are_capped_per_tenant() -> None:
    slots = StreamSlots()

    async def events() -> object:
        yield "progress"

    first = slots.hold("acme", 1, events())
    try:
        slots.hold("acme", 1, events())
    except Exception as exc:
        assert "1 event streams are already open for this tenant" in str(exc.detail)  # type: ignore[attr-defined]
    else:
        raise AssertionError("a second stream was allowed")
    assert [item async for item in first] == ["progress"]  # its end gives the slot back
    assert [item async for item in slots.hold("acme", 1, events())] == ["progress"]
    assert [item async for item in slots.hold("globex", 1, events())] == ["progress"]


async def test_a_tenant_waits_for_its_own_workflow_checks_never_for_anothers() -> None:
    gate = TenantGate()
    release = asyncio.Event()
    entered: list[str] = []
    two_in = asyncio.Event()

    async def job(tenant: str, wait_s: float) -> None:
        async with gate.slot(tenant, 1, wait_s, "workflow checks"):
            entered.append(tenant)
            if len(entered) == 2:
                two_in.set()
            await release.wait()

    busy = asyncio.create_task(job("acme", 1.0))
    queued = asyncio.create_task(job("acme", 30.0))  # waits for acme's first to end
    other = asyncio.create_task(job("globex", 0.01))  # not behind acme's
    async with asyncio.timeout(5):
        await two_in.wait()
    assert sorted(entered) == ["acme", "globex"]
    try:
        await job("acme", 0.01)
    except TooManyRequestsException as exc:
        assert exc.detail == "1 workflow checks of this tenant already running; retry in 1 s"
        assert exc.headers == {"Retry-After": "1"}
    else:
        raise AssertionError("a third check of acme's was let in")
    release.set()
    async with asyncio.timeout(5):
        await asyncio.gather(busy, queued, other)
    assert entered == ["acme", "globex", "acme"]

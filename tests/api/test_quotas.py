"""Per-key request rates and per-tenant preview and stream quotas: one tenant's traffic
cannot take the API from another."""

from __future__ import annotations

from pathlib import Path

from orchestrator.quotas import Quotas, StreamSlots
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

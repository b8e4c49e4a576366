"""WorkflowStore contract: versions per tenant, deletes that keep version numbers."""

from __future__ import annotations

from backends.state import StateStore
from tests.contract.conftest import Env

# -- workflows


async def test_each_put_is_a_new_version(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    assert await store.put_workflow("t1", "shop", "name: shop\n", '{"name":"shop"}') == 1
    assert await store.put_workflow("t1", "shop", "name: shop # v2\n", '{"name":"shop"}') == 2
    latest = await store.get_workflow("t1", "shop")
    assert latest is not None
    assert (latest.version, latest.source_text) == (2, "name: shop # v2\n")
    assert latest.spec_json == '{"name":"shop"}'
    assert latest.tenant == "t1" and latest.name == "shop"
    first = await store.get_workflow("t1", "shop", version=1)
    assert first is not None and first.source_text == "name: shop\n"
    assert await store.get_workflow("t1", "shop", version=3) is None
    assert await store.get_workflow("t1", "nope") is None


async def test_tenants_do_not_see_each_others_workflows(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.put_workflow("t1", "shop", "a", "{}")
    await store.put_workflow("t1", "blog", "b", "{}")
    await store.put_workflow("t1", "blog", "b2", "{}")
    await store.put_workflow("t2", "shop", "c", "{}")
    listed = await store.list_workflows("t1")
    assert [(w.name, w.version) for w in listed] == [("blog", 2), ("shop", 1)]
    assert await store.get_workflow("t2", "blog") is None
    assert [w.source_text for w in await store.list_workflows("t2")] == ["c"]
    assert await store.list_workflows("t3") == []


async def test_delete_workflow(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.put_workflow("t1", "shop", "a", "{}")
    await store.put_workflow("t1", "shop", "b", "{}")
    assert await store.delete_workflow("t1", "shop")
    assert await store.get_workflow("t1", "shop") is None
    assert await store.get_workflow("t1", "shop", version=1) is None
    assert await store.list_workflows("t1") == []
    assert not await store.delete_workflow("t1", "shop")
    assert not await store.delete_workflow("t2", "never")
    version = await store.put_workflow("t1", "shop", "c", "{}")
    stored = await store.get_workflow("t1", "shop")
    assert stored is not None and stored.version == version and stored.source_text == "c"

"""OutputStore contract: the manifest of an execution's objects."""

from __future__ import annotations

import msgspec

from backends.state import OutputObject, StateStore
from tests.contract.conftest import Env
from tests.contract.state_data import execution

# -- outputs


async def test_output_manifest(state_env: Env[StateStore]) -> None:
    store = state_env.adapter
    await store.create_execution(execution("ex-1"))
    part_b = OutputObject(
        path="out/ex-1/parts/p/part-w-2.jsonl", size_bytes=10, records=1, kind="part"
    )
    part_a = OutputObject(
        path="out/ex-1/parts/p/part-w-1.jsonl", size_bytes=20, records=2, kind="part"
    )
    export = OutputObject(
        path="out/ex-1/export/records.jsonl", size_bytes=30, records=3, kind="export"
    )
    await store.add_output("ex-1", part_b)
    await store.add_output("ex-1", part_a)
    await store.add_output("ex-1", export)
    bigger = msgspec.structs.replace(export, size_bytes=31)
    await store.add_output("ex-1", bigger)  # rewritten export: one entry, the last
    assert await store.outputs("ex-1") == [bigger, part_a, part_b]
    assert await store.outputs("ex-2") == []

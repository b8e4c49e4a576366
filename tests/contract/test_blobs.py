"""BlobStore contract: write, read, list, if_absent, streaming, name validation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backends.blobs import BlobInfo, BlobNotFound, BlobStore, validate_path
from backends.errors import InvalidInputError
from backends.local import INLINE_MAX_BYTES, LocalBlobStore
from tests.contract.conftest import Env

BAD_PATHS = [
    "",
    "/etc/passwd",
    "../outside",
    "a/../../outside",
    "a/./b",
    "a//b",
    "a/",
    ".",
    "a\\b",
    "a\nb",
    "a\x00b",
    "a/b.trawl-tmp",
    "x" * 1025,
]


async def test_write_then_read(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    assert await store.write("ex-1/parts/p/part-a-1.jsonl", b'{"a": 1}\n')
    assert await store.read("ex-1/parts/p/part-a-1.jsonl") == b'{"a": 1}\n'
    assert await store.exists("ex-1/parts/p/part-a-1.jsonl")
    assert not await store.exists("ex-1/parts/p/part-a-2.jsonl")
    assert not await store.exists("ex-1/parts")  # a prefix is not an object


async def test_overwrite_replaces(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    await store.write("x/summary.json", b"old and longer")
    assert await store.write("x/summary.json", b"new")
    assert await store.read("x/summary.json") == b"new"


async def test_empty_and_large_objects(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    large = bytes(range(256)) * (INLINE_MAX_BYTES // 256 * 3 + 7)
    await store.write("empty", b"")
    await store.write("large.bin", large)
    assert await store.read("empty") == b""
    assert await store.read("large.bin") == large
    assert [i.size_bytes for i in await store.list("")] == [0, len(large)]


async def test_if_absent_writes_once(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    assert await store.write("ex-1/parts/p/part-w-1.jsonl", b"first", if_absent=True)
    assert not await store.write("ex-1/parts/p/part-w-1.jsonl", b"second", if_absent=True)
    assert await store.read("ex-1/parts/p/part-w-1.jsonl") == b"first"


async def test_concurrent_if_absent_has_one_winner(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    payloads = [str(i).encode() * (INLINE_MAX_BYTES // 2 * (i % 3)) + b"!" for i in range(8)]
    written = await asyncio.gather(
        *(store.write("race/part.jsonl", data, if_absent=True) for data in payloads)
    )
    assert sum(written) == 1
    winner = payloads[written.index(True)]
    assert await store.read("race/part.jsonl") == winner


async def test_read_missing_is_blob_not_found(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    await store.write("a/b", b"x")
    for missing in ("nope", "a", "a/b/c"):
        with pytest.raises(BlobNotFound) as caught:
            await store.read(missing)
        assert isinstance(caught.value, KeyError)
        assert missing in str(caught.value)
    with pytest.raises(BlobNotFound):
        async for _ in store.iter_chunks("nope"):
            pass


async def test_list_by_prefix_in_name_order(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    names = [
        "ex-1/parts/product/part-w-2.jsonl",
        "ex-1/parts/product/part-w-1.jsonl",
        "ex-1/parts/listing/part-w-1.jsonl",
        "ex-1/export/records.jsonl",
        "ex-10/parts/product/part-w-1.jsonl",
        "top.txt",
    ]
    for name in names:
        await store.write(name, name.encode())
    assert await store.list("ex-1/parts/") == [
        BlobInfo(path="ex-1/parts/listing/part-w-1.jsonl", size_bytes=33),
        BlobInfo(path="ex-1/parts/product/part-w-1.jsonl", size_bytes=33),
        BlobInfo(path="ex-1/parts/product/part-w-2.jsonl", size_bytes=33),
    ]
    assert [i.path for i in await store.list("ex-1/")] == sorted(
        n for n in names if n.startswith("ex-1/")
    )
    # A prefix is a string prefix, not a directory: "ex-1" also matches "ex-10/...".
    assert [i.path for i in await store.list("ex-1")] == sorted(
        n for n in names if n.startswith("ex-1")
    )
    assert [i.path for i in await store.list("ex-1/parts/product/part-w-")] == [
        "ex-1/parts/product/part-w-1.jsonl",
        "ex-1/parts/product/part-w-2.jsonl",
    ]
    assert [i.path for i in await store.list("")] == sorted(names)
    assert await store.list("nothing/here/") == []


async def test_delete(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    await store.write("a/b", b"x")
    await store.delete("a/b")
    assert not await store.exists("a/b")
    assert await store.list("") == []
    await store.delete("a/b")  # again: nothing
    await store.delete("never/was")


async def test_iter_chunks_streams_the_object(blob_env: Env[BlobStore]) -> None:
    store = blob_env.adapter
    data = bytes(range(256)) * 40
    await store.write("big", data)
    chunks = [chunk async for chunk in store.iter_chunks("big", chunk_size=1000)]
    assert b"".join(chunks) == data
    assert all(len(c) <= 1000 for c in chunks) and len(chunks) == 11
    assert [c async for c in store.iter_chunks("big")] == [data]


async def test_iter_chunks_of_an_empty_or_missing_object(blob_env: Env[BlobStore]) -> None:
    """What the export's sort and readers rely on: nothing for an empty object, and
    BlobNotFound (not an empty stream) for a missing one."""
    store = blob_env.adapter
    await store.write("empty.jsonl", b"")
    assert [c async for c in store.iter_chunks("empty.jsonl", chunk_size=7)] == []
    with pytest.raises(BlobNotFound):
        _ = [c async for c in store.iter_chunks("missing.parquet")]


@pytest.mark.parametrize("bad", BAD_PATHS)
async def test_bad_names_are_rejected(blob_env: Env[BlobStore], bad: str) -> None:
    store = blob_env.adapter
    with pytest.raises(InvalidInputError):
        await store.write(bad, b"x")
    with pytest.raises(InvalidInputError):
        await store.read(bad)
    with pytest.raises(InvalidInputError):
        await store.exists(bad)
    with pytest.raises(InvalidInputError):
        await store.delete(bad)


@pytest.mark.parametrize("bad", ["/abs", "../up/", "a//", "a/../"])
async def test_bad_prefixes_are_rejected(blob_env: Env[BlobStore], bad: str) -> None:
    with pytest.raises(InvalidInputError):
        await blob_env.adapter.list(bad)


def test_good_names_pass() -> None:
    for good in ("a", "a/b.c", "ex-1/parts/p/part-w-1.jsonl", "..a/b..", "ünïcode/名"):
        assert validate_path(good) == good


# -- what only the local store promises


async def test_local_store_stays_inside_its_root(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "root")
    await store.write("a/b.txt", b"x")
    assert (tmp_path / "root" / "a" / "b.txt").read_bytes() == b"x"
    with pytest.raises(InvalidInputError):
        await store.write("../escape.txt", b"x")
    assert not (tmp_path / "escape.txt").exists()
    # No temporary files are left behind.
    assert sorted(p.name for p in (tmp_path / "root").rglob("*")) == ["a", "b.txt"]


async def test_local_store_object_and_prefix_clash_is_invalid_input(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.write("a", b"x")
    with pytest.raises(InvalidInputError):
        await store.write("a/b", b"y")
    await store.write("c/d", b"z")
    with pytest.raises(InvalidInputError):
        await store.write("c", b"w")


def test_local_store_from_url(tmp_path: Path) -> None:
    assert LocalBlobStore.from_url(f"file://{tmp_path}").root == tmp_path
    assert LocalBlobStore.from_url(str(tmp_path)).root == tmp_path
    with pytest.raises(InvalidInputError):
        LocalBlobStore.from_url("gs://bucket/prefix")

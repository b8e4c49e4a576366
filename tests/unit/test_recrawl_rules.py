"""The rules of a recrawl, one at a time (worker/recrawl.py): what a seed carries, when a
request is conditional, how a fetched page is judged, and a seed's trip through the queue."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from backends.errors import PermanentError
from backends.fetcher import FetchRequest
from backends.task import Previous, Task, decode_task, encode_task
from nodes.page import Page
from worker.records import Record
from worker.recrawl import (
    MAX_CARRIED_DATA_BYTES,
    compare,
    conditional,
    content_hash,
    previous_of,
)

HTML = "<html><body><h1>Hello</h1></body></html>"


def record(data: dict[str, object], **fields: object) -> Record:
    base: dict[str, object] = {
        "execution_id": "e0",
        "workflow": "w",
        "phase": "page",
        "url": "http://shop.test/a",
        "marker": None,
        "parent_url": "http://shop.test/",
        "depth": 1,
        "status": 200,
        "content_type": "text/html",
        "etag": '"v1"',
        "last_modified": "Mon, 05 Jan 2026 08:00:00 GMT",
        "content_hash": content_hash(HTML),
        "lastmod": "2026-01-04",
        "fetched_at": datetime(2026, 1, 5, tzinfo=UTC),
        "data": data,
    }
    return Record(**{**base, **fields})  # type: ignore[arg-type]


def test_a_seed_carries_the_record_and_its_validators() -> None:
    previous = previous_of(record({"title": "Hello"}))
    assert previous == Previous(
        etag='"v1"',
        last_modified="Mon, 05 Jan 2026 08:00:00 GMT",
        content_hash=content_hash(HTML),
        status=200,
        content_type="text/html",
        parent_url="http://shop.test/",
        lastmod="2026-01-04",
        data={"title": "Hello"},
    )
    request = conditional(FetchRequest(url="http://shop.test/a"), previous, "http")
    assert request.headers == {
        "If-None-Match": '"v1"',
        "If-Modified-Since": "Mon, 05 Jan 2026 08:00:00 GMT",
    }


def test_data_too_big_to_carry_is_extracted_again_and_the_request_is_not_conditional() -> None:
    big = previous_of(record({"body": "x" * (MAX_CARRIED_DATA_BYTES + 1)}))
    assert big.data is None
    assert big.etag == '"v1"'  # kept: it is small, and says what was seen
    plain = FetchRequest(url="http://shop.test/a")
    assert conditional(plain, big, "http") is plain
    # Fetched whole: the same content is unchanged, but the nodes run (nothing to repeat).
    same = compare(big, Page(url=plain.url, html=HTML))
    assert (same.change, same.repeat) == ("unchanged", None)


def test_the_browser_engine_is_never_asked_conditionally() -> None:
    previous = previous_of(record({"title": "Hello"}))
    plain = FetchRequest(url="http://shop.test/a")
    assert conditional(plain, previous, "browser") is plain
    # Its rendered page is compared by hash instead.
    assert compare(previous, Page(url=plain.url, html=HTML)).repeat == previous
    assert compare(previous, Page(url=plain.url, html=HTML + " ")).change == "changed"


def test_how_a_page_is_judged() -> None:
    previous = previous_of(record({"title": "Hello"}))
    url = "http://shop.test/a"
    not_modified = compare(previous, Page(url=url, html="", status=304))
    assert (not_modified.change, not_modified.repeat) == ("unchanged", previous)
    assert not_modified.content_hash == previous.content_hash
    assert compare(None, Page(url=url, html=HTML)).change == "new"
    assert compare(None, Page(url=url, html=HTML)).content_hash == content_hash(HTML)
    assert compare(None, Page(url=url, html=HTML), hashed=False).content_hash is None
    # A record from before content hashes were kept: every page counts as changed.
    old = previous_of(record({"title": "Hello"}, content_hash=None))
    assert compare(old, Page(url=url, html=HTML)).change == "changed"


def test_a_304_without_a_previous_record_is_a_failure_naming_the_page() -> None:
    # Only a workflow's own If-None-Match header can get one: there is nothing to repeat.
    with pytest.raises(PermanentError) as raised:
        compare(None, Page(url="http://shop.test/a", html="", status=304))
    assert raised.value.error_class == "http_304"
    assert "http://shop.test/a" in str(raised.value)


def test_a_seed_goes_through_the_queue_whole() -> None:
    previous = previous_of(record({"title": "Hello", "tags": ["a", "b"]}))
    task = Task(execution_id="e1", url="http://shop.test/a", depth=1, phase="page")
    seeded = Task(
        execution_id="e1", url=task.url, depth=1, phase="page", parent=None, previous=previous
    )
    assert decode_task(encode_task(seeded)) == seeded
    assert decode_task(encode_task(task)).previous is None

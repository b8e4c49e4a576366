"""How PubSubTaskQueue cuts a publish into Publish requests: in order, within Pub/Sub's
limits of 1,000 messages and 10 MB per request (the emulator does not enforce them, so they
are checked here)."""

from __future__ import annotations

from backends.gcp.pubsub import (
    MAX_BYTES_PER_REQUEST,
    MAX_MESSAGES_PER_REQUEST,
    _RawMessage,
    _requests,
)


def test_many_small_messages_go_a_thousand_per_request_in_order() -> None:
    messages = [_RawMessage(data=f"task {i}".encode()) for i in range(2500)]

    requests = _requests(messages)

    assert [len(r) for r in requests] == [1000, 1000, 500]
    assert [m for r in requests for m in r] == messages
    assert MAX_MESSAGES_PER_REQUEST == 1000


def test_large_messages_are_cut_by_size() -> None:
    messages = [_RawMessage(data=bytes([i]) * 3_000_000) for i in range(7)]

    requests = _requests(messages)

    assert [len(r) for r in requests] == [3, 3, 1]
    for request in requests:
        assert sum(m.ByteSize() + 8 for m in request) <= MAX_BYTES_PER_REQUEST < 10_000_000
    assert [m for r in requests for m in r] == messages


def test_nothing_to_publish_is_no_request() -> None:
    assert _requests([]) == []

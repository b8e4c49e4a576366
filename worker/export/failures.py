"""failures.jsonl and the way warnings are described, beside the export's records."""

from __future__ import annotations

from typing import Any

import msgspec

from backends.blobs import BlobStore
from backends.state import Failure, StateStore, WarningExample

_encoder = msgspec.json.Encoder()


async def write_failures(blobs: BlobStore, state: StateStore, execution_id: str, path: str) -> int:
    """failures.jsonl: one line per failed task, encoded as the store hands them over."""
    body = bytearray()
    count = 0
    async for failure in state.iter_failures(execution_id):
        body += _encoder.encode(failure_line(failure)) + b"\n"
        count += 1
    await blobs.write(path, bytes(body))
    return count


def failure_line(failure: Failure) -> dict[str, Any]:
    """One line of failures.jsonl."""
    return {
        "url": failure.url,
        "phase": failure.phase,
        "error_class": failure.error_class,
        "message": failure.message,
        "attempts": failure.attempt,
        "at": _iso(failure.at),
    }


def describe_warnings(warnings: dict[str, int], examples: list[WarningExample]) -> str:
    """``field_conversion 4 (price in phase product: URL, URL)``: each kind with its count,
    then the fields behind it, each with a few example URLs (and its own count when a kind
    has several fields)."""
    parts = []
    for kind, count in sorted(warnings.items()):
        mine = [e for e in examples if e.kind == kind]
        fields = "; ".join(
            f"{e.field} in phase {e.phase}"
            + (f" {e.count}" if len(mine) > 1 else "")
            + (": " + ", ".join(e.urls) if e.urls else "")
            for e in mine
        )
        parts.append(f"{kind} {count}" + (f" ({fields})" if fields else ""))
    return ", ".join(parts)


def _iso(value: Any) -> str | None:
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")

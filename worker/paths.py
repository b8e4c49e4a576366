"""Object names of an execution's outputs (the tree README.md shows), one place.

Names are relative to the blob store, which adds its own prefix (``TRAWL_GCS_PREFIX``)."""

from __future__ import annotations


def parts_prefix(execution_id: str) -> str:
    return f"{execution_id}/parts/"


def part_path(execution_id: str, phase: str, worker_id: str, seq: int) -> str:
    return f"{execution_id}/parts/{phase}/part-{worker_id}-{seq:06d}.jsonl"


def export_path(execution_id: str) -> str:
    return f"{execution_id}/export/records.jsonl"


def summary_path(execution_id: str) -> str:
    return f"{execution_id}/export/summary.json"


def failures_path(execution_id: str) -> str:
    return f"{execution_id}/export/failures.jsonl"

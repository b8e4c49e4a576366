"""Object names of an execution's outputs (the tree README.md shows), one place."""

from __future__ import annotations


def _join(prefix: str, *parts: str) -> str:
    head = prefix.strip("/")
    return "/".join(p for p in (head, *parts) if p)


def execution_root(prefix: str, execution_id: str) -> str:
    return _join(prefix, execution_id)


def parts_prefix(prefix: str, execution_id: str) -> str:
    return _join(prefix, execution_id, "parts") + "/"


def part_path(prefix: str, execution_id: str, phase: str, worker_id: str, seq: int) -> str:
    return _join(prefix, execution_id, "parts", phase, f"part-{worker_id}-{seq:06d}.jsonl")


def export_path(prefix: str, execution_id: str) -> str:
    return _join(prefix, execution_id, "export", "records.jsonl")


def summary_path(prefix: str, execution_id: str) -> str:
    return _join(prefix, execution_id, "export", "summary.json")


def failures_path(prefix: str, execution_id: str) -> str:
    return _join(prefix, execution_id, "export", "failures.jsonl")

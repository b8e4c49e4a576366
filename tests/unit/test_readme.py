"""The README's workflow walk-through is a workflow that validates, not prose that drifts."""

from __future__ import annotations

from pathlib import Path

from workflows import load_workflow

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_walk_through_workflow_is_valid() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    workflow = load_workflow(block, filename="README.md", fmt="yaml")
    assert [p.name for p in workflow.phases] == ["categories", "listing", "product"]

"""What a shared deployment runs before it accepts a workflow: parse, validate, and hold
it to the operator's ceilings. Plain functions of picklable arguments, so the orchestrator
can run them in a process of their own (orchestrator/offload.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from workflows.ceilings import Ceilings, exceeded
from workflows.errors import WorkflowInvalid
from workflows.load import Format, load_workflow
from workflows.overrides import apply_overrides
from workflows.spec import Workflow
from workflows.validate import validate_data


def within(workflow: Workflow, ceilings: Ceilings) -> Workflow:
    """``workflow`` if it asks for nothing above ``ceilings``; else ``WorkflowInvalid``.
    A workflow without a page budget (``max_pages: 0``) gets the deployment's."""
    problems = exceeded(workflow, ceilings)
    if problems:
        raise WorkflowInvalid(problems)
    if workflow.max_pages == 0:
        return msgspec.structs.replace(workflow, max_pages=ceilings.max_pages)
    return workflow


def admit_document(data: bytes, fmt: Format, max_bytes: int, ceilings: Ceilings) -> Workflow:
    """A workflow document (YAML or JSON text), parsed and validated."""
    return within(load_workflow(data, fmt=fmt, max_bytes=max_bytes), ceilings)


def admit_data(data: dict[str, Any], ceilings: Ceilings) -> Workflow:
    """A workflow already decoded from a JSON request body."""
    return within(validate_data(data), ceilings)


def admit_overrides(spec_json: str, overrides: Sequence[str], ceilings: Ceilings) -> Workflow:
    """A stored workflow with ``key=value`` overrides applied, validated again."""
    data = apply_overrides(msgspec.json.decode(spec_json), overrides)
    return within(validate_data(data), ceilings)

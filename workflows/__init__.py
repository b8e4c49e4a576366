"""The workflow language: Structs, loading, validation, JSON Schema. Pure but for reading files.

This package imports no other package of ours and no vendor SDK beyond msgspec, PyYAML,
selectolax and lxml (the last two to check selectors with the engines that run them).
"""

from workflows.errors import Problem, WorkflowInvalid
from workflows.load import (
    DEFAULT_MAX_BYTES,
    Format,
    load_workflow,
    load_workflow_file,
    parse_document,
)
from workflows.overrides import apply_overrides
from workflows.schema import workflow_json_schema
from workflows.spec import Workflow
from workflows.validate import check_workflow, validate_data

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Format",
    "Problem",
    "Workflow",
    "WorkflowInvalid",
    "apply_overrides",
    "check_workflow",
    "load_workflow",
    "load_workflow_file",
    "parse_document",
    "validate_data",
    "workflow_json_schema",
]

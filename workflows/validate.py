"""From raw data (a parsed YAML or JSON document) to a valid ``Workflow``, or every problem.

Structure first, then conversion, then semantics: semantic rules need typed data, and a
document with wrong types would only produce noise from them.
"""

from __future__ import annotations

import re

import msgspec

from workflows.errors import Problem, WorkflowInvalid
from workflows.semantics import check_semantics
from workflows.spec import Workflow
from workflows.structure import check_structure

_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def validate_data(data: object, *, source: str | None = None) -> Workflow:
    """The ``Workflow`` in ``data``; raises ``WorkflowInvalid`` listing every problem."""
    problems = check_structure(data, Workflow)
    if problems:
        raise WorkflowInvalid(problems, source=source)
    try:
        workflow = msgspec.convert(data, Workflow)
    except msgspec.ValidationError as error:
        # The walker should have caught it; msgspec remains the final judge of types.
        raise WorkflowInvalid([_from_msgspec(error)], source=source) from None
    problems = check_semantics(workflow)
    if problems:
        raise WorkflowInvalid(problems, source=source)
    return workflow


def check_workflow(workflow: Workflow) -> list[Problem]:
    """Semantic problems of a ``Workflow`` built in code rather than parsed from a file."""
    return check_semantics(workflow)


def _from_msgspec(error: msgspec.ValidationError) -> Problem:
    match = _MSGSPEC_PATH.match(str(error))
    assert match is not None  # the pattern matches any text
    path = (match.group("path") or "").removeprefix(".")
    return Problem(path, match.group("message"))

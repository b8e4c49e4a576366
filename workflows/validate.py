"""From raw data (a parsed YAML or JSON document) to a valid ``Workflow``, or every problem.

One run finds every problem it can, structural and semantic together, so an author fixes
a file in one round rather than meet a new layer of problems after each fix. The
structural walk collects every wrong key, type and bound, and builds a best-effort view of
the document with the broken parts left out; the semantic rules (phase graph, markers,
selectors, regexes, URLs, each node's and struct's own ``check``) judge that view,
quiet wherever a structural problem could have misled them (``workflows/gaps.py``).
Problems come sorted by where they are in the document.

A document with no structural problem is converted by msgspec, the final judge of types,
and the semantic rules judge exactly the ``Workflow`` that will run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import msgspec

from workflows.errors import Problem, WorkflowInvalid
from workflows.gaps import Gaps, tokens
from workflows.semantics import check_semantics
from workflows.spec import Workflow
from workflows.structure import salvage

_MSGSPEC_PATH = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def validate_data(
    data: object, *, source: str | None = None, earlier: Sequence[Problem] = ()
) -> Workflow:
    """The ``Workflow`` in ``data``; raises ``WorkflowInvalid`` listing every problem.

    ``earlier``: problems found while reading ``data`` (a repeated key), reported with the
    rest; the semantic rules treat their paths as broken.
    """
    found = salvage(data, Workflow)
    for problem in earlier:
        found.gaps.hole(problem.path)
    if found.problems or earlier:
        problems = [*earlier, *found.problems]
        if isinstance(found.value, Workflow):
            problems += _semantics_of_view(found.value, found.gaps)
        raise WorkflowInvalid(in_document_order(problems, data), source=source)
    try:
        workflow = msgspec.convert(data, Workflow)
    except msgspec.ValidationError as error:
        # The walker should have caught it; msgspec remains the final judge of types.
        raise WorkflowInvalid([_from_msgspec(error)], source=source) from None
    problems = check_semantics(workflow)
    if problems:
        raise WorkflowInvalid(in_document_order(problems, data), source=source)
    return workflow


def _semantics_of_view(view: Workflow, gaps: Gaps) -> list[Problem]:
    """The semantic problems of a broken document's view. A rule is written for valid
    data: one that trips over a value the view kept although it breaks a bound (a zero
    where only positive numbers are allowed) is an echo of a problem already reported, so
    the structural problems stand alone rather than end in a traceback."""
    try:
        return check_semantics(view, gaps)
    except Exception:  # see above; a valid document is judged unguarded
        return []


def check_workflow(workflow: Workflow) -> list[Problem]:
    """Semantic problems of a ``Workflow`` built in code rather than parsed from a file."""
    return check_semantics(workflow)


def in_document_order(problems: Iterable[Problem], data: object) -> list[Problem]:
    """``problems`` sorted by where their paths are in ``data`` (keys in the order they
    were written, list items by index); problems at one place keep the order found, and a
    missing key sorts after the keys that are there."""
    return sorted(problems, key=lambda problem: _position(problem.path, data))


def _position(path: str, data: object) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    here: object = data
    for part in tokens(path):
        if isinstance(here, dict) and part in here:
            out.append((0, list(here).index(part)))
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and part < len(here):
            out.append((0, part))
            here = here[part]
        else:
            out.append((1, 0))  # not in the document (a missing key): after what is
            here = None
    return tuple(out)


def _from_msgspec(error: msgspec.ValidationError) -> Problem:
    match = _MSGSPEC_PATH.match(str(error))
    assert match is not None  # the pattern matches any text
    path = (match.group("path") or "").removeprefix(".")
    return Problem(path, match.group("message"))

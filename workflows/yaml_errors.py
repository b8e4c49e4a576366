"""YAML parse errors in words an author can act on.

PyYAML and libyaml say what their scanner met (``found character that cannot start any
token``), not what the author did (indented with a tab) or should do. The cases people
meet most are reworded here, from the error and the text at its mark; the rest keep the
parser's own words. Either way the problem keeps its line and column, and reads the same
whichever parser (libyaml or pure Python) is installed.
"""

from __future__ import annotations

import yaml

_QUOTE_IT = "put the value in quotes"


def describe(error: yaml.MarkedYAMLError, text: str) -> str:
    """What went wrong at ``error.problem_mark``, for a person."""
    problem = error.problem or ""
    context = error.context or ""
    mark = error.problem_mark
    assert mark is not None
    line = _line(text, mark.line)
    found = line[mark.column : mark.column + 1]
    if found == "\t" or "tab character" in problem:
        if not line[: mark.column].strip(" \t"):
            return "a tab character; YAML indents with spaces"
        return "a tab character; YAML separates values with spaces, not tabs"
    if "cannot start any token" in problem and found:
        return f"{found!r} cannot start a value; {_QUOTE_IT}"
    if problem.startswith("mapping values are not allowed"):
        return f"unexpected ': '; {_QUOTE_IT} if it has one, or check the indentation"
    opened = error.context_mark
    where = f"line {opened.line + 1}, column {opened.column + 1}" if opened else "above"
    if "quoted scalar" in context and "end of stream" in problem:
        return f"the quoted value that starts at {where} is not closed"
    if "unknown escape" in problem:
        return (
            "an unknown escape in a double-quoted value; write \\\\ for a backslash, "
            "or use single quotes"
        )
    for kind, closing in (("flow mapping", "}"), ("flow sequence", "]")):
        if kind in context and f"',' or '{closing}'" in problem:
            bracket = "{" if closing == "}" else "["
            return f"the {bracket!r} at {where} is not closed: expected ',' or {closing!r}"
    if context.startswith(("while parsing a block mapping", "while parsing a block collection")):
        if line[: mark.column].strip():  # after a value on its line: `a: 'x' y`
            return f"unexpected text after a value; {_QUOTE_IT} as a whole"
        return f"this line does not fit the block that starts at {where}; check the indentation"
    what = problem or context or "invalid YAML"
    if context and problem.startswith("but "):
        what = f"{context}, {problem}"
    return what


def _line(text: str, number: int) -> str:
    lines = text.splitlines()
    return lines[number] if 0 <= number < len(lines) else ""

"""Regexes from workflows run in linear time (RE2), and what RE2 cannot run is named."""

from __future__ import annotations

import pytest

from workflows import WorkflowInvalid, regex, validate_data
from workflows.rules import CrawlRules

CATASTROPHIC = r"/(a+)+$"  # minutes of backtracking in Python's re at 30 a's


def workflow(**scope: list[str]) -> dict[str, object]:
    return {
        "name": "shop",
        "start_urls": ["http://127.0.0.1:9/"],
        "scope": scope,
        "phases": [{"name": "page", "nodes": [{"type": "extract_links"}]}],
    }


def test_a_catastrophic_pattern_answers_at_once_on_a_long_url() -> None:
    # With backtracking this would not finish in the test's lifetime (pytest-timeout).
    rules = CrawlRules(validate_data(workflow(include=[CATASTROPHIC])))
    url = "http://127.0.0.1:9/" + "a" * 100_000 + "!"
    assert not rules.in_scope(url)
    assert rules.in_scope("http://127.0.0.1:9/aaaa")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"(?<=a)b", "lookaround is not supported: RE2 syntax"),
        (r"(?!x)y", "lookaround is not supported: RE2 syntax"),
        (r"(a)\1", "backreferences are not supported: RE2 syntax"),
        ("x" * 5000, "regex is 5000 characters long; at most 4096"),
        ("a{1000}{1000}", "invalid regex: bad repetition operator"),
    ],
)
def test_what_re2_cannot_run_is_a_problem_with_its_path(pattern: str, message: str) -> None:
    with pytest.raises(WorkflowInvalid) as caught:
        validate_data(workflow(exclude=["ok", pattern]))
    problems = caught.value.problems
    assert [p.path for p in problems] == ["scope.exclude[1]"]
    assert message in problems[0].message


def test_named_groups_and_searching_work_as_before() -> None:
    compiled = regex.compile_pattern(r"(?P<value>\d+[.,]\d{2})")
    match = compiled.search("price: 12,50 EUR")
    assert match is not None and match.group("value") == "12,50"
    assert compiled.groupindex == {"value": 1}
    assert regex.error(r"^/product/\d+$") is None

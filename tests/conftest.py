"""Shared fixtures: the local test site, Chromium and started fetchers (tests/fixtures_site.py).

Markers match folders: every test under tests/integration is marked ``integration``, and so
is any other test that starts a process, a browser or a real service, so ``pytest -m "not
integration"`` is the fast suite. A test that launches Chromium is marked ``browser`` too.
The collection hook below refuses, naming it, a test under tests/integration without the
marker and one using the Chromium fixtures without both markers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_site"]

INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"
# Fixtures that launch Chromium (tests/fixtures_site.py): their tests need both markers.
BROWSER_FIXTURES = frozenset({"chromium_path", "browser_fetcher"})


def marker_problems(items: list[pytest.Item]) -> list[str]:
    """One line per test whose markers do not match where it is or what it starts."""
    problems = []
    for item in items:
        marked = {m.name for m in item.iter_markers()}
        if INTEGRATION_DIR in item.path.parents and "integration" not in marked:
            problems.append(f"{item.nodeid}: under tests/integration but not marked integration")
        launches_browser = BROWSER_FIXTURES & set(getattr(item, "fixturenames", ()))
        missing = " and ".join(sorted({"integration", "browser"} - marked))
        if launches_browser and missing:
            problems.append(f"{item.nodeid}: launches Chromium but is not marked {missing}")
    return problems


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = marker_problems(items)
    if problems:
        raise pytest.UsageError(
            "markers do not match (add them to the module's pytestmark):\n  "
            + "\n  ".join(problems)
        )

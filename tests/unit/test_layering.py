"""The layering rules (which package may import which), checked on every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"workflows", "nodes", "worker", "orchestrator", "backends", "trawl"}
VENDOR_SDKS = {"redis", "asyncpg", "google", "playwright", "litestar", "uvicorn"}
ADAPTERS = ("backends.postgres", "backends.redis", "backends.gcp")


def imports_of(package: str) -> dict[str, set[str]]:
    """Module path -> the top-level names it imports (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


@pytest.mark.parametrize(
    ("package", "allowed"),
    [("workflows", {"workflows"}), ("nodes", {"nodes", "workflows"})],
)
def test_the_language_and_the_nodes_stay_pure(package: str, allowed: set[str]) -> None:
    for module, names in imports_of(package).items():
        ours = {top(n) for n in names} & OURS
        assert ours <= allowed, f"{module} imports {sorted(ours - allowed)}"
        vendors = {top(n) for n in names} & VENDOR_SDKS
        assert not vendors, f"{module} imports the vendor SDK(s) {sorted(vendors)}"


@pytest.mark.parametrize("package", ["worker", "orchestrator", "nodes", "workflows"])
def test_only_the_composition_root_picks_adapters(package: str) -> None:
    for module, names in imports_of(package).items():
        picked = sorted(n for n in names if n.startswith(ADAPTERS) or top(n) == "trawl")
        assert not picked, f"{module} imports {picked}; only trawl/ chooses adapters"


def test_the_backends_know_nothing_of_the_runtime() -> None:
    for module, names in imports_of("backends").items():
        above = {top(n) for n in names} & {"worker", "orchestrator", "trawl"}
        assert not above, f"{module} imports {sorted(above)}"

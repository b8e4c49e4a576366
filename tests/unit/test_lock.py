"""The committed lock is what every install uses, and it covers what pyproject.toml asks for.

A fresh clone must install exactly what CI tested: `make demo`/`make test` install
requirements/dev.lock and the Docker images requirements/runtime.lock, hashes required.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements" / "dev.lock"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ \\;]+)")


def pins(lock: Path) -> dict[str, str]:
    """Package name -> pinned version; every pin must carry at least one hash."""
    found: dict[str, str] = {}
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            continue
        name = canonicalize_name(match.group(1))
        assert "--hash=sha256:" in entry, f"{lock.name}: {name} is pinned without a hash"
        found[name] = match.group(2)
    assert found, f"{lock.name} pins nothing"
    return found


def project() -> dict[str, list[str]]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {"runtime": meta["dependencies"], "dev": meta["optional-dependencies"]["dev"]}


@pytest.mark.parametrize("group", ["runtime", "dev"])
def test_every_dependency_is_pinned_within_its_range(group: str) -> None:
    locked = pins(DEV_LOCK)
    for spec in project()[group]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is in pyproject.toml but not in dev.lock: make lock"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"dev.lock pins {name}=={locked[name]}, outside {req.specifier}: make lock"
        )


def test_the_images_get_the_versions_the_tests_ran_against() -> None:
    dev, runtime = pins(DEV_LOCK), pins(RUNTIME_LOCK)
    for spec in project()["runtime"]:
        name = canonicalize_name(Requirement(spec).name)
        assert name in runtime, f"{name} is missing from runtime.lock: make lock"
    differ = {n: (v, dev[n]) for n, v in runtime.items() if n in dev and dev[n] != v}
    assert not differ, f"runtime.lock and dev.lock disagree (make lock): {differ}"
    assert "pytest" not in runtime and "ruff" not in runtime


def test_every_install_reads_the_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements/dev.lock" in makefile
    assert "--require-hashes --no-deps -r $(LOCK)" in makefile
    for image in ("worker", "orchestrator"):
        text = (ROOT / "docker" / f"{image}.Dockerfile").read_text()
        assert "pip install --require-hashes --no-deps -r requirements/runtime.lock" in text
        assert "tomllib" not in text, f"{image} image resolves pyproject.toml itself"
    assert "make test" in (ROOT / ".ci" / "run").read_text()

"""The docs stand alone: no file cites a document the repo lacks, every link to docs/ resolves,
the workflow reference covers every key and its examples are valid, and ``trawl schema``
describes every property."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from trawl.cli import main
from workflows import load_workflow
from workflows.schema import DESCRIPTIONS, workflow_json_schema
from workflows.spec import NodeSpec

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "workflows.md"

TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".html", ".sh", ".toml"}
# Directories that hold no file of ours: tools, caches, and the outputs of demo runs.
SKIPPED_DIRS = {"node_modules", "__pycache__", "out"}
# Documents that were never part of the repo; spelled in pieces so this file does not match.
ABSENT_DOCUMENTS = ("DESIGN" + ".md", "WORKFLOWS" + ".md")

MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS_MENTION = re.compile(r"(?<![\w/.-])docs/[\w.-]+\.md(?:#[\w-]+)?")


def repo_files(suffixes: set[str]) -> Iterator[Path]:
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS]
        for name in files:
            path = Path(root, name)
            if path.suffix in suffixes:
                yield path


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {slug(m) for m in re.findall(r"^#+\s+(.+)$", text, flags=re.MULTILINE)}


def broken(source: Path, target: str, base: Path) -> str | None:
    """Why ``target`` (a path with an optional #anchor, relative to ``base``) does not
    resolve, if it does not."""
    name, _, anchor = target.partition("#")
    path = (base / name).resolve() if name else source
    where = f"{source.relative_to(REPO)}: {target}"
    if not path.is_file():
        return f"{where}: no such file"
    if anchor and path.suffix == ".md" and anchor not in anchors(path):
        return f"{where}: no heading with anchor #{anchor} in {path.relative_to(REPO)}"
    return None


def test_no_file_cites_a_document_the_repo_does_not_contain() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in repo_files(TEXT_SUFFIXES)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if any(document in line for document in ABSENT_DOCUMENTS)
    ]
    assert found == []


def test_every_markdown_link_in_the_readme_and_docs_resolves() -> None:
    problems = []
    for source in markdown_files():
        for target in MARKDOWN_LINK.findall(source.read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto: ...
                continue
            problems.append(broken(source, target, source.parent))
    assert [p for p in problems if p] == []


def test_every_docs_file_the_readme_and_docs_name_exists() -> None:
    problems = [
        broken(source, mention, REPO)
        for source in markdown_files()
        for mention in DOCS_MENTION.findall(source.read_text(encoding="utf-8"))
    ]
    assert [p for p in problems if p] == []


def test_the_workflow_reference_covers_every_key_and_node_type() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    defs = workflow_json_schema()["$defs"]
    missing = [
        f"{name}.{key}"
        for name, definition in defs.items()
        for key in definition.get("properties", {})
        if not re.search(rf"`(?:[\w.]+\.)?{re.escape(key)}`", text)
    ]
    assert missing == []
    headings = anchors(REFERENCE)
    for node in NodeSpec.__args__:
        tag = node.__struct_config__.tag
        assert tag in headings, f"docs/workflows.md has no section for node type {tag!r}"


def test_the_workflow_reference_examples_are_valid_workflows() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", REFERENCE.read_text(encoding="utf-8"), re.DOTALL)
    workflows = [block for block in blocks if block.startswith("name:")]
    assert len(workflows) >= 2  # the smallest workflow and the worked example
    for block in workflows:
        load_workflow(block, filename="docs/workflows.md")


def test_trawl_schema_describes_every_property(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "docs/workflows.md" in schema["description"]
    undescribed = [
        f"{name}.{key}" if key else name
        for name, definition in schema["$defs"].items()
        for key, prop in [("", definition), *definition.get("properties", {}).items()]
        if not prop.get("description")
    ]
    assert undescribed == []


def test_schema_descriptions_name_only_existing_properties() -> None:
    stale = [
        f"{cls.__name__}.{key}"
        for cls, table in DESCRIPTIONS.items()
        for key in table
        if key not in {f.encode_name for f in msgspec.structs.fields(cls)}
        and key != cls.__struct_config__.tag_field
    ]
    assert stale == []

"""The JSON Schema of workflow files, for editors (``trawl schema``).

Generated from the Structs, so it cannot drift from what the loader accepts; it cannot
express the semantic rules (phase graph, markers, selector syntax), which only
``trawl validate`` checks.
"""

from __future__ import annotations

from typing import Any

import msgspec

from workflows.spec import Workflow

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def workflow_json_schema() -> dict[str, Any]:
    """A JSON Schema (2020-12) describing a workflow document."""
    generated = msgspec.json.schema(Workflow)
    return {
        "$schema": SCHEMA_DIALECT,
        "title": "Trawl workflow",
        "description": "A crawl as phases of nodes joined by transitions (WORKFLOWS.md).",
        **generated,
    }

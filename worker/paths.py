"""Object names of an execution's outputs (the tree README.md shows), one place.

Names are relative to the blob store, which adds its own prefix (``TRAWL_GCS_PREFIX``).

```
<execution>/parts/<phase>/part-<worker>-<seq>.jsonl       records as the sink wrote them
<execution>/export/manifest.json                          what the export holds (manifest.py)
<execution>/export/summary.json                           the execution's counts
<execution>/export/failures.jsonl                         the pages that failed for good
<execution>/export/records/phase=<phase>/part-NNNNN.<ext> one dataset per phase (Hive layout)
<execution>/export/.runs/<build>/run-NNNNNN-NNNNNN.jsonl  sorted runs while an export builds
latest.<tenant>.<workflow>.json                           the newest completed export
```

Every part file ends in a digit then ``.jsonl`` and nothing else Trawl writes does except the
sort runs: the bucket's lifecycle rules (deploy/gcs-lifecycle.json) tell them apart by that.
"""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import quote

DatasetFormat = Literal["jsonl", "parquet", "csv"]

# The file name extension of each dataset format: JSONL and CSV gzipped (BigQuery, DuckDB
# and pandas read both natively), Parquet compressed inside (zstd).
EXTENSIONS: Final[dict[DatasetFormat, str]] = {
    "jsonl": "jsonl.gz",
    "parquet": "parquet",
    "csv": "csv.gz",
}
EXPORT_DIR = "export"
RECORDS_DIR = "records"
PHASE_KEY = "phase"  # the Hive partition key of the datasets: records/phase=<phase>/


def parts_prefix(execution_id: str) -> str:
    return f"{execution_id}/parts/"


def part_path(execution_id: str, phase: str, worker_id: str, seq: int) -> str:
    return f"{execution_id}/parts/{phase}/part-{worker_id}-{seq:06d}.jsonl"


def export_prefix(execution_id: str) -> str:
    """Everything the export writes is under this prefix."""
    return f"{execution_id}/{EXPORT_DIR}/"


def records_path(execution_id: str) -> str:
    """The folder holding every phase's dataset (the one to point DuckDB or BigQuery at)."""
    return f"{execution_id}/{EXPORT_DIR}/{RECORDS_DIR}"


def phase_dir(phase: str) -> str:
    """A phase's partition folder, relative to the records folder: ``phase=<phase>``
    (percent-encoded as Hive does; a valid phase name needs none)."""
    return f"{PHASE_KEY}={quote(phase, safe='')}"


def dataset_file(phase: str, index: int, fmt: DatasetFormat) -> str:
    """One file of a phase's dataset, relative to the export folder."""
    return f"{RECORDS_DIR}/{phase_dir(phase)}/part-{index:05d}.{EXTENSIONS[fmt]}"


def in_export(execution_id: str, relative: str) -> str:
    """The object name of ``relative`` (as the manifest names files) in the export."""
    return export_prefix(execution_id) + relative


def manifest_path(execution_id: str) -> str:
    return f"{execution_id}/{EXPORT_DIR}/manifest.json"


def summary_path(execution_id: str) -> str:
    return f"{execution_id}/{EXPORT_DIR}/summary.json"


def failures_path(execution_id: str) -> str:
    return f"{execution_id}/{EXPORT_DIR}/failures.jsonl"


def runs_prefix(execution_id: str, build_id: str) -> str:
    """Where one build of the export spills its sorted runs (deleted when it is done)."""
    return f"{execution_id}/{EXPORT_DIR}/.runs/{build_id}/"


def run_path(execution_id: str, build_id: str, run: int, segment: int) -> str:
    return f"{runs_prefix(execution_id, build_id)}run-{run:06d}-{segment:06d}.jsonl"


def latest_path(tenant: str, workflow: str) -> str:
    """The pointer to the newest completed export of a tenant's workflow: an object at the
    top of the store, beside the executions' folders (a workflow name has no dot, so the
    name is unambiguous)."""
    return f"latest.{quote(tenant, safe='')}.{quote(workflow, safe='')}.json"

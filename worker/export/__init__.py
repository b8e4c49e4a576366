"""The export of an execution: each record once, one dataset per phase, in bounded memory.

``build_export`` (build.py) is what completion calls; the pieces are the external sort
(sort.py), the phase schemas (schema.py), the dataset files (formats.py), the manifest and
the ``latest`` pointer (manifest.py), and failures.jsonl (failures.py). Reading an export
back is worker/export_read.py; docs/exports.md is the consumers' guide.
"""

from worker.export.build import ExportOptions, ExportResult, build_export
from worker.export.failures import describe_warnings, failure_line

__all__ = ["ExportOptions", "ExportResult", "build_export", "describe_warnings", "failure_line"]

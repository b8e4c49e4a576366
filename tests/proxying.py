"""Helpers of the proxy crawl tests: a workflow over the lab's site (tests/proxy_lab.py),
the records of a run, and a search for a password in everything a run wrote."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.parquet as pq

from tests.crawling import FAST_POLITENESS
from tests.proxy_lab import ProxyLab
from trawl.local_outputs import exported_records
from workflows import Workflow, validate_data


def workflow(lab: ProxyLab, proxies: dict[str, Any], **fields: Any) -> Workflow:
    """An http-engine crawl of the lab's site from ``/p/0`` through ``proxies``; ``fields``
    override the top-level keys."""
    data: dict[str, Any] = {
        "name": "proxied-crawl",
        "start_urls": [lab.url("/p/0")],
        "engine": "http",
        "max_depth": 5,
        "politeness": FAST_POLITENESS,
        "retries": {"max_attempts": 3, "backoff_s": 0},
        "phases": [
            {
                "name": "page",
                "nodes": [
                    {"type": "extract", "fields": {"title": "h1"}},
                    {"type": "extract_links"},
                ],
            }
        ],
        "proxies": proxies,
        **fields,
    }
    return validate_data(data)


def titles(out_dir: Path, execution_id: str) -> dict[str, str]:
    return {r["url"]: r["data"]["title"] for r in exported_records(out_dir / execution_id)}


def everything_written(out_dir: Path) -> bytes:
    """Every file of a run as bytes; gzipped ones unpacked, Parquet read to rows."""
    chunks = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
        elif path.suffix == ".parquet":
            data = json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
        chunks.append(data)
    return b"\n".join(chunks)


def assert_nowhere(password: str, *texts: str | bytes) -> None:
    """Neither ``password`` nor its percent-encoded or Basic-auth forms are in ``texts``."""
    forms = {
        password,
        quote(password, safe=""),
        base64.b64encode(f"crawler:{password}".encode()).decode(),
    }
    for text in texts:
        blob = text if isinstance(text, bytes) else text.encode()
        for form in forms:
            assert form.encode() not in blob, f"{form!r} found in an output"

"""`trawl run --out gs://bucket/prefix`: an embedded run writes its parts and export to a
bucket (the GCS emulator here), keeps only its state on the local disk, and says where
everything went."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from backends.gcp import make_storage_client
from tests.crawling import FAST_POLITENESS, PAGE_PHASE
from tests.services.gcs import gcs_bucket, gcs_emulator
from tests.site import SiteServer

__all__ = ["gcs_bucket", "gcs_emulator"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
SIZE = 12


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "trawl", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_a_run_writes_its_outputs_to_the_bucket(tmp_path: Path, gcs_bucket: str) -> None:
    client = make_storage_client()
    try:
        client.create_bucket(gcs_bucket)
        with SiteServer() as site:
            workflow = tmp_path / "wf.json"
            workflow.write_bytes(
                msgspec.json.encode(
                    {
                        "name": "to-gcs",
                        "start_urls": [site.url(f"/graph/gcs/{SIZE}/0")],
                        "engine": "http",
                        "phases": [PAGE_PHASE],
                        "politeness": FAST_POLITENESS,
                    }
                )
            )
            done = run_cli("run", str(workflow), "--out", f"gs://{gcs_bucket}/runs", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        summary_at = re.search(rf"summary: gs://{gcs_bucket}/(\S+)", done.stderr)
        assert summary_at is not None, done.stderr
        summary = json.loads(
            client.bucket(gcs_bucket).blob(summary_at.group(1)).download_as_bytes()
        )
        assert summary["pages"]["succeeded"] == SIZE
        assert summary["records"] == SIZE
        names = [b.name for b in client.list_blobs(gcs_bucket)]
        assert all(name.startswith("runs/") for name in names), names
        assert any("/parts/" in name for name in names), names
        # Only the run's state stays local, where `--resume` finds it.
        local = [p.name for p in (tmp_path / ".trawl" / "gs" / gcs_bucket / "runs").rglob("*")]
        assert "state.db" in local
    finally:
        client.close()


def test_a_bad_bucket_url_is_one_line(tmp_path: Path) -> None:
    workflow = ROOT / "examples" / "aqua" / "aqua-http.yaml"
    done = run_cli("run", str(workflow), "--out", "gs:///nobucket", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "trawl: --out gs:///nobucket: expected gs://BUCKET or gs://BUCKET/PREFIX"
    )

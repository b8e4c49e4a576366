"""deploy.sh protects the data: Cloud SQL with daily backups, point-in-time recovery and a
maintenance window (on a new instance, and patched onto an existing one), the bucket's
lifecycle rules, and settings out of Cloud's range refused before anything is created. Run
against the stand-in ``gcloud`` of test_deploy.py, whose calls are read back."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_deploy import DEPLOY_SH, FAKE_GCLOUD

pytestmark = pytest.mark.integration  # runs deploy.sh

REPO = Path(__file__).resolve().parents[2]
# An instance that exists, created before point-in-time recovery was asked for.
EXISTING_SQL = """case "$*" in
  "sql instances describe trawl-pg --project demo-project") exit 0 ;;
  *pointInTimeRecoveryEnabled*) echo False ; exit 0 ;;
esac
"""


def deploy(
    tmp_path: Path, *, before: str = "", **extra: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    """deploy.sh against the stand-in (``before``: shell run first, to answer some calls
    otherwise); its result and the gcloud calls it made."""
    bin_dir, out = tmp_path / "bin", tmp_path / "out"
    bin_dir.mkdir()
    out.mkdir()
    gcloud = bin_dir / "gcloud"
    shebang, rest = FAKE_GCLOUD.split("\n", 1)
    gcloud.write_text(f'{shebang}\nprintf "%s\\n" "$*" >> "$FAKE_GCLOUD_LOG.all"\n{before}{rest}')
    gcloud.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "LC_ALL": "C",
        "PROJECT": "demo-project",
        "BUILD_WITH": "none",
        "IMAGE_TAG": "test",
        "FAKE_GCLOUD_LOG": str(tmp_path / "gcloud.log"),
        "FAKE_GCLOUD_OUT": str(out),
        **extra,
    }
    result = subprocess.run(
        ["bash", str(DEPLOY_SH)], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    log = tmp_path / "gcloud.log.all"
    calls = [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def flags(call: list[str]) -> dict[str, str | None]:
    """``--name value`` and bare ``--name`` (None) of one call."""
    found: dict[str, str | None] = {}
    for n, arg in enumerate(call):
        if arg.startswith("--"):
            following = call[n + 1] if n + 1 < len(call) else "--"
            found[arg] = None if following.startswith("--") else following
    return found


PROTECTION = {
    "--backup-start-time": "03:00",
    "--retained-backups-count": "14",
    "--enable-point-in-time-recovery": None,
    "--retained-transaction-log-days": "7",
    "--maintenance-window-day": "SUN",
    "--maintenance-window-hour": "4",
    "--deletion-protection": None,
}


def test_a_new_instance_has_backups_pitr_and_a_maintenance_window(tmp_path: Path) -> None:
    result, calls = deploy(tmp_path)
    assert result.returncode == 0, result.stderr
    [create] = [c for c in calls if c[:3] == ["sql", "instances", "create"]]
    assert flags(create).items() >= PROTECTION.items()
    assert not [c for c in calls if c[:3] == ["sql", "instances", "patch"]]
    [lifecycle] = [c for c in calls if c[:3] == ["storage", "buckets", "update"]]
    assert lifecycle[3] == "gs://demo-project-trawl-outputs"
    assert flags(lifecycle)["--lifecycle-file"] == str(REPO / "deploy" / "gcs-lifecycle.json")


def test_an_existing_instance_is_patched_and_told_it_restarts_once(tmp_path: Path) -> None:
    result, calls = deploy(
        tmp_path,
        before=EXISTING_SQL,
        SQL_BACKUPS_KEPT="30",
        SQL_MAINTENANCE_DAY="SAT",
        SQL_MAINTENANCE_HOUR="23",
    )
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c[:3] == ["sql", "instances", "create"]]
    [patch] = [c for c in calls if c[:3] == ["sql", "instances", "patch"]]
    expected = PROTECTION | {
        "--retained-backups-count": "30",
        "--maintenance-window-day": "SAT",
        "--maintenance-window-hour": "23",
        "--quiet": None,
    }
    assert flags(patch).items() >= expected.items()
    assert "turning on point-in-time recovery for trawl-pg: Cloud SQL restarts it once" in (
        result.stderr
    )


def test_a_shared_bucket_keeps_its_own_lifecycle(tmp_path: Path) -> None:
    result, calls = deploy(tmp_path, GCS_PREFIX="trawl")
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c[:3] == ["storage", "buckets", "update"]]
    assert 'matchesPrefix ["trawl/"]' in result.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("SQL_BACKUP_START_TIME", "3am", "SQL_BACKUP_START_TIME must be HH:MM (UTC), not 3am"),
        ("SQL_BACKUPS_KEPT", "0", "SQL_BACKUPS_KEPT must be 1..365"),
        ("SQL_PITR_LOG_DAYS", "14", "SQL_PITR_LOG_DAYS must be 1..7"),
        ("SQL_MAINTENANCE_DAY", "SUNDAY", "SQL_MAINTENANCE_DAY must be one of MON TUE"),
        ("SQL_MAINTENANCE_HOUR", "24", "SQL_MAINTENANCE_HOUR must be 0..23 (UTC)"),
    ],
)
def test_settings_out_of_range_are_refused_before_anything_is_made(
    tmp_path: Path, setting: str, value: str, message: str
) -> None:
    result, calls = deploy(tmp_path, **{setting: value})
    assert result.returncode == 1
    assert message in result.stderr
    assert calls == []

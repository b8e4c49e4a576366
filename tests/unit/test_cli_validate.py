"""``trawl validate`` and ``trawl schema`` as a user sees them: output, exit codes, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from trawl.cli import main

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "examples" / "quickstart.yaml"

VALID = """\
name: tiny
start_urls: [http://example.com/]
phases:
  - {name: a, transitions: [{when: {}, to: b}]}
  - {name: b}
"""

THREE_PROBLEMS = """\
name: Bad Name
start_urls: [http://example.com/]
max_depth: -1
phases:
  - name: a
    nodes:
      - {type: extract_links, selectr: a}
"""


@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    path = tmp_path / "ok.yaml"
    path.write_text(VALID)
    return path


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(THREE_PROBLEMS)
    return path


def test_valid_workflow(valid_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(valid_file)]) == 0
    out, err = capsys.readouterr()
    assert out == f"OK: {valid_file} (tiny, 2 phases)\n"
    assert err == ""


def test_quickstart_example_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(QUICKSTART)]) == 0
    assert capsys.readouterr().out == f"OK: {QUICKSTART} (quickstart, 2 phases)\n"


def test_invalid_workflow_lists_every_problem(
    bad_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(bad_file)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{bad_file}: 3 problems",
        'name: must match ^[a-z0-9][a-z0-9-]{1,62}$, got "Bad Name"',
        "max_depth: must be >= 0",
        "phases[0].nodes[0].selectr: unknown key 'selectr' (expected one of: attr, limit, "
        "marker, selector, type); did you mean 'selector'?",
    ]


def test_syntax_error_is_a_problem_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nphases: [\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: 1 problem\nYAML error at line 3, column 1:")
    assert "Traceback" not in err


def test_set_overrides_are_validated(valid_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(valid_file), "--set", "max_depth=1", "--set", "engine=http"]) == 0
    assert main(["validate", str(valid_file), "--set", "max_depth=-2"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "max_depth: must be >= 0"
    assert main(["validate", str(valid_file), "--set", "phases[7].engine=http"]) == 1
    err = capsys.readouterr().err
    assert "phases[7].engine: --set: phases has 2 items, no index 7" in err


def test_set_addresses_a_phase_by_name(
    valid_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(valid_file), "--set", "phases[b].engine=http"]) == 0
    assert capsys.readouterr().out == f"OK: {valid_file} (tiny, 2 phases)\n"
    argv = ["validate", str(valid_file), "--set", "phases[c].engine=http", "--set", "max_depth=x"]
    assert main(argv) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{valid_file}: 2 problems",
        "phases[c].engine: --set: no phase named 'c' (phases: a, b)",
        'max_depth: expected an integer, got string "x"',
    ]


def test_set_can_repair_a_file(bad_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fixes = ["name=fixed", "max_depth=2", "phases[0].nodes[0]={type: extract_links}"]
    argv = ["validate", str(bad_file)] + [arg for fix in fixes for arg in ("--set", fix)]
    assert main(argv) == 0
    assert capsys.readouterr().out == f"OK: {bad_file} (fixed, 1 phase)\n"


@pytest.mark.parametrize(
    ("name", "message"),
    [("missing.yaml", "no such file"), (".", "is a directory, not a workflow file")],
)
def test_unreadable_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, message: str
) -> None:
    target = tmp_path / name
    assert main(["validate", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"trawl: {target}: {message}\n"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "validate" in capsys.readouterr().err
    assert main(["validate"]) == 2
    assert "WORKFLOW" in capsys.readouterr().err
    assert main(["no-such-command"]) == 2


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "Trawl workflow"
    assert "Workflow" in schema["$defs"]


def run_trawl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trawl", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


@pytest.mark.integration  # runs `python -m trawl` as a child process
def test_python_dash_m_trawl(bad_file: Path, valid_file: Path) -> None:
    ok = run_trawl("validate", str(valid_file))
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, f"OK: {valid_file} (tiny, 2 phases)\n", "")
    bad = run_trawl("validate", str(bad_file))
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert bad.stderr.splitlines()[0] == f"{bad_file}: 3 problems"
    assert "Traceback" not in bad.stderr
    missing = run_trawl("validate", "does/not/exist.yaml")
    assert (missing.returncode, missing.stderr) == (2, "trawl: does/not/exist.yaml: no such file\n")

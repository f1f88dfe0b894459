"""Smoke run of benchmarks/diff_find.py at a tiny scale, so that the script cannot silently rot
(the figures are the benchmark's job, not asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_diff_find_benchmark_runs_and_finds_what_it_built(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["--files", "2000", "--backups", "8", "--find-files", "300", "--runs", "1"]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "diff_find.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    for name in ("diff", "find", "find_glob"):
        assert result[name]["all"][0]["rc"] == 0
        assert result[name]["wall_seconds"] > 0
    # the find child printed: backups searched, paths found, versions of the first paths
    assert result["output"][-1].startswith("8 ")

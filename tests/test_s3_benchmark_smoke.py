"""Smoke run of benchmarks/s3_compare.py at a tiny scale, so the S3 benchmark cannot silently
rot: its own SeaweedFS, both tools through the counting proxy, every step, restores checked,
and the copy beside the floor put. Timings are not asserted: they are the benchmark's job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import compare  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")
def test_s3_compare_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "s3_compare.py"),
            "--scale",
            "0.005",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    assert report["tools"] == ["nexus", "restic"]
    for label in compare.OPS.values():
        assert label in proc.stdout
    for t in report["tools"]:
        run = report["runs"][0][t]
        assert run["errors"] == [], run["errors"]
        assert run["restore_ok"] and run["restore_file_ok"]
        for op in compare.OPS:
            figures = report["median"][t][op]
            assert figures["wall"] > 0 and figures["requests"] > 0, (t, op)
        # what the full backup sent is about what the bucket then held
        sent, held = report["median"][t]["backup_full"]["up"], report["median"][t]["repo_first"]
        assert held <= sent < 2 * held + (1 << 20), (t, sent, held)
    copy = report["copy"]
    assert copy["copy"]["up"] >= copy["bytes"] and copy["put"]["requests"] >= 1
    assert "copy / put wall" in proc.stdout

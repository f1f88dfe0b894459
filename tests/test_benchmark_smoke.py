"""Smoke run of the benchmarks at a tiny scale, so the scripts cannot silently rot.

Runs the real compare.py (nexus-backup always; tar+zstd, restic and borg when installed)
and a scaled-down scale.py, then checks that every row and figure is there and that each
tool's restores matched the corpus. Timings are not asserted: they are the benchmark's job.
"""

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
import corpus  # noqa: E402

pytestmark = pytest.mark.slow


def _tools() -> list[str]:
    tools = ["nexus"]
    if shutil.which("tar") and shutil.which("zstd"):
        tools.append("tar")
    tools += [t for t, exe in (("restic", "restic"), ("borg", "borg")) if shutil.which(exe)]
    return tools


def test_corpus_is_deterministic_and_mutates(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    sa = corpus.generate(a, scale=0.002)
    corpus.generate(b, scale=0.002)
    assert sa.files > 20 and sa.symlinks >= 3 and sa.empty_dirs >= 3
    assert corpus.digest(a) == corpus.digest(b)
    assert (a / corpus.SINGLE_FILE).is_file()
    before = corpus.digest(a)
    m = corpus.mutate(a, 1)
    corpus.mutate(b, 1)
    assert m.changed and corpus.digest(a) == corpus.digest(b) != before
    assert any(c.startswith("-") for c in m.changed)  # something removed
    assert any("pkg_new" in c for c in m.changed)  # something added


def test_compare_smoke(tmp_path: Path) -> None:
    tools = _tools()
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "compare.py"),
            "--scale",
            "0.005",
            "--runs",
            "1",
            "--tools",
            ",".join(tools),
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
    table = proc.stdout
    assert report["tools"] == tools
    for label in [*compare.OPS.values(), *compare.SIZES.values()]:
        assert label in table
    for t in tools:
        assert compare.LABELS[t] in table
        run = report["runs"][0][t]
        assert run["errors"] == [], run["errors"]
        assert run["restore_ok"] and run["restore_file_ok"]
        for op in compare.OPS:
            figures = report["median"][t][op]
            assert figures is not None, (t, op)
            assert figures["wall"] > 0 and figures["rss_mib"] > 0
        for key in compare.SIZES:
            assert report["median"][t][key] > 0
    for t in tools[1:]:
        assert f"nx/{compare.LABELS[t]}" in table
        assert report["ratios"][t]["backup_full"]["wall"] > 0
    assert report["machine"]["cores"] and report["versions"]["nexus"]
    if "restic" in tools:
        assert report["targets"]


def test_scale_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "scale.py"),
            "--files",
            "300",
            "--big-gib",
            "0.01",
            "--flat-files",
            "2000",
            "--runs",
            "1",
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
    assert report["tree"]["files"] == 300 and report["tree"]["ratio_to_find"] > 0
    assert report["big"]["restored_identical"] is True
    assert report["big"]["backup"]["rss_mib"] > 0
    assert "no-change backup / find" in proc.stdout

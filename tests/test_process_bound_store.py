"""A `memory://` store lives inside one process (the engine's tests use it). Named to the CLI,
as a repository or as a copy target, it took backups and copies and reported them done, and
they were gone when the command ended; set as copy-to, every later backup reported a copy
that never existed. The CLI and the TUI refuse it in one line, and nothing is written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import process_bound
from tui.validation import CopyTarget

REPO = Path(__file__).resolve().parent.parent


def _cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def _one_line(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "memory://" in lines[0] and "gone when it ends" in lines[0]
    assert "Traceback" not in done.stderr


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    root, src = tmp_path / "root", tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    done = _cli(root, "create", "web", str(src))
    assert done.returncode == 0, done.stderr
    return root, src


def _state(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.parts and "locks" not in p.parts
    }


@pytest.mark.parametrize("url", ["memory://x", "MEMORY://x/sub", "memory:x"])
def test_a_memory_repository_is_refused_before_anything_is_written(
    tmp_path: Path, url: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha\n")
    root = tmp_path / "root"
    _one_line(_cli(root, "--repo", url, "create", "web", str(src)))
    _one_line(_cli(root, "list", "web", env={"NEXUS_BACKUP_REPOSITORY": url}))
    assert not (root / "backups").exists()


def test_a_copy_to_memory_is_refused(project: tuple[Path, Path]) -> None:
    root, _src = project
    before = _state(root)
    _one_line(_cli(root, "copy", "web", "--to", "memory://twin"))
    assert _state(root) == before


def test_copy_to_memory_is_never_stored_as_a_setting(project: tuple[Path, Path]) -> None:
    root, src = project
    before = _state(root)
    _one_line(_cli(root, "settings", "web", "copy-to", "memory://twin"))
    assert _state(root) == before
    shown = _cli(root, "--json", "settings", "web")
    assert json.loads(shown.stdout).get("copy_to") is None
    (src / "b.txt").write_text("bravo\n")
    done = _cli(root, "create", "web", str(src))
    assert done.returncode == 0 and "Copied to" not in done.stdout


def test_the_rule_and_the_tuis_copy_field() -> None:
    assert process_bound("memory://x") and process_bound("Memory://x")
    assert not process_bound("s3://bucket/p") and not process_bound("/srv/backups")
    assert not process_bound("memory-of-a-dir")  # a relative directory's name, not a URL
    assert not CopyTarget().validate("memory://twin").is_valid
    assert CopyTarget().validate("s3://bucket/prefix").is_valid

"""The manager's view for the faces: change tokens, project existence, writability.

The TUI polls `change_tokens` to notice what another process did; a token that misses a
change leaves a stale screen, one that changes by itself reloads for nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.manager import BackupManager
from core.models import BackupType, CreateRequest, ListFilter

REPO = Path(__file__).resolve().parent.parent


def _other_process(root: Path, *args: str) -> None:
    """Run the real CLI in a second process against `root`."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEXUS_BACKUP_ROOT", "NEXUS_DEBUG")}
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[BackupManager, Path, Path]:
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("hello\n")
    return BackupManager(root), root, data


async def test_tokens_change_with_backups_deletes_and_settings(
    setup: tuple[BackupManager, Path, Path], tmp_path: Path
) -> None:
    mgr, root, data = setup
    await mgr.create_project("p", str(data))
    await mgr.create_project("q", str(data))
    first = await mgr.create(
        CreateRequest(project_id="p", backup_type=BackupType.FULL, data_dir=str(data))
    )
    start = await mgr.change_tokens()
    assert set(start) == {"p", "q"}

    # reading changes nothing: list, info, browse, projects, verify
    await mgr.list("p", ListFilter())
    await mgr.info("p", first.id)
    await mgr.browse("p", first.id)
    await mgr.projects()
    await mgr.verify("p", first.id)
    assert await mgr.change_tokens() == start
    assert BackupManager(root).change_tokens_blocking() == start

    # a backup made by another process
    _other_process(root, "create", "p", str(data))
    after_backup = await mgr.change_tokens()
    assert after_backup["p"] != start["p"]
    assert after_backup["q"] == start["q"]

    # a delete
    await mgr.delete("p", first.id)
    after_delete = await mgr.change_tokens()
    assert after_delete["p"] != after_backup["p"]
    assert after_delete["q"] == start["q"]

    # a settings change (the project's data directory), by another manager
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    await BackupManager(root).create_project("q", str(elsewhere))
    after_settings = await mgr.change_tokens()
    assert after_settings["q"] != start["q"]
    assert after_settings["p"] == after_delete["p"]
    assert await mgr.change_tokens() == after_settings


async def test_status_change_changes_the_token(setup: tuple[BackupManager, Path, Path]) -> None:
    """A backup left RUNNING by a dead process is marked FAILED by recovery: a new status."""
    mgr, root, data = setup
    await mgr.create_project("p", str(data))
    meta = await mgr.create(
        CreateRequest(project_id="p", backup_type=BackupType.FULL, data_dir=str(data))
    )
    before = mgr.change_tokens_blocking()
    await mgr.verify("p", meta.id)
    assert mgr.change_tokens_blocking() == before
    path = root / "backups" / "p" / f"backup_{meta.id}" / "metadata.json"
    text = path.read_text()
    assert '"completed"' in text
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text.replace('"completed"', '"failed"'))
    os.replace(tmp, path)
    assert mgr.change_tokens_blocking()["p"] != before["p"]


def test_project_exists_and_empty_roots(tmp_path: Path) -> None:
    mgr = BackupManager(tmp_path / "nothing-here")
    assert mgr.change_tokens_blocking() == {}
    assert mgr.project_ids_blocking() == []
    assert not mgr.has_projects()
    assert not mgr.project_exists_blocking("p")
    assert not mgr.project_exists_blocking("../etc")
    assert not mgr.read_only()
    assert not (tmp_path / "nothing-here").exists()  # looking wrote nothing


async def test_project_ids_and_existence(setup: tuple[BackupManager, Path, Path]) -> None:
    mgr, root, data = setup
    await mgr.create_project("b", str(data))
    await mgr.create_project("a", str(data))
    (root / "backups" / "stray").mkdir()  # no config: not a project
    assert await mgr.project_ids() == ["a", "b"]
    assert await mgr.project_exists("a")
    assert not await mgr.project_exists("zzz")
    assert mgr.has_projects()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_root(tmp_path: Path) -> None:
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups").chmod(0o500)
    try:
        mgr = BackupManager(tmp_path)
        assert mgr.read_only()
        assert mgr.read_only_reason() == "you may not write to it"
    finally:
        (tmp_path / "backups").chmod(0o700)

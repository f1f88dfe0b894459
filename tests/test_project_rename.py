"""Renaming a project: one rename of its directory under its exclusive lock, so every backup,
key and setting moves whole and reads under the new name (restores byte for byte, encrypted
ones too), its logs follow, and it refuses what would lose or mix data: a name in use, a busy
project, a repository on object storage."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from store_helpers import fast_kdf

from core import manager as manager_module
from core.errors import Busy, Conflict, InvalidInput, NotFound
from core.manage import projects
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.repo import locks


async def _made(mgr: BackupManager, data_dir: Path, project: str = "old") -> list[str]:
    ids = []
    for _ in range(2):
        ids.append((await mgr.create(CreateRequest(project_id=project, data_dir=str(data_dir)))).id)
    return ids


async def test_every_backup_moves_and_restores_under_the_new_name(
    root: Path, data_dir: Path, tmp_path: Path, tree_of
):
    mgr = BackupManager(root)
    ids = await _made(mgr, data_dir)
    summary = await mgr.rename_project("old", "new")
    assert summary.project_id == "new" and summary.backups == 2
    assert await mgr.project_ids() == ["new"]
    with pytest.raises(NotFound):
        await mgr.list("old")
    fresh = BackupManager(root)  # as another process sees it
    listed = await fresh.list("new")
    assert sorted(m.id for m in listed) == sorted(ids)
    assert {m.project_id for m in listed} == {"new"}
    out = tmp_path / "out"
    await fresh.restore(RestoreRequest(project_id="new", backup_id=ids[-1], restore_dir=str(out)))
    assert tree_of(out) == tree_of(data_dir)
    assert not list((root / "backups" / "new" / "locks").glob("*"))  # its own lock is gone
    logs = sorted(p.name for p in (root / "logs").glob("*.log"))
    assert logs and all(name.startswith("new_") for name in logs)
    assert "renamed from old" in (root / "logs" / logs[-1]).read_text()
    await fresh.create(CreateRequest(project_id="new", data_dir=str(data_dir)))  # and goes on


async def test_refused_onto_a_name_in_use_or_a_busy_project(
    root: Path, data_dir: Path, monkeypatch
):
    mgr = BackupManager(root)
    await _made(mgr, data_dir)
    await _made(mgr, data_dir, "taken")
    with pytest.raises(Conflict, match="already exists"):
        await mgr.rename_project("old", "taken")
    (root / "backups" / "stranger").mkdir()
    (root / "backups" / "stranger" / "x").write_text("someone's")
    with pytest.raises(Conflict):
        await mgr.rename_project("old", "stranger")
    assert (root / "backups" / "stranger" / "x").read_text() == "someone's"
    with pytest.raises(ValueError, match="invalid project_id"):
        await mgr.rename_project("old", "../escape")
    with pytest.raises(InvalidInput):
        await mgr.rename_project("old", "old")
    monkeypatch.setattr(manager_module, "LOCK_TIMEOUT", 0.2)
    store = projects.project_store(mgr.store, "old")
    with (
        locks.acquire(store, exclusive=False, operation="restore", timeout=1),
        pytest.raises(Busy),
    ):
        await mgr.rename_project("old", "new")
    assert sorted(await mgr.project_ids()) == ["old", "taken"]
    assert len(await mgr.list("old")) == 2


async def test_an_encrypted_project_opens_under_its_new_name(
    root: Path, data_dir: Path, monkeypatch, tmp_path: Path, tree_of
):
    fast_kdf(monkeypatch)
    mgr = BackupManager(root, password=lambda _p: "secret", encrypt=True)
    ids = await _made(mgr, data_dir)
    await mgr.rename_project("old", "new")
    other = BackupManager(root, password=lambda _p: "secret")
    out = tmp_path / "out"
    await other.restore(RestoreRequest(project_id="new", backup_id=ids[0], restore_dir=str(out)))
    assert tree_of(out) == tree_of(data_dir)


async def test_object_storage_is_refused_with_one_line(root: Path, data_dir: Path):
    mgr = BackupManager(root, repository="memory://rename-test")
    await _made(mgr, data_dir)
    with pytest.raises(InvalidInput, match="local disk"):
        await mgr.rename_project("old", "new")
    assert await mgr.project_ids() == ["old"]


def test_the_cli_renames_and_says_so(tmp_path: Path, data_dir: Path):
    root = tmp_path / "r"
    env = {**os.environ, "NEXUS_BACKUP_ROOT": str(root)}
    run = [sys.executable, "-m", "cli"]
    assert subprocess.run([*run, "create", "web", str(data_dir)], env=env).returncode == 0
    res = subprocess.run(
        [*run, "rename-project", "web", "site"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert "site" in res.stdout
    again = subprocess.run(
        [*run, "rename-project", "web", "x"], env=env, capture_output=True, text=True
    )
    assert again.returncode == 1 and "Traceback" not in again.stderr
    bad = subprocess.run(
        [*run, "rename-project", "site", "a/b"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

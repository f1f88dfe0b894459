"""What a backup may not read (design I13), attacked as an auditor would: the nexus root, its
repositories or logs named as the data directory directly, through a symlink, a bind mount or
a repository kept elsewhere, and a data directory swapped for a symlink into the repository by
another thread while backups run. Judged by what a user checks: the refusal is one error and
writes nothing, and no backup ever holds a byte of the repository."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from rel_harness import bind_mount as _bind
from rel_harness import regular_files as _files

from core.errors import InvalidInput, NexusError
from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest
from core.repo import manifest as mf
from core.repo.repository import Repository


async def _repository(tmp_path: Path) -> tuple[BackupManager, Path]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("the data")
    mgr = BackupManager(tmp_path / "root")
    await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
    return mgr, tmp_path / "root"


def _names(root: Path, project: str, backup_id: str) -> set[str]:
    repo = Repository(root, project)
    return {os.fsdecode(e.path) for e in mf.iter_entries(repo.read_manifest(backup_id))}


@pytest.mark.parametrize(
    "source", ["root", "backups", "backups/web", "backups/web/packs", "logs", "link", "bind"]
)
async def test_a_repository_named_as_the_data_directory_is_refused(tmp_path, source):
    mgr, root = await _repository(tmp_path)
    if source == "link":
        (tmp_path / "link").symlink_to(root / "backups")
        data = tmp_path / "link"
    elif source == "bind":
        data = tmp_path / "mnt"
        ctx = _bind(root / "backups" / "web", data)
        ctx.__enter__()
    else:
        data = root if source == "root" else root / source
    before = _files(root / "backups")
    try:
        with pytest.raises(InvalidInput, match=r"data_dir .*(repository|root)"):
            await mgr.create(CreateRequest(project_id="other", data_dir=str(data)))
        with pytest.raises(InvalidInput):  # the project's own, re-pointed on purpose
            await mgr.create(
                CreateRequest(project_id="web", data_dir=str(data), data_dir_change=True)
            )
    finally:
        if source == "bind":
            ctx.__exit__(None, None, None)
    assert _files(root / "backups") == before, "a refused backup wrote to the repository"
    assert not (root / "backups" / "other").exists()


async def test_a_repository_kept_elsewhere_is_not_a_data_directory(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "f.txt").write_text("x")
    mgr = BackupManager(tmp_path / "root", repository=str(tmp_path / "vault"))
    await mgr.create(CreateRequest(project_id="web", data_dir=str(tmp_path / "data")))
    for inside in (tmp_path / "vault", tmp_path / "vault" / "web"):
        with pytest.raises(InvalidInput, match="repository"):
            await mgr.create(CreateRequest(project_id="v", data_dir=str(inside)))


async def test_a_data_directory_holding_the_root_leaves_the_repository_out(tmp_path):
    """A home directory that holds the nexus root is a fair data directory: its repository
    and logs are skipped, everything else is backed up."""
    home = tmp_path / "home"
    (home / "src").mkdir(parents=True)
    (home / "src" / "main.py").write_text("print(1)")
    mgr = BackupManager(home / "nexus")
    meta = await mgr.create(CreateRequest(project_id="home", data_dir=str(home)))
    assert meta.status == BackupStatus.COMPLETED
    names = _names(home / "nexus", "home", meta.id)
    assert "src/main.py" in names
    assert not any(n.startswith(("nexus/backups", "nexus/logs")) for n in names), names


async def test_a_data_directory_swapped_for_a_link_into_the_repository_is_never_read(tmp_path):
    """Another thread swaps the data directory for a symlink to the repository and back, as
    fast as it can, while backups of it run: each refuses, fails, or holds the data alone."""
    mgr, root = await _repository(tmp_path)
    data, real, link = tmp_path / "data", tmp_path / "data.real", tmp_path / "data.link"
    link.symlink_to(root / "backups")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(data, real)
            os.rename(link, data)
            time.sleep(0.0005)
            os.rename(data, link)
            os.rename(real, data)

    swapper = threading.Thread(target=swap)
    swapper.start()
    outcomes = {"refused": 0, "completed": 0, "failed": 0}
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            try:
                meta = await mgr.create(CreateRequest(project_id="web", data_dir=str(data)))
            except InvalidInput:
                outcomes["refused"] += 1
                continue
            except NexusError:
                outcomes["failed"] += 1
                continue
            if meta.status != BackupStatus.COMPLETED:
                outcomes["failed"] += 1
                continue
            outcomes["completed"] += 1
            assert _names(root, "web", meta.id) == {"f.txt"}, "a backup read the repository"
    finally:
        stop.set()
        swapper.join()
    assert outcomes["completed"] > 0, outcomes


async def test_the_projects_copy_inside_its_data_directory_is_not_backed_up(tmp_path):
    """copy-to names a directory inside the data directory: each backup would otherwise
    store the copies of the ones before it."""
    mgr, root = await _repository(tmp_path)
    mirror = tmp_path / "data" / "mirror"
    await mgr.set_copy_to("web", str(mirror))
    first = await mgr.create(CreateRequest(project_id="web", data_dir=str(tmp_path / "data")))
    await mgr.copy("web", str(mirror), [first.id])
    assert any(mirror.rglob("packs/*/*")), "the copy was made"
    again = await mgr.create(CreateRequest(project_id="web", data_dir=str(tmp_path / "data")))
    assert _names(root, "web", again.id) == {"f.txt"}

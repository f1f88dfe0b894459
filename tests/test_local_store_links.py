"""Invariant I12: nothing is written or deleted through a symbolic link below a local
repository's own directory. Each test puts a link where the layout has a directory (the
project's own, `packs/`, a backup's), pointing into a stranger's directory filled with files
of the very names the engine writes and deletes, and checks the stranger's directory is
byte for byte as it was: before the operation, and while another process swaps the
directory for the link over and over."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.errors import NexusError
from core.manager import BackupManager
from core.models import CreateRequest
from core.storage import StoreError
from core.storage.local import LocalStore


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def _mirror(victim: Path, real: Path) -> None:
    """The stranger's directory holds a file of every name `real` holds (other bytes)."""
    for p in real.rglob("*"):
        target = victim / p.relative_to(real)
        if p.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"a stranger's file: " + p.name.encode())


def test_the_store_writes_and_deletes_nothing_through_a_link(tmp_path: Path) -> None:
    root = LocalStore(tmp_path / "repo")
    victim = tmp_path / "victim"
    (victim / "ab").mkdir(parents=True)
    (victim / "ab" / "obj").write_text("precious")
    (victim / "old").write_text("precious too")
    os.symlink(victim, tmp_path / "repo" / "linked")
    store = root.sub("linked")
    for attempt in (
        lambda: store.prepare(),
        lambda: store.put("ab/new", b"x"),
        lambda: store.put_new("new", b"x"),
        lambda: store.put_if_unchanged("old", b"x", None),
        lambda: store.delete("ab/obj"),
        lambda: store.delete("old"),
        lambda: store.delete_prefix("ab/"),
        lambda: store.remove_partials(),
        lambda: root.sub("linked/ab").put("new", b"x"),
    ):
        with pytest.raises(StoreError, match="symbolic link"):
            attempt()
    assert _files(victim) == {"ab/obj": b"precious", "old": b"precious too"}
    # a link in an object's directory's place, below the store
    real = LocalStore(tmp_path / "repo" / "real")
    real.put("ab/obj", b"ours")
    real.delete_prefix("ab/")
    os.symlink(victim / "ab", tmp_path / "repo" / "real" / "ab")
    with pytest.raises(StoreError, match="symbolic link"):
        real.put("ab/obj", b"ours")
    with pytest.raises(StoreError, match="symbolic link"):
        real.delete("ab/obj")
    real.delete_prefix("ab/")  # the link itself goes, not what it points to
    assert not (tmp_path / "repo" / "real" / "ab").exists()
    assert _files(victim) == {"ab/obj": b"precious", "old": b"precious too"}


def test_a_repository_opened_on_a_link_is_the_users_choice(tmp_path: Path) -> None:
    """The directory the store is opened on may be a link (`--repo /srv/link`): it is the
    one the user named. Only links below it are refused."""
    real = tmp_path / "disk"
    real.mkdir()
    os.symlink(real, tmp_path / "repo")
    store = LocalStore(tmp_path / "repo").sub("backups/p")
    store.prepare()  # as a new repository is made
    store.put("packs/ab/x", b"1")
    store.put_new("config.json", b"{}")
    assert (real / "backups" / "p" / "packs" / "ab" / "x").read_bytes() == b"1"
    store.delete("packs/ab/x")
    assert not (real / "backups" / "p" / "packs").exists()  # emptied directories pruned


async def test_a_backup_into_a_project_that_is_a_link_writes_nothing_there(
    root: Path, data_dir: Path, tmp_path: Path
) -> None:
    mgr = BackupManager(root)
    await mgr.create(CreateRequest(project_id="real", data_dir=str(data_dir)))
    victim = tmp_path / "victim"
    _mirror(victim, root / "backups" / "real")
    before = _files(victim)
    os.symlink(victim, root / "backups" / "evil")
    with pytest.raises(NexusError):
        await BackupManager(root).create(CreateRequest(project_id="evil", data_dir=str(data_dir)))
    assert _files(victim) == before
    for project in ("evil", "real"):
        with contextlib.suppress(NexusError):
            await BackupManager(root).delete_project(project)
    assert _files(victim) == before


async def test_delete_project_leaves_a_linked_packs_directory_and_says_so(
    root: Path, data_dir: Path, tmp_path: Path
) -> None:
    mgr = BackupManager(root)
    await mgr.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    packs = root / "backups" / "p" / "packs"
    victim = tmp_path / "victim"
    _mirror(victim, packs)  # files named as the packs the delete removes
    before = _files(victim)
    subprocess.run(["rm", "-rf", str(packs)], check=True)
    os.symlink(victim, packs)
    result = await BackupManager(root).delete_project("p")
    assert "packs" in result.kept
    assert _files(victim) == before


_SWAPPER = """
import os, sys, time
real, link, parked, stop = sys.argv[1:5]
while not os.path.exists(stop):
    try:
        os.rename(real, parked)
        os.symlink(link, real)
        time.sleep(0.0005)
        os.unlink(real)
        os.rename(parked, real)
    except OSError:
        pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("swapped", ["index", "packs", "backup"])
async def test_a_directory_swapped_for_a_link_meanwhile_deletes_nothing_outside(
    root: Path, data_dir: Path, tmp_path: Path, swapped: str
) -> None:
    """Another process swaps a directory of the layout for a link into a stranger's copy of
    it, thousands of times, while backups are deleted and the project then deleted: the
    stranger's files all stay. (The operations may fail; they may not follow the link.)"""
    mgr = BackupManager(root)
    made = []
    for i in range(4):
        (data_dir / f"f{i}.txt").write_text(f"version {i}\n" * 500)
        made.append(await mgr.create(CreateRequest(project_id="p", data_dir=str(data_dir))))
    project = root / "backups" / "p"
    real = project / (f"backup_{made[0].id}" if swapped == "backup" else swapped)
    victim = tmp_path / "victim"
    _mirror(victim, real)
    before = _files(victim)
    stop = tmp_path / "stop"
    parked = tmp_path / "parked"
    swapper = subprocess.Popen(
        [sys.executable, "-c", _SWAPPER, str(real), str(victim), str(parked), str(stop)]
    )
    try:
        time.sleep(0.05)
        for meta in made[:3]:
            with contextlib.suppress(NexusError, OSError):
                await BackupManager(root).delete("p", meta.id)
        with contextlib.suppress(NexusError, OSError):
            await BackupManager(root).delete_project("p", backups=1)
    finally:
        stop.write_text("")
        swapper.wait(timeout=10)
    assert _files(victim) == before

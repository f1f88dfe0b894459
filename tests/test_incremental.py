"""Incremental backups read only what changed, and each one restores on its own."""

from __future__ import annotations

import os

import pytest
from store_helpers import project_store

from core.models import BackupType, CreateRequest, RestoreRequest


@pytest.fixture
def manager(engine):
    """This suite runs on every engine store (conftest.ENGINE_STORES)."""
    return engine


async def _backup(manager, data_dir, kind=BackupType.INCREMENTAL):
    return await manager.create(
        CreateRequest(project_id="inc", data_dir=str(data_dir), backup_type=kind)
    )


async def test_incremental_reads_only_changes(manager, data_dir, tmp_path, tree_of):
    first = await _backup(manager, data_dir, BackupType.FULL)
    state1 = tree_of(data_dir)

    (data_dir / "src" / "main.py").write_text("edited\n")  # edit
    (data_dir / "secret.txt").unlink()  # delete
    os.rename(data_dir / "run.sh", data_dir / "src" / "run.sh")  # rename (same inode)
    (data_dir / "new.txt").write_text("new file\n")  # add
    second = await _backup(manager, data_dir)
    state2 = tree_of(data_dir)

    s = second.stats
    assert second.parent_backup_id == first.id
    assert s.bytes_read < 1024  # the 6 MiB file was not read again
    assert s.files_removed == 2  # secret.txt and the old run.sh path
    assert s.files_changed == 1
    assert s.files_new == 2  # new.txt and src/run.sh (a new path)
    assert s.files_unchanged == 3

    for meta, state in ((first, state1), (second, state2)):
        out = tmp_path / f"out-{meta.id}"
        await manager.restore(
            RestoreRequest(project_id="inc", backup_id=meta.id, restore_dir=str(out))
        )
        assert tree_of(out) == state


async def test_same_size_same_mtime_edit_is_caught_by_ctime(manager, tmp_path, tree_of):
    d = tmp_path / "d"
    d.mkdir()
    f = d / "f.txt"
    f.write_text("aaaa")
    st = f.stat()
    await _backup(manager, d, BackupType.FULL)
    f.write_text("bbbb")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # hide the edit from mtime
    second = await _backup(manager, d)
    assert second.stats.files_changed == 1
    out = tmp_path / "out"
    await manager.restore(
        RestoreRequest(project_id="inc", backup_id=second.id, restore_dir=str(out))
    )
    assert (out / "f.txt").read_text() == "bbbb"


async def test_incremental_without_parent_reads_everything_and_warns(manager, data_dir):
    meta = await _backup(manager, data_dir)
    assert meta.parent_backup_id is None
    assert meta.stats.files_new == 6
    log = manager.logger.read("inc")
    assert any(r.level == "WARNING" and "no completed backup" in r.message for r in log)


async def test_nothing_changed_stores_nothing(manager, data_dir):
    await _backup(manager, data_dir, BackupType.FULL)
    again = await _backup(manager, data_dir, BackupType.SNAPSHOT)
    assert again.parent_backup_id is None  # a snapshot stands alone, reusing without a parent
    assert again.stats.bytes_read == 0
    assert again.stats.bytes_stored == 0
    assert again.stats.files_unchanged == 6


async def test_full_rereads_but_deduplicates(manager, data_dir):
    await _backup(manager, data_dir, BackupType.FULL)
    again = await _backup(manager, data_dir, BackupType.FULL)
    assert again.stats.bytes_read == again.size_bytes
    assert again.stats.bytes_stored == 0
    assert again.stats.files_unchanged == 6


async def test_deleting_parent_keeps_child_restorable(manager, data_dir, tmp_path, tree_of):
    first = await _backup(manager, data_dir, BackupType.FULL)
    (data_dir / "added.txt").write_text("x\n")
    second = await _backup(manager, data_dir)
    await manager.delete("inc", first.id)
    out = tmp_path / "out"
    await manager.restore(
        RestoreRequest(project_id="inc", backup_id=second.id, restore_dir=str(out))
    )
    assert tree_of(out) == tree_of(data_dir)
    verify = await manager.verify("inc", second.id)
    assert verify.ok


async def test_parent_without_manifest_falls_back_to_reading_all(manager, root, data_dir):
    first = await _backup(manager, data_dir, BackupType.FULL)
    project_store(manager, "inc").delete(f"backup_{first.id}/data/manifest.zst")
    meta = await _backup(manager, data_dir, BackupType.INCREMENTAL)
    assert meta.parent_backup_id is None
    assert meta.stats.bytes_read == meta.size_bytes
    assert any("unusable" in r.message for r in manager.logger.read("inc"))

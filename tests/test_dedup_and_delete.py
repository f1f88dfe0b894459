"""Content-defined dedup and space reclaim."""

from __future__ import annotations

import os
import random

import pytest
from store_helpers import object_names, project_store, stored_bytes

from core.errors import NotFound
from core.models import BackupType, CreateRequest, RestoreRequest

MiB = 1024 * 1024


@pytest.fixture
def manager(engine):
    """This suite runs on every engine store (conftest.ENGINE_STORES)."""
    return engine


async def test_one_mib_rewritten_in_the_middle_stores_about_a_chunk(manager, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    rng = random.Random(7)
    data = bytearray(rng.randbytes(48 * MiB))
    (d / "ckpt.bin").write_bytes(data)
    first = await manager.create(CreateRequest(project_id="dd", data_dir=str(d)))
    assert first.stats.bytes_stored >= 48 * MiB
    data[24 * MiB : 25 * MiB] = rng.randbytes(MiB)
    (d / "ckpt.bin").write_bytes(data)
    second = await manager.create(
        CreateRequest(project_id="dd", data_dir=str(d), backup_type=BackupType.INCREMENTAL)
    )
    assert second.stats.bytes_read == 48 * MiB
    assert second.stats.bytes_stored < 8 * MiB, second.stats  # not the whole file
    out = tmp_path / "out"
    await manager.restore(
        RestoreRequest(project_id="dd", backup_id=second.id, restore_dir=str(out))
    )
    assert (out / "ckpt.bin").read_bytes() == bytes(data)


async def test_same_content_in_many_files_is_stored_once(manager, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    blob = os.urandom(2 * MiB)
    for i in range(5):
        (d / f"copy{i}.bin").write_bytes(blob)
    meta = await manager.create(CreateRequest(project_id="dd", data_dir=str(d)))
    assert meta.size_bytes == 10 * MiB
    assert meta.stats.bytes_stored < 3 * MiB


async def test_delete_gives_space_back(manager, root, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.bin").write_bytes(os.urandom(8 * MiB))
    keep = await manager.create(CreateRequest(project_id="dd", data_dir=str(d)))
    (d / "a.bin").unlink()
    (d / "b.bin").write_bytes(os.urandom(8 * MiB))
    gone = await manager.create(CreateRequest(project_id="dd", data_dir=str(d)))
    before = stored_bytes(project_store(manager, "dd"))
    result = await manager.delete("dd", gone.id)
    after = stored_bytes(project_store(manager, "dd"))
    assert before - after >= 7 * MiB
    assert result.bytes_reclaimed >= 7 * MiB
    with pytest.raises(NotFound, match="not found"):
        await manager.info("dd", gone.id)
    assert [m.id for m in await manager.list("dd")] == [keep.id]
    assert (await manager.verify("dd", keep.id)).ok
    out = tmp_path / "out"
    await manager.restore(RestoreRequest(project_id="dd", backup_id=keep.id, restore_dir=str(out)))
    assert len((out / "a.bin").read_bytes()) == 8 * MiB


async def test_delete_last_backup_empties_the_store(manager, root, data_dir):
    meta = await manager.create(CreateRequest(project_id="dd", data_dir=str(data_dir)))
    await manager.delete("dd", meta.id)
    assert not object_names(project_store(manager, "dd"), "packs/")
    assert await manager.list("dd") == []


async def test_a_backup_with_damaged_metadata_can_still_be_deleted(manager, root, data_dir):
    keep = await manager.create(CreateRequest(project_id="dm", data_dir=str(data_dir)))
    bad = await manager.create(CreateRequest(project_id="dm", data_dir=str(data_dir)))
    store = project_store(manager, "dm")
    store.put(f"backup_{bad.id}/metadata.json", b"{garbage")
    await manager.delete("dm", bad.id)
    assert not object_names(store, f"backup_{bad.id}/")
    assert [m.id for m in await manager.list("dm")] == [keep.id]
    assert (await manager.verify("dm", keep.id)).ok
    with pytest.raises(NotFound):
        await manager.delete("dm", bad.id)

"""verify finds damage and names the damaged files; undamaged files still restore."""

from __future__ import annotations

import os

import pytest
from store_helpers import flip_byte, object_names, open_repository, project_store, reopen

from core.errors import Damaged
from core.models import CreateRequest, RestoreRequest
from core.repo.index import rebuild_from_packs

MiB = 1024 * 1024


@pytest.fixture
def manager(engine):
    """This suite runs on every engine store (conftest.ENGINE_STORES)."""
    return engine


@pytest.fixture
async def backed_up(manager, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.bin").write_bytes(os.urandom(2 * MiB))
    (d / "b.txt").write_text("bbb\n" * 1000)
    meta = await manager.create(CreateRequest(project_id="v", data_dir=str(d)))
    return meta, d


def _packs(manager) -> list[str]:
    return object_names(project_store(manager, "v"), "packs/")


async def test_verify_ok(manager, backed_up):
    meta, _d = backed_up
    result = await manager.verify("v", meta.id)
    assert result.ok and result.checksum_ok and not result.damaged_files
    assert result.files_checked == 2 and result.bytes_checked > 2 * MiB
    info = await manager.info("v", meta.id)
    assert info.last_verify is not None and info.last_verify.ok


async def test_flipped_pack_byte_names_the_file(manager, root, backed_up, tmp_path):
    meta, d = backed_up
    [pack] = _packs(manager)
    flip_byte(project_store(manager, "v"), pack, MiB)  # inside a.bin's data
    quick = await manager.verify("v", meta.id, quick=True)
    assert quick.ok  # presence only
    result = await manager.verify("v", meta.id)
    assert not result.ok
    assert [f.path for f in result.damaged_files] == ["a.bin"]
    # the undamaged file still restores
    out = tmp_path / "out"
    await manager.restore(
        RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(out), paths=["b.txt"])
    )
    assert (out / "b.txt").read_bytes() == (d / "b.txt").read_bytes()
    res = await manager.restore(
        RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(out), paths=["a.bin"])
    )
    assert [f.path for f in res.damaged_files] == ["a.bin"] and not res.verified
    assert not (out / "a.bin").exists()  # never a torn or wrong file
    whole = await manager.restore(
        RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(tmp_path / "all"))
    )  # the whole backup: every other file restored, the damaged one named
    assert [f.path for f in whole.damaged_files] == ["a.bin"]
    assert (tmp_path / "all" / "b.txt").read_bytes() == (d / "b.txt").read_bytes()
    assert not (tmp_path / "all" / "a.bin").exists()


async def test_missing_pack_is_found_by_quick_verify(manager, root, backed_up):
    meta, _d = backed_up
    for p in _packs(manager):
        project_store(manager, "v").delete(p)
    result = await manager.verify("v", meta.id, quick=True)
    assert not result.ok
    assert {f.path for f in result.damaged_files} == {"a.bin", "b.txt"}


async def test_tampered_manifest_fails_checksum(manager, root, backed_up, tmp_path):
    meta, _d = backed_up
    store = project_store(manager, "v")
    manifest = f"backup_{meta.id}/data/manifest.zst"
    flip_byte(store, manifest, store.stat(manifest).size - 5)
    result = await manager.verify("v", meta.id)
    assert not result.ok and not result.checksum_ok
    with pytest.raises(Damaged):
        await manager.restore(
            RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(tmp_path / "o"))
        )


async def test_index_rebuilds_from_packs(manager, root, backed_up):
    repo = open_repository(manager, "v")
    repo.refresh_index()
    locations, damaged = rebuild_from_packs(repo.store, repo.codec)
    assert not damaged
    assert {d for d, _ in locations} == set(repo.index.entries)


async def test_check_and_rebuild_index_after_losing_it(manager, root, backed_up, tmp_path):
    meta, d = backed_up
    ok = await manager.check("v", read_data=True)
    assert ok.ok and ok.packs_checked == 1 and ok.backups[0].ok
    store = project_store(manager, "v")
    for name in object_names(store, "index/"):
        store.put(name, b"garbage")  # every index file damaged
    fresh = reopen(manager)
    bad = await fresh.check("v")
    assert not bad.ok and any("index file" in e for e in bad.errors)
    rebuilt = await fresh.rebuild_index("v")
    assert rebuilt.chunks_indexed >= 2 and not rebuilt.damaged_packs
    again = await fresh.check("v", read_data=True)
    assert again.ok, again.errors
    out = tmp_path / "out"
    await fresh.restore(RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(out)))
    assert (out / "a.bin").read_bytes() == (d / "a.bin").read_bytes()

"""verify finds damage and names the damaged files; undamaged files still restore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from core.errors import Damaged
from core.models import CreateRequest, RestoreRequest
from core.repo.index import rebuild_from_packs
from core.repo.repository import Repository

MiB = 1024 * 1024


@pytest.fixture
async def backed_up(manager, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.bin").write_bytes(os.urandom(2 * MiB))
    (d / "b.txt").write_text("bbb\n" * 1000)
    meta = await manager.create(CreateRequest(project_id="v", data_dir=str(d)))
    return meta, d


def _packs(root: Path) -> list[Path]:
    return sorted((root / "backups" / "v" / "packs").glob("*/*"))


async def test_verify_ok(manager, backed_up):
    meta, _d = backed_up
    result = await manager.verify("v", meta.id)
    assert result.ok and result.checksum_ok and not result.damaged_files
    assert result.files_checked == 2 and result.bytes_checked > 2 * MiB
    info = await manager.info("v", meta.id)
    assert info.last_verify is not None and info.last_verify.ok


async def test_flipped_pack_byte_names_the_file(manager, root, backed_up, tmp_path):
    meta, d = backed_up
    [pack] = _packs(root)
    with open(pack, "r+b") as f:
        f.seek(MiB)  # inside a.bin's data
        byte = f.read(1)
        f.seek(MiB)
        f.write(bytes([byte[0] ^ 0xFF]))
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
    with pytest.raises(Damaged):
        await manager.restore(
            RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(out), paths=["a.bin"])
        )
    assert not (out / "a.bin").exists()  # never a torn or wrong file


async def test_missing_pack_is_found_by_quick_verify(manager, root, backed_up):
    meta, _d = backed_up
    for p in _packs(root):
        p.unlink()
    result = await manager.verify("v", meta.id, quick=True)
    assert not result.ok
    assert {f.path for f in result.damaged_files} == {"a.bin", "b.txt"}


async def test_tampered_manifest_fails_checksum(manager, root, backed_up, tmp_path):
    meta, _d = backed_up
    manifest = root / "backups" / "v" / f"backup_{meta.id}" / "data" / "manifest.zst"
    data = bytearray(manifest.read_bytes())
    data[-5] ^= 0x01
    manifest.write_bytes(bytes(data))
    result = await manager.verify("v", meta.id)
    assert not result.ok and not result.checksum_ok
    with pytest.raises(Damaged):
        await manager.restore(
            RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(tmp_path / "o"))
        )


async def test_index_rebuilds_from_packs(manager, root, backed_up):
    repo = Repository(root, "v")
    repo.refresh_index()
    locations, damaged = rebuild_from_packs(repo.store, repo.codec)
    assert not damaged
    assert {d for d, _ in locations} == set(repo.index.entries)


async def test_check_and_rebuild_index_after_losing_it(manager, root, backed_up, tmp_path):
    meta, d = backed_up
    ok = await manager.check("v", read_data=True)
    assert ok.ok and ok.packs_checked == 1 and ok.backups[0].ok
    for f in (root / "backups" / "v" / "index").iterdir():
        f.write_bytes(b"garbage")  # every index file damaged
    fresh = type(manager)(root)
    bad = await fresh.check("v")
    assert not bad.ok and any("index file" in e for e in bad.errors)
    rebuilt = await fresh.rebuild_index("v")
    assert rebuilt.chunks_indexed >= 2 and not rebuilt.damaged_packs
    again = await fresh.check("v", read_data=True)
    assert again.ok, again.errors
    out = tmp_path / "out"
    await fresh.restore(RestoreRequest(project_id="v", backup_id=meta.id, restore_dir=str(out)))
    assert (out / "a.bin").read_bytes() == (d / "a.bin").read_bytes()

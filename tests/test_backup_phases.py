"""Per-phase timings and the dedup and compression ratios in each backup's stats (issue 15)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from core.manager import BackupManager
from core.models import BackupMetadata, BackupStatus, CreateRequest

FORMAT1 = Path(__file__).parent / "fixtures" / "format1"


async def test_phases_and_ratios_are_stored_in_the_metadata(manager, root, data_dir):
    meta = await manager.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    stats = meta.stats
    phases = stats.phases
    assert phases is not None and phases.workers >= 2
    # every phase was timed, and the sequential ones fit in the backup's duration
    for name in ("scan", "read", "chunk_hash", "compress", "store", "index", "manifest"):
        assert getattr(phases, f"{name}_seconds") > 0, name
    sequential = (
        phases.scan_seconds
        + phases.read_pass_seconds
        + phases.index_seconds
        + phases.manifest_seconds
        + phases.validate_seconds
    )
    assert sequential <= stats.duration_seconds + 0.01
    # the overlapping phases are summed over the threads: at most workers × the read pass
    summed = phases.read_seconds + phases.chunk_hash_seconds + phases.compress_seconds
    assert summed <= phases.workers * phases.read_pass_seconds + 0.01
    # ratios from the byte counts, as a user would compute them
    assert stats.bytes_new_raw == stats.bytes_read  # a first backup: everything is new
    assert stats.dedup_ratio == 1.0
    assert stats.compression_ratio == round(stats.bytes_new_raw / stats.bytes_stored, 4)
    on_disk = json.loads(
        (root / "backups" / "p" / f"backup_{meta.id}" / "metadata.json").read_text()
    )
    assert on_disk["stats"]["phases"]["scan_seconds"] == phases.scan_seconds
    assert on_disk["stats"]["dedup_ratio"] == 1.0


async def test_a_backup_of_duplicated_content_says_its_dedup(manager, tmp_path):
    src = tmp_path / "dup"
    src.mkdir()
    block = os.urandom(300 * 1024)  # above the minimum chunk size: one chunk, stored once
    for i in range(4):
        (src / f"copy{i}.bin").write_bytes(block)
    meta = await manager.create(CreateRequest(project_id="d", data_dir=str(src)))
    assert meta.stats.bytes_read == 4 * len(block)
    assert meta.stats.bytes_new_raw == len(block)
    assert meta.stats.dedup_ratio == 4.0
    # random bytes do not compress: stored about as large as read (never smaller than raw)
    assert 0.9 < meta.stats.compression_ratio <= 1.0


async def test_nothing_new_has_no_ratio(manager, data_dir):
    await manager.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    again = await manager.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    assert again.stats.bytes_new_raw == 0 and again.stats.bytes_stored == 0
    assert again.stats.dedup_ratio is None and again.stats.compression_ratio is None
    assert again.stats.phases is not None


async def test_old_metadata_without_the_new_fields_still_loads(tmp_path):
    """A repository written before issue 15 (the format-1 fixture): its metadata has none of
    the new fields; it lists, reads and restores as before, the new fields None."""
    root = tmp_path / "root"
    shutil.copytree(FORMAT1, root / "backups" / "demo")
    raw = json.loads(next((root / "backups" / "demo").glob("backup_*/metadata.json")).read_text())
    assert "phases" not in raw["stats"] and "dedup_ratio" not in raw["stats"]
    meta = BackupMetadata.model_validate(raw)
    assert meta.stats.phases is None and meta.stats.dedup_ratio is None
    assert meta.stats.bytes_new_raw is None and meta.stats.compression_ratio is None
    listed = await BackupManager(root).list("demo")
    assert listed and all(b.status == BackupStatus.COMPLETED for b in listed)
    assert all(b.stats.phases is None for b in listed)

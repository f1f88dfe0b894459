"""The final ("done") progress event of an operation carries what it did (issue 16): a face
that shows the last event after the work shows the files and bytes, never ``0 files, 0 B``."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.manager import BackupManager
from core.models import CreateRequest, ProgressEvent, RestoreRequest


@pytest.fixture
def small_tree(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_bytes(b"a" * 1000)
    (d / "sub" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (d / "empty.txt").write_bytes(b"")
    return d


def _done(events: list[ProgressEvent]) -> ProgressEvent:
    assert events and events[-1].phase == "done", [e.phase for e in events]
    assert [e.phase for e in events].count("done") == 1
    return events[-1]


async def test_create_restore_verify_end_with_their_totals(
    manager: BackupManager, small_tree: Path, tmp_path: Path
) -> None:
    events: list[ProgressEvent] = []
    meta = await manager.create(
        CreateRequest(project_id="p", data_dir=str(small_tree)), progress=events.append
    )
    done = _done(events)
    assert (done.files_done, done.bytes_done) == (meta.files_count, meta.size_bytes)
    assert (meta.files_count, meta.size_bytes) == (3, 1000 + 256 * 40)
    assert done.files_total == 3 and done.bytes_total == meta.size_bytes

    events.clear()
    target = tmp_path / "out"
    result = await manager.restore(
        RestoreRequest(project_id="p", backup_id=meta.id, restore_dir=str(target)),
        progress=events.append,
    )
    done = _done(events)
    assert (done.files_done, done.bytes_done) == (3, meta.size_bytes)
    assert result.counts.files_create == 3
    assert (target / "sub" / "b.bin").read_bytes() == (small_tree / "sub" / "b.bin").read_bytes()

    events.clear()
    verified = await manager.verify("p", meta.id, progress=events.append)
    done = _done(events)
    assert verified.ok
    assert done.files_done == verified.files_checked == 3
    assert done.bytes_done == verified.bytes_checked > 0


async def test_an_incremental_ends_with_the_backup_not_only_what_it_read(
    manager: BackupManager, small_tree: Path
) -> None:
    """Nothing changed, nothing read: the final event still names the files the backup holds."""
    await manager.create(CreateRequest(project_id="p", data_dir=str(small_tree)))
    events: list[ProgressEvent] = []
    meta = await manager.create(
        CreateRequest(project_id="p", data_dir=str(small_tree), backup_type="incremental"),
        progress=events.append,
    )
    assert meta.stats.bytes_read == 0
    done = _done(events)
    assert (done.files_done, done.bytes_done) == (meta.files_count, meta.size_bytes) != (0, 0)


async def test_a_restore_with_nothing_to_write_ends_with_zero(
    manager: BackupManager, small_tree: Path
) -> None:
    """Restoring onto an identical tree writes nothing: the final event says 0, truthfully."""
    meta = await manager.create(CreateRequest(project_id="p", data_dir=str(small_tree)))
    events: list[ProgressEvent] = []
    await manager.restore(
        RestoreRequest(
            project_id="p", backup_id=meta.id, restore_dir=str(small_tree), checkpoint=False
        ),
        progress=events.append,
    )
    done = _done(events)
    assert (done.files_done, done.bytes_done) == (0, 0)

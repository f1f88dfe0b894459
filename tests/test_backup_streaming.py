"""A backup without a parent of a tree larger than the scan's buffer (STREAM_AFTER entries)
is read as it is walked (issue 18): the progress shows a total that grows and never falls
behind what was read, the backup restores byte for byte, and a data directory removed
while the read pass follows the walk still fails the backup."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from core.errors import NexusError
from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, ProgressEvent, RestoreRequest
from core.ops import backup
from core.ops.progress import OperationContext


def _tree(d: Path, dirs: int = 6, per_dir: int = 40) -> Path:
    for i in range(dirs):
        sub = d / f"d{i}"
        sub.mkdir(parents=True)
        for j in range(per_dir):
            (sub / f"f{j:03d}.txt").write_bytes(b"%d/%d\n" % (i, j) * (j + 1))
    (d / "empty").mkdir()
    (d / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))  # through the chunker
    os.symlink("d0/f000.txt", d / "link")
    return d


@pytest.fixture
def small_buffer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup, "STREAM_AFTER", 50)


def test_a_large_first_backup_streams_with_a_growing_total_and_restores_whole(
    manager: BackupManager, tmp_path: Path, tree_of, small_buffer: None
) -> None:
    data = _tree(tmp_path / "data")
    events: list[ProgressEvent] = []
    ctx = OperationContext("create", "p", emit=events.append, min_interval=0)
    meta = manager.create_blocking(CreateRequest(project_id="p", data_dir=str(data)), ctx)
    assert meta.status == BackupStatus.COMPLETED and meta.files_count == 6 * 40 + 1

    reading = [e for e in events if e.phase == "reading"]
    assert reading[0].files_total < reading[-1].files_total == meta.files_count
    assert reading[-1].bytes_total == meta.size_bytes
    assert all(e.files_done <= e.files_total and e.bytes_done <= e.bytes_total for e in reading)
    assert events[-1].phase == "done" and events[-1].files_done == meta.files_count

    out = tmp_path / "out"
    req = RestoreRequest(project_id="p", backup_id=meta.id, restore_dir=str(out))
    manager.restore_blocking(req, OperationContext("restore", "p"))
    assert tree_of(out) == tree_of(data)


def test_a_small_first_backup_still_knows_its_totals_before_reading(
    manager: BackupManager, tmp_path: Path, tree_of
) -> None:
    data = _tree(tmp_path / "data", dirs=2, per_dir=5)
    events: list[ProgressEvent] = []
    ctx = OperationContext("create", "p", emit=events.append, min_interval=0)
    meta = manager.create_blocking(CreateRequest(project_id="p", data_dir=str(data)), ctx)
    reading = [e for e in events if e.phase == "reading"]
    assert {(e.files_total, e.bytes_total) for e in reading} == {(11, meta.size_bytes)}


def test_data_dir_removed_while_the_read_pass_follows_the_walk_fails_the_backup(
    manager: BackupManager, tmp_path: Path, small_buffer: None
) -> None:
    data = _tree(tmp_path / "data")

    def emit(ev: ProgressEvent) -> None:  # in the engine's thread, as the read pass starts
        if ev.phase == "reading" and data.exists():
            shutil.rmtree(data)

    ctx = OperationContext("create", "gone", emit=emit, min_interval=0)
    with pytest.raises(NexusError, match="removed during the backup"):
        manager.create_blocking(CreateRequest(project_id="gone", data_dir=str(data)), ctx)
    [meta] = manager.list_blocking("gone")
    assert meta.status == BackupStatus.FAILED


def test_index_from_pack_records_is_the_index_of_their_locations() -> None:
    """The backup keeps each pack's index records, not location objects: the index file it
    writes from them is byte for byte the one of the locations, packs in any order."""
    from core.repo.index import decode_index, encode_index, encode_index_records, pack_records
    from core.repo.packs import BlobLocation

    packs = {}
    for p in (b"\x07", b"\x01", b"\xee"):
        pack_id = (p * 32).hex()
        packs[pack_id] = [
            (os.urandom(32), BlobLocation(pack_id, 100 * i, 90 + i, 200 + i, i % 2))
            for i in range(5)
        ]
    flat = [loc for blobs in packs.values() for loc in blobs]
    data = encode_index_records((pid, pack_records(blobs)) for pid, blobs in packs.items())
    assert data == encode_index(flat)
    assert sorted(decode_index(data), key=lambda x: x[0]) == sorted(flat, key=lambda x: x[0])


def test_small_files_changed_between_the_walk_and_their_read_are_stored_as_read(
    manager: BackupManager, tmp_path: Path, tree_of, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small file is read with one read of the size the walk saw and one byte more: one
    that grew, shrank or was rewritten after the walk saw it is noticed and read again
    carefully, so the backup holds each as it is when read, never the walk's size with
    other bytes. Each is changed just before its read, and left to settle (not racy), so
    that the fast path's own checks are what decide."""
    data = _tree(tmp_path / "data")
    changes = {
        b"d5/f001.txt": lambda p: p.write_bytes(p.read_bytes() + b"grown\n" * 50),
        b"d5/f030.txt": lambda p: p.write_bytes(b"x"),
        b"d5/f039.txt": lambda p: p.write_bytes(bytes(len(p.read_bytes()))),
        b"d4/f000.txt": lambda p: p.write_bytes(b""),
        b"d3/f007.txt": lambda p: p.write_bytes(p.read_bytes()[:-1] + b"!"),  # same size
    }
    read_small = backup._read_small

    def changed_first(state, item, batch):  # type: ignore[no-untyped-def]
        change = changes.pop(item.rel, None)
        if change is not None:
            change(data / item.rel.decode())
            time.sleep(5 * backup.RACY_NS / 1e9)
        return read_small(state, item, batch)

    monkeypatch.setattr(backup, "_read_small", changed_first)
    meta = manager.create_blocking(
        CreateRequest(project_id="p", data_dir=str(data)), OperationContext("create", "p")
    )
    assert meta.status == BackupStatus.COMPLETED and not changes
    out = tmp_path / "out"
    req = RestoreRequest(project_id="p", backup_id=meta.id, restore_dir=str(out))
    manager.restore_blocking(req, OperationContext("restore", "p"))
    assert tree_of(out) == tree_of(data)

"""A restore and a verify read a pack's neighbouring chunks with one `read_ranges` call (one
request on a remote store), not one read per chunk; the bytes are still exact."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.repo.repository import READ_BATCH

MiB = 1024 * 1024


class Counting:
    """A store whose readers count the reads they make."""

    def __init__(self, store, counts: dict[str, int]) -> None:
        self._store, self._counts = store, counts

    def sub(self, prefix: str) -> Counting:
        return Counting(self._store.sub(prefix), self._counts)

    def reader(self):
        inner, counts = self._store.reader(), self._counts

        class Reader:
            def get_range(self, name, offset, length):
                counts["reads"] += 1
                return inner.get_range(name, offset, length)

            def read_ranges(self, name, ranges):
                counts["reads"] += 1
                counts["ranges"] += len(ranges)
                return inner.read_ranges(name, ranges)

            def close(self):
                inner.close()

        return Reader()

    def __getattr__(self, attr):
        return getattr(self._store, attr)


async def _backed_up(tmp_path: Path, data: Path) -> tuple:  # type: ignore[type-arg]
    """Back `data` up into a memory repository; the backup, and a manager of that repository
    whose readers count their reads (`counts`)."""
    url = f"memory://{uuid.uuid4().hex}"
    meta = await BackupManager(tmp_path / "root", repository=url).create(
        CreateRequest(project_id="p", data_dir=str(data))
    )
    counts = {"reads": 0, "ranges": 0}
    mgr = BackupManager(tmp_path / "root", repository=url)
    mgr.store = Counting(mgr.store, counts)
    return meta, mgr, counts


async def test_restore_and_verify_read_runs_of_chunks_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    blob = os.urandom(40 * MiB)
    (data / "model.bin").write_bytes(blob)  # several threads write it (SPLIT_SIZE)
    (data / "small.bin").write_bytes(blob[: 3 * MiB])  # deduplicated against model.bin
    meta, mgr, counts = await _backed_up(tmp_path, data)

    out = tmp_path / "out"
    await mgr.restore(RestoreRequest(project_id="p", backup_id=meta.id, restore_dir=str(out)))
    assert (out / "model.bin").read_bytes() == blob
    assert (out / "small.bin").read_bytes() == blob[: 3 * MiB]
    chunks = counts["ranges"]
    assert chunks >= 30  # about a chunk per MiB
    assert counts["reads"] <= (43 * MiB) // READ_BATCH + 8 < chunks

    counts.update(reads=0, ranges=0)
    result = await mgr.verify("p", meta.id)
    assert result.ok and result.bytes_checked >= 40 * MiB
    assert counts["reads"] <= (40 * MiB) // READ_BATCH + 6 < chunks  # a batch more per pack


async def test_many_small_files_are_restored_with_few_reads(tmp_path: Path) -> None:
    """Small files are read many at a time in pack order, not one read per file."""
    data = tmp_path / "data"
    (data / "src").mkdir(parents=True)
    files = {f"src/f{i:04d}.py": os.urandom(1000 + i) for i in range(600)}
    files["src/empty"] = b""
    files["src/copy.py"] = files["src/f0001.py"]  # the same chunk as another file
    for rel, content in files.items():
        (data / rel).write_bytes(content)
    meta, mgr, counts = await _backed_up(tmp_path, data)
    out = tmp_path / "out"
    await mgr.restore(RestoreRequest(project_id="p", backup_id=meta.id, restore_dir=str(out)))
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == (
        files
    )
    assert counts["ranges"] >= 600
    assert counts["reads"] <= 10  # 600 files in a few runs of a pack


async def test_verify_all_reads_each_shared_chunk_once_and_names_damage_per_backup(
    tmp_path: Path,
) -> None:
    from tests.store_helpers import flip_byte, object_names, project_store

    data = tmp_path / "data"
    data.mkdir()
    shared = os.urandom(6 * MiB)
    (data / "shared.bin").write_bytes(shared)
    url = f"memory://{uuid.uuid4().hex}"
    mgr = BackupManager(tmp_path / "root", repository=url)
    first = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    packs_before = set(object_names(project_store(mgr, "p"), "packs/"))
    (data / "new.bin").write_bytes(os.urandom(2 * MiB))
    second = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))

    counts = {"reads": 0, "ranges": 0}
    mgr.store = Counting(mgr.store, counts)
    mgr._repos.clear()
    results = await mgr.verify_all("p")
    assert [r.backup_id for r in results] == [first.id, second.id]  # oldest first
    assert all(r.ok for r in results)
    assert results[0].bytes_checked < results[1].bytes_checked
    once = counts["ranges"]
    single = {"reads": 0, "ranges": 0}
    mgr.store = Counting(mgr.store._store, single)
    mgr._repos.clear()
    await mgr.verify("p", first.id)
    await mgr.verify("p", second.id)
    assert once < single["ranges"]  # the shared file's chunks were read once, not twice

    # damage in the shared pack is named in both backups; in the new one, only the second
    store = project_store(mgr, "p")
    new_packs = sorted(set(object_names(store, "packs/")) - packs_before)
    flip_byte(store, sorted(packs_before)[0], 100)
    flip_byte(store, new_packs[0], 100)
    mgr._repos.clear()
    results = await mgr.verify_all("p")
    assert [sorted(d.path for d in r.damaged_files) for r in results] == [
        ["shared.bin"],
        ["new.bin", "shared.bin"],
    ]

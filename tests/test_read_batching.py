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


async def test_restore_and_verify_read_runs_of_chunks_at_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    blob = os.urandom(40 * MiB)
    (data / "model.bin").write_bytes(blob)  # several threads write it (SPLIT_SIZE)
    (data / "small.bin").write_bytes(blob[: 3 * MiB])  # deduplicated against model.bin
    url = f"memory://{uuid.uuid4().hex}"
    meta = await BackupManager(tmp_path / "root", repository=url).create(
        CreateRequest(project_id="p", data_dir=str(data))
    )
    counts = {"reads": 0, "ranges": 0}
    mgr = BackupManager(tmp_path / "root", repository=url)
    mgr.store = Counting(mgr.store, counts)

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

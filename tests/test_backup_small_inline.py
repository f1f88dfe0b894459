"""Where a backup reads its batches of small files (core.pipeline.InPlace): in the
thread that walks and writes the manifest while they come from the page cache (no GIL passed
between two threads at every system call), and by the readers, side by side, once one had
to wait for the disk. Either way every byte is stored."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import core.ops.backup
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.ops.backup import BATCH_FILES
from core.ops.progress import OperationContext
from core.pipeline import InPlace


def _tree(top: Path, files: int) -> Path:
    for i in range(files):
        d = top / f"d{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.txt").write_bytes(b"%d\n" % i * (1 + i % 50))
    return top


def _backup_and_check(tmp_path: Path, data: Path) -> None:
    mgr = BackupManager(tmp_path / "root")
    mgr.create_blocking(
        CreateRequest(project_id="p", data_dir=str(data)), OperationContext("create", "p")
    )
    out = tmp_path / "out"
    req = RestoreRequest(project_id="p", backup_id="latest", restore_dir=str(out))
    mgr.restore_blocking(req, OperationContext("restore", "p"))
    for f in data.rglob("*"):
        if f.is_file():
            assert (out / f.relative_to(data)).read_bytes() == f.read_bytes(), f


def _threads_reading(monkeypatch: pytest.MonkeyPatch, delay: float) -> dict[int, int]:
    """Files read per thread, each read first delayed by `delay` (a slow disk)."""
    real = core.ops.backup.read_file
    seen: dict[int, int] = {}
    lock = threading.Lock()

    def read_file(state, item):  # type: ignore[no-untyped-def]
        with lock:
            seen[threading.get_ident()] = seen.get(threading.get_ident(), 0) + 1
        if delay:
            time.sleep(delay)
        return real(state, item)

    monkeypatch.setattr(core.ops.backup, "read_file", read_file)
    return seen


def test_small_files_from_the_page_cache_are_read_in_one_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tree(tmp_path / "data", 6 * BATCH_FILES)
    # never taken for the disk's: a loaded machine's descheduling must not decide the test
    monkeypatch.setattr(InPlace, "WAITED", 1e9)
    seen = _threads_reading(monkeypatch, 0)
    _backup_and_check(tmp_path, data)
    assert sum(seen.values()) == 6 * BATCH_FILES
    assert len(seen) == 1, seen  # the read pass's own thread: no hand-offs of the GIL


def test_after_a_batch_waited_the_readers_take_the_next_ones_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _tree(tmp_path / "data", 8 * BATCH_FILES)
    seen = _threads_reading(monkeypatch, 0.002)  # each read waits: wall >> CPU time
    _backup_and_check(tmp_path, data)
    assert sum(seen.values()) == 8 * BATCH_FILES
    assert len(seen) >= 3, seen  # the first batch in place, the next ones by the readers


def test_the_policy_probes_again_after_the_readers_had_their_turn() -> None:
    policy = InPlace()
    assert policy.here()
    n = policy._pooled = InPlace.PROBE_AFTER  # as after a batch that waited
    assert [policy.here() for _ in range(n)] == [False] * n
    assert policy.here()

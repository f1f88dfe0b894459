"""A writer stalled in the middle of rewriting a file: the one case an fstat before and after
the read cannot see, since size and times stand still while half of the new bytes are in
place. (The CI machine caught it once in test_files_changing_while_backed_up.)

The engine treats a file changed less than RACY_NS ago as possibly mid-write and looks again
once that long has passed. These tests scale RACY_NS and the stall up (seconds rather than
milliseconds) so that the backup surely reads during the stall: the timing is not a race.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import rel_harness as h

import core.ops.backup
from core.manager import BackupManager
from core.models import CreateRequest

SIZE = 60_000


async def _backup_during_stalled_rewrite(tmp_path: Path, racy_ns: int) -> tuple[bytes, str]:
    """Half of version 2 written over version 1, the rest 1 s later; a backup started at
    once. Returns what the backup recorded for the file and its warnings."""
    core.ops.backup.RACY_NS = racy_ns
    top = tmp_path / "live"
    top.mkdir()
    path = top / "t00"
    new = h.versioned("t00", 2, SIZE)
    path.write_bytes(h.versioned("t00", 1, SIZE))
    root = tmp_path / "repo"
    h.init_project(root)
    mgr = BackupManager(root)

    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, new[: SIZE // 2], 0)
    stalled_until = time.monotonic() + 1.0

    def finish() -> None:
        time.sleep(max(0.0, stalled_until - time.monotonic()))
        os.pwrite(fd, new[SIZE // 2 :], SIZE // 2)
        os.close(fd)

    writer = threading.Thread(target=finish)
    writer.start()
    try:
        meta = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(top)))
    finally:
        writer.join()
    target = tmp_path / "out"
    await h.restore_to(mgr, meta.id, target)
    return (target / "t00").read_bytes(), " ".join(meta.stats.warnings)


async def test_a_rewrite_stalled_mid_write_is_not_recorded_torn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.ops.backup, "RACY_NS", core.ops.backup.RACY_NS)  # restored afterwards
    got, warned = await _backup_during_stalled_rewrite(tmp_path, racy_ns=2_000_000_000)
    assert h.whole_version(got) == ("t00", 2), (got[:40], got[SIZE // 2 : SIZE // 2 + 40])
    assert not warned


async def test_without_the_racy_check_the_same_stall_is_recorded_torn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: it shows that the test above reads during the stall."""
    monkeypatch.setattr(core.ops.backup, "RACY_NS", core.ops.backup.RACY_NS)
    got, _warned = await _backup_during_stalled_rewrite(tmp_path, racy_ns=0)
    assert h.whole_version(got) is None
    assert got[: SIZE // 2] == h.versioned("t00", 2, SIZE)[: SIZE // 2]


async def test_a_file_being_appended_to_is_recorded_as_a_state_it_had(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log that grows all the time is not skipped for it: a read that the file still
    starts with once it has grown is a state the file really had."""
    monkeypatch.setattr(core.ops.backup, "RACY_NS", 300_000_000)
    top = tmp_path / "live"
    top.mkdir()
    log = top / "app.log"
    log.write_bytes(b"start\n")
    root = tmp_path / "repo"
    h.init_project(root)
    stop = threading.Event()

    def append() -> None:
        n = 0
        while not stop.is_set():
            with open(log, "ab") as f:
                f.write(b"line %06d\n" % n)
            n += 1
            time.sleep(0.02)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        mgr = BackupManager(root)
        meta = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(top)))
    finally:
        stop.set()
        writer.join()
    assert not meta.stats.warnings
    target = tmp_path / "out"
    await h.restore_to(mgr, meta.id, target)
    got = (target / "app.log").read_bytes()
    assert len(got) > len(b"start\n") and log.read_bytes().startswith(got)
    assert got.endswith(b"\n")


async def test_a_ctime_ahead_of_the_clock_does_not_stall_the_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file server whose clock runs ahead stamps files in this machine's future: every such
    file looks just changed. The wait for it to settle is bounded by RACY_NS all the same."""
    monkeypatch.setattr(core.ops.backup, "RACY_NS", 50_000_000)
    real_time_ns = time.time_ns
    monkeypatch.setattr(core.ops.backup.time, "time_ns", lambda: real_time_ns() - 3_600 * 10**9)
    top = tmp_path / "live"
    top.mkdir()
    for i in range(20):
        (top / f"f{i}").write_bytes(h.versioned(f"f{i}", 1, 1000 + i))
    root = tmp_path / "repo"
    h.init_project(root)
    started = time.monotonic()
    meta = await BackupManager(root).create(CreateRequest(project_id=h.PROJECT, data_dir=str(top)))
    assert meta.files_count == 20 and not meta.stats.warnings
    assert time.monotonic() - started < 20 * 0.05 + 5  # never the hour the clocks differ by

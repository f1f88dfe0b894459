"""A power cut mid-backup, on every engine store: the repository as it stood at an arbitrary
moment of a running backup (copied object by object while the backup keeps writing, as a
crash leaves it) is opened by a new process, whose holder is provably gone. Nothing
completed is lost, nothing half-written is shown as restorable, and recovery leaves a
repository that checks clean.

The SIGKILL of a real process on a local disk is tests/test_crash_recovery.py; this is the
same promise for stores that no second process can share (memory) and for every store to
come."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from store_helpers import Tap, object_names, project_store, reopen

from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest
from core.storage import ObjectNotFound, ObjectStore

MiB = 1024 * 1024


@pytest.fixture
def manager(engine):
    return engine


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _cut(src: ObjectStore, dst: ObjectStore, dead_pid: int) -> int:
    """Copy what `src` holds at this moment into `dst`; its locks now name a dead process."""
    copied = 0
    for obj in list(src.list()):
        try:
            data = src.get(obj.name)
        except ObjectNotFound:
            continue  # deleted meanwhile: the cut came after
        if obj.name.startswith("locks/"):
            lock = json.loads(data)
            lock["pid"] = dead_pid
            data = json.dumps(lock).encode()
        dst.put(obj.name, data)
        copied += 1
    return copied


def _clone_of(manager: BackupManager, tmp_path: Path) -> BackupManager:
    """An empty manager on a new store of the same kind as `manager`'s."""
    password = manager._password  # an encrypted project's copy opens with its password
    if manager.store.capabilities.local_root is not None:
        return BackupManager(tmp_path / f"cut-{uuid.uuid4().hex[:6]}", password=password)
    return BackupManager(
        tmp_path / "cut-logs", repository=f"memory://{uuid.uuid4().hex}", password=password
    )


@pytest.mark.parametrize("cut_after", [3, 5, 6, 7, 9, 10, 11, 1000])
async def test_power_cut_leaves_completed_backups_whole(manager, tmp_path, cut_after):
    """Cut after the n-th write of the second backup (1000: after its last)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("kept\n" * 1000)
    first = await manager.create(CreateRequest(project_id="cut", data_dir=str(data)))
    for i in range(36):  # three packs
        (data / f"f{i:02}.bin").write_bytes(os.urandom(MiB))
    clone = _clone_of(manager, tmp_path)
    dst = project_store(clone, "cut")
    dst.prepare()
    writer = reopen(manager)
    src = project_store(manager, "cut")
    dead = _dead_pid()
    taken: list[tuple[int, str, str]] = []

    def hook(n: int, op: str, name: str) -> None:
        if n == cut_after:
            _cut(src, dst, dead)
            taken.append((n, op, name))

    writer.store = Tap(writer.store, hook)
    second = await writer.create(CreateRequest(project_id="cut", data_dir=str(data)))
    assert second.status == BackupStatus.COMPLETED
    if not taken:
        _cut(src, dst, dead)

    listed = {m.id: m for m in await clone.list("cut")}
    assert listed[first.id].status == BackupStatus.COMPLETED
    cut_one = listed.get(second.id)
    if cut_one is not None and cut_one.status == BackupStatus.COMPLETED:
        # the cut came after the backup was durable: then all of it is there
        assert (await clone.verify("cut", second.id)).ok
    elif cut_one is not None:
        assert cut_one.status == BackupStatus.FAILED, (taken, cut_one)
        assert "interrupted" in (cut_one.error_message or "")

    # the next writer recovers: the interrupted backup's partial data is gone, all checks
    again = await clone.create(CreateRequest(project_id="cut", data_dir=str(data)))
    assert again.status == BackupStatus.COMPLETED
    statuses = {m.id: m.status for m in await clone.list("cut")}
    if statuses.get(second.id) == BackupStatus.FAILED:
        assert not object_names(dst, f"backup_{second.id}/data/")
    assert not object_names(dst, "locks/")
    check = await clone.check("cut", read_data=True)
    assert check.ok, check.errors
    for backup_id in (first.id, again.id):
        out = tmp_path / f"out-{backup_id}"
        await clone.restore(
            RestoreRequest(project_id="cut", backup_id=backup_id, restore_dir=str(out))
        )
        assert (out / "keep.txt").read_text() == "kept\n" * 1000
    assert (out / "f35.bin").read_bytes() == (data / "f35.bin").read_bytes()

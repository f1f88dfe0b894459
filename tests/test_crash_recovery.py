"""A real process killed with SIGKILL mid-backup: recovery, and nothing earlier is harmed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest

MiB = 1024 * 1024
SCRIPT = """
import asyncio, sys
from core.manager import BackupManager
from core.models import CreateRequest
request = CreateRequest(project_id="crash", data_dir=sys.argv[2], data_dir_change=True)
asyncio.run(BackupManager(sys.argv[1]).create(request))
"""


def _statuses(root: Path) -> dict[str, str]:
    out = {}
    for meta in (root / "backups" / "crash").glob("backup_*/metadata.json"):
        with contextlib.suppress(ValueError, OSError):
            out[meta.parent.name] = json.loads(meta.read_text())["status"]
    return out


@pytest.fixture
def big_tree(tmp_path: Path) -> Path:
    d = tmp_path / "big"
    d.mkdir()
    for i in range(120):
        (d / f"f{i:03}.bin").write_bytes(os.urandom(MiB))
    return d


@pytest.mark.parametrize("delay", [0.0, 0.15, 0.4])
async def test_sigkill_mid_backup_then_recovery(tmp_path, big_tree, delay, tree_of):
    root = tmp_path / "repo"
    small = tmp_path / "small"
    small.mkdir()
    (small / "keep.txt").write_text("precious\n")
    mgr = BackupManager(root)
    good = await mgr.create(CreateRequest(project_id="crash", data_dir=str(small)))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), str(big_tree)], env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(s != "completed" for s in _statuses(root).values()):
            break
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    fresh = BackupManager(root)  # a new process would do the same on start
    metas = {m.id: m for m in await fresh.list("crash")}
    assert metas[good.id].status == BackupStatus.COMPLETED
    others = [m for m in metas.values() if m.id != good.id]
    assert len(others) == 1
    dead = others[0]
    if dead.status != BackupStatus.COMPLETED:  # killed before it finished
        assert dead.status == BackupStatus.FAILED
        assert "interrupted" in (dead.error_message or "")
        # list only shows it so: a reader writes nothing (the next writer records it)
        assert _statuses(root)[f"backup_{dead.id}"] in ("pending", "running", "validating")

    out = tmp_path / "out"
    await fresh.restore(RestoreRequest(project_id="crash", backup_id=good.id, restore_dir=str(out)))
    assert tree_of(out) == tree_of(small)
    assert (await fresh.verify("crash", good.id)).ok

    # The space the dead run wrote is given back by the next delete's reclaim; a writing
    # command records the interruption first.
    if dead.status == BackupStatus.FAILED:
        await fresh.delete("crash", dead.id)
        packs = sum(p.stat().st_size for p in (root / "backups" / "crash").glob("packs/*/*"))
        assert packs < 1 * MiB
    else:
        await fresh.create(
            CreateRequest(project_id="crash", data_dir=str(small), data_dir_change=True)
        )
    assert not list((root / "backups" / "crash" / "locks").glob("*"))
    assert not list((root / "backups" / "crash").rglob("*.tmp-*"))

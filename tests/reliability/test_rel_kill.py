"""Killed at any instant: a real process running create, restore, delete or forget (and the
space reclaim a delete or a forget triggers) is SIGKILLed after a seeded random delay, at
least 30 times a run; and the destructive paths (rebuild-index, restore --delete, a delete
whose reclaim rewrites packs) also right before a random one of their mutating system calls,
then a CLI command.

After each kill a fresh BackupManager (what the next start does) must find: every backup that
was COMPLETED still verifies and restores byte for byte; the interrupted backup FAILED
("interrupted") with no manifest; a full check with data reads passes; no lock and no temp file
left in the repository; a killed restore left whole files only in its target."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rel_harness as h

from core.manager import BackupManager
from core.models import BackupStatus, RestoreRequest


def _report(stats: h.KillStats, seed: int) -> None:
    print(f"[reliability] seed {seed}: {stats.summary()}")
    for line in stats.log:
        print("   ", line)


@pytest.mark.parametrize(
    ("ops", "rounds"),
    [
        pytest.param(["create"], 12, id="create"),
        pytest.param(["restore"], 10, id="restore"),
        pytest.param(["delete"], 10, id="delete-reclaim"),
        pytest.param(["forget"], 8, id="forget-reclaim"),
        pytest.param(["cli-create", "exec-create"], 8, id="cli"),
    ],
)
async def test_sigkill_at_random_points(tmp_path: Path, seed: int, ops: list[str], rounds: int):
    stats = h.KillStats()
    try:
        await h.run_campaign(tmp_path, seed, ops, rounds, stats)
    except AssertionError as exc:
        known = h.known_defect(str(exc))
        if known:  # a random kill point reached a core defect that has a deterministic test
            pytest.xfail(f"core defect ({known}) hit at seed {seed}: {str(exc)[:300]}")
        raise
    finally:
        _report(stats, seed)
    assert not stats.lost
    killed = sum(stats.faults.values())
    assert killed >= rounds, stats.summary()
    # kills must land inside the operation too, not only before or after it
    inside = sum(
        n
        for k, n in stats.landed.items()
        if k.endswith((":interrupted", ":deleted", ":in-checkpoint"))
    )
    if killed >= 10:
        assert inside >= 1, f"no kill landed mid-operation: {stats.summary()}"


@pytest.mark.slow  # 5-9 s each on an idle 2-core machine, twice that under load
@pytest.mark.parametrize(
    ("op", "rounds"),
    [
        pytest.param("rebuild-index", 6, id="rebuild-index"),
        pytest.param("restore-delete", 6, id="restore-delete"),
        pytest.param("delete-rewrite", 4, id="delete-rewrite"),
    ],
)
async def test_sigkill_in_destructive_paths(tmp_path: Path, seed: int, op: str, rounds: int):
    """rebuild-index (index files replaced), restore --delete (extra files in the target
    removed, after an automatic checkpoint of it) and a delete whose reclaim rewrites packs
    (the deleted backup shares packs with a kept one), each SIGKILLed at random points and
    followed by a CLI command. Then every completed backup not being deleted restores byte
    for byte and a full check passes; the killed delete's backup is listed and restorable or
    gone; a killed restore --delete left each target file old or new, never torn, its
    checkpoint restores to the target as it was, and the same restore run again leaves
    exactly the backup's tree."""
    stats = h.KillStats()
    try:
        await h.run_campaign(tmp_path, seed, [op], rounds, stats)
    except AssertionError as exc:
        known = h.known_defect(str(exc))
        if known:
            pytest.xfail(f"core defect ({known}) hit at seed {seed}: {str(exc)[:300]}")
        raise
    finally:
        _report(stats, seed)
    assert not stats.lost
    assert stats.faults[f"sigkill-{op}"] >= rounds, stats.summary()
    assert stats.recoveries >= rounds, stats.summary()
    assert stats.step_kills[op] >= 1, stats.summary()
    if op == "delete-rewrite":
        assert not stats.rewrites["none"], stats.summary()


async def test_killed_restore_leaves_no_temp_files_after_the_next_restore(tmp_path: Path):
    """A restore killed mid-write leaves `.nexus-restore-*` temp files (partial content) in the
    user's tree. Nothing may be torn at any time, so at the latest the next restore into that
    target must remove the temp files of dead restores (a `--delete` restore does not either:
    it skips them on purpose)."""
    root = tmp_path / "repo"
    h.init_project(root)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02}").write_bytes(os.urandom(200_000))
    mgr = BackupManager(root)
    meta = await mgr.create(h.CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    target = tmp_path / "target"
    left: list[bytes] = []
    tries = 40
    for _ in range(tries):  # kill until one restore is caught with a temp file on disk
        shutil.rmtree(target, ignore_errors=True)
        # Files already there: each is written to a temp name and renamed over (a file the
        # restore creates is a nameless inode until whole: no temp file to catch).
        target.mkdir()
        for i in range(30):
            (target / f"f{i:02}").write_bytes(b"old")
        proc = subprocess.Popen(
            [sys.executable, "-c", RESTORE_SLOWLY, str(root), meta.id, str(target)],
            env=h.driver_env(),
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"READY"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            left = h.restore_temp_files(target) if target.exists() else []
            if left:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.0005)
        proc.wait()
        left = h.restore_temp_files(target) if target.exists() else []
        if left:
            break
    else:
        pytest.skip(f"no kill caught a restore with a temp file on disk in {tries} tries")
    fresh = BackupManager(root)
    await fresh.restore(
        RestoreRequest(
            project_id=h.PROJECT,
            backup_id=meta.id,
            restore_dir=str(target),
            overwrite="always",
            delete_extra=True,
            checkpoint=False,
        )
    )
    assert h.snapshot(target) == h.snapshot(src) | {
        k: v
        for k, v in h.snapshot(target).items()
        if os.path.basename(k).startswith(h.RESTORE_TMP.encode())
    }, "the retried restore is not byte-exact"
    assert not h.restore_temp_files(target), (
        f"temp files of the killed restore are still in the target: {h.restore_temp_files(target)}"
    )


RESTORE_SLOWLY = r"""
import asyncio, os, sys
sys.path.insert(0, os.environ["NEXUS_REL_REPO"])
from core.manager import BackupManager
from core.models import RestoreRequest
print("READY", flush=True)
asyncio.run(BackupManager(sys.argv[1]).restore(RestoreRequest(
    project_id="rel", backup_id=sys.argv[2], restore_dir=sys.argv[3], checkpoint=False)))
"""


async def test_recovery_is_idempotent_across_many_fresh_managers(tmp_path: Path, seed: int):
    """Several processes opening a crashed repository at once each run recovery: the
    interrupted backup ends FAILED exactly once, the good one untouched, no lock left."""
    root = tmp_path / "repo"
    h.init_project(root)
    src = tmp_path / "src"
    h.build_source(__import__("random").Random(seed), src)
    mgr = BackupManager(root)
    good = await mgr.create(h.CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    big = tmp_path / "big"
    big.mkdir()
    for i in range(40):
        (big / f"b{i}").write_bytes(os.urandom(100_000))
    pool = h.DriverPool()
    try:
        d = pool.get()
        d.send({"op": "create", "root": str(root), "project": h.PROJECT, "data_dir": str(big)})
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            statuses = [
                p.read_text() for p in (root / "backups" / h.PROJECT).glob("backup_*/metadata.json")
            ]
            if any('"running"' in s for s in statuses):
                break
            time.sleep(0.002)
        d.kill()
        assert d.finish()[0] == "KILLED"
    finally:
        pool.close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cli", "--root", str(root), "--json", "list", h.PROJECT],
            env=h.driver_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    fresh = BackupManager(root)
    metas = {m.id: m for m in await fresh.list(h.PROJECT)}
    assert metas[good.id].status == BackupStatus.COMPLETED
    dead = [m for m in metas.values() if m.id != good.id]
    assert len(dead) == 1 and dead[0].status == BackupStatus.FAILED
    assert "interrupted" in (dead[0].error_message or "")
    await h.assert_repo_clean(fresh, root)
    await h.assert_all_restore(fresh, {good.id: h.snapshot(src)}, tmp_path / "scratch")
    await asyncio.sleep(0)

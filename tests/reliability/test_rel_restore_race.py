"""Restores under attack and interruption: a directory of the target swapped for a symlink to
elsewhere while the restore runs (by a thread, and by a second process running as another
user when we are root) never gets a write or delete outside the target; a cancelled or
killed restore leaves no temp file behind once the next restore ran."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import rel_harness as h
from rel_harness import can_drop_privileges
from restore_helpers import files_under, run_restorer, temp_files

from core.errors import Cancelled, NexusError
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.ops.progress import OperationContext
from core.ops.restore import TMP_PREFIX

P = h.PROJECT

# A swapper: renames DIR away, puts a symlink to OUTSIDE in its place, then puts it back,
# again and again until STOP exists (the same loop runs in a thread and in a process).
SWAP_LOOP = r"""
import os, sys, time
def swap(real, outside, stop, counter):
    hidden = real + ".real"
    while not os.path.exists(stop):
        try:
            os.rename(real, hidden)
            try:
                os.symlink(outside, real)
                time.sleep(0.0002)
                os.unlink(real)
            finally:
                os.rename(hidden, real)
            counter[0] += 1
        except OSError:
            time.sleep(0.0001)
if __name__ == "__main__":
    real, outside, stop, uid = sys.argv[1:5]
    if int(uid) >= 0:
        os.setgroups([]); os.setgid(int(uid)); os.setuid(int(uid))
    counter = [0]
    print("READY", flush=True)
    swap(real, outside, stop, counter)
    print(counter[0], flush=True)
"""
_ns: dict = {}
exec(compile(SWAP_LOOP, "swap_loop", "exec"), _ns)
swap = _ns["swap"]


def build(src: Path, files: int = 250) -> None:
    for d in ("sub", "sub/deeper", "other"):
        (src / d).mkdir(parents=True)
    for i in range(files):
        (src / "sub" / f"f{i:03}").write_bytes(os.urandom(2000))
        (src / "sub" / "deeper" / f"g{i:03}").write_bytes(os.urandom(500))
    (src / "other" / "x").write_text("x")


def plant_outside(outside: Path, files: int = 250) -> dict[bytes, bytes]:
    """The directory the symlinks point to, holding names the restore writes and deletes."""
    (outside / "deeper").mkdir(parents=True)
    for i in range(files):
        (outside / f"f{i:03}").write_text("outside: must not change")
        (outside / f"extra{i:03}").write_text("outside: must not be deleted")
        (outside / "deeper" / f"g{i:03}").write_text("outside")
    return files_under(outside)


def plant_extras(target: Path, files: int = 250) -> None:
    """Files for --delete to remove in `sub` (which an earlier round's swaps may have left a
    symlink, or renamed away: the target is put back to a real `sub` first)."""
    sub = target / "sub"
    if sub.is_symlink():
        sub.unlink()
    sub.mkdir(exist_ok=True)
    for i in range(files):
        (target / "sub" / f"extra{i:03}").write_text("extra: --delete removes it")


@pytest.mark.slow
async def test_subdir_swapped_for_symlink_by_a_thread_never_leaks(tmp_path: Path):
    root = tmp_path / "repo"
    h.init_project(root)
    src = tmp_path / "src"
    build(src)
    mgr = BackupManager(root)
    meta = await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
    outside = tmp_path / "outside"
    before = plant_outside(outside)
    target = tmp_path / "target"
    swaps = [0]
    for policy in ("always", "if-changed", "always", "always"):
        if target.exists():
            plant_extras(target)
        stop = tmp_path / "stop"
        stop.unlink(missing_ok=True)
        t = None
        if (target / "sub").exists():
            args = (str(target / "sub"), str(outside), str(stop), swaps)
            t = threading.Thread(target=swap, args=args)
            t.start()
        failed: NexusError | None = None
        try:
            await mgr.restore(
                RestoreRequest(
                    project_id=P,
                    backup_id=meta.id,
                    restore_dir=str(target),
                    overwrite=policy,
                    delete_extra=True,
                    checkpoint=False,
                )
            )
        except NexusError as exc:
            failed = exc  # judged after what matters most: nothing outside changed
        finally:
            stop.touch()
            if t is not None:
                t.join()
        assert files_under(outside) == before, f"written or deleted outside ({policy})"
        assert failed is None, f"the restore failed under the attack: {failed}"
    assert swaps[0] > 0, "the swapper never swapped"
    assert not temp_files(target)


async def test_target_holding_a_symlink_from_an_earlier_restore(tmp_path: Path, tree_of):
    """A first backup holds `sub -> outside`; a second holds a real `sub/`: restoring the
    second over the first never writes through the symlink, whatever the policy."""
    root = tmp_path / "repo"
    h.init_project(root)
    mgr = BackupManager(root)
    outside = tmp_path / "outside"
    before = plant_outside(outside, 20)
    evil = tmp_path / "evil"
    evil.mkdir()
    os.symlink(outside, evil / "sub")
    os.symlink(outside / "deeper", evil / "other")
    first = await mgr.create(CreateRequest(project_id=P, data_dir=str(evil)))
    good = tmp_path / "good"
    build(good, 20)
    second = await mgr.create(CreateRequest(project_id=P, data_dir=str(good), data_dir_change=True))
    target = tmp_path / "target"
    for policy in ("if-changed", "never", "always"):
        for meta, delete in ((first, False), (second, False), (second, True), (first, True)):
            await mgr.restore(
                RestoreRequest(
                    project_id=P,
                    backup_id=meta.id,
                    restore_dir=str(target),
                    overwrite=policy,
                    delete_extra=delete,
                    checkpoint=False,
                )
            )
            assert files_under(outside) == before, f"leaked ({policy}, {meta.id}, {delete})"
    await mgr.restore(
        RestoreRequest(
            project_id=P, backup_id=second.id, restore_dir=str(target), overwrite="always"
        )
    )
    assert tree_of(target) == tree_of(good)


@pytest.mark.slow
async def test_another_user_swapping_dirs_in_a_shared_target(tmp_path: Path):
    """Root restores into a directory another user may write in; that user's process swaps
    a subdirectory for a symlink to a root-only directory in a loop. (Not root: the same
    attack from a second process of ours.)"""
    uid = -1 if can_drop_privileges() else 65534
    base = Path(tempfile.mkdtemp(prefix="nexus-race-", dir="/tmp"))  # one nobody can enter
    base.chmod(0o755)
    try:
        await _shared_target_attack(base, uid)
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def _shared_target_attack(tmp_path: Path, uid: int) -> None:
    root = tmp_path / "repo"
    h.init_project(root)
    src = tmp_path / "src"
    build(src)
    mgr = BackupManager(root)
    meta = await mgr.create(CreateRequest(project_id=P, data_dir=str(src)))
    outside = tmp_path / "root-only"
    before = plant_outside(outside)
    outside.chmod(0o700)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone may rename and create in it
    await mgr.restore(RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(shared)))
    stop = tmp_path / "stop"
    swaps = 0
    for _ in range(3):
        plant_extras(shared)
        stop.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SWAP_LOOP,
                str(shared / "sub"),
                str(outside),
                str(stop),
                str(uid),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
        failed: NexusError | None = None
        try:
            await mgr.restore(
                RestoreRequest(
                    project_id=P,
                    backup_id=meta.id,
                    restore_dir=str(shared),
                    overwrite="always",
                    delete_extra=True,
                    checkpoint=False,
                )
            )
        except NexusError as exc:
            failed = exc  # judged after what matters most: nothing outside changed
        finally:
            stop.touch()
            out, _ = proc.communicate(timeout=20)
        swaps += int(out.split()[-1])
        assert files_under(outside) == before, "the restore wrote or deleted outside"
        assert failed is None, f"the restore failed under the attack: {failed}"
    assert swaps > 0, "the other process never swapped"


# --- invariant: a cancelled or killed restore leaves no temp files -------------------------


@pytest.fixture
async def big_backup(tmp_path: Path):
    root = tmp_path / "repo"
    h.init_project(root, small=False)
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "big.bin", "wb") as f:
        for _ in range(72):
            f.write(os.urandom(1 << 20))
    (src / "small.txt").write_text("small")
    meta = await BackupManager(root).create(CreateRequest(project_id=P, data_dir=str(src)))
    return root, meta, src


@pytest.mark.parametrize("at", [1, 36 << 20], ids=["first-bytes", "half-way"])
async def test_cancel_mid_large_file_leaves_no_temp_file(tmp_path: Path, big_backup, at):
    root, meta, _src = big_backup
    target = tmp_path / "target"
    ctx = OperationContext("restore", P, meta.id)
    done = threading.Event()

    def cancel_once_bytes_flow() -> None:
        while not done.is_set():
            if ctx.phase == "restoring" and ctx.bytes_done >= at:
                ctx.cancel.set()
                return
            time.sleep(0.0005)

    t = threading.Thread(target=cancel_once_bytes_flow)
    t.start()
    try:
        with pytest.raises(Cancelled):
            run_restorer(root, P, meta.id, target, ctx=ctx, checkpoint=False)
    finally:
        done.set()
        t.join()
    assert ctx.cancel.is_set()
    assert not temp_files(target), f"temp files left: {temp_files(target)}"


RESTORE_BIG = r"""
import asyncio, os, sys
sys.path.insert(0, os.environ["NEXUS_REL_REPO"])
from core.manager import BackupManager
from core.models import RestoreRequest
print("READY", flush=True)
asyncio.run(BackupManager(sys.argv[1]).restore(RestoreRequest(
    project_id="rel", backup_id=sys.argv[2], restore_dir=sys.argv[3], checkpoint=False)))
"""


async def test_killed_large_restore_leaves_nothing_after_the_next(tmp_path: Path, big_backup):
    root, meta, src = big_backup
    target = tmp_path / "target"
    for _ in range(10):
        # A file already there is written to a temp name and renamed over (one the restore
        # creates is a nameless inode until whole: no temp file to catch).
        target.mkdir(exist_ok=True)
        (target / "big.bin").write_bytes(b"old")
        proc = subprocess.Popen(
            [sys.executable, "-c", RESTORE_BIG, str(root), meta.id, str(target)],
            env=h.driver_env(),
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"READY"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if target.exists() and temp_files(target):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        proc.wait()
        if temp_files(target):
            break
    else:
        pytest.skip("no kill caught the restore with a temp file on disk")
    await BackupManager(root).restore(
        RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(target))
    )
    assert not temp_files(target)
    assert (target / "big.bin").read_bytes() == (src / "big.bin").read_bytes()


async def test_leftovers_of_this_process_are_removed_unless_in_use(tmp_path: Path, big_backup):
    """An earlier restore of this same process (the TUI's) that left a temp file behind: the
    next restore removes it, though the pid is alive; a live process's are left alone."""
    root, meta, _src = big_backup
    target = tmp_path / "target"
    target.mkdir()
    mine = target / f"{TMP_PREFIX}{os.getpid()}-dead00-7"
    mine.write_bytes(b"partial")
    other_pid = os.getppid()
    theirs = target / f"{TMP_PREFIX}{other_pid}-abcdef-1"
    theirs.write_bytes(b"a live restore's")
    run_restorer(root, P, meta.id, target, checkpoint=False)
    assert not mine.exists(), "this process's stale temp file was left"
    assert theirs.exists(), "a live process's temp file was removed"


async def test_failed_restore_mid_large_file_leaves_no_temp_file(tmp_path: Path, big_backup):
    """A chunk that fails its hash mid-way: the file is named damaged and not written, the
    other file restored, no temp file remains."""
    root, meta, _src = big_backup
    packs = sorted((root / "backups" / P / "packs").rglob("*"))
    victim = max((p for p in packs if p.is_file()), key=lambda p: p.stat().st_size)
    with open(victim, "r+b") as f:
        f.seek(victim.stat().st_size // 2)
        f.write(b"\x00" * 64)
    target = tmp_path / "target"
    res = run_restorer(root, P, meta.id, target, checkpoint=False)
    assert [d.path for d in res.damaged_files] == ["big.bin"] and not res.verified
    assert not (target / "big.bin").exists() and (target / "small.txt").read_text() == "small"
    assert not temp_files(target)


class _CtrlC(OperationContext):
    """A context whose check() in the main thread raises KeyboardInterrupt once the large
    file's parts are queued and writing: Ctrl-C landing in the restore's own thread while
    the pool writes (its second check in the restoring phase; the first is before any job)."""

    calls = 0

    def check(self) -> None:
        if threading.current_thread() is threading.main_thread() and self.phase == "restoring":
            self.calls += 1
            if self.calls >= 2:
                deadline = time.monotonic() + 10
                while self.bytes_done == 0 and time.monotonic() < deadline:
                    time.sleep(0.001)
                raise KeyboardInterrupt
        super().check()


async def test_ctrl_c_in_the_main_thread_leaves_no_temp_file(tmp_path: Path, big_backup):
    root, meta, _src = big_backup
    target = tmp_path / "target"
    ctx = _CtrlC("restore", P, meta.id)
    with pytest.raises(KeyboardInterrupt):
        run_restorer(root, P, meta.id, target, ctx=ctx, checkpoint=False)
    assert 0 < ctx.bytes_done < 72 * (1 << 20), "the interrupt did not land mid-file"
    assert not temp_files(target), f"temp files left: {temp_files(target)}"

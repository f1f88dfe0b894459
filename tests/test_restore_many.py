"""Restores of many files (issue 18): files the restore creates are written as nameless inodes
and linked under their name only once whole (`core.ops.restore_anon`). What a user checks:
every byte, mode and time comes back, for files and directories; a name taken meanwhile is
still replaced as a temp file's rename would; a directory swapped for a symlink mid-restore
sends nothing outside; a killed restore leaves whole files only, and no temp file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from restore_helpers import files_under, run_restorer, temp_files

from core.models import CreateRequest, ProgressEvent
from core.ops import restore_anon
from core.ops.progress import OperationContext

P = "many"
MODES = (0o644, 0o600, 0o755, 0o444, 0o640, 0o4755, 0o2750, 0o1777, 0o604)
HERE = Path(__file__).resolve().parent


def make_many(src: Path, n: int) -> None:
    """n small distinct files in one directory with assorted modes and times, and a
    subdirectory of a few more, its own mode and time set last."""
    src.mkdir()
    sub = src / "sub"
    sub.mkdir()
    for i in range(n):
        f = (src if i % 10 else sub) / f"f{i:05d}.txt"
        f.write_bytes(b"%d\n" % i + os.urandom(i % 700))
        f.chmod(MODES[i % len(MODES)])
        os.utime(f, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_123_456_789 + i * 1000))
    sub.chmod(0o750)
    os.utime(sub, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))


def attrs(top: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (permission bits, mtime in ns) of everything beneath top."""
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for name in dirs + files:
            full = Path(dirpath) / name
            st = full.lstat()
            out[str(full.relative_to(top))] = (st.st_mode & 0o7777, st.st_mtime_ns)
    return out


@pytest.fixture
async def many(manager, tmp_path: Path):
    src = tmp_path / "src"
    make_many(src, 2000)
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))
    return manager.root, meta, src


async def test_many_files_come_back_byte_for_byte_with_modes_and_times(many, tmp_path):
    root, meta, src = many
    target = tmp_path / "target"
    result = run_restorer(Path(root), P, meta.id, target, checkpoint=False)
    assert result.files_written == 2000
    assert files_under(target) == files_under(src)
    assert attrs(target) == attrs(src)
    assert not temp_files(target)


async def test_many_files_under_a_strict_umask_keep_their_modes(many, tmp_path):
    """A file's mode is its entry's whatever the umask (created with it only when the umask
    takes nothing away; chmod'ed otherwise)."""
    root, meta, src = many
    target = tmp_path / "target"
    old = os.umask(0o077)
    try:
        run_restorer(Path(root), P, meta.id, target, checkpoint=False)
    finally:
        os.umask(old)
    assert attrs(target) == attrs(src)


def test_creation_mode_is_only_the_entry_mode_when_nothing_would_change_it():
    assert restore_anon.creation_mode(0o100644, 0o022) == 0o644
    assert restore_anon.creation_mode(0o100755, 0o022) == 0o755
    assert restore_anon.creation_mode(0o100664, 0o022) is None  # umask takes g+w
    assert restore_anon.creation_mode(0o104755, 0) is None  # set-uid: chmod after chown
    assert restore_anon.creation_mode(0o100600, None) is None  # umask unknown


def _ctx_acting_once(action, when) -> OperationContext:
    """A restore context whose progress callback runs `action` once, on the first event
    `when(event)` accepts (events come from the writer threads, mid-restore)."""
    fired = threading.Event()
    lock = threading.Lock()

    def emit(event: ProgressEvent) -> None:
        if fired.is_set() or not when(event):
            return
        with lock:
            if not fired.is_set():
                action()
                fired.set()

    ctx = OperationContext("restore", P, None, emit=emit, min_interval=0.0)
    ctx.fired = fired  # type: ignore[attr-defined]
    return ctx


async def test_a_name_taken_meanwhile_is_kept_and_a_directory_there_is_kept(many, tmp_path):
    """Between the plan (nothing there: create) and the naming of the file, a file and a
    directory appear at two later names: neither is replaced (a creation never replaces,
    invariant 5: what appeared is in no checkpoint and was never shown), each is left with
    its content and a warning says so."""
    root, meta, src = many
    target = tmp_path / "target"
    target.mkdir()

    def plant() -> None:
        (target / "f01999.txt").write_bytes(b"planted")
        (target / "f01998.txt").mkdir()
        (target / "f01998.txt" / "keep").write_bytes(b"mine")

    ctx = _ctx_acting_once(plant, lambda e: e.phase == "restoring" and e.files_done >= 10)
    result = run_restorer(Path(root), P, meta.id, target, ctx=ctx, checkpoint=False)
    assert ctx.fired.is_set()  # type: ignore[attr-defined]
    assert (target / "f01999.txt").read_bytes() == b"planted"
    assert (target / "f01998.txt" / "keep").read_bytes() == b"mine"
    assert any("f01999.txt" in w and "took its name" in w for w in result.warnings)
    assert any("f01998.txt" in w and "took its name" in w for w in result.warnings)
    got, want = files_under(target), files_under(src)
    del want[b"f01998.txt"], got[b"f01998.txt/keep"]
    want[b"f01999.txt"] = b"planted"
    assert got == want
    assert not temp_files(target)


async def test_directory_swapped_for_a_symlink_mid_restore_sends_nothing_outside(many, tmp_path):
    root, meta, _src = many
    target, outside = tmp_path / "target", tmp_path / "outside"
    outside.mkdir()
    target.mkdir()

    def swap() -> None:
        os.rename(target / "sub", target / "sub.moved")
        os.symlink(outside, target / "sub")

    ctx = _ctx_acting_once(swap, lambda e: (e.current_path or "").startswith("sub/"))
    run_restorer(Path(root), P, meta.id, target, ctx=ctx, checkpoint=False)
    assert ctx.fired.is_set()  # type: ignore[attr-defined]
    assert list(outside.iterdir()) == []
    assert not temp_files(target)


RESTORE = r"""
import asyncio, os, sys
sys.path.insert(0, sys.argv[4])
from core.manager import BackupManager
from core.models import RestoreRequest
print("READY", flush=True)
asyncio.run(BackupManager(sys.argv[1]).restore(RestoreRequest(
    project_id="many", backup_id=sys.argv[2], restore_dir=sys.argv[3], checkpoint=False)))
"""


async def test_killed_restore_of_many_files_leaves_whole_files_only(many, tmp_path):
    """SIGKILL at a few instants while files are being created: every file that has a name is
    whole (its backed-up bytes), and no temp file is left behind."""
    root, meta, src = many
    want = files_under(src)
    caught = 0
    for attempt in range(3):
        target = tmp_path / f"target{attempt}"
        proc = subprocess.Popen(
            [sys.executable, "-c", RESTORE, str(root), meta.id, str(target), str(HERE.parent)],
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"READY"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if target.is_dir() and len(os.listdir(target)) > 50 + attempt * 500:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        proc.wait()
        got = files_under(target) if target.exists() else {}
        caught += 0 < len(got) < len(want)
        assert all(want[k] == v for k, v in got.items()), "a named file is not whole"
        assert not temp_files(target)
    if not caught:
        pytest.skip("no kill caught the restore half-way")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="O_TMPFILE is Linux's")
def test_anonymous_files_are_used_here():
    """The tests above exercise the nameless-inode path on this system (Linux, /proc)."""
    assert restore_anon.supported()


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="needs setfacl")
async def test_a_default_acl_of_the_target_does_not_change_the_modes(many, tmp_path):
    """A new file's mode comes from the directory's default ACL, not the umask: the mode it
    got is compared, so each file still ends with its entry's mode."""
    root, meta, src = many
    target = tmp_path / "target"
    target.mkdir()
    probe = subprocess.run(["setfacl", "-d", "-m", "u::rwx,g::---,o::---", str(target)])
    if probe.returncode:
        pytest.skip("the filesystem takes no ACLs")
    run_restorer(Path(root), P, meta.id, target, checkpoint=False)
    assert attrs(target) == attrs(src)


def test_a_directory_removed_meanwhile_is_said_as_removed(tmp_path: Path) -> None:
    """Linux refuses a nameless file in a removed directory with EPERM: it must reach the
    restore as the removal it is (the file skipped with a warning), not as a failure of the
    whole restore (found by test_rel_restore_race's shared-target attack)."""
    from core.ops import restore_anon

    gone = tmp_path / "gone"
    gone.mkdir()
    fd = os.open(gone, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.rmdir(gone)
        if restore_anon.supported():
            with pytest.raises(FileNotFoundError):
                restore_anon.open_anon(fd, 0o644)
    finally:
        os.close(fd)

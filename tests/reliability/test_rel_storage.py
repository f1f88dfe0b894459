"""Disk full and write errors: a repository that runs out of space (a size-limited tmpfs) or a
process whose file-size limit is hit (RLIMIT_FSIZE, SIGXFSZ ignored, so writes fail EFBIG).

A backup that cannot store its data must FAIL, with one clear line naming the cause, leave no
temp file, keep no pack of its own, and harm no earlier backup. A restore into a target that
fills up fails the same way and leaves whole files only."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest
import rel_harness as h

from core.errors import NexusError, StorageFull
from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest


def _cli(root: Path, *args: str, limit: int | None = None) -> subprocess.CompletedProcess:
    def preexec() -> None:
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return h.cli_process(root, *args, preexec_fn=preexec)


def _write_random(top: Path, files: int, size: int) -> Path:
    top.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (top / f"r{i:03}.bin").write_bytes(os.urandom(size))
    return top


async def _assert_failed_cleanly(
    root: Path,
    earlier: dict[str, h.Snapshot],
    packs_before: set[str],
    scratch: Path,
    *,
    project: str = h.PROJECT,
    cause: tuple[str, ...] = ("no space left", "file too large"),
) -> None:
    mgr = BackupManager(root)
    metas = await mgr.list(project)
    failed = [m for m in metas if m.id not in earlier]
    assert len(failed) == 1, [(m.id, m.status) for m in metas]
    bad = failed[0]
    assert bad.status == BackupStatus.FAILED, f"a backup onto a full disk ended {bad.status}"
    assert any(c in (bad.error_message or "").lower() for c in cause), bad.error_message
    assert not h.manifest_exists(root, bad.id, project)
    assert not h.store_temp_files(root), h.store_temp_files(root)
    assert h.pack_names(root, project) == packs_before, "the failed run left packs behind"
    assert not h.lock_files(root, project)
    await h.assert_all_restore(mgr, earlier, scratch, project)
    result = await mgr.check(project, read_data=True)
    assert result.ok, result.errors


async def _first_backup(root: Path, tmp_path: Path) -> tuple[dict[str, h.Snapshot], set[str]]:
    small = _write_random(tmp_path / "small", 4, 20_000)
    mgr = BackupManager(root)
    meta = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(small)))
    return {meta.id: h.snapshot(small)}, h.pack_names(root)


# --- a repository on a full filesystem ---------------------------------------------------------


async def test_full_repository_fails_cleanly(tmp_path: Path, mount_tmpfs):
    """Reader threads hit ENOSPC while storing chunks: the backup fails as StorageFull (it
    failed as Damaged, '<n> chunks referenced by the backup are not indexed', exit 4, with
    'read error' warnings before the fix)."""
    fs = mount_tmpfs("repofs", "6m")
    root = fs / "repo"
    h.init_project(root, small=False)
    earlier, packs = await _first_backup(root, tmp_path)
    big = _write_random(tmp_path / "big", 10, 1_000_000)
    with pytest.raises(NexusError) as err:
        await BackupManager(root).create(
            CreateRequest(project_id=h.PROJECT, data_dir=str(big), data_dir_change=True)
        )
    assert isinstance(err.value, StorageFull), f"{type(err.value).__name__}: {err.value}"
    assert "no space left" in str(err.value)
    await _assert_failed_cleanly(root, earlier, packs, tmp_path / "scratch")


async def test_full_repository_via_the_cli_is_one_clear_line(tmp_path: Path, mount_tmpfs):
    fs = mount_tmpfs("repofs", "6m")
    root = fs / "repo"
    h.init_project(root, small=False)
    earlier, packs = await _first_backup(root, tmp_path)
    big = _write_random(tmp_path / "big", 10, 1_000_000)
    r = _cli(root, "create", h.PROJECT, str(big), "--data-dir-change")
    assert h.nexus_error_line(r.stderr), r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nexus-backup: error: "), r.stderr
    assert "no space left on device" in lines[0], lines[0]
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    await _assert_failed_cleanly(root, earlier, packs, tmp_path / "scratch")


async def test_full_repository_never_completes_a_backup(tmp_path: Path, mount_tmpfs):
    """One big file on a full repository: the backup fails (it COMPLETED, exit 3, with the
    file 'skipped: read error: No space left on device', before the fix)."""
    fs = mount_tmpfs("repofs", "2m")
    root = fs / "repo"
    h.init_project(root)
    earlier, packs = await _first_backup(root, tmp_path)
    big = _write_random(tmp_path / "big", 1, 4_000_000)
    try:
        meta = await BackupManager(root).create(
            CreateRequest(project_id=h.PROJECT, data_dir=str(big), data_dir_change=True)
        )
    except StorageFull:
        pass
    else:
        pytest.fail(f"backup COMPLETED on a full repository, warnings {meta.stats.warnings}")
    await _assert_failed_cleanly(root, earlier, packs, tmp_path / "scratch")


async def test_completely_full_repository_refuses_at_once(tmp_path: Path, mount_tmpfs):
    """Not a byte free: the lock cannot even be written; one line, nothing changed."""
    fs = mount_tmpfs("repofs", "2m")
    root = fs / "repo"
    h.init_project(root)
    earlier, _packs = await _first_backup(root, tmp_path)
    filler = fs / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
    before = h.tree_state(root, files_only=True)
    r = _cli(root, "create", h.PROJECT, str(tmp_path / "small"))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert h.nexus_error_line(r.stderr) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "no space left" in r.stderr
    assert h.tree_state(root, files_only=True) == before
    filler.unlink()
    await h.assert_all_restore(BackupManager(root), earlier, tmp_path / "scratch")


async def test_restore_whose_safety_checkpoint_cannot_be_stored_changes_nothing(
    tmp_path: Path, mount_tmpfs
):
    """Restoring over a non-empty directory first backs it up (a checkpoint); when the
    repository is full that fails, and the target must stay as it was."""
    fs = mount_tmpfs("repofs", "3m")
    root = fs / "repo"
    h.init_project(root, small=False)
    earlier, _packs = await _first_backup(root, tmp_path)
    (backup_id,) = earlier
    target = _write_random(tmp_path / "target", 8, 1_000_000)  # too big for the repository
    for rel in earlier[backup_id]:
        (target / os.fsdecode(rel)).write_bytes(b"local edit\n")
    before = h.tree_state(target)
    r = _cli(root, "restore", h.PROJECT, backup_id, str(target), "--overwrite", "always")
    assert r.returncode != 0, r.stdout
    assert h.nexus_error_line(r.stderr), r.stderr
    assert h.tree_state(target) == before, "the target changed though no checkpoint was taken"
    assert not h.store_temp_files(root)


# --- a file-size limit on the process (EFBIG) ----------------------------------------------------


async def test_file_size_limit_at_the_final_pack_fails_cleanly(tmp_path: Path):
    """The run's only pack is written at the end (less than a write buffer of blobs): EFBIG
    there is a clean failure today."""
    root = tmp_path / "repo"
    h.init_project(root, small=False)
    earlier, packs = await _first_backup(root, tmp_path)
    big = _write_random(tmp_path / "big", 3, 250_000)
    r = _cli(root, "create", h.PROJECT, str(big), "--data-dir-change", limit=256 * 1024)
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr)
    assert h.nexus_error_line(r.stderr) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "file too large" in r.stderr
    await _assert_failed_cleanly(root, earlier, packs, tmp_path / "scratch")


async def test_file_size_limit_hit_while_reading_fails_cleanly(tmp_path: Path):
    """One 3 MB file under a 256 KiB limit: the first spool write (in a reader thread) fails
    with EFBIG, and so does the backup (before the fix it COMPLETED holding no file)."""
    root = tmp_path / "repo"
    h.init_project(root, small=False)
    earlier, packs = await _first_backup(root, tmp_path)
    big = _write_random(tmp_path / "big", 1, 3_000_000)
    r = _cli(root, "create", h.PROJECT, str(big), "--data-dir-change", limit=256 * 1024)
    assert "file too large" in r.stderr, (r.returncode, r.stdout[-500:], r.stderr)
    assert h.nexus_error_line(r.stderr) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr)
    await _assert_failed_cleanly(root, earlier, packs, tmp_path / "scratch")


# --- a restore target that fills up -------------------------------------------------------------


def _assert_whole_files(target: Path, want: h.Snapshot, old: h.Snapshot | None = None) -> None:
    old = old or {}
    assert not h.restore_temp_files(target), h.restore_temp_files(target)
    for rel, entry in h.snapshot(target).items():
        if entry[0] != "f":
            continue
        ok = [s[rel][1] for s in (want, old) if rel in s and s[rel][0] == "f"]
        assert entry[1] in ok, f"{rel!r} is torn or foreign after the failed restore"


async def test_restore_into_a_too_small_target_is_refused_before_writing(
    tmp_path: Path, mount_tmpfs
):
    root = tmp_path / "repo"
    h.init_project(root)
    src = _write_random(tmp_path / "src", 6, 500_000)
    mgr = BackupManager(root)
    meta = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    fs = mount_tmpfs("target", "1m")
    r = _cli(root, "restore", h.PROJECT, meta.id, str(fs / "out"))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert h.nexus_error_line(r.stderr) and "free" in r.stderr, r.stderr
    assert not list(fs.rglob("*")) or not any(p.is_file() for p in fs.rglob("*"))
    assert (await mgr.info(h.PROJECT, meta.id)).metadata.status == BackupStatus.COMPLETED


async def test_restore_target_filling_up_mid_write(tmp_path: Path, mount_tmpfs):
    """Many small files: the free-space estimate passes (bytes) but blocks run out: the restore
    fails with one line, no temp file is left, each file is whole (old or restored)."""
    root = tmp_path / "repo"
    h.init_project(root)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(500):
        (src / f"s{i:03}.dat").write_bytes(os.urandom(3000))
    mgr = BackupManager(root)
    meta = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    fs = mount_tmpfs("target", "1700k")
    target = fs / "out"
    target.mkdir()
    old: h.Snapshot = {}
    for i in range(0, 500, 50):  # some files already there, with other content
        (target / f"s{i:03}.dat").write_bytes(b"old %d\n" % i)
    old = h.snapshot(target)
    r = _cli(
        root, "restore", h.PROJECT, meta.id, str(target), "--overwrite", "always", "--no-checkpoint"
    )
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr)
    assert h.nexus_error_line(r.stderr) and "no space left" in r.stderr, r.stderr
    _assert_whole_files(target, h.snapshot(src), old)
    info = await BackupManager(root).info(h.PROJECT, meta.id)
    assert info.metadata.status == BackupStatus.COMPLETED


async def test_restore_hitting_the_file_size_limit(tmp_path: Path):
    root = tmp_path / "repo"
    h.init_project(root)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"k{i}.bin").write_bytes(os.urandom(20_000 if i % 2 else 300_000))
    mgr = BackupManager(root)
    meta = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    target = tmp_path / "out"
    r = _cli(root, "--json", "restore", h.PROJECT, meta.id, str(target), limit=100_000)
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr)
    assert h.nexus_error_line(r.stderr) and "file too large" in r.stderr, r.stderr
    _assert_whole_files(target, h.snapshot(src))
    # and with room again, the same restore completes byte for byte
    await mgr.restore(
        RestoreRequest(project_id=h.PROJECT, backup_id=meta.id, restore_dir=str(target))
    )
    assert h.snapshot(target) == h.snapshot(src)
    assert json.loads(_cli(root, "--json", "verify", h.PROJECT, meta.id).stdout)["ok"]


def _fill(fs: Path, free_pages: int) -> None:
    """Fill a tmpfs, then give back exactly `free_pages` pages."""
    fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"\0" * 4096)
    size = os.fstat(fd).st_size
    os.close(fd)
    os.truncate(fs / "filler", (size // 4096 - free_pages) * 4096)


@pytest.mark.parametrize("free_pages", [0, 1])
async def test_restore_from_a_full_repository(tmp_path: Path, mount_tmpfs, free_pages: int):
    """Restoring reads the repository; on a full one it must work, or fail as a NexusError
    (StorageFull) with one clear line, and leave the backup COMPLETED."""
    fs = mount_tmpfs("repofs", "2m")
    root = fs / "repo"
    h.init_project(root)
    earlier, _packs = await _first_backup(root, tmp_path)
    (backup_id,) = earlier
    _fill(fs, free_pages)
    target = tmp_path / "out"
    try:
        await BackupManager(root).restore(
            RestoreRequest(
                project_id=h.PROJECT,
                backup_id=backup_id,
                restore_dir=str(target),
                checkpoint=False,
            )
        )
    except NexusError as exc:
        assert isinstance(exc, StorageFull), exc
    else:
        assert h.snapshot(target) == earlier[backup_id]
    code, _out, err = await asyncio.to_thread(
        h.cli_inproc, ["--root", str(root), "restore", h.PROJECT, backup_id, str(target) + "2"]
    )
    assert code in (0, 1) and h.nexus_error_line(err) and "internal error" not in err, err
    (fs / "filler").unlink()
    info = await BackupManager(root).info(h.PROJECT, backup_id)
    assert info.metadata.status == BackupStatus.COMPLETED


async def test_a_disk_filling_up_while_delete_reclaims_is_one_line_and_loses_nothing(
    tmp_path: Path, mount_tmpfs
):
    """The deleted backup shared a pack with the kept one, so reclaim must repack it, and the
    disk has room for the delete's lock and tombstone but not for the new pack: one line
    saying so (no raw errno), exit 1, no temp file, no pack gone, the kept backup restores
    byte for byte; and, with room again, the next delete reclaims what this one could not."""
    fs = mount_tmpfs("repofs", "4m")
    root = fs / "repo"
    h.init_project(root, small=False)
    src = _write_random(tmp_path / "src", 4, 300_000)
    mgr = BackupManager(root)
    doomed = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    for i in (1, 2, 3):
        (src / f"r{i:03}.bin").unlink()
    kept = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    earlier, packs = {kept.id: h.snapshot(src)}, h.pack_names(root)
    _fill(fs, 2)
    r = _cli(root, "delete", h.PROJECT, doomed.id)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and h.nexus_error_line(r.stderr), r.stderr
    assert "no space left on device while reclaiming" in lines[0], lines[0]
    assert "nothing was lost" in lines[0] and "Errno" not in lines[0], lines[0]
    assert f"Deleted backup {doomed.id}" in r.stdout, r.stdout
    (fs / "filler").unlink()
    assert not h.store_temp_files(root), h.store_temp_files(root)
    assert packs <= h.pack_names(root)
    mgr = BackupManager(root)
    assert [m.id for m in await mgr.list(h.PROJECT)] == [kept.id]
    await h.assert_all_restore(mgr, earlier, tmp_path / "scratch")
    assert (await mgr.check(h.PROJECT, read_data=True)).ok
    extra = await mgr.create(CreateRequest(project_id=h.PROJECT, data_dir=str(src)))
    again = _cli(root, "--json", "delete", h.PROJECT, extra.id)
    assert again.returncode == 0 and json.loads(again.stdout)["bytes_reclaimed"] > 600_000
    await h.assert_all_restore(BackupManager(root), earlier, tmp_path / "scratch2")

"""Where a restore may not go (design I4), attacked as the third audit did: another project's
directory in a repository kept elsewhere (`--repo`), a bind mount of one, the logs, and a
component of the target's path swapped for a symlink into the repository after the path was
resolved, by another process, during the restores.

Each is judged by what a user checks: the other project still opens and restores, the logs
still hold their lines, nothing of the backup landed in the repository."""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
import time
from pathlib import Path

import pytest
from rel_harness import bind_mount as _bind
from rel_harness import regular_files as _files

from core.errors import InvalidInput, NexusError
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.ops.restore import Restorer


async def _two_projects(mgr: BackupManager, tmp_path: Path) -> dict[str, str]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    (data / "sub").mkdir()
    (data / "sub" / "b.txt").write_text("b")
    ids = {}
    for p in ("p", "q"):
        ids[p] = (await mgr.create(CreateRequest(project_id=p, data_dir=str(data)))).id
    return ids


def _req(backup_id: str, target: Path | str, **kw: object) -> RestoreRequest:
    return RestoreRequest(project_id="p", backup_id=backup_id, restore_dir=str(target), **kw)


async def _under_one_root(tmp_path: Path) -> tuple[BackupManager, dict[str, str], Path, dict]:
    """A manager on a fresh root with projects p and q; q's directory and its files."""
    mgr = BackupManager(tmp_path / "root")
    ids = await _two_projects(mgr, tmp_path)
    q = tmp_path / "root" / "backups" / "q"
    return mgr, ids, q, _files(q)


async def _q_intact(mgr: BackupManager, q_id: str, before: dict[str, bytes], where: Path) -> None:
    assert _files(where) == before, "project q's repository changed"
    out = where.parent.parent.parent / "q-out"
    req = RestoreRequest(project_id="q", backup_id=q_id, restore_dir=str(out))
    await mgr.restore(req)
    assert (out / "a.txt").read_text() == "a"


@pytest.mark.parametrize("delete", [False, True])
async def test_another_project_of_a_repository_kept_elsewhere_is_no_target(
    tmp_path: Path, delete: bool
) -> None:
    mgr = BackupManager(tmp_path / "root", repository=tmp_path / "repo")
    ids = await _two_projects(mgr, tmp_path)
    q = tmp_path / "repo" / "backups" / "q"
    assert (q / "config.json").exists()
    before = _files(q)
    for dry in (True, False):
        with pytest.raises(InvalidInput, match="inside a backup repository"):
            await mgr.restore(_req(ids["p"], q, delete_extra=delete, checkpoint=False, dry_run=dry))
        with pytest.raises(InvalidInput, match="inside a backup repository"):
            await mgr.restore(_req(ids["p"], q / "new" / "dir", dry_run=dry))
    await _q_intact(mgr, ids["q"], before, q)


async def test_a_bind_mount_of_another_project_is_no_target(tmp_path: Path) -> None:
    mgr, ids, q, before = await _under_one_root(tmp_path)
    mount = tmp_path / "elsewhere" / "bm"
    with _bind(q, mount):
        with pytest.raises(InvalidInput, match="inside a backup repository"):
            await mgr.restore(_req(ids["p"], mount, delete_extra=True, checkpoint=False))
        with pytest.raises(InvalidInput, match="inside a backup repository"):
            await mgr.restore(_req(ids["p"], mount / "sub", checkpoint=False))
    await _q_intact(mgr, ids["q"], before, q)


async def test_the_logs_are_no_target(tmp_path: Path) -> None:
    root = tmp_path / "root"
    mgr = BackupManager(root)
    ids = await _two_projects(mgr, tmp_path)
    logs = _files(root / "logs")
    assert logs
    for target in (root / "logs", root / "logs" / "sub"):
        with pytest.raises(InvalidInput, match="or the logs"):
            await mgr.restore(_req(ids["p"], target, delete_extra=True, checkpoint=False))
    after = _files(root / "logs")
    assert all(after[k].startswith(v) for k, v in logs.items()), "a log lost its lines"
    assert not (root / "logs" / "sub").exists()


async def test_a_path_swapped_after_it_was_resolved_is_judged_by_what_it_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target is resolved once; if a component is then a symlink into the repository
    (another process swapped it in), the directory opened is refused all the same."""
    root = tmp_path / "root"
    mgr, ids, q, before = await _under_one_root(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "x").symlink_to(root / "backups")  # as if swapped in after the resolution
    resolved = shared / "x" / "q"
    monkeypatch.setattr(Restorer, "_target", lambda self: resolved)
    for target_kw in ({"delete_extra": True}, {"overwrite": "always"}):
        with pytest.raises(InvalidInput, match="inside a backup repository"):
            await mgr.restore(_req(ids["p"], resolved, checkpoint=False, **target_kw))
    monkeypatch.setattr(Restorer, "_target", lambda self: resolved / "new")
    with pytest.raises(InvalidInput, match="inside a backup repository"):
        await mgr.restore(_req(ids["p"], resolved / "new", checkpoint=False))
    monkeypatch.undo()
    await _q_intact(mgr, ids["q"], before, q)


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE):
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@pytest.mark.slow
async def test_a_component_swapped_for_a_symlink_during_restores_never_leads_inside(
    tmp_path: Path,
) -> None:
    """Another process swaps the target's parent and a symlink to the repository back and
    forth (atomically, `renameat2(RENAME_EXCHANGE)`) while restores with --delete run."""
    root = tmp_path / "root"
    mgr, ids, q, before = await _under_one_root(tmp_path)
    shared = tmp_path / "shared"
    (shared / "x" / "q").mkdir(parents=True)
    (shared / "y").symlink_to(root / "backups")
    try:
        _exchange(shared / "x", shared / "y")
        _exchange(shared / "x", shared / "y")
    except OSError as exc:
        pytest.skip(f"no renameat2 here: {exc}")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                _exchange(shared / "x", shared / "y")

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    refused = done = 0
    deadline = time.monotonic() + 8
    try:
        while time.monotonic() < deadline:
            req = _req(ids["p"], shared / "x" / "q", delete_extra=True, checkpoint=False)
            try:
                await mgr.restore(req)
                done += 1
            except (NexusError, OSError):  # refused, or the path vanished mid-swap
                refused += 1
            assert (q / "config.json").exists(), f"after {done + refused} restores"
    finally:
        stop.set()
        swapper.join()
    assert done + refused > 5
    await _q_intact(mgr, ids["q"], before, q)


def test_a_restore_never_overwrites_or_deletes_the_password_file_it_was_opened_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A machine's password file lives in the data directory. A restore of an older backup
    with --overwrite always and --delete would put back its older copy, or remove one made
    since: then nothing opens the project, not even the checkpoint that would undo it."""
    import rel_harness as h

    data = tmp_path / "home"
    (data / ".config").mkdir(parents=True)
    (data / "notes.txt").write_text("v1")
    pw = data / ".config" / "nexus.pass"
    pw.write_text("first\n")
    root = tmp_path / "root"
    monkeypatch.delenv("NEXUS_BACKUP_PASSWORD", raising=False)
    made = h.cli_process(root, "--password-file", str(pw), "create", "p", str(data), "--encrypt")
    assert made.returncode == 0, made.stderr
    rotated = "first\nrotated by the owner since the backup\n"  # the password is line 1
    pw.write_text(rotated)
    later = data / ".config" / "machine.pass"  # made after the backup: --delete's to remove
    for used, kept in ((pw, rotated), (later, "first\n")):
        used.write_text(kept)
        r = h.cli_process(
            root,
            "--password-file",
            str(used),
            "restore",
            "p",
            "latest",
            str(data),
            "--overwrite",
            "always",
            "--delete",
        )
        if used == pw:  # not overwritten: skipped, and said
            assert r.returncode == 3, r.stdout + r.stderr
            assert "the file the project's password was read from" in r.stderr + r.stdout
        else:  # not deleted: left, as --delete leaves what it may not remove
            assert r.returncode == 0, r.stdout + r.stderr
        assert used.read_text() == kept
        assert (data / "notes.txt").read_text() == "v1"
    listed = h.cli_process(root, "--password-file", str(later), "list", "p")
    assert listed.returncode == 0, listed.stderr

"""Independent audit of issue #9, invariant 4 and 5 (restore --delete, its checkpoint and its
preview), with variants the other suites do not try: the repository reached through a bind
mount inside the target, a target ignore file that changed (negations) since the backup, a
directory of many files replaced by a symlink, hard links cut by --path.

Each test checks what a user would: the bytes of the repository and of the target."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from rel_harness import bind_mount as _bind
from rel_harness import regular_files as _files

from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest

P = "aud"


async def _backup(mgr: BackupManager, src: Path, **kw: object):
    return await mgr.create(CreateRequest(project_id=P, data_dir=str(src), **kw))


def _req(backup_id: str, target: Path, **kw: object) -> RestoreRequest:
    return RestoreRequest(project_id=P, backup_id=backup_id, restore_dir=str(target), **kw)


# --- I4: the repository reached through a bind mount inside the target ----------------------


@pytest.mark.parametrize("inner", ["packs", "index"])
async def test_delete_never_removes_a_bind_mounted_part_of_the_repository(tmp_path, inner):
    """A user bind-mounts part of the repository into the directory they back up (to browse
    it, or a container layout does). `restore --delete` must still never delete anything in
    the repository "wherever it lies"."""
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(os.urandom(200_000))
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    pdir = root / "backups" / P
    held = _files(pdir / "packs") | {f"i/{k}": v for k, v in _files(pdir / "index").items()}
    with _bind(pdir / inner, data / "view"):
        await mgr.restore(_req(meta.id, data, overwrite="always", delete_extra=True))
    after = _files(pdir / "packs") | {f"i/{k}": v for k, v in _files(pdir / "index").items()}
    assert {k: after.get(k) for k in held} == held, "the repository lost objects to --delete"
    out = tmp_path / "out"
    await BackupManager(root).restore(_req(meta.id, out))
    assert (out / "big.bin").read_bytes() == (data / "big.bin").read_bytes()


async def test_delete_never_removes_another_projects_repository_bind_mounted(tmp_path):
    root = tmp_path / "repo"
    data, other = tmp_path / "data", tmp_path / "other"
    data.mkdir()
    other.mkdir()
    (data / "a.txt").write_text("a")
    (other / "b.bin").write_bytes(os.urandom(50_000))
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    ob = await mgr.create(CreateRequest(project_id="other", data_dir=str(other)))
    held = _files(root / "backups" / "other")
    with _bind(root / "backups" / "other", data / "mnt"):
        await mgr.restore(_req(meta.id, data, overwrite="always", delete_extra=True))
    after = _files(root / "backups" / "other")
    assert {k: after.get(k) for k in held} == held, "another project's repository was deleted"
    out = tmp_path / "out"
    await BackupManager(root).restore(
        RestoreRequest(project_id="other", backup_id=ob.id, restore_dir=str(out))
    )
    assert (out / "b.bin").read_bytes() == (other / "b.bin").read_bytes()


async def test_delete_with_the_whole_root_bind_mounted_inside_keeps_it(tmp_path):
    """The nexus root itself bind-mounted inside the target (same inode, another path): kept."""
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(100_000))
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    held = _files(root / "backups")
    with _bind(root, data / "mnt"):
        await mgr.restore(_req(meta.id, data, overwrite="always", delete_extra=True))
        assert (data / "mnt" / "backups").is_dir()
    after = _files(root / "backups")
    assert {k: after.get(k) for k in held} == held


async def test_delete_through_a_symlink_to_the_repository_removes_only_the_link(tmp_path):
    """A symlink inside the target pointing at the repository: --delete removes the link (the
    backup never held it) and never follows it."""
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(os.urandom(100_000))
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    held = _files(root / "backups")
    (data / "repolink").symlink_to(root)
    (data / "packlink").symlink_to(root / "backups" / P / "packs")
    await mgr.restore(_req(meta.id, data, overwrite="always", delete_extra=True))
    assert not os.path.lexists(data / "repolink") and not os.path.lexists(data / "packlink")
    after = _files(root / "backups")
    assert {k: after.get(k) for k in held} == held


# --- I4: what the backup excluded, with negations and an ignore file changed since -----------


async def test_negation_added_to_the_target_ignore_file_never_deletes_an_excluded_file(tmp_path):
    root = tmp_path / "repo"
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "src.py").write_text("code")
    (data / "logs" / "other.log").write_text("never backed up, must survive --delete")
    (data / ".nexusignore").write_text("*.log\n")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    (data / ".nexusignore").write_text("*.log\n!other.log\n")  # the user changed their mind
    await mgr.restore(
        _req(meta.id, data, overwrite="if-changed", delete_extra=True, checkpoint=False)
    )
    assert (data / "logs" / "other.log").read_text().startswith("never backed up")


async def test_negation_in_the_backup_excludes_restores_and_deletes_exactly(tmp_path):
    """`*.log` then `!keep.log` at backup time: keep.log is held (and restored), other logs
    are kept by --delete whatever the target's ignore file says now (emptied here)."""
    root = tmp_path / "repo"
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "logs" / "keep.log").write_text("keep")
    (data / "logs" / "other.log").write_text("excluded")
    (data / ".nexusignore").write_text("*.log\n!keep.log\n")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    (data / ".nexusignore").write_text("")
    (data / "logs" / "new.log").write_text("excluded by the backup's rule, kept")
    (data / "logs" / "extra.txt").write_text("not excluded: deleted")
    (data / "logs" / "keep.log").write_text("damaged")
    res = await mgr.restore(_req(meta.id, data, overwrite="always", delete_extra=True))
    assert (data / "logs" / "keep.log").read_text() == "keep"
    assert (data / "logs" / "other.log").read_text() == "excluded"
    assert (data / "logs" / "new.log").exists()
    assert not (data / "logs" / "extra.txt").exists()
    assert res.counts.delete_files == 1


async def test_paths_with_delete_stay_inside_the_selected_directory(tmp_path):
    """--path src --delete deletes extras under src only, however the path is spelled."""
    root = tmp_path / "repo"
    data = tmp_path / "data"
    (data / "src").mkdir(parents=True)
    (data / "other").mkdir()
    (data / "src" / "a").write_text("a")
    (data / "other" / "o").write_text("o")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    for spelled in ("src", "src/", "./src", "src//", "/src"):
        (data / "src" / "new").write_text("x")
        (data / "other" / "new").write_text("y")
        (data / "top").write_text("z")
        await mgr.restore(_req(meta.id, data, paths=[spelled], delete_extra=True, checkpoint=False))
        assert not (data / "src" / "new").exists(), spelled
        assert (data / "other" / "new").exists() and (data / "top").exists(), spelled


# --- I5 / I4: a directory of many files replaced by a symlink -------------------------------


@pytest.mark.parametrize("kind", ["symlink", "file"])
@pytest.mark.parametrize("delete", [True, False])
async def test_preview_counts_the_files_inside_a_directory_a_symlink_replaces(
    tmp_path, kind, delete
):
    """Also a plain file in the backup where the target has a directory of files, and
    without --delete (--overwrite always alone removes them): the counts say 0 deleted."""
    root = tmp_path / "repo"
    data = tmp_path / "data"
    (data / "tgt").mkdir(parents=True)
    (data / "tgt" / "t").write_text("t")
    if kind == "symlink":
        (data / "d").symlink_to("tgt")
    else:
        (data / "d").write_text("a file where the target has a directory")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    (data / "d").unlink()
    (data / "d").mkdir()
    for i in range(1200):
        (data / "d" / f"f{i}").write_text(str(i))
    dry = await mgr.restore(
        _req(meta.id, data, overwrite="always", delete_extra=delete, dry_run=True)
    )
    before = len(_files(data))
    res = await mgr.restore(_req(meta.id, data, overwrite="always", delete_extra=delete))
    removed = before - len(_files(data)) + (1 if kind == "file" else 0)
    assert removed == 1200
    assert dry.counts.delete_files >= removed, dry.counts
    assert res.files_deleted >= removed, res


async def test_undo_of_a_directory_of_1200_files_replaced_by_a_symlink(tmp_path):
    """The printed undo (the checkpoint, --overwrite always --delete) brings back the 1,200
    files byte for byte and the directory in place of the symlink."""
    root = tmp_path / "repo"
    data = tmp_path / "data"
    (data / "tgt").mkdir(parents=True)
    (data / "tgt" / "t").write_text("t")
    (data / "d").symlink_to("tgt")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    (data / "d").unlink()
    (data / "d").mkdir()
    for i in range(1200):
        (data / "d" / f"f{i}").write_text(str(i) * 3)
    (data / "tgt" / "t").write_text("changed")
    before = _files(data)
    res = await mgr.restore(_req(meta.id, data, overwrite="always", delete_extra=True))
    assert (data / "d").is_symlink() and res.checkpoint_id
    await mgr.restore(
        _req(res.checkpoint_id, data, overwrite="always", delete_extra=True, checkpoint=False)
    )
    assert not (data / "d").is_symlink()
    assert _files(data) == before


# --- fidelity: a hard link whose first name --path leaves out --------------------------------


async def test_hard_link_whose_first_name_is_not_selected_stays_a_link(tmp_path):
    root = tmp_path / "repo"
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "b").mkdir()
    body = os.urandom(150_000)
    (data / "a" / "first").write_bytes(body)
    os.link(data / "a" / "first", data / "b" / "second")
    os.link(data / "a" / "first", data / "b" / "third")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    out = tmp_path / "out"
    await mgr.restore(_req(meta.id, out, paths=["b"]))
    assert not (out / "a").exists()
    assert (out / "b" / "second").read_bytes() == body
    assert (out / "b" / "third").read_bytes() == body
    assert os.stat(out / "b" / "second").st_ino == os.stat(out / "b" / "third").st_ino


# --- I4: the checkpoint must hold what --delete removes, even what its walker skips ----------


def _deep_file(top: Path, levels: int = 25, body: bytes = b"precious deep data") -> list[str]:
    """A file below `levels` directories of 200-byte names (its path is longer than
    PATH_MAX, so only a descriptor walk reaches it); the names on the way."""
    names = ["d" * 200] * levels
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for n in names:
            os.mkdir(n, dir_fd=fd)
            nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        f = os.open("deep.txt", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd)
        os.write(f, body)
        os.close(f)
    finally:
        os.close(fd)
    return names


def _read_deep(top: Path, names: list[str]) -> bytes | None:
    try:
        fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for n in names:
            nfd = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        f = os.open("deep.txt", os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(f, 1 << 16)
        finally:
            os.close(f)
    except OSError:
        return None
    finally:
        os.close(fd)


async def test_delete_of_a_file_deeper_than_path_max_is_undone_by_the_checkpoint(tmp_path):
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    target = tmp_path / "target"
    target.mkdir()
    (target / "a.txt").write_text("changed")
    names = _deep_file(target)
    res = await mgr.restore(_req(meta.id, target, overwrite="always", delete_extra=True))
    if _read_deep(target, names) is not None:
        return  # not deleted: the claim holds
    assert res.checkpoint_id, "deleted with no checkpoint"
    await mgr.restore(
        _req(res.checkpoint_id, target, overwrite="always", delete_extra=True, checkpoint=False)
    )
    assert _read_deep(target, names) == b"precious deep data", "the undo lost the deep file"


async def test_delete_of_a_fifo_in_the_target_is_undone_by_the_checkpoint(tmp_path):
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    target = tmp_path / "target"
    target.mkdir()
    (target / "a.txt").write_text("changed")
    os.mkfifo(target / "control.fifo")
    res = await mgr.restore(_req(meta.id, target, overwrite="always", delete_extra=True))
    if os.path.lexists(target / "control.fifo"):
        return  # kept: the claim holds
    assert res.checkpoint_id
    await mgr.restore(
        _req(res.checkpoint_id, target, overwrite="always", delete_extra=True, checkpoint=False)
    )
    assert os.path.lexists(target / "control.fifo"), "the undo did not bring the FIFO back"


async def test_delete_into_the_nexus_root_keeps_its_logs(tmp_path):
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    logs = _files(root / "logs")
    assert logs, "no log written?"
    await mgr.restore(_req(meta.id, root, overwrite="always", delete_extra=True))
    after = _files(root / "logs") if (root / "logs").is_dir() else {}
    lost = [k for k, v in logs.items() if not after.get(k, b"").startswith(v)]
    assert not lost, f"the nexus root's logs were deleted (rewritten from empty): {lost}"


async def test_a_restore_that_only_widens_a_mode_can_be_undone(tmp_path):
    root = tmp_path / "repo"
    data = tmp_path / "data"
    data.mkdir()
    (data / "key").write_text("secret")
    os.chmod(data / "key", 0o644)
    mgr = BackupManager(root)
    meta = await _backup(mgr, data)
    target = tmp_path / "target"
    target.mkdir()
    (target / "key").write_text("secret")
    os.chmod(target / "key", 0o600)
    res = await mgr.restore(_req(meta.id, target))
    if os.stat(target / "key").st_mode & 0o777 == 0o600:
        return  # left alone: nothing to undo
    assert res.checkpoint_id, "the mode was widened and nothing can undo it"
    await mgr.restore(
        _req(res.checkpoint_id, target, overwrite="always", delete_extra=True, checkpoint=False)
    )
    assert os.stat(target / "key").st_mode & 0o777 == 0o600


# --- the second audit (2026-12-02) ----------------------------------------------------------


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli", "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tree(top: Path) -> dict[str, str | bytes]:
    """Every entry under `top`: a directory as "dir", a file by its bytes."""
    out: dict[str, str | bytes] = {}
    for dirpath, dirs, names in os.walk(top):
        for n in dirs:
            out[str((Path(dirpath) / n).relative_to(top))] = "dir"
        for n in names:
            out[str((Path(dirpath) / n).relative_to(top))] = (Path(dirpath) / n).read_bytes()
    return out


def test_the_printed_undo_puts_back_every_type_change(tmp_path):
    """A directory replaced by a file and a file by a directory (--overwrite always --delete):
    the undo command the restore prints, run as printed, gives the target back whole."""
    src, target, root = tmp_path / "src", tmp_path / "t", tmp_path / "root"
    (src / "y").mkdir(parents=True)
    (src / "x").write_text("a file in the backup")
    (src / "y" / "f").write_text("in y")
    (target / "x").mkdir(parents=True)
    (target / "x" / "data").write_text("precious, inside the directory x")
    (target / "y").write_text("a file y")
    assert _cli(root, "create", P, str(src)).returncode == 0
    before = _tree(target)
    r = _cli(root, "restore", "--overwrite", "always", "--delete", P, "latest", str(target))
    assert r.returncode == 0, r.stderr
    assert (target / "x").is_file()
    undo = next(ln.split("Undo with", 1)[1] for ln in r.stdout.splitlines() if "Undo with" in ln)
    words = shlex.split(undo)
    assert words[0] == "nexus-backup" and "always" in words
    r = subprocess.run(
        [sys.executable, "-m", "cli", *words[1:]], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert _tree(target) == before


def test_a_directory_where_the_backup_has_a_file_is_said_and_exits_3(tmp_path):
    src, target, root = tmp_path / "src", tmp_path / "t", tmp_path / "root"
    src.mkdir()
    (src / "x").write_text("the file x")
    (target / "x").mkdir(parents=True)
    (target / "x" / "in").write_text("inside")
    assert _cli(root, "create", P, str(src)).returncode == 0
    r = _cli(root, "restore", P, "latest", str(target))
    assert r.returncode == 3 and "x: not restored (a directory is there" in r.stdout + r.stderr
    assert (target / "x" / "in").read_text() == "inside"


@pytest.mark.parametrize("delete", [True, False])
def test_replacing_a_directory_never_removes_an_excluded_path_inside_it(tmp_path, delete):
    """x/keep.log is excluded (the backup's --exclude and the target's .nexusignore): the
    directory x is not replaced by the backup's file x, with or without --delete."""
    src, target, root = tmp_path / "src", tmp_path / "t", tmp_path / "root"
    src.mkdir()
    (src / "x").write_text("the file x")
    (src / "z").write_text("z")
    (target / "x").mkdir(parents=True)
    (target / "x" / "keep.log").write_text("excluded, and mine")
    (target / ".nexusignore").write_text("*.log\n")
    assert _cli(root, "create", P, str(src), "--exclude", "*.log").returncode == 0
    args = ["restore", "--overwrite", "always", "--no-checkpoint", P, "latest", str(target)]
    r = _cli(root, *args, *(["--delete"] if delete else []))
    assert r.returncode == 3 and "excluded" in r.stdout + r.stderr, r.stdout + r.stderr
    assert (target / "x" / "keep.log").read_text() == "excluded, and mine"
    assert (target / "z").read_text() == "z"


def test_a_mount_point_is_never_emptied_to_put_a_file_there(tmp_path):
    src, target, root = tmp_path / "src", tmp_path / "t", tmp_path / "root"
    src.mkdir()
    (src / "x").write_text("the file x")
    (src / "z").write_text("z")
    (target / "x").mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(target / "x")], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here: {r.stderr.decode().strip()}")
    try:
        (target / "x" / "mounted").write_text("on another filesystem")
        assert _cli(root, "create", P, str(src)).returncode == 0
        r = _cli(root, "restore", "--overwrite", "always", "--delete", P, "latest", str(target))
        assert r.returncode == 3 and "mount point" in r.stdout + r.stderr, r.stdout + r.stderr
        assert (target / "x" / "mounted").read_text() == "on another filesystem"
        assert (target / "z").read_text() == "z"
    finally:
        subprocess.run(["umount", "-l", str(target / "x")], capture_output=True)


def test_copy_to_a_bind_mount_of_this_repository_is_refused(tmp_path):
    src, root = tmp_path / "src", tmp_path / "root"
    src.mkdir()
    (src / "f").write_text("f")
    assert _cli(root, "create", P, str(src)).returncode == 0
    before = sorted(str(p.relative_to(root)) for p in (root / "backups").rglob("*"))
    with _bind(root / "backups", tmp_path / "view"):
        r = _cli(root, "copy", P, "--to", str(tmp_path / "view"))
        assert r.returncode == 2 and "this repository" in r.stderr, r.stdout + r.stderr
    assert sorted(str(p.relative_to(root)) for p in (root / "backups").rglob("*")) == before


def test_diff_live_verify_content_never_blocks_on_a_fifo(tmp_path):
    """A file that became a fifo after the scan: hash_file opens it without blocking."""
    from core.ops.diff import hash_file

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError):
        hash_file(os.fsencode(fifo))


def test_an_entry_that_cannot_be_replaced_is_said_and_the_rest_is_restored(tmp_path):
    """d/b is immutable (chattr +i): it is not restored, said by name (exit 3), and every
    other file still is, with the undo printed for what changed."""
    src, target, root = tmp_path / "src", tmp_path / "t", tmp_path / "root"
    for where in (src, target):
        (where / "d").mkdir(parents=True)
    for name in ("a", "d/b", "z"):
        (src / name).write_text(f"new {name}")
        (target / name).write_text(f"old {name}")
    if subprocess.run(["chattr", "+i", str(target / "d" / "b")], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        assert _cli(root, "create", P, str(src)).returncode == 0
        r = _cli(root, "restore", "--overwrite", "always", P, "latest", str(target))
        out = r.stdout + r.stderr
        assert r.returncode == 3 and "d/b: not restored" in out and "Undo with" in out, out
        assert (target / "d" / "b").read_text() == "old d/b"
        assert (target / "a").read_text() == "new a" and (target / "z").read_text() == "new z"
        assert not [p for p in (target / "d").iterdir() if p.name != "b"]  # no temp file left
    finally:
        subprocess.run(["chattr", "-i", str(target / "d" / "b")], capture_output=True)

"""What a backup records beyond content: hard links, extended attributes and POSIX ACLs,
and the exclusions it used (the manifest header), each read from real files."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from core.models import BackupType, CreateRequest, RestoreRequest
from core.repo import manifest as mf
from core.repo.repository import Repository

P = "meta"


async def _backup(manager, data_dir: Path, kind=BackupType.FULL, **kw):
    return await manager.create(
        CreateRequest(project_id=P, data_dir=str(data_dir), backup_type=kind, **kw)
    )


def _manifest(root: Path, backup_id: str) -> tuple[dict, dict[bytes, mf.Entry]]:
    data = Repository(root, P).read_manifest(backup_id)
    return mf.read_header(data), {e.path: e for e in mf.iter_entries(data)}


def _xattrs_or_skip(path: Path) -> None:
    """Skip unless user.* extended attributes can be set on this filesystem."""
    try:
        os.setxattr(path, "user.probe", b"1")
        os.removexattr(path, "user.probe")
    except OSError as exc:
        pytest.skip(f"user.* xattrs not settable in {path.parent}: {exc.strerror}")


# --- hard links ------------------------------------------------------------------------------


async def test_three_names_of_one_inode_point_at_the_first(manager, root, tmp_path, tree_of):
    d = tmp_path / "d"
    (d / "a").mkdir(parents=True)
    (d / "z").mkdir()
    (d / "a" / "one").write_bytes(b"shared bytes\n" * 50)
    os.link(d / "a" / "one", d / "b-two")
    os.link(d / "a" / "one", d / "z" / "three")
    (d / "alone").write_bytes(b"single\n")
    meta = await _backup(manager, d)
    _, entries = _manifest(root, meta.id)
    first = entries[b"a/one"]
    assert first.link is None
    assert entries[b"b-two"].link == b"a/one"
    assert entries[b"z/three"].link == b"a/one"
    assert entries[b"alone"].link is None
    # every name keeps its whole content: it restores by itself
    for name in (b"a/one", b"b-two", b"z/three"):
        assert entries[name].hash == first.hash and entries[name].chunks == first.chunks
    out = tmp_path / "out"
    await manager.restore(
        RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(out), paths=["z/three"])
    )
    assert (out / "z" / "three").read_bytes() == b"shared bytes\n" * 50


async def test_a_new_name_of_an_unchanged_file_links_to_the_reused_line(manager, root, tmp_path):
    """The first name is reused from the parent verbatim; the new name still points at it."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_bytes(b"x" * 100)
    await _backup(manager, d)
    os.link(d / "a", d / "b")
    meta = await _backup(manager, d, BackupType.INCREMENTAL)
    _, entries = _manifest(root, meta.id)
    assert entries[b"b"].link == b"a"
    assert entries[b"b"].hash == entries[b"a"].hash


async def test_a_skipped_first_name_hands_its_place_to_the_next(
    manager, root, tmp_path, monkeypatch
):
    """The first name of an inode cannot be read (here made to fail): the next name written
    becomes the first, so that every `link` names a path the manifest holds."""
    from core.ops import backup

    d = tmp_path / "d"
    d.mkdir()
    (d / "a").write_bytes(b"linked\n")
    os.link(d / "a", d / "b")
    os.link(d / "a", d / "c")
    real = backup.read_file

    def read_file(state, item):
        if item.rel == b"a":
            raise backup.SkipFile("made unreadable by the test")
        return real(state, item)

    monkeypatch.setattr(backup, "read_file", read_file)
    meta = await _backup(manager, d)
    assert any(w.startswith("a: skipped") for w in meta.stats.warnings)
    _, entries = _manifest(root, meta.id)
    assert b"a" not in entries
    assert entries[b"b"].link is None
    assert entries[b"c"].link == b"b"


# --- extended attributes and ACLs -------------------------------------------------------------


async def test_xattrs_of_files_and_dirs_are_recorded_and_reread_on_change(manager, root, tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    f = d / "sub" / "f.txt"
    f.write_bytes(b"content\n")
    big = d / "big.bin"
    big.write_bytes(os.urandom(3 * 1024 * 1024))  # read by the chunker, not the small path
    (d / "plain").write_bytes(b"no attributes\n")
    _xattrs_or_skip(f)
    os.setxattr(f, "user.tag", b"\x00\xffbinary")
    os.setxattr(f, "user.other", b"")
    os.setxattr(big, "user.big", b"1")
    os.setxattr(d / "sub", "user.dir", b"on a directory")
    meta = await _backup(manager, d)
    _, entries = _manifest(root, meta.id)
    assert entries[b"sub/f.txt"].xattrs == {b"user.tag": b"\x00\xffbinary", b"user.other": b""}
    assert entries[b"big.bin"].xattrs == {b"user.big": b"1"}
    assert entries[b"sub"].xattrs == {b"user.dir": b"on a directory"}
    assert entries[b"plain"].xattrs is None
    assert not meta.stats.warnings
    # a change of attributes alone (content and mtime untouched) is seen by an incremental
    os.setxattr(f, "user.tag", b"changed")
    os.setxattr(d / "sub", "user.dir", b"changed too")
    meta2 = await _backup(manager, d, BackupType.INCREMENTAL)
    _, entries = _manifest(root, meta2.id)
    assert entries[b"sub/f.txt"].xattrs[b"user.tag"] == b"changed"
    assert entries[b"sub"].xattrs == {b"user.dir": b"changed too"}
    assert entries[b"big.bin"].xattrs == {b"user.big": b"1"}  # reused


async def test_an_unchanged_tree_reuses_its_lines_with_their_xattrs(manager, root, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_bytes(b"1")
    _xattrs_or_skip(d / "f")
    os.setxattr(d / "f", "user.k", b"v")
    await _backup(manager, d)
    second = await _backup(manager, d, BackupType.INCREMENTAL)
    assert second.stats.bytes_read == 0
    _, entries = _manifest(root, second.id)
    assert entries[b"f"].xattrs == {b"user.k": b"v"}


def test_symlink_xattrs_are_its_own_not_its_targets(tmp_path):
    """read_xattrs never follows a symlink (Linux refuses user.* on symlinks: none)."""
    from core.ops.walker import read_xattrs

    target = tmp_path / "t"
    target.write_bytes(b"")
    _xattrs_or_skip(target)
    os.setxattr(target, "user.t", b"target's")
    os.symlink(target, tmp_path / "l")
    got = read_xattrs(os.fsencode(tmp_path / "l"))
    assert not got or b"user.t" not in got
    assert read_xattrs(os.fsencode(target)) == {b"user.t": b"target's"}


def test_a_filesystem_without_xattrs_gives_none_without_error(monkeypatch, tmp_path):
    from core.ops import walker

    def unsupported(*_a, **_k):
        raise OSError(errno.ENOTSUP, os.strerror(errno.ENOTSUP))

    monkeypatch.setattr(walker.os, "listxattr", unsupported)
    assert walker.read_xattrs(os.fsencode(tmp_path)) is None


async def test_unreadable_xattrs_warn_naming_the_file_and_keep_it(
    manager, root, tmp_path, monkeypatch
):
    from core.ops import walker

    d = tmp_path / "d"
    d.mkdir()
    (d / "denied.txt").write_bytes(b"still backed up\n")
    real = os.listxattr

    def listxattr(target, *a, **k):
        if isinstance(target, int) and os.readlink(f"/proc/self/fd/{target}").endswith(
            "denied.txt"
        ):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real(target, *a, **k)

    monkeypatch.setattr(walker.os, "listxattr", listxattr)
    meta = await _backup(manager, d)
    assert any("denied.txt" in w and "extended attributes" in w for w in meta.stats.warnings)
    _, entries = _manifest(root, meta.id)
    assert entries[b"denied.txt"].size == len(b"still backed up\n")


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="setfacl (package acl) not installed")
async def test_posix_acls_are_recorded_as_their_xattrs(manager, root, tmp_path):
    d = tmp_path / "d"
    (d / "shared").mkdir(parents=True)
    (d / "shared" / "f").write_bytes(b"acl'd\n")
    try:
        subprocess.run(["setfacl", "-m", "u:12345:r", str(d / "shared" / "f")], check=True)
        subprocess.run(["setfacl", "-d", "-m", "u:12345:rwx", str(d / "shared")], check=True)
    except subprocess.CalledProcessError:
        pytest.skip(f"ACLs not supported in {tmp_path}")
    meta = await _backup(manager, d)
    _, entries = _manifest(root, meta.id)
    file_x = entries[b"shared/f"].xattrs or {}
    dir_x = entries[b"shared"].xattrs or {}
    assert file_x.get(b"system.posix_acl_access") == os.getxattr(
        d / "shared" / "f", "system.posix_acl_access"
    )
    assert dir_x.get(b"system.posix_acl_default") == os.getxattr(
        d / "shared", "system.posix_acl_default"
    )


# --- exclusions in the header -----------------------------------------------------------------


async def test_header_records_request_then_ignore_file_lines(manager, root, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / ".nexusignore").write_text("# a comment\n\n*.log\n!keep.log\n")
    (d / "a.log").write_text("x")
    (d / "keep.log").write_text("k")
    (d / "b.tmp").write_text("t")
    meta = await _backup(manager, d, excludes=["*.tmp"])
    header, entries = _manifest(root, meta.id)
    assert header["excludes"] == ["*.tmp", "*.log", "!keep.log"]
    assert set(entries) == {b".nexusignore", b"keep.log"}


async def test_without_the_ignore_file_everything_is_kept(manager, root, tmp_path):
    from core.ops.backup import BackupPlan  # the field the manager carries use_ignore_file into

    assert BackupPlan.__dataclass_fields__["use_ignore_file"].default is True
    d = tmp_path / "d"
    d.mkdir()
    (d / ".nexusignore").write_text("*.log\n")
    (d / "a.log").write_text("x")
    header, entries = await _engine_backup(root, d, excludes=["*.tmp"], use_ignore_file=False)
    assert header["excludes"] == ["*.tmp"]
    assert b"a.log" in entries


async def _engine_backup(root: Path, d: Path, **plan_kw) -> tuple[dict, dict[bytes, mf.Entry]]:
    from engine_helpers import engine_backup

    meta = engine_backup(root, P, d, **plan_kw)
    return _manifest(root, meta.id)


def test_a_fifo_named_nexusignore_is_not_waited_for(tmp_path):
    from core.ops.walker import exclude_lines

    os.mkfifo(tmp_path / ".nexusignore")
    assert exclude_lines(os.fsencode(tmp_path), ["x"]) == ["x"]


@pytest.mark.parametrize("proc", [True, False], ids=["via-proc", "without-proc"])
async def test_dir_and_symlink_xattrs_are_their_own(manager, root, tmp_path, monkeypatch, proc):
    """A symlink's entry never carries its target's attributes; a directory's are read with
    or without /proc (then by opening it)."""
    from core.ops import backup

    monkeypatch.setattr(backup, "_PROC_FD", proc and backup._PROC_FD)
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "target").write_bytes(b"t")
    _xattrs_or_skip(d / "target")
    os.setxattr(d / "target", "user.mine", b"target only")
    os.setxattr(d / "sub", "user.dir", b"sub's")
    os.symlink("target", d / "link")
    os.symlink("sub", d / "dirlink")
    meta = await _backup(manager, d)
    _, entries = _manifest(root, meta.id)
    assert entries[b"target"].xattrs == {b"user.mine": b"target only"}
    assert not (entries[b"link"].xattrs or {}).get(b"user.mine")
    assert not (entries[b"dirlink"].xattrs or {}).get(b"user.dir")
    assert entries[b"sub"].xattrs == {b"user.dir": b"sub's"}
    assert not meta.stats.warnings

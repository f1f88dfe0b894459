"""Unreadable and unusual sources: files and directories without permission (as an
unprivileged user: root reads everything), dangling symlinks, names that are not UTF-8 or hold
newlines, 255-byte names, trees 200 levels deep and paths past PATH_MAX, fifos and sockets.
Each is either backed up exactly or skipped with a warning, and the exit code says which
(0: everything, 3: something skipped)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path

import pytest
import rel_harness as h

from core.manager import BackupManager

NOBODY = 65534


async def cli(*argv: str) -> tuple[int, str, str]:
    code, out, err = await asyncio.to_thread(h.cli_inproc, list(argv))
    assert h.nexus_error_line(err), err
    return code, out, err


def make_deep(top: bytes, levels: int, name: bytes) -> bytes:
    """`levels` nested directories below `top` (made with dir fds: no path-length limit)."""
    fd = os.open(top, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        leaf = os.open(b"leaf.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"at the bottom\n")
        os.close(leaf)
    finally:
        os.close(fd)
    return top + (b"/" + name) * levels + b"/leaf.txt"


def odd_tree(top: Path) -> None:
    b = os.fsencode(top)
    top.mkdir()
    os.mkdir(b + b"/latin1-\xe9t\xe9")  # not UTF-8
    with open(b + b"/latin1-\xe9t\xe9/caf\xe9.txt", "wb") as f:
        f.write(b"not utf-8 name\n")
    with open(b + b"/bad-\xff\xfe-bytes", "wb") as f:
        f.write(b"\xff\xfe\x00binary")
    with open(b + b"/" + b"L" * 255, "wb") as f:
        f.write(b"a 255-byte name\n")
    os.mkdir(b + b"/" + b"D" * 255)
    with open(b + b"/" + b"D" * 255 + b"/" + b"F" * 255, "wb") as f:
        f.write(b"two 255-byte components\n")
    with open(b + b"/new\nline", "wb") as f:
        f.write(b"newline in the name\n")
    (top / "sp ace & $(quote)'\"").write_text("shell-hostile name\n")
    (top / "ünïcödé ☃ 日本").write_text("unicode\n")
    os.symlink("/nonexistent/target", top / "dangling")
    os.symlink("dangling", top / "chain")
    os.symlink(b"\xff-target", b + b"/bytes-link")
    (top / "empty-dir").mkdir()
    (top / "empty-file").write_bytes(b"")
    (top / "mode000").write_text("root can read this\n")
    (top / "mode000").chmod(0)
    (top / "exec.sh").write_text("#!/bin/sh\n")
    (top / "exec.sh").chmod(0o4755)
    os.mkdir(b + b"/deep")
    make_deep(b + b"/deep", 200, b"d")


async def test_unusual_names_and_deep_trees_are_backed_up_exactly(tmp_path: Path):
    src = tmp_path / "src"
    odd_tree(src)
    root = tmp_path / "repo"
    code, out, err = await cli("--root", str(root), "--json", "create", "odd", str(src))
    assert code == 0, (code, err, out[-500:])
    meta = json.loads(out)
    assert meta["stats"]["warnings"] == []
    target = tmp_path / "out"
    code, out, err = await cli("--root", str(root), "restore", "odd", meta["id"], str(target))
    assert code == 0, (code, err)
    assert h.diff_trees(h.snapshot(src), h.snapshot(target)) == []
    code, out, err = await cli("--root", str(root), "verify", "odd", "latest")
    assert code == 0, (code, err)
    code, out, err = await cli("--root", str(root), "list", "odd")
    assert code == 0 and meta["id"] in out
    # browsing and info with these names does not crash either
    mgr = BackupManager(root)
    names = {e.name for e in await mgr.browse("odd", meta["id"])}
    assert "L" * 255 in names and "new\nline" in names


async def test_path_longer_than_path_max_is_skipped_with_a_warning(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("fine\n")
    os.mkdir(src / "long")
    make_deep(os.fsencode(src / "long"), 160, b"x" * 40)  # ~6.5 KB of path
    root = tmp_path / "repo"
    code, out, err = await cli("--root", str(root), "--json", "create", "deep", str(src))
    assert code == 3, (code, err, out[-300:])
    meta = json.loads(out)
    assert meta["status"] == "completed"
    assert any("too long" in w for w in meta["stats"]["warnings"]), meta["stats"]["warnings"]
    target = tmp_path / "out"
    code, out, err = await cli("--root", str(root), "restore", "deep", meta["id"], str(target))
    assert code in (0, 3), (code, err)
    assert (target / "ok.txt").read_text() == "fine\n"


async def test_fifos_and_sockets_are_skipped_with_warnings(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    os.mkfifo(src / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        root = tmp_path / "repo"
        code, out, err = await cli("--root", str(root), "--json", "create", "spec", str(src))
    finally:
        sock.close()
    assert code == 3, (code, err)
    warnings = " ".join(json.loads(out)["stats"]["warnings"])
    assert "fifo" in warnings and "sock" in warnings, warnings


# --- without permission: an unprivileged process ---------------------------------------------


def _unreadable_tree(world_tmp: Path) -> Path:
    """A data directory of nobody's holding a file, a directory nobody cannot list and one
    nobody cannot enter, each with bytes that exist nowhere else."""
    src = world_tmp / "src"
    src.mkdir()
    (src / "readable.txt").write_text("ok\n")
    (src / "locked.txt").write_text("only copy\n")
    (src / "sub").mkdir()
    (src / "sub" / "inside.txt").write_text("only copy, unlisted\n")
    (src / "noexec").mkdir()
    (src / "noexec" / "hidden.txt").write_text("only copy, not entered\n")
    (world_tmp / "home").mkdir()
    for p in [world_tmp / "home", src, *src.rglob("*")]:
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
    (src / "locked.txt").chmod(0)
    (src / "sub").chmod(0o300)
    (src / "noexec").chmod(0o600)
    return src


async def test_unreadable_files_and_dirs_are_skipped_and_exit_3(world_tmp: Path, as_nobody):
    src = _unreadable_tree(world_tmp)
    (src / "open").mkdir()
    (src / "open" / "fine.txt").write_text("fine\n")
    os.symlink("/nowhere", src / "dangling")
    for p in (src / "open", src / "open" / "fine.txt", src / "dangling"):
        os.chown(p, NOBODY, NOBODY, follow_symlinks=False)
    home = world_tmp / "home"
    root = home / "repo"
    r = as_nobody(["--root", str(root), "--json", "create", "perm", str(src)], world_tmp)
    assert h.nexus_error_line(r.stderr), r.stderr
    assert r.returncode == 3, (r.returncode, r.stdout[-800:], r.stderr)
    meta = json.loads(r.stdout)
    warnings = "\n".join(meta["stats"]["warnings"])
    for name in ("locked.txt", "sub", "noexec"):
        assert name in warnings, warnings
    assert "readable.txt" not in warnings and "fine.txt" not in warnings
    # the unprivileged user's repository is its own, 0700/0600
    for p in root.rglob("*"):
        st = p.lstat()
        assert st.st_uid == NOBODY, p
        assert (st.st_mode & 0o777) in (0o700, 0o600), (p, oct(st.st_mode))
    # what could be read is exact (restored as root, into a fresh directory)
    mgr = BackupManager(root)
    target = world_tmp / "out"
    await h.restore_to(mgr, meta["id"], target, project="perm")
    assert (target / "readable.txt").read_text() == "ok\n"
    assert (target / "open" / "fine.txt").read_text() == "fine\n"
    assert os.readlink(target / "dangling") == "/nowhere"
    assert not (target / "locked.txt").exists()


UNREAD = {
    "locked.txt": "only copy\n",
    "sub/inside.txt": "only copy, unlisted\n",
    "noexec/hidden.txt": "only copy, not entered\n",
}


@pytest.mark.parametrize("restorer", ["nobody", "root"])
async def test_restore_delete_never_removes_what_the_backup_could_not_read(
    world_tmp: Path, as_nobody, restorer
):
    """The backup saw these and could not hold them: a restore --delete into the data
    directory, without a checkpoint (which could not hold them either), must leave them,
    whoever restores (root can list what nobody could not). What was made after the backup
    is still removed."""
    src = _unreadable_tree(world_tmp)
    root = world_tmp / "home" / "repo"
    r = as_nobody(["--root", str(root), "--json", "create", "perm", str(src)], world_tmp)
    assert r.returncode == 3, r.stderr
    meta = json.loads(r.stdout)
    assert {base64.b64decode(p) for p in meta["stats"]["left_out"]} == {
        b"locked.txt",
        b"sub",
        b"noexec/hidden.txt",  # listed, but not entered: each name in it cannot be stat'ed
    }
    (src / "made-later.txt").write_text("goes")
    os.chown(src / "made-later.txt", NOBODY, NOBODY)
    argv = ["--root", str(root), "restore", "perm", meta["id"], str(src)]
    argv += ["--delete", "--no-checkpoint"]
    if restorer == "nobody":
        r = as_nobody(argv, world_tmp)
        assert r.returncode in (0, 3), r.stderr
    else:
        code, _out, err = await asyncio.to_thread(h.cli_inproc, argv)
        assert code in (0, 3), err
    for rel, text in UNREAD.items():
        assert (src / rel).read_text() == text, f"{rel} was removed or changed"
    assert not (src / "made-later.txt").exists()
    assert (src / "readable.txt").read_text() == "ok\n"


async def test_unprivileged_user_cannot_read_the_data_dir_at_all(world_tmp: Path, as_nobody):
    src = world_tmp / "src"
    src.mkdir()
    (src / "x").write_text("x")
    src.chmod(0o700)  # root's
    home = world_tmp / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    r = as_nobody(["--root", str(home / "repo"), "create", "perm", str(src)], world_tmp)
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    assert h.nexus_error_line(r.stderr) and "permission denied" in r.stderr.lower(), r.stderr

"""Hostile paths: nothing is ever written outside the restore directory.

The attacker has write access to the repository: they rewrite a backup's manifest (with
core.repo.manifest.ManifestWriter, or byte by byte to break its ordering rules) and fix the
checksum in metadata.json, so that the manifest passes validation. Or they control the
restore target and plant symlinks to elsewhere in it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import rel_harness as h
import zstandard

from core.errors import NexusError
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.repo import manifest as mf
from core.repo.repository import Repository

P = h.PROJECT


class Scene:
    """A repository with one backup, a directory the restore must never touch, and a place
    next to the restore target whose contents must not change."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "repo"
        self.src = tmp / "src"
        self.outside = tmp / "outside"
        self.parent = tmp / "restores"
        self.target = self.parent / "target"

    async def setup(self) -> str:
        h.init_project(self.root)
        self.src.mkdir()
        (self.src / "a.txt").write_text("payload a\n")
        (self.src / "dir").mkdir()
        (self.src / "dir" / "b.txt").write_text("payload b\n")
        self.outside.mkdir()
        (self.outside / "keep.txt").write_text("must not change\n")
        self.parent.mkdir()
        meta = await BackupManager(self.root).create(
            CreateRequest(project_id=P, data_dir=str(self.src))
        )
        self.backup_id = meta.id
        self.before = self.state()
        return meta.id

    def state(self) -> tuple:
        siblings = sorted(p.name for p in self.parent.iterdir() if p != self.target)
        return h.tree_state(self.outside), siblings, sorted(os.listdir(self.tmp))

    def assert_nothing_outside(self) -> None:
        assert self.state() == self.before, "something was written outside the restore dir"

    def entries(self) -> list[mf.Entry]:
        repo = Repository(self.root, P)
        return list(mf.iter_entries(repo.read_manifest(self.backup_id)))

    def header(self) -> dict:
        repo = Repository(self.root, P)
        head = mf.read_header(repo.read_manifest(self.backup_id))
        head.pop("nexus_manifest", None)
        return head

    def install(self, data: bytes) -> None:
        """Replace the manifest and make metadata.json's checksum match it."""
        repo = Repository(self.root, P)
        repo.write_manifest(self.backup_id, data)
        meta = repo.read_metadata(self.backup_id)
        meta.checksum = mf.checksum(data)
        repo.write_metadata(meta)

    def tamper(self, extra: list[mf.Entry]) -> None:
        """Manifest = the real entries plus `extra`, written with ManifestWriter (in order)."""
        entries = sorted(self.entries() + extra, key=lambda e: e.key)
        writer = mf.ManifestWriter(self.header())
        for e in entries:
            writer.add(e)
        data, _checksum = writer.finish()
        self.install(data)

    def tamper_raw(self, entries: list[mf.Entry]) -> None:
        """Manifest lines exactly as given (duplicates, any order): bypasses ManifestWriter."""
        buf = io.BytesIO()
        lines = [json.dumps({"nexus_manifest": mf.FORMAT, **self.header()}).encode() + b"\n"]
        lines += [mf.encode_entry(e) for e in entries]
        buf.write(zstandard.ZstdCompressor().compress(b"".join(lines)))
        self.install(buf.getvalue())

    def file_like(self, path: bytes) -> mf.Entry:
        """A file entry with the content of a.txt under another path."""
        a = next(e for e in self.entries() if e.path == b"a.txt")
        return mf.Entry(path, mf.FILE, a.mode, a.mtime_ns, a.size, hash=a.hash, chunks=a.chunks)

    async def restore(self, **kw) -> Exception | None:
        try:
            await BackupManager(self.root).restore(
                RestoreRequest(
                    project_id=P, backup_id=self.backup_id, restore_dir=str(self.target), **kw
                )
            )
        except NexusError as exc:
            return exc
        return None

    async def cli_restore(self, *extra: str) -> tuple[int, str]:
        argv = ["--root", str(self.root), "restore", P, self.backup_id, str(self.target), *extra]
        code, _out, err = await asyncio.to_thread(h.cli_inproc, argv)
        assert h.nexus_error_line(err), err
        return code, err


@pytest.fixture
async def scene(tmp_path: Path) -> Scene:
    s = Scene(tmp_path)
    await s.setup()
    return s


def symlink(path: bytes, target: bytes) -> mf.Entry:
    return mf.Entry(path, mf.SYMLINK, 0o120777, 0, len(target), target=target)


def directory(path: bytes) -> mf.Entry:
    return mf.Entry(path, mf.DIR, 0o40755, 0)


@pytest.mark.parametrize(
    "bad",
    [
        b"../escape.txt",
        b"../../escape.txt",
        b"dir/../../escape.txt",
        b"./a.txt",
        b"dir//b2.txt",
        b"/ABSOLUTE/escape.txt",
        b"..",
        b"nul\x00byte",
    ],
    ids=["dotdot", "dotdot2", "inner-dotdot", "dot", "empty-part", "absolute", "bare", "nul"],
)
async def test_tampered_manifest_with_escaping_paths(scene: Scene, bad: bytes):
    if bad.startswith(b"/ABSOLUTE"):
        bad = os.fsencode(scene.outside) + b"/escape.txt"
    scene.tamper([scene.file_like(bad)])
    err = await scene.restore()
    assert err is not None, "a manifest holding an unsafe path was restored"
    scene.assert_nothing_outside()
    assert not (scene.target.exists() and any(scene.target.rglob("*")))
    code, text = await scene.cli_restore()
    assert code == 4 and "unsafe path" in text, (code, text)
    scene.assert_nothing_outside()
    v = await BackupManager(scene.root).verify(P, scene.backup_id)
    assert not v.ok


async def test_tampered_symlink_then_file_through_it(scene: Scene):
    """`evil` -> the outside dir, then `evil/pwned.txt`: only the symlink may be created."""
    scene.tamper(
        [
            symlink(b"evil", os.fsencode(scene.outside)),
            scene.file_like(b"evil/pwned.txt"),
            symlink(b"rel", b"../../outside"),
            directory(b"rel/sub"),
            scene.file_like(b"rel/sub/pwned.txt"),
        ]
    )
    err = await scene.restore()
    scene.assert_nothing_outside()
    assert not (scene.outside / "pwned.txt").exists()
    if err is None:
        assert (scene.target / "evil").is_symlink()
        assert (scene.target / "a.txt").read_text() == "payload a\n"


async def test_tampered_manifest_with_duplicates_out_of_order(scene: Scene):
    """Written byte by byte: a symlink and a directory of the same name, files under both, in
    every order the writer would refuse."""
    out = os.fsencode(scene.outside)
    entries = [
        *scene.entries(),
        scene.file_like(b"x/first.txt"),
        symlink(b"x", out),
        directory(b"x"),
        scene.file_like(b"x/second.txt"),
        symlink(b"x", out),
        directory(b"y"),
        symlink(b"y", out),
        scene.file_like(b"y/third.txt"),
        symlink(b"z", out),
        symlink(b"z/w", b"/"),
        scene.file_like(b"z/w/etc-passwd-like"),
    ]
    scene.tamper_raw(entries)
    for policy in ("if-changed", "always"):
        await scene.restore(overwrite=policy)
        scene.assert_nothing_outside()
    await scene.cli_restore("--overwrite", "always", "--delete")
    scene.assert_nothing_outside()


async def test_symlinks_in_the_restore_target_are_never_followed(scene: Scene):
    t = scene.target
    t.mkdir()
    os.symlink(scene.outside, t / "dir")  # the backup has a real dir/ with b.txt
    os.symlink(scene.outside / "keep.txt", t / "a.txt")  # the backup has a file a.txt
    before_outside = h.tree_state(scene.outside)
    code, err = await scene.cli_restore()  # if-changed: the symlinked dir is skipped
    assert code == 3, (code, err)  # the skipped dir/ is a warning
    assert h.tree_state(scene.outside) == before_outside
    assert (t / "a.txt").read_text() == "payload a\n" and not (t / "a.txt").is_symlink()
    code, err = await scene.cli_restore("--overwrite", "always")
    assert code == 0, (code, err)
    assert h.tree_state(scene.outside) == before_outside
    assert not (t / "dir").is_symlink() and (t / "dir" / "b.txt").read_text() == "payload b\n"
    # --delete removes an extra symlink to a directory as a link, never what is behind it
    os.symlink(scene.outside, t / "extra-link")
    code, err = await scene.cli_restore("--overwrite", "always", "--delete", "--no-checkpoint")
    assert code == 0, (code, err)
    assert not (t / "extra-link").exists() and h.tree_state(scene.outside) == before_outside
    scene.assert_nothing_outside()


async def test_restore_paths_that_try_to_leave(scene: Scene):
    for p in ("../outside/keep.txt", "/etc/passwd", "dir/../../outside", "*/../../*"):
        code, err = await scene.cli_restore("--path", p)
        assert code == 2, (p, code, err)
    scene.assert_nothing_outside()
    shutil.rmtree(scene.target, ignore_errors=True)


async def test_files_not_restored_because_of_a_symlink_give_exit_3(scene: Scene):
    scene.target.mkdir()
    os.symlink(scene.outside, scene.target / "dir")
    argv = ["--root", str(scene.root), "--json", "restore", P, scene.backup_id, str(scene.target)]
    code, out, err = await asyncio.to_thread(h.cli_inproc, argv)
    assert h.nexus_error_line(err), err
    res = json.loads(out)
    assert res["files_skipped"] >= 1
    scene.assert_nothing_outside()
    assert code == 3 and any("dir" in w for w in res["warnings"]), (code, res["warnings"])


@pytest.mark.parametrize("how", ["through-a-symlink", "through-a-file", "out-of-order"])
async def test_dump_of_a_tampered_manifest_never_makes_a_tar_that_writes_outside(
    scene: Scene, how: str
):
    """`evil` -> the outside directory, then `evil/pwned.txt`: dump wrote both members, a tar
    that Python's `tarfile.extractall` (and any extractor that follows an archive's own
    symlinks) extracts into the outside directory. A real manifest never holds an entry
    beneath a symlink or a file, nor one out of order (which would hide one): dump now
    refuses it as damage, before that member is written, and the CLI says so in one line."""
    out = os.fsencode(scene.outside)
    if how == "through-a-symlink":
        scene.tamper([symlink(b"evil", out), scene.file_like(b"evil/pwned.txt")])
    elif how == "through-a-file":
        scene.tamper([scene.file_like(b"a.txt/pwned.txt")])
    else:  # `evil/pwned.txt` is no longer right after `evil`: an order check alone finds it
        scene.tamper_raw(
            [*scene.entries(), symlink(b"evil", out), directory(b"f"), scene.file_like(b"evil/x")]
        )
    buf = io.BytesIO()
    with pytest.raises(NexusError, match="manifest"):
        await asyncio.to_thread(
            BackupManager(scene.root).dump_blocking, P, scene.backup_id, "", buf
        )
    buf.seek(0)
    names = []
    with contextlib.suppress(tarfile.TarError), tarfile.open(fileobj=buf, mode="r|") as tar:
        for member in tar:
            names.append(member.name)
            tar.extract(member, scene.target, filter="fully_trusted")
    assert not any("/" in n and n.split("/")[0] in ("evil", "a.txt") for n in names), names
    scene.assert_nothing_outside()
    argv = ["--root", str(scene.root), "dump", P, scene.backup_id]
    code, _out, err = await asyncio.to_thread(_cli_dump, argv)
    assert code == 4 and h.nexus_error_line(err) and len(err.splitlines()) == 1, (code, err)


def _cli_dump(argv: list[str]) -> tuple[int, str, str]:
    """dump through the CLI in a real process, its stdout /dev/null (never a terminal)."""
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "cli", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    return r.returncode, "", r.stderr.decode()

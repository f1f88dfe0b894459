"""Restore fidelity, end to end (backup, then restore): sparse files come back sparse, hard
links as links (only to what this restore wrote with the same content), extended attributes
and POSIX ACLs set on the file before it is renamed into place, with one warning naming the
file where the filesystem refuses them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest
from restore_helpers import rewrite_manifest

from core.models import CreateRequest, RestoreRequest
from core.repo import manifest as mf

P = "fid"
MIB = 1 << 20


def req(meta, target: Path, **kw: object) -> RestoreRequest:
    return RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(target), **kw)


def xattrs_supported(where: Path) -> str | None:
    probe = where / ".xattr-probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError as exc:
        return f"{where} does not take user xattrs: {exc.strerror}"
    finally:
        probe.unlink()
    return None


def digest(path: Path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            h.update(block)
    return h.hexdigest()


@pytest.mark.slow
async def test_sparse_file_is_restored_sparse(manager, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    big = src / "disk.img"
    with open(big, "wb") as f:
        f.truncate(256 * MIB)
        f.seek(100 * MIB)
        f.write(os.urandom(MIB))
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))
    out = tmp_path / "out"
    await manager.restore(req(meta, out))
    got = out / "disk.img"
    assert got.stat().st_size == 256 * MIB
    assert got.stat().st_blocks * 512 < 16 * MIB, "the holes were written as zeros"
    assert digest(got) == digest(big)


async def test_trailing_and_leading_zeros_of_a_small_file(manager, tmp_path):
    """A file under the split size whose last chunk is zeros: sized by ftruncate, not short."""
    src = tmp_path / "src"
    src.mkdir()
    data = bytes(3 * MIB) + os.urandom(MIB) + bytes(4 * MIB)
    (src / "z.bin").write_bytes(data)
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))
    out = tmp_path / "out"
    await manager.restore(req(meta, out))
    assert (out / "z.bin").read_bytes() == data


def hard_linked_tree(src: Path) -> None:
    (src / "z").mkdir(parents=True)
    (src / "a").write_bytes(os.urandom(100_000))
    os.link(src / "a", src / "z" / "two")
    os.link(src / "a", src / "z" / "three")
    (src / "copy").write_bytes((src / "a").read_bytes())  # same bytes, its own inode


async def test_hard_links_are_restored_as_links(manager, tmp_path):
    src = tmp_path / "src"
    hard_linked_tree(src)
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))
    out = tmp_path / "out"
    res = await manager.restore(req(meta, out))
    ino = {n: os.stat(out / n).st_ino for n in ("a", "z/two", "z/three", "copy")}
    assert ino["a"] == ino["z/two"] == ino["z/three"] != ino["copy"]
    assert os.stat(out / "a").st_nlink == 3
    assert (out / "z" / "three").read_bytes() == (src / "a").read_bytes()
    assert res.counts.files_create == 4
    assert res.counts.bytes_to_write == 2 * 100_000  # the links write nothing


async def test_a_link_to_a_file_this_restore_did_not_write_is_written(manager, tmp_path):
    """`a` is already in the target (unchanged): its other names are written as files of
    their own, never linked to a file of the user's."""
    src = tmp_path / "src"
    hard_linked_tree(src)
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy2(src / "a", out / "a")
    await manager.restore(req(meta, out, checkpoint=False))
    assert os.stat(out / "a").st_nlink == 1
    assert os.stat(out / "z" / "two").st_ino != os.stat(out / "a").st_ino
    assert (out / "z" / "two").read_bytes() == (src / "a").read_bytes()


async def test_a_link_whose_content_differs_is_written_with_its_own(manager, root, tmp_path):
    """A manifest saying `other` is a link of `a` while their hashes differ (tampered, or
    the file changed between the reads): `other` gets its own bytes."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a" * 5000)
    (src / "other").write_bytes(b"o" * 5000)
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))

    def lie(header: dict, entries: list[mf.Entry]):
        for e in entries:
            if e.path == b"other":
                e.link = b"a"
        return header, entries

    rewrite_manifest(root, P, meta.id, lie)
    out = tmp_path / "out"
    await manager.restore(req(meta, out))
    assert (out / "other").read_bytes() == b"o" * 5000
    assert os.stat(out / "other").st_ino != os.stat(out / "a").st_ino


async def test_xattrs_and_acls_are_restored(manager, tmp_path):
    src = tmp_path / "src"
    (src / "shared").mkdir(parents=True)
    why = xattrs_supported(src)
    if why:
        pytest.skip(why)
    f = src / "shared" / "f"
    f.write_bytes(b"attributed\n")
    os.setxattr(f, "user.origin", b"camera-7")
    os.setxattr(src / "shared", "user.kind", b"album")
    if shutil.which("setfacl"):
        subprocess.run(["setfacl", "-m", "u:12345:r", str(f)], check=True)
        subprocess.run(["setfacl", "-d", "-m", "u:12345:rwx", str(src / "shared")], check=True)
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))
    out = tmp_path / "out"
    res = await manager.restore(req(meta, out))
    assert not res.warnings, res.warnings
    for rel in ("shared", "shared/f"):
        assert dict_of(out / rel) == dict_of(src / rel), rel
    assert os.getxattr(out / "shared" / "f", "user.origin") == b"camera-7"
    assert (os.stat(out / "shared" / "f").st_mode & 0o7777) == (f.stat().st_mode & 0o7777)


def dict_of(path: Path) -> dict[str, bytes]:
    return {k: os.getxattr(path, k) for k in os.listxattr(path)}


async def test_refused_xattrs_give_one_warning_naming_the_file(manager, root, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    why = xattrs_supported(src)
    if why:
        pytest.skip(why)
    (src / "photo.jpg").write_bytes(b"jpeg")
    meta = await manager.create(CreateRequest(project_id=P, data_dir=str(src)))

    def add(header: dict, entries: list[mf.Entry]):
        for e in entries:
            if e.path == b"photo.jpg":
                e.xattrs = {b"user.ok": b"1", b"bogus.one": b"x", b"bogus.two": b"y"}
        return header, entries

    rewrite_manifest(root, P, meta.id, add)
    out = tmp_path / "out"
    res = await manager.restore(req(meta, out))
    assert (out / "photo.jpg").read_bytes() == b"jpeg"
    assert os.getxattr(out / "photo.jpg", "user.ok") == b"1"
    about = [w for w in res.warnings if "photo.jpg" in w]
    assert len(about) == 1 and "bogus.one" in about[0] and "bogus.two" in about[0], res.warnings

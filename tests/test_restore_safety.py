"""Restore safety: --delete never removes the repository or what the backup excluded, the undo
of a restore really undoes every type change, the preview's counts are what the restore then
does, if-changed compares bytes (not size and mtime), and selecting many paths stays fast."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest
from restore_helpers import dev_ino, files_under, rewrite_manifest, run_restorer

from core.errors import InvalidInput
from core.manager import BackupManager
from core.models import CreateRequest, RestoreRequest
from core.ops import backup as backup_op
from core.ops.confine import DirFds, Outside
from core.ops.restore import select
from core.repo import manifest as mf

P = "s"


async def backup(mgr: BackupManager, src: Path, **kw: object):
    return await mgr.create(CreateRequest(project_id=P, data_dir=str(src), **kw))


def restore_req(meta, target: Path, **kw: object) -> RestoreRequest:
    return RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(target), **kw)


def repository_files(root: Path) -> dict[bytes, bytes]:
    """What must survive: every pack, index and manifest of the repository."""
    return {
        k: v
        for k, v in files_under(root).items()
        if b"/packs/" in k or b"/index/" in k or k.endswith(b"manifest.zst")
    }


# --- invariant 4: --delete never removes the repository or what the backup never held ------


async def test_delete_into_the_data_dir_leaves_the_repository_inside_it(tmp_path, tree_of):
    data = tmp_path / "data"
    (data / "src").mkdir(parents=True)
    (data / "src" / "a.py").write_text("print(1)\n")
    (data / "notes.txt").write_text("notes\n")
    root = data / ".nexus"  # the repository lives inside the directory it backs up
    mgr = BackupManager(root)
    meta = await backup(mgr, data)
    (data / "stray.txt").write_text("not in the backup")
    (data / "src" / "stray.py").write_text("nor this")
    held = repository_files(root)
    assert held, "the repository holds no packs?"
    await mgr.restore(restore_req(meta, data, overwrite="always", delete_extra=True))
    assert not (data / "stray.txt").exists() and not (data / "src" / "stray.py").exists()
    after = files_under(root)
    assert {k: after.get(k) for k in held} == held, "the repository was damaged by --delete"
    out = tmp_path / "out"
    await BackupManager(root).restore(restore_req(meta, out))
    expect = {k: v for k, v in tree_of(data).items() if not k.startswith(b".nexus")}
    assert tree_of(out) == expect


async def test_delete_keeps_what_the_nexusignore_excludes(tmp_path, tree_of):
    data = tmp_path / "data"
    (data / "dataset").mkdir(parents=True)
    (data / "dataset" / "huge.bin").write_bytes(os.urandom(1000))
    (data / "sub").mkdir()
    (data / "sub" / "debug.log").write_text("log")
    (data / "run.log").write_text("log")
    (data / "code.py").write_text("code")
    (data / ".nexusignore").write_text("dataset/\n*.log\n")
    mgr = BackupManager(tmp_path / "repo")
    meta = await backup(mgr, data)
    (data / "dataset" / "more.bin").write_bytes(b"x")
    (data / "stray.txt").write_text("stray")
    (data / "build").mkdir()
    (data / "build" / "out.o").write_text("o")
    (data / "build" / "make.log").write_text("kept: excluded")
    before = tree_of(data)
    res = await mgr.restore(restore_req(meta, data, overwrite="always", delete_extra=True))
    after = tree_of(data)
    gone = set(before) - set(after)
    assert gone == {b"stray.txt", b"build/out.o"}, gone
    for kept in (b"dataset/huge.bin", b"dataset/more.bin", b"run.log", b"sub/debug.log"):
        assert after[kept] == before[kept]
    assert b"build" in after  # it still holds an excluded file
    assert res.counts.delete_files == 2 and res.counts.delete_dirs == 0


async def test_delete_keeps_what_the_backup_excluded(tmp_path, manager, root, tree_of):
    """The manifest header's `excludes` (what the backup left out) are never deleted."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    meta = await backup(manager, src)

    def add_excludes(header: dict, entries: list[mf.Entry]):
        return {**header, "excludes": ["*.tmp", "cache/"]}, entries

    rewrite_manifest(root, P, meta.id, add_excludes)
    out = tmp_path / "out"
    (out / "cache").mkdir(parents=True)
    (out / "cache" / "blob").write_text("cached")
    (out / "x.tmp").write_text("tmp")
    (out / "stray").write_text("stray")
    await manager.restore(restore_req(meta, out, delete_extra=True, checkpoint=False))
    assert sorted(files_under(out)) == [b"a.txt", b"cache/blob", b"x.tmp"]


async def test_protected_directories_are_never_deleted_replaced_or_written(tmp_path, manager, root):
    src = tmp_path / "src"
    (src / "keepme").mkdir(parents=True)
    (src / "keepme" / "planted.txt").write_text("would land in the vault")
    (src / "vault").write_text("a file where the target has a protected dir")
    (src / "ok.txt").write_text("ok")
    meta = await backup(manager, src)
    out = tmp_path / "out"
    for d in ("vault", "keepme", "outer/inner"):
        (out / d).mkdir(parents=True)
        (out / d / "secret").write_text(d)
    (out / "outer" / "other").write_text("deletable, but its dir holds a protected one")
    (out / "stray").write_text("stray")
    protect = frozenset(dev_ino(out / d) for d in ("vault", "keepme", "outer/inner"))
    res = run_restorer(
        root, P, meta.id, out, protect=protect, overwrite="always", delete_extra=True
    )
    got = files_under(out)
    assert got == {
        b"vault/secret": b"vault",
        b"keepme/secret": b"keepme",
        b"outer/inner/secret": b"outer/inner",
        b"ok.txt": b"ok",
    }, got
    reasons = {c.path: c.reason for c in res.changes if c.action == "skip"}
    assert "vault" in reasons and "keepme" in reasons and "keepme/planted.txt" in reasons


async def test_restore_into_the_repository_is_refused(manager, root, data_dir):
    meta = await backup(manager, data_dir)
    inside = root / "backups" / P / "restored-here"
    with pytest.raises(InvalidInput, match="inside a backup repository"):
        await manager.restore(restore_req(meta, inside))
    assert not inside.exists()


# --- the checkpoint's undo undoes every type change ----------------------------------------

KINDS = ("file", "dir", "symlink")


def make(path: Path, kind: str, tag: str) -> None:
    if kind == "file":
        path.write_text(f"file {tag}\n")
        path.chmod(0o640)
    elif kind == "dir":
        (path / "deep").mkdir(parents=True)
        (path / "deep" / "inner.txt").write_text(f"inner {tag}\n")
        (path / "top.txt").write_text(f"top {tag}\n")
    else:
        os.symlink("shared" if tag == "A" else f"../elsewhere-{tag}", path)


def tree_with(top: Path, kinds: dict[str, str], tag: str) -> None:
    (top / "shared").mkdir(parents=True)
    (top / "shared" / "x").write_text("shared")
    for name, kind in kinds.items():
        make(top / name, kind, tag)


async def test_undo_restores_every_type_change_byte_for_byte(tmp_path, manager, tree_of):
    """B is restored over a tree of A (each name changing type), then A's checkpoint is
    restored with --overwrite always --delete: the tree is A's again, byte for byte."""
    pairs = [(a, b) for a in KINDS for b in KINDS if a != b]
    a_kinds = {f"{a}-to-{b}": a for a, b in pairs}
    b_kinds = {f"{a}-to-{b}": b for a, b in pairs}
    b_src = tmp_path / "b"
    tree_with(b_src, b_kinds, "B")
    meta_b = await backup(manager, b_src)
    out = tmp_path / "out"
    tree_with(out, a_kinds, "A")
    before = tree_of(out)
    res = await manager.restore(restore_req(meta_b, out, overwrite="always", delete_extra=True))
    assert tree_of(out) == tree_of(b_src)
    assert res.checkpoint_id, "no checkpoint taken before a destructive restore"
    assert res.counts.dirs_overwrite == 2 and res.counts.files_overwrite == 2 + 1  # shared/x
    assert res.counts.symlinks_overwrite == 2
    undo = RestoreRequest(
        project_id=P,
        backup_id=res.checkpoint_id,
        restore_dir=str(out),
        overwrite="always",
        delete_extra=True,
        checkpoint=False,
    )
    await manager.restore(undo)
    assert tree_of(out) == before


async def test_if_changed_over_a_file_where_a_dir_was_skips_its_contents(tmp_path, manager):
    """The planner never stats a path below a file (it used to fail: not a directory)."""
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "c.txt").write_text("c")
    meta = await backup(manager, src)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a file where the backup has a directory")
    res = await manager.restore(restore_req(meta, out, checkpoint=False))
    assert (out / "a").read_text().startswith("a file")
    assert res.counts.skipped == 3 and res.counts.files_create == 0


# --- invariant 5: the preview is the truth -------------------------------------------------


async def test_dry_run_counts_are_exactly_what_the_restore_does(tmp_path, manager):
    rng = random.Random(5)
    src = tmp_path / "src"
    for d in range(12):
        (src / f"d{d:02}").mkdir(parents=True)
        for f in range(100):
            (src / f"d{d:02}" / f"f{f:03}").write_bytes(rng.randbytes(rng.randrange(1, 300)))
    meta = await backup(manager, src)
    out = tmp_path / "out"
    shutil.copytree(src, out, symlinks=True)
    names = sorted(files_under(src))
    for rel in names[:400]:  # gone: recreated
        os.unlink(os.path.join(os.fsencode(out), rel))
    for rel in names[400:650]:  # changed: overwritten
        with open(os.path.join(os.fsencode(out), rel), "ab") as f:
            f.write(b"local edit")
    for i in range(300):  # extra: deleted
        (out / "d03" / f"extra{i}").write_text("x")
    (out / "extra-dir" / "sub").mkdir(parents=True)
    (out / "extra-dir" / "sub" / "x").write_text("x")
    before = files_under(out)
    preview = await manager.restore(restore_req(meta, out, delete_extra=True, dry_run=True))
    assert files_under(out) == before
    c = preview.counts
    assert (c.files_create, c.files_overwrite, c.delete_files, c.delete_dirs) == (400, 250, 301, 2)
    assert c.files_unchanged == 1200 - 650 and c.skipped == 0
    assert preview.changes_truncated and len(preview.changes) == 1000
    real = await manager.restore(restore_req(meta, out, delete_extra=True, checkpoint=False))
    assert real.counts == preview.counts
    after = files_under(out)
    created = set(after) - set(before)
    deleted = set(before) - set(after)
    overwritten = {k for k in set(before) & set(after) if before[k] != after[k]}
    assert (len(created), len(overwritten), len(deleted)) == (400, 250, 301)
    assert not (out / "extra-dir").exists()
    assert real.files_written == 650 and real.files_deleted == 303
    assert after == files_under(src)


# --- invariant 6: if-changed means the bytes match -----------------------------------------


async def test_damage_keeping_size_and_mtime_is_repaired_by_default(tmp_path, manager):
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(os.urandom(200_000))
    (src / "other.txt").write_text("other")
    meta = await backup(manager, src)
    out = tmp_path / "out"
    await manager.restore(restore_req(meta, out))
    victim = out / "model.bin"
    st = victim.stat()
    with open(victim, "r+b") as f:  # bit rot in place: same size, mtime put back
        f.seek(1234)
        f.write(b"\xff\x00\xff")
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    res = await manager.restore(restore_req(meta, out, checkpoint=False))
    assert victim.read_bytes() == (src / "model.bin").read_bytes()
    assert res.counts.files_overwrite == 1 and res.counts.files_unchanged == 1


# --- selecting many paths ------------------------------------------------------------------


def test_select_with_ten_thousand_paths_is_fast():
    entries = []
    for d in range(100):
        entries.append(mf.Entry(path=f"d{d}".encode(), kind=mf.DIR, mode=0o40755, mtime_ns=0))
        for f in range(200):
            path = f"d{d}/f{f}.txt".encode()
            entries.append(mf.Entry(path=path, kind=mf.FILE, mode=0o100644, mtime_ns=0))
    literal = [f"d{d}/f{f}.txt" for d in range(50) for f in range(100)]
    globs = [f"d{d}/f{f}.t?t" for d in range(50, 100) for f in range(100)]
    started = time.monotonic()
    chosen = select(entries, literal + globs)
    took = time.monotonic() - started
    assert took < 2, f"select of 10,000 paths took {took:.1f} s"
    paths = {e.path for e in chosen}
    assert b"d0/f0.txt" in paths and b"d0" in paths and b"d0/f150.txt" not in paths
    assert b"d60/f12.txt" in paths and b"d60/f150.txt" not in paths
    assert len(chosen) == 2 * (50 * 100 + 50)


def test_select_keeps_its_meaning():
    names = [b"src", b"src/a.py", b"src/pkg", b"src/pkg/b.py", b"run.sh", b"[x]"]
    entries = [
        mf.Entry(
            path=p, kind=mf.DIR if b"." not in p and p != b"[x]" else mf.FILE, mode=0, mtime_ns=0
        )
        for p in names
    ]
    pick = lambda *ps: [e.path for e in select(entries, list(ps))]  # noqa: E731
    assert pick("src/pkg") == [b"src", b"src/pkg", b"src/pkg/b.py"]
    assert pick("*.sh") == [b"run.sh"]
    assert pick("sr?") == [b"src", b"src/a.py", b"src/pkg", b"src/pkg/b.py"]
    assert pick("[x]") == [b"[x]"]  # a literal name with glob characters
    assert pick("*.py", "src/*.py") == [b"src", b"src/a.py", b"src/pkg", b"src/pkg/b.py"]
    assert len(pick("/")) == len(names)
    with pytest.raises(InvalidInput, match="not in the backup"):
        select(entries, ["src/pkg", "nope/*"])


# --- confinement -----------------------------------------------------------------------------


async def test_confined_restore_refuses_a_symlink_on_the_way_and_outside(
    tmp_path, manager, data_dir
):
    meta = await backup(manager, data_dir)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, allowed / "link")
    for target in (allowed / "link" / "out", tmp_path / "out", allowed / "link"):
        with pytest.raises(Outside):
            await manager.restore(restore_req(meta, target, confine_to=[str(allowed)]))
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "out").exists()
    res = await manager.restore(
        restore_req(meta, allowed / "new" / "out", confine_to=[str(allowed)])
    )
    assert res.files_written == 6 and (allowed / "new" / "out" / "run.sh").is_file()
    dry = await manager.restore(
        restore_req(meta, allowed / "absent", confine_to=[str(allowed)], dry_run=True)
    )
    assert dry.counts.files_create == 6 and not (allowed / "absent").exists()


def test_dir_descriptors_stay_bounded_and_a_swap_after_eviction_is_refused(tmp_path):
    top = tmp_path / "top"
    for i in range(40):
        (top / f"d{i}" / "sub").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    dirs = DirFds(top_fd, limit=8)
    try:
        held = dirs.acquire(b"d0/sub")  # in use: never closed by the eviction below
        for i in range(1, 40):
            with dirs.at(f"d{i}/sub".encode()) as fd:
                assert os.path.samestat(os.fstat(fd), os.stat(top / f"d{i}" / "sub"))
        assert len(os.listdir("/proc/self/fd")) < 40
        os.fstat(held)  # still open
        dirs.release(held)
        os.rename(top / "d5", tmp_path / "d5-moved")  # d5/sub was evicted long ago
        os.symlink(outside, top / "d5")
        with pytest.raises(OSError) as err:
            dirs.acquire(b"d5/sub")
        assert err.value.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT)
    finally:
        dirs.close()
        os.close(top_fd)


async def test_a_deep_tree_restores(tmp_path, manager, tree_of):
    src = tmp_path / "src"
    deep = src.joinpath(*["d"] * 300)
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_text("deep")
    meta = await backup(manager, src)
    out = tmp_path / "out"
    await manager.restore(restore_req(meta, out))
    assert tree_of(out) == tree_of(src)


async def test_a_hard_link_planted_in_the_target_never_gets_its_mode_or_owner_changed(
    tmp_path, manager
):
    """Another user plants, where the backup has a file, a hard link to a file outside with
    the same bytes: setting the backup's mode and owner in place would change the outside
    file; a fresh copy is written over the name instead."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf").write_text("same bytes\n")
    (src / "conf").chmod(0o666)
    meta = await backup(manager, src)
    outside = tmp_path / "outside-conf"
    outside.write_text("same bytes\n")
    outside.chmod(0o600)
    out = tmp_path / "out"
    out.mkdir()
    os.link(outside, out / "conf")
    res = await manager.restore(restore_req(meta, out, checkpoint=False))
    assert outside.stat().st_mode & 0o7777 == 0o600 and outside.stat().st_nlink == 1
    assert (out / "conf").stat().st_mode & 0o7777 == 0o666
    assert res.counts.files_overwrite == 1 and res.counts.files_metadata == 0


async def test_delete_leaves_the_special_files_the_backup_could_not_hold(tmp_path, monkeypatch):
    """A fifo in the data directory is seen and left out of the backup: a restore --delete
    into that directory leaves it, and when the backup left out more paths than its
    metadata lists, --delete removes nothing at all (it cannot tell what it never held)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("f")
    os.mkfifo(src / "queue")
    mgr = BackupManager(tmp_path / "repo")
    meta = await backup(mgr, src)
    (src / "later.txt").write_text("made after the backup")
    res = await mgr.restore(restore_req(meta, src, delete_extra=True, checkpoint=False))
    assert (src / "queue").is_fifo() and not (src / "later.txt").exists()
    assert res.counts.deleted == 1
    monkeypatch.setattr(backup_op, "MAX_LEFT_OUT", 1)
    os.mkfifo(src / "queue2")
    meta = await backup(mgr, src, backup_type="full")
    assert meta.stats.left_out_more
    (src / "later.txt").write_text("made after the backup")
    res = await mgr.restore(restore_req(meta, src, delete_extra=True, checkpoint=False))
    assert (src / "later.txt").exists() and res.counts.deleted == 0
    assert any("--delete removes nothing" in w for w in res.warnings)


# `/` only as a preview: were the refusal ever lost, a real run would empty the machine
@pytest.mark.parametrize(
    ("where", "dry_run"), [("parent", True), ("parent", False), ("root", True)]
)
async def test_delete_into_a_directory_holding_the_source_is_refused(tmp_path, where, dry_run):
    """The slip of naming /srv for /srv/web: --delete would remove everything beside the
    source. Refused before anything is read or written, preview included."""
    src = tmp_path / "srv" / "web"
    src.mkdir(parents=True)
    (src / "index.html").write_text("web")
    (tmp_path / "srv" / "db").mkdir()
    (tmp_path / "srv" / "db" / "data").write_text("the database")
    mgr = BackupManager(tmp_path / "repo")
    meta = await backup(mgr, src)
    target = tmp_path / "srv" if where == "parent" else Path("/")
    before = files_under(tmp_path / "srv")
    with pytest.raises(InvalidInput, match="holds the backup's source"):
        await mgr.restore(restore_req(meta, target, delete_extra=True, dry_run=dry_run))
    assert files_under(tmp_path / "srv") == before
    assert not (tmp_path / "srv" / "index.html").exists()
    # into the source itself, or beside it, --delete is what it says
    (src / "stray").write_text("goes")
    await mgr.restore(restore_req(meta, src, delete_extra=True))
    assert not (src / "stray").exists() and (tmp_path / "srv" / "db" / "data").exists()


async def test_a_damaged_left_out_list_makes_delete_remove_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_text("f")
    mgr = BackupManager(tmp_path / "repo")
    meta = await backup(mgr, src)
    path = tmp_path / "repo" / "backups" / P / f"backup_{meta.id}" / "metadata.json"
    doc = json.loads(path.read_text())
    doc["stats"]["left_out"] = ["not base64 at all!"]
    path.write_text(json.dumps(doc))
    (src / "later.txt").write_text("made after the backup")
    res = await mgr.restore(restore_req(meta, src, delete_extra=True, checkpoint=False))
    assert (src / "later.txt").exists() and res.counts.deleted == 0

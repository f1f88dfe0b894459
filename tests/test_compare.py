"""Comparing and searching backups (issue 17), against real trees with the corners the suite
builds elsewhere (names with any bytes, type changes, symlinks, empty directories), on every
engine store (conftest.ENGINE_STORES) where it is cheap."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from store_helpers import flip_byte, project_store

from core.compare import DiffResult
from core.compare_names import LIVE
from core.errors import Damaged, InvalidInput, NotFound
from core.manager import BackupManager
from core.models import BackupType, CreateRequest
from core.ops.progress import OperationContext

ODD = b"\xff\xfe-not-utf8"
NEWLINE = b"new\nline"


def _write(top: Path, rel: bytes, data: bytes) -> None:
    with open(os.path.join(os.fsencode(top), rel), "wb") as f:
        f.write(data)


def _tree(top: Path) -> Path:
    """Files, an empty dir, a symlink, names that are not UTF-8 or hold a newline, and paths
    that will change type."""
    (top / "src").mkdir(parents=True)
    (top / "empty").mkdir()
    (top / "to-dir").write_text("file that becomes a dir\n")
    (top / "to-file").mkdir()
    (top / "to-file" / "inner").write_text("inner\n")
    (top / "to-link").write_text("file that becomes a symlink\n")
    (top / "src" / "same-size.txt").write_text("aaaa\n")
    (top / "src" / "grows.txt").write_text("x\n")
    (top / "gone.txt").write_text("removed later\n")
    (top / "mode.sh").write_text("#!/bin/sh\n")
    os.symlink("src/grows.txt", top / "link")
    _write(top, ODD, b"odd bytes\n")
    _write(top, NEWLINE, b"newline in the name\n")
    return top


def _change(top: Path) -> None:
    """One of each kind of change."""
    (top / "to-dir").unlink()
    (top / "to-dir").mkdir()
    (top / "to-file" / "inner").unlink()
    (top / "to-file").rmdir()
    (top / "to-file").write_text("dir that became a file\n")
    (top / "to-link").unlink()
    os.symlink("src", top / "to-link")
    same = top / "src" / "same-size.txt"
    st = same.stat()
    same.write_text("bbbb\n")  # same size, other bytes
    os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same mtime
    (top / "src" / "grows.txt").write_text("x\ny\n")
    (top / "gone.txt").unlink()
    (top / "mode.sh").chmod(0o755)
    os.unlink(top / "link")
    os.symlink("src/same-size.txt", top / "link")
    _write(top, ODD, b"odd bytes, changed\n")
    (top / "new-empty").mkdir()
    _write(top, b"added-\xe9", b"latin-1 name\n")


def _by_path(result: DiffResult) -> dict[bytes, tuple[str, list[str]]]:
    return {c.raw: (c.status, c.changes) for c in result.changes}


@pytest.fixture
def manager(engine: BackupManager) -> BackupManager:
    return engine


async def _two(manager: BackupManager, top: Path) -> tuple[str, str]:
    a = await manager.create(CreateRequest(project_id="p", data_dir=str(top)))
    _change(top)
    b = await manager.create(
        CreateRequest(project_id="p", data_dir=str(top), backup_type=BackupType.INCREMENTAL)
    )
    return a.id, b.id


async def test_diff_of_two_backups_names_every_change_exactly(manager, tmp_path):
    top = _tree(tmp_path / "data")
    a, b = await _two(manager, top)
    result = await manager.diff("p", a, b)
    got = _by_path(result)
    assert got[b"to-dir"] == ("changed", ["type"])
    assert got[b"to-file"] == ("changed", ["type"])
    assert got[b"to-file/inner"] == ("removed", [])
    assert got[b"to-link"] == ("changed", ["type"])
    assert got[b"src/same-size.txt"][1][0] == "content"  # proven by the hashes
    assert got[b"src/grows.txt"][1][:2] == ["content", "size"]
    assert got[b"gone.txt"] == ("removed", [])
    assert got[b"mode.sh"] == ("changed", ["mode"]) or got[b"mode.sh"][1][0] == "mode"
    assert "target" in got[b"link"][1]
    assert got[ODD][0] == "changed" and "content" in got[ODD][1]
    assert got[b"new-empty"] == ("added", [])
    assert got[b"added-\xe9"] == ("added", [])
    assert NEWLINE not in got and b"empty" not in got and b"src" not in got  # written in place
    odd = next(c for c in result.changes if c.raw == ODD)
    assert odd.path_b64 is not None  # exact bytes for a JSON client
    t = result.totals
    assert (t.added, t.removed) == (2, 2)
    assert t.files_removed == 2 and t.bytes_removed == len("removed later\n") + len("inner\n")
    assert t.unchanged >= 2 and not result.truncated
    # the same compared the other way round: added and removed swap, nothing else changes
    back = await manager.diff("p", b, a)
    assert (back.totals.added, back.totals.removed) == (2, 2)
    assert {p for p, (s, _) in _by_path(back).items() if s == "added"} == {
        b"gone.txt",
        b"to-file/inner",
    }


async def test_diff_path_narrows_and_limit_keeps_totals(manager, tmp_path):
    top = _tree(tmp_path / "data")
    a, b = await _two(manager, top)
    narrowed = await manager.diff("p", a, b, path="/src/")
    assert set(_by_path(narrowed)) == {b"src/same-size.txt", b"src/grows.txt"}
    assert narrowed.totals.unchanged == 1  # src itself
    whole = await manager.diff("p", a, b)
    cut = await manager.diff("p", a, b, limit=3)
    assert cut.truncated and len(cut.changes) == 3
    assert cut.totals == whole.totals
    assert (await manager.diff("p", a, a)).changes == []


async def test_diff_refuses_bad_input(manager, tmp_path):
    top = _tree(tmp_path / "data")
    a, _b = await _two(manager, top)
    with pytest.raises(NotFound):
        await manager.diff("p", a, "20200101-000000-abcdef")
    with pytest.raises(InvalidInput):
        await manager.diff("p", a, "latest", path="../etc")
    with pytest.raises(InvalidInput):
        await manager.diff("p", LIVE, a)


async def test_live_diff_of_an_untouched_tree_is_empty_by_the_backups_rules(manager, tmp_path):
    """The live side is walked as a backup walks it: its excludes, its .nexusignore, special
    files skipped, the repository itself never entered."""
    top = _tree(tmp_path / "data")
    (top / ".nexusignore").write_text("*.log\n")
    (top / "noise.log").write_text("ignored\n")
    (top / "cache").mkdir()
    (top / "cache" / "x").write_text("excluded\n")
    os.mkfifo(top / "fifo")
    meta = await manager.create(
        CreateRequest(project_id="p", data_dir=str(top), excludes=["cache/"])
    )
    result = await manager.diff("p", meta.id, LIVE)
    assert result.changes == [], result.changes
    stats = meta.stats
    assert result.totals.unchanged == meta.files_count + stats.dirs_count + stats.symlinks_count


async def test_live_diff_says_when_content_was_not_compared(manager, tmp_path):
    top = _tree(tmp_path / "data")
    meta = await manager.create(CreateRequest(project_id="p", data_dir=str(top)))
    same = top / "src" / "same-size.txt"
    st = same.stat()
    same.write_text("zzzz\n")
    os.utime(same, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same size and mtime: hidden
    touched = top / "src" / "grows.txt"
    os.utime(touched, ns=(0, 1_000_000_000))  # a new mtime, the same bytes
    _write(top, ODD, b"other length\n")
    quick = await manager.diff("p", meta.id, LIVE)
    got = _by_path(quick)
    assert b"src/same-size.txt" not in got  # size and mtime agree: taken as unchanged
    grows = next(c for c in quick.changes if c.path == "src/grows.txt")
    assert grows.content_unknown and grows.compared == "metadata" and grows.changes == ["mtime"]
    assert got[ODD][1][:2] == ["content", "size"]  # another size: proven
    assert quick.totals.content_unknown == 1
    proven = await manager.diff("p", meta.id, LIVE, verify_content=True)
    got = _by_path(proven)
    assert got[b"src/same-size.txt"] == ("changed", ["content"])
    grows = next(c for c in proven.changes if c.path == "src/grows.txt")
    assert not grows.content_unknown and grows.compared == "hash" and grows.changes == ["mtime"]
    assert proven.totals.content_unknown == 0 and proven.totals.hashed >= 2


async def test_find_lists_versions_newest_first_and_collapses_runs(manager, tmp_path):
    top = _tree(tmp_path / "data")
    ids = []
    for i in range(4):
        if i == 2:
            (top / "src" / "grows.txt").write_text("x\n" * 10)
        meta = await manager.create(CreateRequest(project_id="p", data_dir=str(top)))
        ids.append(meta.id)
    result = await manager.find("p", "grows.txt")
    [hit] = result.hits
    assert hit.path == "src/grows.txt" and result.backups_searched == 4
    newer, older = hit.versions
    assert (newer.newest, newer.oldest, newer.backups, newer.size) == (ids[3], ids[2], 2, 20)
    assert (older.newest, older.oldest, older.backups, older.size) == (ids[1], ids[0], 2, 2)
    # globs match the full path or the base name; a substring matches the full path
    assert {h.path for h in (await manager.find("p", "*.txt")).hits} == {
        "src/same-size.txt",
        "src/grows.txt",
        "gone.txt",
    }
    assert [h.path for h in (await manager.find("p", "src/g*")).hits] == ["src/grows.txt"]
    assert [h.path for h in (await manager.find("p", "c/gr")).hits] == ["src/grows.txt"]
    odd = (await manager.find("p", "*not-utf8")).hits
    assert [h.raw for h in odd] == [ODD] and odd[0].versions[0].backups == 4
    assert [h.raw for h in (await manager.find("p", "new\nl")).hits] == [NEWLINE]
    assert (await manager.find("p", "no-such-name")).hits == []
    with pytest.raises(InvalidInput):
        await manager.find("p", "")


async def test_find_leaves_out_a_damaged_manifest_and_says_so(manager, tmp_path):
    top = _tree(tmp_path / "data")
    a = await manager.create(CreateRequest(project_id="p", data_dir=str(top)))
    b = await manager.create(CreateRequest(project_id="p", data_dir=str(top)))
    flip_byte(project_store(manager, "p"), f"backup_{a.id}/data/manifest.zst", 40)
    result = await manager.find("p", "grows")
    assert result.backups_searched == 1
    assert [v.newest for v in result.hits[0].versions] == [b.id]
    assert any(a.id in w for w in result.warnings)
    with pytest.raises(Damaged):
        await manager.diff("p", a.id, b.id)


async def test_find_all_projects(manager, tmp_path):
    top = _tree(tmp_path / "data")
    await manager.create(CreateRequest(project_id="p", data_dir=str(top)))
    other = tmp_path / "other"
    other.mkdir()
    (other / "grows.txt").write_text("elsewhere\n")
    await manager.create(CreateRequest(project_id="q", data_dir=str(other)))
    result = await manager.find(None, "grows.txt", all_projects=True)
    assert sorted((h.project_id, h.path) for h in result.hits) == [
        ("p", "src/grows.txt"),
        ("q", "grows.txt"),
    ]


async def test_ls_lists_one_level_or_all_with_folder_sizes(manager, tmp_path):
    top = _tree(tmp_path / "data")
    meta = await manager.create(CreateRequest(project_id="p", data_dir=str(top)))
    top_level = await manager.ls("p", meta.id)
    names = [e.name for e in top_level.entries]
    assert "src" in names and "src/grows.txt" not in [e.path for e in top_level.entries]
    src = next(e for e in top_level.entries if e.name == "src")
    assert (src.size, src.files) == (len("aaaa\n") + len("x\n"), 2)
    every = await manager.ls("p", meta.id, "", recursive=True)
    assert {e.raw for e in every.entries} >= {b"src/grows.txt", ODD, b"empty"}
    link = next(e for e in every.entries if e.path == "link")
    assert link.kind == "symlink" and link.target == "src/grows.txt"
    assert [e.path for e in (await manager.ls("p", meta.id, "src/grows.txt")).entries] == [
        "src/grows.txt"
    ]
    with pytest.raises(NotFound):
        await manager.ls("p", meta.id, "nope")


async def test_cat_gives_the_bytes_backed_up_and_refuses_a_directory(manager, data_dir):
    meta = await manager.create(CreateRequest(project_id="p", data_dir=str(data_dir)))
    entry, pieces = await manager.open_file("p", meta.id, "big.bin")  # many chunks
    assert b"".join(pieces) == (data_dir / "big.bin").read_bytes()
    assert entry.size == (data_dir / "big.bin").stat().st_size
    _e, pieces = await manager.open_file("p", "latest", "données é 日本.txt")
    assert b"".join(pieces) == b"unicode name\n"
    with pytest.raises(InvalidInput, match="directory"):
        await manager.open_file("p", meta.id, "src")
    with pytest.raises(InvalidInput, match="symlink"):
        await manager.open_file("p", meta.id, "link-to-main")
    with pytest.raises(NotFound):
        await manager.open_file("p", meta.id, "src/missing.py")


def test_dump_is_a_tar_of_the_tree_as_backed_up(manager, tmp_path, tree_of):
    top = _tree(tmp_path / "data")
    (top / "src" / "exec").write_text("run\n")
    (top / "src" / "exec").chmod(0o751)
    manager.create_blocking(
        CreateRequest(project_id="p", data_dir=str(top)), OperationContext("create", "p", None)
    )
    out = io.BytesIO()
    count = manager.dump_blocking("p", "latest", "", out)
    out.seek(0)
    dest = tmp_path / "extracted"
    with tarfile.open(fileobj=out, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
        tar.extractall(dest, filter="fully_trusted")
    _same_tree(tree_of(dest), tree_of(top))
    assert count == len(tree_of(top))
    sub = io.BytesIO()
    manager.dump_blocking("p", "latest", "src", sub)
    sub.seek(0)
    with tarfile.open(fileobj=sub, mode="r|") as tar:
        names = sorted(t.name for t in tar)
    assert names == ["src", "src/exec", "src/grows.txt", "src/same-size.txt"]
    with pytest.raises(NotFound):
        manager.dump_blocking("p", "latest", "nope", io.BytesIO())


def _same_tree(got: dict[bytes, tuple], want: dict[bytes, tuple]) -> None:
    """Trees equal, file mtimes within a microsecond (Python's tarfile extracts a float)."""
    assert {k: v[:3] for k, v in got.items()} == {k: v[:3] for k, v in want.items()}
    for k, v in want.items():
        if v[0] == "f":
            assert abs(got[k][3] - v[3]) < 1000, k


@pytest.mark.parametrize("pattern", ["file-01", "*7-x*.txt", "dir-3/*", "odd", "*", "ü"])
def test_find_search_matches_every_line_across_blocks(pattern):
    """The prefilter never loses a line: a manifest of many blocks (lines cut at every block
    end), names not UTF-8 among them, searched against a decode of every line."""
    from core.ops.find import BLOCK, Pattern, search
    from core.repo import manifest as mf

    writer = mf.ManifestWriter({"backup_id": "b"})
    entries = []
    for i in range(6000):
        name = f"dir-{i % 5}/file-{i:05}-{'x' * (i % 90)}-ü.txt".encode()
        if i % 97 == 0:
            name = name.replace(b"file", b"odd\xff")
        entries.append(mf.Entry(path=name, kind=mf.FILE, mode=0o100644, mtime_ns=i, size=i))
    for d in range(5):
        entries.append(mf.Entry(path=f"dir-{d}".encode(), kind=mf.DIR, mode=0o40755, mtime_ns=0))
    entries.sort(key=lambda e: mf.order_key(e.path))
    for e in entries:
        e.hash = "ab" * 32
        writer.add(e)
    frame, checksum = writer.finish()
    assert len(frame) < BLOCK < sum(len(mf.encode_entry(e)) for e in entries)
    pat = Pattern(pattern)
    found = search(pat, frame, checksum)
    assert found is not None
    assert [e.path for e in found] == [e.path for e in entries if pat.matches(e.path)]
    assert found  # every pattern here matches something
    assert search(pat, frame, "blake3:" + "0" * 64) is None


def _all_files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


async def test_compare_and_search_never_write_the_repository(tmp_path):
    """Invariant 3 for the new readers: diff (both kinds), find, ls, cat and dump leave every
    byte of the repository as it was (cat and dump's shared lock is gone once they end)."""
    root = tmp_path / "root"
    manager = BackupManager(root)
    top = _tree(tmp_path / "data")
    a, b = await _two(manager, top)
    before = _all_files(root / "backups")
    fresh = BackupManager(root)
    await fresh.diff("p", a, b)
    await fresh.diff("p", a, LIVE, verify_content=True)
    await fresh.find(None, "*", all_projects=True)
    await fresh.ls("p", b, recursive=True)
    _e, pieces = await fresh.open_file("p", b, "src/grows.txt")
    assert b"".join(pieces) == (top / "src" / "grows.txt").read_bytes()
    fresh.dump_blocking("p", b, "", io.BytesIO())
    assert _all_files(root / "backups") == before

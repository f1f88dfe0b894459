"""The scan's fast paths: excludes matched with one regex, parent lines reused without being
decoded, and what happens when the parent cannot be trusted (checksum, damage)."""

from __future__ import annotations

import io
import os
import random

import orjson
import pathspec
import pytest
import zstandard

from core.models import BackupType, CreateRequest, RestoreRequest
from core.ops.walker import Excludes, list_dir, walk_entries
from core.repo import manifest as mf
from core.repo.repository import Repository

P = "scan"


async def _backup(manager, data_dir, kind=BackupType.INCREMENTAL, excludes=()):
    return await manager.create(
        CreateRequest(
            project_id=P, data_dir=str(data_dir), backup_type=kind, excludes=list(excludes)
        )
    )


async def _restored(manager, meta, tmp_path, tree_of):
    out = tmp_path / f"out-{meta.id}"
    await manager.restore(RestoreRequest(project_id=P, backup_id=meta.id, restore_dir=str(out)))
    return tree_of(out)


def _lines(data: bytes) -> list[bytes]:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read().splitlines(True)


def _install(root, backup_id: str, lines: list[bytes], *, checksum: bool = True) -> None:
    """Replace a backup's manifest; metadata.json's checksum made to match it (or dropped)."""
    repo = Repository(root, P)
    data = zstandard.ZstdCompressor().compress(b"".join(lines))
    repo.write_manifest(backup_id, data)
    meta = repo.read_metadata(backup_id)
    meta.checksum = mf.checksum(data) if checksum else None
    repo.write_metadata(meta)


# --- excludes --------------------------------------------------------------------------


PATTERN_SETS = [
    ["*.tmp"],
    ["*.tmp", "build/", "/top.txt", "logs/**/*.log", "[ab]?.c", "sp ace", "x\\(y"],
    ["node_modules/", "*.pyc", "__pycache__/", "a/**/b", "**/deep", "dir/*.txt"],
    ["*.log", "!keep.log"],  # a negation: pathspec decides
    ["build/", "!build/keep/"],
]


@pytest.mark.parametrize("patterns", PATTERN_SETS)
def test_excludes_match_exactly_as_pathspec(patterns):
    spec = pathspec.GitIgnoreSpec.from_lines(patterns)
    ex = Excludes(spec)
    assert (ex._match is None) == any(p.startswith("!") for p in patterns)
    rng = random.Random(5)
    parts = ["a", "b", "ab", "x(y", "sp ace", "build", "keep", "logs", "deep", "dir", "top.txt"]
    parts += ["f.tmp", "keep.log", "z.log", "m.pyc", "q.c", "ac.c", "__pycache__", "é.txt"]
    for _ in range(3000):
        path = "/".join(rng.choice(parts) for _ in range(rng.randint(1, 4)))
        for is_dir in (False, True):
            want = spec.match_file(path + "/" if is_dir else path)
            assert ex.excluded(path, is_dir) == want, (patterns, path, is_dir)


async def test_excludes_with_negation_and_nested_dirs(manager, tmp_path, tree_of):
    d = tmp_path / "d"
    (d / "build" / "keep").mkdir(parents=True)
    (d / "src" / "logs").mkdir(parents=True)
    files = {
        "build/out.o": b"object",
        "build/keep/readme": b"kept under build",
        "src/a.log": b"a log",
        "src/keep.log": b"kept log",
        "src/logs/b.log": b"another log",
        "src/main.c": os.urandom(3000),
    }
    for rel, content in files.items():
        (d / rel).write_bytes(content)
    (d / ".nexusignore").write_text("*.log\n!keep.log\n")
    for kind in (BackupType.FULL, BackupType.INCREMENTAL):
        meta = await _backup(manager, d, kind, excludes=["build/*", "!build/keep/"])
        out = await _restored(manager, meta, tmp_path, tree_of)
        assert out[b"src/main.c"][1] == files["src/main.c"]
        assert out[b"src/keep.log"][1] == b"kept log"
        assert out[b"build/keep/readme"][1] == b"kept under build"
        for gone in (b"build/out.o", b"src/a.log", b"src/logs/b.log"):
            assert gone not in out
    assert meta.stats.bytes_read == 0  # the incremental one reused every line


# --- reuse of the parent's lines -------------------------------------------------------


async def test_no_change_backup_reuses_every_line_verbatim(
    manager, root, data_dir, tree_of, tmp_path
):
    first = await _backup(manager, data_dir, BackupType.FULL)
    second = await _backup(manager, data_dir)
    s = second.stats
    assert second.parent_backup_id == first.id
    assert s.bytes_read == 0 and s.files_new == s.files_changed == s.files_removed == 0
    assert s.files_unchanged == second.files_count == first.files_count
    assert (s.dirs_count, s.symlinks_count) == (first.stats.dirs_count, first.stats.symlinks_count)
    assert s.chunks_total == first.stats.chunks_total
    repo = Repository(root, P)
    one, two = (_lines(repo.read_manifest(m.id)) for m in (first, second))
    assert one[1:] == two[1:]  # every entry byte for byte; only the header differs
    assert await _restored(manager, second, tmp_path, tree_of) == tree_of(data_dir)


async def test_changes_of_dirs_and_symlinks_are_seen(manager, data_dir, tree_of, tmp_path):
    await _backup(manager, data_dir, BackupType.FULL)
    (data_dir / "empty").chmod(0o700)
    os.unlink(data_dir / "dangling")
    os.symlink("/elsewhere/now", data_dir / "dangling")
    (data_dir / "src" / "new").mkdir()
    (data_dir / "src" / "new" / "n.txt").write_bytes(b"new")
    (data_dir / "big.bin").unlink()
    second = await _backup(manager, data_dir)
    assert second.stats.files_new == 1 and second.stats.files_removed == 1
    assert second.stats.bytes_read == 3
    assert await _restored(manager, second, tmp_path, tree_of) == tree_of(data_dir)


async def test_a_chunk_gone_from_the_index_means_reading_the_file(manager, root, tmp_path, tree_of):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_bytes(b"alpha" * 10)
    (d / "b.txt").write_bytes(b"beta" * 10)
    first = await _backup(manager, d, BackupType.FULL)
    repo = Repository(root, P)
    lines = _lines(repo.read_manifest(first.id))
    obj = orjson.loads(lines[1])
    assert obj["p"] == "a.txt"
    obj["ch"] = [["ab" * 32, obj["s"]]]  # a chunk no pack holds
    lines[1] = orjson.dumps(obj) + b"\n"
    _install(root, first.id, lines)
    second = await _backup(manager, d)
    assert second.parent_backup_id == first.id
    assert second.stats.bytes_read == 50  # a.txt read again, b.txt reused
    assert await _restored(manager, second, tmp_path, tree_of) == tree_of(d)


# --- a parent that cannot be trusted ---------------------------------------------------


async def _two_files_same_size(manager, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.txt").write_bytes(b"A" * 100)
    (d / "b.txt").write_bytes(b"B" * 100)
    first = await _backup(manager, d, BackupType.FULL)
    return d, first


async def test_parent_not_matching_its_checksum_is_not_reused(manager, root, tmp_path, tree_of):
    """a.txt's line made to name b.txt's chunk, metadata.json left as it was: reusing it would
    back up the wrong bytes. The scan sees the checksum differ and reads everything."""
    d, first = await _two_files_same_size(manager, tmp_path)
    repo = Repository(root, P)
    lines = _lines(repo.read_manifest(first.id))
    a, b = orjson.loads(lines[1]), orjson.loads(lines[2])
    a["h"], a["ch"] = b["h"], b["ch"]
    lines[1] = orjson.dumps(a) + b"\n"
    good = repo.read_metadata(first.id).checksum
    _install(root, first.id, lines)
    meta = repo.read_metadata(first.id)
    meta.checksum = good  # the damage is in the manifest only
    repo.write_metadata(meta)

    second = await _backup(manager, d)
    assert second.parent_backup_id is None
    assert second.stats.bytes_read == 200
    assert second.stats.files_unchanged == 0 and second.stats.files_new == 2
    assert any("unusable" in r.message and "checksum" in r.message for r in manager.logger.read(P))
    out = await _restored(manager, second, tmp_path, tree_of)
    assert out[b"a.txt"][1] == b"A" * 100 and out[b"b.txt"][1] == b"B" * 100


async def test_parent_with_a_line_that_is_not_json_is_dropped(manager, root, tmp_path, tree_of):
    d, first = await _two_files_same_size(manager, tmp_path)
    repo = Repository(root, P)
    lines = _lines(repo.read_manifest(first.id))
    lines.insert(2, b"{not json\n")
    _install(root, first.id, lines)
    second = await _backup(manager, d)
    assert second.parent_backup_id is None and second.stats.bytes_read == 200
    assert any("unusable" in r.message for r in manager.logger.read(P))
    assert await _restored(manager, second, tmp_path, tree_of) == tree_of(d)


async def test_parent_without_checksum_has_its_reused_lines_checked(
    manager, root, tmp_path, tree_of
):
    d, first = await _two_files_same_size(manager, tmp_path)
    repo = Repository(root, P)
    lines = _lines(repo.read_manifest(first.id))
    _install(root, first.id, lines, checksum=False)
    second = await _backup(manager, d)  # sound lines: reused
    assert second.parent_backup_id == first.id and second.stats.bytes_read == 0

    b = orjson.loads(lines[2])
    b["h"] = "not a hash"
    lines[2] = orjson.dumps(b) + b"\n"
    _install(root, second.id, lines, checksum=False)
    third = await _backup(manager, d)
    assert third.parent_backup_id is None and third.stats.bytes_read == 200
    assert await _restored(manager, third, tmp_path, tree_of) == tree_of(d)


# --- the manifest's order --------------------------------------------------------------


def test_order_key_orders_as_path_components():
    rng = random.Random(7)
    alphabet = [b"a", b"b", b"-", b".", b"0", b"\xff", b"\xc3\xa9", b" "]
    paths = set()
    while len(paths) < 2000:
        parts = [
            b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 3)))
            for _ in range(rng.randint(1, 4))
        ]
        paths.add(b"/".join(parts))
    by_parts = sorted(paths, key=mf.sort_key)
    assert sorted(paths, key=mf.order_key) == by_parts


def test_writer_refuses_disorder_and_duplicates():
    w = mf.ManifestWriter({})
    w.add_line(b"a", b"{}\n")
    w.add_line(b"a/b", b"{}\n")
    w.add_line(b"a-b", b"{}\n")  # "a" and all below it come before "a-b"
    with pytest.raises(mf.ManifestError, match="out of order"):
        w.add_line(b"a/c", b"{}\n")
    with pytest.raises(mf.ManifestError, match="out of order"):
        w.add_line(b"a-b", b"{}\n")


def test_spans_copy_the_parents_lines_in_pieces(monkeypatch):
    """The read pass copies runs of the parent's lines by their offsets from Records, across
    block boundaries, and the last line keeps (or gets back) its newline."""
    monkeypatch.setattr(mf.Spans, "BLOCK", 97)  # spans straddle many blocks
    for tail in (b"\n", b""):
        w = mf.ManifestWriter({})
        for i in range(300):
            w.add(mf.Entry(path=b"d/f%04d" % i, kind=mf.DIR, mode=0o40755, mtime_ns=i))
        data = w.finish()[0]
        plain = b"".join(_lines(data))
        if not tail:
            plain = plain[:-1]
            data = zstandard.ZstdCompressor().compress(plain)
        records = mf.Records(data)
        rows = [(path, start, end) for path, _obj, _line, start, end in records]
        assert [plain[s:e] for _p, s, e in rows] == plain.splitlines(True)[1:]
        spans = mf.Spans(data)
        out = mf.ManifestWriter({})
        # runs of unchanged lines with gaps between them (entries left out or rewritten)
        for lo, hi in ((0, 1), (1, 120), (125, 126), (130, 300)):
            out.add_lines(rows[lo][0], rows[hi - 1][0], spans.take(rows[lo][1], rows[hi - 1][2]))
        assert spans.finish() == records.checksum
        want = [plain.splitlines(True)[1 + i] for i in [*range(120), 125, *range(130, 300)]]
        got = _lines(out.finish()[0])[1:]
        assert got[:-1] == want[:-1] and got[-1] == want[-1].rstrip(b"\n") + b"\n"
        with pytest.raises(mf.ManifestError, match="out of order"):
            list(spans.take(rows[0][1], rows[0][2]))


# --- the walk ----------------------------------------------------------------------------


def test_a_directory_swapped_for_a_symlink_is_not_followed(tmp_path):
    """list_dir opens each directory with O_NOFOLLOW: had `sub` been a directory when its
    parent was listed and a symlink by the time it is entered, its target stays unread."""
    top = tmp_path / "top"
    outside = tmp_path / "outside"
    top.mkdir()
    outside.mkdir()
    (outside / "private.txt").write_bytes(b"not part of the backup")
    (top / "sub").symlink_to(outside)
    warnings: list[str] = []
    assert list_dir(os.fsencode(top), b"sub", warn=warnings.append) == []
    assert len(warnings) == 1 and warnings[0].startswith("sub: cannot read directory")


def test_walk_lists_raw_byte_names_in_byte_order(tmp_path):
    top = tmp_path / "top"
    top.mkdir()
    names = [b"b", b"a-1", b"\xff\xfe-not-utf8", b"\xc3\xa9t\xc3\xa9", b"A", b"a"]
    for n in names:
        open(os.path.join(os.fsencode(top), n), "wb").close()
    os.mkdir(os.path.join(os.fsencode(top), b"a\xffdir"))
    open(os.path.join(os.fsencode(top), b"a\xffdir/x"), "wb").close()
    got = [rel for rel, _kind, _st in walk_entries(os.fsencode(top))]
    assert got == sorted([*names, b"a\xffdir", b"a\xffdir/x"], key=mf.sort_key)

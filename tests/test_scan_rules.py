"""The scan's rules one by one (core.ops.scan): when a parent's line still describes an entry
(`change` / `unchanged`), when it can be reused (`reusable`), the parent's lines taken in step
with the walk (`ParentLines`) and runs of reused lines (`ReusedSpan`, `merge`).

The parent's lines are the ones the engine wrote (a real backup of a real tree), the entries'
attributes real lstat results before and after a real change to the file."""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import zstandard
from engine_helpers import engine_backup

from core.manager import BackupManager
from core.models import BackupStatus, CreateRequest, RestoreRequest
from core.ops import scan
from core.ops.walker import walk_entries
from core.repo import manifest as mf
from core.repo.repository import Repository

P = "rules"
TICK = 0.025  # longer than a coarse timestamp's step: a change after it moves the times
BIG = 4 * 1024 * 1024 + 300_000  # above the largest chunk (4 MiB): two chunks at least


def _tree(tmp_path: Path) -> Path:
    d = tmp_path / "d"
    (d / "dir").mkdir(parents=True)
    (d / "dir" / "inner").write_bytes(b"inner")
    (d / "file").write_bytes(b"0123456789" * 10)
    (d / "big").write_bytes(os.urandom(BIG))  # several chunks
    os.symlink("file", d / "link")
    return d


def _parent(tmp_path: Path, d: Path) -> tuple[Repository, dict[bytes, dict], bytes]:
    """A real backup of `d`: its repository, its manifest's lines' fields by path, the data."""
    meta = engine_backup(tmp_path / "repo", P, d)
    repo = Repository(tmp_path / "repo", P)
    repo.refresh_index()
    data = repo.read_manifest(meta.id)
    return repo, {path: fields for path, fields, _l, _s, _e in mf.Records(data)}, data


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Path, Repository, dict[bytes, dict], bytes]:
    d = _tree(tmp_path)
    repo, lines, data = _parent(tmp_path, d)
    time.sleep(TICK)
    return d, repo, lines, data


# --- unchanged: the parent's line against a real lstat --------------------------------------


def _why(fields: dict, st: os.stat_result) -> str | None:
    """`change` given the kind the walk would see in `st`."""
    return scan.change(fields, scan.KIND_OF_TYPE[stat.S_IFMT(st.st_mode)], st)


@pytest.mark.parametrize("rel", [b"file", b"big", b"dir", b"dir/inner", b"link"])
def test_an_untouched_entry_is_unchanged(backed_up, rel):
    d, _repo, lines, _data = backed_up
    with open(d / "file", "rb") as f:  # reading it (its atime) is no change
        f.read()
    st = os.lstat(os.path.join(os.fsencode(d), rel))
    assert _why(lines[rel], st) is None
    assert scan.unchanged(lines[rel], st)


def _chown(p: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("chown to another owner needs root")
    os.chown(p, 4321, 4321, follow_symlinks=False)


def _xattr(p: Path) -> None:
    try:
        os.setxattr(p, "user.scan-test", b"1", follow_symlinks=False)
    except OSError as exc:
        pytest.skip(f"no user xattrs here: {exc}")


def _rewrite_same_size(p: Path) -> None:
    p.write_bytes(p.read_bytes()[::-1])


def _rewrite_keeping_mtime(p: Path) -> None:
    st = p.stat()
    _rewrite_same_size(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))


def _replace_by_copy(p: Path) -> None:
    """Same bytes, size and mtime under a new inode (an editor's save-by-rename)."""
    shutil.copy2(p, p.with_name("copy"))
    os.rename(p.with_name("copy"), p)


def _relink(p: Path) -> None:
    os.link(p, p.with_name(p.name + "-hard"))


def _retarget(p: Path) -> None:
    p.unlink()
    os.symlink("dir!", p)  # as long as before


def _swap_for_dir(p: Path) -> None:
    p.unlink()
    p.mkdir()


def _swap_for_file(p: Path) -> None:
    shutil.rmtree(p)
    p.write_bytes(b"")


def _touch_back(p: Path) -> None:
    """Only the ctime moves: the times set to what they were."""
    st = os.lstat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


#: (entry, change made to it, the reason the scan gives). Each change alone.
CHANGES: list[tuple[str, Callable[[Path], None], str]] = [
    ("file", lambda p: p.write_bytes(p.read_bytes() + b"!"), "size"),
    ("file", lambda p: os.truncate(p, 0), "size"),
    ("file", _rewrite_same_size, "mtime_ns"),
    ("file", lambda p: os.utime(p), "mtime_ns"),
    ("file", _replace_by_copy, "ino"),
    ("file", _rewrite_keeping_mtime, "ctime_ns"),
    ("file", lambda p: p.chmod(0o600), "ctime_ns"),
    ("file", _chown, "ctime_ns"),
    ("file", _xattr, "ctime_ns"),
    ("file", _relink, "ctime_ns"),
    ("file", _touch_back, "ctime_ns"),
    ("file", _swap_for_dir, "kind"),
    ("big", _rewrite_same_size, "mtime_ns"),
    ("dir", lambda p: (p / "new").write_bytes(b""), "mtime_ns"),
    ("dir", lambda p: p.chmod(0o700), "mode"),
    ("dir", _chown, "uid"),
    ("dir", _xattr, "ctime_ns"),
    ("dir", _touch_back, "ctime_ns"),
    ("dir", _swap_for_file, "kind"),
    ("link", _retarget, "mtime_ns"),
    ("link", _chown, "ctime_ns"),
    ("link", _touch_back, "ctime_ns"),
]


@pytest.mark.parametrize(
    ("rel", "make_change", "reason"),
    CHANGES,
    ids=[f"{rel}-{getattr(fn, '__name__', '')}-{why}" for rel, fn, why in CHANGES],
)
def test_each_real_change_alone_is_seen(backed_up, rel, make_change, reason):
    d, _repo, lines, _data = backed_up
    make_change(d / rel)
    st = os.lstat(d / rel)
    assert _why(lines[rel.encode()], st) == reason
    assert not scan.unchanged(lines[rel.encode()], st)


#: Every attribute the rule compares, per kind, and the line changed in that one field.
RECORDED = [
    (b"file", "size"),
    (b"file", "mtime_ns"),
    (b"file", "ino"),
    (b"file", "ctime_ns"),
    (b"dir", "mtime_ns"),
    (b"dir", "mode"),
    (b"dir", "uid"),
    (b"dir", "gid"),
    (b"dir", "ctime_ns"),
    (b"link", "size"),
    (b"link", "mtime_ns"),
    (b"link", "ino"),
    (b"link", "ctime_ns"),
]


def test_the_table_covers_every_compared_attribute():
    kinds = {b"file": mf.FILE, b"dir": mf.DIR, b"link": mf.SYMLINK}
    covered = {(kinds[rel], attr) for rel, attr in RECORDED}
    assert covered == {(k, a) for k, names in scan.COMPARED.items() for a in names}


@pytest.mark.parametrize(("rel", "attr"), RECORDED)
def test_a_line_differing_in_one_compared_field_is_not_unchanged(backed_up, rel, attr):
    d, _repo, lines, _data = backed_up
    st = os.lstat(os.path.join(os.fsencode(d), rel))
    fields = dict(lines[rel])
    fields[mf.FIELD_KEYS[attr]] += 1
    assert _why(fields, st) == attr
    del fields[mf.FIELD_KEYS[attr]]
    assert _why(fields, st) == "incomplete"


@pytest.mark.parametrize("rel", [b"file", b"dir", b"link"])
def test_a_line_of_another_kind_is_not_unchanged(backed_up, rel):
    d, _repo, lines, _data = backed_up
    st = os.lstat(os.path.join(os.fsencode(d), rel))
    for other in (mf.FILE, mf.DIR, mf.SYMLINK, None):
        fields = dict(lines[rel], k=other)
        assert (_why(fields, st) == "kind") == (other != lines[rel]["k"])


def test_a_special_file_is_never_unchanged(backed_up, tmp_path):
    _d, _repo, lines, _data = backed_up
    os.mkfifo(tmp_path / "fifo")
    assert not scan.unchanged(lines[b"file"], os.lstat(tmp_path / "fifo"))


# --- reusable: unchanged, and every chunk still stored --------------------------------------


def _reusable(fields: dict, st: os.stat_result, stored) -> list[bytes] | None:
    return scan.reusable(fields, scan.KIND_OF_TYPE[stat.S_IFMT(st.st_mode)], st, stored)


def test_reusable_names_the_chunks_of_an_unchanged_file(backed_up):
    d, repo, lines, _data = backed_up
    stored = repo.index.entries.keys()
    for rel in (b"file", b"big"):
        digests = _reusable(lines[rel], os.lstat(os.path.join(os.fsencode(d), rel)), stored)
        want = [bytes.fromhex(h) for h, _n in _entry(lines[rel]).chunks]
        assert digests == want and digests
    assert len(_reusable(lines[b"big"], os.lstat(d / "big"), stored)) > 1
    for rel in (b"dir", b"link"):
        assert _reusable(lines[rel], os.lstat(os.path.join(os.fsencode(d), rel)), stored) == []


def _entry(fields: dict) -> mf.Entry:
    return mf.decode_entry(orjson.dumps(fields))


def test_a_chunk_no_longer_stored_means_reading_the_file(backed_up):
    d, repo, lines, _data = backed_up
    st = os.lstat(d / "big")
    digests = _reusable(lines[b"big"], st, repo.index.entries.keys())
    assert digests
    for gone in (digests[0], digests[-1]):
        stored = set(repo.index.entries) - {gone}
        assert _reusable(lines[b"big"], st, stored) is None


@pytest.mark.parametrize(
    "chunks", [[["zz" * 32, 5]], [["ab" * 32]], [["ab" * 32, 5, 6]], "abcd", 7, [[7, 5]]]
)
def test_chunks_that_do_not_read_as_such_mean_reading_the_file(backed_up, chunks):
    d, repo, lines, _data = backed_up
    fields = dict(lines[b"file"], ch=chunks)
    assert _reusable(fields, os.lstat(d / "file"), repo.index.entries.keys()) is None


def test_a_changed_file_is_not_reusable_even_with_its_chunks_stored(backed_up):
    d, repo, lines, _data = backed_up
    os.utime(d / "file")
    assert _reusable(lines[b"file"], os.lstat(d / "file"), repo.index.entries.keys()) is None


# --- ParentLines and merge -------------------------------------------------------------------


def _records(paths: list[bytes]) -> list[tuple[bytes, dict, bytes, int, int]]:
    """A manifest of these files (none are directories), as Records yields it."""
    w = mf.ManifestWriter({})
    for p in sorted(paths, key=mf.sort_key):
        w.add(mf.Entry(path=p, kind=mf.FILE, mode=0o100644, mtime_ns=1, hash="ab" * 32))
    return list(mf.Records(w.finish()[0]))


def test_parent_lines_taken_in_step_with_the_walk():
    parent = scan.ParentLines(_records([b"a", b"a/x", b"b", b"c", b"e", b"f"]))
    assert parent.take(b"a")[0] == b"a"
    assert parent.take(b"a-b") is None  # passes a/x (gone since the parent)
    assert parent.take(b"c")[0] == b"c"  # passes b
    assert parent.take(b"d") is None
    assert parent.take(b"e")[0] == b"e"
    assert parent.finish() == 3  # a/x, b and f: the file lines passed, taken by no path
    assert parent.take(b"z") is None


def test_parent_lines_of_no_parent():
    parent = scan.ParentLines(())
    assert parent.take(b"a") is None and parent.finish() == 0


def _merge(d: Path, data: bytes | None, repo: Repository, *, reuse: bool = True):
    refs: list[bytes] = []
    progress: list[tuple[int, int, str | None]] = []
    items, totals = scan.merge(
        walk_entries(os.fsencode(d)),
        scan.ParentLines(mf.Records(data) if data is not None else ()),
        reuse=reuse,
        strict=False,
        stored=repo.index.entries.keys(),
        add_refs=refs.extend,
        advance=lambda files, nbytes, path: progress.append((files, nbytes, path)),
    )
    return items, totals, refs, progress


def test_merge_reuses_runs_of_unchanged_lines_as_spans(backed_up):
    d, repo, _lines, data = backed_up
    items, totals, refs, progress = _merge(d, data, repo)
    plain = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    assert len(items) == 1 and type(items[0]) is scan.ReusedSpan
    span = items[0]
    assert (span.first, span.last) == (b"big", b"link")  # every entry, in manifest order
    assert plain[span.start : span.end] == plain.split(b"\n", 1)[1]
    assert (totals.reused_files, totals.reused_dirs, totals.reused_links) == (3, 1, 1)
    assert totals.read_files == totals.read_bytes == 0 and totals.parent_files == 3
    assert totals.reused_bytes == 100 + BIG + 5
    assert len(refs) == len(set(refs)) > 3
    assert sum(f for f, _b, _p in progress) == 3 and sum(b for _f, b, _p in progress) == BIG + 105


def test_merge_breaks_the_span_at_a_changed_entry(backed_up):
    d, repo, lines, data = backed_up
    os.utime(d / "dir" / "inner")
    (d / "new").write_bytes(b"new!")
    (d / "big").unlink()
    items, totals, _refs, _progress = _merge(d, data, repo)
    shape = [
        ("span", i.first, i.last) if type(i) is scan.ReusedSpan else ("read", i.rel, i.had_file)
        for i in items
    ]
    assert shape == [
        ("span", b"dir", b"dir"),
        ("read", b"dir/inner", True),
        ("span", b"file", b"link"),
        ("read", b"new", False),
    ]
    assert (totals.read_files, totals.read_bytes) == (2, 9)
    assert totals.parent_files == 3  # big among them, gone since
    inner = items[1]
    assert inner.old_hash == _entry(lines[b"dir/inner"]).hash


def test_merge_without_reuse_reads_everything_but_knows_the_parent(backed_up):
    d, repo, _lines, data = backed_up
    items, totals, refs, _progress = _merge(d, data, repo, reuse=False)
    assert all(type(i) is scan.Item for i in items) and refs == []
    assert [i.had_file for i in items if i.kind == mf.FILE] == [True, True, True]
    assert totals.read_files == 3 and totals.parent_files == 3


def test_merge_names_the_first_path_of_a_hard_linked_inode(backed_up):
    d, repo, _lines, data = backed_up
    os.link(d / "file", d / "zlink")
    items, _totals, _refs, _progress = _merge(d, data, repo)
    read = {i.rel: i for i in items if type(i) is scan.Item}
    assert read[b"file"].link is None and read[b"zlink"].link == b"file"


# --- the manifest's accessors ----------------------------------------------------------------


def test_the_accessors_read_what_decode_entry_reads(backed_up):
    """On every line the engine wrote, each accessor gives the decoded Entry's attribute."""
    _d, _repo, lines, _data = backed_up
    assert {fields["k"] for fields in lines.values()} == {mf.FILE, mf.DIR, mf.SYMLINK}
    for fields in lines.values():
        entry = _entry(fields)
        names = scan.COMPARED[entry.kind]
        assert mf.fields_reader(*names)(fields) == tuple(getattr(entry, n) for n in names)
        assert mf.fields_reader("mode")(fields) == (entry.mode,)
        assert mf.kind_of(fields) == entry.kind and mf.hash_of(fields) == entry.hash
        assert mf.chunk_digests(fields) == [bytes.fromhex(h) for h, _n in entry.chunks]


@pytest.mark.parametrize("odd", ["directory", "not-utf8-line"])
async def test_an_odd_ignore_file_never_fails_the_backup(tmp_path, odd):
    """A `.nexusignore` that is a directory, or holds a line that is not UTF-8 text (which no
    manifest can record; an --exclude like it is refused by the request): the backup
    completes, holds everything else, and says so."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "keep.txt").write_text("k")
    (data / "skip.log").write_text("s")
    if odd == "directory":
        (data / ".nexusignore").mkdir()
    else:
        (data / ".nexusignore").write_bytes(b"*.log\n\xff\xfe*\n")
    mgr = BackupManager(tmp_path / "repo")
    meta = await mgr.create(CreateRequest(project_id="p", data_dir=str(data)))
    assert meta.status == BackupStatus.COMPLETED
    out = tmp_path / "out"
    await mgr.restore(RestoreRequest(project_id="p", backup_id=meta.id, restore_dir=str(out)))
    assert (out / "keep.txt").read_text() == "k"
    if odd == "directory":
        assert (out / "skip.log").exists() and (out / ".nexusignore").is_dir()
    else:
        assert not (out / "skip.log").exists()
        assert any("not UTF-8 text: not applied" in w for w in meta.stats.warnings)

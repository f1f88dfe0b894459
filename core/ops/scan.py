"""The scan: walk the data directory and merge it with the parent's manifest.

Both come sorted by path components, so the merge is one pass over each. Per walked entry it
decides whether the parent's line still says it all (`reusable`: then the line is copied
verbatim and nothing is read) or the entry is to be read (an `Item` for the read pass). Runs of
consecutive reused lines become one `ReusedSpan`, a byte range of the parent's uncompressed
manifest, copied again when the new manifest is written (core.ops.backup), so that the lines
are not held meanwhile. The totals it returns are exact, for the read pass's progress.

The parent's lines are compared field by field without being decoded into entries (through
core.repo.manifest's accessors): they are only as good as the parent manifest's checksum,
which the caller checks once the last line went by.
"""

from __future__ import annotations

import operator
import os
import stat
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from core.display import fs_text
from core.repo import manifest as mf

FILE, DIR, SYMLINK = mf.FILE, mf.DIR, mf.SYMLINK
_KIND = mf.FIELD_KEYS["kind"]  # the key of a line's Entry.kind, read inline on every entry

PROGRESS_EVERY = 256  # scanned entries between two progress reports (rate-limited anyway)

#: A line of the parent's manifest as `mf.Records` yields it: (path, fields, line, start, end).
Record = tuple[bytes, dict, bytes, int, int]
Advance = Callable[[int, int, str | None], None]  # (files, bytes, current path): progress


@dataclass(slots=True)
class Item:
    """One walked entry to be read (or, for a directory or symlink, written from its lstat):
    what the read pass needs and nothing more."""

    rel: bytes
    kind: str  # "f", "d", "l"
    mode: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    uid: int
    gid: int
    had_file: bool = False  # the parent held a file at this path
    old_hash: str | None = None
    link: bytes | None = None  # the first path of the same inode in this backup (hard links)

    @property
    def shown(self) -> str:
        return shown(self.rel)


@dataclass(slots=True)
class ReusedSpan:
    """Unchanged entries, consecutive in the walk and in the parent's manifest: the byte range
    [start, end) of the parent's uncompressed manifest holding their lines, reused verbatim,
    and the paths of the first and last of them (for the new manifest's order check)."""

    start: int
    end: int
    first: bytes
    last: bytes


#: What the scan hands the read pass, in walk order.
Planned = Item | ReusedSpan


@dataclass(slots=True)
class ScanTotals:
    """What the scan counted: entries reused, files left to read, the parent's files."""

    reused_files: int = 0
    reused_bytes: int = 0
    reused_dirs: int = 0
    reused_links: int = 0
    read_files: int = 0  # files the read pass reads (and their bytes)
    read_bytes: int = 0
    parent_files: int = 0  # file lines in the parent's manifest, walked or not


def shown(rel: bytes) -> str:
    """A path in a message: the one decode policy (core.display)."""
    return fs_text(rel)


# --- the rules -----------------------------------------------------------------------------

#: Per kind of entry, the attributes (Entry's names; an lstat's are the same prefixed "st_")
#: whose equality with the parent's line tells the entry unchanged. The ctime is what makes
#: that sound: the kernel moves it with every change of content or attributes (a write, a
#: truncate, chmod, chown, an extended attribute or ACL, a link, unlink or rename of the inode),
#: and no system call sets it to a chosen value; the other attributes name the change more
#: precisely, so the ctime comes last. A file's or symlink's mode and owner are covered by its
#: ctime alone. It holds with coarse timestamps too because the read pass records a file only
#: once it has settled (core.ops.backup._settled: unchanged RACY_NS after its last change), so
#: a write in the same timestamp step as the read cannot hide behind an equal ctime.
COMPARED: dict[str, tuple[str, ...]] = {
    FILE: ("size", "mtime_ns", "ino", "ctime_ns"),
    SYMLINK: ("size", "mtime_ns", "ino", "ctime_ns"),
    DIR: ("mtime_ns", "mode", "uid", "gid", "ctime_ns"),
}

#: Per kind: the readers of COMPARED's attributes from a line's fields and from an lstat.
_RULES: dict[str, tuple[Callable[[dict], tuple], Callable[[os.stat_result], tuple]]] = {
    kind: (mf.fields_reader(*names), operator.attrgetter(*("st_" + name for name in names)))
    for kind, names in COMPARED.items()
}
#: The kind of entry of each file type (st_mode's type bits); other types are never unchanged.
KIND_OF_TYPE = {stat.S_IFREG: FILE, stat.S_IFDIR: DIR, stat.S_IFLNK: SYMLINK}


def change(old: dict, kind: str, st: os.stat_result) -> str | None:
    """Why the parent's line (its fields, `old`) no longer describes the entry of `kind` the
    walk lstat'ed as `st`: "kind", the first attribute of COMPARED that differs, or
    "incomplete" (a field missing from the line); None when it still does. (The walk gives
    the kind it saw in `st`: it is not worked out again here, on every entry.)"""
    recorded, observed = _RULES[kind]
    try:
        if old[_KIND] != kind:
            return "kind"
        was = recorded(old)
    except KeyError:
        return "incomplete"
    now = observed(st)
    if was == now:
        return None
    return next(n for n, a, b in zip(COMPARED[kind], was, now, strict=True) if a != b)


def unchanged(old: dict, st: os.stat_result) -> bool:
    """Whether the parent's line still describes the entry lstat'ed as `st` (see `change`)."""
    kind = KIND_OF_TYPE.get(stat.S_IFMT(st.st_mode))
    return kind is not None and change(old, kind, st) is None


NO_CHUNKS: list[bytes] = []


def reusable(
    old: dict, kind: str, st: os.stat_result, stored: Collection[bytes]
) -> list[bytes] | None:
    """The reuse decision: the chunks the parent's line names (none for a directory or
    symlink) when it can be copied as it is, or None when the entry is to be read. A line is
    reused when it still describes the entry (`change`) and, for a file, every chunk it names
    is still `stored` (indexed): a chunk gone since (reclaimed, or damaged and dropped) means
    reading the file again."""
    recorded, observed = _RULES[kind]  # `change`, inline: this runs on every entry
    try:
        if old[_KIND] != kind or recorded(old) != observed(st):
            return None
    except KeyError:
        return None
    if kind != FILE:
        return NO_CHUNKS
    digests = mf.chunk_digests(old)
    if digests is None:
        return None
    for digest in digests:
        if digest not in stored:
            return None
    return digests


def first_name(inodes: dict[tuple[int, int], bytes], rel: bytes, st: os.stat_result) -> bytes:
    """The first path walked of the inode of this file with other hard links (itself, unless
    one of them came before it); `inodes` remembers them for the rest of the walk."""
    return inodes.setdefault((st.st_dev, st.st_ino), rel)


# --- the merge -----------------------------------------------------------------------------


class ParentLines:
    """The parent's manifest lines, taken in step with the walk: `take(rel)` passes the lines
    of paths before `rel` (gone since the parent) and returns the line of `rel`, if any;
    `finish` passes the rest (so that every line is hashed: the caller compares the
    manifest's checksum). `passed_files` counts the file lines passed, taken by no path."""

    __slots__ = ("_lines", "_next", "passed_files")

    def __init__(self, records: Iterable[Record]) -> None:
        self._lines: Iterator[Record] = iter(records)
        self._next = next(self._lines, None)
        self.passed_files = 0

    def take(self, rel: bytes) -> Record | None:
        record = self._next
        if record is not None and record[0] == rel:  # in step: the common case, kept short
            self._next = next(self._lines, None)
            return record
        if record is None:  # no parent, or past its last line
            return None
        return self._catch_up(rel)

    def _catch_up(self, rel: bytes) -> Record | None:
        record = self._next
        if record is None:
            return None
        key = mf.order_key(rel)
        while mf.order_key(record[0]) < key:
            self._pass(record)
            record = next(self._lines, None)
            if record is None:
                self._next = None
                return None
        if record[0] != rel:
            self._next = record
            return None
        self._next = next(self._lines, None)
        return record

    def _pass(self, record: Record) -> None:
        if mf.kind_of(record[1]) == FILE:
            self.passed_files += 1

    def finish(self) -> int:
        """Passes the lines left; the number of file lines passed in all."""
        while self._next is not None:
            self._pass(self._next)
            self._next = next(self._lines, None)
        return self.passed_files


def merge(
    walk: Iterable[tuple[bytes, str, os.stat_result]],
    parent: ParentLines,
    *,
    reuse: bool,
    strict: bool,
    stored: Collection[bytes],
    add_refs: Callable[[Iterable[bytes]], None],
    advance: Advance,
) -> tuple[list[Planned], ScanTotals]:
    """The walk merged with the parent's lines, whole (see `merge_stream`)."""
    totals = ScanTotals()
    items = list(
        merge_stream(
            walk,
            parent,
            totals,
            reuse=reuse,
            strict=strict,
            stored=stored,
            add_refs=add_refs,
            advance=advance,
        )
    )
    return items, totals


def merge_stream(
    walk: Iterable[tuple[bytes, str, os.stat_result]],
    parent: ParentLines,
    totals: ScanTotals,
    *,
    reuse: bool,
    strict: bool,
    stored: Collection[bytes],
    add_refs: Callable[[Iterable[bytes]], None],
    advance: Advance,
) -> Iterator[Planned]:
    """The walk merged with the parent's lines: per entry, the span of reused lines it joins
    or the Item to read, yielded as the walk goes (a span once it is complete). `reuse`: lines
    may be reused (else the parent only tells which files are new); `strict`: each reused line
    is decoded first (a parent without a checksum), so that a damaged one raises
    ManifestError. `add_refs` gets the chunks each reused line names. `totals` is brought up
    to date at each progress report and is exact once the stream ends (so a read pass that
    consumes the stream as it comes sees its totals grow).
    The hot loop of a backup with few changes: kept to a few calls per entry."""
    take = parent.take
    inodes: dict[tuple[int, int], bytes] = {}
    span: ReusedSpan | None = None  # the span of reused lines being extended, not yet yielded
    files = size = dirs = links = read_files = read_bytes = shown_files = shown_bytes = 0
    taken_files = 0  # file lines of the parent taken by an entry read
    tick = PROGRESS_EVERY
    for rel, kind, st in walk:
        tick -= 1
        if not tick:
            tick = PROGRESS_EVERY
            done, done_bytes = files + read_files, size + read_bytes
            advance(done - shown_files, done_bytes - shown_bytes, shown(rel))
            shown_files, shown_bytes = done, done_bytes
            _set(totals, files, size, dirs, links, read_files, read_bytes)
        first = first_name(inodes, rel, st) if st.st_nlink > 1 and kind == FILE else rel
        record = take(rel)
        if record is not None and reuse:
            _path, old, line, start, end = record
            digests = reusable(old, kind, st, stored)
            if digests is not None:
                if strict:
                    mf.decode_entry(line)  # raises ManifestError if damaged
                if span is not None and span.end == start:
                    span.end = end
                    span.last = rel
                else:
                    if span is not None:
                        yield span
                    span = ReusedSpan(start, end, rel, rel)
                if kind == FILE:
                    add_refs(digests)
                    files += 1
                    size += st.st_size
                elif kind == DIR:
                    dirs += 1
                else:
                    links += 1
                continue
        if span is not None:
            yield span
            span = None
        item = _item(rel, kind, st, record[1] if record is not None else None, first)
        if item.had_file:
            taken_files += 1
        if kind == FILE:
            read_files += 1
            read_bytes += st.st_size
            totals.read_files, totals.read_bytes = read_files, read_bytes  # what is to be read
        yield item
    if span is not None:
        yield span
    advance(files + read_files - shown_files, size + read_bytes - shown_bytes, None)
    # every file line of the parent was taken (by a file reused, or an entry read) or passed
    totals.parent_files = files + taken_files + parent.finish()
    _set(totals, files, size, dirs, links, read_files, read_bytes)


def _set(totals: ScanTotals, *counts: int) -> None:
    (
        totals.reused_files,
        totals.reused_bytes,
        totals.reused_dirs,
        totals.reused_links,
        totals.read_files,
        totals.read_bytes,
    ) = counts


def _item(rel: bytes, kind: str, st: os.stat_result, old: dict | None, first: bytes) -> Item:
    """The entry to read, with what the parent's line of its path (`old`) said: for the counts
    of new and changed files."""
    had_file = old is not None and mf.kind_of(old) == FILE
    return Item(
        rel,
        kind,
        st.st_mode,
        st.st_size,
        st.st_mtime_ns,
        st.st_ctime_ns,
        st.st_ino,
        st.st_uid,
        st.st_gid,
        had_file,
        mf.hash_of(old) if had_file else None,  # type: ignore[arg-type]
        first if first != rel else None,
    )

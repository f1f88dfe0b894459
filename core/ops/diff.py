"""Comparing two trees in the manifest's order: two backups, or a backup and the live data
directory walked by the backup's own walker (core.ops.walker), with the backup's excludes.

Both sides come sorted by path components, so the diff is a merge-join: one pass over each,
holding one entry per side. Two manifest lines that are the same bytes (an incremental
backup reuses a parent's unchanged lines verbatim) are the same entry and are not decoded at
all; only the lines that differ are.

Content is compared by size first: different sizes are a proven change. Two backups then
compare the files' whole-content hashes (proven either way). A live file of the same size
and mtime counts as unchanged, as the backup's own scan would count it; with another mtime
its content is "unknown" unless `verify` hashes it (BLAKE3, the manifest's content hash).
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from core.compare import DiffChange, DiffSide, DiffTotals
from core.compare_names import b64_of, text_of
from core.ops.entries import entry_fields
from core.ops.walker import Excludes, read_xattrs, walk_entries
from core.repo import manifest as mf
from core.repo.chunker import hash_fd
from core.repo.codec import frame_reader

_ORDER = mf.order_key

#: One side's next entry: the raw line (None for a live entry) and the entry, decoded lazily.
Line = bytes | None


def manifest_lines(data: bytes) -> Iterator[bytes]:
    """The entry lines of a manifest frame, header skipped, blanks left out (streamed)."""
    lines = io.BufferedReader(frame_reader(data), buffer_size=256 << 10)  # (see find.BLOCK)
    next(lines, None)
    for line in lines:
        if line.strip():
            yield line if line.endswith(b"\n") else line + b"\n"


@dataclass(slots=True)
class Side:
    """A stream of (line, entry) in the manifest's order: `line` the raw manifest line (None
    for a live entry), `entry` decoded from it only when asked (`entry_of`)."""

    items: Iterator[tuple[Line, mf.Entry | None]]

    @classmethod
    def of_manifest(cls, data: bytes) -> Side:
        return cls((line, None) for line in manifest_lines(data))

    @classmethod
    def of_entries(cls, entries: Iterable[mf.Entry]) -> Side:
        return cls((None, e) for e in entries)


def entry_of(line: Line, entry: mf.Entry | None) -> mf.Entry:
    if entry is not None:
        return entry
    assert line is not None
    return mf.decode_entry(line)


def live_entries(
    top: bytes,
    *,
    excludes: Excludes | None,
    skip: set[tuple[int, int]],
    warn: Callable[[str], None],
    check: Callable[[], None] = lambda: None,
) -> Iterator[mf.Entry]:
    """The data directory as a backup would record it now (without reading file contents):
    the walker's entries, the rules (excludes, special files, the repository skipped) its own,
    each with the metadata a backup captures (mode, owner, mtime, size, link target, xattrs)."""
    for rel, kind, st in walk_entries(top, excludes=excludes, skip=skip, warn=warn, check=check):
        path = top + b"/" + rel
        target = None
        if kind == mf.SYMLINK:
            try:
                target = os.readlink(path)
            except OSError as exc:
                warn(f"{text_of(rel)}: cannot read link: {exc.strerror or exc}")
                continue
        try:
            xattrs = read_xattrs(path)
        except OSError:
            xattrs = None
        yield mf.Entry(
            path=rel,
            kind=kind,
            mode=st.st_mode,
            mtime_ns=st.st_mtime_ns,
            size=st.st_size if kind != mf.DIR else 0,
            uid=st.st_uid,
            gid=st.st_gid,
            target=target,
            xattrs=xattrs,
        )


def hash_file(path: bytes, size: int | None = None) -> str:
    """BLAKE3 hex of a file's whole content (the manifest's content hash), not following a
    symlink at the last component. Opened without blocking and hashed only if it is still a
    regular file (a fifo swapped in since the scan would block the open forever); OSError
    otherwise. No more than one byte past `size` (what the scan saw; default: its size now)
    is read (`hash_fd`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file", os.fsdecode(path))
        os.set_blocking(fd, True)
        return hash_fd(fd, st.st_size if size is None else size)
    finally:
        os.close(fd)


def side_of(e: mf.Entry) -> DiffSide:
    return DiffSide(**entry_fields(e))


class Differ:
    """Merges side `a` (old) with side `b` (new) into DiffChanges, counting `totals`.

    `prefix` narrows to one path and what lies below it; `live_top` names the data directory
    when `b` is live (for hashing, with `verify`)."""

    def __init__(
        self,
        *,
        prefix: bytes = b"",
        live_top: bytes | None = None,
        verify: bool = False,
        warn: Callable[[str], None] = lambda _m: None,
        check: Callable[[], None] = lambda: None,
    ) -> None:
        self.prefix = prefix.strip(b"/")
        self.live_top = live_top
        self.verify = verify
        self.warn = warn
        self.check = check
        self.totals = DiffTotals()

    def _inside(self, path: bytes) -> bool:
        p = self.prefix
        return not p or path == p or (path.startswith(p) and path[len(p) : len(p) + 1] == b"/")

    def _line_inside(self, line: bytes) -> bool:
        """Whether an unchanged line (never decoded otherwise) lies under the prefix."""
        return not self.prefix or self._inside(mf.decode_entry(line).path)

    def run(self, a: Side, b: Side) -> Iterator[DiffChange]:
        sentinel = (None, None)
        ita, itb = a.items, b.items
        la, ea = next(ita, sentinel)
        lb, eb = next(itb, sentinel)
        ticks = 0
        totals = self.totals
        while not (la is None and ea is None) or not (lb is None and eb is None):
            ticks += 1
            if not ticks & 1023:
                self.check()
            a_done = la is None and ea is None
            b_done = lb is None and eb is None
            if not a_done and not b_done and la is not None and la == lb:
                if self._line_inside(la):
                    totals.unchanged += 1
                la, ea = next(ita, sentinel)
                lb, eb = next(itb, sentinel)
                continue
            if not a_done:
                ea = entry_of(la, ea)
            if not b_done:
                eb = entry_of(lb, eb)
            if b_done or (not a_done and _ORDER(ea.path) < _ORDER(eb.path)):  # type: ignore[union-attr]
                assert ea is not None
                if self._inside(ea.path):
                    yield self._removed(ea)
                la, ea = next(ita, sentinel)
            elif a_done or _ORDER(ea.path) > _ORDER(eb.path):  # type: ignore[union-attr]
                assert eb is not None
                if self._inside(eb.path):
                    yield self._added(eb)
                lb, eb = next(itb, sentinel)
            else:
                assert ea is not None and eb is not None
                if self._inside(ea.path):
                    change = self._compare(ea, eb)
                    if change is None:
                        totals.unchanged += 1
                    else:
                        yield change
                la, ea = next(ita, sentinel)
                lb, eb = next(itb, sentinel)

    def _added(self, e: mf.Entry) -> DiffChange:
        t = self.totals
        t.added += 1
        if e.kind == mf.FILE:
            t.files_added += 1
            t.bytes_added += e.size
        return DiffChange(
            path=text_of(e.path), path_b64=b64_of(e.path), status="added", new=side_of(e)
        )

    def _removed(self, e: mf.Entry) -> DiffChange:
        t = self.totals
        t.removed += 1
        if e.kind == mf.FILE:
            t.files_removed += 1
            t.bytes_removed += e.size
        return DiffChange(
            path=text_of(e.path), path_b64=b64_of(e.path), status="removed", old=side_of(e)
        )

    def _compare(self, old: mf.Entry, new: mf.Entry) -> DiffChange | None:
        changes: list[str] = []
        compared = None
        unknown = False
        if old.kind != new.kind:  # a type change says it all: both sides are shown
            return self._changed(old, new, ["type"], None, unknown=False)
        if old.kind == mf.FILE:
            compared, content = self._content(old, new)
            if content is None:
                unknown = True
            elif content:
                changes.append("content")
        if old.kind == new.kind == mf.FILE and old.size != new.size:
            changes.append("size")
        if old.kind != mf.SYMLINK and (old.mode & 0o7777) != (new.mode & 0o7777):
            changes.append("mode")
        if (old.uid, old.gid) != (new.uid, new.gid):
            changes.append("owner")
        if old.mtime_ns != new.mtime_ns:
            changes.append("mtime")
        if old.kind == new.kind == mf.SYMLINK and old.target != new.target:
            changes.append("target")
        if (old.xattrs or None) != (new.xattrs or None):
            changes.append("xattrs")
        if not changes and not unknown:
            return None
        return self._changed(old, new, changes, compared, unknown=unknown)

    def _changed(
        self,
        old: mf.Entry,
        new: mf.Entry,
        changes: list[str],
        compared: str | None,
        *,
        unknown: bool,
    ) -> DiffChange:
        t = self.totals
        t.changed += 1
        if "content" in changes or ("type" in changes and mf.FILE in (old.kind, new.kind)):
            t.files_changed += 1
        if unknown:
            t.content_unknown += 1
        return DiffChange(
            path=text_of(new.path),
            path_b64=b64_of(new.path),
            status="changed",
            changes=changes,
            compared=compared,  # type: ignore[arg-type]
            content_unknown=unknown,
            old=side_of(old),
            new=side_of(new),
        )

    def _content(self, old: mf.Entry, new: mf.Entry) -> tuple[str, bool | None]:
        """(how, changed): changed None when not proven either way."""
        if old.size != new.size:
            return "size", True
        if new.hash is not None:  # two backups: both hashes recorded
            return "hash", old.hash != new.hash
        if self.live_top is not None and self.verify:
            try:
                digest = hash_file(self.live_top + b"/" + new.path, new.size)
            except OSError as exc:
                self.warn(f"{text_of(new.path)}: cannot read to compare: {exc.strerror or exc}")
                return "metadata", None
            self.totals.hashed += 1
            return "hash", digest != old.hash
        if old.mtime_ns == new.mtime_ns:
            return "metadata", False
        return "metadata", None

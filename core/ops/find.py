"""Finding a path in every backup: which backups hold it, and how it looked in each.

Each manifest is read once, streamed in blocks and hashed as it goes by (a manifest that does
not match its checksum is left out, with a warning). Only the lines that can match are
decoded: the pattern's longest literal part, as the manifest's JSON spells it, is looked for
in each block with one `bytes.find` (a C memory search), and a line is decoded only where it
is found, or where a name is stored in base64 (not UTF-8). A pattern that is all wildcards
decodes every line.

A pattern with a wildcard (`*`, `?`, `[`) is a glob (fnmatch, case-sensitive) that matches
the full path or the base name; any other pattern matches as a substring of the full path.
Versions of a path are the runs of consecutive backups (newest first) that hold it with the
same kind, size, mtime, content hash and link target.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import blake3
import orjson

from core.compare import FindHit, FindVersion
from core.compare_names import b64_of, text_of
from core.repo import manifest as mf
from core.repo.codec import frame_reader

BLOCK = 256 << 10  # (larger blocks cost more: each is a fresh allocation)
_WILD = re.compile(r"\*|\?|\[[^\]]*\]?")
_B64_NAME = b'{"pb":'  # a line whose path is not UTF-8 (base64): always decoded


class Pattern:
    """A find pattern: a glob on the full path or the base name, else a substring."""

    def __init__(self, text: str) -> None:
        if not text:
            raise ValueError("the pattern is empty")
        self.text = text
        self.glob = any(c in text for c in "*?[")
        self._match = re.compile(fnmatch.translate(text), re.DOTALL).match if self.glob else None
        literal = max(_WILD.split(text), key=len) if self.glob else text
        self.literal = _json_spelling(literal)

    def matches(self, path: bytes) -> bool:
        text = os.fsdecode(path)  # as the pattern came (surrogate escapes for odd bytes)
        if self._match is None:
            return self.text in text
        return self._match(text) is not None or self._match(text.rpartition("/")[2]) is not None


def _json_spelling(literal: str) -> bytes | None:
    """How `literal` appears inside a manifest line's JSON string (None: not usable as a
    prefilter, so every line is decoded)."""
    if not literal:
        return None
    try:
        return orjson.dumps(literal)[1:-1]
    except (TypeError, orjson.JSONEncodeError):  # lone surrogates: such names are base64
        return None


def candidate_lines(data: bytes, literal: bytes | None, hasher: blake3.blake3) -> Iterator[bytes]:
    """The entry lines of a manifest frame that may match (those holding `literal`, or a
    base64 name; every line when `literal` is None), in order; every byte goes through
    `hasher`, so that once this is exhausted it holds the manifest's checksum. Each block is
    searched where it lies: only the line cut by a block's end is copied."""
    reader = frame_reader(data)
    carry = b""
    header = True
    while block := reader.read(BLOCK):
        hasher.update(block)
        first = block.find(b"\n")
        if first < 0:
            carry += block
            continue
        line = carry + block[: first + 1]
        if header:
            header = False
        elif _candidate(line, literal):
            yield line[:-1]
        last = block.rfind(b"\n") + 1
        if last > first + 1:
            yield from _lines_in(block, first + 1, last, literal)
        carry = block[last:]
    if carry and not header and _candidate(carry, literal):
        yield carry


def _candidate(line: bytes, literal: bytes | None) -> bool:
    if literal is None:
        return bool(line.strip())
    return literal in line or line.startswith(_B64_NAME)


Finder_ = Callable[[bytes, int, int], int]


def _finder(needle: bytes) -> Finder_:
    """The fastest search of `needle` in a buffer between two offsets (-1: not there): the
    regex engine for a short needle (it skips by the needle's first byte), `bytes.find` for a
    long one (it skips by the needle's length)."""
    if len(needle) >= 8:
        return lambda buf, start, end: buf.find(needle, start, end)
    search_ = re.compile(re.escape(needle)).search

    def find(buf: bytes, start: int, end: int) -> int:
        m = search_(buf, start, end)
        return -1 if m is None else m.start()

    return find


_B64_FINDER = _finder(_B64_NAME)
_FINDERS: dict[bytes, tuple[Finder_, ...]] = {}


def _finders(literal: bytes) -> tuple[Finder_, ...]:
    found = _FINDERS.get(literal)
    if found is None:
        found = _FINDERS[literal] = (_finder(literal), _B64_FINDER)
    return found


def _lines_in(buf: bytes, start: int, end: int, literal: bytes | None) -> Iterator[bytes]:
    if literal is None:
        for line in buf[start:end].split(b"\n"):
            if line.strip():
                yield line
        return
    found: set[int] = set()
    for find in _finders(literal):
        pos = find(buf, start, end)
        while pos >= 0:
            line_start = max(buf.rfind(b"\n", start, pos) + 1, start)
            found.add(line_start)
            line_end = buf.find(b"\n", pos, end)
            pos = find(buf, line_end + 1, end) if line_end >= 0 else -1
    for line_start in sorted(found):
        line_end = buf.find(b"\n", line_start, end)
        yield buf[line_start : line_end if line_end >= 0 else end]


def _time(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)


def search(pattern: Pattern, data: bytes, checksum: str | None) -> list[mf.Entry] | None:
    """The entries of a manifest frame that match, in order; None when the manifest does not
    match `checksum`. Touches nothing shared: manifests may be searched in several threads."""
    hasher = blake3.blake3()
    matches = pattern.matches
    found = []
    for line in candidate_lines(data, pattern.literal, hasher):
        entry = mf.decode_entry(line)
        if matches(entry.path):
            found.append(entry)
    if checksum and "blake3:" + hasher.hexdigest() != checksum:
        return None
    return found


@dataclass(slots=True)
class _Path:
    hit: FindHit
    last_seen: int = -1  # the index (newest first) of the last backup that held it
    key: tuple = ()  # what its latest version's run is compared by


@dataclass
class Finder:
    """Searches backups given newest first (`add`), one manifest at a time."""

    project_id: str
    pattern: Pattern
    limit: int
    warn: Callable[[str], None] = lambda _m: None
    searched: int = 0
    truncated: bool = False
    _paths: dict[bytes, _Path] = field(default_factory=dict)

    def add(self, backup_id: str, created_at: datetime, data: bytes, checksum: str | None) -> None:
        """One backup's manifest frame; its matches are taken only if it matches `checksum`."""
        found = search(self.pattern, data, checksum)
        if found is None:
            self.warn(f"backup {backup_id}: manifest does not match its checksum: not searched")
            return
        self.add_found(backup_id, created_at, found)

    def add_found(self, backup_id: str, created_at: datetime, found: list[mf.Entry]) -> None:
        """The matching entries of the next backup (newest first), as `search` found them."""
        index = self.searched
        self.searched += 1
        for e in found:
            self._note(index, backup_id, created_at, e)

    def _note(self, index: int, backup_id: str, created_at: datetime, e: mf.Entry) -> None:
        key = (e.kind, e.size, e.mtime_ns, e.hash, e.target)
        known = self._paths.get(e.path)
        if known is None:
            if len(self._paths) >= self.limit:
                self.truncated = True
                return
            known = self._paths[e.path] = _Path(
                FindHit(project_id=self.project_id, path=text_of(e.path), path_b64=b64_of(e.path))
            )
        versions = known.hit.versions
        if known.last_seen == index - 1 and known.key == key and versions:
            run = versions[-1]
            run.oldest, run.oldest_at = backup_id, created_at
            run.backups += 1
        else:
            versions.append(
                FindVersion(
                    newest=backup_id,
                    oldest=backup_id,
                    newest_at=created_at,
                    oldest_at=created_at,
                    kind=mf.KIND_NAMES[e.kind],  # type: ignore[arg-type]
                    size=e.size if e.kind != mf.DIR else 0,
                    mtime=_time(e.mtime_ns),
                    target=text_of(e.target) if e.target is not None else None,
                    target_b64=b64_of(e.target) if e.target is not None else None,
                )
            )
        known.last_seen, known.key = index, key

    def hits(self) -> list[FindHit]:
        """The matching paths in the manifest's order."""
        return [self._paths[p].hit for p in sorted(self._paths, key=mf.order_key)]

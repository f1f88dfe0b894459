"""What comparing and searching backups returns (issue 17), the same to every face: a diff of
two backups or of a backup and the live data directory, the backups holding a path (`find`),
and a backup's entries listed (`ls`).

A name that is not UTF-8 is exact here: `path` shows it as text (\\xNN for each byte that is
not UTF-8, so that every JSON encoder takes it) and `path_b64` holds its bytes, base64; `raw`
and `exact` give them back to a face. Each kind of change has one word, the
same in every face (`CHANGE_WORDS`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from core.compare_names import raw_of

Kind = Literal["file", "dir", "symlink"]

#: What may change between two entries of one path, in the order they are shown.
CHANGE_WORDS = ("type", "content", "size", "mode", "owner", "mtime", "target", "xattrs")

#: How the content of a file present on both sides was compared: "hash" (the whole-content
#: hashes, proven either way), "size" (the sizes differ: proven changed), "metadata" (the same
#: size and mtime, or a live file not hashed: not proven; `--verify-content` hashes it).
Compared = Literal["hash", "size", "metadata"]


class _Named(BaseModel):
    path: str
    path_b64: str | None = None

    @property
    def raw(self) -> bytes:
        """The exact bytes of the name (what the engine's inputs take, as os.fsdecode text)."""
        return raw_of(self.path, self.path_b64)

    @property
    def exact(self) -> str:
        """The name as the engine's inputs take it (surrogate escapes for bytes not UTF-8)."""
        return os.fsdecode(self.raw)


class _Linked(BaseModel):
    """A symlink's target, exact as a name is (`target_b64` when it is not UTF-8)."""

    target: str | None = None
    target_b64: str | None = None

    @property
    def exact_target(self) -> str | None:
        """The target as the engine's inputs take it (surrogate escapes), or None."""
        return None if self.target is None else os.fsdecode(raw_of(self.target, self.target_b64))


class DiffSide(_Linked):
    """One side of a changed entry: what it was (old) or is (new)."""

    kind: Kind
    size: int = 0
    mode: int = 0
    mtime: datetime | None = None
    uid: int = 0
    gid: int = 0


class DiffChange(_Named):
    """One path that differs: added, removed or changed (with what changed)."""

    status: Literal["added", "removed", "changed"]
    #: For a changed entry, the words of CHANGE_WORDS that apply ("content" only when proven).
    changes: list[str] = Field(default_factory=list)
    #: For a file on both sides: how its content was compared (see `Compared`).
    compared: Compared | None = None
    #: A file on both sides whose content was not proven either way (same size, another mtime).
    content_unknown: bool = False
    old: DiffSide | None = None
    new: DiffSide | None = None

    @property
    def kind(self) -> Kind:
        side = self.new or self.old
        assert side is not None
        return side.kind


class DiffTotals(BaseModel):
    """Exact counts over every entry compared (however many changes are listed)."""

    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    files_added: int = 0
    files_removed: int = 0
    files_changed: int = 0  # files whose content changed (proven)
    bytes_added: int = 0  # sizes of the files added, and of those removed
    bytes_removed: int = 0
    content_unknown: int = 0  # files whose content was not compared (see DiffChange)
    hashed: int = 0  # live files hashed (--verify-content)


class DiffResult(BaseModel):
    """`diff PROJECT A B` (B may be LIVE): the changes from A to B, newest side B."""

    project_id: str
    a: str
    b: str
    path: str = ""
    verify_content: bool = False
    changes: list[DiffChange] = Field(default_factory=list)
    totals: DiffTotals = Field(default_factory=DiffTotals)
    #: More changes than `limit` were found: only the first are listed (totals stay exact).
    truncated: bool = False
    warnings: list[str] = Field(default_factory=list)


@dataclass
class DiffRun:
    """A diff being computed: `changes` streams them; `totals` is exact once it is exhausted
    (the CLI prints changes as they come rather than holding them)."""

    a: str
    b: str
    changes: Iterator[DiffChange]
    totals: DiffTotals
    warnings: list[str] = field(default_factory=list)


class FindVersion(_Linked):
    """One version of a path: the run of consecutive backups (newest first) that hold it
    unchanged; `newest` and `oldest` are the ends of the run (equal for one backup)."""

    newest: str
    oldest: str
    newest_at: datetime
    oldest_at: datetime
    backups: int = 1
    kind: Kind
    size: int = 0
    mtime: datetime | None = None


class FindHit(_Named):
    """A path that matched, with its versions, newest first."""

    project_id: str
    versions: list[FindVersion] = Field(default_factory=list)


class FindResult(BaseModel):
    """`find PATTERN`: every matching path of every backup searched."""

    pattern: str
    projects: list[str] = Field(default_factory=list)
    backups_searched: int = 0
    hits: list[FindHit] = Field(default_factory=list)
    #: More paths than `limit` matched: only the first are listed.
    truncated: bool = False
    warnings: list[str] = Field(default_factory=list)


class LsEntry(_Named, _Linked):
    """One entry of a backup listed by `ls` (`size` of a directory: the files below it)."""

    name: str
    kind: Kind
    size: int = 0
    mode: int = 0
    mtime: datetime | None = None
    uid: int = 0
    gid: int = 0
    files: int = 0  # a directory: the files below it, at any depth


class LsResult(BaseModel):
    project_id: str
    backup_id: str
    path: str = ""
    recursive: bool = False
    entries: list[LsEntry] = Field(default_factory=list)
    truncated: bool = False


# --- how a change reads, in every face -----------------------------------------------------

#: The one-letter mark of a change (restic's): added, removed, modified, type changed.
MARKS = {"added": "+", "removed": "-", "changed": "M"}


def mark(change: DiffChange) -> str:
    return "T" if "type" in change.changes else MARKS[change.status]


def summary(change: DiffChange) -> str:
    """What changed, for a person: 'content, size 5 B → 11 B, mtime', 'file → dir',
    'mtime, content not compared (same size)', 'target a → b'."""
    from core.display import name, size

    old, new = change.old, change.new
    if old is None or new is None:
        return ""
    if "type" in change.changes:
        return f"{old.kind} → {new.kind}"
    parts = []
    for word in change.changes:
        if word == "size":
            parts.append(f"size {size(old.size)} → {size(new.size)}")
        elif word == "mode":
            parts.append(f"mode {old.mode:04o} → {new.mode:04o}")
        elif word == "owner":
            parts.append(f"owner {old.uid}:{old.gid} → {new.uid}:{new.gid}")
        elif word == "target":
            parts.append(f"target {name(old.exact_target or '')} → {name(new.exact_target or '')}")
        else:
            parts.append(word)
    if change.content_unknown:
        parts.append("content not compared (same size)")
    return ", ".join(parts)

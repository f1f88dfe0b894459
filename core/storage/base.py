"""The storage seam: what the engine needs from wherever a repository's objects live.

The engine names objects by relative, '/'-separated names (``packs/ab/ab12...``,
``index/...``, ``backup_{id}/metadata.json``). Everything it knows about a store is this
protocol, its errors and its capability flags; only ``core.storage`` knows a concrete store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.errors import NexusError

#: Part of the name of every object on its way in (a local temp file, a spooled pack):
#: no listing shows it, and only recovery under an exclusive lock removes it.
#: Bytes read from a store: `bytes`, or a view into a larger read (`read_ranges`).
Buffer = bytes | memoryview

TMP_MARK = ".tmp-"


class StoreError(OSError, NexusError):
    """A store's failure: one clear line, no traceback. It is an OSError as well, so that
    the engine's one handling of an unreadable object (Damaged, "cannot be read") covers
    every store, local or not."""


class ObjectNotFound(StoreError):
    """The object does not exist (or vanished while it was read)."""


class NotAnObject(StoreError):
    """What lies at an object's name is no object: a directory, a fifo, a device (read, a
    fifo would block the reader for ever). Never read."""


class ObjectExists(StoreError):
    """`put_new` lost: an object of that name already exists (another writer won)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused our credentials."""


def check_range(name: str, offset: int, length: int) -> None:
    """A range that starts before the object (a negative offset, as a size read from a
    damaged object gives) is as short as one past its end: EOFError, on every store."""
    if offset < 0 or length < 0:
        raise EOFError(f"{name}: no range at {offset} of {length} bytes")


def spooled_file_gone(path: object) -> StoreError:
    """`put_file` of a spooled file another process removed (it judged this writer's lock
    stale and cleaned up after it): the write fails with one line."""
    return StoreError(f"{path}: the file to store was removed by another process")


class UnsafeSharing(NexusError):
    """The store's server does not enforce create-if-absent: writers on several hosts could
    overwrite each other's objects, so no repository is kept there."""


def require_conditional_create(store: ObjectStore) -> None:
    """Refuse a store whose server was found not to enforce `put_new` (its probe, run by
    `prepare`, says so in `capabilities.conditional_create`)."""
    caps = store.capabilities
    if not caps.conditional_create:
        raise UnsafeSharing(
            f"{store.url}: {caps.server or 'the server'} does not enforce conditional writes"
            " (If-None-Match: *), so writers on several hosts could overwrite each other;"
            " nexus-backup will not keep a repository there"
        )


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    #: seconds since the epoch, by the store's clock (the server's, for a remote store)
    mtime: float
    #: changes whenever the object is written again (an inode and mtime, an S3 ETag)
    etag: str = ""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a store can do, asked instead of its type."""

    #: objects are files under this local directory (a restore must never write into it,
    #: and its packs may be read through kept-open descriptors); None for remote stores
    local_root: Path | None = None
    #: `put_new` is enforced by the store itself, so writers on several hosts cannot
    #: overwrite each other's objects
    conditional_create: bool = True
    #: ranges of one object closer than this are read with one request by `read_ranges`
    coalesce_gap: int = 0
    #: who serves the objects, for error lines ("" for a local store; an S3 endpoint)
    server: str = ""
    #: objects' mtimes are stamped by the server's clock, not this host's: ages of what
    #: other hosts wrote (their locks) are told against that clock (`core.repo.locks`)
    server_clock: bool = False


class RangeReader(Protocol):
    """Reads many ranges for one operation (a restore, a verify), keeping what is cheap to
    keep (open files) until it is closed."""

    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[Buffer]: ...

    def close(self) -> None: ...


class ObjectStore(Protocol):
    """The whole of what the engine needs from storage.

    Writes are atomic: an object is absent or complete, never half-written, and durable
    once the call returns. Reads of an absent object raise ObjectNotFound, never an OSError
    of the store's own making; a short range raises EOFError."""

    capabilities: Capabilities

    @property
    def url(self) -> str:
        """Where the objects live, for people (a path, ``s3://bucket/prefix``, ``memory:``)."""
        ...

    def sub(self, prefix: str) -> ObjectStore:
        """The same store seen from under a directory-like prefix (a project's objects)."""
        ...

    def prepare(self) -> None:
        """Make a new store usable for writing (create its directory, owner-only). Writes
        into a store never prepared may fail: a local repository whose disk is not mounted
        must not be recreated on the disk below it."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Create or replace `name`."""
        ...

    def put_new(self, name: str, data: bytes) -> None:
        """Create `name` only if it does not exist; raise ObjectExists otherwise."""
        ...

    def put_if_unchanged(self, name: str, data: bytes, etag: str | None) -> None:
        """Replace `name` only if its etag is still `etag` (None: only if it is absent), a
        compare-and-swap for the few objects that are rewritten (a project's settings);
        ObjectExists when another writer changed it meanwhile (read it again, retry)."""
        ...

    def put_file(self, name: str, path: Path) -> None:
        """Store a complete, fsynced local file under `name`, consuming it (a rename for a
        local store, an upload for a remote one)."""
        ...

    def spool(self) -> Path:
        """A local directory for files on their way into `put_file` (on the same
        filesystem as the store when it is local, so that `put_file` is a rename)."""
        ...

    def get(self, name: str) -> bytes: ...

    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[Buffer]:
        """Several `(offset, length)` ranges of one object, in the order asked, in as few
        requests as the store allows (views of what one request read, not copies)."""
        ...

    def reader(self) -> RangeReader:
        """A reader for one operation that reads many ranges; close it when done."""
        ...

    def exists(self, name: str) -> bool: ...

    def stat(self, name: str) -> ObjectInfo: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every complete object whose name starts with `prefix`, sorted by name."""
        ...

    def children(self, prefix: str = "") -> list[str]:
        """Names directly below a directory-like prefix (a delimiter listing), sorted."""
        ...

    def delete(self, name: str) -> None:
        """Remove an object; an absent one is fine."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove everything under a directory-like prefix, partial writes included."""
        ...

    def remove_partials(self) -> int:
        """Remove what writes killed mid-way left behind (temp files, unfinished uploads);
        only under an exclusive lock. Returns how many were removed."""
        ...

    def read_only_reason(self) -> str | None:
        """Why nothing can be written here (a read-only mount, no permission), None when
        writes may work (a remote store says None and lets the writes tell)."""
        ...

    def free_bytes(self) -> int | None:
        """Space left for new objects, None where the store cannot say."""
        ...


def check_name(name: str) -> str:
    """Refuse a name that could leave the store (absolute, empty part, `.` or `..`)."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object name {name!r}")
    return name


def join(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix else name


class SimpleReader:
    """A RangeReader for stores with nothing to keep open between reads."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self._store.get_range(name, offset, length)

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[Buffer]:
        return self._store.read_ranges(name, ranges)

    def close(self) -> None:
        pass

    def __enter__(self) -> SimpleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def coalesce(ranges: Sequence[tuple[int, int]], gap: int) -> list[tuple[int, int, list[int]]]:
    """Group ranges into spans to read at once: `(start, end, [indexes of ranges in it])`,
    merging ranges closer than `gap` bytes (overlaps included)."""
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    spans: list[tuple[int, int, list[int]]] = []
    for i in order:
        off, length = ranges[i]
        if spans and off - spans[-1][1] <= gap:
            start, end, members = spans[-1]
            spans[-1] = (start, max(end, off + length), [*members, i])
        else:
            spans.append((off, off + length, [i]))
    return spans


def split_spans(
    ranges: Sequence[tuple[int, int]], spans: list[tuple[int, int, list[int]]], blobs: list[Buffer]
) -> list[Buffer]:
    """Cut the bytes of each span read back into the ranges asked, in their order: views
    into the span, so a 4 MiB read is not held twice."""
    out: list[Buffer] = [b""] * len(ranges)
    for (start, end, members), blob in zip(spans, blobs, strict=True):
        if len(blob) != end - start:
            raise EOFError(f"short read at {start} ({len(blob)} of {end - start} bytes)")
        view = memoryview(blob)
        for i in members:
            off, length = ranges[i]
            out[i] = view[off - start : off - start + length]
    return out

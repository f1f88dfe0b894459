"""A backup's manifest: the complete tree it holds, one JSON line per entry.

Each manifest stands alone (restorable without its parent): regular files with their
content hash and chunk list, directories (empty ones too), symlinks (the target, never
followed), with mode, times and owner. Names are kept exactly as on disk: bytes that are not
UTF-8 are stored base64-encoded. Entries are sorted by path components, the order the walker
produces, so an incremental backup merges the parent's manifest as a stream.

The backup's `checksum` is BLAKE3 over the uncompressed manifest; since every file's content
hash and chunk list is in it, it covers the whole backup.

A manifest is stored as one zstd frame, compressed and decompressed as a stream by the codec
(`codec.FrameWriter`, `codec.frame_reader`); the functions here take that frame as
`Repository.read_manifest` returns it, and `ManifestWriter.finish` gives one for
`Repository.write_manifest`, which seals it.
"""

from __future__ import annotations

import base64
import io
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import blake3
import orjson

from core.repo.codec import DamagedManifest, FrameWriter, frame_reader

FORMAT = 1
FILE, DIR, SYMLINK = "f", "d", "l"
KIND_NAMES = {FILE: "file", DIR: "dir", SYMLINK: "symlink"}


#: A manifest that cannot be read as written (its frame, by the codec, or its lines, here).
ManifestError = DamagedManifest


@dataclass(slots=True)
class Entry:
    path: bytes  # relative to the backed-up directory, b"/"-separated
    kind: str
    mode: int
    mtime_ns: int
    size: int = 0
    uid: int = 0
    gid: int = 0
    ino: int = 0
    ctime_ns: int = 0
    hash: str | None = None  # BLAKE3 hex of the whole content (files)
    chunks: list[tuple[str, int]] = field(default_factory=list)  # (BLAKE3 hex, raw size)
    target: bytes | None = None  # symlink target
    #: A file with other hard links: the path of the first entry (in manifest order) of the
    #: same inode. Advisory: the entry still holds its whole content, so it restores alone.
    link: bytes | None = None
    #: Extended attributes (POSIX ACLs are `system.posix_acl_access` / `_default`): name to value.
    xattrs: dict[bytes, bytes] | None = None
    raw: bytes | None = field(default=None, repr=False, compare=False)  # the line as read

    @property
    def key(self) -> tuple[bytes, ...]:
        return tuple(self.path.split(b"/"))

    @property
    def display_path(self) -> str:
        return self.path.decode("utf-8", "surrogateescape")


# Accessors of an encoded line's fields (`Records` yields each line's JSON object as decoded),
# by the names of Entry's attributes: the backup's scan compares a few fields of every line of
# the parent without decoding it into an Entry, and the short keys stay spelled in this module.

#: The key under which `encode_entry` writes each Entry attribute the scan reads.
FIELD_KEYS = {
    "kind": "k",
    "mode": "m",
    "mtime_ns": "t",
    "size": "s",
    "uid": "u",
    "gid": "g",
    "ino": "i",
    "ctime_ns": "c",
    "hash": "h",
    "chunks": "ch",
}


def fields_reader(*names: str) -> Callable[[dict], tuple]:
    """A reader of the named attributes from a line's fields, as one tuple in that order (one
    C call: the scan runs it on every line). A field the line lacks raises KeyError."""
    getter = operator.itemgetter(*(FIELD_KEYS[name] for name in names))
    if len(names) == 1:  # itemgetter of one key returns the value, not a tuple
        return lambda fields: (getter(fields),)
    return getter


def kind_of(fields: dict) -> object:
    """The line's Entry.kind (unchecked; None if absent)."""
    return fields.get("k")


def hash_of(fields: dict) -> object:
    """The line's Entry.hash (unchecked; None if absent)."""
    return fields.get("h")


def chunk_digests(fields: dict) -> list[bytes] | None:
    """The raw digests of the line's Entry.chunks, in order (none for a line without chunks);
    None when they do not read as (hex digest, size) pairs."""
    try:
        chunks = fields["ch"]
        if len(chunks) == 1:  # most files: without a comprehension's frame
            ((digest, _n),) = chunks
            return [bytes.fromhex(digest)]
        return [bytes.fromhex(h) for h, _n in chunks]
    except KeyError:
        return []
    except (TypeError, ValueError):
        return None


def sort_key(path: bytes) -> tuple[bytes, ...]:
    return tuple(path.split(b"/"))


# Names never hold NUL, so with b"/" mapped to the lowest byte, comparing the translated
# paths as bytes orders them as their tuples of components do (the manifest's order), at the
# cost of one C call instead of a split and a tuple.
_ORDER = bytes.maketrans(b"/\0", b"\0/")


def order_key(path: bytes) -> bytes:
    """A path's place in the manifest's order, as comparable bytes (see `sort_key`)."""
    return path.translate(_ORDER)


def _put_bytes(obj: dict, key: str, value: bytes) -> None:
    try:
        obj[key] = value.decode("utf-8")
    except UnicodeDecodeError:
        obj[key + "b"] = base64.b64encode(value).decode("ascii")


def _get_bytes(obj: dict, key: str) -> bytes | None:
    if key in obj:
        return obj[key].encode("utf-8")
    if key + "b" in obj:
        return base64.b64decode(obj[key + "b"])
    return None


def check_path(path: bytes) -> bytes:
    """Refuse any path that could escape the restore directory (a tampered manifest)."""
    wrapped = b"/" + path + b"/"
    if (
        not path
        or path[0] == 0x2F
        or b"\0" in path
        or b"//" in wrapped
        or b"/./" in wrapped
        or b"/../" in wrapped
    ):
        raise ManifestError(f"unsafe path in manifest: {path!r}")
    return path


def encode_entry(e: Entry) -> bytes:
    try:
        obj: dict = {"p": e.path.decode("utf-8")}
    except UnicodeDecodeError:
        obj = {"pb": base64.b64encode(e.path).decode("ascii")}
    obj.update(k=e.kind, m=e.mode, t=e.mtime_ns, u=e.uid, g=e.gid)
    if e.kind == FILE:
        # (hash, size) pairs: orjson writes a tuple as the array a reader expects
        obj.update(s=e.size, h=e.hash, ch=e.chunks, i=e.ino, c=e.ctime_ns)
        if e.link is not None:
            _put_bytes(obj, "hl", e.link)
    elif e.kind == SYMLINK:
        _put_bytes(obj, "l", e.target or b"")
        obj.update(s=e.size, i=e.ino, c=e.ctime_ns)
    else:  # a directory's ctime: what tells the next backup its attributes or ACLs changed
        obj["c"] = e.ctime_ns
    if e.xattrs:
        obj["x"] = {
            base64.b64encode(k).decode("ascii"): base64.b64encode(v).decode("ascii")
            for k, v in sorted(e.xattrs.items())
        }
    return orjson.dumps(obj) + b"\n"


def _xattrs(value: object) -> dict[bytes, bytes] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ManifestError("bad extended attributes in manifest")
    return {base64.b64decode(k): base64.b64decode(v) for k, v in value.items()}


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _digest(value: object) -> str:
    """A BLAKE3 hex digest as the writer records it; anything else is damage."""
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ManifestError(f"bad content hash in manifest: {str(value)[:70]!r}")
    return value


def decode_entry(line: bytes) -> Entry:
    try:
        obj = orjson.loads(line)
        path = _get_bytes(obj, "p")
        if path is None:
            raise ManifestError("entry without a path")
        kind = obj["k"]
        if kind not in KIND_NAMES:
            raise ManifestError(f"unknown entry kind {kind!r}")
        return Entry(
            path=check_path(path),
            kind=kind,
            mode=int(obj["m"]),
            mtime_ns=int(obj["t"]),
            size=int(obj.get("s", 0)),
            uid=int(obj.get("u", 0)),
            gid=int(obj.get("g", 0)),
            ino=int(obj.get("i", 0)),
            ctime_ns=int(obj.get("c", 0)),
            hash=_digest(obj["h"]) if kind == FILE else obj.get("h"),
            chunks=[(_digest(h), int(n)) for h, n in obj.get("ch", [])],
            target=_get_bytes(obj, "l"),
            link=check_path(link) if (link := _get_bytes(obj, "hl")) is not None else None,
            xattrs=_xattrs(obj.get("x")),
            raw=line if line.endswith(b"\n") else line + b"\n",
        )
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError(f"bad manifest entry: {exc}") from exc


class ManifestWriter:
    """Streams entries into a manifest's compressed frame while hashing the plain bytes."""

    BLOCK = 256 * 1024

    def __init__(self, header: dict) -> None:
        self._frame = FrameWriter()
        self._hash = blake3.blake3()
        self._last: bytes | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._write(orjson.dumps({"nexus_manifest": FORMAT, **header}) + b"\n")

    def _write(self, line: bytes) -> None:
        # Lines are hashed and compressed in blocks: per line, the calls cost more than the work.
        self._pending.append(line)
        self._pending_size += len(line)
        if self._pending_size >= self.BLOCK:
            self._flush()

    def _flush(self) -> None:
        block = b"".join(self._pending)
        self._pending, self._pending_size = [], 0
        self._hash.update(block)
        self._frame.write(block)

    def add(self, entry: Entry) -> None:
        self.add_line(entry.path, encode_entry(entry))

    def add_line(self, path: bytes, line: bytes) -> None:
        """The entry of `path` already encoded (an unchanged entry of the parent, reused
        verbatim); entries must come in the manifest's order, each path once."""
        key = path.translate(_ORDER)
        if self._last is not None and key <= self._last:
            raise ManifestError(f"manifest entries out of order at {path!r}")
        self._last = key
        self._write(line)

    def add_lines(self, first: bytes, last: bytes, pieces: Iterable[bytes]) -> None:
        """Consecutive entries reused verbatim (a span of the parent's manifest, see `Spans`),
        `first` and `last` the paths of its first and last entry; the entries within the
        span were checked to be in order when the parent was merged."""
        key = first.translate(_ORDER)
        if self._last is not None and key <= self._last:
            raise ManifestError(f"manifest entries out of order at {first!r}")
        last_key = last.translate(_ORDER)
        if last_key < key:
            raise ManifestError(f"manifest entries out of order at {last!r}")
        self._last = last_key
        piece = b"\n"
        for piece in pieces:
            self._write(piece)
        if not piece.endswith(b"\n"):
            self._write(b"\n")  # the parent's last line, written without its newline

    def finish(self) -> tuple[bytes, str]:
        """The manifest's frame (for `Repository.write_manifest`) and its checksum
        `blake3:<hex>`."""
        self._flush()
        return self._frame.finish(), "blake3:" + self._hash.hexdigest()


def _lines(data: bytes) -> Iterator[bytes]:
    yield from io.BufferedReader(frame_reader(data), buffer_size=1 << 20)


def read_header(data: bytes) -> dict:
    for line in _lines(data):
        try:
            header = orjson.loads(line)
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise ManifestError("manifest header is not JSON") from exc
        if not isinstance(header, dict) or header.get("nexus_manifest") != FORMAT:
            raise ManifestError("not a nexus-backup manifest (or a newer format)")
        return header
    raise ManifestError("empty manifest")


def iter_entries(data: bytes) -> Iterator[Entry]:
    """The manifest's entries, in order (the header skipped)."""
    lines = _lines(data)
    next(lines, None)
    for line in lines:
        if line.strip():
            yield decode_entry(line)


def _blocks(data: bytes, size: int = 1 << 20) -> Iterator[bytes]:
    """The uncompressed manifest in blocks of about `size` bytes (lines cut anywhere)."""
    reader = frame_reader(data)
    while block := reader.read(size):
        yield block


def checksum(data: bytes) -> str:
    """`blake3:<hex>` over the uncompressed manifest (header and every line)."""
    h = blake3.blake3()
    for block in _blocks(data):
        h.update(block)
    return "blake3:" + h.hexdigest()


class _Hashing(io.RawIOBase):
    """A raw reader that hashes every byte read through it."""

    def __init__(self, reader: object, hasher: blake3.blake3) -> None:
        self._reader = reader
        self._hash = hasher

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def,override]
        n = self._reader.readinto(b)  # type: ignore[attr-defined]
        if n:
            self._hash.update(memoryview(b)[:n])
        return n


class Records:
    """The entries of a manifest as (path, fields, line, start, end) without building
    Entries: for the backup's merge with its parent, which compares a few fields of every
    line and reuses most lines verbatim. `fields` is the line's JSON object as decoded,
    unchecked beyond having a path; `line` ends with a newline; `start` and `end` are its
    offsets in the uncompressed manifest (as read: without the newline `line` may have been
    given), for `Spans` to copy runs of unchanged lines without keeping them meanwhile.

    The lines are hashed as they stream by: once iterated to the end, `checksum` is the
    manifest's checksum, for the caller to compare with the one in the backup's metadata
    (the fields of a line are only as trustworthy as that comparison). A line that is not a
    JSON object with a path raises ManifestError.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._hash = blake3.blake3()
        self.checksum: str | None = None  # set once the last line has been read

    def __iter__(self) -> Iterator[tuple[bytes, dict, bytes, int, int]]:
        loads = orjson.loads
        reader = frame_reader(self.data)
        lines = io.BufferedReader(_Hashing(reader, self._hash), buffer_size=1 << 20)
        end = len(next(lines, b""))  # the header
        for line in lines:
            start = end
            end += len(line)
            try:
                obj = loads(line)
                path = obj["p"].encode("utf-8") if "p" in obj else _get_bytes(obj, "p")
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                if not line.strip():
                    continue
                raise ManifestError(f"bad manifest entry: {exc}") from exc
            if path is None:
                if not isinstance(obj, dict):
                    raise ManifestError("bad manifest entry: not an object")
                raise ManifestError("entry without a path")
            yield path, obj, line if line.endswith(b"\n") else line + b"\n", start, end
        self.checksum = "blake3:" + self._hash.hexdigest()


class Spans:
    """Byte ranges of a manifest's uncompressed stream, taken in increasing order while it is
    decompressed once more, a block at a time: the backup's read pass copies runs of the
    parent's unchanged lines (offsets from `Records`) this way, rather than holding every
    line from the scan until it is written. Every byte streamed by is hashed; `finish`
    returns the manifest's checksum, for the caller to compare with the one `Records`
    computed over the same lines."""

    BLOCK = 1 << 20

    def __init__(self, data: bytes) -> None:
        self._reader = frame_reader(data)
        self._hash = blake3.blake3()
        self._buf = b""
        self._at = 0  # offset of self._buf[0]
        self._taken = 0  # end of the last range taken

    def _more(self) -> bool:
        block = self._reader.read(self.BLOCK)
        if not block:
            return False
        self._hash.update(block)
        self._at += len(self._buf)
        self._buf = block
        return True

    def take(self, start: int, end: int) -> Iterator[bytes]:
        """The bytes from `start` to `end`, in pieces of at most a block, streamed; ranges
        must be taken in order, each to its end before the next."""
        if start < self._taken or end < start:
            raise ManifestError("manifest spans out of order")
        self._taken = end
        while start < end:
            buf_end = self._at + len(self._buf)
            if start >= buf_end:
                if not self._more():
                    raise ManifestError("manifest shorter than when it was read")
                continue
            lo, hi = start - self._at, min(end, buf_end) - self._at
            yield self._buf[lo:hi] if lo or hi < len(self._buf) else self._buf
            start += hi - lo

    def finish(self) -> str:
        """Reads the rest; the checksum `blake3:<hex>` of the whole uncompressed manifest."""
        while self._more():
            pass
        self._buf = b""
        return "blake3:" + self._hash.hexdigest()

"""The index: which pack holds each chunk, at which offset.

Each backup run writes one index file for the chunks it stored (after their packs are
durable); space reclaim rewrites them into one. Index files are immutable and named by
their hash, so concurrent writers never collide. The in-memory index is the union of all
files; a chunk listed twice (two runs stored it at once) is fine, either copy serves.
"""

from __future__ import annotations

import struct
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator

import blake3

from .packs import BlobLocation, read_pack_entries
from .storage import ObjectStore

MAGIC = b"NXIDX001"
PACK_HEAD = struct.Struct("<32sI")
BLOB = struct.Struct("<32sIIIB")
PREFIX = "index/"


class IndexFormatError(ValueError):
    pass


def encode_index(locations: Iterable[tuple[bytes, BlobLocation]]) -> bytes:
    by_pack: dict[str, list[tuple[bytes, BlobLocation]]] = defaultdict(list)
    for digest, loc in locations:
        by_pack[loc.pack_id].append((digest, loc))
    parts = [MAGIC, struct.pack("<I", len(by_pack))]
    for pack_id, blobs in sorted(by_pack.items()):
        parts.append(PACK_HEAD.pack(bytes.fromhex(pack_id), len(blobs)))
        parts.extend(
            BLOB.pack(d, loc.offset, loc.length, loc.raw_length, loc.flags) for d, loc in blobs
        )
    body = b"".join(parts)
    return body + blake3.blake3(body).digest()


def decode_index(data: bytes) -> Iterator[tuple[bytes, BlobLocation]]:
    if len(data) < len(MAGIC) + 4 + 32 or not data.startswith(MAGIC):
        raise IndexFormatError("not an index file")
    body, digest = data[:-32], data[-32:]
    if blake3.blake3(body).digest() != digest:
        raise IndexFormatError("index checksum mismatch")
    (packs,) = struct.unpack_from("<I", body, len(MAGIC))
    pos = len(MAGIC) + 4
    for _ in range(packs):
        raw_id, count = PACK_HEAD.unpack_from(body, pos)
        pos += PACK_HEAD.size
        pack_id = raw_id.hex()
        for _ in range(count):
            d, offset, length, raw, flags = BLOB.unpack_from(body, pos)
            pos += BLOB.size
            yield d, BlobLocation(pack_id, offset, length, raw, flags)
    if pos != len(body):
        raise IndexFormatError("index has trailing bytes")


def write_index(store: ObjectStore, locations: list[tuple[bytes, BlobLocation]]) -> str | None:
    """Write one immutable index file; returns its name (None when there is nothing)."""
    if not locations:
        return None
    data = encode_index(locations)
    name = PREFIX + blake3.blake3(data).hexdigest()
    store.put(name, data)
    return name


class Index:
    """The union of a project's index files, kept in memory and refreshed incrementally."""

    def __init__(self) -> None:
        self.entries: dict[bytes, BlobLocation] = {}
        self.files: set[str] = set()
        self.damaged: dict[str, str] = {}
        self._lock = threading.Lock()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, digest: bytes) -> BlobLocation | None:
        return self.entries.get(digest)

    def add(self, digest: bytes, loc: BlobLocation) -> None:
        self.entries[digest] = loc

    def refresh(self, store: ObjectStore) -> None:
        """Load index files written since the last refresh; reload all if some vanished."""
        with self._lock:
            names = {o.name for o in store.list(PREFIX)}
            if not self.files <= names:
                self.entries.clear()
                self.files.clear()
                self.damaged.clear()
            for name in sorted(names - self.files - set(self.damaged)):
                try:
                    for digest, loc in decode_index(store.get(name)):
                        self.entries.setdefault(digest, loc)
                    self.files.add(name)
                except (IndexFormatError, struct.error, OSError) as exc:
                    self.damaged[name] = str(exc)

    def packs(self) -> dict[str, list[tuple[bytes, BlobLocation]]]:
        by_pack: dict[str, list[tuple[bytes, BlobLocation]]] = defaultdict(list)
        for digest, loc in self.entries.items():
            by_pack[loc.pack_id].append((digest, loc))
        return by_pack


def rebuild_from_packs(store: ObjectStore) -> tuple[list[tuple[bytes, BlobLocation]], list[str]]:
    """Read every pack's own header: the index as the packs say it is, and damaged packs."""
    locations: list[tuple[bytes, BlobLocation]] = []
    damaged: list[str] = []
    for obj in store.list("packs/"):
        pack_id = obj.name.rsplit("/", 1)[-1]
        try:
            for digest, offset, length, raw, flags in read_pack_entries(store, obj.name):
                locations.append((digest, BlobLocation(pack_id, offset, length, raw, flags)))
        except (ValueError, struct.error, OSError, EOFError):
            damaged.append(obj.name)
    return locations, damaged

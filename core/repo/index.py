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
from collections.abc import Iterable, Iterator, KeysView, Mapping

import blake3

from core.repo.codec import Codec, DamagedObject, Kind
from core.repo.packs import BlobLocation, pack_objects, read_pack_entries
from core.storage import ObjectStore

MAGIC = b"NXIDX001"
PACK_HEAD = struct.Struct("<32sI")
BLOB = struct.Struct("<32sIIIB")
PREFIX = "index/"


class IndexFormatError(DamagedObject):
    """An index file whose magic, digest or length does not check (a Damaged, a ValueError)."""


def encode_index(locations: Iterable[tuple[bytes, BlobLocation]]) -> bytes:
    by_pack: dict[str, list[tuple[bytes, BlobLocation]]] = defaultdict(list)
    for digest, loc in locations:
        by_pack[loc.pack_id].append((digest, loc))
    return encode_index_records(
        (pack_id, pack_records(blobs)) for pack_id, blobs in by_pack.items()
    )


def pack_records(locations: Iterable[tuple[bytes, BlobLocation]]) -> bytes:
    """One pack's blob records as an index file holds them (§1.3 of docs/design.md), in the
    order given: 45 bytes a chunk, for a writer that keeps them until its index is written."""
    pack = BLOB.pack
    return b"".join(
        pack(d, loc.offset, loc.length, loc.raw_length, loc.flags) for d, loc in locations
    )


def record_digests(records: bytes) -> Iterator[bytes]:
    """The chunks' digests of a pack's blob records (`pack_records`)."""
    size = BLOB.size
    return (records[p : p + 32] for p in range(0, len(records), size))


def encode_index_records(packs: Iterable[tuple[str, bytes]]) -> bytes:
    """An index file of each pack's id and blob records (`pack_records`; a pack given once):
    the same bytes as `encode_index` of their locations."""
    parts = [MAGIC, b""]
    count = 0
    for pack_id, records in sorted(packs):
        if len(records) % BLOB.size:
            raise ValueError("blob records of a pack must be whole")
        parts.append(PACK_HEAD.pack(bytes.fromhex(pack_id), len(records) // BLOB.size))
        parts.append(records)
        count += 1
    parts[1] = struct.pack("<I", count)
    body = b"".join(parts)
    return body + blake3.blake3(body).digest()


def _checked_body(data: bytes) -> bytes:
    """An index file's body, once its magic and its trailing BLAKE3 digest are checked."""
    if len(data) < len(MAGIC) + 4 + 32 or not data.startswith(MAGIC):
        raise IndexFormatError("not an index file")
    body, digest = data[:-32], data[-32:]
    if blake3.blake3(body).digest() != digest:
        raise IndexFormatError("index checksum mismatch")
    return body


def decode_index(data: bytes) -> Iterator[tuple[bytes, BlobLocation]]:
    body = _checked_body(data)
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


def index_packs(data: bytes) -> tuple[bytes, list[tuple[str, int, int]]]:
    """An index file checked whole (as `decode_index` does) and its body, with each pack's
    (id, offset of its first blob record, number of blobs): for loading it without a
    BlobLocation per chunk."""
    body = _checked_body(data)
    (packs,) = struct.unpack_from("<I", body, len(MAGIC))
    pos = len(MAGIC) + 4
    out: list[tuple[str, int, int]] = []
    for _ in range(packs):
        raw_id, count = PACK_HEAD.unpack_from(body, pos)
        pos += PACK_HEAD.size
        out.append((raw_id.hex(), pos, count))
        pos += count * BLOB.size
        if pos > len(body):
            raise IndexFormatError("index is truncated")
    if pos != len(body):
        raise IndexFormatError("index has trailing bytes")
    return body, out


def write_index(
    store: ObjectStore, codec: Codec, locations: list[tuple[bytes, BlobLocation]]
) -> str | None:
    """Write one immutable index file, named by the hash of its sealed bytes; returns its
    name (None when there is nothing)."""
    if not locations:
        return None
    return _put_sealed(store, codec, encode_index(locations))


def write_index_records(
    store: ObjectStore, codec: Codec, packs: list[tuple[str, bytes]]
) -> str | None:
    """`write_index` of packs given as their blob records (`pack_records`)."""
    if not packs:
        return None
    return _put_sealed(store, codec, encode_index_records(packs))


def _put_sealed(store: ObjectStore, codec: Codec, encoded: bytes) -> str:
    """Seal an encoded index file and store it under the hash of its sealed bytes."""
    data = codec.seal(Kind.INDEX, encoded)
    name = PREFIX + blake3.blake3(data).hexdigest()
    store.put(name, data)
    return name


def read_index_file(store: ObjectStore, codec: Codec, name: str) -> bytes:
    """An index file's bytes as `encode_index` made them (for `decode_index`, `index_packs`);
    IndexFormatError or DamagedObject when it does not open, OSError when unreadable."""
    return codec.open(Kind.INDEX, store.get(name), what=f"index file {name}")


#: A location as the in-memory index keeps it: the pack's number (in `Index._pack_ids`),
#: then offset, stored length, raw length and flags as in an index file. One small bytes
#: object per chunk instead of a BlobLocation and its ints: the index of 200,000 chunks
#: takes about 20 MiB less, and loads without building an object per chunk.
_REC = struct.Struct("<I")
_LOC = struct.Struct("<I" + BLOB.format[4:])  # the record whole: pack number, then BLOB's tail


class _Entries(Mapping[bytes, BlobLocation]):
    """The index's chunks as a read-only mapping of digest to BlobLocation (decoded on
    access). `keys()` is the underlying dict's view: `in` on it is as fast as on a dict."""

    def __init__(self, index: Index) -> None:
        self._index = index

    def __getitem__(self, digest: bytes) -> BlobLocation:
        loc = self._index.get(digest)
        if loc is None:
            raise KeyError(digest)
        return loc

    def __contains__(self, digest: object) -> bool:
        return digest in self._index._recs

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._index._recs)

    def __len__(self) -> int:
        return len(self._index._recs)

    def keys(self) -> KeysView[bytes]:  # type: ignore[override]
        return self._index._recs.keys()


class Index:
    """The union of a project's index files, kept in memory and refreshed incrementally."""

    def __init__(self) -> None:
        self._recs: dict[bytes, bytes] = {}  # digest -> _REC pack number + BLOB's tail
        self._pack_ids: list[str] = []
        self._pack_no: dict[str, int] = {}
        self.entries: Mapping[bytes, BlobLocation] = _Entries(self)
        self.files: set[str] = set()
        self.damaged: dict[str, str] = {}
        self._lock = threading.Lock()

    def __contains__(self, digest: bytes) -> bool:
        return digest in self._recs

    def __len__(self) -> int:
        return len(self._recs)

    def _decode(self, rec: bytes) -> BlobLocation:
        pack, offset, length, raw, flags = _LOC.unpack(rec)
        return BlobLocation(self._pack_ids[pack], offset, length, raw, flags)

    def _pack_number(self, pack_id: str) -> bytes:
        n = self._pack_no.get(pack_id)
        if n is None:
            n = self._pack_no[pack_id] = len(self._pack_ids)
            self._pack_ids.append(pack_id)
        return _REC.pack(n)

    def get(self, digest: bytes) -> BlobLocation | None:
        rec = self._recs.get(digest)
        return None if rec is None else self._decode(rec)

    def add(self, digest: bytes, loc: BlobLocation) -> None:
        tail = BLOB.pack(digest, loc.offset, loc.length, loc.raw_length, loc.flags)[32:]
        self._recs[digest] = self._pack_number(loc.pack_id) + tail

    def _load(self, data: bytes) -> None:
        """An index file's chunks (the first location of a chunk is kept); checked whole
        before anything is added."""
        body, packs = index_packs(data)
        setdefault = self._recs.setdefault
        size = BLOB.size
        for pack_id, pos, count in packs:
            number = self._pack_number(pack_id)
            for p in range(pos, pos + count * size, size):
                setdefault(body[p : p + 32], number + body[p + 32 : p + size])

    def refresh(self, store: ObjectStore, codec: Codec) -> None:
        """Load index files written since the last refresh; reload all if some vanished."""
        with self._lock:
            names = {o.name for o in store.list(PREFIX)}
            if not self.files <= names:
                self._recs.clear()
                self._pack_ids.clear()
                self._pack_no.clear()
                self.files.clear()
                self.damaged.clear()
            for name in sorted(names - self.files - set(self.damaged)):
                try:
                    self._load(read_index_file(store, codec, name))
                    self.files.add(name)
                except (DamagedObject, struct.error, OSError) as exc:
                    self.damaged[name] = str(exc)

    def packs(self) -> dict[str, list[tuple[bytes, BlobLocation]]]:
        by_pack: dict[str, list[tuple[bytes, BlobLocation]]] = defaultdict(list)
        decode = self._decode
        for digest, rec in self._recs.items():
            loc = decode(rec)
            by_pack[loc.pack_id].append((digest, loc))
        return by_pack


def rebuild_from_packs(
    store: ObjectStore, codec: Codec
) -> tuple[list[tuple[bytes, BlobLocation]], list[str]]:
    """Read every pack's own header: the index as the packs say it is, and damaged packs."""
    locations: list[tuple[bytes, BlobLocation]] = []
    damaged: list[str] = []
    for pack_id, obj in pack_objects(store).items():
        try:
            for digest, offset, length, raw, flags in read_pack_entries(store, obj.name, codec):
                locations.append((digest, BlobLocation(pack_id, offset, length, raw, flags)))
        except (ValueError, struct.error, OSError, EOFError):
            damaged.append(obj.name)
    return locations, damaged

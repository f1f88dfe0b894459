"""Pack files: many compressed chunks in one object, self-describing.

A pack is ``blob0 blob1 ... header trailer``. The header lists, for each blob, its BLAKE3
hash, stored length, raw length and compression flag (offsets follow from the order); the
trailer holds the blob count, a hash of the header and a magic. So the index can always be
rebuilt from the packs alone. A pack is named by the BLAKE3 hash of its bytes, so a damaged
pack is recognisable by name, and written once, atomically.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import blake3
import zstandard

from .storage import ObjectStore

MAGIC = b"NXPACK01"
ENTRY = struct.Struct("<32sIIB")  # hash, stored length, raw length, flags
TRAILER = struct.Struct("<I16s8s")  # count, header hash prefix, magic
FLAG_RAW = 0
FLAG_ZSTD = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
ZSTD_LEVEL = 3


class PackFormatError(ValueError):
    pass


def pack_name(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}"


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack_id: str
    offset: int
    length: int  # stored length
    raw_length: int
    flags: int


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    comp = getattr(_local, "comp", None)
    if comp is None:
        comp = _local.comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "dec", None)
    if dec is None:
        dec = _local.dec = zstandard.ZstdDecompressor()
    return dec


def compress(raw: bytes | memoryview) -> tuple[bytes, int]:
    """zstd, unless that does not shrink the data: then the raw bytes (incompressible data
    costs no space and no decompression time on restore)."""
    packed = _compressor().compress(raw)
    if len(packed) < len(raw):
        return packed, FLAG_ZSTD
    return bytes(raw), FLAG_RAW


def decompress(stored: bytes, flags: int, raw_length: int) -> bytes:
    if flags == FLAG_RAW:
        return stored
    if flags == FLAG_ZSTD:
        return _decompressor().decompress(stored, max_output_size=raw_length)
    raise PackFormatError(f"unknown blob flags {flags}")


def parse_header(tail: bytes, pack_size: int) -> list[tuple[bytes, int, int, int, int]]:
    """Parse a pack's header from its last bytes; returns (hash, offset, length, raw, flags)."""
    if len(tail) < TRAILER.size:
        raise PackFormatError("pack too short")
    count, header_hash, magic = TRAILER.unpack(tail[-TRAILER.size :])
    if magic != MAGIC:
        raise PackFormatError("bad pack magic")
    header_len = count * ENTRY.size
    if header_len + TRAILER.size > len(tail):
        raise PackFormatError("pack header longer than the data read")
    header = tail[-TRAILER.size - header_len : -TRAILER.size]
    if blake3.blake3(header).digest()[:16] != header_hash:
        raise PackFormatError("pack header checksum mismatch")
    entries = []
    offset = 0
    for i in range(count):
        h, length, raw, flags = ENTRY.unpack_from(header, i * ENTRY.size)
        entries.append((h, offset, length, raw, flags))
        offset += length
    if offset + header_len + TRAILER.size != pack_size:
        raise PackFormatError("pack size does not match its header")
    return entries


def read_pack_entries(store: ObjectStore, name: str) -> list[tuple[bytes, int, int, int, int]]:
    size = store.size(name)
    count_bytes = store.get_range(name, size - TRAILER.size, TRAILER.size)
    count = TRAILER.unpack(count_bytes)[0]
    want = min(size, TRAILER.size + count * ENTRY.size)
    return parse_header(store.get_range(name, size - want, want), size)


class PackWriter:
    """Collects blobs into packs of about `target_size` and writes each one atomically.

    Thread-safe: several file readers add blobs at once. `on_flush` is called with the
    locations of every blob in a pack once that pack is durable, so that nothing is ever
    indexed before its data exists (restic's write order).
    """

    def __init__(
        self,
        store: ObjectStore,
        on_flush: Callable[[str, list[tuple[bytes, BlobLocation]]], None],
        target_size: int = DEFAULT_PACK_SIZE,
    ) -> None:
        self._store = store
        self._on_flush = on_flush
        self._target = target_size
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._blobs: list[bytes] = []
        self._entries: list[tuple[bytes, int, int, int]] = []
        self._size = 0
        self.bytes_written = 0
        self.packs_written = 0
        self.pack_names: list[str] = []

    def add(self, digest: bytes, stored: bytes, raw_length: int, flags: int) -> None:
        full = None
        with self._lock:
            self._blobs.append(stored)
            self._entries.append((digest, len(stored), raw_length, flags))
            self._size += len(stored)
            if self._size >= self._target:
                full = self._take()
        if full is not None:
            self._write(*full)

    def _take(self) -> tuple[list[bytes], list[tuple[bytes, int, int, int]]]:
        blobs, entries = self._blobs, self._entries
        self._blobs, self._entries, self._size = [], [], 0
        return blobs, entries

    def _write(self, blobs: list[bytes], entries: list[tuple[bytes, int, int, int]]) -> None:
        header = b"".join(ENTRY.pack(*e) for e in entries)
        trailer = TRAILER.pack(len(entries), blake3.blake3(header).digest()[:16], MAGIC)
        data = b"".join([*blobs, header, trailer])
        pack_id = blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
        with self._write_lock:
            self._store.put(pack_name(pack_id), data)
            self.pack_names.append(pack_name(pack_id))
            self.bytes_written += len(data)
            self.packs_written += 1
        locations = []
        offset = 0
        for digest, length, raw, flags in entries:
            locations.append((digest, BlobLocation(pack_id, offset, length, raw, flags)))
            offset += length
        self._on_flush(pack_id, locations)

    def flush(self) -> None:
        with self._lock:
            if not self._blobs:
                return
            full = self._take()
        self._write(*full)

"""Pack files: many sealed chunks in one object, self-describing.

A pack is ``blob0 blob1 ... header trailer`` (byte layout: docs/design.md, §1.2). Each blob
is a chunk as `Codec.seal_blob` sealed it; the header lists, for each blob, its BLAKE3 hash,
stored length, raw length and compression flag (offsets follow from the order), and is
sealed as a whole (`Kind.PACK_HEADER`); the trailer holds the blob count, a hash of the
sealed header and a magic. So the index can always be
rebuilt from the packs alone. A pack is named by the BLAKE3 hash of its bytes, so a damaged
pack is recognisable by name, and written once, atomically.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3

from core.pipeline import Pipeline
from core.repo.codec import Codec, DamagedObject, Kind
from core.repo.random_pool import random_below
from core.storage import TMP_MARK, Buffer, ObjectInfo, ObjectStore

MAGIC = b"NXPACK01"
ENTRY = struct.Struct("<32sIIB")  # hash, stored length, raw length, flags
TRAILER = struct.Struct("<I16s8s")  # count, header hash prefix, magic
DEFAULT_PACK_SIZE = 16 * 1024 * 1024


class PackFormatError(DamagedObject):
    """A pack whose trailer or header does not check (a Damaged, and a ValueError)."""


def pack_name(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}"


_PACK_NAME = re.compile(r"packs/([0-9a-f]{2})/(\1[0-9a-f]{62})")


def pack_objects(store: ObjectStore) -> dict[str, ObjectInfo]:
    """The packs in the store by id. Only objects named as this program names packs count:
    anything else under `packs/` (a user's copy, a future format's object) is not a pack to
    read, index or delete, and is left alone."""
    found = {}
    for obj in store.list("packs/"):
        m = _PACK_NAME.fullmatch(obj.name)
        if m:
            found[m.group(2)] = obj
    return found


@dataclass(frozen=True, slots=True)
class BlobLocation:
    pack_id: str
    offset: int
    length: int  # stored length
    raw_length: int
    flags: int


def header_length(count: int, codec: Codec) -> int:
    """The stored length of the header of a pack of `count` blobs: its entries as sealed."""
    return count * ENTRY.size + codec.overhead(Kind.PACK_HEADER)


def _open_header(sealed: bytes, count: int, codec: Codec) -> bytes:
    header = codec.open(Kind.PACK_HEADER, sealed, what="pack header")
    if len(header) != count * ENTRY.size:
        raise PackFormatError("pack header does not hold its count of entries")
    return header


def parse_header(
    tail: bytes, pack_size: int, codec: Codec
) -> list[tuple[bytes, int, int, int, int]]:
    """Parse a pack's header from its last bytes; returns (hash, offset, length, raw, flags).
    The trailer's checksum covers the header as sealed, so damage is told from a wrong key."""
    if len(tail) < TRAILER.size:
        raise PackFormatError("pack too short")
    count, header_hash, magic = TRAILER.unpack(tail[-TRAILER.size :])
    if magic != MAGIC:
        raise PackFormatError("bad pack magic")
    header_len = header_length(count, codec)
    if header_len + TRAILER.size > len(tail):
        raise PackFormatError("pack header longer than the data read")
    sealed = tail[-TRAILER.size - header_len : -TRAILER.size]
    if blake3.blake3(sealed).digest()[:16] != header_hash:
        raise PackFormatError("pack header checksum mismatch")
    header = _open_header(sealed, count, codec)
    entries = []
    offset = 0
    for i in range(count):
        h, length, raw, flags = ENTRY.unpack_from(header, i * ENTRY.size)
        entries.append((h, offset, length, raw, flags))
        offset += length
    if offset + header_len + TRAILER.size != pack_size:
        raise PackFormatError("pack size does not match its header")
    return entries


def read_pack_entries(
    store: ObjectStore, name: str, codec: Codec
) -> list[tuple[bytes, int, int, int, int]]:
    size = store.stat(name).size
    if size < TRAILER.size:
        raise PackFormatError(f"pack is {size} bytes, shorter than its trailer")
    count_bytes = store.get_range(name, size - TRAILER.size, TRAILER.size)
    count = TRAILER.unpack(count_bytes)[0]
    want = min(size, TRAILER.size + header_length(count, codec))
    return parse_header(store.get_range(name, size - want, want), size, codec)


def salvage_entries(
    store: ObjectStore, name: str, codec: Codec
) -> list[tuple[bytes, int, int, int, int]]:
    """The entries a damaged pack's header still gives, its checksum ignored: candidates only,
    each to be verified by its hash before it is trusted (`rebuild-index` salvages with it).
    A sealed header that does not open (under a cipher) gives none."""
    size = store.stat(name).size
    if size < TRAILER.size:
        return []
    count = TRAILER.unpack(store.get_range(name, size - TRAILER.size, TRAILER.size))[0]
    header_len = header_length(count, codec)
    if header_len + TRAILER.size > size:
        return []
    sealed = store.get_range(name, size - TRAILER.size - header_len, header_len)
    try:
        header = _open_header(sealed, count, codec)
    except DamagedObject:
        return []
    limit = size - TRAILER.size - header_len
    fields = [ENTRY.unpack_from(header, i * ENTRY.size) for i in range(count)]
    # Each blob placed from the start (the lengths before it summed) and from the end (the
    # blobs end where the header begins), and between the two (its own length unknown): a
    # damaged length then misplaces neither the blobs after it nor, bounded by its
    # neighbours, the damaged entry's own blob.
    starts, at = [], 0
    for _h, length, _r, _f in fields:
        starts.append(at)
        at += length
    ends, at = [0] * count, limit
    for i in range(count - 1, -1, -1):
        ends[i] = at
        at -= fields[i][1]
    entries = []
    for (h, length, raw, flags), start, end in zip(fields, starts, ends, strict=True):
        for offset, stored in ((start, length), (end - length, length), (start, end - start)):
            if offset >= 0 and stored > 0 and offset + stored <= limit:
                entries.append((h, offset, stored, raw, flags))
    return list(dict.fromkeys(entries))


class _OpenPack:
    """A pack being written: blobs go to a spool file through a small buffer (one write per
    MiB, not per blob); only the header stays in memory."""

    BUFFER = 1024 * 1024

    def __init__(self, spool: Path) -> None:
        self.path = spool / f"pack{TMP_MARK}{secrets.token_hex(8)}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.hasher = blake3.blake3()
        self.entries: list[tuple[bytes, int, int, int]] = []
        self.size = 0
        self._buf = bytearray()

    def append(self, data: Buffer) -> None:
        self.hasher.update(data)
        self.size += len(data)
        if len(data) >= self.BUFFER:
            self._flush()
            self._write(data)
            return
        self._buf += data
        if len(self._buf) >= self.BUFFER:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._write(self._buf)
            self._buf = bytearray()

    def _write(self, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def close(self) -> None:
        self._flush()
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1

    def absorb(self, other: _OpenPack) -> None:
        """Append `other`'s blobs (its spool read back) after this pack's; `other` is gone."""
        other._flush()
        with open(other.path, "rb") as f:
            while block := f.read(self.BUFFER):
                self.append(block)
        self.entries.extend(other.entries)
        other.discard()

    def discard(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class PackWriter:
    """Collects blobs into packs of about `target_size` and stores each one atomically.

    Thread-safe: several file readers add blobs at once. Blobs are appended to a spool file
    as they come, so memory does not grow with the pack size. `on_flush` is called with the
    locations of every blob in a pack once that pack is durable, so that nothing is ever
    indexed before its data exists (restic's write order).

    With `uploaders`, full packs are stored by that many threads of their own (a remote
    store: the adders go on reading and sealing meanwhile), at most twice that many waiting
    as spool files; a failed upload is raised by the next `add` or by `flush`.

    Under encryption, blobs are spread over `SPREAD` open packs, each blob into one picked at
    random, and the packs still open at the end are merged while they stay under the target
    size (restic 0.18's mitigation of chunking attacks, docs/design.md §6.1): a pack's size
    and blob count, which anyone holding the store sees, are then those of a random subset
    of the chunks written, not of a run of consecutive chunks of one file, whose boundaries
    would betray the chunker's secret. A plain repository (nothing hidden) keeps one open
    pack, blobs in order.
    """

    SPREAD = 2

    def __init__(
        self,
        store: ObjectStore,
        on_flush: Callable[[str, list[tuple[bytes, BlobLocation]]], None],
        target_size: int = DEFAULT_PACK_SIZE,
        *,
        codec: Codec,
        uploaders: int = 0,
    ) -> None:
        self._store = store
        self._codec = codec
        self._on_flush = on_flush
        self._target = target_size
        self._lock = threading.Lock()
        self._spread = self.SPREAD if codec.encrypts else 1
        self._open: list[_OpenPack | None] = [None] * self._spread
        self.bytes_written = 0
        self.packs_written = 0
        self.pack_names: list[str] = []
        self._uploads = Pipeline(uploaders, depth=2, name="nexus-upload") if uploaders > 0 else None
        self._aborted = False

    def add(self, digest: bytes, stored: Buffer, raw_length: int, flags: int) -> None:
        """A chunk as `Codec.seal_blob` sealed it (or copied as sealed from another pack)."""
        self.add_many([(digest, stored, flags, raw_length)])

    def add_many(self, blobs: list[tuple[bytes, Buffer, int, int]]) -> None:
        """Chunks as (digest, sealed, flags, raw length), added under one lock (a batch of
        small files' chunks), each to its own randomly picked open pack when spread."""
        if self._uploads is not None:
            self._uploads.raise_failure()
        full = []
        spread = self._spread
        with self._lock:
            for digest, stored, flags, raw_length in blobs:
                slot = random_below(spread) if spread > 1 else 0
                pack = self._open[slot]
                if pack is None:
                    pack = self._open[slot] = _OpenPack(self._store.spool())
                try:
                    pack.append(stored)
                except BaseException:
                    self._open[slot] = None
                    for dropped in (pack, *full):
                        dropped.discard()
                    raise
                pack.entries.append((digest, len(stored), raw_length, flags))
                if pack.size >= self._target:
                    full.append(pack)
                    self._open[slot] = None
        for i, pack in enumerate(full):
            try:
                self._store_pack(pack)
            except BaseException:
                for rest in full[i + 1 :]:
                    rest.discard()
                raise

    def _store_pack(self, pack: _OpenPack) -> None:
        if self._uploads is None:
            self._finish(pack)
        elif not self._uploads.submit(self._finish, pack):
            pack.discard()
            self._uploads.raise_failure()

    def _finish(self, pack: _OpenPack) -> None:
        if self._aborted:
            pack.discard()
            return
        try:
            header = b"".join(ENTRY.pack(*e) for e in pack.entries)
            sealed = self._codec.seal(Kind.PACK_HEADER, header)
            trailer = TRAILER.pack(len(pack.entries), blake3.blake3(sealed).digest()[:16], MAGIC)
            pack.append(sealed + trailer)
            pack.close()
            pack_id = pack.hasher.hexdigest()
            name = pack_name(pack_id)
            self._store.put_file(name, pack.path)
        except BaseException:
            pack.discard()
            raise
        with self._lock:
            self.pack_names.append(name)
            self.bytes_written += pack.size
            self.packs_written += 1
        locations = []
        offset = 0
        for digest, length, raw, flags in pack.entries:
            locations.append((digest, BlobLocation(pack_id, offset, length, raw, flags)))
            offset += length
        self._on_flush(pack_id, locations)

    def _take_open(self) -> list[_OpenPack]:
        with self._lock:
            packs = [p for p in self._open if p is not None]
            self._open = [None] * self._spread
        return packs

    def flush(self) -> None:
        """Store the packs still open, merged first while the result stays under the target
        size (as restic's), so a small backup shows one pack, not its few chunks split over
        two small ones (whose sizes would be theirs); then wait for every upload: the
        writer is done after this."""
        packs = []
        for pack in self._take_open():
            if pack.entries:
                packs.append(pack)
            else:
                pack.discard()
        merged: list[_OpenPack] = []
        try:
            for pack in packs:
                if merged and merged[-1].size + pack.size < self._target:
                    merged[-1].absorb(pack)
                else:
                    merged.append(pack)
        except BaseException:
            for pack in packs:
                pack.discard()
            raise
        try:
            for i, pack in enumerate(merged):
                try:
                    self._store_pack(pack)
                except BaseException:
                    for rest in merged[i + 1 :]:
                        rest.discard()
                    raise
            if self._uploads is not None:
                self._uploads.wait()
        finally:
            if self._uploads is not None:
                self._uploads.close()

    def abort(self) -> None:
        """Drop the packs being written and those waiting to be stored (on failure); what is
        being uploaded ends first (stored and indexed, or not); stored packs are the
        caller's."""
        self._aborted = True
        for pack in self._take_open():
            pack.discard()
        if self._uploads is not None:
            self._uploads.close()

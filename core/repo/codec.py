"""The codec: the one layer through which every repository object is sealed on its way into
the store and opened on its way out (docs/design.md, §1 and §6).

Sealing has two stages, in this order (opening runs them backwards):

1. **Compression**, fixed per kind by the format (version 1). A chunk is zstd level 3, or its
   raw bytes when that does not shrink it (the flag in the pack header and the index says
   which). A manifest is one zstd frame at level 1, streamed by `FrameWriter` and read back
   by `frame_reader`, so that neither its writer nor its readers ever hold its uncompressed
   lines. Every other object is stored as it is.
2. **The cipher**, chosen per repository. `IDENTITY` today: the sealed bytes are the
   compressed bytes, so a repository written before this layer existed reads unchanged, and
   what is written now is byte for byte what was written then. Encryption at rest (issue
   12) is a second `Cipher`: `Repository.codec` becomes `Codec(that cipher)` once the key
   is unlocked, and no caller changes, since every caller holds `repo.codec` and none knows
   which cipher it wraps.

`config.json` and lock objects are sealed with `PLAIN`, whatever the repository's codec:
the config must say what a repository is (its format, and with encryption its key ids)
before any key is known, and a lock must be judged (held, stale) by any process sharing the
store, one that has not unlocked a key included, and hold nothing about the data (a host,
a pid, an operation, times and a backup id, which the object names show anyway).

Every failure to open an object is `DamagedObject` (a `Damaged`: one line, exit code 4),
`DamagedChunk` for a chunk: a chunk is opened only by `Codec.open_blob`, which also checks
it against its id, the one place a chunk's hash is verified.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from enum import Enum
from typing import Protocol

import zstandard

from core.errors import Damaged
from core.repo.chunker import hash_bytes


class Kind(Enum):
    """What an object is: a cipher may treat kinds apart (a key per kind, the kind bound
    into each object), and a damaged object is named by its kind."""

    CONFIG = "config"
    LOCK = "lock"
    SETTINGS = "project settings"
    METADATA = "metadata"
    VERIFY = "verify record"
    MANIFEST = "manifest"
    INDEX = "index file"
    PACK_HEADER = "pack header"
    BLOB = "chunk"


class DamagedObject(Damaged, ValueError):
    """An object that cannot be opened as it was sealed: truncated, garbage, a flipped bit
    (and with a cipher: tampered with, swapped for another, or sealed under another key).
    A ValueError too, for the parsers that already treat one as damage."""


class DamagedChunk(DamagedObject):
    """A chunk that cannot be opened or does not hash to its id."""


class DamagedManifest(DamagedObject):
    """A manifest that cannot be read as written: damaged or tampered with."""


def _damage(kind: Kind, message: str) -> DamagedObject:
    if kind is Kind.BLOB:
        return DamagedChunk(message)
    if kind is Kind.MANIFEST:
        return DamagedManifest(message)
    return DamagedObject(message)


class Cipher(Protocol):
    """The second stage of sealing, after compression: what encryption supplies.

    `seal` and `open` take the object's kind and its context (the bytes a cipher binds to it
    as associated data, so an object cannot pass for another: the object's name, or a chunk's
    id); `open` raises ValueError when the sealed bytes do not authenticate. `overhead` is
    what `seal` adds to every object (a pack's header is found by its length). `chunk_id`
    names a chunk by its content (a keyed hash under encryption, so that a stored chunk says
    nothing about known content)."""

    name: str
    overhead: int

    def seal(self, kind: Kind, data: bytes, context: bytes) -> bytes: ...

    def open(self, kind: Kind, sealed: bytes, context: bytes) -> bytes: ...

    def chunk_id(self, data: bytes | memoryview) -> bytes: ...


class _Identity:
    """No cipher: the sealed bytes are the compressed bytes, unchanged (not even copied)."""

    name = "none"
    overhead = 0

    def seal(self, kind: Kind, data: bytes, context: bytes) -> bytes:
        return data

    def open(self, kind: Kind, sealed: bytes, context: bytes) -> bytes:
        return sealed

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        return hash_bytes(data)


IDENTITY: Cipher = _Identity()

# --- compression (stage 1), as format version 1 fixes it ----------------------------------

FLAG_RAW = 0
FLAG_ZSTD = 1
ZSTD_LEVEL = 3
#: A large chunk is first judged by compressing this much from its middle at zstd's fastest
#: level; it is stored raw when that saves less than SAMPLE_MIN_SAVING.
SAMPLE = 64 * 1024
SAMPLE_MIN_SAVING = 0.03
#: The size from which a chunk is judged by its sample first.
SAMPLED = 4 * SAMPLE
#: A manifest's frame: level 1 (JSON around hex digests comes out no larger than at 3, at half
#: the CPU), threads=1 (zstd compresses in its own thread, without the GIL, while the caller
#: goes on producing lines; the output is an ordinary frame), jobs of 1 MiB (the default is
#: several times the window: less held in zstd's buffers).
MANIFEST_LEVEL = 1
MANIFEST_JOB = 1 << 20

_local = threading.local()


def _zstd(attr: str, level: int) -> zstandard.ZstdCompressor:
    comp = getattr(_local, attr, None)
    if comp is None:
        comp = zstandard.ZstdCompressor(level=level)
        setattr(_local, attr, comp)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec = getattr(_local, "dec", None)
    if dec is None:
        dec = _local.dec = zstandard.ZstdDecompressor()
    return dec


def compress_blob(raw: bytes | memoryview) -> tuple[bytes, int]:
    """zstd, unless that does not shrink the data: then the raw bytes (incompressible data
    costs no space and no decompression time on restore). Already-compressed data
    (archives, media, encrypted or random bytes) is told by a sample of a large chunk and
    stored raw without paying for a full compression."""
    if len(raw) >= SAMPLED:
        mid = len(raw) // 2
        sample = raw[mid : mid + SAMPLE]
        if len(_zstd("sampler", 1).compress(sample)) > len(sample) * (1 - SAMPLE_MIN_SAVING):
            return bytes(raw), FLAG_RAW
    packed = _zstd("comp", ZSTD_LEVEL).compress(raw)
    if len(packed) < len(raw):
        return packed, FLAG_ZSTD
    return bytes(raw), FLAG_RAW


def compress_blobs(raws: Sequence[bytes | memoryview]) -> list[tuple[bytes, int]]:
    """`compress_blob` of each chunk, the same bytes; the small ones (a batch of small
    files) in one call to zstd. Each call releases the GIL and takes it back, and in a
    backup's busy read pass taking it back costs far more than compressing a small file:
    one call for the batch pays that once."""
    small = [i for i, raw in enumerate(raws) if len(raw) < SAMPLED]
    comp = _zstd("comp", ZSTD_LEVEL)
    together = getattr(comp, "multi_compress_to_buffer", None)  # the C backend's
    out: list[tuple[bytes, int] | None] = [None] * len(raws)
    if len(small) > 1 and together is not None:
        for i, packed in zip(small, together([raws[i] for i in small], threads=0), strict=True):
            shrunk = len(packed) < len(raws[i])
            out[i] = (packed.tobytes(), FLAG_ZSTD) if shrunk else (bytes(raws[i]), FLAG_RAW)
    return [
        done if done is not None else compress_blob(raw)
        for done, raw in zip(out, raws, strict=True)
    ]


def decompress_blob(stored: bytes, flags: int, raw_length: int) -> bytes:
    """A chunk's bytes from its stored form; raises ValueError or ZstdError when damaged.
    A frame is decompressed only when the size it declares (if any) is the chunk's: a
    flipped bit there would otherwise have zstd allocate whatever it says."""
    if flags == FLAG_RAW:
        return stored
    if flags == FLAG_ZSTD:
        declared = zstandard.frame_content_size(stored)
        if declared not in (-1, raw_length):
            raise ValueError(f"its frame declares {declared} bytes, not {raw_length}")
        return _decompressor().decompress(stored, max_output_size=raw_length)
    raise ValueError(f"unknown blob flags {flags}")


class FrameWriter:
    """A manifest's compression: its lines streamed into one zstd frame as they come."""

    def __init__(self) -> None:
        params = zstandard.ZstdCompressionParameters.from_level(
            MANIFEST_LEVEL, threads=1, job_size=MANIFEST_JOB
        )
        self._comp = zstandard.ZstdCompressor(compression_params=params).compressobj()
        self._out: list[bytes] = []  # the compressed pieces (a BytesIO over-allocates)

    def write(self, block: bytes) -> None:
        if out := self._comp.compress(block):
            self._out.append(out)

    def finish(self) -> bytes:
        """The whole frame; the writer is done."""
        self._out.append(self._comp.flush())
        del self._comp  # its buffers go before the output is joined
        data = b"".join(self._out)
        self._out = []
        return data


class _FrameReader(io.RawIOBase):
    """A manifest's uncompressed bytes, streamed from its frame; a damaged frame raises
    DamagedManifest from whichever read meets the damage."""

    def __init__(self, frame: bytes) -> None:
        self._reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(frame))

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def,override]
        try:
            return self._reader.readinto(b)
        except zstandard.ZstdError as exc:
            raise DamagedManifest(f"manifest cannot be decompressed: {exc}") from exc

    def read(self, size: int = -1) -> bytes:
        try:
            return self._reader.read(size)
        except zstandard.ZstdError as exc:
            raise DamagedManifest(f"manifest cannot be decompressed: {exc}") from exc


def frame_reader(frame: bytes) -> io.RawIOBase:
    """A raw reader of the manifest a frame holds (wrap it in a BufferedReader for lines)."""
    return _FrameReader(frame)


# --- the codec --------------------------------------------------------------------------


class Codec:
    """Seals and opens a repository's objects: compression as the format fixes it, then the
    repository's cipher. Stateless apart from the cipher's keys: safe to share."""

    def __init__(self, cipher: Cipher = IDENTITY) -> None:
        self.cipher = cipher

    @property
    def name(self) -> str:
        return self.cipher.name

    @property
    def encrypts(self) -> bool:
        """A cipher other than IDENTITY seals the objects (what the store shows is hidden)."""
        return self.cipher is not IDENTITY

    def overhead(self, kind: Kind) -> int:
        """Bytes sealing adds to an object of `kind` beyond its compressed size."""
        return 0 if kind in _ALWAYS_PLAIN else self.cipher.overhead

    def seal(self, kind: Kind, plaintext: bytes, context: bytes = b"") -> bytes:
        """An object's bytes as stored. For a manifest, `plaintext` is the frame its
        `FrameWriter` made (compressed as a stream before it is sealed whole)."""
        if kind is Kind.BLOB:
            raise TypeError("a chunk is sealed by seal_blob (its flags live in the pack header)")
        if kind in _ALWAYS_PLAIN:
            return plaintext
        return self.cipher.seal(kind, plaintext, context)

    def open(self, kind: Kind, sealed: bytes, context: bytes = b"", *, what: str = "") -> bytes:
        """An object's bytes as they were given to `seal`; DamagedObject (naming `what`, else
        the kind) when they cannot be."""
        if kind is Kind.BLOB:
            raise TypeError("a chunk is opened by open_blob (which checks its hash)")
        if kind in _ALWAYS_PLAIN:
            return sealed
        try:
            return self.cipher.open(kind, sealed, context)
        except ValueError as exc:
            raise _damage(kind, f"{what or kind.value}: {exc}") from exc

    def seal_blob(self, digest: bytes, raw: bytes | memoryview) -> tuple[bytes, int]:
        """A chunk as stored in a pack, and its flags (FLAG_ZSTD or FLAG_RAW). The hot path
        of a backup: no copy beyond what compression makes."""
        stored, flags = compress_blob(raw)
        return self.cipher.seal(Kind.BLOB, stored, digest), flags

    def seal_blobs(
        self, chunks: Sequence[tuple[bytes, bytes | memoryview]]
    ) -> list[tuple[bytes, int]]:
        """`seal_blob` of each (digest, raw), compressed together (`compress_blobs`)."""
        seal = self.cipher.seal
        packed = compress_blobs([raw for _digest, raw in chunks])
        return [
            (seal(Kind.BLOB, stored, digest), flags)
            for (digest, _raw), (stored, flags) in zip(chunks, packed, strict=True)
        ]

    def open_blob(
        self, digest: bytes, sealed: bytes, flags: int, raw_length: int, *, pack_id: str = ""
    ) -> bytes:
        """A chunk's bytes, checked against its id and length: DamagedChunk otherwise, never
        a wrong chunk. Every reader of chunks (restore, verify, reclaim's copies, the salvage
        of a damaged pack) opens them here."""
        try:
            raw = decompress_blob(self.cipher.open(Kind.BLOB, sealed, digest), flags, raw_length)
        except (ValueError, EOFError, zstandard.ZstdError) as exc:
            raise DamagedChunk(f"{_where(digest, pack_id)} cannot be opened: {exc}") from exc
        if len(raw) != raw_length or self.cipher.chunk_id(raw) != digest:
            raise DamagedChunk(f"{_where(digest, pack_id)} fails its hash")
        return raw

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        """The id that names a chunk of this content in this repository."""
        return self.cipher.chunk_id(data)


def _where(digest: bytes, pack_id: str) -> str:
    return f"chunk {digest.hex()[:16]}" + (f" in pack {pack_id[:16]}" if pack_id else "")


#: Kinds no cipher ever touches (see the module's docstring for why).
_ALWAYS_PLAIN = frozenset({Kind.CONFIG, Kind.LOCK})

#: The codec of config.json and lock objects in every repository, and of every object in a
#: repository without encryption.
PLAIN = Codec(IDENTITY)

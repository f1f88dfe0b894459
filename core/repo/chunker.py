"""Content-defined chunking (FastCDC 2020 via pyfastcdc) and BLAKE3 hashing.

Chunk boundaries depend on the content, not on offsets, so an edit in the middle of a large
file changes only the chunks around it and the rest deduplicate against earlier backups.
The parameters are recorded in the repository's config: changing them would stop dedup.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, BinaryIO

import blake3

if TYPE_CHECKING:  # imported by `make`: a command that reads backups never chunks
    from pyfastcdc import FastCDC

HASH_NAME = "blake3"
READ_SIZE = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    algorithm: str = "fastcdc2020"
    avg_size: int = 1024 * 1024
    min_size: int = 256 * 1024
    max_size: int = 4 * 1024 * 1024
    normalized_chunking: int = 1
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ChunkerParams:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def make(self) -> FastCDC:
        from pyfastcdc import FastCDC

        return FastCDC(
            self.avg_size,
            min_size=self.min_size,
            max_size=self.max_size,
            normalized_chunking=self.normalized_chunking,  # type: ignore[arg-type]
            seed=self.seed,
        )


def hash_bytes(data: bytes | memoryview) -> bytes:
    """The 32-byte BLAKE3 digest that names a chunk."""
    return blake3.blake3(data).digest()


def new_hasher() -> blake3.blake3:
    return blake3.blake3()


#: Files at least this large are hashed by several threads (`hash_fd`).
THREADED_HASH_SIZE = 16 * 1024 * 1024


def hash_fd(fd: int, size: int) -> str:
    """BLAKE3 hex of an open file the scan saw at `size` bytes (the manifest's content
    hash). No more than one byte past `size` is read: a file another process grows without
    end would otherwise be read for ever; a longer one hashes as another content."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO if size >= THREADED_HASH_SIZE else 1)
    left = size + 1
    while left > 0 and (block := os.read(fd, min(left, 4 * 1024 * 1024))):
        h.update(block)
        left -= len(block)
    return h.hexdigest()


class _Reader:
    """A readinto() source for FastCDC that counts bytes and honours cancellation."""

    def __init__(self, f: BinaryIO, check: callable | None = None) -> None:  # type: ignore[valid-type]
        self._f = f
        self._check = check
        self.bytes_read = 0

    def readinto(self, buf: memoryview) -> int:
        if self._check is not None:
            self._check()
        n = self._f.readinto(buf)  # type: ignore[attr-defined]
        n = n or 0
        self.bytes_read += n
        return n


def iter_chunks(
    chunker: FastCDC,
    f: BinaryIO,
    check: callable | None = None,  # type: ignore[valid-type]
) -> Iterator[memoryview]:
    """Yield the chunks of an open file; each view is valid only until the next one."""
    reader = _Reader(f, check)
    for chunk in chunker.cut_stream(reader):
        yield chunk.data

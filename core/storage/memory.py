"""A store held in this process's memory: the engine's tests run on it beside LocalStore, so
nothing in the engine can lean on a filesystem without a test noticing."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from core.storage.base import (
    Capabilities,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    SimpleReader,
    check_name,
    check_range,
    join,
    spooled_file_gone,
)


class _Objects:
    """The objects of one MemoryStore and every view of it made by `sub`."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.data: dict[str, tuple[bytes, float, int]] = {}
        self.lock = threading.Lock()
        self.spool = Path(tempfile.mkdtemp(prefix="nexus-memory-spool-"))
        self.writes = 0  # a write counter, for etags that change on every write


class MemoryStore:
    """Objects in a dict, with the semantics of the other stores (atomic puts, create-if-absent,
    sorted listings, ObjectNotFound)."""

    def __init__(self, *, _objects: _Objects | None = None, _prefix: str = "") -> None:
        self._objects = _objects or _Objects()
        self._prefix = _prefix
        self.capabilities = Capabilities(local_root=None, conditional_create=True)

    def __repr__(self) -> str:
        return f"MemoryStore({self._prefix!r})"

    @property
    def url(self) -> str:
        """`memory://NAME/PREFIX`, which open_store opens again (in this process) when the
        store was made by `named`."""
        return f"memory://{self._objects.name}" + (f"/{self._prefix}" if self._prefix else "")

    def _key(self, name: str) -> str:
        return join(self._prefix, check_name(name))

    def sub(self, prefix: str) -> MemoryStore:
        return MemoryStore(_objects=self._objects, _prefix=self._key(prefix.rstrip("/")))

    def prepare(self) -> None:
        pass

    def put(self, name: str, data: bytes) -> None:
        key = self._key(name)
        with self._objects.lock:
            self._objects.writes += 1
            self._objects.data[key] = (bytes(data), time.time(), self._objects.writes)

    def put_new(self, name: str, data: bytes) -> None:
        key = self._key(name)
        with self._objects.lock:
            if key in self._objects.data:
                raise ObjectExists(f"object {name!r} already exists")
            self._objects.writes += 1
            self._objects.data[key] = (bytes(data), time.time(), self._objects.writes)

    def put_if_unchanged(self, name: str, data: bytes, etag: str | None) -> None:
        key = self._key(name)
        with self._objects.lock:
            entry = self._objects.data.get(key)
            if (str(entry[2]) if entry else None) != etag:
                raise ObjectExists(f"object {name!r} was changed by another writer")
            self._objects.writes += 1
            self._objects.data[key] = (bytes(data), time.time(), self._objects.writes)

    def put_file(self, name: str, path: Path) -> None:
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:
            raise spooled_file_gone(path) from None
        self.put(name, data)
        os.unlink(path)

    def spool(self) -> Path:
        return self._objects.spool

    def _entry(self, name: str) -> tuple[bytes, float, int]:
        try:
            return self._objects.data[self._key(name)]
        except KeyError:
            raise ObjectNotFound(f"object {name!r} not found") from None

    def get(self, name: str) -> bytes:
        return self._entry(name)[0]

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        check_range(name, offset, length)
        data = self._entry(name)[0][offset : offset + length]
        if len(data) != length:
            raise EOFError(f"{name}: short read at {offset} ({len(data)} of {length} bytes)")
        return data

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.get_range(name, off, length) for off, length in ranges]

    def reader(self) -> SimpleReader:
        return SimpleReader(self)

    def exists(self, name: str) -> bool:
        return self._key(name) in self._objects.data

    def stat(self, name: str) -> ObjectInfo:
        data, mtime, serial = self._entry(name)
        return ObjectInfo(name, len(data), mtime, str(serial))

    def _names(self, prefix: str) -> list[str]:
        base = self._prefix + "/" if self._prefix else ""
        with self._objects.lock:
            keys = list(self._objects.data)
        return sorted(k[len(base) :] for k in keys if k.startswith(base + prefix))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for name in self._names(prefix):
            entry = self._objects.data.get(self._key(name))
            if entry is not None:
                yield ObjectInfo(name, len(entry[0]), entry[1], str(entry[2]))

    def children(self, prefix: str = "") -> list[str]:
        below = prefix.rstrip("/") + "/" if prefix else ""
        return sorted({n[len(below) :].split("/", 1)[0] for n in self._names(below)})

    def delete(self, name: str) -> None:
        with self._objects.lock:
            self._objects.data.pop(self._key(name), None)

    def delete_prefix(self, prefix: str) -> None:
        for name in self._names(prefix.rstrip("/") + "/"):
            self.delete(name)

    def remove_partials(self) -> int:
        return 0

    def read_only_reason(self) -> str | None:
        return None

    def free_bytes(self) -> int | None:
        return None


_NAMED: dict[str, MemoryStore] = {}
_NAMED_LOCK = threading.Lock()


def named(name: str) -> MemoryStore:
    """The process-wide MemoryStore of that name (`memory://NAME`), made on first use."""
    with _NAMED_LOCK:
        if name not in _NAMED:
            _NAMED[name] = MemoryStore(_objects=_Objects(name))
        return _NAMED[name]

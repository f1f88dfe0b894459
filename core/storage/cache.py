"""A local cache in front of a remote store, so that `list`, `info` and a backup that finds
nothing changed do not download a repository's index and manifests again.

Only objects that are never rewritten under their name are cached: index files (named by the
hash of their bytes) and manifests (one per backup id). A cached copy is used only for the
object's current etag (as the last listing, or else a HEAD, reports it) and only when its own
BLAKE3 checksum, kept beside it, still matches: a damaged, stale or half-written cache entry is
fetched again, never trusted. The cache lives under the user's cache directory and is safe to
delete at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3

from core.storage.base import Capabilities, ObjectInfo, ObjectStore
from core.storage.local import atomic_write

#: Names whose bytes never change once written.
IMMUTABLE = re.compile(r"(^|/)(index/[0-9a-f]{64}|backup_[^/]+/data/manifest\.zst)$")
ENV_CACHE = "NEXUS_BACKUP_CACHE_DIR"
_SUM = 32


def cache_dir() -> Path:
    """`$NEXUS_BACKUP_CACHE_DIR`, else `$XDG_CACHE_HOME/nexus-backup/objects`."""
    chosen = os.environ.get(ENV_CACHE)
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "nexus-backup" / "objects"


class _Shared:
    """What every view of one cached store shares: the directory and the etags last listed."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.etags: dict[str, str] = {}
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0


class CachedStore:
    """`inner` with its immutable objects' reads served from a local cache when still valid."""

    def __init__(self, inner: ObjectStore, directory: Path, *, _shared: _Shared | None = None):
        self._inner = inner
        self._shared = _shared or _Shared(directory)

    def __repr__(self) -> str:
        return f"CachedStore({self._inner!r})"

    def __getattr__(self, attr: str) -> object:
        return getattr(self._inner, attr)

    @property
    def url(self) -> str:
        return self._inner.url

    @property
    def capabilities(self) -> Capabilities:
        """The inner store's, as they stand (a probe may learn more after opening)."""
        return self._inner.capabilities

    @property
    def hits(self) -> int:
        return self._shared.hits

    @property
    def misses(self) -> int:
        return self._shared.misses

    def sub(self, prefix: str) -> CachedStore:
        return CachedStore(self._inner.sub(prefix), self._shared.directory, _shared=self._shared)

    @property
    def inner(self) -> ObjectStore:
        return self._inner

    def over(self, inner: ObjectStore) -> CachedStore:
        """This cache (its files, etags and counts) in front of `inner`, a wrapper of the
        store it fronts (issue 15's request counter, which counts what reaches the remote)."""
        return CachedStore(inner, self._shared.directory, _shared=self._shared)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for obj in self._inner.list(prefix):
            if obj.etag and IMMUTABLE.search(obj.name):
                with self._shared.lock:
                    self._shared.etags[self._key(obj.name)] = obj.etag
            yield obj

    def get(self, name: str) -> bytes:
        if not IMMUTABLE.search(name):
            return self._inner.get(name)
        key = self._key(name)
        with self._shared.lock:
            etag = self._shared.etags.get(key)
        if not etag:
            etag = self._inner.stat(name).etag
        path = self._path(key, etag)
        data = self._read_checked(path)
        if data is not None:
            with self._shared.lock:
                self._shared.hits += 1
            return data
        data = self._inner.get(name)
        with self._shared.lock:
            self._shared.misses += 1
        self._write(path, data)
        return data

    def delete(self, name: str) -> None:
        self._inner.delete(name)
        with self._shared.lock:
            self._shared.etags.pop(self._key(name), None)

    def _key(self, name: str) -> str:
        return f"{self._inner.url.rstrip('/')}/{name}"

    def _path(self, key: str, etag: str) -> Path:
        digest = hashlib.sha256(f"{key}\0{etag}".encode()).hexdigest()
        return self._shared.directory / digest[:2] / digest

    @staticmethod
    def _read_checked(path: Path) -> bytes | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        body = raw[_SUM:]
        if len(raw) < _SUM or blake3.blake3(body).digest() != raw[:_SUM]:
            with contextlib.suppress(OSError):
                path.unlink()  # damaged or torn: fetched again
            return None
        return body

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        """Best effort: a cache that cannot be written only costs a download next time."""
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            atomic_write(path, blake3.blake3(data).digest() + data)

"""A store of objects as files under one local directory, created readable by their owner only.

Every write is a temp file, fsync and rename (or link, for create-if-absent), so a reader
sees an object whole or not at all and a crash leaves at worst a temp file that
`remove_partials` finds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import secrets
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

from core.storage.base import (
    TMP_MARK,
    Capabilities,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    check_name,
)

_ABSENT = (errno.ENOENT, errno.ENOTDIR)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    tmp = path.with_name(f"{path.name}{TMP_MARK}{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temp file, fsync and rename: readers see the old or
    the new content, never a torn one, and a crash leaves at worst a stray temp file."""
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_create(path: Path, data: bytes, *, mode: int = 0o600) -> bool:
    """Like atomic_write, but only if `path` does not exist (a hard link cannot replace):
    False when it does."""
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    fsync_dir(path.parent)
    return True


def _etag(st: os.stat_result) -> str:
    """A rewrite is a rename of a new file: a new inode, whatever the clock says."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _absent(exc: OSError, name: str) -> ObjectNotFound:
    return ObjectNotFound(f"object {name!r} not found")


class LocalReader:
    """Keeps a few packs open per thread for one operation that reads many ranges, instead
    of opening a pack per chunk. `close()` closes them all, so no deleted pack is kept alive
    afterwards."""

    PER_THREAD = 8

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._local = threading.local()
        self._all: list[io.FileIO] = []
        self._lock = threading.Lock()

    def _file(self, name: str) -> io.FileIO:
        cache: OrderedDict[str, io.FileIO] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = OrderedDict()
        f = cache.get(name)
        if f is None:
            try:
                f = io.FileIO(self._store.path(name), "r")
            except OSError as exc:
                if exc.errno in _ABSENT:
                    raise _absent(exc, name) from None
                raise
            with self._lock:
                self._all.append(f)
            cache[name] = f
            if len(cache) > self.PER_THREAD:
                cache.popitem(last=False)[1].close()
        else:
            cache.move_to_end(name)
        return f

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        data = os.pread(self._file(name).fileno(), length, offset)
        if len(data) != length:
            raise EOFError(f"{name}: short read at {offset} ({len(data)} of {length} bytes)")
        return data

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return [self.get_range(name, off, length) for off, length in ranges]

    def close(self) -> None:
        with self._lock:
            for f in self._all:
                f.close()
            self._all.clear()

    def __enter__(self) -> LocalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore:
    """Objects as files under one directory, created readable by their owner only."""

    def __init__(self, base: Path | str, *, create: bool = True) -> None:
        self._base = Path(base)
        self.capabilities = Capabilities(local_root=self._base, conditional_create=True)
        if create:
            self.prepare()

    def __repr__(self) -> str:
        return f"LocalStore({str(self._base)!r})"

    @property
    def url(self) -> str:
        return str(self._base)

    def sub(self, prefix: str) -> LocalStore:
        return LocalStore(self._base / check_name(prefix.rstrip("/")), create=False)

    def prepare(self) -> None:
        """Create the directory and its missing parents, each readable by its owner only."""
        missing = []
        directory = self._base
        while not directory.exists() and directory.parent != directory:
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=0o700)
        with contextlib.suppress(OSError):
            self._base.chmod(0o700)

    def path(self, name: str) -> Path:
        return self._base / check_name(name)

    def _retrying(self, path: Path, write) -> object:
        """Run `write()`, creating the object's directories when they are missing: a
        concurrent delete may prune an (empty) directory between our mkdir and our write."""
        for _attempt in range(50):
            try:
                return write()
            except FileNotFoundError:
                self._mkdirs(path.parent)
        return write()

    def put(self, name: str, data: bytes) -> None:
        path = self.path(name)
        self._retrying(path, lambda: atomic_write(path, data))

    def put_new(self, name: str, data: bytes) -> None:
        path = self.path(name)
        if not self._retrying(path, lambda: atomic_create(path, data)):
            raise ObjectExists(f"object {name!r} already exists")

    def put_if_unchanged(self, name: str, data: bytes, etag: str | None) -> None:
        """Under an flock of the object's directory (every writer here takes it; nothing is
        left behind): the etag compared, then the atomic write."""
        path = self.path(name)
        if not path.parent.is_dir():
            self._mkdirs(path.parent)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current: str | None = self.stat(name).etag
            except ObjectNotFound:
                current = None
            if current != etag:
                raise ObjectExists(f"object {name!r} was changed by another writer")
            atomic_write(path, data)
        finally:
            os.close(fd)

    def put_file(self, name: str, path: Path) -> None:
        target = self.path(name)

        def move() -> None:
            if not os.path.exists(path):
                raise ValueError(f"{path}: the file to store is gone")
            os.replace(path, target)

        self._retrying(target, move)
        fsync_dir(target.parent)

    def spool(self) -> Path:
        """`{base}/spool/`: temp files there carry TMP_MARK so no listing ever shows them."""
        path = self._base / "spool"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists() and directory != self._base:
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=0o700)
            fsync_dir(d.parent)

    def get(self, name: str) -> bytes:
        try:
            with open(self.path(name), "rb") as f:
                return f.read()
        except OSError as exc:
            if exc.errno in _ABSENT:
                raise _absent(exc, name) from None
            raise

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        with LocalReader(self) as reader:
            return reader.get_range(name, offset, length)

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        with LocalReader(self) as reader:
            return reader.read_ranges(name, ranges)

    def reader(self) -> LocalReader:
        return LocalReader(self)

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def stat(self, name: str) -> ObjectInfo:
        try:
            st = self.path(name).stat()
        except OSError as exc:
            if exc.errno in _ABSENT:
                raise _absent(exc, name) from None
            raise
        return ObjectInfo(name, st.st_size, st.st_mtime, _etag(st))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every complete object whose name starts with `prefix` (temp files excluded)."""
        if not prefix:
            start = self._base
        elif prefix.endswith("/"):
            start = self._base / prefix.rstrip("/")
        else:  # `packs` also names `packsfoo`: start from the directory that holds both
            start = (self._base / prefix).parent
        yield from self._walk(start, prefix)

    def _walk(self, directory: Path, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        # a directory sorts as `name/`, so the walk yields names in plain lexicographic order
        # (`a-b` before `a/x`), as an object store lists them
        for entry in sorted(entries, key=lambda e: e.name + "/" * e.is_dir(follow_symlinks=False)):
            if TMP_MARK in entry.name:
                continue
            rel = os.path.relpath(entry.path, self._base).replace(os.sep, "/")
            if entry.is_dir(follow_symlinks=False):
                if rel.startswith(prefix) or prefix.startswith(rel + "/"):
                    yield from self._walk(Path(entry.path), prefix)
            elif entry.is_file(follow_symlinks=False) and rel.startswith(prefix):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield ObjectInfo(rel, st.st_size, st.st_mtime, _etag(st))

    def children(self, prefix: str = "") -> list[str]:
        """Names directly below a directory-like prefix (like a delimiter listing on S3)."""
        directory = self._base / prefix.rstrip("/") if prefix else self._base
        try:
            return sorted(n for n in os.listdir(directory) if TMP_MARK not in n)
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, name: str) -> None:
        """Remove an object (absent is fine) and the directories it leaves empty."""
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)
        parent = path.parent
        while parent != self._base:
            try:
                parent.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise
            parent = parent.parent

    def rename_child(self, name: str, new_name: str) -> None:
        """Rename a directory-like child (a project) in one rename(2), never over an existing
        one (a non-empty one fails; an empty one is checked first). The only rename a store
        offers: object storage has none, so callers ask with getattr."""
        src, dst = self.path(name.rstrip("/")), self.path(new_name.rstrip("/"))
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(errno.EEXIST, "already exists", str(dst))
        os.rename(src, dst)
        fsync_dir(src.parent)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under a directory-like prefix, temp files included."""
        path = self.path(prefix.rstrip("/"))
        shutil.rmtree(path, ignore_errors=True)
        fsync_dir(path.parent)

    def remove_partials(self) -> int:
        """Remove stray temp files left by a crash (under an exclusive lock)."""
        removed = 0
        for dirpath, _dirs, files in os.walk(self._base):
            for f in files:
                if TMP_MARK in f:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(dirpath, f))
                        removed += 1
        return removed

    def read_only_reason(self) -> str | None:
        """Asked of the store's directory, else of its nearest existing parent."""
        probe = self._base
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        try:
            if os.statvfs(probe).f_flag & os.ST_RDONLY:
                return "read-only file system"
        except OSError:
            return None  # unknown: let the operations say what is wrong
        if not os.access(probe, os.W_OK | os.X_OK):
            return "you may not write to it"
        return None

    def free_bytes(self) -> int | None:
        try:
            st = os.statvfs(self._base)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

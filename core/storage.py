"""Where a project's repository objects live: a small put/get/list/delete interface.

The engine names objects by relative, '/'-separated names (``packs/ab/ab12...``,
``index/...``, ``backup_{id}/metadata.json``) and never touches the filesystem of the
repository directly, so that an object-store backend (S3 and friends) slots in beside
:class:`LocalStore` without changes to the engine.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

TMP_MARK = ".tmp-"


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    name: str
    size: int
    mtime: float


class ObjectStore(Protocol):
    """The whole of what the engine needs from storage. Writes are atomic: an object is
    either absent or complete, never half-written, and durable once `put` returns."""

    def put(self, name: str, data: bytes) -> None: ...

    def put_file(self, name: str, path: Path) -> None:
        """Store a complete, fsynced local file under `name`, consuming it (a rename
        for a local store, an upload for a remote one)."""
        ...

    def spool(self) -> Path:
        """A local directory for files on their way into `put_file` (on the same
        filesystem as the store when it is local, so that `put_file` is a rename)."""
        ...

    def get(self, name: str) -> bytes: ...

    def get_range(self, name: str, offset: int, length: int) -> bytes: ...

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, name: str) -> None: ...

    def children(self, prefix: str = "") -> list[str]: ...


def _check_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"invalid object name {name!r}")
    return name


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write `data` to `path` through a temp file, fsync and rename: readers see the old or
    the new content, never a torn one, and a crash leaves at worst a stray temp file."""
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
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


class LocalStore:
    """Objects as files under one directory, created readable by their owner only."""

    def __init__(self, base: Path | str, *, create: bool = True) -> None:
        self.base = Path(base)
        if create:
            self.base.mkdir(parents=True, exist_ok=True, mode=0o700)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.base)!r})"

    def path(self, name: str) -> Path:
        return self.base / _check_name(name)

    def put(self, name: str, data: bytes) -> None:
        path = self.path(name)
        for _attempt in range(50):
            try:
                atomic_write(path, data)
                return
            except FileNotFoundError:
                # A concurrent delete may prune the (empty) directory between our mkdir and
                # our write: create it again and retry.
                self._mkdirs(path.parent)
        atomic_write(path, data)

    def put_file(self, name: str, path: Path) -> None:
        target = self.path(name)
        for _attempt in range(50):
            try:
                os.replace(path, target)
                break
            except FileNotFoundError:
                if not os.path.exists(path):
                    raise
                self._mkdirs(target.parent)
        else:
            os.replace(path, target)
        fsync_dir(target.parent)

    def spool(self) -> Path:
        """`{base}/spool/`: temp files there carry TMP_MARK so no listing ever shows them."""
        path = self.base / "spool"
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists() and directory != self.base:
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=0o700)
            fsync_dir(d.parent)

    def get(self, name: str) -> bytes:
        with open(self.path(name), "rb") as f:
            return f.read()

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        fd = os.open(self.path(name), os.O_RDONLY)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise EOFError(f"{name}: short read at {offset} ({len(data)} of {length} bytes)")
        return data

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every complete object whose name starts with `prefix` (temp files excluded)."""
        start = self.base / prefix.rstrip("/") if prefix else self.base
        if prefix and not prefix.endswith("/") and not start.is_dir():
            start = start.parent
        yield from self._walk(start, prefix)

    def _walk(self, directory: Path, prefix: str) -> Iterator[ObjectInfo]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        except NotADirectoryError:
            return
        for entry in sorted(entries, key=lambda e: e.name):
            if TMP_MARK in entry.name:
                continue
            rel = os.path.relpath(entry.path, self.base).replace(os.sep, "/")
            if entry.is_dir(follow_symlinks=False):
                if rel.startswith(prefix) or prefix.startswith(rel + "/"):
                    yield from self._walk(Path(entry.path), prefix)
            elif entry.is_file(follow_symlinks=False) and rel.startswith(prefix):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield ObjectInfo(rel, st.st_size, st.st_mtime)

    def children(self, prefix: str = "") -> list[str]:
        """Names directly below a directory-like prefix (like a delimiter listing on S3)."""
        directory = self.base / prefix.rstrip("/") if prefix else self.base
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
        while parent != self.base:
            try:
                parent.rmdir()
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    break
                raise
            parent = parent.parent

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under a directory-like prefix, temp files included."""
        path = self.path(prefix.rstrip("/"))
        shutil.rmtree(path, ignore_errors=True)
        fsync_dir(path.parent)

    def temp_files(self, prefix: str = "") -> Iterator[Path]:
        """Stray temp files left by a crash, for cleanup under an exclusive lock."""
        start = self.base / prefix if prefix else self.base
        for dirpath, _dirs, files in os.walk(start):
            for f in files:
                if TMP_MARK in f:
                    yield Path(dirpath) / f

    def free_bytes(self) -> int:
        st = os.statvfs(self.base)
        return st.f_bavail * st.f_frsize

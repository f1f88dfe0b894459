"""A store of objects as files under one local directory, created readable by their owner only.

Every write is a temp file, fsync and rename (or link, for create-if-absent), so a reader
sees an object whole or not at all and a crash leaves at worst a temp file that
`remove_partials` finds.

Nothing is written or deleted through a symbolic link below the repository's own directory
(the `anchor`, the directory the store was opened on, which may itself be a link): every
write and delete reaches its directory by file descriptors, one component at a time with
O_NOFOLLOW, and acts relative to that descriptor, so a directory swapped for a link at any
moment is refused, never followed (invariant I12, docs/design.md).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
import secrets
import shutil
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from core.storage.base import (
    TMP_MARK,
    Capabilities,
    NotAnObject,
    ObjectExists,
    ObjectInfo,
    ObjectNotFound,
    StoreError,
    check_name,
    check_range,
    spooled_file_gone,
)

_ABSENT = (errno.ENOENT, errno.ENOTDIR)
#: Ranges below this size that follow each other are read together, up to MERGED_READ
#: bytes (a copy of each out of the one read costs less than a syscall each; large chunks
#: are read alone, without that copy).
SMALL_RANGE = 64 * 1024
MERGED_READ = 1024 * 1024
T = TypeVar("T")


#: renameat2(2)'s flag: fail with EEXIST rather than replace what is at the new name.
RENAME_NOREPLACE = 1
_renameat2: Callable[..., int] | bool | None = False  # False: not looked up yet


def _rename_noreplace(dir_fd: int, src: str, dst: str, shown: str) -> None:
    """Rename `src` to `dst` in `dir_fd`, never over what is at `dst`: renameat2 with
    RENAME_NOREPLACE, so a directory another process makes at `dst` between a check and the
    rename (an empty one: rename(2) replaces it silently, and that process then writes into
    what was renamed) makes it fail with EEXIST. Where the kernel or the filesystem has no
    such rename (ENOSYS, EINVAL: NFS), a plain rename, after the caller's check."""
    global _renameat2
    if _renameat2 is False:
        import ctypes

        fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
        if fn is not None:
            c_int, c_path = ctypes.c_int, ctypes.c_char_p
            fn.argtypes = [c_int, c_path, c_int, c_path, ctypes.c_uint]
            fn.restype = ctypes.c_int
        _renameat2 = fn
    if callable(_renameat2):
        import ctypes

        if _renameat2(dir_fd, os.fsencode(src), dir_fd, os.fsencode(dst), RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), shown)
    os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


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
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _replace_at(fd, path.name, data, mode)
    finally:
        os.close(fd)


def _replace_at(dir_fd: int, name: str, data: bytes, mode: int = 0o600) -> None:
    """`atomic_write` of `name` in the directory `dir_fd`."""
    tmp = _write_temp_at(dir_fd, name, data, mode)
    try:
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def _etag(st: os.stat_result) -> str:
    """A rewrite is a rename of a new file: a new inode, whatever the clock says."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _absent(exc: OSError, name: str) -> ObjectNotFound:
    return ObjectNotFound(f"object {name!r} not found")


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: An object is opened without blocking (a fifo at its name would block the reader for ever:
#: an unlock, a run-due holding up every project) and read only when it is a regular file.
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def _open_object(path: Path, name: str) -> io.FileIO:
    """The object at `path`, open for reading: ObjectNotFound when absent, NotAnObject when
    what is there is not a regular file (a directory, a fifo, a device)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        if exc.errno in _ABSENT:
            raise _absent(exc, name) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotAnObject(
                f"object {name!r} is not a regular file (mode {stat.filemode(mode)}): never read"
            )
    except BaseException:
        os.close(fd)
        raise
    return io.FileIO(fd, "r", closefd=True)


def _refused(where: Path) -> StoreError:
    return StoreError(
        f"{where}: a symbolic link (or a file) where the repository has a directory: "
        "nothing is written or deleted through it"
    )


def _write_temp_at(dir_fd: int, name: str, data: bytes, mode: int) -> str:
    """A temp file beside `name` in the directory `dir_fd`, written and fsynced."""
    tmp = f"{name}{TMP_MARK}{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.close(fd)
    return tmp


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
            f = _open_object(self._store.path(name), name)
            with self._lock:
                self._all.append(f)
            cache[name] = f
            if len(cache) > self.PER_THREAD:
                cache.popitem(last=False)[1].close()
        else:
            cache.move_to_end(name)
        return f

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        check_range(name, offset, length)
        data = os.pread(self._file(name).fileno(), length, offset)
        if len(data) != length:
            raise EOFError(f"{name}: short read at {offset} ({len(data)} of {length} bytes)")
        return data

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Each range's bytes; a run of small ranges that follow each other (the chunks of
        small files, stored side by side) is one pread, cut up after."""
        out: list[bytes] = []
        i = 0
        while i < len(ranges):
            off, length = ranges[i]
            j, end = i + 1, off + length
            if length < SMALL_RANGE:
                while (
                    j < len(ranges)
                    and ranges[j][0] == end
                    and ranges[j][1] < SMALL_RANGE
                    and end + ranges[j][1] - off <= MERGED_READ
                ):
                    end += ranges[j][1]
                    j += 1
            if j == i + 1:
                out.append(self.get_range(name, off, length))
            else:
                data = self.get_range(name, off, end - off)
                for start, n in ranges[i:j]:
                    out.append(data[start - off : start - off + n])
            i = j
        return out

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

    def __init__(
        self, base: Path | str, *, create: bool = True, anchor: Path | None = None
    ) -> None:
        self._base = Path(base)
        #: The directory the store was opened on (a sub-store's is its parent's): writes
        #: and deletes follow no symbolic link below it.
        self._anchor = self._base if anchor is None else anchor
        self._below = self._base.relative_to(self._anchor).parts
        self.capabilities = Capabilities(local_root=self._base, conditional_create=True)
        if create:
            self.prepare()

    def __repr__(self) -> str:
        return f"LocalStore({str(self._base)!r})"

    @property
    def url(self) -> str:
        return str(self._base)

    def sub(self, prefix: str) -> LocalStore:
        return LocalStore(
            self._base / check_name(prefix.rstrip("/")), create=False, anchor=self._anchor
        )

    def prepare(self) -> None:
        """Create the directory and its missing parents, each readable by its owner only:
        the anchor's by path (the user named it), those below it without following a link."""
        missing = []
        directory = self._anchor
        while not directory.exists() and directory.parent != directory:
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            with contextlib.suppress(FileExistsError):
                d.mkdir(mode=0o700)
        with self._dirs(create=True, own=True) as fds, contextlib.suppress(OSError):
            os.fchmod(fds[-1], 0o700)

    def path(self, name: str) -> Path:
        return self._base / check_name(name)

    # --- reaching a directory without following a link (I12) ----------------------------

    @contextlib.contextmanager
    def _dirs(
        self, inner: Sequence[str] = (), *, create: bool = False, own: bool = False
    ) -> Iterator[list[int]]:
        """Descriptors of the anchor, of each directory down to this store's, then of each
        of `inner` below it, every one opened with O_NOFOLLOW: a link or a file in the way
        is refused (StoreError), a missing directory is FileNotFoundError, or with `create`
        made, owner-only: those of `inner` only, unless `own` (`prepare`): a write never
        makes the store's own directory again, so a deleted project is not brought back.
        Closed on exit."""
        fds = [os.open(self._anchor, _DIR_FLAGS)]
        try:
            where = self._anchor
            for i, part in enumerate((*self._below, *inner)):
                where = where / part
                make = create and (own or i >= len(self._below))
                fds.append(self._open_dir(fds[-1], part, where, make))
            yield fds
        finally:
            for fd in fds:
                os.close(fd)

    @staticmethod
    def _open_dir(parent: int, part: str, where: Path, create: bool) -> int:
        for _attempt in range(2):
            try:
                return os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    raise
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _refused(where) from None
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o700, dir_fd=parent)
            os.fsync(parent)
        return os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)

    def _write_at(self, name: str, write: Callable[[int, str], T]) -> T:
        """`write(dir_fd, file_name)` in the object's directory, made when missing; again
        when a concurrent delete pruned that (empty) directory meanwhile."""
        *inner, leaf = check_name(name).split("/")
        for attempt in range(50):
            try:
                with self._dirs(inner, create=True) as fds:
                    return write(fds[-1], leaf)
            except FileNotFoundError:
                if attempt == 49:
                    raise
        raise AssertionError("unreachable")

    # --- writes ----------------------------------------------------------------------------

    def put(self, name: str, data: bytes) -> None:
        self._write_at(name, lambda fd, leaf: _replace_at(fd, leaf, data))

    def put_new(self, name: str, data: bytes) -> None:
        def create(fd: int, leaf: str) -> bool:
            tmp = _write_temp_at(fd, leaf, data, 0o600)
            try:
                os.link(tmp, leaf, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)
            except FileExistsError:
                return False
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=fd)
            os.fsync(fd)
            return True

        if not self._write_at(name, create):
            raise ObjectExists(f"object {name!r} already exists")

    def put_if_unchanged(self, name: str, data: bytes, etag: str | None) -> None:
        """Under an flock of the object's directory (every writer here takes it; nothing is
        left behind): the etag compared, then the atomic write."""

        def write(fd: int, leaf: str) -> None:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current: str | None = _etag(os.stat(leaf, dir_fd=fd, follow_symlinks=False))
            except FileNotFoundError:
                current = None
            if current != etag:
                raise ObjectExists(f"object {name!r} was changed by another writer")
            _replace_at(fd, leaf, data)

        self._write_at(name, write)

    def put_file(self, name: str, path: Path) -> None:
        def move(fd: int, leaf: str) -> None:
            if not os.path.exists(path):
                raise spooled_file_gone(path)
            os.replace(path, leaf, dst_dir_fd=fd)
            os.fsync(fd)

        self._write_at(name, move)

    def spool(self) -> Path:
        """`{base}/spool/`: temp files there carry TMP_MARK so no listing ever shows them."""
        with self._dirs(("spool",), create=True):
            return self._base / "spool"

    def get(self, name: str) -> bytes:
        with _open_object(self.path(name), name) as f:
            return f.readall()

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
        """Remove an object (absent is fine) and the directories it leaves empty, up to the
        store's own."""
        *inner, leaf = check_name(name).split("/")
        try:
            with self._dirs(inner) as fds:
                try:
                    os.unlink(leaf, dir_fd=fds[-1])
                except FileNotFoundError:
                    return
                os.fsync(fds[-1])
                below = len(fds) - len(inner)  # fds[below - 1] is the store's directory
                for i in range(len(fds) - 1, below - 1, -1):
                    try:
                        os.rmdir(inner[i - below], dir_fd=fds[i - 1])
                    except OSError as exc:
                        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                            break
                        raise
        except FileNotFoundError:
            return

    def rename_child(self, name: str, new_name: str) -> None:
        """Rename a directory-like child (a project) in one rename(2), never over an existing
        one (a non-empty one fails; an empty one is checked first). The only rename a store
        offers: object storage has none, so callers ask with getattr."""
        src, dst = check_name(name.rstrip("/")), check_name(new_name.rstrip("/"))
        if "/" in src or "/" in dst:
            raise ValueError("a child is one name")
        with self._dirs() as fds:
            try:
                os.stat(dst, dir_fd=fds[-1], follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise FileExistsError(errno.EEXIST, "already exists", str(self._base / dst))
            _rename_noreplace(fds[-1], src, dst, str(self._base / dst))
            os.fsync(fds[-1])

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under a directory-like prefix, temp files included (a link
        there is removed, never followed)."""
        *inner, leaf = check_name(prefix.rstrip("/")).split("/")
        try:
            with self._dirs(inner) as fds:
                shutil.rmtree(leaf, dir_fd=fds[-1], ignore_errors=True)
                with contextlib.suppress(OSError):
                    os.unlink(leaf, dir_fd=fds[-1])  # a link or a file rmtree will not take
                os.fsync(fds[-1])
        except FileNotFoundError:
            return

    def remove_empty_dirs(self) -> None:
        """Remove the directories below the store's that hold nothing at all, deepest first
        (a kill between an object's unlink and its directory's rmdir leaves them): never one
        that holds anything, never a link (rmdir does not take one)."""
        try:
            with self._dirs() as fds:
                for _dir, dirs, _files, dir_fd in os.fwalk(".", dir_fd=fds[-1], topdown=False):
                    for d in dirs:
                        with contextlib.suppress(OSError):  # not empty, a link, or gone
                            os.rmdir(d, dir_fd=dir_fd)
        except FileNotFoundError:
            return

    def remove_partials(self) -> int:
        """Remove stray temp files left by a crash (under an exclusive lock)."""
        removed = 0
        try:
            with self._dirs() as fds:
                for _dir, _dirs, files, dir_fd in os.fwalk(".", dir_fd=fds[-1]):
                    for f in files:
                        if TMP_MARK in f:
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(f, dir_fd=dir_fd)
                                removed += 1
        except FileNotFoundError:
            return 0
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

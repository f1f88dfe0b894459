"""Confinement: directories opened beneath a trusted one without ever following a symlink.

A path checked once and used later by name can be redirected in between (a directory swapped
for a symlink). Opening each component with ``openat(O_NOFOLLOW | O_DIRECTORY)`` relative to
the descriptor of its parent, and then working through the descriptor, cannot be redirected:
every later operation happens in the directory that was checked, wherever it is moved.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator

from core.errors import InvalidInput, NexusError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _parts(rel: bytes) -> list[bytes]:
    parts = [p for p in rel.split(b"/") if p and p != b"."]
    if b".." in parts:
        raise InvalidInput(f"path {os.fsdecode(rel)!r} leaves its directory")
    return parts


def open_dir_at(dir_fd: int, rel: bytes, *, create: bool = False, mode: int = 0o700) -> int:
    """A descriptor of `rel` beneath the directory `dir_fd`, each component opened without
    following a symlink (ELOOP / ENOTDIR when one is met); missing ones made with `create`."""
    fd = os.dup(dir_fd)
    try:
        for part in _parts(rel):
            try:
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
                nxt = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def dir_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _id_of(path: os.PathLike[str] | str, *, follow: bool = True) -> tuple[int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=follow)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def dir_ids(paths: Iterable[os.PathLike[str] | str]) -> frozenset[tuple[int, int]]:
    """(device, inode) of those of `paths` that exist: what `lies_in` and a walk's skip
    compare with."""
    return frozenset(i for i in map(_id_of, paths) if i is not None)


def every_dir_id(
    tops: Iterable[os.PathLike[str] | str], prune: frozenset[tuple[int, int]] = frozenset()
) -> frozenset[tuple[int, int]]:
    """(device, inode) of `tops` and of every directory beneath them (links not followed),
    not descending into those in `prune`: what a bind mount of any of them is known by."""
    found = set()
    for top in tops:
        for dirpath, dirs, _files in os.walk(top):
            if (here := _id_of(dirpath, follow=False)) is not None:
                found.add(here)
            if prune:
                dirs[:] = [
                    d for d in dirs if _id_of(os.path.join(dirpath, d), follow=False) not in prune
                ]
    return frozenset(found)


def open_data_dir(path: os.PathLike[str] | str) -> int:
    """The data directory, opened once (it may be a link the user named): the backup reads
    through this descriptor only, and is judged by it."""
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(f"data_dir {os.fsdecode(path)}: {exc.strerror}") from None


#: Opens a directory to look at it, asking no permission on it (fstat, and `..` from it).
LOOK = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


def lies_in(
    fd: int, dirs: frozenset[tuple[int, int]], marked: Callable[[int], bool] | None = None
) -> bool:
    """Whether the directory open as `fd` is one of `dirs` (device, inode), or one `marked`
    says yes to (given each directory's descriptor), or lies beneath one: told from the
    descriptor itself and the directories above it, reached by `..` up to `/`, so that no
    path's symlinks, no swap since it was resolved and no bind mount can hide where it is.
    An ancestor this process may not search ends the climb (nothing of ours lies above one
    we could not have made)."""
    cur = os.open(".", LOOK, dir_fd=fd)
    try:
        while True:
            here = os.fstat(cur)
            if (here.st_dev, here.st_ino) in dirs or (marked is not None and marked(cur)):
                return True
            try:
                up = os.open("..", LOOK, dir_fd=cur)
            except OSError:
                return False
            os.close(cur)
            cur = up
            st = os.fstat(cur)
            if (st.st_dev, st.st_ino) == (here.st_dev, here.st_ino):
                return False  # `/`
    finally:
        os.close(cur)


def open_dir_beneath(
    roots: Iterable[str | os.PathLike[str]],
    path: str | os.PathLike[str],
    *,
    what: str,
    create: bool = False,
) -> int:
    """Open `path` (absolute) from the first of `roots` it lies under, without following any
    symlink below that root. Raises NexusError (403 in the API) when it lies under none, or
    when a component below the root is a symlink or not a directory."""
    target = os.path.abspath(os.fsencode(path))
    for root in roots:
        base = os.path.realpath(os.fsencode(root))
        if target != base and not target.startswith(base.rstrip(b"/") + b"/"):
            continue
        root_fd = os.open(base, DIR_FLAGS)
        try:
            return open_dir_at(root_fd, os.path.relpath(target, base), create=create)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Outside(
                    f"{what} {os.fsdecode(target)}: a component is a symlink or not a directory"
                ) from None
            raise
        finally:
            os.close(root_fd)
    raise Outside(f"{what} {os.fsdecode(target)} is outside the allowed directories")


class Outside(NexusError):
    """A path that would leave its confinement."""

    exit_code = 1
    http_status = 403


class DirFds:
    """Descriptors of the directories beneath one top directory, by relative path, shared by
    the threads of one operation.

    Each is opened relative to a cached ancestor's descriptor, component by component,
    without following a symlink (`open_dir_at`), so a directory swapped for a symlink is
    refused, never entered. The number kept open is bounded (least recently used closed
    first), but a descriptor between `acquire` and `release` is never closed by another
    thread: one evicted is reopened the same safe way when next needed. The top descriptor
    belongs to the caller and is never closed here.
    """

    def __init__(self, top_fd: int, limit: int = 256) -> None:
        self.top = top_fd
        self.limit = limit
        self._fds: OrderedDict[bytes, int] = OrderedDict()
        self._refs: dict[int, int] = {}
        self._doomed: set[int] = set()  # forgotten while in use: closed on their last release
        self._lock = threading.Lock()

    def _hit(self, rel: bytes) -> int | None:
        fd = self._fds.get(rel)
        if fd is not None:
            self._refs[fd] = self._refs.get(fd, 0) + 1
            self._fds.move_to_end(rel)
        return fd

    def acquire(self, rel: bytes) -> int:
        """The descriptor of `rel` (b"" is the top), held until `release`. Raises OSError
        (ELOOP, ENOTDIR, ENOENT...) when a component is a symlink, not a directory or gone."""
        if not rel:
            return self.top
        with self._lock:
            fd = self._hit(rel)
            if fd is not None:
                return fd
            base, base_fd = rel, self.top
            while True:
                base = base.rpartition(b"/")[0]
                if not base:
                    break
                found = self._hit(base)
                if found is not None:
                    base_fd = found
                    break
        try:
            fd = open_dir_at(base_fd, rel[len(base) + 1 :] if base else rel)
        finally:
            self.release(base_fd)
        with self._lock:
            have = self._fds.get(rel)
            if have is not None:
                os.close(fd)
                fd = have
            else:
                self._fds[rel] = fd
            self._refs[fd] = self._refs.get(fd, 0) + 1
            self._fds.move_to_end(rel)
            self._evict()
        return fd

    def release(self, fd: int) -> None:
        if fd == self.top:
            return
        with self._lock:
            left = self._refs.get(fd, 0) - 1
            if left > 0:
                self._refs[fd] = left
                return
            self._refs.pop(fd, None)
            if fd in self._doomed:
                self._doomed.discard(fd)
                os.close(fd)

    @contextlib.contextmanager
    def at(self, rel: bytes) -> Iterator[int]:
        fd = self.acquire(rel)
        try:
            yield fd
        finally:
            self.release(fd)

    def _evict(self) -> None:
        """Close the least recently used descriptors not in use, down to the limit (the first
        free one is almost always at the front: no scan of the whole cache)."""
        while len(self._fds) > self.limit:
            free = next(((rel, fd) for rel, fd in self._fds.items() if fd not in self._refs), None)
            if free is None:
                return
            del self._fds[free[0]]
            os.close(free[1])

    def forget(self, rel: bytes) -> None:
        """`rel` and everything beneath it were removed or replaced: drop their descriptors."""
        prefix = rel + b"/"
        with self._lock:
            for key in [k for k in self._fds if k == rel or k.startswith(prefix)]:
                fd = self._fds.pop(key)
                if fd in self._refs:
                    self._doomed.add(fd)
                else:
                    os.close(fd)

    def close(self) -> None:
        """Every descriptor opened here (the operation is over; none is in use any more)."""
        with self._lock:
            for fd in [*self._fds.values(), *self._doomed]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._fds.clear()
            self._doomed.clear()
            self._refs.clear()

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
from collections.abc import Iterable

from .errors import InvalidInput, NexusError

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

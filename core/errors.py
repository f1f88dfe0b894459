"""The errors of nexus-backup: each one is one clear line for a person and an exit code."""

from __future__ import annotations

import errno
import os

from core.display import fs_text, name

#: What a path resolved against a current directory that was deleted is told.
CWD_GONE = (
    "the current directory no longer exists (it was deleted): cd to a directory that"
    " exists, or give absolute paths"
)


class NexusError(Exception):
    """Base of every error the core raises on purpose; `str()` is the one line shown."""

    exit_code = 1
    http_status = 400


class InvalidInput(NexusError):
    """A request that cannot be carried out as given (bad path, bad option)."""

    exit_code = 2
    http_status = 422


class NotFound(NexusError):
    """An unknown project or backup (or one deleted meanwhile)."""

    http_status = 404


class Busy(NexusError):
    """The project is locked by another operation that excludes this one."""

    http_status = 409


class Conflict(NexusError):
    """The backup is not in a state that allows the operation (not completed, being restored)."""

    http_status = 409


class Damaged(NexusError):
    """Repository data failed an integrity check."""

    exit_code = 4
    http_status = 409


class WrongPassword(NexusError):
    """No key of an encrypted project opens with the password given (or none was given):
    nothing is read beyond its config and key objects, nothing written, nothing locked.
    Exit code 12, as restic's; HTTP 423 (Locked: the project stays locked to the server),
    not 401, which is the bearer token's."""

    exit_code = 12
    http_status = 423


class TargetWrongPassword(WrongPassword):
    """A copy's target is encrypted and the password for it does not open it (by default
    the project's own password is tried: a target under another one needs its own)."""


class StorageFull(NexusError):
    """No space left on the repository or the restore target."""

    http_status = 507


class ReadOnly(NexusError):
    """The repository cannot be written (a read-only mount, a snapshot, no permission)."""


class Cancelled(NexusError):
    """The operation was cancelled by its caller."""


#: The errnos of a full disk (or quota, or file-size limit): StorageFull, however it is worded.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def storage_full(exc: BaseException) -> bool:
    """True for a full disk, whether it arrives raw (OSError) or already mapped."""
    return isinstance(exc, StorageFull) or (isinstance(exc, OSError) and exc.errno in FULL_ERRNOS)


def cwd_gone(exc: OSError) -> bool:
    """True when `exc` comes of a relative path (or getcwd itself, which names none) while
    the current directory is deleted: "no such file or directory" would blame the path."""
    if exc.errno != errno.ENOENT or (exc.filename and os.path.isabs(exc.filename)):
        return False
    try:
        os.getcwd()
    except OSError as gone:
        return gone.errno == errno.ENOENT
    return False


def describe_os_error(exc: OSError, what: str = "") -> str:
    """One line for an OSError: what failed, on which path, and why."""
    if cwd_gone(exc):
        return f"{what}: {CWD_GONE}" if what else CWD_GONE
    reason = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOENT: "no such file or directory",
        errno.ENOTDIR: "not a directory",
        errno.EISDIR: "is a directory",
        errno.EROFS: "read-only file system",
        errno.EFBIG: "file too large",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    if exc.errno and exc.strerror is None and str(exc):
        reason = str(exc)  # a store's own sentence (it names the bucket), its errno given to it
    path = exc.filename if exc.filename is not None else ""
    path = fs_text(path) if isinstance(path, bytes) else name(str(path)) if path else ""
    parts = [p for p in (what, path, reason) if p]
    return ": ".join(parts)


def from_os_error(exc: OSError, what: str = "") -> NexusError:
    """Map an OSError to the NexusError a person should see."""
    msg = describe_os_error(exc, what)
    if exc.errno in FULL_ERRNOS:
        return StorageFull(msg)
    if exc.errno == errno.ENOENT:
        return NotFound(msg)
    return NexusError(msg)

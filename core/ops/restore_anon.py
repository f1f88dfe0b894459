"""Files restored as anonymous inodes (Linux `O_TMPFILE`), given a name only once whole.

A file the restore creates (nothing at its name when planned) is written into an inode of
its directory that has no name yet, given its owner, xattrs, mode and times, then linked
under its name in one step (`linkat` of `/proc/self/fd/N`). Nothing partial is ever visible
by a name, a crash leaves no temp file behind (the filesystem frees an unlinked inode), and
the directory is changed once per file (one link) instead of three times (a temp name made,
renamed, and its entry dropped), which is what restoring many files in one directory costs.

Everything here is relative to a directory descriptor (confinement, design I7): the new inode
lies in that directory, and the name it gets is a single component in it. Where the system
lacks `O_TMPFILE` or `/proc` (or the filesystem refuses it), callers fall back to a temp name
and a rename.
"""

from __future__ import annotations

import errno
import os
import stat

_TMPFILE = getattr(os, "O_TMPFILE", 0)
ANON_FLAGS = os.O_WRONLY | _TMPFILE | os.O_CLOEXEC
_PROC_FD = "/proc/self/fd"
_PROC_FD_B = os.fsencode(_PROC_FD)
#: Errors of open(O_TMPFILE) meaning "not here" (the filesystem, or a kernel without it that
#: reads the flag as O_DIRECTORY): the caller writes a named temp file instead.
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOTSUP)


def supported() -> bool:
    """Whether this system can make and then name an anonymous file."""
    return bool(_TMPFILE) and os.path.isdir(_PROC_FD)


def process_umask() -> int | None:
    """This process's umask, read without changing it (`os.umask` would, for every thread),
    or None when the system does not say."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def creation_mode(mode: int, umask: int | None) -> int | None:
    """The permission bits to create a file with so that it likely needs no chmod
    afterwards: the entry's own, when the umask takes none of them away and none is a set-id
    or sticky bit (which a later chown would clear); None when a chmod is needed. A guess
    only (a default ACL of the directory decides instead of the umask): the caller compares
    the mode the file got."""
    bits = stat.S_IMODE(mode)
    if umask is None or bits & (umask | 0o7000):
        return None
    return bits


def open_anon(dir_fd: int, mode: int) -> int | None:
    """A new nameless file in the directory `dir_fd`, open for writing; None when the
    filesystem cannot make one (then nothing was made); ENOENT when the directory was
    removed meanwhile."""
    try:
        return os.open(".", ANON_FLAGS, mode, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            return None
        if exc.errno == errno.EPERM:
            # Linux says EPERM, not ENOENT, for a directory removed meanwhile: said as the
            # named temp file's open says it. Any other refusal: that open tells why.
            if os.fstat(dir_fd).st_nlink == 0:
                raise FileNotFoundError(errno.ENOENT, "its directory was removed") from None
            return None
        raise


def link_anon(fd: int, dir_fd: int, name: bytes) -> None:
    """Give the nameless file `fd` the name `name` in the directory `dir_fd`. Raises
    FileExistsError when something has that name (nothing is replaced), an OSError of ENOENT
    when the directory was removed meanwhile."""
    os.link(b"%s/%d" % (_PROC_FD_B, fd), name, dst_dir_fd=dir_fd, follow_symlinks=True)

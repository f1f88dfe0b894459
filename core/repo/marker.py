"""What marks a directory as a nexus-backup repository, of any root, version or cipher.

A restore knows its own repository by device and inode; another one kept inside its target
(a host's repository for other machines under /srv, a copy-to twin, a root of another user)
it can only know by what it holds: a project directory holds a `config.json` whose `format`
is ours (plain JSON in every format, encrypted ones included: §1.1), and a repository's top
holds `backups/` with such a project in it. A restore never deletes, replaces or writes
inside either (design I4).
"""

from __future__ import annotations

import json
import os
import stat

from core.config import PROJECT_CONFIG, PROJECTS

#: config.json's `format`: what every version of this program writes there.
FORMAT_NAME = "nexus-backup"
#: A config.json is well under a KiB; anything larger is not ours.
_CONFIG_MAX = 64 * 1024
#: Projects looked at in a `backups/` directory: every entry of ours is a project, so the
#: first few tell; a user's own `backups/` with thousands of entries is not read through.
_LOOK_AT = 16
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def is_project_dir(dir_fd: int) -> bool:
    """Whether the directory open as `dir_fd` holds a regular config.json of ours (read
    without following a link or blocking on a fifo)."""
    try:
        fd = os.open(PROJECT_CONFIG, _FILE, dir_fd=dir_fd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _CONFIG_MAX:
            return False
        raw = os.read(fd, _CONFIG_MAX)
    except OSError:
        return False
    finally:
        os.close(fd)
    try:
        config = json.loads(raw)
    except ValueError:
        return False
    return isinstance(config, dict) and config.get("format") == FORMAT_NAME


def is_repository_dir(parent_fd: int, name: bytes | str) -> bool:
    """Whether the directory `name` in `parent_fd` is a project of a nexus-backup repository
    or a repository's top (its `backups/` holds one). Never follows a link."""
    fd = _open_dir(parent_fd, name)
    if fd is None:
        return False
    try:
        if is_project_dir(fd):
            return True
        projects = _open_dir(fd, PROJECTS.rstrip("/"))
        if projects is None:
            return False
        try:
            return any(_holds_project(projects, n) for n in _first_dirs(projects))
        finally:
            os.close(projects)
    finally:
        os.close(fd)


def _open_dir(parent_fd: int, name: bytes | str) -> int | None:
    try:
        return os.open(name, _DIR, dir_fd=parent_fd)
    except OSError:
        return None


def _holds_project(parent_fd: int, name: str) -> bool:
    fd = _open_dir(parent_fd, name)
    if fd is None:
        return False
    try:
        return is_project_dir(fd)
    finally:
        os.close(fd)


def _first_dirs(fd: int) -> list[str]:
    names: list[str] = []
    try:
        with os.scandir(fd) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    names.append(entry.name)
                    if len(names) == _LOOK_AT:
                        break
    except OSError:
        pass
    return names

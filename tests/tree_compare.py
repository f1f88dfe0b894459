"""Comparing directory trees the way a user would after a restore."""

from __future__ import annotations

import os
from pathlib import Path


def tree_snapshot(top: Path) -> dict[bytes, tuple]:
    """What a user compares after a restore: every path, its kind, bytes, mode, mtime, target."""
    out: dict[bytes, tuple] = {}
    base = os.fsencode(top)
    for dirpath, dirs, files in os.walk(base):
        for name in dirs + files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            st = os.lstat(full)
            if os.path.islink(full):
                out[rel] = ("l", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("d", st.st_mode & 0o7777)
            else:
                with open(full, "rb") as f:
                    out[rel] = ("f", f.read(), st.st_mode & 0o7777, st.st_mtime_ns)
    return out

"""A backup's tree one directory at a time, for the faces' browsers: the children of a path
in a manifest, with the names decoded once, the same way everywhere."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from core.errors import InvalidInput, NotFound
from core.models import TreeEntry
from core.repo import manifest as mf


def display(path: bytes) -> str:
    """A stored name as text: undecodable bytes kept as surrogates (they round-trip)."""
    return path.decode("utf-8", "surrogateescape")


def children(entries: list[mf.Entry], path: str, backup_id: str) -> list[TreeEntry]:
    """The entries directly below `path` ("" for the top), directories first; a directory's
    `size` is that of every file below it."""
    prefix = os.fsencode(path.strip("/"))
    depth = prefix.count(b"/") + 1 if prefix else 0
    children: dict[bytes, TreeEntry] = {}
    parents: set[bytes] = set()
    sizes: dict[bytes, int] = {}
    found = not prefix
    for e in entries:
        if prefix and e.path == prefix:
            found = True
            if e.kind != mf.DIR:
                raise InvalidInput(f"{path!r} is not a directory in backup {backup_id}")
            continue
        if prefix and not e.path.startswith(prefix + b"/"):
            continue
        parts = e.path.split(b"/")
        if len(parts) == depth + 1:
            children[e.path] = TreeEntry(
                path=display(e.path),
                name=display(parts[-1]),
                kind=mf.KIND_NAMES[e.kind],  # type: ignore[arg-type]
                size=e.size,
                mtime=datetime.fromtimestamp(e.mtime_ns / 1e9, UTC),
                mode=e.mode,
                target=display(e.target) if e.target is not None else None,
            )
        elif len(parts) > depth + 1:
            parent = b"/".join(parts[: depth + 1])
            parents.add(parent)
            if e.kind == mf.FILE:  # a folder's size: the files below it (issue 17)
                sizes[parent] = sizes.get(parent, 0) + e.size
    if not found:
        raise NotFound(f"{path!r} is not in backup {backup_id}")
    for p in parents:
        if p in children:
            children[p].has_children = True
            children[p].size = sizes.get(p, 0)
    return sorted(children.values(), key=lambda t: (t.kind != "dir", t.name))

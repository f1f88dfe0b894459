"""A manifest entry as the faces show it: the fields a diff's side and an `ls` line share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.compare_names import b64_of, text_of
from core.repo import manifest as mf


def entry_fields(e: mf.Entry) -> dict[str, Any]:
    """Kind, size (a directory's: 0), permission bits, mtime, owner and a link's target."""
    return {
        "kind": mf.KIND_NAMES[e.kind],
        "size": e.size if e.kind != mf.DIR else 0,
        "mode": e.mode & 0o7777,
        "mtime": datetime.fromtimestamp(e.mtime_ns / 1e9, UTC),
        "uid": e.uid,
        "gid": e.gid,
        "target": text_of(e.target) if e.target is not None else None,
        "target_b64": b64_of(e.target) if e.target is not None else None,
    }

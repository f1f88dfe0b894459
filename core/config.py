"""Where the repository root is: `--root`, else NEXUS_BACKUP_ROOT, else a per-user data dir."""

from __future__ import annotations

import os
from pathlib import Path

ENV_ROOT = "NEXUS_BACKUP_ROOT"


def default_root() -> Path:
    """The per-user data directory (XDG), which needs no setup."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "nexus-backup"


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    if root:
        return Path(root).expanduser().absolute()
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser().absolute()
    return default_root()

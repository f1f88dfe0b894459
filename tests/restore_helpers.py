"""Helpers of the restore safety tests: run the Restorer as the manager does (with a chosen
set of protected directories), rewrite a backup's manifest as an attacker or a newer backup
side would (with a matching checksum), count what a tree holds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from core.models import RestoreRequest, RestoreResult
from core.ops.progress import OperationContext
from core.ops.restore import Checkpoint, Restorer
from core.repo import manifest as mf
from core.repo.repository import Repository


def run_restorer(
    root: Path,
    project: str,
    backup_id: str,
    target: Path,
    *,
    protect: frozenset[tuple[int, int]] = frozenset(),
    ctx: OperationContext | None = None,
    checkpoint: Checkpoint | None = None,
    **options: object,
) -> RestoreResult:
    repo = Repository(root, project)
    meta = repo.read_metadata(backup_id)
    req = RestoreRequest(
        project_id=project, backup_id=backup_id, restore_dir=str(target), **options
    )
    ctx = ctx or OperationContext("restore", project, backup_id)
    restorer = Restorer(repo, meta, req, ctx, lambda _level, _msg: None, checkpoint, protect)
    return restorer.run()


def dev_ino(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


Edit = Callable[[dict, list[mf.Entry]], tuple[dict, list[mf.Entry]]]


def rewrite_manifest(root: Path, project: str, backup_id: str, edit: Edit) -> None:
    """Replace the backup's manifest by `edit(header, entries)` and record its checksum."""
    repo = Repository(root, project)
    meta = repo.read_metadata(backup_id)
    data = repo.read_manifest(backup_id)
    header = mf.read_header(data)
    header.pop("nexus_manifest")
    header, entries = edit(header, list(mf.iter_entries(data)))
    writer = mf.ManifestWriter(header)
    for e in entries:
        writer.add(e)
    data, checksum = writer.finish()
    repo.write_manifest(backup_id, data)
    meta.checksum = checksum
    repo.write_metadata(meta)


def files_under(top: Path) -> dict[bytes, bytes]:
    """Every regular file and symlink below `top` (relative path -> bytes or link target)."""
    out: dict[bytes, bytes] = {}
    base = os.fsencode(top)
    for dirpath, dirs, files in os.walk(base):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, base)
            if os.path.islink(full):
                out[rel] = b"-> " + os.readlink(full)
            else:
                with open(full, "rb") as f:
                    out[rel] = f.read()
    return out


def temp_files(top: Path) -> list[bytes]:
    out = []
    for dirpath, dirs, files in os.walk(os.fsencode(top)):
        out += [os.path.join(dirpath, n) for n in files + dirs if n.startswith(b".nexus-restore-")]
    return out

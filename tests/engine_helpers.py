"""The backup engine called directly (core.ops.backup.run_backup with a BackupPlan), as
core/manager.py calls it, for tests of plan fields the manager does not expose."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from core.models import BackupMetadata, BackupStatus, BackupType
from core.ops.backup import BackupPlan, run_backup
from core.ops.progress import OperationContext
from core.repo.repository import Repository, new_backup_id


def engine_backup(
    root: Path,
    project: str,
    data_dir: Path,
    *,
    excludes: list[str] | tuple[str, ...] = (),
    use_ignore_file: bool = True,
    top_fd: int | None = None,
) -> BackupMetadata:
    """A FULL backup of `data_dir` (named only, when `top_fd` is given) into a new or
    existing repository; returns the COMPLETED metadata."""
    repo = Repository(root, project)
    if not repo.exists():
        repo.init()
    repo.refresh_index()
    meta = BackupMetadata(
        id=new_backup_id(),
        project_id=project,
        type=BackupType.FULL,
        status=BackupStatus.PENDING,
        created_at=datetime.now(UTC),
    )
    repo.write_metadata(meta)
    plan = BackupPlan(
        data_dir=os.fsencode(data_dir),
        excludes=list(excludes),
        reference=None,
        reuse=False,
        skip_dirs=set(),
        use_ignore_file=use_ignore_file,
        top_fd=top_fd,
        confined=top_fd is not None,  # as the manager's create beneath an allowed directory
    )
    ctx = OperationContext("create", project, meta.id)
    return run_backup(repo, meta, plan, ctx, lambda _level, _msg: None)

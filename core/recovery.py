"""Automatic cleanup after a crash: the spec's "limpeza automática em caso de falha".

A backup left PENDING, RUNNING or VALIDATING by a process that no longer holds its lock is
marked FAILED ("interrupted") and its partial data removed; a backup left RESTORING goes back
to COMPLETED; a directory without metadata (a delete cut short) is removed. Under an
exclusive lock, stray temp files and packs no index names are removed too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

from . import locks
from .models import IN_PROGRESS, BackupStatus
from .repository import Repository
from .storage import LocalStore

Log = Callable[[str, str, str | None], None]  # level, message, backup_id


def recover(repo: Repository, log: Log) -> int:
    """Repair what dead processes left behind; returns how many backups were touched."""
    touched = 0
    locks.remove_stale(repo.store)
    for backup_id in repo.backup_ids():
        if locks.is_live_backup(repo.store, backup_id):
            continue
        prefix = repo.prefix(backup_id)
        try:
            meta = repo.read_metadata(backup_id)
        except Exception:
            if not repo.store.exists(prefix + "metadata.json"):
                _remove_backup_dir(repo, backup_id)
                log("WARNING", "removed the remains of an interrupted backup or delete", backup_id)
                touched += 1
            continue
        if meta.status in IN_PROGRESS:
            meta.status = BackupStatus.FAILED
            meta.error_message = "interrupted: the process running it stopped"
            meta.completed_at = datetime.now(UTC)
            repo.write_metadata(meta)
            with contextlib.suppress(OSError):
                repo.store.delete(repo.manifest_name(backup_id))
            log(
                "WARNING",
                "backup was interrupted; marked failed and its partial data removed",
                backup_id,
            )
            touched += 1
        elif meta.status == BackupStatus.RESTORING:
            meta.status = BackupStatus.COMPLETED
            repo.write_metadata(meta)
            log(
                "WARNING",
                "a restore of this backup was interrupted; status set back to completed",
                backup_id,
            )
            touched += 1
    lock = locks.try_acquire_exclusive(repo.store, "cleanup")
    if lock is not None:
        try:
            if isinstance(repo.store, LocalStore):
                for tmp in repo.store.temp_files():
                    with contextlib.suppress(OSError):
                        tmp.unlink()
        finally:
            lock.release()
    return touched


def _remove_backup_dir(repo: Repository, backup_id: str) -> None:
    prefix = repo.prefix(backup_id)
    for obj in list(repo.store.list(prefix)):
        repo.store.delete(obj.name)
    if isinstance(repo.store, LocalStore):
        repo.store.delete_prefix(prefix)

"""Automatic cleanup after a crash: the spec's "limpeza automática em caso de falha".

Runs only for a writing command, and only under the exclusive lock (docs/design.md,
invariant 3): a read-only command never changes the repository, and while any other
operation holds a lock nothing is judged dead. Then:
- a delete cut short (its tombstone is there) is finished;
- a backup left PENDING, RUNNING or VALIDATING is marked FAILED ("interrupted") and its
  partial manifest removed (no live process can hold it: we hold the exclusive lock);
- a backup left RESTORING by an older version goes back to COMPLETED;
- a backup directory holding no object at all (a create killed before its first write was
  durable) is removed;
- stray temp files are removed.
A backup whose metadata is missing or damaged is never touched: it is reported, and can be
repaired or deleted on purpose.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from core.errors import Damaged, NotFound
from core.models import IN_PROGRESS, BackupStatus
from core.ops.progress import Clock, utc_now
from core.repo import locks
from core.repo.repository import Repository

Log = Callable[[str, str, str | None], None]  # level, message, backup_id


def recover(repo: Repository, log: Log, clock: Clock = utc_now) -> int:
    """Take the exclusive lock for a moment and repair; skipped (0) when the project is busy:
    its holders are alive, and the next writer will look again."""
    lock = locks.try_acquire_exclusive(repo.store, "recover")
    if lock is None:
        return 0
    with lock:
        return recover_locked(repo, log, clock)


def recover_locked(repo: Repository, log: Log, clock: Clock = utc_now) -> int:
    """Repair what dead processes left behind, the exclusive lock held by the caller;
    returns how many backups were touched."""
    touched = 0
    for backup_id in sorted(repo.tombstones()):
        try:
            repo.delete_backup_files(backup_id)
        except OSError as exc:  # a directory that cannot be written: the next writer tries
            # again; this one goes on (a backup, a forget), or none could run until it is fixed
            log("WARNING", f"could not finish a delete that was interrupted: {exc}", backup_id)
            continue
        log("WARNING", "finished a delete that was interrupted", backup_id)
        touched += 1
    for backup_id in repo.backup_ids():
        try:
            meta = repo.read_metadata(backup_id)
        except NotFound:
            if repo.empty_backup_dir(backup_id):
                repo.delete_backup_files(backup_id)
                touched += 1
            continue
        except Damaged:
            continue  # reported by list and check; only a delete on purpose removes it
        if meta.status in IN_PROGRESS:
            meta.status = BackupStatus.FAILED
            meta.error_message = "interrupted: the process running it stopped"
            meta.completed_at = clock()
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
            touched += 1
    with contextlib.suppress(OSError):
        repo.store.remove_partials()
    return touched

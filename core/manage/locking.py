"""How the manager takes a project's locks: one call for every writer and reader, with the
one timeout, and the status of backups as the live locks tell it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from core.errors import Conflict, NotFound, ReadOnly
from core.manage.projects import DELETING
from core.models import IN_PROGRESS, BackupMetadata, BackupStatus
from core.repo import locks
from core.repo.repository import CONFIG, Repository

#: How long an operation waits for a busy project before it says so (Busy).
LOCK_TIMEOUT = 5.0


def _acquire(
    repo: Repository,
    operation: str,
    *,
    exclusive: bool,
    backup_id: str | None,
    timeout: float | None = None,
) -> locks.RepoLock:
    lock = locks.acquire(
        repo.store,
        exclusive=exclusive,
        operation=operation,
        backup_id=backup_id,
        timeout=LOCK_TIMEOUT if timeout is None else timeout,
        project_id=repo.project_id,
    )
    try:
        _still_there(repo)
    except BaseException:
        lock.release()
        raise
    return lock


def _still_there(repo: Repository) -> None:
    """Invariant I11's check, once the lock is held: a project deleted (or being deleted)
    while this operation waited for its lock is not written into, which would bring back a
    directory of orphans; nor one whose delete was killed before its config.json went (the
    marker says so: the next delete-project removes whatever was written). A project whose
    config alone is lost (damaged) is still read."""
    store = repo.store
    if store.exists(DELETING):  # config.json too, when the delete was killed before it went
        raise NotFound(
            f"project {repo.project_id!r} is being deleted ({store.url}): nothing was written; "
            f"run delete-project {repo.project_id} there again to finish it"
        )
    replaced = repo.replaced()
    if store.exists(CONFIG):
        if replaced:
            # made anew (or renamed into its place) by another process since this operation
            # opened it: its key, chunker seed and index would seal what nothing opens (I18)
            raise Conflict(
                f"project {repo.project_id!r} was replaced by another process (deleted and "
                "made again, renamed, or its config.json changed) since this operation opened "
                "it: nothing was written; try again"
            )
        return
    if not set(store.children()) - {"locks"}:
        raise NotFound(f"project {repo.project_id!r} was deleted")


@contextlib.contextmanager
def locked(
    repo: Repository,
    operation: str,
    *,
    exclusive: bool,
    backup_id: str | None = None,
    timeout: float | None = None,
) -> Iterator[locks.RepoLock]:
    """Hold the project's lock for `operation` (shared or exclusive) for the block, waiting
    up to `timeout` seconds for a busy project (default LOCK_TIMEOUT; 0: try once)."""
    with _acquire(
        repo, operation, exclusive=exclusive, backup_id=backup_id, timeout=timeout
    ) as lock:
        yield lock


@contextlib.contextmanager
def reading(repo: Repository, operation: str, backup_id: str | None = None) -> Iterator[None]:
    """A shared lock for a reader; none on a repository that cannot be written (restic's
    --no-lock), so a read-only mount or snapshot is still listed, verified and restored."""
    try:
        lock = _acquire(repo, operation, exclusive=False, backup_id=backup_id)
    except ReadOnly:
        yield
        return
    with lock:
        yield


def live_status(repo: Repository, metas: list[BackupMetadata]) -> list[BackupMetadata]:
    """Metadata as it stands now, told by the locks, without writing anything (readers never
    write): a backup a live restore reads shows RESTORING; one left in progress by a process
    that holds no lock any more shows FAILED "interrupted" (the next writer records that)."""
    try:
        live = locks.live_locks(repo.store)
    except OSError:
        return metas
    held = {i.backup_id for i in live}
    restoring = {i.backup_id for i in live if i.operation == "restore"}
    for meta in metas:
        if meta.id in restoring and meta.status == BackupStatus.COMPLETED:
            meta.status = BackupStatus.RESTORING
        elif meta.status in IN_PROGRESS and meta.id not in held:
            meta.status = BackupStatus.FAILED
            meta.error_message = "interrupted: the process running it stopped"
    return metas
